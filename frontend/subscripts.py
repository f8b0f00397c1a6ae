"""numpy einsum subscripts -> ``ParsedEinsum`` -> a one-step IR ``Program``.

The grammar lives in ``subscripts.lark`` (loaded once, cached).  Parsing has two stages:

1. syntax: Lark (LALR, ``propagate_positions``) turns the text into frozen ``Term`` lists;
   a syntax error is named by the example table ``SYNTAX_EXAMPLES`` (lark's ``match_examples``)
   or, for a character no token accepts, by ``CHARACTER_KINDS``;
2. meaning: ellipsis counts, output labels, operand count, ranks and sizes against ``shapes``.
   Ellipsis dimensions expand into fresh single letters and broadcast as numpy broadcasts them
   (right-aligned, size 1 stretches).

Every error is a ``ParseError`` (or ``ShapeMismatch``) subclass with a span: the caret sits
under the offending character, or under the subscripts of the operand a shape error names.
What is accepted follows ``numpy.einsum``'s C parser (the ``optimize=False`` path).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from einc.errors import EincTypeError, ParseError, ShapeMismatch, Span, Unsupported
from einc.ir.nodes import LABELS, Cast, Einsum, Program, Value
from einc.ir.types import TensorType
from einc.ir.types import result_dtype as _promote

ELLIPSIS = "..."
#: numpy's limit: NPY_MAXARGS (64) operands, one of which einsum keeps for ``out=``.
MAX_OPERANDS = 63


# --------------------------------------------------------------------------- error kinds


class SubscriptsError(ParseError):
    """The einsum subscripts string is malformed; the caret shows where."""


class InvalidCharacter(SubscriptsError):
    """Subscripts are ASCII letters, '...', ',' , '->' and spaces; anything else is refused."""


class StrayDot(SubscriptsError):
    """A '.' must be part of an ellipsis '...' written without spaces."""


class BrokenArrow(SubscriptsError):
    """The output is introduced by '->' written without spaces between '-' and '>'."""


class DoubleArrow(SubscriptsError):
    """There is one output, so '->' appears at most once."""


class CommaInOutput(SubscriptsError):
    """The output after '->' is a single term; commas separate operands only."""


class TooManyEllipses(SubscriptsError):
    """Each operand, and the output, may contain '...' at most once."""


class RepeatedOutputLabel(SubscriptsError):
    """An output label may appear only once (write 'ii->i' for a diagonal, not 'i->ii')."""


class UnknownOutputLabel(SubscriptsError):
    """Every output label must appear in some operand."""


class OperandCountMismatch(SubscriptsError):
    """The subscripts name one term per operand, separated by commas."""


class TooManyOperands(SubscriptsError):
    """numpy.einsum takes at most 63 operands; einc keeps the same limit."""


class RankMismatch(SubscriptsError):
    """An operand has a different number of dimensions than its subscripts name; use '...' for extra ones."""


class EllipsisNotInOutput(SubscriptsError):
    """Operands have ellipsis dimensions but the explicit output has no '...' to receive them."""


class InvalidSublist(SubscriptsError):
    """In the sublist form each subscript is an int in [0, 52) (numpy's limit) or ``Ellipsis``."""


class SublistTypeError(EincTypeError):
    """In the sublist form each subscript is an int or ``Ellipsis``; a float, bool or str is refused."""


class SizeMismatch(ShapeMismatch):
    """Sizes of one label disagree between operands (size 1 broadcasts); check the operand shapes."""


class DiagonalSizeMismatch(ShapeMismatch):
    """A label repeated within one operand (a diagonal) needs the same size on each of its axes."""


class EllipsisBroadcastError(ShapeMismatch):
    """The dimensions covered by '...' do not broadcast together (sizes must match or be 1)."""


#: Syntax errors the parser reports as an unexpected token, named by example inputs.
SYNTAX_EXAMPLES: dict[type[SubscriptsError], list[str]] = {
    DoubleArrow: ["ij->i->j", "->->", "i->j->", "ij,jk->ik->"],
    CommaInOutput: ["ij,jk->i,k", "i->,", "->,", "i->i,"],
}

#: Characters no token accepts, by the kind of mistake they usually are.
CHARACTER_KINDS: dict[str, type[SubscriptsError]] = {".": StrayDot, "-": BrokenArrow, ">": BrokenArrow}

#: Every error kind with example inputs ``(subscripts, shapes)`` that raise it; the tests check each row.
EXAMPLES: dict[type, list[tuple[str, list | None]]] = {
    InvalidCharacter: [("i1", None), ("ij->i$", None), ("i\tj", None)],
    StrayDot: [("i.j", None), ("i....j", None), (". ..i", None)],
    BrokenArrow: [("ij- >ji", None), ("ij>ji", None), ("ij-", None)],
    DoubleArrow: [(t, None) for t in SYNTAX_EXAMPLES[DoubleArrow]],
    CommaInOutput: [(t, None) for t in SYNTAX_EXAMPLES[CommaInOutput]],
    TooManyEllipses: [("i...j...", None), ("...->......", None)],
    RepeatedOutputLabel: [("ij->ii", None)],
    UnknownOutputLabel: [("ij->k", None), ("ij->I", None)],
    TooManyOperands: [(",".join(["i"] * 64), None)],
    OperandCountMismatch: [("ij,jk", [(2, 3)]), ("ij", [(2, 3), (3,)])],
    RankMismatch: [("ijk", [(2, 3)]), ("ij", [(2, 3, 4)]), ("...ijk", [(2, 3)])],
    EllipsisNotInOutput: [("...a->a", [(2, 3)])],
    SizeMismatch: [("ij,jk", [(2, 3), (4, 5)]), ("i,i,i", [(1,), (3,), (4,)])],
    DiagonalSizeMismatch: [("ii->i", [(2, 3)]), ("ii", [(1, 3)])],
    EllipsisBroadcastError: [("...i,...i", [(2, 3), (4, 3)])],
}


# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class Term:
    """A label (one letter) or an ellipsis, at character ``pos`` of the subscripts text."""

    text: str
    pos: int

    @property
    def is_ellipsis(self) -> bool:
        return self.text == ELLIPSIS


@dataclass(frozen=True)
class TermList:
    """The subscripts of one operand, or of the output: terms and the text range ``[start, end)``."""

    terms: tuple[Term, ...]
    start: int
    end: int

    @property
    def labels(self) -> str:
        return "".join(t.text for t in self.terms if not t.is_ellipsis)

    @property
    def ellipses(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.is_ellipsis)


@dataclass(frozen=True)
class SubscriptsAst:
    operands: tuple[TermList, ...]
    output: TermList | None  # None: implicit output
    arrow: int | None  # position of '->'


class _ToAst(Transformer):
    """Parse tree -> frozen dataclasses; empty operands get their range from the commas."""

    def __init__(self, text: str):
        super().__init__()
        self._text = text

    @staticmethod
    def _terms(items) -> tuple[Term, ...]:
        return tuple(Term(str(tok), tok.start_pos) for tok in items)

    def operand(self, items):
        return ("operand", self._terms(items))

    def output(self, items):
        return ("output", self._terms(items))

    @staticmethod
    def _list(terms, start: int, end: int) -> TermList:
        """A term list spanning its terms (no surrounding spaces), or ``[start, end)`` when empty."""
        if terms:
            return TermList(terms, terms[0].pos, terms[-1].pos + len(terms[-1].text))
        return TermList(terms, start, end)

    def inputs(self, items):
        groups, start, pending = [], 0, ()  # (terms, start, end) per operand; a COMMA closes the one before it
        for it in items:
            if isinstance(it, Token):
                groups.append((pending, start, it.start_pos))
                start = it.end_pos
            else:
                pending = it[1]
        groups.append((pending, start, None))
        return groups

    def start(self, items):
        groups = items[0]
        n = len(self._text)
        arrow = items[1] if len(items) > 1 else None
        terms, start, _ = groups[-1]
        groups[-1] = (terms, start, n if arrow is None else arrow.start_pos)
        ops = tuple(self._list(*g) for g in groups)
        if arrow is None:
            return SubscriptsAst(ops, None, None)
        return SubscriptsAst(ops, self._list(items[2][1], arrow.end_pos, n), arrow.start_pos)


@functools.lru_cache(maxsize=1)
def grammar() -> Lark:
    """The subscripts parser, built once per process from ``subscripts.lark``."""
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


@functools.lru_cache(maxsize=1)
def grammar_text() -> str:
    """The ``.lark`` source (for hypothesis' ``from_lark`` in the fuzzer)."""
    return (Path(__file__).with_name("subscripts.lark")).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=4096)
def _parse_syntax(text: str) -> SubscriptsAst:
    return _ToAst(text).transform(grammar().parse(text))


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class ParsedEinsum:
    """A parsed einsum: one label string per operand and an explicit output.

    With shapes, ellipses are expanded into fresh letters (``ellipsis_labels``, the broadcast
    ellipsis dimensions, outermost first) and ``sizes`` maps every label to its broadcast size.
    Without shapes (``expanded`` False) label strings keep ``'...'`` and ``sizes`` is empty.
    """

    inputs: tuple[str, ...]
    output: str
    sizes: tuple[tuple[str, int], ...]
    shapes: tuple[tuple[int, ...], ...] | None
    expanded: bool
    implicit: bool
    ellipsis_labels: str = ""
    text: str = ""
    #: [start, end) of each operand's subscripts in ``text``
    operand_spans: tuple[tuple[int, int], ...] = ()

    @property
    def has_ellipsis(self) -> bool:
        return bool(self.ellipsis_labels) or any(ELLIPSIS in s for s in self.inputs + (self.output,))

    @property
    def subscripts(self) -> str:
        return ",".join(self.inputs) + "->" + self.output

    @property
    def size_of(self) -> dict[str, int]:
        return dict(self.sizes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        self._need_shapes("output_shape")
        d = dict(self.sizes)
        return tuple(d[c] for c in self.output)

    def _need_shapes(self, what: str) -> None:
        if self.shapes is None or not self.expanded:
            raise Unsupported(f"{what} needs operand shapes; parse with shapes= to expand '...' and size labels")

    def to_program(self, dtypes, result_dtype: str | None = None) -> Program:
        """A one-step program ``out = einsum(t0, t1, ...)``.

        ``result_dtype`` (numpy's ``dtype=``) casts every operand of another dtype to it first,
        as numpy does; otherwise the result dtype is numpy's promotion of ``dtypes``.
        """
        self._need_shapes("to_program")
        dtypes = [str(d) for d in dtypes]
        if len(dtypes) != len(self.inputs):
            raise ParseError(f"to_program: {len(self.inputs)} operands but {len(dtypes)} dtypes")
        values = tuple(Value(f"t{i}", TensorType(s, d)) for i, (s, d) in enumerate(zip(self.shapes, dtypes)))
        body: list = []
        names = [v.name for v in values]
        if result_dtype is not None:
            for i, v in enumerate(values):
                if v.type.dtype != result_dtype:
                    body.append(Cast(f"c{i}", v.name, TensorType(v.type.shape, result_dtype)))
                    names[i] = f"c{i}"
            dt = result_dtype
        else:
            dt = _promote(*dtypes)
        body.append(Einsum("out", tuple(names), self.inputs, self.output, TensorType(self.output_shape, dt)))
        return Program(values, tuple(body), ("out",))


# --------------------------------------------------------------------------- parsing


class _Where:
    """Turns positions in the subscripts text into spans in the enclosing source."""

    def __init__(self, text: str, filename: str, source: str | None, offset: int):
        self.text = text
        self.filename = filename
        self.source = text if source is None else source
        self.offset = 0 if source is None else offset

    def span(self, pos: int, length: int = 1) -> Span:
        return Span.at(self.source, self.offset + pos, max(1, length), self.filename)

    def range(self, start: int, end: int) -> Span:
        if end <= start:  # an empty operand: point at where it would be
            return self.span(start, 1)
        return self.span(start, end - start)


def _syntax_error(e: UnexpectedInput, text: str, where: _Where) -> SubscriptsError:
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream]
        kind = CHARACTER_KINDS.get(ch, InvalidCharacter)
        if kind is StrayDot:
            msg = "'.' is not part of an ellipsis: write '...' (three dots, no spaces)"
        elif kind is BrokenArrow:
            msg = f"'{ch}' is not part of '->': write the arrow as '->' (no space inside)"
        else:
            msg = f"invalid subscript {ch!r}: subscripts must be letters (a-z, A-Z), '...', ',' or '->'"
        return kind(msg, where.span(e.pos_in_stream))
    kind = e.match_examples(grammar().parse, SYNTAX_EXAMPLES, token_type_match_fallback=True)
    tok = getattr(e, "token", None)
    pos = tok.start_pos if isinstance(tok, Token) and tok.start_pos is not None else len(text)
    length = len(tok) if isinstance(tok, Token) and len(tok) else 1
    if kind is None:  # not in the table: name the token
        kind = DoubleArrow if isinstance(tok, Token) and tok.type == "ARROW" else CommaInOutput
    if kind is DoubleArrow:
        return DoubleArrow("'->' appears twice: an einsum has one output", where.span(pos, length))
    return CommaInOutput("',' after '->': the output is one term (commas separate operands)", where.span(pos, length))


def parse_syntax(text: str, *, filename: str = "<expr>", source: str | None = None, offset: int = 0) -> SubscriptsAst:
    """Only the syntax stage: a ``SubscriptsAst`` or a positioned ``SubscriptsError``."""
    if not isinstance(text, str):
        raise EincTypeError(f"einsum subscripts must be a str, not {type(text).__name__}")
    where = _Where(text, filename, source, offset)
    try:
        return _parse_syntax(text)
    except (UnexpectedCharacters, UnexpectedToken, UnexpectedEOF) as e:
        raise _syntax_error(e, text, where) from None


def _check_terms(ast: SubscriptsAst, where: _Where) -> None:
    """Checks that need no shapes: ellipses, output labels, operand limit."""
    for k, op in enumerate(ast.operands):
        if len(op.ellipses) > 1:
            e = op.ellipses[1]
            raise TooManyEllipses(f"operand {k} has more than one ellipsis '...'", where.span(e.pos, 3))
    if len(ast.operands) > MAX_OPERANDS:
        start = ast.operands[MAX_OPERANDS].start
        raise TooManyOperands(f"too many operands: {len(ast.operands)} (numpy.einsum takes at most {MAX_OPERANDS})",
                              where.span(start))
    if ast.output is None:
        return
    out = ast.output
    if len(out.ellipses) > 1:
        e = out.ellipses[1]
        raise TooManyEllipses("the output has more than one ellipsis '...'", where.span(e.pos, 3))
    seen_in = set("".join(op.labels for op in ast.operands))
    seen_out: set[str] = set()
    for t in out.terms:
        if t.is_ellipsis:
            continue
        if t.text in seen_out:
            raise RepeatedOutputLabel(f"output label {t.text!r} appears more than once", where.span(t.pos))
        seen_out.add(t.text)
        if t.text not in seen_in:
            raise UnknownOutputLabel(f"output label {t.text!r} appears in no operand", where.span(t.pos))


def _implicit_output(ast: SubscriptsAst) -> str:
    """numpy's implicit output: labels seen exactly once, in code-point order (A-Z before a-z)."""
    counts: dict[str, int] = {}
    for op in ast.operands:
        for c in op.labels:
            counts[c] = counts.get(c, 0) + 1
    return "".join(sorted(c for c, n in counts.items() if n == 1))


def _fmt_shape(s) -> str:
    return "(" + ", ".join(map(str, s)) + ("," if len(s) == 1 else "") + ")"


def parse_subscripts(
    text: str,
    shapes,
    *,
    filename: str = "<expr>",
    source: str | None = None,
    offset: int = 0,
    sum_ellipsis: bool = False,
) -> ParsedEinsum:
    """Parse numpy einsum subscripts against operand ``shapes`` (or ``None`` for syntax only).

    ``source``/``offset``: where ``text`` sits in a larger text, so spans point into it.
    ``sum_ellipsis``: accept an explicit output without '...' while operands have ellipsis
    dimensions, summing them (what numpy does when ``optimize`` is not False); by default this
    is refused like ``numpy.einsum(..., optimize=False)`` refuses it.
    """
    where = _Where(text, filename, source, offset)
    ast = parse_syntax(text, filename=filename, source=source, offset=offset)
    _check_terms(ast, where)
    spans = tuple((op.start, op.end) for op in ast.operands)
    implicit = ast.output is None
    if shapes is None:
        inputs = tuple("".join(t.text for t in op.terms) for op in ast.operands)
        if implicit:
            ell = ELLIPSIS if any(op.ellipses for op in ast.operands) else ""
            output = ell + _implicit_output(ast)
        else:
            output = "".join(t.text for t in ast.output.terms)
        return ParsedEinsum(inputs, output, (), None, False, implicit, "", text, spans)

    shapes = tuple(tuple(int(d) for d in s) for s in shapes)
    for k, s in enumerate(shapes):
        if any(d < 0 for d in s):
            raise ShapeMismatch(f"operand {k} has a negative size in its shape {_fmt_shape(s)}")
    n_given, n_named = len(shapes), len(ast.operands)
    if n_given > MAX_OPERANDS:
        raise TooManyOperands(f"too many operands: {n_given} (numpy.einsum takes at most {MAX_OPERANDS})",
                              where.span(len(text)))
    if n_given != n_named:
        if n_given < n_named:
            op = ast.operands[n_given]  # the first term with no operand
            span = where.range(op.start, op.end)
        else:
            span = where.span(ast.arrow if ast.arrow is not None else len(text))
        raise OperandCountMismatch(
            f"the subscripts name {n_named} operand{'s' * (n_named != 1)} but {n_given} "
            f"{'were' if n_given != 1 else 'was'} given", span)

    # ranks and ellipsis ranks
    ell_ranks: list[int] = []
    for k, (op, shape) in enumerate(zip(ast.operands, shapes)):
        nl = len(op.labels)
        if op.ellipses:
            if len(shape) < nl:
                raise RankMismatch(
                    f"operand {k} has {len(shape)} dimension{'s' * (len(shape) != 1)} (shape {_fmt_shape(shape)}) "
                    f"but its subscripts name {nl}", where.range(op.start, op.end))
            ell_ranks.append(len(shape) - nl)
        else:
            if len(shape) != nl:
                hint = "; add '...' to broadcast the extra dimensions" if len(shape) > nl else ""
                raise RankMismatch(
                    f"operand {k} has {len(shape)} dimension{'s' * (len(shape) != 1)} (shape {_fmt_shape(shape)}) "
                    f"but its subscripts name {nl}{hint}", where.range(op.start, op.end))
            ell_ranks.append(0)
    m = max(ell_ranks, default=0)
    if ast.output is not None and not ast.output.ellipses and m > 0 and not sum_ellipsis:
        k = max(range(len(ell_ranks)), key=lambda i: ell_ranks[i])
        raise EllipsisNotInOutput(
            f"operand {k} has {m} dimension{'s' * (m != 1)} under '...' but the output has no '...' to keep them "
            "(numpy.einsum refuses to sum them): add '...' to the output", where.span(ast.arrow, 2))

    used = set("".join(op.labels for op in ast.operands))
    fresh = [c for c in LABELS if c not in used]
    if m > len(fresh):
        raise Unsupported(
            f"the expression uses {len(used)} labels and {m} ellipsis dimensions; einc's IR has {len(LABELS)} labels "
            "in all", where.span(0, len(text)))
    ell = "".join(fresh[:m])

    # sizes: ellipsis dims broadcast right-aligned, labels broadcast size 1, diagonals must agree
    sizes: dict[str, int] = {}
    first: dict[str, tuple[int, int, int]] = {}  # label -> (operand, axis, size) of the size it took
    inputs: list[str] = []
    for k, (op, shape, r) in enumerate(zip(ast.operands, shapes, ell_ranks)):
        labs, axes_pos = [], []
        ax = 0
        for t in op.terms:
            if t.is_ellipsis:
                for j in range(r):
                    labs.append(ell[m - r + j])
                    axes_pos.append(t)
                    ax += 1
            else:
                labs.append(t.text)
                axes_pos.append(t)
                ax += 1
        inputs.append("".join(labs))
        own: dict[str, tuple[int, int]] = {}
        for axis, (c, t) in enumerate(zip(labs, axes_pos)):
            n = shape[axis]
            if c in own and own[c][1] != n:
                raise DiagonalSizeMismatch(
                    f"label {c!r} is repeated in operand {k} with different sizes: axis {own[c][0]} has "
                    f"{own[c][1]}, axis {axis} has {n} (shape {_fmt_shape(shape)})", where.span(t.pos, len(t.text)))
            own.setdefault(c, (axis, n))
            if c not in sizes or (sizes[c] == 1 and n != 1):
                sizes[c] = n
                first[c] = (k, axis, n)
            elif n != 1 and n != sizes[c]:
                k0, a0, n0 = first[c]
                if t.is_ellipsis:
                    raise EllipsisBroadcastError(
                        f"the dimensions under '...' do not broadcast: operand {k0} (shape {_fmt_shape(shapes[k0])}) "
                        f"has size {n0} at axis {a0}, operand {k} (shape {_fmt_shape(shape)}) has size {n} at axis "
                        f"{axis}", where.span(t.pos, 3))
                raise SizeMismatch(
                    f"sizes of label {c!r} disagree: {n0} in operand {k0} (axis {a0}) vs {n} in operand {k} "
                    f"(axis {axis}); check the operand shapes", where.span(t.pos))
    for c in ell:
        sizes.setdefault(c, 1)

    if implicit:
        output = ell + _implicit_output(ast)
    else:
        output = "".join(ell if t.is_ellipsis else t.text for t in ast.output.terms)
    order = [c for c in LABELS if c in sizes]
    return ParsedEinsum(tuple(inputs), output, tuple((c, sizes[c]) for c in order), shapes, True, implicit, ell,
                        text, spans)


# --------------------------------------------------------------------------- sublist form


def _sublist_label(x, which: str) -> str:
    import operator

    if x is Ellipsis:
        return ELLIPSIS
    if isinstance(x, bool) or not hasattr(type(x), "__index__"):
        raise SublistTypeError(f"{which}: each subscript must be an int in [0, 52) or Ellipsis, not {x!r}")
    i = operator.index(x)
    if not 0 <= i < len(LABELS):
        raise InvalidSublist(f"{which}: subscript {i} is not within the valid range [0, 52)")
    # numpy maps 0..25 to 'A'..'Z' and 26..51 to 'a'..'z' (so implicit outputs sort by number)
    return chr(ord("A") + i) if i < 26 else chr(ord("a") + i - 26)


def _sublist(lst, which: str) -> str:
    try:
        items = list(lst)
    except TypeError:
        raise SublistTypeError(f"{which}: a sublist is a list of ints in [0, 52) or Ellipsis, not {lst!r}") from None
    return "".join(_sublist_label(x, which) for x in items)


def sublist_to_subscripts(*args) -> tuple[str, list]:
    """numpy's interleaved form ``(a, [0, 1], b, [1, 2], [0, 2])`` -> ``('Ab,bc->Ac'-style subscripts, [a, b])``.

    Integers 0..51 become letters as numpy maps them (0 -> 'A', 26 -> 'a'); ``Ellipsis`` becomes '...'.
    A trailing list after the last (operand, sublist) pair is the explicit output.
    """
    if len(args) < 2:
        raise InvalidSublist("einsum needs the subscripts and at least one operand, or (operand, sublist) pairs")
    operands = list(args[0::2])
    subs = list(args[1::2])
    out = None
    if len(args) % 2 == 1:
        out = operands.pop()
    terms = [_sublist(s, f"sublist of operand {i}") for i, s in enumerate(subs)]
    text = ",".join(terms)
    if out is not None:
        text += "->" + _sublist(out, "output sublist")
    return text, operands


__all__ = [
    "ParsedEinsum", "parse_subscripts", "parse_syntax", "sublist_to_subscripts", "grammar", "grammar_text",
    "SubscriptsAst", "Term", "TermList", "SYNTAX_EXAMPLES", "CHARACTER_KINDS", "EXAMPLES", "MAX_OPERANDS",
    "SubscriptsError", "InvalidCharacter", "StrayDot", "BrokenArrow", "DoubleArrow", "CommaInOutput",
    "TooManyEllipses", "RepeatedOutputLabel", "UnknownOutputLabel", "OperandCountMismatch", "TooManyOperands",
    "RankMismatch", "EllipsisNotInOutput", "InvalidSublist", "SublistTypeError", "SizeMismatch",
    "DiagonalSizeMismatch", "EllipsisBroadcastError",
]
