"""``einc.compile`` / ``Kernel`` / ``einc.load``: calling conventions, errors, export round trip."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("tvm")

import einc  # noqa: E402
from einc.errors import EincError, EincTypeError, ShapeMismatch  # noqa: E402
from einc.kernel import aligned_empty  # noqa: E402

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def mm():
    return einc.compile("ik,kj->ij", (24, 40), (40, 48))


def _ab(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((24, 40)).astype(np.float32), rng.standard_normal((40, 48)).astype(np.float32)


def test_compile_from_shapes_and_from_arrays(mm):
    a, b = _ab()
    np.testing.assert_allclose(mm(a, b), a @ b, rtol=1e-4, atol=1e-4)
    k2 = einc.compile("ik,kj->ij", a.astype(np.float64), b.astype(np.float64))
    assert k2.in_types[0].dtype == "float64"
    got = k2(a.astype(np.float64), b.astype(np.float64))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-12)


def test_implicit_output_and_ellipsis():
    x = np.random.default_rng(1).standard_normal((3, 5, 6)).astype(np.float32)
    y = np.random.default_rng(2).standard_normal((6, 7)).astype(np.float32)
    k = einc.compile("...ij,jk", x, y)
    np.testing.assert_allclose(k(x, y), np.einsum("...ij,jk", x, y), rtol=1e-4, atol=1e-5)


def test_misaligned_and_noncontiguous_inputs(mm):
    a, b = _ab(3)
    raw = np.zeros(a.size + 64, np.float32)
    base = (-raw.ctypes.data // 4) % 16  # float offset that is 64-byte aligned
    off = raw[base + 1: base + 1 + a.size].reshape(a.shape)  # 4 bytes past alignment
    off[...] = a
    assert off.ctypes.data % 64 != 0
    np.testing.assert_allclose(mm(off, b), a @ b, rtol=1e-4, atol=1e-4)
    bt = np.asfortranarray(b)  # same values, column-major
    np.testing.assert_allclose(mm(a, bt), a @ b, rtol=1e-4, atol=1e-4)


def test_out_argument_aligned_and_misaligned(mm):
    a, b = _ab(4)
    out = aligned_empty((24, 48), np.float32)
    r = mm(a, b, out=out)
    assert r is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    raw = np.zeros(24 * 48 + 16, np.float32)
    mis = raw[1:1 + 24 * 48].reshape(24, 48) if raw[1:].ctypes.data % 64 else raw[2:2 + 24 * 48].reshape(24, 48)
    r = mm(a, b, out=mis)
    assert r is mis
    np.testing.assert_allclose(mis, a @ b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ShapeMismatch, match="out"):
        mm(a, b, out=np.zeros((24, 47), np.float32))


def test_errors_name_the_operand(mm):
    a, b = _ab()
    with pytest.raises(ShapeMismatch, match=r"operand 1 .*\(40, 47\)"):
        mm(a, b[:, :47])
    with pytest.raises(EincTypeError, match=r"operand 0 .*float64"):
        mm(a.astype(np.float64), b)
    with pytest.raises(EincError, match="2 operands"):
        mm(a)


class _OnlyDLPack:
    """A DLPack producer that is not a numpy array."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_inputs(mm):
    a, b = _ab(5)
    got = mm(_OnlyDLPack(a), _OnlyDLPack(b))
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)


def test_torch_in_torch_out(mm):
    torch = pytest.importorskip("torch")
    a, b = _ab(6)
    got = mm(torch.from_numpy(a), torch.from_numpy(b))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), a @ b, rtol=1e-4, atol=1e-4)


def test_torch_tensors_that_require_grad_or_hold_bfloat16(mm):
    torch = pytest.importorskip("torch")
    a, b = _ab(8)
    with pytest.raises(EincTypeError, match="requires grad.*detach"):
        mm(torch.from_numpy(a).requires_grad_(), b)
    x = torch.randn(8, 32).to(torch.bfloat16)
    y = torch.randn(32, 16).to(torch.bfloat16)
    k = einc.compile("ik,kj->ij", x, y)  # the dtype read off the tensors
    got = k(x, y)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.bfloat16
    ref = x.double() @ y.double()
    assert torch.all((got.double() - ref).abs() <= 1e-2 * (x.double().abs() @ y.double().abs()) + 1e-6)
    via = einc.einsum("ik,kj->ij", x, y)  # einsum: torch in, torch out, like the kernels
    assert isinstance(via, torch.Tensor) and via.dtype == torch.bfloat16
    assert torch.equal(via, got)
    s = einc.einsum("i,i->", torch.ones(3), torch.ones(3))
    assert isinstance(s, torch.Tensor) and s.ndim == 0 and float(s) == 3.0


def test_big_endian_and_read_only_operands_work_like_numpy(mm, tmp_path):
    a, b = _ab(9)
    want = a @ b
    # byte order: converted, as numpy.einsum does (the default policy, a compiled kernel, a Kernel)
    np.testing.assert_allclose(mm(a.astype(">f4"), b), want, rtol=1e-4, atol=1e-4)
    for target in (None, "llvm"):
        got = einc.einsum("ik,kj->ij", a.astype(">f4"), b.astype(">f4"), target=target)
        assert got.dtype == np.float32 and got.dtype.isnative
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # read-only memory (DLPack cannot export it): a memory map opened 'r', a frombuffer, a locked array
    np.save(tmp_path / "a.npy", a)
    ro = [np.load(tmp_path / "a.npy", mmap_mode="r"), np.frombuffer(a.tobytes(), np.float32).reshape(a.shape)]
    ro.append(a.copy())
    ro[-1].setflags(write=False)
    for x in ro:
        assert not x.flags.writeable
        np.testing.assert_allclose(mm(x, b), want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(einc.einsum("ik,kj->ij", x, b, target="llvm"), want, rtol=1e-4, atol=1e-4)
        assert not x.flags.writeable  # the caller's array is left as it was
    from einc.kernel import _unlocked

    alias = _unlocked(ro[-1])
    assert alias.flags.writeable and np.shares_memory(alias, ro[-1])  # no copy


def test_transpose_returns_a_view_like_numpy():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    k = einc.compile("ij->ji", a)
    r = k(a)
    assert np.shares_memory(r, a) == np.shares_memory(np.einsum("ij->ji", a), a)
    np.testing.assert_array_equal(r, a.T)
    out = aligned_empty((4, 3), np.float32)
    k(a, out=out)  # with out= the compiled copy runs
    np.testing.assert_array_equal(out, a.T)
    assert not np.shares_memory(out, a)


def test_bfloat16_arrays():
    ml = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(7)
    a = rng.standard_normal((8, 32)).astype(ml.bfloat16)
    b = rng.standard_normal((32, 32)).astype(ml.bfloat16)
    k = einc.compile("ik,kj->ij", a, b)
    got = k(a, b)
    assert got.dtype == a.dtype
    ref = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    assert np.all(np.abs(got.astype(np.float64) - ref) <= 1e-2 * scale + 1e-6)


def test_export_load_round_trip(tmp_path, mm):
    a, b = _ab(8)
    path = tmp_path / "sub" / "mm.so"
    mm.export(path)
    assert path.exists() and (tmp_path / "sub" / "mm.so.json").exists()
    assert not [p for p in os.listdir(path.parent) if p.startswith(".einc-")]  # no temp files left
    meta = json.loads((tmp_path / "sub" / "mm.so.json").read_text())
    assert meta["subscripts"] == "ik,kj->ij" and meta["tvm_version"] and json.loads(meta["target"])["kind"] == "llvm"
    k2 = einc.load(path)
    assert k2.in_types == mm.in_types and k2.out_types == mm.out_types
    np.testing.assert_allclose(k2(a, b), mm(a, b), rtol=0, atol=0)
    # TVM's runtime alone loads the library: main(inputs..., outputs...)
    from einc.lowering import _tvm

    lib = _tvm.load_module(str(path))
    ta, tb, tc = _tvm.tensor(a), _tvm.tensor(b), _tvm.empty((24, 48), "float32")
    lib["main"](ta, tb, tc)
    np.testing.assert_allclose(tc.numpy(), a @ b, rtol=1e-4, atol=1e-4)


def test_load_without_sidecar_is_a_clear_error(tmp_path, mm):
    from einc.errors import CacheError

    p = tmp_path / "k.so"
    mm.export(p)
    os.unlink(str(p) + ".json")
    with pytest.raises(CacheError, match="metadata"):
        einc.load(p)


def test_load_refuses_a_library_that_differs_from_its_export(tmp_path, mm):
    """A truncated library crashed the process in the dynamic loader (SIGBUS); load checks the size
    and SHA-256 the sidecar records, and, for sidecars without them, that the ELF headers fit."""
    from einc.errors import CacheError

    p = tmp_path / "k.so"
    mm.export(p)
    data, meta = p.read_bytes(), json.loads((tmp_path / "k.so.json").read_text())
    assert meta["library_bytes"] == len(data) and len(meta["library_sha256"]) == 64
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    legacy = {k: v for k, v in meta.items() if not k.startswith("library_")}
    for name, body, side in [("trunc", data[:5000], meta), ("flip", bytes(flipped), meta),
                             ("legacy", data[:5000], legacy)]:
        (tmp_path / f"{name}.so").write_bytes(body)
        (tmp_path / f"{name}.so.json").write_text(json.dumps(side))
        with pytest.raises(CacheError, match="export it again"):
            einc.load(tmp_path / f"{name}.so")
    (tmp_path / "whole.so").write_bytes(data)  # an intact library with an older sidecar still loads
    (tmp_path / "whole.so.json").write_text(json.dumps(legacy))
    a, b = _ab(10)
    np.testing.assert_array_equal(einc.load(tmp_path / "whole.so")(a, b), mm(a, b))


def test_a_loaded_kernel_exports_again(tmp_path, mm):
    mm.export(tmp_path / "k.so")
    k = einc.load(tmp_path / "k.so")
    k.export(tmp_path / "again.so")
    assert (tmp_path / "again.so").read_bytes() == (tmp_path / "k.so").read_bytes()
    a, b = _ab(11)
    np.testing.assert_array_equal(einc.load(tmp_path / "again.so")(a, b), mm(a, b))


def test_export_to_an_unwritable_place_is_an_einc_error_and_leaves_nothing(tmp_path, mm):
    from einc.errors import WriteError

    (tmp_path / "afile").write_text("x")
    for target, why in [(tmp_path / "afile" / "k.so", "afile is not a directory"),
                        (tmp_path, "is a directory")]:
        with pytest.raises(WriteError, match=why) as e:
            mm.export(target)
        assert isinstance(e.value, OSError)  # callers catching OSError still do
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_pipeline_argument_is_a_string_or_none_and_sizes_fit_64_bit_indices():
    from einc.errors import VerifyError

    a, b = _ab(12)
    assert einc.compile("ik,kj->ij", a, b, pipeline="none").pipeline == "none"
    np.testing.assert_allclose(einc.einsum("ik,kj->ij", a, b, pipeline="none"), a @ b, rtol=1e-4, atol=1e-4)
    for bad in (["canonicalize"], 5):
        with pytest.raises(EincTypeError, match="pipeline string"):
            einc.einsum("ik,kj->ij", a, b, pipeline=bad)
        with pytest.raises(EincTypeError, match="pipeline string"):
            einc.compile("ik,kj->ik", a, b, pipeline=bad)
    with pytest.raises(VerifyError, match="64-bit"):
        einc.compile("ij,jk->ik", (10**20, 3), (3, 4))


def test_zero_size_kernel_exports_and_loads(tmp_path):
    k = einc.compile("ij,jk->ik", (0, 3), (3, 4))
    assert k.interpreted
    assert k(np.zeros((0, 3), "f4"), np.ones((3, 4), "f4")).shape == (0, 4)
    k.export(tmp_path / "z.so")
    k2 = einc.load(tmp_path / "z.so")
    assert k2(np.zeros((0, 3), "f4"), np.ones((3, 4), "f4")).shape == (0, 4)


def test_explain_and_source(mm):
    text = mm.explain()
    assert "gemm" in text and "target" in text and "timings" in text
    assert "einsum" in mm.source("ir")
    tir = mm.source("tir")
    assert "def main" in tir and "T.vectorized" in tir
    with pytest.raises(EincError):
        mm.source("asm")


def test_compile_program_multi_output():
    from einc.ir import Einsum, Program, TensorType, Value
    from einc.kernel import compile_program

    f = "float32"
    prog = Program((Value("x", TensorType((4, 40), f)),),
                   (Einsum("r", ("x",), ("ij",), "i", TensorType((4,), f)),
                    Einsum("c", ("x",), ("ij",), "j", TensorType((40,), f))), ("r", "c"))
    x = np.random.default_rng(9).standard_normal((4, 40)).astype(np.float32)
    r, c = compile_program(prog)(x)
    np.testing.assert_allclose(r, x.sum(1), rtol=1e-5)
    np.testing.assert_allclose(c, x.sum(0), rtol=1e-5)


def test_optimize_argument_controls_decomposition():
    from einc.kernel import pipeline_for

    shapes = [(6, 7), (7, 8), (8, 9)]
    xs = [np.random.default_rng(i).standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)]
    whole = einc.compile("ij,jk,kl->il", *shapes, optimize=False)
    split = einc.compile("ij,jk,kl->il", *shapes, optimize="greedy")
    assert [op.arity for op in whole.program.body] == [3]
    assert len(split.program.body) == 2 and "path=greedy" in split.pipeline
    ref = np.einsum("ij,jk,kl->il", *xs)
    np.testing.assert_allclose(whole(*xs), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(split(*xs), ref, rtol=1e-4, atol=1e-5)
    assert "decompose" not in pipeline_for(False)
    assert "path=0-1;0-1" in pipeline_for(["einsum_path", (0, 1), (0, 1)])
