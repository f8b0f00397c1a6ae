"""Complex values: ``einc.ir.realify`` (against the interpreter) and compiled complex kernels (against numpy)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from einc.errors import EincTypeError, ShapeMismatch, Unsupported
from einc.ir.interp import run
from einc.ir.nodes import single_einsum
from einc.ir.realify import as_complex, as_real, has_complex, realify
from einc.ir.types import TensorType
from einc.ir.verify import verify
from einc.testing import programs, random_array


def _c(rng, *shape, dtype=np.complex64):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


# ------------------------------------------------------------------------------------------ realify


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(max_steps=3, max_operands=3, max_rank=3, max_size=3,
                dtypes=("complex64", "complex128", "float32", "float64", "int32", "int8", "bool")))
def test_the_real_form_computes_what_the_complex_program_does(prog):
    form = realify(prog)
    verify(form.program)
    assert not has_complex(form.program)
    rng = np.random.default_rng(0)
    xs = [random_array(v.type.shape, v.type.dtype, rng) for v in prog.inputs]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # complex -> real casts (numpy's ComplexWarning)
        ref = run(prog, *xs)
        got = form.outputs(run(form.program, *form.inputs(xs)))
    for r, g in zip(ref, got):
        assert g.dtype == r.dtype and g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_parts_are_views_both_ways():
    a = _c(np.random.default_rng(0), 3, 4)
    r = as_real(a)
    assert r.shape == (3, 4, 2) and np.shares_memory(r, a)
    np.testing.assert_array_equal(r[..., 0], a.real)
    np.testing.assert_array_equal(r[..., 1], a.imag)
    back = as_complex(r, "complex64")
    assert np.shares_memory(back, a) and np.array_equal(back, a)
    s = np.array(1 + 2j, dtype=np.complex128)  # 0-d
    assert as_real(s).tolist() == [1.0, 2.0] and as_complex(as_real(s), "complex128") == s
    t = a.T  # not contiguous: copied, same values
    np.testing.assert_array_equal(as_complex(as_real(t), "complex64"), t)


def test_a_product_of_complex_operands_multiplies_as_complex_numbers_do():
    prog = single_einsum("ij,jk->ik", [TensorType((4, 5), "complex64"), TensorType((5, 6), "complex64")])
    form = realify(prog)
    # one operand expanded into its 2x2 real matrix, the contraction computed with the parts outermost
    # (the GEMM's N is the result's own last axis), then interleaved as numpy stores complex numbers
    names = [op.result for op in form.program.body]
    assert names == ["out_m0", "out_p", "out"], form.program
    assert form.program.body[-1].subscripts.endswith("->" + form.program.body[-1].output)
    assert [kind for _, kind in form.constants] == ["J"]


def test_too_many_labels_for_the_parts_is_unsupported():
    from einc.ir.nodes import LABELS

    labs = LABELS[:26]
    prog = single_einsum(f"{labs},{LABELS[26:51]}->", [TensorType((1,) * 26, "complex64"),
                                                       TensorType((1,) * 25, "complex64")])
    with pytest.raises(Unsupported, match="more labels"):
        realify(prog)


# ------------------------------------------------------------------------------------- compiled

tvm = pytest.importorskip("tvm")
import einc  # noqa: E402

CASES = [
    ("ij,jk->ik", [(24, 40), (40, 48)], ["complex64", "complex64"]),
    ("bij,bjk->bik", [(3, 16, 8), (3, 8, 20)], ["complex128", "complex128"]),
    ("ij,kj->ik", [(17, 9), (13, 9)], ["complex64", "complex64"]),
    ("ij,jk->ik", [(12, 10), (10, 16)], ["complex64", "float32"]),  # one complex operand
    ("ij,jk->ik", [(12, 10), (10, 16)], ["float64", "complex64"]),  # -> complex128
    ("ij,jk,kl->il", [(8, 6), (6, 7), (7, 5)], ["complex64"] * 3),
    ("ii->i", [(9, 9)], ["complex64"]),
    ("ii->", [(9, 9)], ["complex128"]),
    ("i,j->ij", [(7,), (33,)], ["complex64", "complex64"]),
    ("ij->ji", [(5, 6)], ["complex64"]),
    ("ij,ij->i", [(6, 1), (6, 30)], ["complex64", "complex64"]),  # broadcast
    (",->", [(), ()], ["complex64", "complex64"]),
]


@pytest.mark.parametrize("subs,shapes,dtypes", CASES)
def test_compiled_complex_einsums_match_numpy(subs, shapes, dtypes):
    rng = np.random.default_rng(1)
    xs = [_c(rng, *s, dtype=d) if d.startswith("complex") else rng.standard_normal(s).astype(d)
          for s, d in zip(shapes, dtypes)]
    ref = np.einsum(subs, *[x.astype(np.complex128) for x in xs])
    want = np.result_type(*xs)
    for optimize in ("auto", False):
        k = einc.compile(subs, *xs, optimize=optimize)
        got = k(*xs)
        assert got.dtype == want and got.shape == ref.shape
        tol = 1e-5 if want == np.complex64 else 1e-12
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max()))


def test_the_complex_gemm_is_scheduled_as_a_gemm():
    k = einc.compile("ik,kj->ij", (96, 64), (64, 80), dtype="complex64")
    rows = {blk: cls for blk, cls, _ in k.built.plan}
    assert rows["out_p"] == "gemm", k.explain()
    assert "(re, im) parts" in k.explain() and "# complex program" in k.source("ir")


def test_casts_to_and_from_complex(tmp_path):
    from einc.frontend.program import parse_program

    prog = parse_program("input a: complex64[4, 3]\ninput x: float64[4, 3]\n"
                         "b = cast(a, bool)\nc = cast(a, int32)\nd = cast(x, complex64)\n"
                         "e = cast(a, complex128)\nf = cast(a, float32)\noutput b, c, d, e, f\n")
    a = np.array([[0, 1j, 2.7 - 1j], [0j, -3.5 + 0j, 1e-30j], [1, 0, 0], [0, 0, 5j]], dtype=np.complex64)
    x = np.random.default_rng(0).standard_normal((4, 3))
    from einc.kernel import compile_program

    k = compile_program(prog)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = run(prog, a, x)
    for g, r in zip(k(a, x), refs):
        assert g.dtype == r.dtype
        np.testing.assert_array_equal(g, r)


def test_out_arrays_are_written_in_place_or_copied_into():
    rng = np.random.default_rng(2)
    a, b = _c(rng, 6, 5), _c(rng, 5, 7)
    k = einc.compile("ij,jk->ik", a, b)
    out = np.empty((6, 7), np.complex64)
    assert k(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-5)
    strided = np.empty((7, 6), np.complex64).T  # not contiguous: a temporary, then copied in
    assert k(a, b, out=strided) is strided
    np.testing.assert_allclose(strided, a @ b, rtol=1e-5)
    with pytest.raises(ShapeMismatch, match="out\\[0\\].*complex64"):
        k(a, b, out=np.empty((6, 7), np.complex128))


def test_wrong_operands_are_named():
    rng = np.random.default_rng(3)
    a, b = _c(rng, 6, 5), _c(rng, 5, 7)
    k = einc.compile("ij,jk->ik", a, b)
    with pytest.raises(EincTypeError, match="operand 1 .*complex128.*complex64"):
        k(a, b.astype(np.complex128))
    with pytest.raises(ShapeMismatch, match="operand 0"):
        k(a[:5], b)
    # non-contiguous operands are fine (copied)
    np.testing.assert_allclose(k(np.asfortranarray(a), b[:, ::1]), a @ b, rtol=1e-5)


def test_torch_tensors_in_and_out():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    a, b = _c(rng, 6, 5), _c(rng, 5, 7)
    k = einc.compile("ij,jk->ik", a, b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    got = k(ta, tb.conj())  # a lazily conjugated tensor
    assert isinstance(got, torch.Tensor) and got.dtype == torch.complex64
    np.testing.assert_allclose(got.numpy(), a @ b.conj(), rtol=1e-5)
    with pytest.raises(EincTypeError, match="operand 0.*complex128"):
        k(ta.to(torch.complex128), tb)
    with pytest.raises(EincTypeError, match="requires grad"):
        k(ta.clone().requires_grad_(True), tb)


def test_einsum_computes_complex_values_in_a_kernel():
    rng = np.random.default_rng(5)
    a, b = _c(rng, 30, 20), _c(rng, 20, 10)
    got = einc.einsum("ik,kj->ij", a, b, target="llvm")
    assert got.dtype == np.complex64
    np.testing.assert_allclose(got, a @ b, rtol=1e-5)


def test_export_and_load_a_complex_kernel(tmp_path):
    from einc.errors import CacheError
    from einc.kernel import ComplexKernel

    rng = np.random.default_rng(6)
    a, b = _c(rng, 8, 6, dtype=np.complex128), _c(rng, 6, 5, dtype=np.complex128)
    k = einc.compile("ij,jk->ik", a, b)
    path = k.export(tmp_path / "c.so")
    k2 = einc.load(path)
    assert isinstance(k2, ComplexKernel) and k2.in_types == k.in_types
    np.testing.assert_allclose(k2(a, b), a @ b, rtol=1e-12)
    k2.export(tmp_path / "again.so")  # a loaded kernel exports its bytes again
    np.testing.assert_allclose(einc.load(tmp_path / "again.so")(a, b), a @ b, rtol=1e-12)
    meta = json.loads((tmp_path / "c.so.json").read_text())
    meta["complex"]["constants"] = [["cx_J", "K"]]
    (tmp_path / "c.so.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="metadata"):
        einc.load(path)


def test_cuda_builds_complex_kernels_without_a_gpu():
    # (tests/test_fuzz_cuda_emu.py runs one through the CUDA emulator against numpy)
    k = einc.compile("ij,jk->ik", (32, 24), (24, 16), dtype="complex64", target="cuda", cache=False)
    assert "__global__" in k.source("cuda") and k.in_types[0].dtype == "complex64"


@pytest.mark.parametrize("tamper", [
    lambda m: m["complex"].__setitem__("constants", [["cx_J", "U"]]),  # a constant of another shape
    lambda m: m["complex"]["program"]["inputs"][0].__setitem__("dtype", "complex128"),
    lambda m: m["complex"]["program"]["inputs"][0].__setitem__("shape", [8, 7]),
    lambda m: m["complex"]["program"]["body"][0].__setitem__("dtype", "float32"),  # result read as real
    lambda m: m["complex"]["program"]["body"][0].__setitem__("dtype", "complex128"),
    lambda m: m["complex"]["program"]["body"][0].update(output="ca", shape=[5, 8]),  # the other layout
    lambda m: m["complex"]["program"].__setitem__("outputs", ["out", "out"]),
    lambda m: m["complex"]["program"].__setitem__("outputs", ["t0"]),
])
def test_a_sidecar_whose_complex_program_is_not_the_real_one_is_a_cache_error(tmp_path, tamper):
    # the library computes the real program; a complex program that does not realify to it would
    # be called with the wrong types or have its result read in the wrong shape or dtype
    from einc.errors import CacheError

    rng = np.random.default_rng(7)
    a, b = _c(rng, 8, 6), _c(rng, 6, 5)
    path = einc.compile("ij,jk->ik", a, b).export(tmp_path / "c.so")
    meta = json.loads((tmp_path / "c.so.json").read_text())
    tamper(meta)
    (tmp_path / "c.so.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="metadata"):
        einc.load(path)


def test_a_torch_tensor_with_the_negative_bit_is_read_with_its_sign():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    a, b = _c(rng, 6, 5), _c(rng, 5, 7)
    k = einc.compile("ij,jk->ik", a, b)
    neg = torch.from_numpy(a)._neg_view()  # lazily negated: its memory holds a, its value is -a
    assert neg.is_neg()
    np.testing.assert_allclose(k(neg, torch.from_numpy(b)).numpy(), -(a @ b), rtol=1e-5, atol=1e-5)


def test_a_complex_permutation_is_a_view_as_numpy_einsum_gives():
    rng = np.random.default_rng(9)
    a = _c(rng, 3, 4, 5)
    k = einc.compile("ijk->kij", a)
    got = k(a)
    assert np.shares_memory(got, a) and np.array_equal(got, np.einsum("ijk->kij", a))
    f = np.asfortranarray(a)
    np.testing.assert_array_equal(k(f), np.einsum("ijk->kij", a))
    with pytest.raises(EincTypeError, match="operand 0"):
        k(a.astype(np.complex128))
    out = np.empty((5, 3, 4), np.complex64)  # out= still writes the result
    assert k(a, out=out) is out and np.array_equal(out, np.einsum("ijk->kij", a))
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(a)
    got = k(t.conj())
    assert isinstance(got, torch.Tensor) and torch.equal(got.resolve_conj(), t.conj().permute(2, 0, 1).resolve_conj())


def test_einsum_reads_lazily_conjugated_and_negated_torch_tensors():
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(_c(np.random.default_rng(9), 3, 4))
    neg = t.conj().imag  # a real tensor with the negative bit: DLPack would read it as +imag
    assert neg.is_neg()
    want = -t.imag.numpy().sum(1)
    for target in (None, "llvm"):
        np.testing.assert_allclose(einc.einsum("ij->i", neg, target=target).numpy(), want, rtol=1e-6)
        got = einc.einsum("ij,kj->ik", t.conj(), t, target=target)  # DLPack refuses the conjugate bit
        np.testing.assert_allclose(got.numpy(), t.numpy().conj() @ t.numpy().T, rtol=1e-5)
