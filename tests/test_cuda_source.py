"""einc's edits to TVM's CUDA C (``lowering/cuda_source.py``): bfloat16 wmma fragment loads through
inline-PTX ``.shared`` loads.

Without a GPU: the edit is made where it should be and nowhere else, the emulator still computes
the right numbers (``tests/test_gpu_emulated.py`` runs the bf16 GEMMs), the SASS of the bf16 GEMM's
main loop reads shared memory with ``LDSM`` as float16's does (before: generic ``LD`` + ``MOVM``,
232 registers), and NVRTC, the compiler the GPU machine uses when it loads a kernel, accepts it.
"""
from __future__ import annotations

import os
import re
import shutil
from collections import Counter

import pytest

from tests.test_gpu import GPU_CASES, _small
from tests.test_gpu_tensorcore import _build

pytestmark = pytest.mark.tvm


def _source(expr, shapes, dtype):
    return _build(expr, shapes, dtype).rt_mod.imports[0].inspect_source()


GEMM = ("ik,kj->ij", [(256, 128), (128, 256)])
ALL_LAYOUTS = [  # A row/col x B row/col
    ("ik,kj->ij", [(64, 64), (64, 64)]), ("ki,kj->ij", [(64, 64), (64, 64)]),
    ("ik,jk->ij", [(64, 64), (64, 64)]), ("ki,jk->ij", [(64, 64), (64, 64)]),
]


@pytest.mark.parametrize("expr,shapes", ALL_LAYOUTS)
def test_bfloat16_fragment_loads_use_the_shared_overloads(expr, shapes):
    from einc.lowering.cuda_source import PRELUDE_BEGIN

    src = _source(expr, shapes, "bfloat16")
    assert src.count(PRELUDE_BEGIN) == 1
    head, body = src.split('extern "C" __global__', 1)
    assert PRELUDE_BEGIN in head
    loads = re.findall(r"(\w+(?:::\w+)*)\((\w+_wmma_matrix_[ab]\w*)\[", body)
    assert loads and {fn for fn, _ in loads} == {"einc_wmma_load_bf16"}, loads[:4]
    # the overload picked for each fragment is one the prelude declares (a, b x row, col)
    used = set(re.findall(r"fragment<nvcuda::wmma::matrix_([ab]), 16, 16, 16, nv_bfloat16, nvcuda::wmma::(row|col)_major>", body))
    declared = set(re.findall(r"wmma\.load\.([ab])\.sync\.aligned\.(row|col)\.m16n16k16\.shared\.bf16", head))
    assert used and used <= declared, (used, declared)


def test_float16_and_float32_sources_are_left_as_tvm_made_them():
    from einc.lowering.cuda_source import PRELUDE_BEGIN

    for dtype in ("float16", "float32"):
        src = _source(*GEMM, dtype)
        assert PRELUDE_BEGIN not in src and "einc_wmma_load_bf16" not in src


def test_rewrite_is_idempotent_and_the_emulator_form_has_no_inline_ptx():
    from einc.lowering.cuda_source import PRELUDE_BEGIN, for_emulator, rewrite

    src = _source(*GEMM, "bfloat16")
    assert rewrite(src) == src
    emu = for_emulator(src)
    assert PRELUDE_BEGIN not in emu and "asm" not in emu.split('extern "C"', 1)[0].split("einc_wmma_load_bf16", 1)[-1]
    assert "#define einc_wmma_load_bf16 nvcuda::wmma::load_matrix_sync" in emu
    # no kernel: nothing to edit
    assert rewrite("// nothing here\n") == "// nothing here\n"


def test_the_callback_edits_only_inside_einc_codegen_and_chains_to_an_earlier_one(monkeypatch):
    from einc.lowering import _tvm, cuda_source

    original = _tvm.cuda_postproc_callback()
    src = _source(*GEMM, "bfloat16")
    plain = src.replace(cuda_source.PRELUDE, "").replace("einc_wmma_load_bf16(", "nvcuda::wmma::load_matrix_sync(")
    assert cuda_source.rewrite(plain) == src
    seen = []
    try:
        # a callback somebody registered before einc's: called for code generated outside einc
        _tvm.set_cuda_postproc_callback(lambda code, *rest: seen.append(len(rest)) or code + "// theirs\n")
        monkeypatch.setattr(cuda_source, "_installed", False)
        cuda_source.install()
        cb = _tvm.cuda_postproc_callback()
        assert cb(plain, None) == plain + "// theirs\n" and seen == [1]
        with cuda_source.editing():
            assert cb(plain, None) == src
        assert cb("x", None) == "x// theirs\n"
    finally:  # einc's callback as it was (monkeypatch puts ``_installed`` back)
        _tvm.set_cuda_postproc_callback(original)


def test_bfloat16_gemm_main_loop_reads_shared_memory_like_float16():
    """SASS: per fragment one ``LDSM``, no generic ``LD`` and no ``MOVM`` transpose; registers
    within 8 of the float16 kernel's (232 against 163 before the edit)."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not on PATH")
    from einc.lowering.cuda_static import analyse_source, nvdisasm

    if nvdisasm() is None:
        pytest.skip("no nvdisasm (pip install 'einc[sass]')")
    shapes = [(4096, 4096), (4096, 4096)]
    (f16,) = analyse_source(_source("ik,kj->ij", shapes, "float16"))
    (bf16,) = analyse_source(_source("ik,kj->ij", shapes, "bfloat16"))
    mix = Counter()
    for op, n in bf16.loop_mix.items():
        mix[op.split(".")[0]] += n
    assert bf16.loop_mmas == f16.loop_mmas >= 64, (bf16.loop_mix, f16.loop_mix)
    assert mix["LDSM"] >= 16 and mix["LD"] == 0 and mix["MOVM"] == 0, bf16.loop_mix
    assert bf16.registers <= f16.registers + 8 and bf16.stack_bytes == 0, (bf16, f16)
    assert bf16.loop_instrs <= f16.loop_instrs + 8, (bf16.loop_instrs, f16.loop_instrs)


def _nvrtc_ready(monkeypatch):
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings not installed (pip install 'einc[cuda]')")
    if "CUDA_PATH" not in os.environ:
        for root in ("/usr/local/cuda", "/usr/cuda"):
            if os.path.isfile(os.path.join(root, "include", "cuda_runtime.h")):
                monkeypatch.setenv("CUDA_PATH", root)
                break
        else:
            pytest.skip("no CUDA headers for NVRTC (set CUDA_PATH)")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_nvrtc_compiles_every_suite_kernel(dtype, monkeypatch):
    """What the GPU machine does when it loads an einc kernel (TVM's default NVRTC path), done here:
    the CUDA C of every GPU suite case, einc's edits included, compiles to a cubin for sm_90."""
    _nvrtc_ready(monkeypatch)
    from tvm.support.nvcc import compile_cuda

    built = 0
    for name, case in GPU_CASES.items():
        if dtype != "float32" and name == "transpose":
            continue
        src = _source(case["expr"], _small(case["shapes"]), dtype)
        cubin = compile_cuda(src, target_format="cubin", compiler="nvrtc", arch="sm_90")
        assert bytes(cubin[:4]) == b"\x7fELF", name
        built += 1
    assert built >= 7
