"""Kernels take C-contiguous numpy arrays at any (element-aligned) address, in place, no copy.

Every shape class of ``lowering.schedules_cpu`` gets inputs and outputs 4, 8, 16 and 32 bytes past a
64-byte boundary (where the dtype allows: an address must be a multiple of the item size for numpy
to call it aligned).  The aligned-move code TVM generated before (``align 64`` parameters)
segfaulted on such arrays; a crash here kills the test process, which pytest reports as a failure.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("tvm")

import einc  # noqa: E402
import einc.kernel as K  # noqa: E402

pytestmark = pytest.mark.tvm

OFFSETS = (4, 8, 16, 32)

# (subscripts, shapes, dtype): one case per schedule class, sizes big enough to vectorise
CASES = [
    ("ik,kj->ij", [(64, 48), (48, 64)], "float32"),  # gemm, packed B
    ("ik,kj->ij", [(37, 29), (29, 53)], "float32"),  # gemm, padded M and N
    ("bik,bkj->bij", [(3, 16, 32), (3, 32, 32)], "float32"),  # batched gemm
    ("ij,j->i", [(64, 256)], "float32"),  # reduce-inner (matvec), second shape added below
    ("ij->i", [(64, 256)], "float32"),  # reduce-inner
    ("ij->j", [(64, 256)], "float32"),  # reduce-outer
    ("ij->", [(128, 128)], "float32"),  # full reduction
    ("ij->ji", [(128, 96)], "float32"),  # transpose
    ("i,j->ij", [(96,), (128,)], "float32"),  # map / outer
    ("ij,ij,ij->ij", [(32, 64)] * 3, "float32"),  # map, three operands
    ("ab,cd->acbd", [(16, 16), (16, 16)], "float32"),  # kron
    ("ik,kj->ij", [(32, 40), (40, 64)], "float64"),
    ("ij,ij->i", [(32, 128), (32, 128)], "int32"),
    ("ij,jk->ik", [(16, 64), (64, 64)], "float16"),
    ("ijk,ai,bj,ck->abc", [(16, 16, 16), (16, 16), (16, 16), (16, 16)], "float32"),  # several steps
]
CASES[3] = ("ij,j->i", [(64, 256), (256,)], "float32")


def _at(arr: np.ndarray, off: int) -> np.ndarray:
    """A C-contiguous copy of ``arr`` whose data start ``off`` bytes past a 64-byte boundary."""
    raw = np.zeros(arr.nbytes + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + off
    out = raw[start:start + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    out[...] = arr
    assert out.ctypes.data % 64 == off % 64 and out.flags.c_contiguous
    return out


def _data(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype.startswith("int"):
        return [rng.integers(-5, 5, s).astype(dtype) for s in shapes]
    return [rng.uniform(-1, 1, s).astype(dtype) for s in shapes]


@pytest.fixture(scope="module")
def kernels():
    return {i: einc.compile(e, *shapes, dtype=dt, cache=False) for i, (e, shapes, dt) in enumerate(CASES)}


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_unaligned_inputs_and_outputs_run_in_place(kernels, case, monkeypatch):
    expr, shapes, dtype = CASES[case]
    k = kernels[case]
    arrays = _data(shapes, dtype, case)
    ref = np.einsum(expr, *[a.astype(np.float64) for a in arrays])
    tol = 2e-2 if dtype == "float16" else 1e-4
    item = np.dtype(dtype).itemsize
    tried = 0
    for off in OFFSETS:
        if off % item:
            continue
        ins = [_at(a, off) for a in arrays]
        out = _at(np.zeros(k.out_types[0].shape, dtype), off)
        # no copy: with out= given, the call allocates nothing (aligned_empty is the only allocator)
        calls = []
        monkeypatch.setattr(K, "aligned_empty", lambda *a, **kw: calls.append(a) or np.empty(*a[:2]))
        r = k(*ins, out=out)
        monkeypatch.undo()
        assert r is out
        assert calls == [], f"offset {off}: Kernel copied {len(calls)} array(s)"
        np.testing.assert_allclose(out.astype(np.float64), ref, rtol=tol, atol=tol * 4)
        # and the plain call (fresh output) on the same unaligned inputs
        np.testing.assert_allclose(k(*ins).astype(np.float64), ref, rtol=tol, atol=tol * 4)
        tried += 1
    assert tried >= 2


def test_odd_addresses_are_copied_not_crashed(kernels):
    """float64 data 4 bytes off an 8-byte boundary are not even element-aligned: copied, correct."""
    idx = next(i for i, c in enumerate(CASES) if c[2] == "float64")
    expr, shapes, dtype = CASES[idx]
    k = kernels[idx]
    arrays = _data(shapes, dtype, 7)
    ins = [_at(a, 4) for a in arrays]
    assert not ins[0].flags.aligned
    np.testing.assert_allclose(k(*ins), np.einsum(expr, *arrays), rtol=1e-10)


def test_noncontiguous_and_wrong_dtype(kernels):
    k = kernels[0]
    a, b = _data(CASES[0][1], "float32", 3)
    bt = np.asfortranarray(b)  # not C-contiguous: copied
    np.testing.assert_allclose(k(a, bt), a @ b, rtol=1e-4, atol=1e-4)
    with pytest.raises(einc.EincError, match="dtype float64"):
        k(a.astype(np.float64), b)


def test_parameters_are_declared_element_aligned():
    k = einc.compile(CASES[0][0], *CASES[0][1], cache=False)
    params = k.built.lowered.func.params
    assert [int(p.data_alignment) for p in params] == [4, 4, 4]
    assert k.param_align == "element"


# --- schedules: inlined intermediates ------------------------------------------------------------


@pytest.mark.parametrize("expr,shapes", [("ij,ij,ij->ij", [(16, 64)] * 3), ("ii->", [(300, 300)]),
                                         ("ii,i->i", [(64, 64), (64,)])])
def test_elementwise_intermediates_are_inlined(expr, shapes):
    k = einc.compile(expr, *shapes, cache=False)
    classes = [cls for _, cls, _ in k.built.plan]
    assert "inlined" in classes
    xs = _data(shapes, "float32", 11)
    np.testing.assert_allclose(k(*xs), np.einsum(expr, *xs), rtol=1e-4, atol=1e-4)


def test_intermediate_read_many_times_is_not_inlined():
    # the product ab,ab->ab feeds a GEMM-like step that reads it once per output column
    k = einc.compile("ab,ab,bc->ac", (32, 48), (32, 48), (48, 64), cache=False, optimize=["einsum_path", (0, 1), (0, 1)])
    assert all(cls != "inlined" for _, cls, _ in k.built.plan)
    xs = _data([(32, 48), (32, 48), (48, 64)], "float32", 12)
    np.testing.assert_allclose(k(*xs), np.einsum("ab,ab,bc->ac", *xs), rtol=1e-4, atol=1e-4)


# --- the kernel cache behind einc.compile ----------------------------------------------------------


def test_compile_uses_the_kernel_cache(tmp_path, monkeypatch):
    from einc.lowering import cache as KC

    monkeypatch.setenv("EINC_CACHE_DIR", str(tmp_path / "kc"))
    monkeypatch.setattr(KC, "_DEFAULT", None)
    calls = []
    import einc.lowering.build as B

    real = B.build
    monkeypatch.setattr(B, "build", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    k1 = einc.compile("ij,jk->ik", (8, 16), (16, 24))
    k2 = einc.compile("ij,jk->ik", (8, 16), (16, 24))
    assert len(calls) == 1 and k2.built is k1.built
    assert list((tmp_path / "kc").rglob("*.ekc"))
    KC.default_cache().clear(memory=True)  # another process: the disk entry is loaded, not rebuilt
    k3 = einc.compile("ij,jk->ik", (8, 16), (16, 24))
    assert len(calls) == 1 and k3.built.mod is None
    assert "T.prim_func" in k3.source("tir")  # TIR rescheduled on demand for a disk hit
    einc.compile("ij,jk->ik", (8, 16), (16, 24), cache=False)
    assert len(calls) == 2
    a, b = _data([(8, 16), (16, 24)], "float32", 2)
    np.testing.assert_allclose(k3(a, b), a @ b, rtol=1e-4, atol=1e-4)
    k3.export(tmp_path / "k3.so")  # a disk hit exports the cached library's bytes
    np.testing.assert_allclose(einc.load(tmp_path / "k3.so")(a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_cache_key_includes_tune_options():
    from einc.ir import TensorType, single_einsum
    from einc.lowering import cache as KC

    prog = single_einsum("ij,jk->ik", [TensorType((8, 16), "float32"), TensorType((16, 24), "float32")])
    seen = []

    class Spy(KC.KernelCache):
        def lookup(self, key, *, load=True):
            seen.append(key)
            raise RuntimeError("stop")

    for tune, d in ((0, None), (8, None), (16, None), (8, "/tmp/x")):
        with pytest.raises(RuntimeError):
            KC.build_cached(prog, "llvm", cache=Spy(disk=False), tune=tune, tune_dir=d)
    assert len(set(seen)) == 4
    assert seen[0] == KC.cache_key(prog, KC.resolve_target("llvm"), schedule=True)  # untuned key unchanged


def test_tuning_is_quiet_unless_verbose(capfd, monkeypatch):
    from einc.lowering.build import _quiet_unless_verbose

    monkeypatch.delenv("EINC_VERBOSE", raising=False)
    with _quiet_unless_verbose():
        print(" ID | Name | FLOP", flush=True)
        os.write(2, b"c++ log line\n")
    out, err = capfd.readouterr()
    assert "ID | Name" not in out and "c++ log" not in err
    monkeypatch.setenv("EINC_VERBOSE", "1")
    with _quiet_unless_verbose():
        print(" ID | Name | FLOP", flush=True)
    assert "ID | Name" in capfd.readouterr().out


def test_keyword_names_fall_back_to_aligned_copies():
    """A value named like a Python keyword defeats the TVMScript round trip: the kernel keeps
    64-byte parameters and Kernel copies unaligned arrays instead of crashing."""
    from einc.ir.nodes import Einsum, Program, Value
    from einc.ir.types import TensorType
    from einc.kernel import compile_program

    t = TensorType((32, 32), "float32")
    prog = Program((Value("in", t), Value("def", t)), (Einsum("out", ("in", "def"), ("ij", "jk"), "ik", t),), ("out",))
    k = compile_program(prog, cache=False)
    assert k.param_align is None
    a, b = _data([(32, 32)] * 2, "float32", 5)
    for off in OFFSETS:
        np.testing.assert_allclose(k(_at(a, off), _at(b, off)), a @ b, rtol=1e-4, atol=1e-4)
        out = _at(np.zeros((32, 32), np.float32), off)
        assert k(a, b, out=out) is out
        np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
