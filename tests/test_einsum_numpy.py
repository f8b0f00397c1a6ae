"""``einc.einsum`` against ``numpy.einsum``: same results, shapes, dtypes, aliasing and rejections.

Differential tests over hypothesis-generated expressions (explicit and implicit output, ellipsis
with broadcasting, repeated labels, upper case, 0-d and zero-size operands, many dtypes) crossed
with the keyword arguments (dtype=, casting=, out=, order=, optimize= incl. explicit paths) and
the sublist form; then tests that einc refuses exactly what numpy refuses, in the same exception
family.  Example counts are moderate; ``CI=true`` lowers them further.
"""
from __future__ import annotations

import os
import random
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import einc
from einc.errors import EincError

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SCALE = float(os.environ.get("EINC_EXAMPLES_SCALE", "1"))  # e.g. 20 for a long local hunt
FAST = settings(max_examples=int((40 if CI else 120) * SCALE), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=int((25 if CI else 60) * SCALE), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])

DTYPES = ["float64", "float32", "int64", "int32", "int8", "uint8", "bool", "complex128", "complex64"]
OPTIMIZE = [False, True, "greedy", "optimal", None]  # None: numpy's Python path, no search


FAMILIES = (KeyError, IndexError, TypeError, ValueError, RuntimeError)


def family(e: BaseException) -> type:
    """The builtin exception family a numpy caller would catch."""
    return next((cls for cls in FAMILIES if isinstance(e, cls)), type(e))


def same_family(numpy_error: BaseException, einc_error: BaseException | None) -> bool:
    """einc's error is caught by the ``except`` clause that catches numpy's (it may be in more families)."""
    return einc_error is not None and isinstance(einc_error, family(numpy_error))


def outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs), None
    except Exception as e:  # noqa: BLE001 - the point is to compare them
        return None, e


def assert_same(expected, got, *, rtol=None, inputs=(), strict_type=True):
    """Same type (scalar vs array), shape, dtype and values (to the precision of the lowest-precision
    input: numpy's optimize path may compute intermediates in an operand's dtype before promoting)."""
    if strict_type:
        assert isinstance(got, np.ndarray) == isinstance(expected, np.ndarray), (type(expected), type(got))
    expected, got = np.asarray(expected), np.asarray(got)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    if expected.dtype.kind in "biu":
        np.testing.assert_array_equal(got, expected)
    else:
        low = any(np.asarray(x).dtype in (np.float32, np.complex64, np.float16) for x in inputs)
        tol = rtol if rtol is not None else (1e-4 if low or expected.dtype in (np.float32, np.complex64) else 1e-9)
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------ generators


@st.composite
def expressions(draw, max_operands=4, ellipsis=True, allow_zero=True):
    """(subscripts, shapes): a valid numpy einsum over random labels, sizes, ellipses and spaces."""
    pool = draw(st.sampled_from(["ijk", "abcd", "aAbB", "xyzXYZ", "ijklm"]))
    pool = draw(st.permutations(pool))
    n_ops = draw(st.integers(1, max_operands))
    sizes = {c: draw(st.sampled_from([1, 2, 3, 4] + ([0] if allow_zero else []))) for c in pool}
    ell_shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2))) if ellipsis else ()
    terms, shapes, any_ell = [], [], False
    for _ in range(n_ops):
        labs = draw(st.lists(st.sampled_from(pool), max_size=3))
        shape = []
        for c in labs:  # broadcast some axes with size 1 (not on repeated labels: numpy needs equal diagonals)
            one = labs.count(c) == 1 and draw(st.integers(0, 5)) == 0
            shape.append(1 if one else sizes[c])
        term = "".join(labs)
        if ellipsis and draw(st.booleans()):
            any_ell = True
            r = draw(st.integers(0, len(ell_shape)))
            sub = [1 if draw(st.integers(0, 3)) == 0 else n for n in ell_shape[len(ell_shape) - r:]]
            at = draw(st.integers(0, len(labs)))
            term = term[:at] + "..." + term[at:]
            shape = shape[:at] + sub + shape[at:]
        terms.append(term)
        shapes.append(tuple(shape))
    text = ",".join(terms)
    if draw(st.booleans()):  # explicit output
        seen = list(dict.fromkeys("".join(t.replace("...", "") for t in terms)))
        out = "".join(draw(st.permutations(seen))[: draw(st.integers(0, len(seen)))])
        if any_ell or draw(st.integers(0, 3)) == 0:
            at = draw(st.integers(0, len(out)))
            out = out[:at] + "..." + out[at:]
        text += "->" + out
    if draw(st.booleans()):  # spaces where numpy tolerates them: between tokens
        rnd = random.Random(draw(st.integers(0, 2**16)))
        toks, i = [], 0
        while i < len(text):
            tok = "->" if text.startswith("->", i) else "..." if text.startswith("...", i) else text[i]
            toks.append(tok)
            i += len(tok)
        text = "".join(t + (" " if rnd.random() < 0.3 else "") for t in toks)
    return text, shapes


def make(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 4, size=shape).astype(dtype)
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


# ------------------------------------------------------------------------------------------ results


@FAST
@given(expressions(), st.sampled_from(OPTIMIZE), st.data())
def test_matches_numpy_results(expr, optimize, data):
    text, shapes = expr
    dts = [data.draw(st.sampled_from(DTYPES)) for _ in shapes]
    arrays = [make(s, d, k) for k, (s, d) in enumerate(zip(shapes, dts))]
    want, werr = outcome(np.einsum, text, *arrays, optimize=optimize)
    got, gerr = outcome(einc.einsum, text, *arrays, optimize=optimize)
    if werr is not None:
        assert gerr is not None, f"numpy refused ({werr}) but einc accepted"
        assert same_family(werr, gerr) or optimize is not False, (werr, gerr)
        return
    assert gerr is None, f"numpy accepted but einc raised {gerr!r}"
    # Values: numpy's optimize path computes each step in its operands' dtype (a bool diagonal sum is a
    # logical or, an int8 product wraps), its C path the whole einsum in the result dtype.  einc means the
    # latter whatever the path, so the C path is the reference where it accepts the expression.
    ref, _ = outcome(np.einsum, text, *arrays, optimize=False)
    # A 0-d result is a scalar or a 0-d array depending on numpy's last path step: compare the type when
    # both chose the same path (ties between equally cheap paths may break differently).
    strict = optimize is False or np.ndim(want) > 0 or \
        np.einsum_path(text, *arrays, optimize=optimize)[0] == einc.einsum_path(text, *arrays, optimize=optimize)[0]
    if ref is not None and np.ndim(want) == 0:
        ref = np.asarray(ref)[()] if not isinstance(want, np.ndarray) else np.asarray(ref)
    assert_same(want if ref is None else ref, got, inputs=arrays, strict_type=bool(strict))


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")  # casting='unsafe' drops imaginary parts
@FEWER
@given(expressions(max_operands=3), st.sampled_from(DTYPES), st.sampled_from(["no", "equiv", "safe", "same_kind",
                                                                              "unsafe"]), st.data())
def test_dtype_and_casting_match_numpy(expr, dtype, casting, data):
    text, shapes = expr
    dts = [data.draw(st.sampled_from(DTYPES)) for _ in shapes]
    arrays = [make(s, d, k) for k, (s, d) in enumerate(zip(shapes, dts))]
    want, werr = outcome(np.einsum, text, *arrays, dtype=dtype, casting=casting)
    got, gerr = outcome(einc.einsum, text, *arrays, dtype=dtype, casting=casting)
    if werr is not None:
        assert same_family(werr, gerr), (werr, gerr)
        return
    assert gerr is None, f"numpy accepted but einc raised {gerr!r}"
    assert_same(want, got, rtol=1e-2 if np.dtype(dtype).kind in "fc" else None)


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
@FEWER
@given(expressions(max_operands=3), st.sampled_from(DTYPES), st.sampled_from(["safe", "same_kind", "unsafe"]),
       st.sampled_from([False, True]), st.data())
def test_out_matches_numpy(expr, out_dtype, casting, optimize, data):
    text, shapes = expr
    dts = [data.draw(st.sampled_from(DTYPES[:4])) for _ in shapes]
    arrays = [make(s, d, k) for k, (s, d) in enumerate(zip(shapes, dts))]
    ref = np.einsum(text, *arrays)  # the expression is valid for numpy
    out_np = np.zeros(np.shape(ref), out_dtype)
    out_ec = np.zeros(np.shape(ref), out_dtype)
    want, werr = outcome(np.einsum, text, *arrays, out=out_np, casting=casting, optimize=False)
    got, gerr = outcome(einc.einsum, text, *arrays, out=out_ec, casting=casting, optimize=optimize)
    if werr is not None:
        assert same_family(werr, gerr), (werr, gerr)
        return
    assert gerr is None, f"numpy accepted but einc raised {gerr!r}"
    assert got is out_ec and want is out_np
    if out_dtype in ("float64", "complex128", "float32", "complex64") or np.dtype(out_dtype).kind in "biu" and \
            all(a.dtype.kind in "biu" for a in arrays):
        assert_same(want, got, rtol=1e-3)
    else:  # float -> int casts truncate: compare within one unit
        np.testing.assert_allclose(got.astype(float), want.astype(float), atol=1.01)


@FEWER
@given(expressions(max_operands=4, allow_zero=False), st.data())
def test_explicit_paths_match_numpy(expr, data):
    text, shapes = expr
    arrays = [make(s, "float64", k) for k, s in enumerate(shapes)]
    n = len(arrays)
    path, left = ["einsum_path"], n
    while left > 1:  # a random valid path: pairs or triples of current positions
        k = data.draw(st.integers(2, min(3, left)))
        path.append(tuple(sorted(data.draw(st.permutations(range(left)))[:k])))
        left -= k - 1
    if n == 1:
        path.append((0,))
    want, werr = outcome(np.einsum, text, *arrays, optimize=path)
    assume(werr is None)
    got = einc.einsum(text, *arrays, optimize=path)
    assert_same(want, got)


@FEWER
@given(expressions(max_operands=3), st.sampled_from(["C", "F", "A", "K", "c", "f"]))
def test_order_keeps_values(expr, order):
    text, shapes = expr
    arrays = [make(s, "float64", k) for k, s in enumerate(shapes)]
    want = np.einsum(text, *arrays, order=order)
    got = einc.einsum(text, *arrays, order=order)
    assert_same(want, got)
    if order.upper() == "F" and np.ndim(got) > 1 and not np.shares_memory(got, arrays[0]):
        assert got.flags.f_contiguous


@FEWER
@given(expressions(max_operands=3), st.data())
def test_sublist_form_matches_numpy(expr, data):
    text, shapes = expr
    text = text.replace(" ", "")
    arrays = [make(s, "float64", k) for k, s in enumerate(shapes)]
    # numbers for letters: any injective map into 0..51
    letters = sorted(set(text) - set(".,->"))
    nums = data.draw(st.permutations(range(52)))[: len(letters)]
    num = dict(zip(letters, nums))

    def sub(term):
        out, i = [], 0
        while i < len(term):
            if term.startswith("...", i):
                out.append(Ellipsis)
                i += 3
            else:
                out.append(num[term[i]])
                i += 1
        return out

    lhs, _, rhs = text.partition("->")
    args = []
    for a, t in zip(arrays, lhs.split(",")):
        args += [a, sub(t)]
    if "->" in text:
        args.append(sub(rhs))
    want, werr = outcome(np.einsum, *args)
    got, gerr = outcome(einc.einsum, *args)
    if werr is not None:
        assert same_family(werr, gerr), (werr, gerr)
        return
    assert gerr is None, gerr
    assert_same(want, got)


# ------------------------------------------------------------------------------------------ specific cases


@pytest.mark.parametrize("text,shapes", [
    ("ij->ji", [(3, 4)]), ("ii->i", [(3, 3)]), ("ij", [(2, 3)]), ("...->...", [(2, 3)]), ("iij->ji", [(2, 2, 3)]),
    ("Ba", [(2, 3)]),
])
def test_views_alias_like_numpy(text, shapes):
    a = make(shapes[0], "float64")
    want, got = np.einsum(text, a), einc.einsum(text, a)
    assert np.shares_memory(got, a) == np.shares_memory(want, a) is True
    assert_same(want, got)
    got[...] = 7.0  # writes show through, as with numpy
    assert np.shares_memory(a, got) and (np.einsum(text, a) == 7.0).all()


def test_view_of_read_only_operand_is_read_only():
    a = make((2, 3), "float64")
    a.flags.writeable = False
    assert not einc.einsum("ij->ji", a).flags.writeable
    assert np.einsum("ij->ji", a).flags.writeable is False


def test_view_ignores_dtype_like_numpy():
    a = make((2, 3), "float64")
    assert einc.einsum("ij->ji", a, dtype="int32").dtype == np.einsum("ij->ji", a, dtype="int32").dtype


@pytest.mark.parametrize("args,kw", [
    (("i,i", np.ones(3), np.ones(3)), {}),
    (("i,i", np.ones(3), np.ones(3)), {"optimize": True}),
    (("i,i->", np.ones(3), np.ones(3)), {"optimize": "greedy"}),
    (("i,j->", np.ones(3), np.ones(2)), {"optimize": True}),
    (("", np.float64(2.0)), {}),
    (("", 3), {"optimize": True}),
    (("ij,jk,ki", np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))), {"optimize": True}),
    (("ij,jk,ki", np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))), {}),
])
def test_zero_d_results_have_numpys_type(args, kw):
    assert_same(np.einsum(*args, **kw), einc.einsum(*args, **kw))


@pytest.mark.parametrize("args", [
    ("i,->i", np.arange(3, dtype=np.int8), 3),
    ("i,->i", np.arange(3, dtype=np.uint8), 300),
    ("i,->i", np.arange(3, dtype=np.float32), 2.5),
    ("i,->i", np.arange(3, dtype=np.float16), 1j),
    (",", True, 2),
    ("i,i", [1, 2, 3], [4.0, 5.0, 6.0]),
    ("ij,jk", [[1, 2]], [[3], [4]]),
])
def test_python_scalars_and_lists(args):
    assert_same(np.einsum(*args), einc.einsum(*args))


def test_many_operands_up_to_numpys_limit():
    arrays = [np.full((2,), 1.0 + k / 100) for k in range(63)]
    text = ",".join(["i"] * 63) + "->i"
    assert_same(np.einsum(text, *arrays), einc.einsum(text, *arrays), rtol=1e-9)
    too_many = arrays + [np.ones(2)]
    with pytest.raises(ValueError):
        np.einsum(",".join(["i"] * 64) + "->i", *too_many)
    with pytest.raises(ValueError, match="too many operands"):
        einc.einsum(",".join(["i"] * 64) + "->i", *too_many)


def test_fifty_two_labels():
    labels = string.ascii_letters
    a = make((1,) * 26, "float64")
    text = f"{labels[:26]},{labels[26:]}->{labels[::-1]}"
    assert_same(np.einsum(text, a, a), einc.einsum(text, a, a))


def test_ellipsis_summed_only_with_optimize():
    a = make((2, 3), "float64")
    with pytest.raises(ValueError, match="no '...'"):
        einc.einsum("...a->a", a)
    assert_same(np.einsum("...a->a", a, optimize=True), einc.einsum("...a->a", a, optimize=True))


def test_spaces_inside_tokens_only_with_optimize():
    a = make((2, 3), "float64")
    for text in ("ij- >ji", ". ..ij->ji"):
        with pytest.raises(ValueError):
            np.einsum(text, a)
        with pytest.raises(ValueError, match="->|'...'"):
            einc.einsum(text, a)
        assert_same(np.einsum(text, a, optimize=True), einc.einsum(text, a, optimize=True))


def test_memory_limit_pair_and_path_report():
    arrays = [make((3, 4), "float64"), make((4, 5), "float64"), make((5, 2), "float64")]
    assert_same(np.einsum("ij,jk,kl", *arrays, optimize=("greedy", 10)),
                einc.einsum("ij,jk,kl", *arrays, optimize=("greedy", 10)))
    for opt in ("greedy", "optimal", False, True, None, ["einsum_path", (1, 2), (0, 1)], ("greedy", 5)):
        want_path, want_report = np.einsum_path("ij,jk,kl", *arrays, optimize=opt)
        got_path, got_report = einc.einsum_path("ij,jk,kl", *arrays, optimize=opt)
        assert got_path == want_path
        assert got_report == want_report


def test_einsum_path_sublist_form():
    a, b = np.ones((2, 3)), np.ones((3, 4))
    assert einc.einsum_path(a, [0, 1], b, [1, 2])[0] == np.einsum_path(a, [0, 1], b, [1, 2])[0]


# ------------------------------------------------------------------------------------------ rejections


BAD_CALLS = [
    (("ij,jk->ik->", np.ones((2, 2)), np.ones((2, 2))), {}),
    (("i.j", np.ones((2, 2))), {}),
    (("ij->ii", np.ones((2, 2))), {}),
    (("ij->k", np.ones((2, 2))), {}),
    (("ij", np.ones((2, 2, 2))), {}),
    (("ijk", np.ones((2, 2))), {}),
    (("ij,jk", np.ones((2, 2))), {}),
    (("ij", np.ones((2, 2)), np.ones(2)), {}),
    (("i,i", np.ones(2), np.ones(3)), {}),
    (("...i,...i", np.ones((2, 3)), np.ones((4, 3))), {}),
    (("ii->i", np.ones((1, 3))), {}),
    (("i1", np.ones((2, 3))), {}),
    (("i\tj", np.ones((2, 3))), {}),
    (("\u00e9", np.ones(2)), {}),
    (("i,i->i", np.ones(3), np.ones(3)), {"dtype": "int32"}),
    (("i,i->i", np.ones(3, int), np.ones(3, int)), {"dtype": "float32"}),
    (("i,i->i", np.ones(3), np.ones(3)), {"dtype": "foo"}),
    (("i,i->i", np.ones(3), np.ones(3)), {"order": "Q"}),
    (("i,i->i", np.ones(3), np.ones(3)), {"casting": "foo"}),
    (("i,i->i", np.ones(3), np.ones(3)), {"out": [1, 2, 3]}),
    (("i,i->i", np.ones(3), np.ones(3)), {"out": np.ones(3, int)}),
    (("i,i->i", np.ones(3), np.ones(3)), {"out": np.ones(4)}),
    (("i,i->i", np.ones(3), np.ones(3)), {"out": np.ones((2, 3))}),
    (("i,i->", np.ones(3), np.ones(3)), {"out": np.ones(1)}),
    (("i,i->i", np.ones(3), "abc"), {}),
    (("i,i->i", np.ones(3), np.array(list("abc"))), {}),
    (("i,i->i", np.ones(3), np.zeros(3, "datetime64[s]")), {}),
    (("ij,jk,kl", np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))), {"optimize": "foo"}),
    (("ij,jk,kl", np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))), {"optimize": ["einsum_path", (0, 5)]}),
    (("ij,jk,kl", np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))), {"optimize": ["einsum_path", (0, 1)]}),
    (("ij,jk,kl", np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))), {"optimize": ("greedy", "x")}),
    (("ij,jk,kl", np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))), {"optimize": []}),
    ((np.ones(3), [52]), {}),
    ((np.ones(3), [-1]), {}),
    ((np.ones(3), ["a"]), {}),
    ((np.ones(3), [1.0]), {}),
    ((np.ones(3), [True]), {}),
    ((np.ones(3), [0], [0, 0]), {}),
    ((np.ones(3), np.ones(3)), {}),
    ((3,), {}),
    ((), {}),
]


@pytest.mark.parametrize("args,kw", BAD_CALLS, ids=[str(i) for i in range(len(BAD_CALLS))])
def test_rejects_what_numpy_rejects(args, kw):
    _, werr = outcome(np.einsum, *args, **kw)
    assert werr is not None, "the table lists calls numpy refuses"
    _, gerr = outcome(einc.einsum, *args, **kw)
    assert isinstance(gerr, EincError), f"einc raised {gerr!r}, not an EincError"
    assert same_family(werr, gerr), (werr, gerr)
    assert str(gerr).strip()


@FAST
@given(st.text(alphabet="ijkIJ.,-> 1", max_size=9), st.lists(st.lists(st.integers(1, 3), max_size=3), max_size=3),
       st.booleans())
def test_random_strings_accepted_and_refused_like_numpy(text, shapes, match_count):
    if match_count:  # mostly give as many operands as the text names
        shapes = (shapes + [[]] * (text.count(",") + 1))[: text.count(",") + 1]
    assume(shapes)
    arrays = [np.ones(s) for s in shapes]
    want, werr = outcome(np.einsum, text, *arrays)
    got, gerr = outcome(einc.einsum, text, *arrays)
    assert (werr is None) == (gerr is None), (werr, gerr)
    if werr is None:
        assert_same(want, got)
    else:
        assert isinstance(gerr, EincError) and same_family(werr, gerr), (werr, gerr)


@FEWER
@given(st.text(alphabet="ijkIJ.,-> ", max_size=9), st.lists(st.lists(st.integers(1, 3), max_size=3), min_size=1,
                                                             max_size=3))
def test_random_strings_with_optimize_accepted_like_numpy(text, shapes):
    shapes = (shapes + [[]] * (text.count(",") + 1))[: text.count(",") + 1]
    arrays = [np.ones(s) for s in shapes]
    want, werr = outcome(np.einsum, text, *arrays, optimize=True)
    got, gerr = outcome(einc.einsum, text, *arrays, optimize=True)
    # numpy's Python parser sometimes fails with IndexError where its C parser says ValueError: only
    # acceptance has to agree here
    assert (werr is None) == (gerr is None), (werr, gerr)
    if werr is None:
        assert_same(want, got)


# ------------------------------------------------------------------------------------------ dtypes of the computation


def test_out_dtype_takes_part_in_the_computation_dtype():
    a, b = np.array([100, 100], np.int8), np.array([2, 2], np.int8)
    for out_dtype in ("float64", "int16", "int64"):
        want, got = np.zeros((), out_dtype), np.zeros((), out_dtype)
        np.einsum("i,i->", a, b, out=want)
        einc.einsum("i,i->", a, b, out=got)
        assert got == want == 400  # computed in the out= dtype, no int8 wrap-around
    assert_same(np.einsum("i,i->", a, b), einc.einsum("i,i->", a, b))  # without out=: int8, wraps


@pytest.mark.parametrize("casting", ["no", "equiv", "safe", "same_kind", "unsafe"])
@pytest.mark.parametrize("dtypes", [("float32", "float64"), ("int64", "float64"), (">f8", "<f8"), ("int8", "int8")])
def test_operand_casting_rule_without_dtype(casting, dtypes):
    arrays = [np.ones(3, dtype=d) for d in dtypes]
    want, werr = outcome(np.einsum, "i,i", *arrays, casting=casting)
    got, gerr = outcome(einc.einsum, "i,i", *arrays, casting=casting)
    assert (werr is None) == (gerr is None), (werr, gerr)
    if werr is None:
        assert_same(want, got)
    else:
        assert same_family(werr, gerr)


@pytest.mark.parametrize("dtype", [object, np.longdouble])
def test_dtypes_outside_the_ir_go_to_numpy(dtype):
    a = np.arange(6).reshape(2, 3).astype(dtype)
    want, got = np.einsum("ij,jk", a, a.T), einc.einsum("ij,jk", a, a.T)
    assert got.dtype == want.dtype and (got == want).all()
    with pytest.raises(einc.Unsupported):
        einc.einsum("ij,jk", a, a.T, target="llvm")


def test_plan_uses_the_path_einsum_path_reports():
    from einc.api import plan

    shapes = [(2, 3), (3, 4), (4, 5), (5, 2)]
    arrays = [make(s, "float64", k) for k, s in enumerate(shapes)]
    for opt in ("greedy", "optimal"):
        p = plan("ij,jk,kl,lm", shapes, ["float64"] * 4, optimize=opt)
        assert ["einsum_path", *p.info.path] == einc.einsum_path("ij,jk,kl,lm", *arrays, optimize=opt)[0]
        assert sum(type(op).__name__ == "Einsum" for op in p.program.body) == 3  # three pairwise steps
    assert len(plan("ij,jk,kl,lm", shapes, ["float64"] * 4).program.body) == 1  # optimize=False: one n-ary step


def test_pipeline_argument_replaces_the_default():
    arrays = [make((2, 3), "float64"), make((3, 4), "float64"), make((4, 2), "float64")]
    want = np.einsum("ij,jk,ki->", *arrays)
    for pipe in ("canonicalize", "canonicalize,decompose{path=optimal}", "decompose{path=0-2;0-1}"):
        assert_same(want, einc.einsum("ij,jk,ki->", *arrays, pipeline=pipe))
    with pytest.raises(einc.PipelineError):
        einc.einsum("ij,jk,ki->", *arrays, pipeline="no-such-pass")


def test_targets_go_through_dispatch():
    a = make((2, 3), "float64")
    assert_same(np.einsum("ij,jk", a, a.T), einc.einsum("ij,jk", a, a.T, target="interp"))


def test_strided_operands():
    b = np.arange(12.0).reshape(3, 4)
    args = ("ij,jk", b[::2], b[:, ::-1].T)
    assert_same(np.einsum(*args), einc.einsum(*args))
    assert_same(np.einsum("ii", b[:, :3]), einc.einsum("ii", b[:, :3]))


def test_bfloat16_beyond_numpy():
    """numpy's einsum refuses bfloat16 (ml_dtypes); einc's IR has it, so einc computes it (in float32, rounded)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = einc.einsum("ij,jk", a.astype(ml_dtypes.bfloat16), a.T.astype(ml_dtypes.bfloat16))
    assert got.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_allclose(got.astype(np.float32), a @ a.T, rtol=1e-2)


@pytest.mark.tvm
@pytest.mark.slow
def test_compiled_cpu_target_matches_numpy():
    """The drop-in through a compiled kernel: einc.einsum(..., target='llvm') against numpy.einsum."""
    pytest.importorskip("tvm")
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(s).astype(np.float32) for s in ((8, 6), (6, 5), (5, 4)))
    for text, ops, opt in (("ij,jk,kl->il", (a, b, c), True), ("...j,j->...", (a, b[:, 0]), False)):
        want = np.einsum(text, *ops, optimize=opt)
        got = einc.einsum(text, *ops, optimize=opt, target="llvm")
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("subs", ["ij->ji", "ii->i", "ij"])
def test_views_of_any_dtype_and_sums_of_strings_match_numpy(subs):
    """numpy returns a view for a pure permutation or diagonal whatever the dtype (strings too); a
    sum over strings is an error on both sides."""
    s = np.array([["a", "b"], ["c", "d"]])
    got = einc.einsum(subs, s)
    want = np.einsum(subs, s)
    np.testing.assert_array_equal(got, want)
    assert np.shares_memory(got, s)
    _, werr = outcome(np.einsum, "ij->i", s)
    _, gerr = outcome(einc.einsum, "ij->i", s)
    assert werr is not None and gerr is not None and same_family(werr, gerr)
