"""Run einc's generated CUDA C on the CPU: a functional check of GPU kernels on machines without one.

``emulate(built, arrays) -> outputs`` takes a CUDA ``Built`` (``einc.compile(..., target="cuda")``)
and numpy inputs, and returns the outputs the kernels compute, so CI (which never has a GPU) can
compare every CUDA schedule's *results* with the interpreter, not only check that it compiles.

How: the CUDA C that TVM generated is compiled by the host C++ compiler together with a small
header (``_EMU_HEADER``) that gives CUDA's names a CPU meaning:

* every CUDA thread of a block is a fiber (``ucontext``) on one OS thread; ``__syncthreads()``
  switches to the scheduler, which resumes the next fiber, so a block runs round by round between
  barriers exactly as the CUDA memory model allows (a barrier some threads skip is reported as
  divergence, never a hang);
* ``__shared__`` variables are function statics, shared by the fibers of the block that runs;
* warp shuffles exchange values through the block at a barrier (all threads of the block take
  part, as in every reduction TVM emits), ``__activemask()`` is a full mask;
* ``cp.async`` copies complete at once (a legal order of the asynchronous copy), commit and wait
  are no-ops;
* ``half``/``nv_bfloat16`` are ``_Float16`` and a float-backed bfloat16;
* ``nvcuda::wmma`` fragments hold a whole tile in every thread of the warp.

The launch geometry (grid and block extents of each kernel, in launch order) and the global
scratch buffers come from the scheduled TIR lowered by TVM's own ``s_tir`` pipeline.  The program
runs in a child process with a timeout: a kernel that crashes or loops takes down only the child.

What it checks: index arithmetic, tiling, shared-memory staging and its barriers, reductions,
casts, layouts - everything the schedule decides.  What it cannot: timing, register pressure,
races that a barrier-per-round execution hides (a fiber runs to its next barrier uninterrupted),
and tensor-core PTX (``mma``/``ldmatrix``), which is reported as ``Unsupported``; ``wmma`` runs
(each thread of a warp computes the warp's whole tile).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from einc.errors import EincError, Unsupported
from einc.lowering import cuda_source
from einc.fileio import atomic_path, atomic_write
from einc.ir.types import np_dtype

#: seconds a kernel program may run before it is killed
TIMEOUT_S = 120

_EMU_HEADER = r"""
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <vector>
#include <functional>
#include <algorithm>
#include <type_traits>
#include <ucontext.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)
#define __CUDA_EMULATED__ 1

struct dim3 { unsigned x = 1, y = 1, z = 1; };
static dim3 threadIdx, blockIdx, blockDim, gridDim;

template <class T, class U> inline auto max(T a, U b) -> typename std::common_type<T, U>::type { return a < b ? b : a; }
template <class T, class U> inline auto min(T a, U b) -> typename std::common_type<T, U>::type { return b < a ? b : a; }
template <class T> inline T __ldg(const T* p) { return *p; }
inline unsigned __cvta_generic_to_shared(const void*) { return 0; }
inline unsigned __activemask() { return 0xffffffffu; }

// ---- fibers: one per CUDA thread of the running block
static int emu_n = 0, emu_cur = -1;
static ucontext_t emu_sched;
static std::vector<ucontext_t> emu_ctx;
static std::vector<char*> emu_stack;
static std::vector<int> emu_state;  // 0 runnable, 1 at a barrier, 2 finished
static std::vector<dim3> emu_tid;
static std::function<void()> emu_body;
static const size_t EMU_STACK = 256 * 1024;

static void emu_trampoline() {
  emu_body();
  emu_state[emu_cur] = 2;
  swapcontext(&emu_ctx[emu_cur], &emu_sched);
}

inline void __syncthreads() {
  emu_state[emu_cur] = 1;
  swapcontext(&emu_ctx[emu_cur], &emu_sched);
}
inline void __syncwarp(unsigned = 0xffffffffu) { __syncthreads(); }

static void emu_fail(const char* what) {
  fprintf(stderr, "einc-emu: %s (block %u,%u,%u)\n", what, blockIdx.x, blockIdx.y, blockIdx.z);
  exit(3);
}

static void emu_run_block() {
  for (int t = 0; t < emu_n; ++t) {
    getcontext(&emu_ctx[t]);
    emu_ctx[t].uc_stack.ss_sp = emu_stack[t];
    emu_ctx[t].uc_stack.ss_size = EMU_STACK;
    emu_ctx[t].uc_link = nullptr;
    makecontext(&emu_ctx[t], emu_trampoline, 0);
    emu_state[t] = 0;
  }
  for (;;) {
    for (int t = 0; t < emu_n; ++t) {
      if (emu_state[t] != 0) continue;
      emu_cur = t;
      threadIdx = emu_tid[t];
      swapcontext(&emu_sched, &emu_ctx[t]);
    }
    int done = 0, waiting = 0;
    for (int t = 0; t < emu_n; ++t) { done += emu_state[t] == 2; waiting += emu_state[t] == 1; }
    if (done == emu_n) return;
    if (done) emu_fail("divergent barrier: some threads finished while others wait in __syncthreads");
    for (int t = 0; t < emu_n; ++t) emu_state[t] = 0;
  }
}

static void emu_launch(dim3 grid, dim3 block, std::function<void()> body) {
  gridDim = grid; blockDim = block;
  emu_n = (int)(block.x * block.y * block.z);
  emu_ctx.assign(emu_n, ucontext_t());
  emu_state.assign(emu_n, 0);
  emu_tid.assign(emu_n, dim3());
  while ((int)emu_stack.size() < emu_n) emu_stack.push_back((char*)malloc(EMU_STACK));
  for (unsigned z = 0, t = 0; z < block.z; ++z)
    for (unsigned y = 0; y < block.y; ++y)
      for (unsigned x = 0; x < block.x; ++x, ++t) { emu_tid[t].x = x; emu_tid[t].y = y; emu_tid[t].z = z; }
  emu_body = body;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx.x = bx; blockIdx.y = by; blockIdx.z = bz;
        emu_run_block();
      }
}

// ---- warp shuffles through the block, at a barrier
static unsigned char emu_slots[1024][16];
inline int emu_linear() { return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)); }
template <class T> inline T emu_shfl(T v, int src_lane, int width) {
  static_assert(sizeof(T) <= 16, "shuffle of a wide type");
  int me = emu_linear();
  memcpy(emu_slots[me], &v, sizeof(T));
  __syncthreads();
  int base = me - (me % 32) + ((me % 32) / width) * width;
  int src = base + src_lane;
  T r = v;
  if (src_lane >= 0 && src_lane < width && src < emu_n) memcpy(&r, emu_slots[src], sizeof(T));
  __syncthreads();
  return r;
}
template <class T> inline T __shfl_sync(unsigned, T v, int lane, int width = 32) { return emu_shfl(v, lane % width, width); }
template <class T> inline T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32) {
  int lane = emu_linear() % width; int s = lane + (int)d; return s < width ? emu_shfl(v, s, width) : emu_shfl(v, lane, width); }
template <class T> inline T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32) {
  int lane = emu_linear() % width; int s = lane - (int)d; return s >= 0 ? emu_shfl(v, s, width) : emu_shfl(v, lane, width); }
template <class T> inline T __shfl_xor_sync(unsigned, T v, int m, int width = 32) {
  int lane = emu_linear() % width; return emu_shfl(v, (lane ^ m) % width, width); }

// ---- vector types
#define EMU_VEC(N, T) \
  struct alignas(sizeof(T) * 4) N##4 { T x, y, z, w; }; \
  struct alignas(sizeof(T) * 2) N##2 { T x, y; }; \
  inline N##4 make_##N##4(T a, T b, T c, T d) { return N##4{a, b, c, d}; } \
  inline N##2 make_##N##2(T a, T b) { return N##2{a, b}; }
EMU_VEC(float, float)
EMU_VEC(double, double)
EMU_VEC(int, int)
EMU_VEC(uint, unsigned)
EMU_VEC(char, signed char)
EMU_VEC(uchar, unsigned char)
EMU_VEC(short, short)
EMU_VEC(ushort, unsigned short)
EMU_VEC(longlong, long long)
EMU_VEC(ulonglong, unsigned long long)
"""

_FP16_SHIM = r"""
#pragma once
typedef _Float16 half;
typedef _Float16 __half;
struct alignas(4) half2 { half x, y; };
typedef half2 __half2;
inline bool __hgt(half a, half b) { return a > b; }
inline bool __hlt(half a, half b) { return a < b; }
inline bool __hge(half a, half b) { return a >= b; }
inline bool __hle(half a, half b) { return a <= b; }
inline bool __heq(half a, half b) { return a == b; }
inline half __float2half_rn(float f) { return (half)f; }
inline half __float2half(float f) { return (half)f; }
inline float __half2float(half h) { return (float)h; }
inline half2 make_half2(half a, half b) { return half2{a, b}; }
inline half2 __floats2half2_rn(float a, float b) { return half2{(half)a, (half)b}; }
inline half2 __float22half2_rn(float2 f) { return half2{(half)f.x, (half)f.y}; }
inline float2 __half22float2(half2 h) { return float2{(float)h.x, (float)h.y}; }
inline half __hmax(half a, half b) { return a < b ? b : a; }
inline half __hmin(half a, half b) { return b < a ? b : a; }
inline half hexp(half a) { return (half)expf((float)a); }
"""

_BF16_SHIM = r"""
#pragma once
struct nv_bfloat16 {
  unsigned short bits;
  nv_bfloat16() = default;
  nv_bfloat16(float f) { unsigned u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) bits = (unsigned short)((u >> 16) | 0x40u);
    else bits = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16); }
  nv_bfloat16(double d) : nv_bfloat16((float)d) {}
  nv_bfloat16(int i) : nv_bfloat16((float)i) {}
  operator float() const { unsigned u = (unsigned)bits << 16; float f; memcpy(&f, &u, 4); return f; }
};
typedef nv_bfloat16 __nv_bfloat16;
struct alignas(4) nv_bfloat162 {
  nv_bfloat16 x, y;
  nv_bfloat162() = default;
  nv_bfloat162(nv_bfloat16 a, nv_bfloat16 b) : x(a), y(b) {}
};
typedef nv_bfloat162 __nv_bfloat162;
inline nv_bfloat162 make_bfloat162(nv_bfloat16 a, nv_bfloat16 b) { return nv_bfloat162(a, b); }
inline nv_bfloat16 __float2bfloat16(float f) { return nv_bfloat16(f); }
inline nv_bfloat16 __float2bfloat16_rn(float f) { return nv_bfloat16(f); }
inline float __bfloat162float(nv_bfloat16 h) { return (float)h; }
inline nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return nv_bfloat162(nv_bfloat16(a), nv_bfloat16(b)); }
inline nv_bfloat162 __float22bfloat162_rn(float2 f) { return nv_bfloat162(nv_bfloat16(f.x), nv_bfloat16(f.y)); }
inline float2 __bfloat1622float2(nv_bfloat162 h) { return float2{(float)h.x, (float)h.y}; }
// comparisons as cuda_bf16.h defines them: on the values (NaN compares false)
inline bool __hgt(nv_bfloat16 a, nv_bfloat16 b) { return (float)a > (float)b; }
inline bool __hlt(nv_bfloat16 a, nv_bfloat16 b) { return (float)a < (float)b; }
inline bool __hge(nv_bfloat16 a, nv_bfloat16 b) { return (float)a >= (float)b; }
inline bool __hle(nv_bfloat16 a, nv_bfloat16 b) { return (float)a <= (float)b; }
inline bool __heq(nv_bfloat16 a, nv_bfloat16 b) { return (float)a == (float)b; }
inline bool __hne(nv_bfloat16 a, nv_bfloat16 b) { return (float)a != (float)b; }
inline nv_bfloat16 __hmax(nv_bfloat16 a, nv_bfloat16 b) { return (float)a < (float)b ? b : a; }
inline nv_bfloat16 __hmin(nv_bfloat16 a, nv_bfloat16 b) { return (float)b < (float)a ? b : a; }
"""

_WMMA_SHIM = r"""
// ---- nvcuda::wmma: every thread of the warp holds the whole tile (the warp computes it 32 times)
namespace nvcuda { namespace wmma {
struct matrix_a {}; struct matrix_b {}; struct accumulator {};
struct row_major {}; struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K> struct emu_dims;
template <int M, int N, int K> struct emu_dims<matrix_a, M, N, K> { static const int R = M, C = K; };
template <int M, int N, int K> struct emu_dims<matrix_b, M, N, K> { static const int R = K, C = N; };
template <int M, int N, int K> struct emu_dims<accumulator, M, N, K> { static const int R = M, C = N; };
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static const int R = emu_dims<Use, M, N, K>::R, C = emu_dims<Use, M, N, K>::C;
  static const int num_elements = R * C;
  T x[R * C];
};
template <class Use, int M, int N, int K, class T, class L, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, V v) { for (int i = 0; i < f.num_elements; ++i) f.x[i] = (T)v; }
template <class Use, int M, int N, int K, class T, class L, class P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* p, unsigned ldm) {
  const bool col = std::is_same<L, col_major>::value;
  for (int r = 0; r < f.R; ++r) for (int c = 0; c < f.C; ++c) f.x[r * f.C + c] = (T)(col ? p[c * ldm + r] : p[r * ldm + c]);
}
template <int M, int N, int K, class T, class P>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T, void>& f, const P* p, unsigned ldm, layout_t l) {
  for (int r = 0; r < f.R; ++r) for (int c = 0; c < f.C; ++c) f.x[r * f.C + c] = (T)(l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]);
}
template <int M, int N, int K, class T, class P>
inline void store_matrix_sync(P* p, const fragment<accumulator, M, N, K, T, void>& f, unsigned ldm, layout_t l) {
  for (int r = 0; r < f.R; ++r) for (int c = 0; c < f.C; ++c) (l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = (P)f.x[r * f.C + c];
}
template <int M, int N, int K, class TD, class TA, class LA, class TB, class LB, class TC>
inline void mma_sync(fragment<accumulator, M, N, K, TD, void>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC, void>& c) {
  float acc[M * N];
  for (int i = 0; i < M; ++i) for (int j = 0; j < N; ++j) {
    float s = (float)c.x[i * N + j];
    for (int k = 0; k < K; ++k) s += (float)a.x[i * K + k] * (float)b.x[k * N + j];
    acc[i * N + j] = s;
  }
  for (int i = 0; i < M * N; ++i) d.x[i] = (TD)acc[i];
}
} }
"""


def _compiler() -> str:
    for cc in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cc and shutil.which(cc):
            return cc
    raise Unsupported("the CUDA emulator needs a C++ compiler (g++, c++ or clang++) on PATH")


# ------------------------------------------------------------------------------------------------
# launch geometry from the scheduled TIR


def _kernels_and_scratch(built):
    """``([{tag: extent}] per kernel in launch order, {name: (shape, dtype)} of global scratch)``."""
    from tvm.s_tir.pipeline import default_s_tir_pipeline

    from ._tvm import tvm
    from .target import to_tvm

    target = to_tvm(built.target)
    with target:
        mod = tvm.tirx.transform.BindTarget(target)(built.mod)
        with tvm.transform.PassContext(config={"tirx.use_async_copy": True}):
            mod = default_s_tir_pipeline()[0](mod)
    kernels, allocs = [], {}

    def walk(node, ext):
        """``ext``: the thread extents of the kernel being walked (None outside kernels)."""
        if node is None:
            return
        name = type(node).__name__
        if name == "AttrStmt" and node.attr_key == "thread_extent":
            if ext is None:  # the outermost launch attribute of a kernel
                ext = {}
                kernels.append(ext)
            tag = node.node.thread_tag
            ext[tag] = max(ext.get(tag, 1), int(node.value))
        if name in ("AllocBuffer", "DeclBuffer") and ext is None:
            # outside every kernel: device memory the host allocates and passes to the kernels
            # (TVM also does this for a "local" buffer it finds outside the thread bindings)
            buf = node.buffer
            if not str(buf.scope()).startswith("shared") and buf.name not in params:
                dt = str(buf.dtype)
                lanes = int(dt.split("x")[1]) if "x" in dt else 1
                shape = tuple(int(x) for x in buf.shape) + ((lanes,) if lanes > 1 else ())
                # a view of the allocation (``t.view(7)`` after StorageRewrite let a smaller buffer
                # reuse it) keeps its name: the allocation is the largest declaration of the name
                new = (shape, dt.split("x")[0])
                if buf.name not in allocs or _nbytes(*new) > _nbytes(*allocs[buf.name]):
                    allocs[buf.name] = new
        if name == "SeqStmt":
            for x in node.seq:
                walk(x, ext)
            return
        for field in ("body", "then_case", "else_case"):
            walk(getattr(node, field, None), ext)

    func = mod["main"]
    params = {str(p.name) for p in func.params}
    walk(func.body, None)
    return kernels, allocs


def _nbytes(shape, dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np_dtype(dtype).itemsize


# ------------------------------------------------------------------------------------------------
# source rewriting


_ASYNC_COPY = re.compile(
    r'asm\s+volatile\s*\(\s*"cp\.async\.(?:ca|cg)\.shared\.global\s*\[%0\],\s*\[%1\],\s*%2;"\s*'
    r'::\s*"r"\(dst_addr\),\s*"l"\(src_p\),\s*"n"\((\d+)\)\s*\);')
_ASYNC_SYNC = re.compile(r'asm\s+volatile\s*\(\s*"cp\.async\.(?:commit_group|wait_group \d+|wait_all);"[^;]*;')
_KERNEL = re.compile(r'extern "C" __global__ void(?: __launch_bounds__\(\d+\))? (\w+)\(([^)]*)\)\s*\{')


#: what ptxas allows a kernel to declare as static ``__shared__`` arrays (more needs dynamic shared
#: memory); the host compiler has no such limit, so the emulator checks it itself
STATIC_SHARED_LIMIT = 48 * 1024
_CTYPE_BYTES = {"char": 1, "signed char": 1, "uchar": 1, "unsigned char": 1, "int8_t": 1, "uint8_t": 1, "bool": 1,
                "short": 2, "ushort": 2, "half": 2, "nv_bfloat16": 2, "__nv_bfloat16": 2, "int16_t": 2, "uint16_t": 2,
                "int": 4, "uint": 4, "unsigned": 4, "float": 4, "int32_t": 4, "uint32_t": 4,
                "double": 8, "int64_t": 8, "uint64_t": 8, "long long": 8}
_STATIC_SHARED = re.compile(r"(?<!extern )__shared__\s+(?:(?:alignas|__align__)\(\d+\)\s+)?([\w ]+?)\s+\w+\[(\d+)\];")


_SM61_PRELUDE = re.compile(r"#if defined\(__CUDA_ARCH__\) && \(__CUDA_ARCH__ >= 610\).*?#endif // __CUDA_ARCH__ >= 610",
                           re.S)


def check_static_shared(src: str) -> None:
    """A ``CompileError`` when a kernel of CUDA C ``src`` declares more static shared memory than
    ptxas accepts (a GEMM tile config too big for its dtype: 128x128x16 float64 tiles took 65 KiB)."""
    from einc.errors import CompileError

    starts = [(m.start(), m.group(1)) for m in _KERNEL.finditer(src)]
    for i, (at, name) in enumerate(starts):
        body = src[at:starts[i + 1][0] if i + 1 < len(starts) else len(src)]
        total = 0
        for m in _STATIC_SHARED.finditer(body):
            ty = m.group(1).strip()
            if ty not in _CTYPE_BYTES:
                raise EincError(f"CUDA emulator: unknown shared array element type {ty!r} in {name}")
            total += _CTYPE_BYTES[ty] * int(m.group(2))
        if total > STATIC_SHARED_LIMIT:
            raise CompileError(f"kernel {name} declares {total} bytes of static shared memory, over the "
                               f"{STATIC_SHARED_LIMIT} ptxas allows: it would not build for a GPU")


def _rewrite(src: str) -> tuple[str, list[tuple[str, list[tuple[str, str]]]]]:
    """CUDA C -> C++ for the emulator; also returns each kernel's (name, [(type, param)]) in order."""
    check_static_shared(src)
    src = cuda_source.for_emulator(src)  # einc's inline-PTX loads back to the wmma calls they stand for
    # TVM's int8 prelude (__dp4a, inline PTX) sits under __CUDA_ARCH__, which a host build never defines
    src = _SM61_PRELUDE.sub("", src)
    if re.search(r'"(mma|ldmatrix|wgmma)', src):
        raise Unsupported("the CUDA emulator cannot run tensor-core PTX (mma/ldmatrix); wmma it can")
    src = _ASYNC_COPY.sub(r"memcpy(dst_p, src_p, \1);", src)
    src = _ASYNC_SYNC.sub("", src)
    if re.search(r"\basm\b", src.split('extern "C"', 1)[-1]) or re.search(r"\basm\s+volatile", src):
        raise Unsupported("the CUDA emulator cannot run inline PTX other than cp.async")
    src = src.replace("#include <cuda.h>", "")
    # dynamic shared memory: a static buffer as large as an SM's shared memory
    src = re.sub(r"extern\s+__shared__\s+(?:(?:alignas|__align__)\((\d+)\)\s+)?(\w+)\s+(\w+)\[\];",
                 lambda m: f"alignas({m.group(1) or 16}) static {m.group(2)} {m.group(3)}[232448];", src)
    src = re.sub(r"__shared__\s+((?:alignas|__align__)\(\d+\))", r"\1 static", src)
    src = src.replace("#include <cuda_fp16.h>", _FP16_SHIM).replace("#include <cuda_bf16.h>", _BF16_SHIM)
    kernels = []
    for m in _KERNEL.finditer(src):
        params = []
        for p in [p.strip() for p in m.group(2).split(",") if p.strip()]:
            ty, name = p.replace("__restrict__", "").rsplit(None, 1)
            params.append((ty.strip(), name.strip()))
        kernels.append((m.group(1), params))
    src = src.replace("#include <mma.h>", "")
    return _EMU_HEADER + (_WMMA_SHIM if "nvcuda::wmma" in src else "") + src, kernels


# ------------------------------------------------------------------------------------------------


def _driver(kernels, launch, buffers) -> str:
    """``main(argc, argv)``: argv[1 + i] is the raw file of buffer i (read, then rewritten)."""
    idx = {re.sub(r"\W", "_", name): i for i, name in enumerate(buffers)}  # as CUDA codegen spells them
    lines = ["#include <cstdio>", "int main(int argc, char** argv) {",
             f"  if (argc != {len(buffers) + 1}) return 2;",
             f"  std::vector<std::vector<unsigned char>> mem({len(buffers)});",
             "  for (int i = 1; i < argc; ++i) { FILE* f = fopen(argv[i], \"rb\"); if (!f) return 2;"
             " fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);"
             " mem[i - 1].resize(n + 64); if (n && fread(mem[i - 1].data(), 1, n, f) != (size_t)n) return 2; fclose(f); }"]
    for (name, params), ext in zip(kernels, launch):
        args = []
        for ty, p in params:
            # CUDA codegen names a buffer's pointer "<name>_ptr", and "<name>_ptr_1" for a second
            # view of the same storage in one kernel (TVM's storage rewrite aliases a buffer whose
            # life ended: same allocation, so the same memory here)
            m = re.fullmatch(r"(.*)_ptr(?:_\d+)?", p)
            base = m.group(1) if m else p
            if base not in idx:
                raise EincError(f"CUDA emulator: kernel {name} takes {ty} {p}, not a known buffer")
            args.append(f"({ty})mem[{idx[base]}].data()")
        g = [ext.get(f"blockIdx.{c}", 1) for c in "xyz"]
        b = [ext.get(f"threadIdx.{c}", 1) for c in "xyz"]
        lines.append(f"  emu_launch(dim3{{{g[0]}u, {g[1]}u, {g[2]}u}}, dim3{{{b[0]}u, {b[1]}u, {b[2]}u}}, "
                     f"[&] {{ {name}({', '.join(args)}); }});")
    lines += ["  for (int i = 1; i < argc; ++i) { FILE* f = fopen(argv[i], \"r+b\"); if (!f) return 2;"
              " fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);"
              " fwrite(mem[i - 1].data(), 1, n, f); fclose(f); }",
              "  return 0;", "}"]
    return "\n".join(lines) + "\n"


def _cache_dir() -> Path:
    d = Path(os.environ.get("EINC_EMU_DIR") or Path(tempfile.gettempdir()) / f"einc-cuda-emu-{os.getuid()}")
    d.mkdir(parents=True, exist_ok=True)
    return d


def build_emulator(built) -> tuple[Path, list[tuple[str, tuple[int, ...], str]]]:
    """Compile ``built``'s CUDA C for the CPU; returns (executable, [(buffer, shape, dtype)] in argv
    order: the function's parameters, then its global scratch buffers)."""
    src = built.rt_mod.imports[0].inspect_source()
    code, kernels = _rewrite(src)
    launch, scratch = _kernels_and_scratch(built)
    if len(launch) != len(kernels):
        raise EincError(f"CUDA emulator: {len(kernels)} kernels in the source, {len(launch)} launches in the TIR")
    func = built.mod["main"]
    buffers = [(str(b.name), tuple(int(x) for x in b.shape), str(b.dtype)) for b in func.params]
    buffers += [(name, *scratch[name]) for name in sorted(scratch)]
    code += _driver(kernels, launch, [b[0] for b in buffers])
    key = hashlib.sha256(code.encode()).hexdigest()[:20]
    exe = _cache_dir() / f"k{key}"
    if not exe.exists():
        cpp = exe.with_suffix(".cpp")
        atomic_write(cpp, code)
        with atomic_path(exe, 0o755) as tmp:  # a failed compile leaves nothing behind
            r = subprocess.run([_compiler(), "-std=c++17", "-O1", "-w", "-fno-strict-aliasing", "-o", tmp, str(cpp)],
                               capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise EincError(f"CUDA emulator: the host compiler rejected the kernel source ({cpp}):\n{r.stderr[-1500:]}")
    return exe, buffers


def emulate(built, arrays, *, timeout: float = TIMEOUT_S) -> list[np.ndarray]:
    """Run a CUDA ``Built`` on numpy ``arrays`` (its inputs, in order) on the CPU; returns the outputs."""
    exe, buffers = build_emulator(built)
    n_params = len(built.mod["main"].params)
    n_in = len(arrays)
    if n_in > n_params:
        raise EincError(f"CUDA emulator: {n_in} arrays for {n_params} parameters")
    with tempfile.TemporaryDirectory(prefix="einc-emu-") as d:
        files = []
        for i, (_name, shape, dtype) in enumerate(buffers):
            npdt = np_dtype(dtype)
            if i < n_in:
                a = np.asarray(arrays[i])
                if a.dtype.kind == "V" and a.dtype.itemsize == npdt.itemsize:
                    a = np.ascontiguousarray(a).view(npdt)  # bfloat16 is stored as its uint16 bits
                a = np.ascontiguousarray(a.astype(npdt, copy=False)).reshape(shape)
            else:
                a = np.zeros(shape, npdt)
            path = os.path.join(d, f"b{i}.bin")
            a.tofile(path)
            files.append((path, shape, npdt))
        try:
            r = subprocess.run([str(exe)] + [f[0] for f in files], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise EincError(f"CUDA emulator: the kernels ran past {timeout:.0f} s") from e
        if r.returncode != 0:
            raise EincError(f"CUDA emulator: the kernel program failed (exit {r.returncode}): {r.stderr.strip()[-500:]}")
        types = built.program.types()
        outs = []
        for (path, shape, npdt), name in zip(files[n_in:n_params], built.program.outputs):
            a = np.fromfile(path, npdt).reshape(shape)
            want = np_dtype(types[name].dtype)
            outs.append(a.view(want) if want != npdt and want.itemsize == npdt.itemsize else a)
        return outs


