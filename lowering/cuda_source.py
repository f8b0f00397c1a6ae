"""Edits einc makes to the CUDA C that TVM generates for its kernels, before anything compiles it.

One edit so far: **bfloat16 tensor-core fragment loads read shared memory as shared memory.**
``nvcuda::wmma::load_matrix_sync`` on a ``__nv_bfloat16`` fragment is compiled by nvcc and NVRTC
(CUDA 13) as a *generic* load even when the pointer is plainly a ``__shared__`` array: per 16 x 16
fragment, five ``LD.E`` and a ``MOVM`` transpose instead of one ``LDSM``.  The float16 overloads do
not have this problem.  On einc's 128 x 128 bf16 GEMM that cost 232 registers (2 blocks per SM)
and a 228-instruction main loop, against 163 registers and 183 instructions in float16.

The rewrite gives those calls einc's own overloads (``einc_wmma_load_bf16``) that issue
``wmma.load.{a,b}.sync.aligned.{row,col}.m16n16k16.shared.bf16`` when ``__isShared`` holds (which
the compiler decides statically for einc's shared tiles, so no branch remains), and fall back to
``load_matrix_sync`` otherwise.  Same PTX instruction as the library's, same fragment registers: the
bits loaded are the same, only the state space is explicit.

The prelude is fenced by ``PRELUDE_BEGIN``/``PRELUDE_END`` so the CUDA emulator (which cannot run
inline PTX) swaps it for a plain ``load_matrix_sync``.

TVM calls the global ``tvm_callback_cuda_postproc`` on every CUDA module it generates; einc installs
one (``install``) that edits only while einc's own codegen runs (``editing``) and otherwise hands the
code to whatever callback was registered before it.
"""
from __future__ import annotations

import contextlib
import re
import threading

PRELUDE_BEGIN = "// einc prelude: bfloat16 wmma loads from shared memory (begin)"
PRELUDE_END = "// einc prelude (end)"

_LOAD = "einc_wmma_load_bf16"

_OVERLOAD = """\
__device__ __forceinline__ void {fn}(
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_{op}, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::{layout}_major>& f,
    const __nv_bfloat16* p, unsigned ldm) {{
  static_assert(sizeof(f.x) == 16, "a 16x16x16 bf16 fragment is four 32-bit registers");
  if (__isShared(p)) {{
    unsigned* r = reinterpret_cast<unsigned*>(&f.x[0]);
    asm volatile("wmma.load.{op}.sync.aligned.{layout}.m16n16k16.shared.bf16 {{%0, %1, %2, %3}}, [%4], %5;"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((unsigned)__cvta_generic_to_shared(p)), "r"(ldm) : "memory");
  }} else {{
    nvcuda::wmma::load_matrix_sync(f, p, ldm);
  }}
}}
"""

PRELUDE = "\n".join([PRELUDE_BEGIN] + [_OVERLOAD.format(fn=_LOAD, op=op, layout=layout)
                                       for op in "ab" for layout in ("row", "col")] + [PRELUDE_END, ""])

# a bf16 fragment load as TVM prints einc's load intrinsic (schedules_gpu_tc.load_intrin):
#   nvcuda::wmma::load_matrix_sync(frag[i], (nv_bfloat16*)((&(tile[...]))), ldm);
_BF16_LOAD = re.compile(r"nvcuda::wmma::load_matrix_sync\((?=[^;]*?,\s*\(nv_bfloat16\s*\*\))")
_FIRST_KERNEL = re.compile(r'^extern "C" __global__', re.M)


def rewrite(code: str) -> str:
    """``code`` with its bfloat16 wmma loads through einc's shared-memory overloads (unchanged
    when it has none, or was rewritten already)."""
    if PRELUDE_BEGIN in code:
        return code
    body, n = _BF16_LOAD.subn(_LOAD + "(", code)
    if n == 0:
        return code
    m = _FIRST_KERNEL.search(body)
    if m is None:  # not TVM's layout: leave the code as TVM made it
        return code
    return body[:m.start()] + PRELUDE + body[m.start():]


def for_emulator(code: str) -> str:
    """The prelude replaced by the library call it stands for (the emulator runs no inline PTX)."""
    i, j = code.find(PRELUDE_BEGIN), code.find(PRELUDE_END)
    if i < 0 or j < 0:
        return code
    return code[:i] + f"#define {_LOAD} nvcuda::wmma::load_matrix_sync\n" + code[j + len(PRELUDE_END):]


_state = threading.local()
_installed = False
_install_lock = threading.Lock()


@contextlib.contextmanager
def editing():
    """Inside the ``with``, CUDA C generated on this thread goes through ``rewrite``."""
    install()
    before = getattr(_state, "on", False)
    _state.on = True
    try:
        yield
    finally:
        _state.on = before


def install() -> None:
    """Register the postproc callback once per process, chaining to one registered before."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from ._tvm import cuda_postproc_callback, set_cuda_postproc_callback

        previous = cuda_postproc_callback()

        def postproc(code, *rest):
            if getattr(_state, "on", False):
                return rewrite(str(code))
            return previous(code, *rest) if previous is not None else code

        set_cuda_postproc_callback(postproc)
        _installed = True
