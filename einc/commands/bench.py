"""``einc bench``: time einc's kernels against numpy, opt_einsum and torch (``bench/cpu_suite.py``).

    einc bench                                         # the cpu cases of the bundled suite
    einc bench "ik,kj->ij" --shapes 1024x1024,1024x1024 --json
    einc bench --suite my_suite.json --cases matmul,mttkrp --threads 2 --overhead

The benchmark runs in a child process so that the thread count reaches every library before it is
imported (OpenBLAS, torch and TVM size their pools at load time).
"""
from __future__ import annotations

import argparse

HELP = "benchmark einc kernels against numpy, opt_einsum and torch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("expr", nargs="?", metavar="EXPR", help="one einsum to time (with --shapes) instead of a suite")
    p.add_argument("--shapes", metavar="SHAPES", help="operand shapes for EXPR, e.g. 512x512,512x512")
    p.add_argument("--dtype", default="float32", metavar="DTYPE", help="operand dtype for EXPR (default float32)")
    p.add_argument("--suite", metavar="FILE", help="suite JSON: {section: {name: {expr, shapes}}} (default: bundled)")
    p.add_argument("--section", default="cpu", help="suite section (default cpu)")
    p.add_argument("--cases", metavar="A,B", help="only these cases of the suite")
    p.add_argument("--peers", metavar="P,Q", help="subset of numpy,opt_einsum,torch")
    p.add_argument("--threads", type=int, metavar="N", help="threads for every library (default: all usable cores)")
    p.add_argument("--min-time", type=float, metavar="S", help="seconds of timed calls per measurement (default 0.3)")
    p.add_argument("--repeat", type=int, metavar="N", help="rounds per measurement (default 5)")
    p.add_argument("--overhead", action="store_true",
                   help="also measure a cold 2-operand compile, the cached-call overhead and the policy floor")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def suite_argv(args: argparse.Namespace) -> list[str]:
    """The command line of ``bench/cpu_suite.py`` for these arguments (checked here, before spawning)."""
    from einc.errors import EincError

    if args.expr and args.suite:
        raise EincError("give an EXPR or --suite, not both")
    if args.expr and not args.shapes:
        raise EincError(f"einc bench {args.expr!r}: give the operand shapes, e.g. --shapes 512x512,512x512")
    if args.shapes and not args.expr:
        raise EincError("--shapes needs an EXPR")
    if args.shapes:
        from einc.cli import parse_shapes

        parse_shapes(args.shapes)  # a bad shape fails here, with its caret
    argv = [args.expr] if args.expr else []
    for flag, value in (("--shapes", args.shapes), ("--dtype", args.dtype), ("--suite", args.suite),
                        ("--section", args.section), ("--cases", args.cases), ("--peers", args.peers),
                        ("--threads", args.threads), ("--min-time", args.min_time), ("--repeat", args.repeat)):
        if value is not None:
            argv += [flag, str(value)]
    if args.overhead:
        argv.append("--overhead")
    if args.json:
        argv.append("--json")
    return argv


def run(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    argv = suite_argv(args)
    return subprocess.call([sys.executable, "-m", "einc.bench.cpu_suite", *argv])
