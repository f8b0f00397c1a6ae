"""The ``einc`` command line.  Each subcommand lives in ``einc/commands/<name>.py`` with

    HELP = "one line"
    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int

Command modules import nothing heavy at module level, so ``einc --help`` never loads TVM or a
CKKS library.  An ``EincError`` prints its message (with the caret picture) and exits 2, never a
Python traceback; ``EINC_TRACEBACK=1`` shows the traceback for debugging.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from einc.errors import EincError

COMMANDS = ("parse", "explain", "opt", "compile", "run", "bench", "cache", "fhe", "fuzz")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="einc", description="einc: an einsum compiler and fuzzer toolkit")
    from einc import __version__

    parser.add_argument("--version", action="version", version=f"einc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"einc.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"einc.commands.{name}":
                raise
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EincError as e:
        if os.environ.get("EINC_TRACEBACK"):
            raise
        print(f"einc {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:  # numpy's _ArrayMemoryError says how much it wanted
        print(f"einc {args.command}: error: out of memory: {str(e).splitlines()[0] if str(e) else 'an allocation failed'}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("einc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _number(kind, least, what):
    def convert(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
        if not least <= v < float("inf"):  # (NaN fails too)
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}")
        return v

    convert.__name__ = what  # argparse names the type in its messages
    return convert


positive_int = _number(int, 1, "a whole number >= 1")
count = _number(int, 0, "a whole number >= 0")
positive_seconds = _number(float, 1e-9, "a number of seconds > 0")
seconds = _number(float, 0.0, "a number of seconds >= 0")


def parse_shapes(text: str) -> list[tuple[int, ...]]:
    """``8x64x32,8x32`` -> [(8, 64, 32), (8, 32)]; ``''`` or ``()`` for a 0-d operand."""
    from einc.errors import ParseError, Span
    from einc.ir.types import too_many_elements

    shapes, pos = [], 0
    for part in text.split(","):
        dims = part.strip()
        if dims in ("", "()", "scalar"):
            shapes.append(())
        else:
            try:
                shapes.append(tuple(int(d) for d in dims.lower().split("x")))
            except ValueError:
                raise ParseError(f"bad shape {dims!r}: write sizes like 8x64x32", Span.at(text, pos, len(part), "--shapes")) from None
            if any(d < 0 for d in shapes[-1]):
                raise ParseError(f"negative size in shape {dims!r}", Span.at(text, pos, len(part), "--shapes"))
            why = too_many_elements(shapes[-1])
            if why:
                raise ParseError(f"shape {dims!r} has {why}", Span.at(text, pos, len(part), "--shapes"))
        pos += len(part) + 1
    return shapes


if __name__ == "__main__":
    raise SystemExit(main())
