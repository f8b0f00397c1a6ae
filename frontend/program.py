"""The ``.ein`` program format: parse a text of named, typed tensors into a verified ``Program``.

    # attention: scores, then the weighted sum of values
    input q: float32[8, 12, 128, 64]
    input k: float32[8, 12, 128, 64]
    input v: float32[8, 12, 128, 64]
    s: float32[8, 12, 128, 128] = einsum("bhqd,bhkd->bhqk", q, k)
    o = einsum("bhqk,bhkd->bhqd", s, v)
    output o, s

One statement a line: ``input NAME: TYPE``, ``NAME [: TYPE] = einsum("SUBSCRIPTS", NAME, ...)``,
``NAME [: TYPE] = cast(NAME, DTYPE)``, and one ``output NAME, ...`` last.  A type is
``DTYPE[SIZE, ...]`` (``float32[]`` is 0-d).  Subscripts are numpy's (implicit output, ``...``,
repeated labels).  An annotation is checked against the type the step computes.  A NAME is an ASCII
identifier; a leading byte order mark is skipped.

Parsing runs in two stages: the Lark grammar (``program.lark``, LALR) turns the text into
statement records that keep their tokens, then ``_Builder`` resolves names, types each step and
raises a positioned ``ParseError`` (or ``ShapeMismatch`` from the subscripts parser) on the first
problem.  Syntax errors are named by example tables, as lark's ``match_examples`` does.
"""
from __future__ import annotations

import decimal
import difflib
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from einc.errors import EincError, ParseError, Span
from einc.ir.nodes import Cast, Einsum, Program, Value
from einc.ir.types import DTYPES, TensorType, result_dtype, too_many_elements
from einc.ir.verify import verify

# --------------------------------------------------------------------------------------------
# Error kinds.  Each is a ParseError; the docstring is the advice, ``summary`` the message head.


class ProgramSyntaxError(ParseError):
    """The text does not follow the ``.ein`` grammar; the caret shows the first token that does not fit."""

    summary = "syntax error"


class MissingColon(ProgramSyntaxError):
    """An input declaration is ``input NAME: DTYPE[SIZES]``."""

    summary = "expected ':' and a type after the input's name"


class MissingType(ProgramSyntaxError):
    """A type is a dtype followed by sizes in brackets, e.g. ``float32[2, 3]`` (``float32[]`` is 0-d)."""

    summary = "expected a type such as float32[2, 3]"


class MissingSizes(ProgramSyntaxError):
    """A type needs its sizes in brackets after the dtype; write ``float32[]`` for a 0-d tensor."""

    summary = "expected '[' and the sizes after the dtype"


class BadSize(ProgramSyntaxError):
    """Sizes are non-negative integers separated by commas, closed by ']'."""

    summary = "expected a size (a non-negative integer) or ']'"


class UnclosedBracket(ProgramSyntaxError):
    """A type's size list ends with ']'."""

    summary = "expected ',' or ']' in the sizes"


class MissingEquals(ProgramSyntaxError):
    """A step is ``NAME = einsum(...)`` or ``NAME: TYPE = cast(...)``."""

    summary = "expected '=' after the step's name or type"


class MissingCall(ProgramSyntaxError):
    """The right-hand side of a step is ``einsum("SUBSCRIPTS", operands...)`` or ``cast(NAME, DTYPE)``."""

    summary = "expected einsum(...) or cast(...) after '='"


class MissingParen(ProgramSyntaxError):
    """A call's arguments are in parentheses, separated by commas."""

    summary = "expected '(' after the function name"


class UnclosedCall(ProgramSyntaxError):
    """A call's argument list ends with ')' on the same line; arguments are separated by commas."""

    summary = "expected ',' or ')' in the arguments"


class BadArgument(ProgramSyntaxError):
    """Arguments are names or the quoted subscripts string."""

    summary = "expected an argument (a name or a quoted string)"


class BadOutputList(ProgramSyntaxError):
    """The output statement is ``output NAME, NAME, ...``."""

    summary = "expected a name in the output list"


class ExtraText(ProgramSyntaxError):
    """One statement per line: start a new line for the next statement."""

    summary = "unexpected text after the end of the statement"


class UnterminatedString(ProgramSyntaxError):
    """The subscripts string needs a closing quote on the same line."""

    summary = "unterminated string: close the quote on the same line"


class BadCharacter(ProgramSyntaxError):
    """Names are ASCII identifiers; strings are in quotes; comments start with '#'."""

    summary = "unexpected character"


class BadStart(ProgramSyntaxError):
    """A statement starts with a name: ``input``, ``output``, or the name the step defines."""

    summary = "expected a statement: 'input NAME: TYPE', 'NAME = einsum(...)', 'NAME = cast(...)' or 'output NAMES'"


class UnknownStatement(ParseError):
    """A statement starts with ``input``, ``output``, or a new name followed by ``=`` or ``:``."""


class UnknownFunction(ParseError):
    """A step calls ``einsum`` or ``cast``."""


class UnknownDtype(ParseError):
    """Dtypes are numpy names: bool, int8..int64, uint8..uint64, float16, bfloat16, float32, float64,
    complex64, complex128."""


class UndefinedName(ParseError):
    """A name is used before an input declaration or a step defines it."""


class Redefinition(ParseError):
    """Every name is defined once (inputs and steps alike); pick a new name for the new value."""


class AnnotationMismatch(ParseError):
    """A step's written type differs from the type its einsum or cast computes; fix the annotation or the step."""


class OperandCount(ParseError):
    """An einsum takes one operand per comma-separated group of its subscripts; a cast takes a name and a dtype."""


class BadCallArgument(ParseError):
    """``einsum`` takes the subscripts string first, then operand names; ``cast`` takes a name, then a dtype."""


class BadOutputs(ParseError):
    """A program ends with one ``output NAME, ...`` statement naming defined values."""


class TooLarge(ParseError):
    """A tensor has 2^63 or more elements (or a size of 2^63 or more): einc indexes with 64-bit integers."""


# Syntax error kinds by example: a broken text fails in the same parser state as its examples.
SYNTAX_EXAMPLES: dict[type[ProgramSyntaxError], list[str]] = {
    MissingColon: ["input a float32[2]", "input a = ", "input a[2]", "input a ="],
    MissingType: ["input a: ", "input a:\n", "input a: [2]", "x: = einsum('i', a)", "input a: 3"],
    MissingSizes: ["input a: float32", "input a: float32\n", "input a: float32 2", "x: float32 = cast(a, b)"],
    BadSize: ["input a: float32[", "input a: float32[,", "input a: float32[2,]", "input a: float32[x]",
              "input a: float32[2, ,", "input a: float32[-1]", "input a: float32[2, -1]",
              "input a: float32[2, 3,]", "input a: float32[2, 3, -1]", "input a: float32[2, 3, x]",
              "input a: float32[\n"],
    UnclosedBracket: ["input a: float32[2", "input a: float32[2\n", "input a: float32[2 3]", "input a: float32[2;",
                      "input a: float32[2, 3 4]", "input a: float32[2, 3\n", "input a: float32[2, 3"],
    MissingEquals: ["x: float32[2] einsum", "x: float32[2]\n", "x: float32[2]", "x(", "x\n", "x",
                    "x: float32[2] ("],
    MissingCall: ["x = ", "x = \n", "x = 'ij'", "x = (", "x = = ", "x: float32[2] = \n"],
    MissingParen: ["x = einsum", "x = einsum\n", "x = einsum 'ij'", "x = einsum[", "x = einsum x"],
    UnclosedCall: ["x = einsum('i', a", "x = einsum('i', a\n", "x = einsum('i' a", "x = cast(a b",
                   "x = einsum('i', a b)", "x = einsum('ij'", "x = einsum(a",
                   "x = einsum('i', a, b", "x = einsum('i', a, b\n", "x = einsum('i', a, b c"],
    BadArgument: ["x = einsum(", "x = einsum(,", "x = einsum('i',", "x = einsum('i', )", "x = einsum('i',\n",
                  "x = einsum(\n", "x = einsum('i', 3)",
                  "x = einsum('i', a, )", "x = einsum('i', a,\n", "x = einsum('i', a, 3)", "x = einsum('i', a,"],
    BadOutputList: ["output a,", "output a,\n", "output a, ,", "output a, 3", "output a, b,", "output a, b,\n",
                    "output a, b, 3", "output a, b c", "output a, b, c d", "output a, b ="],
    BadStart: ["(", "]", "0", "= einsum", ": float32[2]", "input a: float32[2]\n(", "input a: float32[2]\n0",
               "input a: float32[2]\n="],
    ExtraText: ["input a: float32[2] b", "input a: float32[2] =", "x = einsum('i', a) b", "x = cast(a, b) (",
                "input a: float32[2] :"],
}


def _top_state(exc: UnexpectedInput):
    state = getattr(exc, "state", None)
    return getattr(state, "position", state)


@functools.lru_cache(maxsize=None)
def _example_states() -> tuple:
    """((top parser state, accepted terminals), kind) of every example.  The top LALR state decides
    what may come next, so it is compared without the stack depth (which grows with list lengths)."""
    out = []
    for kind, examples in SYNTAX_EXAMPLES.items():
        for text in examples:
            try:
                _lark().parse(text)
            except UnexpectedInput as e:
                out.append((_key(e), kind))
            else:
                raise AssertionError(f"syntax example {text!r} of {kind.__name__} parses")
    return tuple(out)


def _accepts(exc: UnexpectedInput) -> frozenset:
    return frozenset(getattr(exc, "accepts", None) or getattr(exc, "allowed", None) or ())


def _key(exc: UnexpectedInput):
    # the accepted set tells apart contexts that LALR merged into one state (a type in a declaration
    # or in an annotated step)
    return _top_state(exc), _accepts(exc)


def _kind_of(exc: UnexpectedInput, text: str) -> type[ProgramSyntaxError]:
    if isinstance(exc, UnexpectedCharacters) and text[exc.pos_in_stream:exc.pos_in_stream + 1] in ("'", '"'):
        if "STRING" in (exc.allowed or ()):
            return UnterminatedString
    key = _key(exc)
    for k, kind in _example_states():
        if k == key:
            return kind
    for k, kind in _example_states():  # no example in this state: one that expected the same tokens
        if k[1] == key[1]:
            return kind
    if isinstance(exc, UnexpectedCharacters):
        return BadCharacter
    return ProgramSyntaxError


# --------------------------------------------------------------------------------------------
# Stage 1: text -> statement records (tokens kept for positions)


@dataclass(frozen=True)
class TypeRec:
    dtype: Token
    sizes: tuple[Token, ...]
    end: int  # offset just past ']'


@dataclass(frozen=True)
class CallRec:
    func: Token
    args: tuple[Token, ...]
    end: int  # offset just past ')'


@dataclass(frozen=True)
class DeclRec:
    keyword: Token
    name: Token
    type: TypeRec


@dataclass(frozen=True)
class OutputsRec:
    keyword: Token
    names: tuple[Token, ...]


@dataclass(frozen=True)
class AssignRec:
    name: Token
    type: TypeRec | None
    call: CallRec


@v_args(inline=True)
class _ToRecords(Transformer):
    def start(self, *stmts):
        return list(stmts)

    def decl(self, keyword, name, typ):
        return DeclRec(keyword, name, typ)

    def outputs(self, keyword, *names):
        return OutputsRec(keyword, names)

    def assign(self, name, typ, call):
        return AssignRec(name, typ, call)

    def type(self, dtype, *rest):
        *sizes, rsqb = rest
        return TypeRec(dtype, tuple(s for s in sizes if s is not None), rsqb.end_pos)

    def call(self, func, *rest):
        *args, rpar = rest
        return CallRec(func, tuple(a for a in args if a is not None), rpar.end_pos)


@functools.lru_cache(maxsize=None)
def _lark() -> Lark:
    grammar = Path(__file__).with_name("program.lark").read_text()
    return Lark(grammar, parser="lalr", maybe_placeholders=True)


_TERMINAL_WORDS = {"NAME": "a name", "INT": "a size", "STRING": "a quoted string", "_NL": "end of line",
                   "$END": "end of file"}


def _describe_terminals(names) -> str:
    out = set()
    for n in names:
        if n in _TERMINAL_WORDS:
            out.add(_TERMINAL_WORDS[n])
        else:
            try:
                out.add(repr(_lark().get_terminal(n).pattern.value))
            except KeyError:
                out.add(n)
    return ", ".join(sorted(out))


def _syntax_error(e: UnexpectedInput, text: str, filename: str) -> ParseError:
    kind = _kind_of(e, text)
    pos = e.pos_in_stream if e.pos_in_stream is not None else len(text)
    line_start = text.rfind("\n", 0, pos) + 1
    ch = text[pos:pos + 1]
    if isinstance(e, UnexpectedCharacters) and not ch.isascii() and ("_" + ch).isidentifier():
        # a letter Python allows in names (é, 中) but NAME does not: say the rule, whatever the parser state
        return BadCharacter(f"unexpected character {ch!r}: names are ASCII letters, digits and '_', "
                            "not starting with a digit", Span.at(text, pos, 1, filename))
    if kind is MissingColon:  # "NAME NAME ..." starts an input or an output statement: which one?
        first = text[line_start:].split(None, 1)[0]
        if first == "output":
            kind = BadOutputList
        elif first != "input":
            at = line_start + len(text[line_start:]) - len(text[line_start:].lstrip())
            return UnknownStatement(f"unknown statement {first!r}{_near(first, ['input', 'output'])}; a statement "
                                    "is 'input NAME: TYPE', 'NAME = einsum(...)', 'NAME = cast(...)' or "
                                    "'output NAME, ...'", Span.at(text, at, len(first), filename))
    if isinstance(e, UnexpectedToken):
        tok = e.token
        pos = tok.start_pos if tok.start_pos is not None else len(text)
        length = 1 if tok.type in ("_NL", "$END") else max(1, len(tok))
        found = "end of line" if tok.type == "_NL" else "end of file" if tok.type == "$END" else repr(str(tok))
        if kind is BadOutputList and tok.type == "NAME":
            msg = f"expected ',' between output names, found {found}"
        elif kind is ProgramSyntaxError:
            msg = f"{kind.summary}: found {found}, expected {_describe_terminals(e.accepts or e.expected)}"
        else:
            msg = f"{kind.summary}, found {found}"
        return kind(msg, Span.at(text, pos, length, filename))
    length = 1
    if kind is UnterminatedString:
        msg = kind.summary
    elif kind in (ProgramSyntaxError, BadCharacter):
        kind = BadCharacter
        msg = f"{kind.summary} {ch!r}, expected {_describe_terminals(getattr(e, 'allowed', None) or ())}"
    else:
        msg = f"{kind.summary}, found {ch!r}"
    return kind(msg, Span.at(text, pos, length, filename))


def _records(text: str, filename: str) -> list:
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, filename) from None
    return _ToRecords().transform(tree)


# --------------------------------------------------------------------------------------------
# Stage 2: records -> verified Program


def _near(word: str, choices) -> str:
    m = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {m[0]!r}?)" if m else ""


class _Builder:
    def __init__(self, text: str, filename: str):
        self.text, self.filename = text, filename
        self.env: dict[str, TensorType] = {}
        self.where: dict[str, Token] = {}
        self.inputs: list[Value] = []
        self.body: list = []
        self.outputs: tuple[str, ...] | None = None
        self.output_tok: Token | None = None
        self.last_end = 0  # offset just past the last statement

    def span(self, start: int, end: int | None = None) -> Span:
        length = 1 if end is None else max(1, end - start)
        return Span.at(self.text, start, length, self.filename)

    def tok_span(self, tok: Token) -> Span:
        return self.span(tok.start_pos, tok.end_pos)

    # -- helpers
    def define(self, tok: Token, typ: TensorType) -> None:
        name = str(tok)
        if name in self.env:
            first = self.where[name]
            raise Redefinition(f"{name!r} is already defined (line {first.line})", self.tok_span(tok))
        self.env[name] = typ
        self.where[name] = tok

    def lookup(self, tok: Token) -> TensorType:
        name = str(tok)
        if tok.type != "NAME":
            raise BadCallArgument(f"expected a tensor name, found {name}", self.tok_span(tok))
        if name not in self.env:
            raise UndefinedName(f"{name!r} is not defined{_near(name, self.env)}", self.tok_span(tok))
        return self.env[name]

    def dtype(self, tok: Token) -> str:
        name = str(tok)
        if tok.type != "NAME" or name not in DTYPES:
            raise UnknownDtype(f"unknown dtype {name}{_near(name, DTYPES)}", self.tok_span(tok))
        return name

    def type(self, rec: TypeRec) -> TensorType:
        dtype = self.dtype(rec.dtype)
        shape = tuple(int(decimal.Decimal(s)) for s in rec.sizes)  # int(str) refuses over 4300 digits
        why = too_many_elements(shape)
        if why:
            raise TooLarge(f"shape has {why}", self.span(rec.sizes[0].start_pos, rec.sizes[-1].end_pos))
        return TensorType(shape, dtype)

    # -- statements
    def statement(self, rec) -> None:
        if self.outputs is not None:
            start = rec.keyword if not isinstance(rec, AssignRec) else rec.name
            raise BadOutputs(f"statement after the output statement (line {self.output_tok.line}); "
                             "the output statement comes last", self.tok_span(start))
        if isinstance(rec, DeclRec):
            if str(rec.keyword) == "output":
                raise BadOutputs("the output statement names values and takes no type: write 'output NAME, ...'",
                                 self.span(rec.name.end_pos, rec.type.end))
            self.keyword(rec.keyword, "input")
            typ = self.type(rec.type)
            self.define(rec.name, typ)
            self.inputs.append(Value(str(rec.name), typ))
        elif isinstance(rec, OutputsRec):
            if str(rec.keyword) == "input":
                end = rec.names[-1].end_pos
                what = "after the input's name" if len(rec.names) == 1 else "for each input (one a line)"
                raise MissingColon(f"{MissingColon.summary.split(' after')[0]} {what}", self.span(end))
            self.keyword(rec.keyword, "output")
            for tok in rec.names:
                self.lookup(tok)
            self.outputs = tuple(str(t) for t in rec.names)
            self.output_tok = rec.keyword
        else:
            self.assign(rec)
        self.last_end = (rec.type.end if isinstance(rec, DeclRec) else rec.names[-1].end_pos
                         if isinstance(rec, OutputsRec) else rec.call.end)

    def keyword(self, tok: Token, want: str) -> None:
        if str(tok) != want:
            hint = _near(str(tok), ["input", "output"]) or f"; expected {want!r}"
            raise UnknownStatement(f"unknown statement {str(tok)!r}{hint}", self.tok_span(tok))

    def assign(self, rec: AssignRec) -> None:
        name, call = str(rec.name), rec.call
        func = str(call.func)
        if func == "einsum":
            op = self.einsum(name, call)
        elif func == "cast":
            op = self.cast(name, call)
        else:
            raise UnknownFunction(f"unknown function {func!r}{_near(func, ['einsum', 'cast'])}; "
                                  "a step calls einsum or cast", self.tok_span(call.func))
        why = too_many_elements(op.type.shape)
        if why:  # an einsum of small operands can be large (an outer product)
            raise TooLarge(f"{func} result {name!r} has {why}", self.span(call.func.start_pos, call.end))
        if rec.type is not None:
            want = self.type(rec.type)
            if want != op.type:
                hint = ("; einsum gives numpy's result dtype, use cast(...) for another"
                        if func == "einsum" and want.shape == op.type.shape else "")
                raise AnnotationMismatch(
                    f"{name} is annotated {_type_text(want)} but its {func} gives {_type_text(op.type)}{hint}",
                    self.span(rec.type.dtype.start_pos, rec.type.end))
        self.define(rec.name, op.type)
        self.body.append(op)

    def einsum(self, name: str, call: CallRec) -> Einsum:
        from einc.frontend.subscripts import parse_subscripts, parse_syntax

        if not call.args or call.args[0].type != "STRING":
            at = call.args[0] if call.args else None
            sp = self.tok_span(at) if at is not None else self.span(call.end - 1)
            raise BadCallArgument("einsum's first argument is the subscripts string in quotes, "
                                  'e.g. einsum("ij,jk->ik", a, b)', sp)
        sub_tok, operands = call.args[0], call.args[1:]
        sub = str(sub_tok)[1:-1]
        for tok in operands:
            if tok.type == "STRING":
                raise BadCallArgument("einsum takes one subscripts string; its operands are names",
                                      self.tok_span(tok))
        types = [self.lookup(tok) for tok in operands]
        where = dict(filename=self.filename, source=self.text, offset=sub_tok.start_pos + 1)
        groups = len(parse_syntax(sub, **where).operands)  # syntax errors first, then the count
        if groups != len(operands):
            if len(operands) > groups:
                sp = self.span(operands[groups].start_pos, operands[-1].end_pos)
            else:
                sp = self.span(call.end - 1)
            raise OperandCount(f"subscripts {sub!r} take {groups} operand{'s' * (groups != 1)} "
                               f"but einsum is given {len(operands)}", sp)
        try:
            parsed = parse_subscripts(sub, [t.shape for t in types], **where)
        except EincError as e:  # name the operands: "operand 1" -> "operand 'k'"
            names = [str(t) for t in operands]
            msg = re.sub(r"\boperand (\d+)\b",
                         lambda m: f"operand {names[int(m[1])]!r}" if int(m[1]) < len(names) else m[0], e.message)
            if msg == e.message:
                raise
            raise type(e)(msg, e.span) from None
        sizes = dict(parsed.sizes)
        typ = TensorType(tuple(sizes[c] for c in parsed.output), result_dtype(*[t.dtype for t in types]))
        return Einsum(name, tuple(str(t) for t in operands), tuple(parsed.inputs), parsed.output, typ)

    def cast(self, name: str, call: CallRec) -> Cast:
        if len(call.args) != 2:
            sp = (self.span(call.args[2].start_pos, call.args[-1].end_pos) if len(call.args) > 2
                  else self.span(call.end - 1))
            raise OperandCount(f"cast takes a name and a dtype, e.g. cast(x, float64); given {len(call.args)} "
                               f"argument{'s' * (len(call.args) != 1)}", sp)
        src = self.lookup(call.args[0])
        return Cast(name, str(call.args[0]), TensorType(src.shape, self.dtype(call.args[1])))

    def finish(self) -> Program:
        if self.outputs is None:
            raise BadOutputs("the program has no output statement; end it with e.g. 'output "
                             f"{next(reversed(self.env), 'x')}'", self.span(self.last_end))
        return Program(tuple(self.inputs), tuple(self.body), self.outputs)


def _type_text(t: TensorType) -> str:
    return f"{t.dtype}[{', '.join(map(str, t.shape))}]"


# --------------------------------------------------------------------------------------------
# Public API


def parse_program(text: str, filename: str = "<input>") -> Program:
    """Parse ``.ein`` text into a verified ``Program``.

    Raises ``ParseError`` (or a subclass naming the kind) with a caret at the offending
    character, or ``ShapeMismatch`` when operand sizes disagree.
    """
    text = text.removeprefix("\ufeff")  # a byte order mark, skipped as Python skips it in source files
    b = _Builder(text, filename)
    for rec in _records(text, filename):
        b.statement(rec)
    return verify(b.finish())


def parse_program_file(path) -> Program:
    """Read and parse a ``.ein`` file; errors name the path as given."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EincError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    return parse_program(text, filename=str(path))


def expression_program(subscripts: str, shapes, dtypes="float32", *, filename: str = "<expr>") -> Program:
    """The one-step program ``out = einsum(subscripts, t0, t1, ...)`` for numpy-style subscripts.

    ``dtypes`` is one dtype name for all operands or one per operand.  Names follow
    ``einc.ir.single_einsum``: inputs ``t0, t1, ...``, result ``out``.
    """
    from einc.frontend.subscripts import parse_subscripts

    shapes = [tuple(int(n) for n in s) for s in shapes]
    if isinstance(dtypes, str):
        dtypes = [dtypes] * len(shapes)
    dtypes = list(dtypes)
    if len(dtypes) != len(shapes):
        raise ParseError(f"{len(dtypes)} dtypes for {len(shapes)} operands; give one dtype or one per operand")
    for d in dtypes:
        if d not in DTYPES:
            raise UnknownDtype(f"unknown dtype {d}{_near(d, DTYPES)}")
    parsed = parse_subscripts(subscripts, shapes, filename=filename)
    return verify(parsed.to_program(dtypes))


__all__ = ["parse_program", "parse_program_file", "expression_program", "SYNTAX_EXAMPLES"] + [
    c.__name__ for c in (ProgramSyntaxError, UnknownStatement, UnknownFunction, UnknownDtype, UndefinedName,
                         Redefinition, AnnotationMismatch, OperandCount, BadCallArgument, BadOutputs, TooLarge)]
