"""The one module of einc that imports TVM.

Everything else in einc reaches TVM through the names re-exported here, so ``import einc`` and the
CLI's ``--help`` never pay for TVM (importing it takes 1-5 s), and a TVM API move touches one file.
"""
from __future__ import annotations

from . import threads

threads.configure()  # before any kernel runs: TVM sizes a thread's pool once, at its first launch

import tvm  # noqa: E402,F401  (the only `import tvm` in einc)
import tvm_ffi  # noqa: F401
from tvm import s_tir, te, tirx  # noqa: F401
from tvm.s_tir.analysis import get_sblock_read_write_region  # noqa: F401
from tvm.runtime import Executable  # noqa: F401

VERSION: str = tvm.__version__

#: TVM raises builtin exceptions (RuntimeError, ValueError, ...) plus these; all derive from Exception.
TVM_ERRORS: tuple[type[BaseException], ...] = (Exception,)


def cpu_name() -> str:
    """The LLVM name of the host CPU (``znver3``, ``skylake-avx512``...), never ``native``."""
    return str(tvm.target.codegen.llvm_get_system_cpu())


def make_target(spec) -> "tvm.target.Target":
    """A ``tvm.target.Target`` from a dict, a JSON string, a tag, or an existing Target."""
    if isinstance(spec, tvm.target.Target):
        return spec
    return tvm.target.Target(spec)


def llvm_cpus(mtriple: str | None = None) -> list[str]:
    """The CPU names LLVM knows for ``mtriple`` (default: the host's)."""
    spec = {"kind": "llvm", **({"mtriple": mtriple} if mtriple else {})}
    return list(tvm.target.codegen.llvm_get_cpu_archlist(tvm.target.Target(spec)))


def has_feature(feature: str, target) -> bool:
    try:
        return bool(tvm.target.codegen.llvm_cpu_has_features(feature, target))
    except Exception:  # noqa: BLE001 - not an LLVM target
        return False


def meta_schedule():
    """``tvm.s_tir.meta_schedule`` (imported on demand: it needs psutil and cloudpickle)."""
    from tvm.s_tir import meta_schedule as ms

    return ms


def remove_weight_layout_rewrite_block(mod):
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)


def compile_mod(mod, target, config: dict | None = None):
    """``tvm.compile`` for a scheduled IRModule: an Executable with ``main``.  ``config``: PassContext
    options (e.g. ``{"tirx.use_async_copy": True}`` for CUDA, which turns the copies of a software
    pipeline's async stages into ``cp.async``)."""
    if not config:
        return tvm.compile(mod, target=target)
    with tvm.transform.PassContext(config=config):
        return tvm.compile(mod, target=target)


def load_module(path: str):
    return tvm.runtime.load_module(path)


def cpu_device():
    return tvm.cpu(0)


def empty(shape, dtype):
    return tvm.runtime.empty(tuple(shape), dtype, tvm.cpu(0))


def from_dlpack(x):
    return tvm.runtime.from_dlpack(x)


def tensor(x):
    return tvm.runtime.tensor(x, tvm.cpu(0))


# --- CUDA helpers (gpu helper; additive) ---------------------------------------------------------


def cuda_device(index: int = 0):
    return tvm.cuda(index)


def cuda_exists(index: int = 0) -> bool:
    try:
        return bool(tvm.cuda(index).exist)
    except Exception:  # noqa: BLE001 - no driver at all
        return False


def cuda_compute_version(index: int = 0) -> str | None:
    """``"9.0"`` for an H100; None when no GPU is present."""
    if not cuda_exists(index):
        return None
    try:
        return str(tvm.cuda(index).compute_version)
    except Exception:  # noqa: BLE001
        return None


def stream_scope(dev, handle):
    """Launches on ``dev`` go to CUDA stream ``handle`` (an integer ``cudaStream_t``) inside the
    ``with``; ``None``: TVM's current stream (the default one)."""
    import contextlib

    return contextlib.nullcontext() if handle is None else tvm_ffi.use_raw_stream(dev, handle)


def empty_on(shape, dtype, dev):
    return tvm.runtime.empty(tuple(shape), dtype, dev)


def tensor_on(x, dev):
    return tvm.runtime.tensor(x, dev)


def is_tvm_tensor(x) -> bool:
    return isinstance(x, tvm.runtime.Tensor)


_CUDA_POSTPROC = "tvm_callback_cuda_postproc"


def cuda_postproc_callback():
    """The callback TVM runs on every generated CUDA source (``(code, target) -> code``), or None."""
    return tvm_ffi.get_global_func(_CUDA_POSTPROC, allow_missing=True)


def set_cuda_postproc_callback(fn) -> None:
    tvm_ffi.register_global_func(_CUDA_POSTPROC, fn, override=True)


def dlight_gpu_default(mod, target):
    """TVM's rule-based default GPU schedules (``tvm.s_tir.dlight``) applied to ``mod``."""
    from tvm.s_tir import dlight as dl

    with make_target(target):
        return dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                       dl.gpu.GeneralReduction(), dl.gpu.Transpose(), dl.gpu.Fallback())(mod)
# --- end CUDA helpers ---


# --- parameter alignment (any numpy array, no copy) ----------------------------------------------


def _itemsize(dtype: str) -> int:
    if dtype == "bool":
        return 1
    digits = "".join(ch for ch in dtype.split("x")[0] if ch.isdigit())
    return max(1, int(digits or 32) // 8)


def element_aligned(func):
    """``func`` with every parameter buffer declared aligned to its element size, not 64 bytes.

    ``te.create_prim_func`` declares parameters ``align 64``, and LLVM then emits aligned vector
    moves (``vmovaps``) that fault on a plain numpy array (often only 16-byte aligned).  With the
    element alignment the code uses unaligned moves (``vmovups``; same speed on aligned data on
    every x86 since Nehalem), so a kernel takes any C-contiguous array without a copy.  TVM offers
    no in-place way to change a parameter's alignment (``PrimFunc.specialize`` refuses it), so the
    function goes through TVMScript: its signature gets ``align=<itemsize>`` and is parsed back.
    """
    import re

    text = func.script()
    lines = text.split("\n")
    for n, ln in enumerate(lines):
        if ln.startswith("def "):
            # shapes print as (3, 32) or, with 64-bit indices, (T.int64(3), T.int64(32))
            lines[n] = re.sub(r'T\.Buffer\((\((?:[^()]|\([^()]*\))*\)), "([\w.]+)"\)',
                              lambda m: f'T.Buffer({m.group(1)}, "{m.group(2)}", align={_itemsize(m.group(2))})', ln)
            if lines[n].count("T.Buffer(") != lines[n].count(", align="):
                # a parameter left at 64-byte alignment faults on an ordinary numpy array
                raise ValueError(f"could not declare every parameter element-aligned: {lines[n][:300]}")
            break
    else:
        raise ValueError("no signature line in the printed PrimFunc")
    out = tvm.script.from_source("\n".join(lines))
    if isinstance(out, tvm.IRModule):
        out = out["main"]
    return out
