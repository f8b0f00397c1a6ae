"""``einc parse``: parse an einsum expression or a ``.ein`` program and print its verified IR.

    einc parse "bij,bjk->bik" --shapes 8x64x32,8x32x16 --dtype float32
    einc parse attention.ein
    cat attention.ein | einc parse -

The printed text is ``.ein`` again (explicit subscripts, full types), so it parses back.
"""
from __future__ import annotations

import argparse

HELP = "parse an einsum expression or a .ein program and print its IR"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="EXPR|FILE",
                   help="numpy einsum subscripts (with --shapes), or a .ein file ('-' reads stdin)")
    p.add_argument("--shapes", metavar="SHAPES",
                   help="operand shapes for EXPR, e.g. 2x3,3x4 ('' or () for a 0-d operand)")
    p.add_argument("--dtype", default=None, metavar="DTYPE",
                   help="operand dtype for EXPR: one for all operands or one per operand, comma-separated "
                        "(default float32)")


def run(args: argparse.Namespace) -> int:
    import sys

    from einc.errors import ParseError
    from einc.frontend.program import expression_program, parse_program, parse_program_file
    from einc.ir.printer import print_program

    if args.shapes is not None:
        from einc.cli import parse_shapes

        shapes = parse_shapes(args.shapes)
        dtypes = [d.strip() for d in (args.dtype or "float32").split(",")]
        prog = expression_program(args.source, shapes, dtypes[0] if len(dtypes) == 1 else dtypes, filename="expr")
    elif args.dtype is not None:
        raise ParseError("--dtype applies to an expression given with --shapes; a .ein file declares its dtypes")
    elif args.source == "-":
        prog = parse_program(sys.stdin.read(), filename="<stdin>")
    elif args.source.endswith(".ein") or _is_file(args.source):
        prog = parse_program_file(args.source)
    else:
        raise ParseError(f"{args.source!r} is not a file; to parse an einsum expression give its operand "
                         "shapes, e.g. --shapes 2x3,3x4")
    sys.stdout.write(print_program(prog))
    return 0


def _is_file(path: str) -> bool:
    import os

    return os.path.isfile(path)
