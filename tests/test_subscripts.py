"""The einsum-subscripts frontend: grammar, expansion of '...', implicit output, sizes, positioned errors.

Golden diagnostics live in ``tests/golden/subscripts/diagnostics.txt``: each ``// RUN:`` line is a
case, followed by the expected error kind, ``line:column`` and the exact caret picture.
``EINC_UPDATE_GOLDEN=1`` rewrites the expectations from the RUN lines.
"""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einc.errors import EincError, ParseError, ShapeMismatch, Unsupported
from einc.frontend import subscripts as S
from einc.frontend.subscripts import parse_subscripts, parse_syntax, sublist_to_subscripts
from einc.ir import verify
from einc.ir.interp import run

GOLDEN = Path(__file__).parent / "golden" / "subscripts" / "diagnostics.txt"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PROPS = settings(max_examples=50 if CI else 150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize("text,shapes,inputs,output", [
    ("ij,jk->ik", [(2, 3), (3, 4)], ("ij", "jk"), "ik"),
    ("ij,jk", [(2, 3), (3, 4)], ("ij", "jk"), "ik"),
    ("ii", [(3, 3)], ("ii",), ""),
    ("ii->i", [(3, 3)], ("ii",), "i"),
    ("Ba,aB", [(2, 3), (3, 2)], ("Ba", "aB"), ""),
    ("bA", [(2, 3)], ("bA",), "Ab"),  # implicit output sorts by code point: upper case first
    ("zAa", [(1, 2, 3)], ("zAa",), "Aaz"),
    ("i j -> j i", [(2, 3)], ("ij",), "ji"),
    ("", [()], ("",), ""),
    ("->", [()], ("",), ""),
    (",", [(), ()], ("", ""), ""),
    ("...", [(2, 3)], ("ab",), "ab"),
    ("...ij,...jk", [(5, 2, 3), (7, 1, 3, 4)], ("bij", "abjk"), "abik"),  # ranks 1 and 2 under '...'
    ("i...,...->...i", [(2, 4), ()], ("ia", ""), "ai"),
    ("ij->...ij", [(3, 4)], ("ij",), "ij"),  # '...' covering no dimension
    ("a...a", [(2, 5, 2)], ("aba",), "b"),
])
def test_expansion_and_implicit_output(text, shapes, inputs, output):
    p = parse_subscripts(text, shapes)
    assert (p.inputs, p.output) == (inputs, output)
    arrays = [np.arange(np.prod(s), dtype=float).reshape(s) + 1 for s in shapes]
    want = np.einsum(text, *arrays)
    assert p.output_shape == np.shape(want)
    prog = verify(p.to_program(["float64"] * len(shapes)))
    np.testing.assert_allclose(run(prog, *arrays)[0], want)


def test_ellipsis_labels_are_fresh_and_broadcast():
    p = parse_subscripts("...ab,b...->...", [(3, 1, 2, 4), (4, 1, 2)])
    assert p.ellipsis_labels and not set(p.ellipsis_labels) & {"a", "b"}
    assert p.size_of == {**{c: n for c, n in zip(p.ellipsis_labels, (3, 2))}, "a": 2, "b": 4}
    assert p.output == p.ellipsis_labels and p.output_shape == (3, 2)


def test_sizes_broadcast_size_one_and_zero():
    assert parse_subscripts("ij,jk", [(2, 1), (3, 4)]).size_of == {"i": 2, "j": 3, "k": 4}
    assert parse_subscripts("i,i->i", [(1,), (0,)]).size_of == {"i": 0}
    assert parse_subscripts("i,i->i", [(0,), (1,)]).size_of == {"i": 0}


def test_syntax_only_parse_keeps_ellipsis_and_a_flag():
    p = parse_subscripts("...ij,jk", None)
    assert not p.expanded and p.shapes is None and p.sizes == ()
    assert p.inputs == ("...ij", "jk") and p.output == "...ik" and p.implicit and p.has_ellipsis
    with pytest.raises(Unsupported, match="needs operand shapes"):
        p.to_program(["float64", "float64"])
    q = parse_subscripts("ab->ba", None)
    assert q.output == "ba" and not q.implicit and not q.has_ellipsis


def test_to_program_with_result_dtype_casts_operands():
    p = parse_subscripts("ij,j->i", [(2, 3), (3,)])
    prog = verify(p.to_program(["int64", "float32"], "float64"))
    casts = [op for op in prog.body if type(op).__name__ == "Cast"]
    assert [c.operand for c in casts] == ["t0", "t1"] and prog.type_of("out").dtype == "float64"
    assert [v.name for v in prog.inputs] == ["t0", "t1"] and prog.outputs == ("out",)
    same = verify(p.to_program(["float64", "float64"], "float64"))
    assert len(same.body) == 1


def test_grammar_is_loaded_once():
    assert S.grammar() is S.grammar()
    assert "ELLIPSIS" in S.grammar_text()


def test_fifty_two_labels_and_the_limit_with_ellipsis():
    labels = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    p = parse_subscripts(labels, [(1,) * 52])
    assert p.output == "".join(sorted(labels))
    with pytest.raises(Unsupported, match="52 labels"):
        parse_subscripts(labels + "...", [(1,) * 53])


def test_too_many_operands():
    text = ",".join(["i"] * 64)
    with pytest.raises(S.TooManyOperands, match="at most 63"):
        parse_subscripts(text, None)
    with pytest.raises(S.TooManyOperands):
        parse_subscripts("i", [(1,)] * 64)
    assert len(parse_subscripts(",".join(["i"] * 63), [(2,)] * 63).inputs) == 63


def test_sum_ellipsis_option():
    with pytest.raises(S.EllipsisNotInOutput):
        parse_subscripts("...a->a", [(2, 3)])
    p = parse_subscripts("...a->a", [(2, 3)], sum_ellipsis=True)
    assert p.output == "a" and p.inputs[0][1] == "a" and len(p.inputs[0]) == 2


# ------------------------------------------------------------------------------------------ errors


def test_error_kinds_are_value_errors_with_spans():
    for cls in (S.DoubleArrow, S.InvalidCharacter, S.RankMismatch):
        assert issubclass(cls, ParseError) and issubclass(cls, ValueError)
    for cls in (S.SizeMismatch, S.DiagonalSizeMismatch, S.EllipsisBroadcastError):
        assert issubclass(cls, ShapeMismatch) and issubclass(cls, ValueError)
    with pytest.raises(S.SizeMismatch) as e:
        parse_subscripts("ij,jk", [(2, 3), (4, 5)])
    assert (e.value.line, e.value.column) == (1, 4)
    assert "operand 0 (axis 1)" in e.value.message and "operand 1 (axis 0)" in e.value.message


@pytest.mark.parametrize("kind", list(S.EXAMPLES), ids=lambda k: k.__name__)
def test_each_error_kind_is_raised_by_its_examples_like_numpy(kind):
    for text, shapes in S.EXAMPLES[kind]:
        with pytest.raises(kind) as e:
            parse_subscripts(text, shapes)
        assert e.value.span is not None and e.value.line == 1
        # numpy refuses the same input with the same builtin family
        arrays = [np.ones(s) for s in shapes] if shapes else [np.ones((1,) * len(t.replace("...", "")))
                                                               for t in text.split("->")[0].split(",")]
        with pytest.raises(ValueError):
            np.einsum(text, *arrays)


def test_syntax_examples_table_names_each_example():
    for kind, examples in S.SYNTAX_EXAMPLES.items():
        for text in examples:
            with pytest.raises(kind):
                parse_syntax(text)


def test_spans_point_into_an_enclosing_source():
    source = 'input a: float32[2, 3]\ny = einsum("ij->i->j", a)\n'
    offset = source.index("ij->")
    with pytest.raises(S.DoubleArrow) as e:
        parse_subscripts("ij->i->j", None, filename="prog.ein", source=source, offset=offset)
    assert (e.value.line, e.value.column) == (2, 18)
    assert str(e.value).splitlines()[1:] == [
        "prog.ein:2:18",
        '  y = einsum("ij->i->j", a)',
        "                   ^^",
    ]
    with pytest.raises(S.RankMismatch) as e:
        parse_subscripts("ij->i", [(2, 3, 4)], filename="prog.ein", source=source, offset=offset)
    assert (e.value.span.filename, e.value.line, e.value.column, e.value.span.length) == ("prog.ein", 2, 13, 2)


def _shapes(text):
    """``shapes=`` of a RUN line: a Python expression over literals (``[(1,) * 53]``), or none."""
    if not text:
        return None
    tree = ast.parse(text, mode="eval")
    allowed = (ast.Expression, ast.List, ast.Tuple, ast.Constant, ast.BinOp, ast.Mult, ast.Load)
    assert all(isinstance(n, allowed) for n in ast.walk(tree)), text
    return eval(compile(tree, "<shapes>", "eval"), {"__builtins__": {}})  # noqa: S307 - literals only


def _golden_cases():
    cases, current = [], None
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        m = re.match(r'^// RUN: parse (".*?(?<!\\)")(?: shapes=(.*))?$', line)
        if m:
            current = [json.loads(m.group(1)), _shapes(m.group(2)), line, []]
            cases.append(current)
        elif current is not None:
            current[3].append(line)
    return [(text, shapes, run_line, "\n".join(lines).strip("\n")) for text, shapes, run_line, lines in cases]


def _render(text, shapes) -> str:
    try:
        parse_subscripts(text, shapes)
    except EincError as e:
        return f"{type(e).__name__} at {e.line}:{e.column}\n{e}"
    return "ACCEPTED"


def test_golden_diagnostics():
    cases = _golden_cases()
    assert len(cases) >= 25
    if os.environ.get("EINC_UPDATE_GOLDEN"):
        head = [ln for ln in GOLDEN.read_text(encoding="utf-8").splitlines() if ln.startswith("//")
                and not ln.startswith("// RUN:")]
        body = [f"{run_line}\n{_render(text, shapes)}" for text, shapes, run_line, _ in cases]
        tmp = GOLDEN.with_suffix(".tmp")
        tmp.write_text("\n".join(head + body) + "\n", encoding="utf-8")
        os.replace(tmp, GOLDEN)
        return
    for text, shapes, run_line, expected in cases:
        got = _render(text, shapes)
        assert got == expected, f"{run_line}\n--- expected\n{expected}\n--- got\n{got}"
        # every error names a kind with a position that matches the caret picture
        kind, where = got.splitlines()[0].split(" at ")
        line, col = map(int, where.split(":"))
        assert got.splitlines()[2].endswith(f":{line}:{col}")
        caret = got.splitlines()[-1]
        assert caret.index("^") == col - 1 + 2  # two spaces of indentation


# ------------------------------------------------------------------------------------------ numpy agreement


@st.composite
def subscripts_and_shapes(draw):
    labels = draw(st.sampled_from(["ab", "abc", "aAbB", "ijkl"]))
    n = draw(st.integers(1, 3))
    sizes = {c: draw(st.integers(0, 3)) for c in labels}
    ell = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    terms, shapes = [], []
    for _ in range(n):
        labs = "".join(draw(st.lists(st.sampled_from(labels), max_size=3)))
        shape = [sizes[c] for c in labs]
        if draw(st.booleans()):
            r = draw(st.integers(0, len(ell)))
            at = draw(st.integers(0, len(labs)))
            labs = labs[:at] + "..." + labs[at:]
            shape = shape[:at] + list(ell[len(ell) - r:]) + shape[at:]
        terms.append(labs)
        shapes.append(tuple(shape))
    text = ",".join(terms)
    if draw(st.booleans()):
        used = sorted(set(text) - {".", ","})
        text += "->" + "".join(draw(st.permutations(used))[: draw(st.integers(0, len(used)))]) + "..."
    return text, shapes


@PROPS
@given(subscripts_and_shapes())
def test_parse_agrees_with_numpy(case):
    text, shapes = case
    arrays = [np.ones(s) for s in shapes]
    try:
        want = np.einsum(text, *arrays)
    except ValueError:
        with pytest.raises(EincError):
            parse_subscripts(text, shapes)
        return
    p = parse_subscripts(text, shapes)
    assert p.output_shape == np.shape(want)
    labels = "".join(p.inputs) + p.output
    assert len(p.ellipsis_labels) == len(set(p.ellipsis_labels))
    assert all(c.isalpha() and c.isascii() for c in labels)
    np.testing.assert_allclose(run(verify(p.to_program(["float64"] * len(shapes))), *arrays)[0], want)


@settings(PROPS, max_examples=30 if CI else 60)
@given(st.data())
def test_grammar_sentences_parse(data):
    """Every sentence of ``subscripts.lark`` (hypothesis' ``from_lark``) passes the syntax stage."""
    from hypothesis.extra.lark import from_lark

    text = data.draw(from_lark(S.grammar()))
    tree = parse_syntax(text)
    assert len(tree.operands) == text.count(",") + 1
    assert (tree.output is None) == ("->" not in text)


# ------------------------------------------------------------------------------------------ sublists


def test_sublist_to_subscripts_uses_numpys_letters():
    a, b = np.ones((2, 3)), np.ones((3, 4))
    text, ops = sublist_to_subscripts(a, [0, 1], b, [1, 26], [0, 26])
    assert text == "AB,Ba->Aa" and ops[0] is a and ops[1] is b
    text, ops = sublist_to_subscripts(a, [Ellipsis, np.int64(51)])
    assert text == "...z" and len(ops) == 1


@pytest.mark.parametrize("bad,kind", [([52], S.InvalidSublist), ([-1], S.InvalidSublist), (["a"], S.SublistTypeError),
                                      ([1.0], S.SublistTypeError), ([True], S.SublistTypeError)])
def test_sublist_errors(bad, kind):
    with pytest.raises(kind):
        sublist_to_subscripts(np.ones(3), bad)
    with pytest.raises((ValueError, TypeError)) as numpy_error:
        np.einsum(np.ones(3), bad)
    assert issubclass(kind, numpy_error.type)  # the same builtin family as numpy's error
