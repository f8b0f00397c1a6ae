"""Tensor-core (WMMA) CUDA schedule for GEMM-like einsum steps on float16 / bfloat16 operands.

A ``gemm`` step (see ``schedules_gpu.gemm_groups``) whose two operands are float16 (or bfloat16,
stored as ``uint16`` bits) accumulates in float32 (``lower.compute_dtype``); this rule maps its
16 x 16 x 16 sub-problems onto ``nvcuda::wmma`` ``mma_sync`` (HMMA on sm_70+, bf16 on sm_80+):

* one label per group is tiled (M, N, K), the other output labels (batch, extra M/N labels) are
  whole-block loops fused onto ``blockIdx.x``; the two tiled labels must be the two innermost axes
  of every operand (either order: K contiguous or not) and of the output (``M`` then ``N``);
* block tile ``BM x BN x BK`` (128 x 128 x 32 for big shapes), ``WN`` warps (``threadIdx.y``)
  splitting it along N, each owning a ``BM x (BN/WN)`` warp tile of 16 x 16 accumulator fragments
  (up to 8 x 2);
* both operands' K tiles are staged through shared memory with 16-byte (8 x 16-bit) cooperative
  copies (4 or 8 bytes where a small tile has too few elements per thread), rows padded by 8
  elements (16 B) against bank conflicts.  With two or more K tiles the K loop is
  software-pipelined: the copies are ``cp.async`` (``ASYNC_COPY``; legal as 16-byte copies because
  every 8-element vector lands in one contiguous shared row), issued ``stages - 1`` tiles ahead of
  the fragment loads and MMAs.  2 stages by default; ``MAX_STAGES = 3`` adds a third buffer where
  it still fits 48 KB of shared memory;
* fragments are loaded from shared memory row- or column-major as the operand's layout needs
  (``ik`` vs ``ki`` for A, ``kj`` vs ``jk`` for B: no transposing copy);
* the float32 accumulators are stored per warp through a padded shared-memory stripe (16 rows,
  dynamic shared memory) and written out coalesced, the step's conversion block (float32 ->
  float16, or the rounding to bfloat16 bits) inlined into that write, so the float32 accumulator
  never reaches global memory.

The tensor intrinsics are einc's own (registered on first use under ``einc_wmma_*`` names): TVM's
``tvm.s_tir.tensor_intrin.cuda`` registers hundreds and takes ~50 s to import, has no bfloat16
variants and no A-transposed MMA.  A bfloat16 operand reaches the fragments as raw bits: its
shared tiles stay ``uint16`` and its fragment buffers are re-typed to ``bfloat16``
(``unsafe_set_dtype``); the intrinsic descriptions match einc's bit-level bf16 -> f32 conversion,
and the load implementation hands ``load_matrix_sync`` the shared tile's address cast to
``nv_bfloat16*`` (TVM would print ``unsigned short*``, which wmma rejects), so the bits move
unchanged.  The CUDA emulator (``cuda_emulator``) runs these kernels, wmma and cp.async included,
and ``tests/test_gpu_emulated.py`` checks their results for both dtypes.

Raises ``ValueError`` (the SIMT ``_gemm`` then takes the step) for other dtypes, extents that are
not multiples of 16, no contracted label innermost in both operands, or layouts where the tiled labels are not the
innermost two axes.
"""
from __future__ import annotations

from .schedules_gpu import _pick_inner, _prod, gemm_groups

FRAG = 16
WARP = 32
_REGISTERED: set[str] = set()

# ------------------------------------------------------------------------------------------------
# intrinsics


def _frag_index(buf, stride):
    """Index of the 16 x 16 fragment at ``buf``'s offset inside a fragment array of row ``stride``."""
    return buf.elem_offset // stride // FRAG * (stride // FRAG) + buf.elem_offset % stride // FRAG


def _register(name, make):
    from ._tvm import s_tir

    if name in _REGISTERED:
        return name
    if s_tir.TensorIntrin.get(name, allow_missing=True) is None:
        desc, impl = make()
        s_tir.TensorIntrin.register(name, desc, impl)
    _REGISTERED.add(name)
    return name


def _elem(dtype: str) -> str:
    """Fragment element type for an einc dtype (bfloat16 travels as uint16 bits elsewhere)."""
    return "bfloat16" if dtype == "bfloat16" else "float16"


def load_intrin(dtype: str, operand: str, col_major: bool) -> str:
    """shared -> ``wmma.matrix_a|b`` 16 x 16 fragment load; ``col_major``: the shared tile is stored
    with the fragment's rows as columns (A as ``k x m``, B as ``n x k``)."""
    name = f"einc_wmma_load_{dtype}_{operand}_{'col' if col_major else 'row'}"
    scope = f"wmma.matrix_{operand}"
    layout = "col_major" if col_major else "row_major"
    src_dt = "uint16" if dtype == "bfloat16" else "float16"
    frag_dt = _elem(dtype)

    def make():
        from ._tvm import tirx
        from tvm.script import tirx as T

        def conv(x):
            return tirx.Cast(frag_dt, x) if src_dt != frag_dt else x

        def src_ptr(p):
            # the shared tile holds bf16 bits as uint16 (printed ``ushort*``); wmma's bf16 load
            # takes ``const __nv_bfloat16*``: a pointer cast, the bits are not converted.  (Typed
            # uint64, not handle: CUDA codegen prints a handle-typed extern call behind a
            # ``(void*)`` cast, which wmma rejects as well.)
            return T.call_extern("uint64", "(nv_bfloat16*)", p) if src_dt != frag_dt else p

        @T.prim_func(s_tir=True)
        def desc(a: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (FRAG, FRAG), src_dt, align=64, offset_factor=FRAG, scope="shared")
            C = T.match_buffer(c, (FRAG, FRAG), frag_dt, align=64, offset_factor=FRAG, scope=scope)
            with T.sblock("root"):
                T.reads(A[0:FRAG, 0:FRAG])
                T.writes(C[0:FRAG, 0:FRAG])
                for i, j in T.grid(FRAG, FRAG):
                    with T.sblock("load"):
                        vi, vj = T.axis.remap("SS", [i, j])
                        C[vi, vj] = conv(A[vi, vj])

        @T.prim_func(s_tir=True)
        def impl(a: T.handle, c: T.handle) -> None:
            s1 = T.int32()
            s0 = T.int32()
            d1 = T.int32()
            d0 = T.int32()
            A = T.match_buffer(a, (FRAG, FRAG), src_dt, align=64, offset_factor=FRAG, scope="shared",
                               strides=[s1, s0])
            C = T.match_buffer(c, (FRAG, FRAG), frag_dt, align=64, offset_factor=FRAG, scope=scope,
                               strides=[d1, d0])
            with T.sblock("root"):
                T.reads(A[0:FRAG, 0:FRAG])
                T.writes(C[0:FRAG, 0:FRAG])
                T.evaluate(T.tvm_load_matrix_sync(C.data, FRAG, FRAG, FRAG, _frag_index(C, d1),
                                                  src_ptr(A.access_ptr("r", ptr_type=frag_dt)), s1, layout,
                                                  dtype="void"))

        return desc, impl

    return _register(name, make)


def fill_intrin() -> str:
    def make():
        from tvm.script import tirx as T

        @T.prim_func(s_tir=True)
        def desc(c: T.handle) -> None:
            C = T.match_buffer(c, (FRAG, FRAG), "float32", align=64, offset_factor=FRAG, scope="wmma.accumulator")
            with T.sblock("root"):
                T.reads()
                T.writes(C[0:FRAG, 0:FRAG])
                for i, j in T.grid(FRAG, FRAG):
                    with T.sblock("init"):
                        vi, vj = T.axis.remap("SS", [i, j])
                        C[vi, vj] = T.float32(0)

        @T.prim_func(s_tir=True)
        def impl(c: T.handle) -> None:
            d1 = T.int32()
            d0 = T.int32()
            C = T.match_buffer(c, (FRAG, FRAG), "float32", align=64, offset_factor=FRAG, scope="wmma.accumulator",
                               strides=[d1, d0])
            with T.sblock("root"):
                T.reads()
                T.writes(C[0:FRAG, 0:FRAG])
                T.evaluate(T.tvm_fill_fragment(C.data, FRAG, FRAG, FRAG, _frag_index(C, d1), T.float32(0),
                                               dtype="void"))

        return desc, impl

    return _register("einc_wmma_fill_f32", make)


def store_intrin(scope: str) -> str:
    """``wmma.accumulator`` -> ``scope`` (shared or global) float32 16 x 16 store, row-major."""
    def make():
        from tvm.script import tirx as T

        @T.prim_func(s_tir=True)
        def desc(a: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (FRAG, FRAG), "float32", align=64, offset_factor=FRAG, scope="wmma.accumulator")
            C = T.match_buffer(c, (FRAG, FRAG), "float32", align=64, offset_factor=FRAG, scope=scope)
            with T.sblock("root"):
                T.reads(A[0:FRAG, 0:FRAG])
                T.writes(C[0:FRAG, 0:FRAG])
                for i, j in T.grid(FRAG, FRAG):
                    with T.sblock("store"):
                        vi, vj = T.axis.remap("SS", [i, j])
                        C[vi, vj] = A[vi, vj]

        @T.prim_func(s_tir=True)
        def impl(a: T.handle, c: T.handle) -> None:
            s1 = T.int32()
            s0 = T.int32()
            d1 = T.int32()
            d0 = T.int32()
            A = T.match_buffer(a, (FRAG, FRAG), "float32", align=64, offset_factor=FRAG, scope="wmma.accumulator",
                               strides=[d1, d0])
            C = T.match_buffer(c, (FRAG, FRAG), "float32", align=64, offset_factor=FRAG, scope=scope,
                               strides=[s1, s0])
            with T.sblock("root"):
                T.reads(A[0:FRAG, 0:FRAG])
                T.writes(C[0:FRAG, 0:FRAG])
                T.evaluate(T.tvm_store_matrix_sync(A.data, FRAG, FRAG, FRAG, _frag_index(A, d1),
                                                   C.access_ptr("w", ptr_type="float32"), s1, "row_major",
                                                   dtype="void"))

        return desc, impl

    return _register(f"einc_wmma_store_f32_{scope}", make)


def mma_intrin(dtype: str, a_col: bool, b_col: bool, a_first: bool) -> str:
    """``C[m, n] += conv(A) * conv(B)`` on 16 x 16 x 16 fragments, matching einc's lowered body:
    ``a_col``/``b_col``: the fragment buffer is indexed ``[k, m]`` / ``[n, k]``; ``a_first``: the
    A (M-side) operand is the first factor of the product (einsum operand order)."""
    name = f"einc_wmma_mma_{dtype}_{'c' if a_col else 'r'}{'c' if b_col else 'r'}{'a' if a_first else 'b'}"
    frag_dt = _elem(dtype)

    def make():
        from ._tvm import tirx
        from tvm.script import tirx as T

        if dtype == "bfloat16":
            def conv(x):  # the fragment holds the bits; einc's lowering reads them as f32's top half
                u = tirx.Cast("uint32", tirx.Cast("uint16", x))
                return tirx.reinterpret("float32", tirx.shift_left(u, tirx.const(16, "uint32")))
        else:
            def conv(x):
                return tirx.Cast("float32", x)

        def prod(a, b):
            return conv(a) * conv(b) if a_first else conv(b) * conv(a)

        def ia(i, k):
            return (k, i) if a_col else (i, k)

        def ib(k, j):
            return (j, k) if b_col else (k, j)

        @T.prim_func(s_tir=True)
        def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (FRAG, FRAG), frag_dt, align=64, offset_factor=FRAG, scope="wmma.matrix_a")
            B = T.match_buffer(b, (FRAG, FRAG), frag_dt, align=64, offset_factor=FRAG, scope="wmma.matrix_b")
            C = T.match_buffer(c, (FRAG, FRAG), "float32", align=64, offset_factor=FRAG, scope="wmma.accumulator")
            with T.sblock("root"):
                # the reads in the order of the lowered block's (tensorize compares them in order)
                if a_first:
                    T.reads(C[0:FRAG, 0:FRAG], A[0:FRAG, 0:FRAG], B[0:FRAG, 0:FRAG])
                else:
                    T.reads(C[0:FRAG, 0:FRAG], B[0:FRAG, 0:FRAG], A[0:FRAG, 0:FRAG])
                T.writes(C[0:FRAG, 0:FRAG])
                for i, j, k in T.grid(FRAG, FRAG, FRAG):
                    with T.sblock(""):
                        vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                        a0, a1 = T.meta_var(ia(vi, vk))
                        b0, b1 = T.meta_var(ib(vk, vj))
                        C[vi, vj] = C[vi, vj] + prod(A[a0, a1], B[b0, b1])

        @T.prim_func(s_tir=True)
        def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
            a1 = T.int32()
            a0 = T.int32()
            b1 = T.int32()
            b0 = T.int32()
            c1 = T.int32()
            c0 = T.int32()
            A = T.match_buffer(a, (FRAG, FRAG), frag_dt, align=64, offset_factor=FRAG, scope="wmma.matrix_a",
                               strides=[a1, a0])
            B = T.match_buffer(b, (FRAG, FRAG), frag_dt, align=64, offset_factor=FRAG, scope="wmma.matrix_b",
                               strides=[b1, b0])
            C = T.match_buffer(c, (FRAG, FRAG), "float32", align=64, offset_factor=FRAG, scope="wmma.accumulator",
                               strides=[c1, c0])
            with T.sblock("root"):
                T.reads(C[0:FRAG, 0:FRAG], A[0:FRAG, 0:FRAG], B[0:FRAG, 0:FRAG])
                T.writes(C[0:FRAG, 0:FRAG])
                T.evaluate(T.tvm_mma_sync(C.data, _frag_index(C, c1), A.data, _frag_index(A, a1),
                                          B.data, _frag_index(B, b1), C.data, _frag_index(C, c1), dtype="void"))

        return desc, impl

    return _register(name, make)


# ------------------------------------------------------------------------------------------------
# schedule

#: static shared memory a block may use (CUDA's limit without the dynamic opt-in)
SMEM_LIMIT = 48 * 1024
# Knobs, read while scheduling.  The kernel cache keys on this file's text, not on these values:
# compile with ``cache=False`` after changing one at run time (as with ``GEMM_OVERRIDE``).
#: bfloat16 steps take tensor cores (False: the SIMT rule)
BF16_ENABLED = True
#: global -> shared operand copies as ``cp.async`` (16-byte copies into contiguous shared rows)
ASYNC_COPY = True
#: deepest software pipeline over K tiles (1: none).  A step gets the deepest one, down to 2, whose
#: operand buffers (one copy per stage) fit ``SMEM_LIMIT`` next to its block tile; the block tile is
#: chosen for 2 stages and never shrunk for more.  3 gives correct results in the CUDA emulator but
#: is not measured on a GPU yet, hence not the default.
MAX_STAGES = 2
#: a padded operand copy whose shared-tile loads would be scalar (a clamped gather or zeros past K,
#: which TVM 0.27 cannot print as vectors) is written to global memory by a kernel of its own when
#: the step does at least this many flops: one extra pass over that operand, and the GEMM's copies
#: load it 16 bytes at a time through cp.async.  Inlined, the 2-byte loads issue in the main loop
#: (fp16 ``ik,jk->ij`` at K = 999: 669 instructions per 64 MMAs against 183, and 254 registers);
#: a launch (~4 us) outweighs that below ~2 us of tensor-core work.
MATERIALIZE_FLOPS = 2**29


def _tile_options(ext: int, cands=(128, 64, 32, 16)):
    return [t for t in cands if ext % t == 0]


def _plan(Mn: int, Nn: int, Kn: int, a_kcontig: bool, b_kcontig: bool):
    """``(BM, BN, BK, warps, c_pad)``: the largest block tile whose shared memory fits with a 2-stage
    pipeline (``_stages`` then deepens it where the memory allows).

    Warps split the block tile along N only (each owns a ``BM x 32`` warp tile, or ``BM x BN`` when
    BN < 32): the accumulator staging of one 16-row fragment stripe is then one contiguous
    ``16 x BN`` shared tile for all warps.
    """
    for BK in (32, 16):
        if Kn % BK:
            continue
        for BM in _tile_options(Mn):
            for BN in _tile_options(Nn):
                for c_pad in (4, 0):
                    if _smem(BM, BN, BK, a_kcontig, b_kcontig, c_pad, 2) <= SMEM_LIMIT:
                        return BM, BN, BK, max(1, BN // 32), c_pad
    raise ValueError("no tensor-core tile fits shared memory")


def _smem(BM, BN, BK, a_kcontig, b_kcontig, c_pad, stages) -> int:
    """Shared memory of one block: ``stages`` copies of both operands' padded K tiles (f16/bf16)
    and the float32 accumulator staging stripe (16 rows of BN + c_pad)."""
    a = (BM * (BK + 8) if a_kcontig else BK * (BM + 8)) * 2
    b = (BN * (BK + 8) if b_kcontig else BK * (BN + 8)) * 2
    return stages * (a + b) + FRAG * (BN + c_pad) * 4


def _stages(BM, BN, BK, a_kcontig, b_kcontig, c_pad, k_tiles) -> int:
    """Pipeline depth: the deepest up to ``MAX_STAGES`` whose buffers fit (``_plan`` makes 2 fit);
    1 (no pipeline) with a single K tile or ``MAX_STAGES`` < 2."""
    for n in range(MAX_STAGES, 1, -1):
        if k_tiles >= n and _smem(BM, BN, BK, a_kcontig, b_kcontig, c_pad, n) <= SMEM_LIMIT:
            return n
    return 1


def _operand_info(st, m_in, n_in, k):
    """``(a_idx, b_idx, a_col, b_col)``: which operand holds M (A) and N (B), and whether each one's
    fragment is stored column-major (the tiled labels as the operand's last two axes, swapped)."""
    if len(st.operand_labels) != 2:
        raise ValueError("tensor cores take two-operand contractions")
    la, lb = st.operand_labels
    if n_in in la and n_in not in lb:
        a_idx, b_idx = 1, 0
    elif n_in in lb and n_in not in la:
        a_idx, b_idx = 0, 1
    else:
        raise ValueError("N label in both or neither operand")
    A, B = st.operand_labels[a_idx], st.operand_labels[b_idx]
    if m_in not in A or m_in in B:
        raise ValueError("M label not only in the A operand")
    if len(A) < 2 or set(A[-2:]) != {m_in, k}:
        raise ValueError(f"operand {A}: tiled labels {m_in}{k} are not its innermost axes")
    if len(B) < 2 or set(B[-2:]) != {n_in, k}:
        raise ValueError(f"operand {B}: tiled labels {k}{n_in} are not its innermost axes")
    return a_idx, b_idx, A[-1] == m_in, B[-1] == k


def _coop_load(sch, blk, below: int, threads: int, elem_bytes: int, vector: bool = True, avoid: int = 0):
    """Fuse the loops of a cache block below ``below`` and split them over ``threads`` with 16-byte
    vectors where the tile allows (``vector=False``: scalar copies), never ``avoid`` lanes; returns
    the vector width."""
    inner = sch.get_loops(blk)[below:]
    f = sch.fuse(*inner) if len(inner) > 1 else inner[0]
    total = int(sch.get(f).extent)
    vec = 16 // elem_bytes if vector else 1
    while vec > 1 and (total % (threads * vec) or vec == avoid):
        vec //= 2
    warps = threads // WARP
    if total % threads:
        raise ValueError("tile not a multiple of the thread count")
    if vec > 1:
        _, ty, tx, v = sch.split(f, [None, warps, WARP, vec])
        sch.vectorize(v)
    else:
        _, ty, tx = sch.split(f, [None, warps, WARP])
    sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")
    return vec


def tc_plan(sch, name, st) -> dict:
    """Everything ``gemm_tensorcore`` decides, without changing ``sch``; raises ValueError when the
    step is not one for tensor cores."""
    if st.dtype not in ("float16", "bfloat16") or st.acc_dtype != "float32":
        raise ValueError(f"tensor cores here take float16/bfloat16 steps, not {st.dtype}")
    if st.dtype == "bfloat16" and not BF16_ENABLED:
        raise ValueError("bfloat16 tensor cores: the fragment loads from uint16 shared tiles do not compile yet")
    g = gemm_groups(st)
    if g is None:
        raise ValueError("not a contraction")
    if st.pack_block or (st.padded and not st.view_blocks):
        raise ValueError("padded/packed lowering")
    batch, M, N, K = g
    m_in, n_in = _pick_inner(M, st), N[-1]
    k = inner_k(st.operand_labels, K)
    if k is None:
        raise ValueError(f"no contracted label among the innermost two axes of both operands ({K})")
    sz = {**st.sizes, **st.padded}  # the block's loops run over the padded extents
    Mn, Nn, Kn = sz[m_in], sz[n_in], sz[k]
    if Mn % FRAG or Nn % FRAG or Kn % FRAG:
        raise ValueError(f"extents {m_in}={Mn} {n_in}={Nn} {k}={Kn} not multiples of 16")
    if st.out_labels[-2:] != m_in + n_in:
        raise ValueError("output's innermost axes are not M, N")
    a_idx, b_idx, a_col, b_col = _operand_info(st, m_in, n_in, k)
    blk = sch.get_sblock(name)
    # the operands' storage dtypes: float16, or bfloat16 bits in uint16
    want = "uint16" if st.dtype == "bfloat16" else "float16"
    reads = sch.get(blk).reads
    if len(reads) != 2 or any(r.source.dtype != want for r in reads):
        raise ValueError("operands are not two distinct buffers of the step's dtype")
    if len(sch.get_loops(blk)) != len(st.out_labels) + len(st.red_labels):
        raise ValueError("loop/label mismatch")
    k_out = [c for c in K if c != k]
    BM, BN, BK, WN, c_pad = _plan(Mn, Nn, Kn, not a_col, b_col)
    k_tiles = Kn // BK * _prod(sz[c] for c in k_out)
    stages = _stages(BM, BN, BK, not a_col, b_col, c_pad, k_tiles)
    return dict(m_in=m_in, n_in=n_in, k=k, k_out=k_out, a_idx=a_idx, b_idx=b_idx, a_col=a_col, b_col=b_col,
                BM=BM, BN=BN, BK=BK, WN=WN, c_pad=c_pad, stages=stages)


def inner_k(operand_labels, K: str):
    """The contracted label the WMMA tiles run along: one of ``K`` among the innermost two axes of
    both operands (the others are serial loops outside it, ``bshe,dhe->bsd``); None when none is."""
    for c in reversed(K):
        if all(c in labs[-2:] for labs in operand_labels):
            return c
    return None


def gemm_tensorcore(sch, name, st) -> str:
    """WMMA tensor-core GEMM for float16/bfloat16 contractions (see the module docstring)."""
    p = tc_plan(sch, name, st)
    m_in, n_in, k, k_out = p["m_in"], p["n_in"], p["k"], p["k_out"]
    a_idx, b_idx, a_col, b_col = p["a_idx"], p["b_idx"], p["a_col"], p["b_col"]
    BM, BN, BK, WN, c_pad, stages = p["BM"], p["BN"], p["BK"], p["WN"], p["c_pad"], p["stages"]
    blk = sch.get_sblock(name)
    lp = dict(zip(st.out_labels + st.red_labels, sch.get_loops(blk)))
    outer = [c for c in st.out_labels if c not in (m_in, n_in)]
    FM, FN = BM // FRAG, BN // WN // FRAG
    threads = WN * WARP

    sch.reorder(*[lp[c] for c in outer], lp[m_in], lp[n_in], *[lp[c] for c in k_out], lp[k])
    mo, fm, mi = sch.split(lp[m_in], [None, FM, FRAG])
    no, wn, fn, ni = sch.split(lp[n_in], [None, WN, FN, FRAG])
    ko, kf, ki = sch.split(lp[k], [None, BK // FRAG, FRAG])
    if k_out:
        # other contracted labels join the loop over K tiles (one pipeline over all of them): a
        # tile never straddles two of their values, so every tile region stays exact
        ko = sch.fuse(*[lp[c] for c in k_out], ko)
    sch.reorder(*[lp[c] for c in outer], mo, no, wn, ko, kf, fm, fn, mi, ni, ki)
    inner = blk
    outer_blk = sch.blockize(mi)
    bx = sch.fuse(*[lp[c] for c in outer], mo, no) if outer else sch.fuse(mo, no)
    sch.bind(bx, "blockIdx.x")
    sch.bind(wn, "threadIdx.y")

    # operands: global -> shared (cooperative, 16-byte vectors, padded rows), shared -> fragments
    elem = 2
    frag_scope = {a_idx: "wmma.matrix_a", b_idx: "wmma.matrix_b"}
    shared, frags, lanes = {}, {}, {}
    reads = [r.source.name for r in sch.get(outer_blk).reads]
    scratch = {b.name for b in sch.get(sch.get_sblock("root")).alloc_buffers}

    def written_lanes(buf: str) -> int:
        """The vector width the step producing intermediate ``buf`` (read directly or through a
        view) writes it with; 0 for a program input."""
        from ._tvm import tirx

        srcs = [r.source.name for r in sch.get(sch.get_sblock(buf)).reads] if buf in st.view_blocks else [buf]
        for src in (s for s in srcs if s in scratch):
            try:
                loops = sch.get_loops(sch.get_sblock(src))
            except Exception:  # noqa: BLE001 - ScheduleError: written by a block of another name
                continue
            last = sch.get(loops[-1]) if loops else None
            return int(last.extent) if last is not None and last.kind == tirx.ForKind.VECTORIZED else 1
        return 0
    big = 2 * _prod({**st.sizes, **st.padded}[c] for c in st.out_labels + st.red_labels) >= MATERIALIZE_FLOPS
    views, stored = [], []
    for idx in (0, 1):
        ss = sch.cache_read(outer_blk, idx, "shared")
        sch.compute_at(ss, ko)
        # a padded label innermost makes the copy a clamped gather, which TVM 0.27 prints as
        # make_uint4 of 8 halves (no such CUDA function); zeros past K are a select whose 8-lane
        # condition it cannot print at all (boolx8): such copies stay scalar, or are stored first
        labs = st.operand_labels[idx]
        scalar = labs[-1] in st.padded or any(c in st.padded for c in labs if c in st.red_labels)
        if reads[idx] in st.view_blocks:
            (stored if scalar and big else views).append(reads[idx])
        scalar = scalar and not big
        # an intermediate buffer whose every access is one vector width gets that vector type from
        # StorageRewrite, and InjectPTXAsyncCopy then fails a lanes check on the copy (a transposed
        # operand written 4 halves at a time and read 4 at a time: acd,cb->dab at d = 1 fell back
        # to dlight, found by the fuzzer on cuda-emu): its copy takes another width
        avoid = written_lanes(reads[idx]) if ASYNC_COPY else 0
        lanes[idx] = _coop_load(sch, ss, 3, threads, elem, vector=not scalar, avoid=avoid)  # bx, wn, ko
        sch.storage_align(ss, 0, axis=-2, factor=FRAG * 2, offset=8)
        shared[idx] = ss
    for buf in views:  # a padded or K-sliced operand copy is read straight into the shared tile
        sch.compute_inline(sch.get_sblock(buf))
    for idx in (0, 1):
        fr = sch.cache_read(outer_blk, idx, frag_scope[idx])
        sch.compute_at(fr, kf)
        r, c = sch.get_loops(fr)[-2:]
        r0, r1 = sch.split(r, [None, FRAG])
        c0, c1 = sch.split(c, [None, FRAG])
        sch.reorder(r0, c0, r1, c1)
        sch.unroll(r0)
        sch.unroll(c0)
        frags[idx] = (fr, r1)
    if st.dtype == "bfloat16":
        for idx in (0, 1):
            sch.unsafe_set_dtype(frags[idx][0], 0, "bfloat16")

    # accumulators: fragments -> shared stripe of 16 rows -> global (conversion inlined)
    # (dynamic shared memory: a static staging buffer would be merged into the operands' by
    # StorageRewrite, which breaks the typed access pointer of the fragment store)
    c_sh = sch.cache_write(outer_blk, 0, "shared.dyn")
    c_fr = sch.cache_write(outer_blk, 0, "wmma.accumulator")
    sch.reverse_compute_at(c_fr, wn)
    c_fr_name = sch.get(c_fr).name_hint
    r, c = sch.get_loops(c_fr)[-2:]
    r0, r1 = sch.split(r, [None, FRAG])
    c0, c1 = sch.split(c, [None, FRAG])
    sch.reorder(r0, c0, r1, c1)
    sch.reverse_compute_at(c_sh, r0)
    # (one that crops the padding or sums K slices is a map kernel of its own)
    if st.convert_block and not set(st.padded) & set(st.out_labels) and st.split_k == 1:
        sch.reverse_compute_inline(sch.get_sblock(st.convert_block))
    out_blk = c_sh
    ol = sch.get_loops(out_blk)
    base = len(ol) - 2
    rr, cc = ol[base:]
    f = sch.fuse(rr, cc)
    vec = 4 if (FRAG * BN // WN) % (WARP * 4) == 0 else 1
    if vec > 1:
        _, tx, v = sch.split(f, [None, WARP, vec])
        sch.vectorize(v)
    else:
        _, tx = sch.split(f, [None, WARP])
    sch.bind(tx, "threadIdx.x")
    init = sch.decompose_reduction(outer_blk, ko)
    # tensorize
    dt = st.dtype
    a_first = a_idx == 0
    sch.tensorize(frags[a_idx][1], load_intrin(dt, "a", a_col))
    sch.tensorize(frags[b_idx][1], load_intrin(dt, "b", b_col))
    init_inner = sch.get_child_blocks(init)[0]
    sch.tensorize(sch.get_loops(init_inner)[-2], fill_intrin())
    sch.tensorize(r1, store_intrin("shared.dyn"))
    if c_pad:  # (after tensorize: it replaces the block, and with it the alignment attribute)
        sch.storage_align(sch.get_sblock(c_fr_name + "_o"), 0, axis=-2, factor=32, offset=c_pad)
    sch.tensorize(sch.get_loops(inner)[-3], mma_intrin(dt, a_col, b_col, a_first))
    for lp_ in (kf, fm, fn):
        sch.unroll(lp_)
    # software pipeline over K tiles: the next tiles' global->shared copies (cp.async: issued
    # without waiting, ``stages - 1`` tiles ahead) overlap this tile's fragment loads and MMAs
    if stages >= 2:
        sch.annotate(ko, "software_pipeline_stage", [0, 0, stages - 1])
        sch.annotate(ko, "software_pipeline_order", [0, 1, 2])
        if ASYNC_COPY:
            sch.annotate(ko, "software_pipeline_async_stages", [0])
    pipe = (f"{stages}-stage {'cp.async ' if ASYNC_COPY else ''}pipeline" if stages >= 2
            else "no pipeline (one K tile)")
    loads = "16-byte loads" if set(lanes.values()) == {8} else \
        f"{lanes[a_idx] * elem}/{lanes[b_idx] * elem}-byte loads"
    extra = "".join(f", {c} padded {st.sizes[c]}->{n}" for c, n in st.padded.items())
    if stored:
        extra += f" (operand copies {', '.join(stored)} padded in global memory by a kernel of their own)"
    if st.split_k > 1:
        extra += f", split-K x{st.split_k} ({st.out_labels[0]}: float32 partials, summed by a map kernel)"
    return (f"tensor cores (wmma {dt}->f32): batch/outer {''.join(outer) or '-'}, tiles over "
            f"{m_in}x{n_in}x{k}{', serial K ' + ''.join(k_out) if k_out else ''}, block tile {BM}x{BN}x{BK}, {WN} warps x {BM}x{BN // WN} warp tile, "
            f"A {'col' if a_col else 'row'}/B {'col' if b_col else 'row'}-major fragments, operands via padded "
            f"shared memory ({loads}), {pipe}, f32 accumulators staged per 16-row stripe "
            f"({vec}-wide converted stores){extra}")
