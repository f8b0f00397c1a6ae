"""``einc opt``: run a pass pipeline over a ``.ein`` program and print the result.

    einc opt attention.ein -p "canonicalize,decompose{path=optimal}"
    einc opt attention.ein --print-between-passes          # the default pipeline, each stage shown
    cat prog.ein | einc opt - -p canonicalize -o out.ein
    einc opt --list-passes

The output is ``.ein`` text again.  With ``--print-between-passes`` the input and the program after
every pass are printed, each under a ``# after PASS`` comment line.
"""
from __future__ import annotations

import argparse

HELP = "run a pass pipeline over a .ein program and print the optimized program"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", metavar="FILE", help="a .ein program ('-' reads stdin)")
    p.add_argument("-p", "--pipeline", default=None, metavar="PIPELINE",
                   help="passes to run, e.g. 'canonicalize,decompose{path=optimal,memory-limit=4096}' "
                        "(default: the compiler's default pipeline)")
    p.add_argument("--print-between-passes", action="store_true",
                   help="print the program before the first pass and after every pass")
    p.add_argument("--no-verify", action="store_true", help="do not run the verifier between passes")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write the result here instead of stdout")
    p.add_argument("--list-passes", action="store_true", help="list the passes and their options, then exit")


def list_passes() -> str:
    """One line per pass: ``name{option=default|type, ...}`` and the first docstring line."""
    from einc.ir.passes import get_pass, pass_names
    from einc.ir.passes.base import _describe, _format_value, pass_options

    lines = []
    for name in pass_names():
        cls = get_pass(name)
        opts = ", ".join(f"{k}={_format_value(d)} ({_describe(ann)})" for k, (_, ann, d) in pass_options(cls).items())
        doc = (cls.__doc__ or "").strip().splitlines()
        lines.append(f"{name}{'{' + opts + '}' if opts else ''}\n    {doc[0] if doc else ''}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    import sys

    from einc.errors import ParseError

    if args.list_passes:
        sys.stdout.write(list_passes())
        return 0
    if args.source is None:
        raise ParseError("einc opt needs a .ein file (or '-' for stdin); see einc opt --help")

    from einc.frontend.program import parse_program, parse_program_file
    from einc.ir.passes import DEFAULT, as_passes, format_pass, run_pipeline
    from einc.ir.printer import print_program

    passes = as_passes(args.pipeline if args.pipeline is not None else DEFAULT)
    prog = parse_program(sys.stdin.read(), filename="<stdin>") if args.source == "-" else parse_program_file(args.source)

    chunks: list[str] = []
    between = None
    if args.print_between_passes:
        chunks.append("# input\n" + print_program(prog))

        def between(p, q):
            chunks.append(f"# after {format_pass(p)}\n" + print_program(q))

    result = run_pipeline(prog, passes, verify=not args.no_verify, print_between=between)
    text = "\n".join(chunks) if chunks else print_program(result)
    if not passes and chunks:
        text = chunks[0]
    if args.output:
        _write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _write_atomic(path: str, text: str) -> None:
    from einc.errors import EincError
    from einc.fileio import atomic_write

    try:
        atomic_write(path, text)
    except OSError as e:
        raise EincError(f"cannot write {path}: {e.strerror or e}") from None
