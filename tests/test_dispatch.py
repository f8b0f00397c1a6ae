"""The default-target policy of ``einc.dispatch``: when a call is interpreted, compiled, or served from cache."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from einc import dispatch as D
from einc.errors import CompileError
from einc.ir import TensorType, single_einsum


def prog_for(sub, *arrays):
    return single_einsum(sub, [TensorType(a.shape, a.dtype.name) for a in arrays])


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("EINC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EINC_TARGET", raising=False)
    D.reset()
    yield
    D.reset()


class Counter:
    """Stands in for ``get_kernel``: counts builds and returns an interpreted Kernel (no TVM)."""

    def __init__(self, exc=None):
        self.calls, self.exc = [], exc

    def __call__(self, prog, target=None):
        from einc.kernel import Kernel

        self.calls.append(target)
        if self.exc:
            raise self.exc
        return Kernel(prog), "built"


def rand(*shape, dtype="float32", seed=0):
    return np.random.default_rng(seed).random(shape).astype(dtype)


def test_tiny_call_interprets_and_never_compiles(monkeypatch):
    c = Counter()
    monkeypatch.setattr(D, "get_kernel", c)
    a, b = rand(3, 4), rand(4, 5)
    p = prog_for("ik,kj->ij", a, b)
    for _ in range(2000):  # however often: a kernel cannot beat numpy here
        (r,) = D.execute(p, [a, b])
    np.testing.assert_allclose(r, a @ b, rtol=1e-6)
    assert c.calls == [] and D.plan_for(p).mode == "interp" and "floor" in D.explain(p)


def test_tiny_einsum_does_not_import_tvm():
    code = textwrap.dedent("""
        import sys, numpy as np, einc
        a = np.ones((3, 3), np.float32)
        r = einc.einsum("ij,jk->ik", a, a)
        assert np.allclose(r, a @ a)
        print("tvm" in sys.modules, "einc.lowering._tvm" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_repeated_midsize_calls_compile_after_the_time_repays_it(monkeypatch):
    c = Counter()
    monkeypatch.setattr(D, "get_kernel", c)
    monkeypatch.setattr(D, "COMPILE_S", 0.02)
    monkeypatch.setattr(D, "IMPORT_S", 0.0)
    a = rand(96, 96)
    p = prog_for("ik,kj->ij", a, a)
    assert D.predict_numpy_s(p) >= D.FLOOR_S
    plan = D.plan_for(p)
    assert plan.mode == "auto" and c.calls == []
    n = 0
    while plan.mode == "auto" and n < 10_000:
        (r,) = D.execute(p, [a, a])
        n += 1
    assert plan.mode == "kernel" and len(c.calls) == 1
    assert plan.spent_s >= 0.5 * D.COMPILE_S   # it waited for the interpreter time to add up...
    assert n > 1                               # ...over several calls, not at once
    D.execute(p, [a, a])
    assert len(c.calls) == 1                   # and built once
    np.testing.assert_allclose(r, a @ a, rtol=1e-4)


def test_calls_measured_under_the_floor_never_compile(monkeypatch):
    c = Counter()
    monkeypatch.setattr(D, "get_kernel", c)
    monkeypatch.setattr(D, "COMPILE_S", 0.005)
    monkeypatch.setattr(D, "IMPORT_S", 0.0)
    a = rand(96, 96)
    p = prog_for("ik,kj->ij", a, a)
    monkeypatch.setattr(D, "predict_numpy_s", lambda prog: 1.0e-3)   # predicted slow, measured fast
    plan = D.plan_for(p)
    assert plan.mode == "auto"
    monkeypatch.setattr(D, "FLOOR_S", 10.0)   # every measured call is now "under the floor"
    for _ in range(200):
        D.execute(p, [a, a])
    assert plan.mode == "interp" and c.calls == [] and "measured" in plan.reason


def test_huge_single_call_compiles_at_once(monkeypatch):
    c = Counter()
    monkeypatch.setattr(D, "get_kernel", c)
    p = single_einsum("ik,kj->ij", [TensorType((4096, 4096), "float32")] * 2)
    assert D.predict_numpy_s(p) > D.COMPILE_S + D.IMPORT_S
    assert D.plan_for(p).mode == "kernel" and len(c.calls) == 1


def test_forced_target_compiles_even_tiny(monkeypatch):
    c = Counter()
    monkeypatch.setattr(D, "get_kernel", c)
    a = rand(2, 2)
    D.execute(prog_for("ij->i", a), [a], "llvm")
    assert c.calls == ["llvm"]


def test_env_target(monkeypatch):
    c = Counter()
    monkeypatch.setattr(D, "get_kernel", c)
    a = rand(2, 2)
    p = prog_for("ij->i", a)
    monkeypatch.setenv("EINC_TARGET", "llvm")
    D.execute(p, [a])
    assert c.calls == ["llvm"]
    monkeypatch.setenv("EINC_TARGET", "interp")
    big = single_einsum("ik,kj->ij", [TensorType((4096, 4096), "float32")] * 2)
    assert D.plan_for(big).mode == "interp" and c.calls == ["llvm"]


def test_complex_programs_compile_when_forced():
    a = (rand(30, 20) + 1j * rand(30, 20, seed=1)).astype(np.complex64)
    b = (rand(20, 10, seed=2) + 1j * rand(20, 10, seed=3)).astype(np.complex64)
    p = prog_for("ik,kj->ij", a, b)
    (r,) = D.execute(p, [a, b], "llvm")
    np.testing.assert_allclose(r, a @ b, rtol=1e-5)
    assert r.dtype == np.complex64 and D.plan_for(p, "llvm").mode == "kernel"


def test_failed_compile_falls_back_and_warns(monkeypatch):
    c = Counter(CompileError("TVM failed in stage 'compile': boom"))
    monkeypatch.setattr(D, "get_kernel", c)
    p = single_einsum("ik,kj->ij", [TensorType((4096, 4096), "float32")] * 2)
    with pytest.warns(RuntimeWarning, match="boom"):
        plan = D.plan_for(p)
    assert plan.mode == "interp" and len(c.calls) == 1
    with pytest.raises(CompileError):   # a forced target reports it
        D.plan_for(p, "llvm")


def test_einsum_call_makes_the_program_once_per_signature(monkeypatch):
    made = []
    a, b = rand(3, 4), rand(4, 5)

    def make():
        made.append(1)
        return prog_for("ik,kj->ij", a, b)

    for _ in range(5):
        (r,) = D.einsum_call("ik,kj->ij", [a, b], make)
    assert len(made) == 1
    D.einsum_call("ik,kj->ij", [a.astype(np.float64), b.astype(np.float64)],
                  lambda: prog_for("ik,kj->ij", a.astype(np.float64), b.astype(np.float64)))
    assert len(made) == 1 and len(D._PLANS) == 2   # another dtype: another plan
    np.testing.assert_allclose(r, a @ b, rtol=1e-6)


# -- with TVM ---------------------------------------------------------------------------------------

@pytest.mark.tvm
def test_forced_llvm_runs_a_real_kernel_on_awkward_inputs():
    a = rand(40, 64)
    b = np.asfortranarray(rand(64, 24, seed=1))        # not C-contiguous
    c = rand(41, 64)[1:]                                # not 64-byte aligned
    p = prog_for("ik,kj->ij", a, b)
    (r,) = D.execute(p, [c, b], "llvm")
    plan = D.plan_for(p, "llvm")
    assert plan.mode == "kernel" and not plan.kernel.kernel.interpreted
    np.testing.assert_allclose(r, c @ b, rtol=1e-4)
    assert r.__array_interface__["data"][0] % 64 == 0


@pytest.mark.tvm
def test_cached_kernel_is_reused_from_disk_without_building(monkeypatch):
    from einc.lowering import build as B
    from einc.lowering import cache as C

    a = rand(128, 128)
    p = prog_for("ik,kj->ij", a, a)
    assert D.predict_numpy_s(p) > D.FLOOR_S
    D.execute(p, [a, a], "llvm")                 # builds and stores on disk
    D.reset()
    C.default_cache().clear(memory=True)         # as if a new process: only the disk remains

    def no_build(*args, **kw):
        raise AssertionError("built again although the disk cache has it")

    monkeypatch.setattr(B, "build", no_build)
    plan = D.plan_for(p)                         # default policy, TVM loaded: the disk kernel is used
    assert plan.mode == "kernel" and plan.origin == "cache"
    (r,) = D.execute(p, [a, a])
    np.testing.assert_allclose(r, a @ a, rtol=1e-4)
    assert C.default_cache().stats["disk"] >= 1


def test_kernels_are_built_from_pairwise_programs():
    a, b, c = rand(4, 5), rand(5, 6, seed=1), rand(6, 3, seed=2)
    p = prog_for("ij,jk,kl->il", a, b, c)
    kp = D.kernel_program(p)
    assert len(p.body) == 1 and len(kp.body) == 2 and all(op.arity <= 2 for op in kp.body)
    from einc.ir.interp import run

    np.testing.assert_allclose(run(kp, a, b, c)[0], a @ b @ c, rtol=1e-5)
    p2 = prog_for("ij,jk->ik", a, b)
    assert D.kernel_program(p2) is p2


def test_complex_steps_that_are_not_gemms_stay_in_numpy():
    """Sums, products and matrix-vector steps of complex values are slower as their real and
    imaginary parts than in numpy's complex loops (``ij->j`` 1024^2: 10.7 ms against 0.23); complex
    GEMMs are far faster (``ij,jk->ik`` 256^2: 1.5 ms against 50)."""
    a = (rand(300, 300) + 1j * rand(300, 300, seed=1)).astype(np.complex64)
    for sub, ops in (("ij->j", [a]), ("ij,j->i", [a, a[0]]), ("ij,ij->ij", [a, a])):
        p = prog_for(sub, *ops)
        assert D.plan_for(p).mode == "interp" and "not a GEMM" in D.explain(p), sub
    for sub in ("ik,kj->ij", "ik,jk->ij"):
        assert D.plan_for(prog_for(sub, a, a)).mode in ("auto", "kernel"), sub
