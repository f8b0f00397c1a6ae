"""CUDA kernels checked for their *results* without a GPU: the generated CUDA C runs on the CPU
through ``einc.lowering.cuda_emulator`` (fibers per CUDA thread, barriers as switch points) and is
compared with numpy.  CI has no GPU; these tests are what stands between a schedule change and a
wrong GPU kernel there.  The emulator itself is tested too: a kernel with its barriers removed, a
divergent barrier and a crashing kernel must each be caught."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tvm,
              pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                                 reason="the CUDA emulator needs a C++ compiler")]

SUITE = Path(__file__).resolve().parents[1] / "bench" / "suite.json"
GPU_CASES = json.loads(SUITE.read_text())["gpu"] if SUITE.exists() else {}
TARGET = {"kind": "cuda", "arch": "sm_90"}

# the GPU suite at sizes the emulator runs in seconds, each still taking its full-size shape class
SMALL = {
    "matmul": [(256, 512), (512, 128)],          # split-K as at full size
    "batched_mm": [(4, 128, 128), (4, 128, 128)],
    "attn_scores": [(2, 2, 128, 64), (2, 2, 128, 64)],
    "mttkrp": [(64, 64, 64), (64, 16), (64, 16)],
    "tucker_ttm": [(32, 32, 32), (32, 32), (32, 32), (32, 32)],
    "ao_to_mo": [(8, 8), (8, 8), (8, 8, 8, 8), (8, 8), (8, 8)],
    "transpose": [(256, 320)],
    "moe": [(2, 128, 64), (2, 64, 96)],
}


def _inputs(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return [rng.integers(0, 2, s).astype(bool) for s in shapes]
    if "int" in dtype:
        return [rng.integers(-5, 5, s).astype(dtype) for s in shapes]
    if dtype == "bfloat16":
        import ml_dtypes

        return [rng.uniform(-1, 1, s).astype(ml_dtypes.bfloat16) for s in shapes]
    return [rng.uniform(-1, 1, s).astype(dtype) for s in shapes]


def _check(expr, shapes, dtype="float32", override=None, rtol=None):
    import einc
    from einc.lowering import schedules_gpu
    from einc.lowering.cuda_emulator import emulate

    schedules_gpu.GEMM_OVERRIDE = override
    try:
        k = einc.compile(expr, *shapes, dtype=dtype, target=TARGET, cache=False)
    finally:
        schedules_gpu.GEMM_OVERRIDE = None
    xs = _inputs(shapes, dtype)
    got = emulate(k.built, xs)[0].astype(np.float64)
    if dtype == "bool" or "int" in dtype:  # numpy's own integer/bool semantics (wrapping, logical or)
        ref = np.einsum(expr, *xs).astype(np.float64)
    else:
        ref = np.einsum(expr, *[x.astype(np.float64) for x in xs])
    if rtol is None:
        rtol = {"float16": 3e-3, "bfloat16": 2e-2, "float64": 1e-12}.get(dtype, 1e-5 if "int" not in dtype else 0)
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(got - ref).max())
    assert err <= rtol * scale, f"{expr} {dtype} {override}: max error {err:.3e} (scale {scale:.3e})"
    return k


def test_every_gpu_suite_case_has_a_small_version():
    assert set(SMALL) == set(GPU_CASES)
    for name, shapes in SMALL.items():
        assert [len(s) for s in shapes] == [len(s) for s in GPU_CASES[name]["shapes"]], name


@pytest.mark.parametrize("name", sorted(SMALL))
def test_gpu_suite_case_results(name):
    k = _check(GPU_CASES[name]["expr"], SMALL[name])
    assert k.built.plan  # scheduled by einc's rules, not dlight
    assert all(row[1] != "dlight" for row in k.built.plan), k.built.plan


# bench/complex.json's GPU cases, small: complex values run as their (re, im) parts (einc.ir.realify)
COMPLEX_CASES = json.loads((SUITE.parent / "complex.json").read_text())["gpu"]
COMPLEX_SMALL = {
    "cmatmul": [(96, 64), (64, 80)],
    "cbatched_mm": [(2, 64, 32), (2, 32, 48)],
    "gate2q": [(64, 4, 32), (4, 4)],
    "cmttkrp": [(16, 16, 16), (16, 8), (16, 8)],
}


@pytest.mark.parametrize("name", sorted(COMPLEX_SMALL))
def test_complex_gpu_cases_run_as_their_real_form(name):
    import einc
    from einc.lowering.cuda_emulator import emulate

    assert set(COMPLEX_SMALL) == set(COMPLEX_CASES)
    expr, shapes = COMPLEX_CASES[name]["expr"], COMPLEX_SMALL[name]
    k = einc.compile(expr, *shapes, dtype="complex64", target=TARGET, cache=False)
    rng = np.random.default_rng(0)
    xs = [(rng.uniform(-1, 1, s) + 1j * rng.uniform(-1, 1, s)).astype(np.complex64) for s in shapes]
    got = k.form.outputs(emulate(k.built, k.form.inputs(xs)))[0]
    ref = np.einsum(expr, *[x.astype(np.complex128) for x in xs])
    assert got.dtype == np.complex64
    assert float(np.abs(got - ref).max()) <= 1e-5 * max(1.0, float(np.abs(ref).max()))
    classes = [row[1] for row in k.built.plan]
    assert "dlight" not in classes, k.built.plan
    assert ("gemm" in classes) == (name != "gate2q"), k.built.plan  # gate2q sums 4 x 2 terms: reduce-short


def test_a_gemm_over_three_summed_labels_keeps_its_shared_tiles_small():
    """Fusing all three K labels (f, b, c) into one tiled loop lost TVM the tiles' regions: each shared
    tile was its whole operand (56-64 KiB, over the 48 KiB a kernel may declare), and dlight could not
    build it either.  The complex mttkrp's real form has such a step."""
    k = _check("afbc,dbcf->ad", [(16, 2, 16, 16), (8, 16, 16, 2)])
    assert k.built.plan[0][1] == "gemm" and "serial K" in k.built.plan[0][2], k.built.plan


@pytest.mark.parametrize("override", [
    None, {"kt": False}, {"async": True}, {"bk": 8, "stages": 3, "async": True}, {"unroll_k": False},
    {"ty": 16, "tm": 4, "tx": 16, "tn": 8}, {"ty": 16, "tm": 8, "tx": 16, "tn": 4, "stages": 1},
], ids=lambda o: json.dumps(o, separators=(",", ":")) if o else "default")
@pytest.mark.parametrize("expr,shapes", [
    ("ik,kj->ij", [(256, 512), (512, 128)]),      # A K-major in shared memory, split-K
    ("bhqd,bhkd->bhqk", [(2, 2, 128, 64), (2, 2, 128, 64)]),  # both operands K-major
])
def test_gemm_knobs_all_give_the_same_results(expr, shapes, override):
    _check(expr, shapes, override=override)


@pytest.mark.parametrize("name,shapes", [
    ("ao_to_mo", [(4, 32), (4, 32), (32, 32, 32, 32), (4, 32), (4, 32)]),
    ("tucker_ttm", [(32, 32, 32), (32, 32), (32, 32), (32, 32)]),
])
def test_async_copies_of_intermediate_buffers(name, shapes, monkeypatch):
    """cp.async (knob async) on multi-step programs: a GEMM reading the previous step's result
    copies it 4 bytes at a time, clear of TVM's InjectPTXAsyncCopy ICHECK (neither compiled with
    async before; ``tvm_bug_async_lanes`` brings the 16-byte copies and the ICHECK back), and the
    results stay right; with the bug shown, the build falls back to dlight and says why."""
    from einc.lowering import schedules_gpu

    # p = 4 gives GEMM blocks under a warp, which run a thread per output unless told otherwise
    # (larger extents keep the GEMM rule but take minutes in the emulator)
    monkeypatch.setattr(schedules_gpu, "SMALL_GEMM_K", 0)

    k = _check(GPU_CASES[name]["expr"], shapes, override={"async": True})
    assert all(r[1] == "gemm" and "cp.async pipeline" in r[2] for r in k.built.plan), k.built.plan
    k = _check(GPU_CASES[name]["expr"], shapes, override={"async": True, "tvm_bug_async_lanes": True})
    assert all(r[1] == "dlight" and "did not build" in r[2] and "lanes" in r[2] for r in k.built.plan), k.built.plan


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name,shapes", [("tucker_ttm", [(16, 16, 16), (16, 16), (16, 16), (16, 16)])])
def test_multi_step_programs_with_tensor_core_steps(name, shapes, dtype):
    """After a tensor-core step TVM's ``Schedule.copy`` failed, so every multi-step float16 program
    fell back to dlight as a whole (whose tucker kernel declared 263 KiB of shared memory: no GPU
    could load it).  Each step now gets einc's own rule, at least one of them on tensor cores."""
    k = _check(GPU_CASES[name]["expr"], shapes, dtype)
    assert all(r[1] != "dlight" for r in k.built.plan), k.built.plan
    assert any("tensor cores" in r[2] for r in k.built.plan), k.built.plan


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("expr,shapes,bk", [
    ("ik,kj->ij", [(100, 999), (999, 60)], 16),     # K with no power-of-two divisor: a predicated tail
    ("ik,kj->ij", [(130, 1000), (1000, 70)], 8),    # K = 1000: the largest power-of-two divisor
    ("bik,bkj->bij", [(2, 33, 45), (2, 45, 17)], 16),
])
def test_gemms_whose_k_is_not_a_multiple_of_16(expr, shapes, bk, dtype):
    """K tiles were K itself when 16 did not divide K: a 1000-deep shared tile no GPU has room for,
    so such GEMMs fell back to one thread per output with a serial loop."""
    k = _check(expr, shapes, dtype)
    (row,) = [r for r in k.built.plan if r[0] == "out"]
    assert row[1] == "gemm" and f"x{bk}, " in row[2], row


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gemms_with_several_contracted_labels_and_a_partial_tile(dtype):
    """Found by a random sweep: fusing the contracted labels into one K loop with a partial M tile
    (a = 48 on 32-row tiles) lost TVM the tiles' regions, and each shared tile was sized as its
    whole operand: 238 KiB of shared memory, a CompileError (no GPU loads that kernel)."""
    k = _check("aced,debc->ab", [(48, 32, 4, 4), (4, 4, 32, 32)], dtype)
    gemm = [r for r in k.built.plan if r[1] == "gemm"]
    assert len(gemm) == 1 and "serial K" in gemm[0][2], k.built.plan


def test_gemms_tile_a_long_contracted_label_not_a_tiny_contiguous_one():
    """Found by a random sweep: the K tile went to the 2-long label contiguous in one operand, under a
    serial 1024-long loop (2 FMAs per shared tile), and TVM failed to compile it (``eval_vec_``)."""
    k = _check("ace,cebd->abd", [(40, 1024, 2), (1024, 2, 8, 2)])
    gemm = [r for r in k.built.plan if r[1] == "gemm"]
    assert len(gemm) == 1 and "x16, " in gemm[0][2], k.built.plan


def test_split_k_with_a_serial_contracted_label_keeps_the_gemm_rule():
    """Found by a random sweep: split-K with a serial K-out loop (d, unfused past a partial tile) put
    N after that loop, the bind failed and the GEMM ran as a thread per output over all of K."""
    k = _check("cda,cdb->ab", [(2048, 1, 33), (2048, 1, 40)])
    assert [r[1] for r in k.built.plan] == ["gemm"] and "split-K x4" in k.built.plan[0][2], k.built.plan


@pytest.mark.parametrize("expr,shapes,dtype,split", [
    # fused K labels split on whole rows of the outer one (a chunk straddling a row made TVM size a
    # shared tile as its whole operand: 6.5 MiB, a CompileError)
    ("dac,dbc->ab", [(4, 64, 1024), (4, 8, 1024)], "float64", "split-K x4"),
    ("dac,dbc->ab", [(3, 64, 1024), (3, 8, 1024)], "float64", None),   # 3 rows: no split
    # N not the output's contiguous axis: no 4-wide stores along it (8 float64 M rows were vectorised)
    ("eac,ecbd->adbe", [(4, 64, 32), (4, 32, 128, 1)], "float64", None),
])
def test_gemm_corner_cases_a_random_sweep_found(expr, shapes, dtype, split):
    k = _check(expr, shapes, dtype)
    assert [r[1] for r in k.built.plan] == ["gemm"], k.built.plan
    assert (split in k.built.plan[0][2]) if split else "split-K" not in k.built.plan[0][2], k.built.plan


def test_a_schedule_that_does_not_build_falls_back_to_dlight(monkeypatch):
    """A TVM failure generating code from einc's schedule is not the user's error: the function is
    scheduled by dlight instead and the plan says why; the fuzzer (``fallback=False``) sees it."""
    from einc.errors import CompileError
    from einc.lowering import build as B
    from einc.lowering import fuzz_hooks
    from einc.ir.nodes import single_einsum
    from einc.ir.types import TensorType

    real, calls = B._codegen_cuda, []

    def first_fails(mod, tjson):
        calls.append(mod)
        if len(calls) == 1:
            raise CompileError("TVM failed in stage 'compile': InternalError: Check failed: (planted)")
        return real(mod, tjson)

    monkeypatch.setattr(B, "_codegen_cuda", first_fails)
    k = _check("ik,kj->ij", [(64, 48), (48, 40)])
    assert len(calls) == 2 and [r[1] for r in k.built.plan] == ["dlight"], k.built.plan
    assert "einc's schedule did not build: TVM failed in stage 'compile'" in k.built.plan[0][2]
    calls.clear()
    prog = single_einsum("ik,kj->ij", [TensorType((64, 48), "float32"), TensorType((48, 40), "float32")])
    with pytest.raises(CompileError, match="planted"):
        fuzz_hooks.build_cuda_emu(prog)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("expr,shapes", [
    ("ij->ji", [(100, 34)]), ("ij->ji", [(1000, 334)]), ("ijk->kij", [(7, 100, 45)]),
])
def test_transposes_whose_extents_are_not_multiples_of_32(expr, shapes, dtype):
    """Partial 32x32 tiles, predicated (such transposes took the map rule before: one side of the
    copy uncoalesced)."""
    k = _check(expr, shapes, dtype)
    assert k.built.plan[0][1] == "transpose", k.built.plan


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("expr,shapes,tile", [
    ("ijk->kji", [(12, 20, 40)], "32x8"),    # the output's contiguous axis is 12 long
    ("ij->ji", [(64, 16)], "16x32"),         # the source's is 16 long
    ("ijkl->ljki", [(17, 19, 23, 29)], "16x16"),
])
def test_transposes_with_an_axis_under_32_take_smaller_tiles(expr, shapes, tile, dtype):
    """16- or 8-wide tiles along an axis shorter than 32 (the map rule read such permutations a
    whole source row apart per lane)."""
    k = _check(expr, shapes, dtype)
    row = k.built.plan[0]
    assert row[1] == "transpose" and row[2].startswith(f"{tile} tiles"), k.built.plan


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8", "int16"])
@pytest.mark.parametrize("expr,shapes", [("ij,ij->ij", [(64, 64)] * 2), ("ij->ji", [(96, 64)]),
                                         ("i,j->ij", [(64,), (48,)])])
def test_the_storage_conversion_is_folded_into_maps_and_transposes(expr, shapes, dtype):
    """One kernel and one pass over memory: a float16 map wrote a float32 intermediate and a second
    kernel converted it (twice the traffic of a memory-bound kernel)."""
    k = _check(expr, shapes, dtype)
    assert len(k.built.plan) == 1, k.built.plan
    assert k.source("cuda").count("__global__ void __launch_bounds__") == 2  # declaration + definition


def test_kernels_over_the_static_shared_memory_limit_are_refused():
    """g++ takes any size of static array; ptxas refuses a kernel declaring more than 48 KiB of
    ``__shared__`` arrays.  The emulator checks it, so a schedule that would not build for a GPU is
    not reported as working (float64 GEMMs took 128x128x16 tiles: 65 KiB)."""
    from einc.errors import CompileError
    from einc.lowering.cuda_emulator import check_static_shared

    def kernel(n_doubles):
        return ('extern "C" __global__ void __launch_bounds__(256) main_kernel(double* __restrict__ a) {\n'
                f'  __shared__ alignas(64) double a_shared_ptr[{n_doubles}];\n'
                '  __shared__ alignas(64) float b_shared_ptr[16];\n}\n'
                'extern "C" __global__ void main_kernel_1(float* __restrict__ b) {\n'
                '  extern __shared__ __align__(64) float dyn_ptr[];\n}\n')

    check_static_shared(kernel(6136))  # 49088 + 64 bytes: at the limit
    with pytest.raises(CompileError, match="main_kernel declares 49160 bytes"):
        check_static_shared(kernel(6137))


@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_wide_gemms_fit_shared_memory(dtype):
    k = _check("bik,bkj->bij", [(2, 256, 64), (2, 64, 256)], dtype)
    desc = k.built.plan[0][2]
    assert k.built.plan[0][1] == "gemm" and "8x(1x4) per thread" in desc, desc


def test_k_major_tiles_are_the_default_for_k_contiguous_operands():
    k = _check("bhqd,bhkd->bhqk", [(2, 2, 128, 64), (2, 2, 128, 64)])
    desc = k.built.plan[0][2]
    assert "K-major shared tiles for c,e" in desc, desc
    src = k.built.rt_mod.imports[0].inspect_source()
    assert "float4 " in src or "*(float4*)" in src



@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "int8", "uint16"])
@pytest.mark.parametrize("expr,shapes", [
    ("ijk,jr,kr->ir", [(64, 64, 64), (64, 16), (64, 16)]),   # mttkrp: K = (j,k) fused, split-K
    ("ijk,jr,kr->ir", [(32, 24, 40), (24, 8), (40, 8)]),      # K tile not a 16-multiple
    ("ijk,jr,kr->ir", [(64, 8, 24), (8, 64), (24, 64)]),
    ("ia,ib,abj->ij", [(48, 16), (48, 16), (16, 16, 40)]),    # the product on the M side
    ("ir,jr,ijk->kr", [(32, 16), (24, 16), (32, 24, 48)]),    # the operands' order swapped
])
def test_products_feeding_a_gemm_are_computed_into_its_shared_tiles(expr, shapes, dtype):
    """An elementwise product that only feeds a contraction (mttkrp's Khatri-Rao ``jr,kr->rjk``)
    is formed per K tile in the GEMM's shared memory: no intermediate buffer, and each product
    computed once per tile rather than in the inner loop of every thread that reads it."""
    k = _check(expr, shapes, dtype)
    fused = [r for r in k.built.plan if r[1] == "fuse"]
    assert len(fused) == 1, k.built.plan
    assert "shared memory" in fused[0][2], fused
    gemm = [r for r in k.built.plan if r[1] == "gemm"]
    assert len(gemm) == 1 and "2 operands via shared memory" in gemm[0][2], k.built.plan
    # the product's tile is stored with its M/N label innermost (read 4-wide in the inner loop)
    assert "K-major shared tiles" in gemm[0][2], gemm
    # the program's product buffer is never allocated: only its shared tile exists
    src = k.built.rt_mod.imports[0].inspect_source()
    prod = fused[0][0]
    assert f"{prod}_shared_ptr[" in src and f" {prod}_ptr" not in src, src[:3000]


def test_tile_products_knob_off_inlines_the_product_into_the_inner_loop():
    k = _check("ijk,jr,kr->ir", [(64, 64, 64), (64, 16), (64, 16)], override={"tile_products": False})
    fused = [r for r in k.built.plan if r[1] == "fuse"]
    gemm = [r for r in k.built.plan if r[1] == "gemm"]
    assert len(fused) == 1 and "inlined into" in fused[0][2], k.built.plan
    assert len(gemm) == 1 and "3 operands via shared memory" in gemm[0][2], k.built.plan


def test_a_product_whose_gemm_rule_fails_is_still_inlined(monkeypatch):
    """When the SIMT GEMM rule cannot take the consumer, the product falls back to being inlined
    into whichever rule does (the results stay right, no separate product kernel)."""
    from einc.lowering import schedules_gpu

    def broken(*a, **kw):
        raise ValueError("no gemm today")

    monkeypatch.setattr(schedules_gpu, "_gemm", broken)
    monkeypatch.setitem(schedules_gpu._RULES, "gemm", [broken, schedules_gpu._reduce_outer])
    k = _check("ijk,jr,kr->ir", [(16, 8, 8), (8, 4), (8, 4)])
    fused = [r for r in k.built.plan if r[1] == "fuse"]
    assert fused and all("inlined" in r[2] for r in fused), k.built.plan
    assert not any(r[1] == "gemm" for r in k.built.plan), k.built.plan

@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64", "int32", "int8", "bool"])
@pytest.mark.parametrize("expr,shapes", [
    ("ii->", [(100, 100)]),           # diagonal + a reduction to one value (one block, cross-thread)
    ("ij->", [(300, 500)]),
    ("ij->i", [(64, 300)]),
    ("ik,kj->ij", [(64, 48), (48, 40)]),
    ("ij->ji", [(64, 96)]),
    ("ij,ij,ij->ij", [(33, 17)] * 3),
    ("ij,ij->ij", [(64, 64)] * 2),    # 4-wide vectors (bool vectors were read as ushort4 by TVM)
    ("i,j->ij", [(64,), (64,)]),      # an operand broadcast across the vector lanes (int8: TVM ICHECK)
])
def test_dtypes(expr, shapes, dtype):
    _check(expr, shapes, dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8", "int16", "bool"])
@pytest.mark.parametrize("expr,shapes,stages", [
    ("ij->i", [(64, 300)], 1),          # block per output
    ("ij->j", [(300, 64)], 1),          # thread per output
    ("ij->j", [(4096, 16)], 2),         # two stages (rfactor), the second converts
    ("ij->", [(300, 500)], 2),
])
def test_reductions_convert_their_result_in_their_own_kernel(expr, shapes, stages, dtype):
    """The float32/uint32 accumulator stays in registers and the thread finishing an output stores it
    converted (a second kernel converted float32 sums written to memory before)."""
    k = _check(expr, shapes, dtype)
    assert len(k.built.plan) == 1 and k.built.plan[0][2].endswith("converted in registers"), k.built.plan
    src = k.built.rt_mod.imports[0].inspect_source()
    assert len(set(re.findall(r"__global__ void __launch_bounds__\(\d+\) (\w+)\(", src))) == stages


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "bool"])
@pytest.mark.parametrize("expr,shapes", [
    ("bi,bi->b", [(300, 8), (300, 8)]),
    ("nij,nj->ni", [(200, 3, 3), (200, 3)]),
    ("bij,bjk->bik", [(50, 4, 4), (50, 4, 4)]),
    ("ik,kj->ij", [(500, 40), (40, 3)]),
])
def test_short_reductions_and_tiny_gemms_run_a_thread_per_output(expr, shapes, dtype):
    k = _check(expr, shapes, dtype)
    assert [row[1] for row in k.built.plan if row[0].startswith("out")][0] == "reduce-short", k.built.plan
    src = k.built.rt_mod.imports[0].inspect_source()
    assert "__launch_bounds__(256)" in src


def test_reduction_to_a_scalar_has_its_own_block():
    """Regression: with no spatial loop the cross-thread reduction used to keep its per-thread
    partial sum in one buffer outside the kernel, shared by every thread (a race; and 0-d float16 /
    int32 results failed to compile)."""
    k = _check("ii->", [(100, 100)], "int32")
    src = k.built.rt_mod.imports[0].inspect_source()
    assert "in_thread_out_ptr" not in src.split("{", 1)[0] + "".join(
        line for line in src.splitlines() if line.startswith('extern "C"'))


@pytest.mark.parametrize("expr,shapes,dtype,two_stage", [
    ("ij->", [(1024, 1024)], "float32", True),
    ("ij->i", [(8, 65536)], "float32", True),
    ("ij->", [(1024, 1024)], "float16", True),   # rfactor of a 0-d accumulator with a cast after it
    # 8/16-bit integers and bools accumulate in uint32 on the GPU: cross-thread, and wrapping as numpy
    ("ij->", [(1024, 1024)], "int8", True),
    ("ij->", [(1024, 1024)], "bool", True),
    ("ij->i", [(8, 65536)], "int16", True),
    ("ij->j", [(65536, 64)], "uint8", True),
    # lengths no power of two divides (100003 and 65537 are prime): uneven chunks, the last one short
    ("i,i->", [(100003,), (100003,)], "float32", True),
    ("ij->i", [(3, 65537)], "float32", True),
    ("ij->", [(999, 1001)], "int16", True),
    ("ij->j", [(65537, 16)], "float32", True),  # was 16 threads, each over every row
    ("ij->i", [(512, 256)], "float32", False),   # short rows
    ("ij->j", [(65536, 64)], "float32", True),    # few outputs along the contiguous axis
    ("ij->j", [(300, 7)], "float32", False),
])
def test_long_reductions_with_few_outputs_take_two_stages(expr, shapes, dtype, two_stage):
    k = _check(expr, shapes, dtype)
    desc = " ".join(row[2] for row in k.built.plan)
    assert ("two stages" in desc) == two_stage, desc


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("expr,shapes,max_stages", [
    ("ik,kj->ij", [(256, 256), (256, 128)], 2),
    ("ik,jk->ij", [(256, 256), (128, 256)], 2),
    ("ki,kj->ij", [(64, 128), (64, 64)], 2),
    ("bhqd,bhkd->bhqk", [(2, 2, 128, 64), (2, 2, 128, 64)], 2),
    ("ecd,edh->ech", [(2, 128, 64), (2, 64, 96)], 2),
    ("ki,kj->ij", [(256, 128), (256, 64)], 3),      # 3 stages fit 48 KB with this block tile
    # the N-side operand first: the MMA's description reads B before A (these took the SIMT rule)
    ("kj,ik->ij", [(128, 64), (96, 128)], 2),
    ("bkj,bik->bij", [(2, 64, 32), (2, 48, 64)], 2),
    # a second contracted label, outside the tiled one: one pipeline over both
    ("bhse,hde->bsd", [(2, 2, 32, 16), (2, 48, 16)], 2),
    ("jik,jkl->il", [(3, 32, 32), (3, 32, 48)], 2),
])
def test_tensor_core_results(expr, shapes, max_stages, dtype, monkeypatch):
    """WMMA GEMMs (float16, and bfloat16 through nv_bfloat16 views of uint16 shared tiles) with
    both operands' K tiles copied by cp.async in a software pipeline over K."""
    import re

    from einc.lowering import schedules_gpu_tc as TC

    monkeypatch.setattr(TC, "MAX_STAGES", max_stages)
    k = _check(expr, shapes, dtype)
    desc = k.built.plan[0][2]
    assert desc.startswith(f"tensor cores (wmma {dtype}"), desc
    assert f"{max_stages}-stage cp.async pipeline" in desc, desc
    src = k.built.rt_mod.imports[0].inspect_source()
    assert "nvcuda::wmma::mma_sync" in src
    assert len(set(re.findall(r"\bptx_cp_async\w*\((\w+),", src))) == 2  # both operands


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("expr,shapes,steps", [
    ("bqhd,bkhd->bhqk", [(2, 32, 2, 16), (2, 48, 2, 16)], 3),   # both operands permuted
    ("bhqk,bkhd->bqhd", [(2, 2, 32, 48), (2, 48, 2, 16)], 3),   # one operand and the result
    ("bsd,dhe->bshe", [(2, 32, 16), (16, 2, 16)], 3),
    ("bshe,dhe->bsd", [(2, 32, 2, 16), (48, 2, 16)], 3),     # two contracted labels: h serial
    ("bqhd,bkhd->bhqk", [(1, 30, 2, 20), (1, 45, 2, 20)], 3),   # then padded: q, k, d
])
def test_contractions_in_head_layouts_take_tensor_cores(expr, shapes, steps, dtype, monkeypatch):
    """Attention in the [batch, seq, heads, dim] layout: explicit permutations around a WMMA
    contraction (``tc_layout``) instead of the SIMT rule, with the same results."""
    k = _check(expr, shapes, dtype, override={"tc_layout": True})  # at sizes the emulator runs quickly
    gemms = [row for row in k.built.plan if row[1].startswith("gemm")]
    assert len(gemms) == 1 and gemms[0][2].startswith("tensor cores"), k.built.plan
    assert len(k.built.program.body) == steps, k.built.program
    assert sum(row[1] == "layout" for row in k.built.plan) == steps - 1, k.built.plan


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("expr,shapes", [
    ("ik,kj->ij", [(100, 64), (64, 50)]),         # M and N padded (to 128 and 64)
    ("bsd,vd->bsv", [(2, 40, 32), (70, 32)]),     # a vocabulary that is no multiple of 16
    ("ik,jk->ij", [(32, 40), (48, 40)]),          # K padded (to 64): zeros past its end
    ("ki,kj->ij", [(7, 16), (7, 32)]),            # K as the operands' rows (to 16)
    ("ik,kj->ij", [(20, 24), (24, 36)]),          # all three
])
def test_tensor_cores_take_extents_that_16_does_not_divide(expr, shapes, dtype):
    """Padded operand copies, read clamped (zero past the end of K) straight into the WMMA shared
    tiles; the conversion of the float32 result drops the extra rows and columns (these ran on the
    SIMT rule)."""
    k = _check(expr, shapes, dtype)
    gemm = [row for row in k.built.plan if row[1] == "gemm"]
    assert len(gemm) == 1 and gemm[0][2].startswith("tensor cores"), k.built.plan
    src = k.built.rt_mod.imports[0].inspect_source()
    params = re.findall(r"__global__ void __launch_bounds__\(\d+\) \w+\(([^)]*)\)", src)
    assert params and not any("__pad" in p for p in params), params  # no padded copy in global memory


@pytest.mark.parametrize("expr,shapes,stored", [
    ("ik,jk->ij", [(32, 40), (48, 40)], "out__pad0, out__pad1"),   # K innermost in both: zeros past it
    ("ik,kj->ij", [(32, 64), (64, 50)], "out__pad1"),               # a clamped N innermost in B only
])
def test_padded_copies_that_would_load_scalar_are_stored_first_in_big_steps(expr, shapes, stored, monkeypatch):
    """Over ``MATERIALIZE_FLOPS`` (0 here, to emulate small shapes), a padded operand copy whose tile
    loads would be 2-byte gathers is a kernel of its own writing global memory; the GEMM then copies
    every operand tile 16 bytes at a time through cp.async."""
    from einc.lowering import schedules_gpu_tc as TC

    monkeypatch.setattr(TC, "MATERIALIZE_FLOPS", 0)
    k = _check(expr, shapes, "float16")
    gemm = [row for row in k.built.plan if row[1] == "gemm"]
    assert len(gemm) == 1 and "(16-byte loads)" in gemm[0][2], k.built.plan
    assert f"operand copies {stored} padded in global memory" in gemm[0][2], gemm[0][2]
    assert [r[0] for r in k.built.plan if r[1] == "pad"] == stored.split(", "), k.built.plan
    src = k.built.rt_mod.imports[0].inspect_source()
    assert len(set(re.findall(r"\bptx_cp_async\w*\((\w+),", src))) == 2  # both operands' tiles
    monkeypatch.setattr(TC, "MATERIALIZE_FLOPS", 2**62)  # and below it, the 2-byte loads in the GEMM
    k = _check(expr, shapes, "float16")
    assert "/2-byte loads)" in k.built.plan[0][2] and "global memory" not in k.built.plan[0][2], k.built.plan


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("expr,shapes,S", [
    ("ik,kj->ij", [(32, 4096), (4096, 48)], 8),         # one 32 x 48 tile: 8 slices of 512
    ("bsi,bsj->ij", [(4, 1024, 64), (4, 1024, 32)], 8),  # weight-gradient form: s sliced, b serial
    ("bik,bkj->bij", [(2, 16, 4096), (2, 4096, 16)], 8),
])
def test_tensor_cores_split_a_long_k_over_few_tiles(expr, shapes, S, dtype):
    """K slices as a batch of float32 partials, then their pairwise sum converted in a map kernel
    (these ran as one block per output tile down the whole of K)."""
    k = _check(expr, shapes, dtype)
    gemm = [row for row in k.built.plan if row[1] == "gemm"]
    assert len(gemm) == 1 and gemm[0][2].startswith("tensor cores"), k.built.plan
    assert f"split-K x{S} " in gemm[0][2], gemm[0][2]
    assert [row[1] for row in k.built.plan] == ["gemm", "map"], k.built.plan


def test_tensor_core_split_k_leaves_enough_tiles_alone():
    from einc.ir.nodes import Einsum
    from einc.ir.types import TensorType
    from einc.lowering.tc_layout import split_k

    def s(shapes, dtype="float16"):
        out = TensorType((shapes[0][0], shapes[1][1]), dtype)
        return split_k(Einsum("o", ("a", "b"), ("ik", "kj"), "ij", out), [TensorType(x, dtype) for x in shapes])

    assert s([(32, 1 << 20), (1 << 20, 32)]) == 256  # one tile: until every SM (132) has one
    assert s([(32, 65536), (65536, 32)]) == 128  # slices no shorter than 512
    assert s([(32, 4096), (4096, 32)]) == 8
    assert s([(1024, 4096), (4096, 1024)]) == 4  # 64 tiles of 128 x 128
    assert s([(2048, 4096), (4096, 2048)]) == 1  # 256 tiles: enough
    assert s([(32, 4096), (4096, 32)], "float32") == 1  # SIMT steps split in their own rule
    assert s([(32, 4000), (4000, 32)]) == 1  # padded K: not split


def test_tensor_core_layouts_leave_other_steps_alone(monkeypatch):
    from einc.lowering import tc_layout

    from test_gpu import _program

    for expr, shapes, dtype in [("bqhd,bkhd->bhqk", [(2, 32, 2, 16)] * 2, "float32"),  # SIMT anyway
                                ("ik,kj->ij", [(64, 64)] * 2, "float16"),               # already WMMA's
                                ("bqhd,bkhd->bhqk", [(2, 30, 2, 16)] * 2, "float16"),   # 30: not 16k
                                ("bshe,dhe->bsd", [(2, 32, 2, 24), (16, 2, 24)], "float16"),  # 24: not 16k
                                # 64 flops per permuted element: the permutations would cost more
                                ("bhqk,bkhd->bqhd", [(2, 4, 64, 64), (2, 64, 4, 32)], "float16")]:
        p = _program(expr, shapes, dtype)
        assert tc_layout.for_tensor_cores(p) is p, expr
    # the suite's attention shapes in the [batch, seq, heads, dim] layout: 1024 flops per element
    p = _program("bqhd,bkhd->bhqk", [(16, 1024, 16, 64)] * 2, "float16")
    assert len(tc_layout.for_tensor_cores(p).body) == 3
    # the knob: False keeps every layout
    from einc.lowering import schedules_gpu

    monkeypatch.setattr(schedules_gpu, "GEMM_OVERRIDE", {"tc_layout": False})
    assert tc_layout.for_tensor_cores(p) is p


# -- the emulator catches what it is for --------------------------------------------------------


class _Src:
    def __init__(self, src):
        self._src = src

    def inspect_source(self, *_):
        return self._src


class _Mod:
    def __init__(self, src):
        self.imports = [_Src(src)]


def _tampered(expr, shapes, edit):
    import einc

    k = einc.compile(expr, *shapes, target=TARGET, cache=False)
    src = k.built.rt_mod.imports[0].inspect_source()
    new = edit(src)
    assert new != src
    return dataclasses.replace(k.built, rt_mod=_Mod(new)), _inputs(shapes, "float32")


def test_missing_barriers_give_wrong_results():
    from einc.lowering.cuda_emulator import emulate

    shapes = [(128, 64), (64, 128)]
    built, xs = _tampered("ik,kj->ij", shapes, lambda s: s.replace("__syncthreads();", ""))
    got = emulate(built, xs)[0]
    assert not np.allclose(got, xs[0] @ xs[1], rtol=1e-4, atol=1e-4)


def test_divergent_barrier_is_an_error_not_a_hang():
    from einc.errors import EincError
    from einc.lowering.cuda_emulator import emulate

    built, xs = _tampered("ik,kj->ij", [(128, 64), (64, 128)],
                          lambda s: s.replace("__syncthreads();", "if (threadIdx.x == 0) __syncthreads();", 1))
    with pytest.raises(EincError, match="divergent barrier"):
        emulate(built, xs)


def test_crashing_kernel_is_an_einc_error_in_a_child_process():
    import re

    from einc.errors import EincError
    from einc.lowering.cuda_emulator import emulate

    def wild_store(s):
        body = s.index("{", s.index('extern "C" __global__', s.index('extern "C" __global__') + 1))
        return s[:body + 1] + " *(volatile float*)(out_ptr + (1LL << 40)) = 1.0f; " + s[body + 1:]

    built, xs = _tampered("ij->ji", [(64, 96)], wild_store)
    assert re.search(r"out_ptr", built.rt_mod.imports[0].inspect_source())
    with pytest.raises(EincError, match="failed|ran past"):
        emulate(built, xs)


def test_tvm_async_copy_into_a_k_major_tile_is_wrong_so_einc_copies_4_bytes():
    """TVM 0.27 bug einc steers around: a vectorised global->shared copy whose shared side is
    strided (a K-major tile) becomes ONE contiguous 16-byte cp.async.  With einc's workaround the
    async pipeline is exact (test_gemm_knobs_all_give_the_same_results); without it the emulator
    sees the wrong result.  When this test fails, TVM has fixed the bug: drop the workaround."""
    import einc
    from einc.lowering import schedules_gpu
    from einc.lowering.cuda_emulator import emulate

    shapes = [(256, 512), (512, 128)]
    schedules_gpu.GEMM_OVERRIDE = {"async": True, "tvm_bug_async_strided": True}
    try:
        k = einc.compile("ik,kj->ij", *shapes, target=TARGET, cache=False)
    finally:
        schedules_gpu.GEMM_OVERRIDE = None
    assert "ptx_cp_async" in k.built.rt_mod.imports[0].inspect_source()
    xs = _inputs(shapes, "float32")
    got = emulate(k.built, xs)[0]
    assert not np.allclose(got, xs[0].astype(np.float64) @ xs[1], rtol=1e-3, atol=1e-3)
