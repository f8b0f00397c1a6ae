"""Passes as named frozen dataclasses, their registry, and pipeline strings.

A pass is a frozen dataclass whose options are its fields::

    @dataclass(frozen=True)
    class Decompose(Pass):
        name: ClassVar[str] = "decompose"
        path: Literal["auto", "greedy", "optimal", "dp"] = "auto"
        memory_limit: int | None = None

        def apply(self, prog: Program) -> Program: ...

Pipeline strings name passes with options in braces, kebab-case for the field names::

    canonicalize,decompose{path=optimal,memory-limit=4096}

``parse_pipeline`` and ``format_pipeline`` are inverse; the CLI, golden files, the corpus and the
fuzzer all speak these strings, and the fuzzer mutates the parsed tuple of pass instances.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Sequence

from einc.errors import PathError, PipelineError, Span, VerifyError

from ..nodes import Program


@dataclass(frozen=True)
class Pass:
    """Base class: a subclass sets ``name`` and implements ``apply`` (a pure ``Program -> Program``).

    Options are the dataclass fields; ``check_option`` refuses values the type alone allows (the
    base ``__post_init__`` calls it, so a subclass that defines ``__post_init__`` calls ``super()``'s).
    """

    name: ClassVar[str] = ""

    def apply(self, prog: Program) -> Program:
        raise NotImplementedError

    @classmethod
    def check_option(cls, field: str, value: Any) -> None:
        """Raise ValueError when ``value`` is not allowed for option ``field`` (beyond its type)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            try:
                self.check_option(f.name, getattr(self, f.name))
            except ValueError as e:
                raise ValueError(f"option {_kebab(f.name)}: {e}") from None

    def __call__(self, prog: Program) -> Program:
        return self.apply(prog)

    def __str__(self) -> str:
        return format_pass(self)


# ------------------------------------------------------------------------------------------- registry

# Built-in passes load lazily: name -> "module:Class" (importing them is cheap, but the registry must not
# have to import every pass to list the names).
_BUILTIN: dict[str, str] = {
    "canonicalize": "einc.ir.passes.canonicalize:Canonicalize",
    "diagonals": "einc.ir.passes.diagonals:Diagonals",
    "broadcast": "einc.ir.passes.broadcast:Broadcast",
    "decompose": "einc.ir.passes.decompose:Decompose",
    "transposes": "einc.ir.passes.transposes:Transposes",
}
_REGISTERED: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Add a pass class to the registry (usable as a decorator); a name already taken raises."""
    name = getattr(cls, "name", "")
    if not name or not isinstance(name, str):
        raise PipelineError(f"pass class {cls.__name__} has no name")
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):
        raise PipelineError(f"pass class {cls.__name__} must be a frozen dataclass")
    taken = _REGISTERED.get(name)
    if taken is not None and taken is not cls:
        raise PipelineError(f"pass name {name!r} is already registered by {taken.__module__}.{taken.__qualname__}")
    if taken is None and name in _BUILTIN and _BUILTIN[name] != f"{cls.__module__}:{cls.__qualname__}":
        raise PipelineError(f"pass name {name!r} is already registered by {_BUILTIN[name].replace(':', '.')}")
    _REGISTERED[name] = cls
    return cls


def pass_names() -> list[str]:
    """Every registered pass name, sorted."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def get_pass(name: str) -> type[Pass]:
    """The pass class registered under ``name``; an unknown name raises PipelineError listing the valid ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        mod, attr = _BUILTIN[name].split(":")
        cls = getattr(importlib.import_module(mod), attr)
        _REGISTERED[name] = cls
        return cls
    near = difflib.get_close_matches(name, pass_names(), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise PipelineError(f"unknown pass {name!r}{hint}; valid passes: {', '.join(pass_names())}")


# ------------------------------------------------------------------------------------------- options


def _kebab(field: str) -> str:
    return field.replace("_", "-")


def pass_options(cls: type[Pass]) -> dict[str, tuple[str, Any, Any]]:
    """kebab-case option name -> (field name, annotation, default)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        out[_kebab(f.name)] = (f.name, hints.get(f.name, str), default)
    return out


def _describe(ann) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return "|".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return "|".join(_describe(a) for a in args)
    if ann is type(None):
        return "none"
    return getattr(ann, "__name__", str(ann))


def _convert(text: str, ann):
    """Parse option text by the field annotation; raise ValueError with the expected form."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        for a in args:
            if str(a) == text:
                return a
        raise ValueError(f"expected one of {', '.join(map(str, args))}")
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() == "none":
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(text, a)
            except ValueError:
                pass
        raise ValueError(f"expected {_describe(ann)}")
    if ann is bool:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if ann is int:
        try:
            return int(text.replace("_", ""), 0)
        except ValueError:
            raise ValueError("expected an integer") from None
    if ann is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number") from None
    if ann is str:
        return text
    raise ValueError(f"options of type {_describe(ann)} cannot be written in a pipeline")


def _format_value(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# ------------------------------------------------------------------------------------------- pipelines

_SPECIAL = set(",{}=")


def _span(text: str, start: int, end: int) -> Span:
    return Span.at(text, start, max(1, end - start), "pipeline")


def parse_pipeline(text: str) -> tuple[Pass, ...]:
    """``"canonicalize,decompose{path=optimal,memory-limit=4096}"`` -> a tuple of pass instances.

    ``"none"`` is the empty pipeline.  Errors (unknown pass or option, a value of the wrong type, a
    missing brace) are PipelineErrors with a caret under the offending part of ``text``.
    """
    return tuple(p for p, _ in _parse_spans(text))


def _parse_spans(text: str) -> list[tuple[Pass, Span]]:
    """``parse_pipeline``, each pass with the span of its text (for errors raised when it runs)."""
    if text.strip().lower() == "none":  # the empty pipeline, by name (as the command line spells it)
        return []
    passes: list[tuple[Pass, Span]] = []
    i, n = 0, len(text)

    def skip_ws(j):
        while j < n and text[j].isspace():
            j += 1
        return j

    def word(j, what):
        j = skip_ws(j)
        start = j
        while j < n and text[j] not in _SPECIAL and not text[j].isspace():
            j += 1
        if start == j:
            got = repr(text[j]) if j < n else "the end"
            raise PipelineError(f"expected {what}, found {got}", _span(text, j, j + 1))
        return text[start:j], start, j

    i = skip_ws(i)
    if i == n:
        return []
    while True:
        pname, ps, pe = word(i, "a pass name")
        try:
            cls = get_pass(pname)
        except PipelineError as e:
            raise PipelineError(e.message, _span(text, ps, pe)) from None
        opts = pass_options(cls)
        kwargs: dict[str, Any] = {}
        i = skip_ws(pe)
        if i < n and text[i] == "{":
            open_at = i
            i = skip_ws(i + 1)
            if i < n and text[i] == "}":
                i += 1
            else:
                while True:
                    key, ks, ke = word(i, "an option name")
                    if key not in opts:
                        valid = ", ".join(opts) or "none"
                        raise PipelineError(f"pass {pname!r} has no option {key!r}; its options: {valid}",
                                            _span(text, ks, ke))
                    if opts[key][0] in kwargs:
                        raise PipelineError(f"option {key!r} is given twice", _span(text, ks, ke))
                    i = skip_ws(ke)
                    if i >= n or text[i] != "=":
                        raise PipelineError(f"expected '=' after option {key!r}", _span(text, i, i + 1))
                    val, vs, ve = word(i + 1, f"a value for {key!r}")
                    field, ann, _ = opts[key]
                    try:
                        kwargs[field] = _convert(val, ann)
                        cls.check_option(field, kwargs[field])
                    except ValueError as e:
                        raise PipelineError(f"bad value {val!r} for option {key!r} of pass {pname!r}: {e}",
                                            _span(text, vs, ve)) from None
                    i = skip_ws(ve)
                    if i < n and text[i] == ",":
                        i += 1
                        continue
                    if i < n and text[i] == "}":
                        i += 1
                        break
                    raise PipelineError(f"unclosed '{{' of pass {pname!r}: expected ',' or '}}'",
                                        _span(text, open_at, open_at + 1) if i >= n else _span(text, i, i + 1))
        try:
            passes.append((cls(**kwargs), _span(text, ps, i)))
        except (TypeError, ValueError) as e:
            raise PipelineError(f"pass {pname!r}: {e}", _span(text, ps, i)) from None
        i = skip_ws(i)
        if i == n:
            break
        if text[i] != ",":
            raise PipelineError(f"expected ',' between passes, found {text[i]!r}", _span(text, i, i + 1))
        i += 1
    return passes


def format_pass(p: Pass) -> str:
    """One pass as pipeline text; only options that differ from their defaults are written."""
    parts = []
    for key, (field, _, default) in pass_options(type(p)).items():
        v = getattr(p, field)
        if default is dataclasses.MISSING or v != default:
            parts.append(f"{key}={_format_value(v)}")
    return p.name + ("{" + ",".join(parts) + "}" if parts else "")


def format_pipeline(passes: Sequence[Pass]) -> str:
    """The pipeline string for ``passes``: ``parse_pipeline(format_pipeline(ps)) == tuple(ps)``."""
    return ",".join(format_pass(p) for p in passes)


def as_passes(pipeline: str | Pass | Sequence[Pass]) -> tuple[Pass, ...]:
    if isinstance(pipeline, str):
        return parse_pipeline(pipeline)
    if isinstance(pipeline, Pass):
        return (pipeline,)
    out = tuple(pipeline)
    for p in out:
        if not isinstance(p, Pass):
            raise PipelineError(f"{p!r} is not a pass")
    return out


def run_pipeline(prog: Program, pipeline: str | Sequence[Pass], *, verify: bool = True,
                 print_between: Callable[[Pass, Program], None] | None = None) -> Program:
    """Run the passes of ``pipeline`` in order; with ``verify`` the verifier checks the input and the
    program after every pass (a failure names the pass); ``print_between(pass, prog)`` sees each result."""
    from ..verify import verify as verify_program

    spans = _parse_spans(pipeline) if isinstance(pipeline, str) else [(p, None) for p in as_passes(pipeline)]
    if verify:
        verify_program(prog)
    for p, span in spans:
        try:
            prog = p.apply(prog)
        except (PathError, PipelineError) as e:  # an option that parsed but cannot apply (a path step out of range)
            if span is None or e.span is not None:
                raise
            raise type(e)(f"pass {format_pass(p)!r}: {e.message}", span) from None
        if verify:
            try:
                verify_program(prog)
            except VerifyError as e:
                raise VerifyError(f"after pass {format_pass(p)!r}: {e.message}", e.span) from None
        if print_between is not None:
            print_between(p, prog)
    return prog


__all__ = ["Pass", "register_pass", "pass_names", "get_pass", "pass_options", "parse_pipeline",
           "format_pass", "format_pipeline", "as_passes", "run_pipeline"]
