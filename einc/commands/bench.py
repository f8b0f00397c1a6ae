"""``einc bench``: time einc's kernels against numpy, opt_einsum and torch (``bench/cpu_suite.py``),
or with ``--target cuda`` its CUDA kernels against ``torch.einsum`` on the GPU (``bench/gpu_suite.py``).

    einc bench                                         # the cpu cases of the bundled suite
    einc bench "ik,kj->ij" --shapes 1024x1024,1024x1024 --json
    einc bench --suite my_suite.json --cases matmul,mttkrp --threads 2 --overhead
    einc bench --target cuda                           # the gpu cases, on a GPU, TF32 off
    einc bench "bik,bkj->bij" --shapes 64x512x512,64x512x512 --target cuda

The benchmark runs in a child process so that the thread count reaches every library before it is
imported (OpenBLAS, torch and TVM size their pools at load time).
"""
from __future__ import annotations

import argparse

HELP = "benchmark einc kernels against numpy, opt_einsum and torch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from einc.cli import positive_int, positive_seconds

    p.add_argument("expr", nargs="?", metavar="EXPR", help="one einsum to time (with --shapes) instead of a suite")
    p.add_argument("--shapes", metavar="SHAPES", help="operand shapes for EXPR, e.g. 512x512,512x512")
    p.add_argument("--dtype", default="float32", metavar="DTYPE", help="operand dtype for EXPR (default float32)")
    p.add_argument("--suite", metavar="FILE", help="suite JSON: {section: {name: {expr, shapes}}} (default: bundled)")
    p.add_argument("--section", default="cpu", help="suite section (default cpu)")
    p.add_argument("--cases", metavar="A,B", help="only these cases of the suite")
    p.add_argument("--peers", metavar="P,Q", help="subset of numpy,opt_einsum,torch")
    p.add_argument("--threads", type=positive_int, metavar="N", help="threads for every library (default: all usable cores)")
    p.add_argument("--min-time", type=positive_seconds, metavar="S", help="seconds of timed calls per measurement (default 0.3)")
    p.add_argument("--repeat", type=positive_int, metavar="N", help="rounds per measurement (default 5)")
    p.add_argument("--overhead", action="store_true",
                   help="also measure a cold 2-operand compile, the cached-call overhead and the policy floor")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--target", default="llvm", metavar="TARGET",
                   help="'llvm' (the CPU, default) or 'cuda' (a GPU, against torch.einsum; the gpu section)")


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
    if _is_cuda(args.target):
        return _gpu_argv(args)
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


def _is_cuda(target: str) -> bool:
    from einc.errors import EincError

    t = (target or "llvm").strip()
    if t.lower() in ("llvm", "cpu", "host"):
        return False
    if t.lower() == "cuda":
        return True
    import json

    from einc.lowering.target import resolve

    kind = json.loads(resolve(t)).get("kind")
    if kind not in ("llvm", "cuda"):
        raise EincError(f"einc bench --target {target!r}: expected llvm or cuda")
    return kind == "cuda"


def _gpu_argv(args: argparse.Namespace) -> list[str]:
    """The command line of ``bench/gpu_suite.py``: torch.einsum is the one peer there."""
    from einc.errors import EincError

    unsupported = [flag for flag, on in (("--peers", args.peers), ("--threads", args.threads),
                                         ("--min-time", args.min_time), ("--overhead", args.overhead),
                                         ("--dtype", args.dtype != "float32" and not args.expr))
                   if on]
    if unsupported:
        raise EincError(f"einc bench --target cuda: {', '.join(unsupported)} only apply to the CPU benchmark "
                        "(the GPU one times against torch.einsum with CUDA events; --dtype goes with EXPR, "
                        "suite cases carry their own)")
    argv = [args.expr] if args.expr else []
    for flag, value in (("--shapes", args.shapes), ("--suite", args.suite), ("--section", args.section),
                        ("--cases", args.cases), ("--repeat", args.repeat), ("--target", args.target),
                        ("--dtype", args.dtype if args.expr and args.dtype != "float32" else None)):
        if value is not None and not (flag == "--section" and value == "cpu"):
            argv += [flag, str(value)]
    if args.json:
        argv += ["--json", "-"]
    return argv


def run(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    argv = suite_argv(args)
    module = "einc.bench.gpu_suite" if _is_cuda(args.target) else "einc.bench.cpu_suite"
    import os

    # the suite's usage and error lines name the command the user typed
    return subprocess.call([sys.executable, "-m", module, *argv], env={**os.environ, "EINC_PROG": "einc bench"})
