"""Tensor-core (WMMA) GEMM schedule for float16 and bfloat16 steps (``lowering/schedules_gpu_tc.py``).

Without a GPU: the plan row names the tensor-core schedule, the CUDA C uses ``nvcuda::wmma`` (bf16
fragments loaded through an ``nv_bfloat16*`` view of the uint16 shared tiles), both operands reach
shared memory through ``cp.async`` when the K loop is pipelined, and ptxas accepts it for sm_90 with
no local-memory stack frame; float32 steps, odd extents and two contracted labels take the SIMT
rule.  Results are checked by the CUDA emulator (``tests/test_gpu_emulated.py``) and, with a GPU
(``-m gpu``), against numpy here.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.test_gpu import _program, gpu  # noqa: F401 - the fixture

pytestmark = pytest.mark.tvm

CASES = [
    ("ik,kj->ij", [(256, 128), (128, 256)]),
    ("ik,jk->ij", [(128, 64), (192, 64)]),
    ("ki,kj->ij", [(64, 128), (64, 96)]),
    ("bik,bkj->bij", [(3, 64, 48), (3, 48, 80)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 64, 32), (2, 3, 64, 32)]),
    ("ecd,edh->ech", [(4, 32, 64), (4, 64, 48)]),
]


def _build(expr, shapes, dtype):
    from einc.lowering.build import build

    return build(_program(expr, shapes, dtype), {"kind": "cuda", "arch": "sm_90"})


def _gemm_rows(b):
    return [(blk, cls, desc) for blk, cls, desc in b.plan if cls.startswith("gemm")]


def _async_copy_targets(src):
    """The shared buffers that ``cp.async`` copies write (TVM's helper takes the destination first)."""
    return set(re.findall(r"\bptx_cp_async\w*\((\w+),", src))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("expr,shapes", CASES)
def test_takes_tensor_cores_and_ptxas_accepts(expr, shapes, dtype, tmp_path):
    b = _build(expr, shapes, dtype)
    rows = _gemm_rows(b)
    assert len(rows) == 1 and rows[0][1] == "gemm", b.plan
    desc = rows[0][2]
    assert desc.startswith(f"tensor cores (wmma {dtype}->f32)"), b.plan
    src = b.rt_mod.imports[0].inspect_source()
    assert "nvcuda::wmma::mma_sync" in src and "nvcuda::wmma::store_matrix_sync" in src and "__shared__" in src
    # bf16 fragment loads go through einc's shared-memory overloads (lowering/cuda_source.py)
    body = src.split('extern "C" __global__', 1)[1]
    loads = re.findall(r"(?:nvcuda::wmma::load_matrix_sync|einc_wmma_load_bf16)\([^;]*;", body)
    if dtype == "float16":
        assert "(half)" in src  # the float32 -> float16 conversion is fused into the output write
        assert "nv_bfloat16" not in src
    else:
        # the shared tiles hold the bits as uint16; the fragment load reads them as nv_bfloat16
        assert "fragment<nvcuda::wmma::matrix_a, 16, 16, 16, nv_bfloat16" in src
        assert loads and all("(nv_bfloat16*)" in ld and ld.startswith("einc_wmma_load_bf16") for ld in loads), loads[:2]
        assert "(half)" not in src and "ushort* __restrict__ out_ptr" in src
    ins, out = expr.split("->")
    extent = dict(zip(ins.replace(",", ""), [d for sh in shapes for d in sh]))
    (k,) = set(ins.replace(",", "")) - set(out)
    k_tiles = extent[k] // int(re.search(r"block tile \d+x\d+x(\d+)", desc).group(1))
    if k_tiles >= 2:  # pipelined K loop: both operands' tiles arrive by cp.async
        assert "-stage cp.async pipeline" in desc, desc
        assert len(_async_copy_targets(src)) == 2 and "cp.async.wait_group" in src, _async_copy_targets(src)
    else:
        assert "no pipeline" in desc and not _async_copy_targets(src), desc
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not on PATH")
    cu = tmp_path / "k.cu"
    cu.write_text(src)
    r = subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "-o", str(tmp_path / "k.cubin"), str(cu), "-Xptxas", "-v", "-w"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    stacks = [int(x) for x in re.findall(r"(\d+) bytes stack frame", r.stderr)]
    smem = [int(x) for x in re.findall(r"(\d+) bytes smem", r.stderr)]
    assert stacks and max(stacks) == 0, stacks
    assert max(smem, default=0) <= 48 * 1024, smem


@pytest.mark.parametrize("expr,shapes,dtype", [
    ("ik,kj->ij", [(128, 64), (64, 128)], "float32"),    # not a tensor-core dtype
    ("bqhd,bkhd->bhqk", [(2, 16, 2, 16), (2, 16, 2, 16)], "float16"),  # 16 flops per permuted element
    ("ijk,jkl->il", [(32, 16, 16), (16, 16, 32)], "float16"),  # two contracted labels
])
def test_other_steps_take_the_simt_rule(expr, shapes, dtype):
    b = _build(expr, shapes, dtype)
    rows = _gemm_rows(b)
    assert rows and all(cls == "gemm" for _, cls, _ in rows), b.plan
    assert not any(desc.startswith("tensor cores") for _, _, desc in rows), b.plan
    assert "wmma" not in b.rt_mod.imports[0].inspect_source()


@pytest.mark.parametrize("max_stages", [2, 3])
def test_plan_tiles_fit_shared_memory(max_stages, monkeypatch):
    from einc.lowering import schedules_gpu_tc as TC

    monkeypatch.setattr(TC, "MAX_STAGES", max_stages)
    for M, N, K in [(4096, 4096, 4096), (64, 48, 32), (16, 16, 16), (256, 16, 48), (128, 64, 256)]:
        for ak in (True, False):
            for bk in (True, False):
                BM, BN, BK, WN, c_pad = TC._plan(M, N, K, ak, bk)
                assert M % BM == 0 and N % BN == 0 and K % BK == 0 and BN % (WN * 16) == 0
                a = (BM * (BK + 8) if ak else BK * (BM + 8)) * 2
                b = (BN * (BK + 8) if bk else BK * (BN + 8)) * 2
                stages = TC._stages(BM, BN, BK, ak, bk, c_pad, K // BK)
                assert 1 <= stages <= min(max_stages, K // BK) and (stages == 1) == (K // BK == 1)
                assert max(2, stages) * (a + b) + 16 * (BN + c_pad) * 4 <= TC.SMEM_LIMIT
    assert TC._plan(4096, 4096, 4096, True, False)[:3] == (128, 128, 32)
    # 128 x 128 x 32 operand tiles fit 48 KB twice, not three times; 128 x 64 x 32 (A as k x m) fit 3x
    assert TC._stages(128, 128, 32, True, False, 4, 128) == 2
    assert TC._stages(128, 64, 32, False, False, 4, 8) == max_stages
    assert TC._stages(128, 64, 32, False, False, 4, 2) == 2
    with pytest.raises(ValueError):
        TC._plan(40, 40, 40, True, True)


# ------------------------------------------------------------------------------------------------
# on the GPU


def _check(expr, shapes, dtype, rtol, seed=0):
    import einc

    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-1, 1, s).astype(dtype) for s in shapes]
    k = einc.compile(expr, *xs, target="cuda")
    got = k(*xs)
    ref = np.einsum(expr, *[x.astype("float32") for x in xs])
    assert got.shape == ref.shape and got.dtype == xs[0].dtype
    np.testing.assert_allclose(got.astype("float32"), ref, rtol=rtol, atol=rtol * max(1.0, float(np.abs(ref).max())))
    return k


@pytest.mark.gpu
@pytest.mark.parametrize("expr,shapes", CASES + [("ik,kj->ij", [(1024, 512), (512, 768)])])
def test_gpu_tensorcore_float16_matches_numpy(gpu, expr, shapes):  # noqa: F811
    k = _check(expr, shapes, "float16", 2e-2)
    plan = getattr(k.built, "plan", None) or []  # (empty for a kernel the cache loaded from disk)
    assert not plan or any(d.startswith("tensor cores") for _, _, d in plan), plan


@pytest.mark.gpu
@pytest.mark.parametrize("expr,shapes", CASES)
def test_gpu_bfloat16_matches_numpy(gpu, expr, shapes):  # noqa: F811
    pytest.importorskip("ml_dtypes")
    from einc.ir.types import np_dtype

    k = _check(expr, shapes, np_dtype("bfloat16"), 3e-2)
    plan = getattr(k.built, "plan", None) or []
    assert not plan or any(d.startswith("tensor cores") for _, _, d in plan), plan
