"""One error root for einc.  Every error a user can cause is an ``EincError``.

Each class also derives from the builtin a numpy user would expect (``ValueError`` or
``TypeError``), so ``except ValueError`` code written for ``numpy.einsum`` keeps working.
The docstrings carry the advice that goes with the error.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A place in a source text: 1-based line and column, and a length in characters."""

    source: str
    line: int
    column: int
    length: int = 1
    filename: str = "<expr>"

    @classmethod
    def at(cls, source: str, offset: int, length: int = 1, filename: str = "<expr>") -> "Span":
        """The span starting at character ``offset`` (0-based) of ``source``."""
        offset = max(0, min(offset, len(source)))
        line = source.count("\n", 0, offset) + 1
        col = offset - (source.rfind("\n", 0, offset) + 1) + 1
        return cls(source, line, col, max(1, length), filename)

    def render(self) -> str:
        lines = self.source.split("\n")
        text = lines[self.line - 1] if 0 < self.line <= len(lines) else ""
        # the caret's indent keeps the line's tabs (a terminal expands both alike) and gives wide
        # characters (CJK) two cells, so the caret sits under the column in the echoed line
        before = text[:self.column - 1]
        indent = "".join("\t" if c == "\t" else "  " if unicodedata.east_asian_width(c) in "WF" else " "
                         for c in before) + " " * (self.column - 1 - len(before))
        caret = indent + "^" * self.length
        return f"{self.filename}:{self.line}:{self.column}\n  {text}\n  {caret}"


class EincError(Exception):
    """Root of every error einc raises on purpose."""

    def __init__(self, message: str, span: Span | None = None):
        self.message = message
        self.span = span
        super().__init__(self.__str__())

    def __str__(self) -> str:  # message first, then the picture with the caret
        if self.span is None:
            return self.message
        return f"{self.message}\n{self.span.render()}"

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        return self.span.column if self.span else None


class ParseError(EincError, ValueError):
    """The text is not a valid einsum expression or ``.ein`` program; the caret shows where."""


class ShapeMismatch(EincError, ValueError):
    """Sizes of one index disagree between operands; check the operand shapes it names."""


class EincTypeError(EincError, TypeError):
    """An operand has a dtype einc cannot use here, or a cast the casting rule forbids."""


class VerifyError(EincError, ValueError):
    """An IR program breaks an invariant; a pass or a hand-written program is wrong."""


class PipelineError(EincError, ValueError):
    """A pass pipeline string names an unknown pass or option; the message lists the valid ones."""


class PathError(EincError, ValueError):
    """A contraction path or optimizer choice is invalid: an unknown optimizer name, or an explicit
    path whose step names an operand that does not exist; the message names the step."""


class Unsupported(EincError, ValueError):
    """Valid input that this target or backend does not handle (a rejection, not a bug)."""


class CompileError(EincError, RuntimeError):
    """A backend (TVM, a CKKS library) failed to build; the message names the stage."""


class CacheError(EincError, RuntimeError):
    """The kernel cache could not be read or written."""


class WriteError(EincError, OSError):
    """A file einc was asked to write cannot be written there (no such directory, a directory in the
    way, no permission, disk full); nothing partial is left behind."""


class UsageError(EincError, ValueError):
    """A command's arguments do not fit what is on disk: a folder that is not what the option wants,
    a saved state of another kind, a folder another process is using."""


class FheError(EincError, ValueError):
    """An encrypted computation cannot run with these parameters (depth, slots, keys)."""


class EincInternalError(EincError, AssertionError):
    """A bug in einc itself.  Never caught by einc; please report it with the input."""
