"""Values over 2**31 - 1 elements: lowered with 64-bit indices (``lower.needs_int64``), for the CPU and
the GPU.  Before, such a value was refused (TVM's 32-bit indices overflowed in its codegen).

The 64-bit path is checked at sizes a test affords by forcing it (``lower.FORCE_INT64``): the CPU
kernels run against numpy, the GPU kernels through the CUDA emulator.  At full size, a
2**31-element int8 transpose and reduction run on the CPU (slow: 4 GiB of arrays), and a
4.9-billion-element GEMM compiles for both targets, and each GPU shape class builds over 2**31
elements with 64-bit arithmetic in its kernels.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.tvm

CPU_CASES = [
    ("ik,kj->ij", [(64, 48), (48, 40)], "float32"),
    ("bik,bkj->bij", [(3, 32, 16), (3, 16, 24)], "float32"),  # 64-byte alignment faulted here
    ("ij->ji", [(100, 70)], "int8"),
    ("ij->", [(300, 200)], "float64"),
    ("ij->j", [(300, 200)], "int32"),
    ("ijk,jr,kr->ir", [(32, 16, 16), (16, 8), (16, 8)], "float32"),
]


@pytest.fixture
def int64_indices(monkeypatch):
    from einc.lowering import lower

    monkeypatch.setattr(lower, "FORCE_INT64", True)


def _param_index_dtypes(kernel):
    return {str(d.ty) for p in kernel.built.lowered.func.params for d in p.shape}


@pytest.mark.parametrize("expr,shapes,dtype", CPU_CASES)
def test_cpu_kernels_with_64_bit_indices_match_numpy(expr, shapes, dtype, int64_indices):
    import einc

    rng = np.random.default_rng(0)
    xs = [rng.uniform(-4, 4, s).astype(dtype) for s in shapes]
    k = einc.compile(expr, *shapes, dtype=dtype, cache=False)
    assert _param_index_dtypes(k) == {"int64"}
    out = np.empty(np.einsum(expr, *xs).shape, dtype)  # out=: a permutation would return a view
    got = k(*xs, out=out)
    want = np.einsum(expr, *xs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="the CUDA emulator needs a C++ compiler")
@pytest.mark.parametrize("expr,shapes,dtype", [
    ("ik,kj->ij", [(256, 512), (512, 128)], "float32"),  # split-K
    ("ik,kj->ij", [(40, 48), (48, 24)], "float16"),      # tensor cores, padded M/N
    ("bik,bkj->bij", [(2, 64, 32), (2, 32, 48)], "bfloat16"),
    ("ij->ji", [(256, 320)], "float32"),
    ("ij->", [(512, 300)], "float32"),                   # two-stage reduction
    ("ijk,jr,kr->ir", [(64, 64, 64), (64, 16), (64, 16)], "float32"),
])
def test_gpu_schedules_on_64_bit_loops_match_numpy_in_the_emulator(expr, shapes, dtype, int64_indices):
    """einc's GPU schedules on a function with 64-bit loops and shapes.  (TVM's CUDA pipeline narrows
    indices back to 32 bits where it can prove they fit, so at these sizes the kernel computes in int;
    the full-size test below shows the 64-bit arithmetic that stays.)"""
    from tests.test_gpu_emulated import _check

    k = _check(expr, shapes, dtype)
    assert _param_index_dtypes(k) == {"int64"}
    assert not any(row[1] == "dlight" or "->" in row[1] for row in k.built.plan), k.built.plan


@pytest.mark.parametrize("expr,shapes,dtype", [
    ("ik,kj->ij", [(70000, 64), (64, 70000)], "float32"),               # SIMT GEMM
    ("bsh,hd->bsd", [(80, 8192, 4096), (4096, 1024)], "float16"),       # tensor cores
    ("ij->ji", [(50000, 50000)], "float32"),                            # tiled transpose
    ("ij->i", [(50000, 50000)], "float32"),                             # reduction
    ("ij,ij->ij", [(50000, 50000), (50000, 50000)], "bfloat16"),        # map
])
def test_gpu_kernels_over_2_to_the_31_elements_build_with_64_bit_indices(expr, shapes, dtype):
    import einc

    k = einc.compile(expr, *shapes, dtype=dtype, target="cuda", cache=False)
    assert _param_index_dtypes(k) == {"int64"}
    assert not any(row[1] == "dlight" or "->" in row[1] for row in k.built.plan), k.built.plan
    src = k.source("cuda")
    assert "int64_t" in src.split('extern "C" __global__', 1)[1]
    if shutil.which("nvcc") is None:
        return
    from einc.lowering.cuda_static import analyse_source

    for kern in analyse_source(src, "sm_90"):
        assert kern.stack_bytes == 0 and 0 < kern.registers <= 255, kern


def test_the_threshold_counts_every_tensor_of_the_function():
    from einc.lowering._tvm import te
    from einc.lowering.lower import INT32_ELEMENTS, needs_int64

    small = te.placeholder((INT32_ELEMENTS // 2,), "float32", name="a")
    big = te.placeholder((INT32_ELEMENTS + 1,), "float32", name="b")
    assert not needs_int64([small])
    assert needs_int64([big])
    # a small output of a big intermediate (a padded copy, a diagonal of a big operand)
    mid = te.compute((INT32_ELEMENTS + 1,), lambda i: big[i] * 2, name="mid")
    assert needs_int64([te.compute((8,), lambda i: mid[i], name="out")])


@pytest.mark.parametrize("target", ["llvm", "cuda"])
def test_values_over_2_to_the_31_elements_compile(target):
    """A 70000 x 70000 result (4.9e9 elements) failed deep in TVM's codegen ("Literal value 4900000000
    exceeds range of int32"), then was refused by name; now it compiles, with 64-bit indices."""
    import einc

    k = einc.compile("ik,kj->ij", (70000, 16), (16, 70000), target=target, cache=False)
    assert _param_index_dtypes(k) == {"int64"}
    assert any(row[1] == "gemm" for row in k.built.plan), k.built.plan
    small = einc.compile("ik,kj->ij", (7000, 16), (16, 7000), target=target, cache=False)
    assert _param_index_dtypes(small) == {"int32"}


@pytest.mark.slow
def test_a_transpose_and_a_reduction_over_2_to_the_31_elements_run_on_the_cpu():
    """4 GiB of int8 (a 32769 x 65536 operand and its transpose): every element checked."""
    import einc

    n0, n1 = 2**15 + 1, 2**16
    x = np.empty((n0, n1), np.int8)
    x[:] = (np.arange(n1) % 251 - 125).astype(np.int8)[None, :]
    x[:, 0] = np.arange(n0) % 97  # rows differ too
    x[-1, :] = np.arange(n1) % 89
    k = einc.compile("ij->ji", x, cache=False)
    assert _param_index_dtypes(k) == {"int64"}
    y = np.empty((n1, n0), np.int8)
    assert k(x, out=y) is y
    for j in (0, 1, 4097, n1 - 1):
        np.testing.assert_array_equal(y[j], x[:, j])
    assert np.array_equal(y, x.T)
    del y
    s = einc.compile("ij->i", x, cache=False)(x)
    np.testing.assert_array_equal(s, x.sum(axis=1, dtype=np.int8))
