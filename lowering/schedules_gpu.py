"""CUDA schedules for NVIDIA GPUs, chosen per step by shape class.

``schedule(lowered, target_json) -> (IRModule, plan rows)`` schedules every block of the lowered
``main``; a plan row is ``(block, shape class, description)`` as for ``schedules_cpu``.  Every block
ends up under ``blockIdx``/``threadIdx`` loops: an unbound loop nest would silently become host code
(``build`` also checks that the executable imports a ``cuda`` module).

=============  ================================================================================
class          schedule
=============  ================================================================================
fuse           an einsum step without a reduction that only feeds a contraction (the
               ``jr,kr->rjk`` product of mttkrp) is never written to global memory.  When its one
               consumer is a GEMM, the GEMM's shared-memory copy of that operand computes it: each
               K tile of the product is formed once (16-byte loads of its operands, stored with
               its M/N label innermost) and read 4-wide by the inner loop like any other tile.
               Otherwise it is inlined into its consumers.
gemm           a contraction: labels grouped into batch (in every operand), M, N (the operand
               holding the output's last label) and K (contracted).  One label per group is
               tiled (the others are whole-block loops, or fused into K when K tiles stay inside
               one row), so the shared/register regions TVM derives stay exact.  Block tile
               BM x BN x BK (128 x 128 x 16 for big shapes), 16 x 16 threads, each accumulating
               an 8 x (2x4) register tile (the 2 as a virtual thread so a warp's shared-memory
               reads are conflict-free and its stores coalesced, 4-wide), every operand staged
               through shared memory per K tile with vectorised cooperative loads and a 2-stage
               software pipeline.  Few output tiles and a long K: split-K (``rfactor``) into
               partial sums reduced by a second kernel.
reduce-inner   contracted labels are the contiguous axis: one thread block per output, a
               cross-thread (warp shuffle) reduction over up to 256 threads.
reduce-outer   the output's last label is contiguous: one thread per output, serial reduction
               (coalesced across the warp).
transpose      32 x 32 tiles through shared memory (padded rows: no bank conflicts), coalesced
               reads and writes, 32 x 8 threads.
map            elementwise / broadcast / casts: all loops fused, 256 threads, 4-wide vectors
               when the extent allows.
generic        the floor for anything else: spatial loops fused and bound, reductions serial.
=============  ================================================================================

The rules are einc's own; ``tvm.s_tir.dlight`` rules are only a fallback for a function whose own
schedule fails as a whole.
"""
from __future__ import annotations

import math

from .rules import first_rule, reverse_inline

SCHEDULE_VERSION = 1
#: streaming multiprocessors assumed when deciding on split-K (H100 SXM: 132)
NUM_SM = 132
MAX_THREADS = 1024


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


def _narrow_int(dtype: str) -> bool:
    """An 8- or 16-bit integer: TVM's CUDA C does their arithmetic in C ``int`` and has no warp
    shuffle for them."""
    return dtype.startswith(("int", "uint")) and _bytes(dtype) < 4


def _bytes(dtype: str) -> int:
    if dtype == "bool":
        return 1
    digits = "".join(ch for ch in dtype if ch.isdigit())
    return max(1, int(digits or 32) // 8)


# ------------------------------------------------------------------------------------------------
# classification (IR-level, no TVM)


def gemm_groups(st):
    """``(batch, M, N, K)`` label strings of a contraction step, or None when it is not one.

    N holds the output's last label (so the output is written along N); batch labels are in every
    operand; M are the remaining output labels.
    """
    if st.kind != "einsum" or not st.red_labels or not st.out_labels or len(st.operand_labels) < 2:
        return None
    for labs, shp in zip(st.operand_labels, st.operand_shapes):
        if len(set(labs)) != len(labs) or any(n != st.sizes[c] for c, n in zip(labs, shp)):
            return None  # diagonals / broadcasting: leave to the generic rules
    n = st.out_labels[-1]
    holder = next(labs for labs in st.operand_labels if n in labs)
    batch = "".join(c for c in st.out_labels if all(c in labs for labs in st.operand_labels))
    N = "".join(c for c in st.out_labels if c in holder and c not in batch)
    M = "".join(c for c in st.out_labels if c not in N and c not in batch)
    if not N or not M:
        return None  # matrix-vector shapes: a reduction schedule streams them better
    # K shared by the M side and the N side (else it is an outer product followed by sums)
    if not any(c in holder for c in st.red_labels) or \
            not any(c in labs for labs in st.operand_labels if labs != holder for c in st.red_labels):
        return None
    return batch, M, N, st.red_labels


#: reductions at most this long run a thread per output (a block per output left most lanes idle:
#: ``bi,bi->b`` with 8-long rows was a million 32-thread blocks, each summing 8 values)
SHORT_REDUCTION = 16
#: a contraction whose GEMM block would have fewer threads than a warp and whose K is at most this
#: long runs a thread per output too (batched 4x4 matmuls were blocks of 4 threads)
SMALL_GEMM_K = 256


def classify(st) -> str:
    if st.kind in ("cast", "copy"):
        return _map_or_transpose(st)
    if st.red_labels:
        R = _prod(st.sizes[c] for c in st.red_labels)
        g = gemm_groups(st)
        if g is not None:
            return "reduce-short" if _tiny_gemm(st, g, R) else "gemm"
        ops = [(labs, shp) for labs, shp in zip(st.operand_labels, st.operand_shapes) if labs]
        if not ops or not st.out_labels:
            return "reduce-inner"
        if R <= SHORT_REDUCTION:
            return "reduce-short"
        big = max(ops, key=lambda x: _prod(x[1]))
        if big[0][-1] in st.red_labels:
            return "reduce-inner"
        return "reduce-outer"
    return _map_or_transpose(st)


def _tiny_gemm(st, groups, K: int) -> bool:
    """Whether the GEMM rule's block for this step would have under 32 threads (``gemm_config``'s
    thread counts) with a K short enough for a thread to loop over alone."""
    _, M, N, _ = groups
    wide = _value_bytes(st) >= 8
    ty, _ = _tile(st.sizes[_pick_inner(M, st)])
    tx, _ = _tile(st.sizes[N[-1]], big_reg=4 if wide else 8)
    return ty * tx < 32 and K <= SMALL_GEMM_K


def _map_or_transpose(st) -> str:
    n = st.out_labels[-1] if st.out_labels else None
    if n is None:
        return "map"
    for labs, shp in zip(st.operand_labels, st.operand_shapes):
        if n in labs and labs and labs[-1] != n and labs[-1] in st.out_labels and _prod(shp) >= 1024:
            return "transpose"
    return "map"


# ------------------------------------------------------------------------------------------------
# scheduling (TVM from here on)


def schedule(low, target_json: str):
    """Schedule every block of ``low.func`` for CUDA; returns ``(IRModule, plan rows)``."""
    from ._tvm import s_tir, tvm

    mod0 = tvm.IRModule({"main": low.func})
    try:
        return _schedule_own(low, s_tir.Schedule(mod0))
    except Exception as e:  # noqa: BLE001 - a rule broke the function as a whole: dlight floor
        return dlight_schedule(mod0, target_json), [(st.block, "dlight", f"dlight default rules (own: {type(e).__name__})")
                                                   for st in low.steps]


def dlight_schedule(mod, target_json: str):
    """TVM's rule-based default GPU schedules (``tvm.s_tir.dlight``): the fallback floor."""
    import json

    from ._tvm import dlight_gpu_default

    return dlight_gpu_default(mod, json.loads(target_json))


def _schedule_own(low, sch):
    rows = []
    by_block = {}
    for st in low.steps:
        by_block[st.block] = st
    inlined = set()
    # 1) fusion: product-only intermediates go into the contraction that consumes them
    for st in low.steps:
        if st.kind != "einsum" or st.red_labels or len(st.operand_labels) < 2:
            continue
        if _narrow_int(st.acc_dtype):
            # TVM's CUDA C keeps an 8/16-bit integer product unstored as C's int arithmetic
            # (``(double)(c * c)`` never wraps to uint8): only a store to the buffer narrows it.
            # (``lower(gpu=True)`` computes them in uint32, with an explicit narrowing cast that
            # survives inlining, so this only guards other lowerings.)
            continue
        prod = st.convert_block or st.block  # the block writing the value in its storage dtype
        try:
            blk = sch.get_sblock(prod)
            consumers = [sch.get(c).name_hint for c in sch.get_consumers(blk)]
        except Exception:  # noqa: BLE001
            continue
        if not consumers or not all(c in by_block and by_block[c].red_labels for c in consumers):
            continue
        # a single GEMM consumer computes it tile by tile into shared memory (each product once per
        # K tile, not once per use in the inner loop); else it is inlined into its consumers
        tiled = (len(consumers) == 1 and classify(by_block[consumers[0]]) == "gemm"
                 and (GEMM_OVERRIDE or {}).get("tile_products", True))
        trial = sch.copy()
        try:
            if st.convert_block:  # the rounding to the storage dtype stays in the expression
                trial.compute_inline(trial.get_sblock(st.block))
            if not tiled:
                trial.compute_inline(trial.get_sblock(prod))
        except Exception:  # noqa: BLE001 - it writes an output, or cannot be inlined
            continue
        sch = trial
        inlined.add(st.block)
        st.shape_class = "fuse"
        if tiled:
            buf = sch.get(sch.get_sblock(prod)).writes[0].source.name
            by_block[consumers[0]].tile_products[buf] = prod
            rows.append((prod, "fuse", f"computed per K tile into {consumers[0]}'s shared memory "
                                       "(no intermediate buffer)"))
        else:
            rows.append((prod, "fuse", f"inlined into {', '.join(consumers)} (no intermediate buffer)"))
    # 2) every remaining block by shape class, first rule that applies wins
    for st in low.steps:
        if st.block in inlined:
            continue
        work = [(st.block, None)]
        if st.convert_block:
            work.append((st.convert_block, "map"))
        for blk, forced in work:
            try:
                b = sch.get_sblock(blk)
            except Exception:  # noqa: BLE001 - folded into another block by an earlier rule
                continue
            if blk != st.block and _is_bound(sch, b):  # computed inside the step's kernel already
                continue
            cls = forced or classify(st)
            if blk == st.block:
                st.shape_class = cls
            chain = _RULES.get(cls, []) + [_generic]
            fail = lambda r, e: f"{r.__name__.strip('_')} failed: {type(e).__name__}: {_first_line(e)}"  # noqa: E731
            rule = None
            if blk == st.block and st.tile_products:
                # only the SIMT GEMM computes products into its tiles; else they are inlined
                sch, rule, desc = first_rule(sch, [_gemm], (blk, st), fail)
                if rule is None:
                    for prod in st.tile_products.values():
                        sch.compute_inline(sch.get_sblock(prod))
                        rows[:] = [(b, c, f"inlined into {st.block} (no intermediate buffer)" if b == prod else d)
                                   for b, c, d in rows]
                    st.tile_products.clear()
            if rule is None:
                sch, rule, desc = first_rule(sch, chain, (blk, st), fail)
            if rule is None:
                raise RuntimeError(f"no GPU schedule for block {blk}: {desc}")
            if rule is not chain[0] and not (rule is _gemm and st.tile_products):
                cls = f"{cls}->{rule.__name__.strip('_')}"
            rows.append((blk, cls, desc))
    # 3) anything still unbound (blocks the rules created or missed) gets the generic binding;
    # padded operand copies the tensor-core rule left in global memory are such blocks by design
    pads = {b for st in low.steps for b in st.view_blocks}
    for blk in _all_blocks(sch):
        if not _is_bound(sch, blk):
            name = sch.get(blk).name_hint
            desc = _generic(sch, name, None)
            rows.append((name, "pad", f"operand copy padded for tensor cores, {desc}") if name in pads
                        else (name, "generic", desc))
    return sch.mod, rows


def _first_line(e) -> str:
    ls = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    head = next((ln for ln in ls if ln.startswith("Error message")), ls[-1] if ls else "")
    return head.strip()[:160]


def _all_blocks(sch):
    root = sch.get_sblock("root")
    return list(sch.get_child_blocks(root))


def _is_bound(sch, blk) -> bool:
    for lp in sch.get_loops(blk):
        if sch.get(lp).thread_binding is not None:
            return True
    return False


def _ext(sch, loop) -> int:
    return int(sch.get(loop).extent)


# -- generic --------------------------------------------------------------------------------------


def _spatial_reduce_loops(sch, blk):
    """Loops of a block split into (spatial, reduce) by the iter types of its block vars (TE blocks
    have one loop per block var, in order)."""
    loops = sch.get_loops(blk)
    its = sch.get(blk).iter_vars
    if not loops and all(int(iv.dom.extent) == 1 for iv in its):
        return [], []  # a 0-d result: its block has one unit iter var and no loop
    if len(loops) != len(its):
        raise ValueError("loops and block vars do not match one to one")
    sp = [lp for lp, iv in zip(loops, its) if int(iv.iter_type) == 0]
    rd = [lp for lp, iv in zip(loops, its) if int(iv.iter_type) != 0]
    return sp, rd


def _vector_safe(sch, blk) -> bool:
    """Whether a block may be vectorised: TVM 0.27's CUDA C reads a 4-lane bool vector as a
    ``ushort4`` (8 bytes, every other bool: wrong results), so blocks touching bool buffers run scalar."""
    b = sch.get(blk)
    return all(str(r.source.dtype) != "bool" for r in list(b.reads) + list(b.writes))


def _fold_convert(sch, name, st) -> bool:
    """Fold the step's conversion to its storage dtype into block ``name`` (one kernel and one pass
    over memory, not a float32 intermediate written and read back: float16 maps and transposes took
    two).  Not when the accumulator is an 8/16-bit integer and the result is not an integer of the
    same width: TVM's CUDA C leaves that value in C ``int`` until a store narrows it (bool of
    uint8 16*16 would be True).  Returns whether it folded."""
    if not _convert_foldable(st, name):
        return False
    try:
        reverse_inline(sch, sch.get_sblock(st.convert_block))
    except Exception:  # noqa: BLE001 - the conversion stays a map kernel of its own
        return False
    return True


def _convert_foldable(st, name) -> bool:
    """Whether the step's conversion to its storage dtype may join block ``name`` (see
    ``_fold_convert`` for the narrow integers it may not)."""
    if st is None or name != st.block or not st.convert_block:
        return False
    return not (_narrow_int(st.acc_dtype) and not (st.dtype.startswith(("int", "uint"))
                                                   and _bytes(st.dtype) == _bytes(st.acc_dtype)))


def _fold_convert_after(sch, name, st, loop) -> bool:
    """Convert a reduction's result to the storage dtype in the reduction's own kernel: the
    conversion runs under ``loop`` (the thread or block that finishes an output) and the
    accumulator stays in registers (float16 ``ij->i`` wrote float32 sums to memory and converted
    them in a second kernel).  Returns whether it folded; the schedule is unchanged when not."""
    if not _convert_foldable(st, name):
        return False
    try:
        sch.reverse_compute_at(sch.get_sblock(st.convert_block), loop)
    except Exception:  # noqa: BLE001 - the conversion stays a map kernel of its own
        return False
    sch.set_scope(sch.get_sblock(name), 0, "local")
    return True


def _bind_flat(sch, loops, threads: int = 256, vec: int = 1):
    """Fuse ``loops`` (spatial), split into blocks x threads (x vector lanes) and bind."""
    f = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    n = _ext(sch, f)
    threads = max(1, min(threads, n))
    if vec > 1 and n % (threads * vec) == 0:
        bx, tx, v = sch.split(f, [None, threads, vec])
        sch.vectorize(v)
    else:
        bx, tx = sch.split(f, [None, threads])
        vec = 1
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return vec


def _generic(sch, name, st):
    blk = sch.get_sblock(name)
    sp, rd = _spatial_reduce_loops(sch, blk)
    if not sp:
        # unit loops above every loop: the (serial) reduction loops stay inside the kernel
        top = sch.get_loops(blk)[0] if sch.get_loops(blk) else blk
        sch.bind(sch.add_unit_loop(top), "blockIdx.x")
        sch.bind(sch.add_unit_loop(sch.get_loops(blk)[1] if rd else blk), "threadIdx.x")
        return "single thread"
    if rd:
        sch.reorder(*sp, *rd)
    _bind_flat(sch, sp)
    return "spatial loops fused onto blocks x 256 threads, serial reduction" if rd else "fused onto blocks x 256 threads"


# -- maps -----------------------------------------------------------------------------------------


def _map(sch, name, st):
    blk = sch.get_sblock(name)
    sp, rd = _spatial_reduce_loops(sch, blk)
    if rd or not sp:
        raise ValueError("not an elementwise block")
    _fold_convert(sch, name, st)
    last = _ext(sch, sp[-1])
    vec = 4 if last % 4 == 0 else (2 if last % 2 == 0 else 1)
    if not _vector_safe(sch, blk):
        vec = 1
    if st is not None and name == st.block and _bytes(st.acc_dtype) == 1 and st.out_labels \
            and any(st.out_labels[-1] not in labs for labs in st.operand_labels):
        # TVM's CUDA codegen only broadcasts constants into 8-bit vector lanes (an ICHECK for
        # ``i,j->ij`` in int8, computed in uint8): such a block runs scalar
        vec = 1
    got = _bind_flat(sch, sp, 256, vec)
    return f"fused, 256 threads{f', {got}-wide vectors' if got > 1 else ''}"


def _tile_side(n: int) -> int:
    """A transpose tile's side along an axis of extent ``n``: 32, or 16 / 8 for shorter axes."""
    return next((t for t in (32, 16, 8) if n >= t), 0)


def _transpose(sch, name, st):
    """32 x 32 tiles (16 or 8 along an axis shorter than 32): read rows of the source tile into padded
    shared memory, write its columns.  A warp writes whole rows of the output tile (coalesced) and
    reads whole rows of the source tile."""
    blk = sch.get_sblock(name)
    loops = sch.get_loops(blk)
    labels = st.out_labels
    if len(loops) != len(labels):
        raise ValueError("loop/label mismatch")
    src = max(((l, s) for l, s in zip(st.operand_labels, st.operand_shapes) if l), key=lambda x: _prod(x[1]))
    c_in = src[0][-1]
    if c_in not in labels or c_in == labels[-1]:
        raise ValueError("not a transpose")
    a, b = labels.index(c_in), len(labels) - 1
    # Ta along the source's contiguous axis, Tb along the output's (threadIdx.x: Tb, threadIdx.y: 8);
    # 32 x 32 for the usual case.  An output axis under 32 took the map rule, whose warps read 32
    # elements a whole source row apart (one 32-byte sector each: 1/8 of the bandwidth)
    Ta, Tb = _tile_side(st.sizes[c_in]), _tile_side(st.sizes[labels[-1]])
    if not Ta or not Tb:
        raise ValueError("extents under 8")
    _fold_convert(sch, name, st)
    blk = sch.get_sblock(name)
    loops = sch.get_loops(blk)
    ao, ai = sch.split(loops[a], [None, Ta])
    bo, bi = sch.split(loops[b], [None, Tb])
    others = [lp for i, lp in enumerate(loops) if i not in (a, b)]
    sch.reorder(*others, ao, bo, ai, bi)
    outer = sch.fuse(*others, ao, bo) if others else sch.fuse(ao, bo)
    sch.bind(outer, "blockIdx.x")
    ai_o, ai_i = sch.split(ai, [None, 8])
    sch.reorder(ai_i, ai_o, bi)
    sch.bind(ai_i, "threadIdx.y")
    sch.bind(bi, "threadIdx.x")
    sch.unroll(ai_o)
    # stage the source tile through shared memory
    src_idx = list(st.operand_labels).index(src[0])
    ss = sch.cache_read(blk, src_idx, "shared")
    sch.compute_at(ss, outer)
    sl = sch.get_loops(ss)[1:]
    f = sch.fuse(*sl)
    lo, ty, tx = sch.split(f, [None, 8, Tb])
    sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")
    sch.unroll(lo)
    sch.storage_align(ss, 0, axis=len(src[0]) - 2, factor=Ta, offset=1)
    return f"{Ta}x{Tb} tiles over ({c_in},{labels[-1]}) through padded shared memory, {Tb}x8 threads"


# -- reductions -----------------------------------------------------------------------------------


def _check_shuffle_dtype(st) -> None:
    """TVM lowers a cross-thread reduction of 8/16-bit integers (no warp shuffle for them) as a
    warp-synchronous tree in volatile shared memory with no ``__syncwarp`` between its steps: a
    race since Volta (the fuzzer's cuda-emu target found uint8 ``i->`` wrong).  Such steps reduce
    one thread per output instead."""
    if _narrow_int(st.acc_dtype):
        raise ValueError(f"no cross-thread reduction of {st.acc_dtype} (TVM's shared-memory tree lacks warp syncs)")


def _two_stage_split(n_out: int, R: int, *, enough: int, min_chunk: int) -> int:
    """Chunks of a reduction of length ``R`` so that ``n_out * S`` reaches ``enough`` workers: a
    power of two up to 1024 that leaves at least ``min_chunk`` and at least ``S`` elements a chunk;
    1: one stage.

    ``S`` need not divide ``R`` (a prime-length ``i,i->`` ran in one block, ``ij->j`` over 65537
    rows on 64 threads), hence the second bound: TVM's rfactor under a non-divisible split
    initialises a partial sum at its chunk's first element (lowering/fuzz_hooks.py,
    ``rfactor_predicate``), so every chunk must start in range; the last one holds
    ``ceil(R/S) - d`` elements with ``d < S``.  A cross-thread first stage (256 threads) also needs
    each thread's first element in range: ``min_chunk`` >= 1024 + 256 there."""
    S = 1
    while n_out * S < enough and S < 1024 and R // (S * 2) >= max(min_chunk, S * 2):
        S *= 2
    return S


def _rfactor_chunks(sch, sp, rd, S: int):
    """Cut the fused reduction into ``S`` contiguous chunks and ``rfactor`` the chunk loop: returns the
    partial-sum block's loops ``[chunk, *spatial, within-chunk]`` (the original block then sums the
    ``S`` partials)."""
    sch.reorder(*sp, *rd)
    r = sch.fuse(*rd) if len(rd) > 1 else rd[0]
    ro, _ = sch.split(r, [S, None])
    sch.reorder(ro, *sp)
    return sch.get_loops(sch.rfactor(ro, 0))


def _reduce_two_stage(sch, name, st):
    """Few outputs and a long reduction (``ij->``, ``ii->`` on big inputs): S blocks per output
    each reduce one contiguous chunk (``rfactor``), then one block per output reduces the S
    partial sums (``_reduce_inner``).  One stage (``_reduce_inner`` alone) when that is enough."""
    _check_shuffle_dtype(st)
    blk = sch.get_sblock(name)
    sp, rd = _spatial_reduce_loops(sch, blk)
    if not rd:
        raise ValueError("no reduction")
    n_out, R = _prod(_ext(sch, lp) for lp in sp), _prod(_ext(sch, lp) for lp in rd)
    S = 1  # under 64K elements one block of 256 threads does it in a few hundred steps each
    if R >= 1 << 16:
        S = _two_stage_split(n_out, R, enough=4 * NUM_SM, min_chunk=4096)  # blocks: 4 per SM
    if S == 1:  # enough outputs, or a short reduction: one stage
        return _reduce_inner(sch, name, st)
    if not sp:
        # TVM's rfactor of a 0-d block takes a loopless sibling's block realize for its own (ICHECK
        # block_realize == old_block_realize_: float16/int ``ij->`` with their conversion block fell
        # back to one block of 256 threads): give such siblings a unit loop first
        for other in _all_blocks(sch):
            if not sch.get_loops(other) and not sch.get(other).same_as(sch.get(blk)):
                sch.add_unit_loop(other)
    loops = _rfactor_chunks(sch, sp, rd, S)
    sch.bind(sch.fuse(*loops[:1 + len(sp)]), "blockIdx.x")
    _, tx = sch.split(loops[-1], [None, 256])
    sch.bind(tx, "threadIdx.x")
    return f"two stages: {S} blocks per output x 256 threads (rfactor), then {_reduce_inner(sch, name, st)}"


def _reduce_inner(sch, name, st):
    """One thread block per output element, cross-thread reduction over the fused reduce loops."""
    _check_shuffle_dtype(st)
    blk = sch.get_sblock(name)
    sp, rd = _spatial_reduce_loops(sch, blk)
    if not rd:
        raise ValueError("no reduction")
    sch.reorder(*sp, *rd)
    r = sch.fuse(*rd) if len(rd) > 1 else rd[0]
    R = _ext(sch, r)
    threads = 256 if R >= 256 else max(32, 1 << (R - 1).bit_length())
    if sp:
        s = sch.fuse(*sp) if len(sp) > 1 else sp[0]
    else:
        # a reduction to one value still needs a block: without one, TVM allocates the per-thread
        # partial sums outside the kernel, one word shared by every thread (a race)
        s = sch.add_unit_loop(r)
    sch.bind(s, "blockIdx.x")
    ro, ri = sch.split(r, [None, threads])
    sch.bind(ri, "threadIdx.x")
    # (over one element TVM makes no cross-thread reduction: thread 0 alone holds the sum, and every
    # thread would store its own: found by the fuzzer, f,c-> in float16)
    folded = R > 1 and _fold_convert_after(sch, name, st, s)
    return f"block per output, cross-thread reduction over {threads} threads{', converted in registers' if folded else ''}"


def _reduce_outer_two_stage(sch, name, st):
    """Few outputs along the contiguous axis and a long reduction (``ij->j`` with a small ``j``):
    the reduction is cut into S chunks (``rfactor``), a thread per (chunk, output) sums its chunk,
    then a thread per output sums the S partials (``_reduce_outer``); ``_reduce_outer`` alone when
    the outputs give the GPU enough threads."""
    blk = sch.get_sblock(name)
    sp, rd = _spatial_reduce_loops(sch, blk)
    if not sp or not rd:
        raise ValueError("needs spatial and reduce loops")
    n_out, R = _prod(_ext(sch, lp) for lp in sp), _prod(_ext(sch, lp) for lp in rd)
    S = _two_stage_split(n_out, R, enough=NUM_SM * 1024, min_chunk=256)  # threads: 1024 per SM
    if S == 1:  # the outputs alone give the GPU enough threads
        return _reduce_outer(sch, name, st)
    loops = _rfactor_chunks(sch, sp, rd, S)
    _bind_flat(sch, loops[:1 + len(sp)], 256)
    return f"two stages: {S} chunks x {n_out} outputs, a thread each (rfactor), then {_reduce_outer(sch, name, st)}"


def _reduce_outer(sch, name, st):
    blk = sch.get_sblock(name)
    sp, rd = _spatial_reduce_loops(sch, blk)
    if not sp or not rd:
        raise ValueError("needs spatial and reduce loops")
    sch.reorder(*sp, *rd)
    _bind_flat(sch, sp, 256)
    short = _prod(_ext(sch, lp) for lp in rd) <= SHORT_REDUCTION
    if short:
        for lp in rd:  # a handful of independent loads in flight, not one at a time
            sch.unroll(lp)
    folded = _fold_convert_after(sch, name, st, sch.get_loops(blk)[1])  # under threadIdx.x
    return (f"thread per output (coalesced), serial reduction{' (unrolled)' if short else ''}"
            f"{', converted in registers' if folded else ''}")


# -- gemm -----------------------------------------------------------------------------------------


def _tile(ext: int, big_threads: int = 16, big_reg: int = 8):
    """``(threads, per-thread)`` along one GEMM dimension."""
    for thr, reg in ((big_threads, big_reg), (16, 4), (8, 4), (8, 2), (4, 2), (2, 2)):
        if ext >= thr * reg:
            return thr, reg
    return 1, 1


def _pick_inner(labels: str, st) -> str:
    """The label of a group that gets tiled: the last one unless it is small and another is bigger."""
    last = labels[-1]
    if st.sizes[last] >= 32 or len(labels) == 1:
        return last
    return max(labels, key=lambda c: st.sizes[c])


def _pick_k(K: str, st) -> str:
    """The contracted label to tile: one at least 16 long (a 2-long K tile under a serial 1024-long
    loop did 2 FMAs per shared tile, and TVM failed to compile it), then the contiguous axis of most
    operands."""
    def score(c):
        return (st.sizes[c] >= 16, sum(1 for labs in st.operand_labels if labs and labs[-1] == c), st.sizes[c])
    return max(K, key=score)


#: GEMM knobs the heuristics choose; ``GEMM_OVERRIDE`` (a dict of the same keys) replaces them for
#: every GEMM step scheduled while it is set (``bench/gpu_sweep.py`` measures variants this way; the
#: kernel cache must then be bypassed: ``compile(..., cache=False)``).
#:   ty, tm / tx, tn   threads x registers per thread along M / N (block tile BM = ty*tm, BN = tx*tn)
#:   bk                K tile
#:   kt                store a K-contiguous operand's tile K-major in shared memory (rows padded):
#:                     the inner loop then reads 4 consecutive M (N) values with one 16-byte load
#:                     and no bank conflicts (a [M][K] tile read down a column is a 16-way conflict)
#:   stages            software-pipeline depth over K tiles (1: none)
#:   async             global->shared copies as cp.async (needs ``stages`` >= 2)
#:   unroll_k          unroll the BK loop (more ILP, more registers)
#:   split_k           allow split-K (rfactor) when output tiles are few
#:   tile_products     compute a product feeding the GEMM into its shared tiles (False: inline
#:                     it into the inner loop, as before)
GEMM_OVERRIDE: dict | None = None


#: static shared memory a CUDA kernel may declare (more needs dynamic shared memory and an opt-in)
SMEM_STATIC_LIMIT = 48 * 1024


def _value_bytes(st) -> int:
    """Bytes of the values a GEMM step keeps in shared memory and registers (the wider of the
    storage and the accumulator dtype)."""
    return max(_bytes(st.dtype), _bytes(st.acc_dtype))


def gemm_smem_bytes(cfg: dict, value_bytes: int) -> int:
    """Shared memory of a SIMT GEMM config: ``stages`` copies of the BM x BK and BK x BN tiles, with
    the K-major rows' padding (4 words a row, counted for both tiles)."""
    bm, bn, bk = cfg["ty"] * cfg["tm"], cfg["tx"] * cfg["tn"], cfg["bk"]
    return cfg["stages"] * ((bm + 4) * bk + (bn + 4) * bk) * value_bytes


def gemm_config(st, m_in, n_in, Kn) -> dict:
    """The heuristic knobs for one GEMM step (see ``GEMM_OVERRIDE``).  64-bit values get a 8 x 4
    register tile (32 accumulators are already 64 registers) and a K tile small enough for the
    shared tiles to stay within the 48 KiB a kernel may declare statically (128x128x16 float64
    tiles took 65 KiB: ptxas refused the kernel)."""
    sz = {**st.sizes, **st.padded}  # padded extents: the loops run over them (tensor-core padding)
    wide = _value_bytes(st) >= 8
    ty, tm = _tile(sz[m_in])
    tx, tn = _tile(sz[n_in], big_reg=4 if wide else 8)
    cfg = {"ty": ty, "tm": tm, "tx": tx, "tn": tn, "bk": 16 if Kn >= 16 else Kn, "kt": True,
           "stages": 2, "async": False, "unroll_k": True, "split_k": True}
    while gemm_smem_bytes(cfg, _value_bytes(st)) > SMEM_STATIC_LIMIT and cfg["bk"] > 4:
        cfg["bk"] //= 2
    if GEMM_OVERRIDE:
        cfg.update(GEMM_OVERRIDE)
    return cfg


def _gemm(sch, name, st):
    """Tiled contraction.  Only one label per group is tiled (M, N, K); the other labels of each
    group are whole-block (batch-like) or serial (K) loops, so every buffer region TVM derives for
    the shared and register tiles is exact (fusing a multi-label group and tiling the fused loop
    makes the div/mod regions over-approximate: huge local arrays)."""
    g = gemm_groups(st)
    if g is None:
        raise ValueError("not a contraction")
    batch, M, N, K = g
    blk = sch.get_sblock(name)
    loops = sch.get_loops(blk)
    labels = st.out_labels + st.red_labels
    if len(loops) != len(labels):
        raise ValueError("loop/label mismatch")
    lp = dict(zip(labels, loops))
    sz = {**st.sizes, **st.padded}  # padded extents: the loops run over them (tensor-core padding)
    m_in, n_in, k_in = _pick_inner(M, st), N[-1], _pick_k(K, st)
    outer = [c for c in batch + M + N if c not in (m_in, n_in)]
    k_out = [c for c in K if c != k_in]
    Mn, Nn, Kn = sz[m_in], sz[n_in], sz[k_in]
    Kout = _prod(sz[c] for c in k_out)
    sch.reorder(*[lp[c] for c in outer + [m_in, n_in] + k_out + [k_in]])
    cfg = gemm_config(st, m_in, n_in, Kn)
    ty, tm, tx, tn = cfg["ty"], cfg["tm"], cfg["tx"], cfg["tn"]
    BM, BN = ty * tm, tx * tn
    BK = min(cfg["bk"], Kn)
    if Kn % BK:
        # the largest power-of-two divisor of K (>= 4) below the asked tile, else the asked tile with
        # a predicated last K tile (K = 999): never K itself, whose tile would not fit shared memory
        BK = next((b for b in (BK // 2, BK // 4) if b >= 4 and Kn % b == 0), BK)
    smem = gemm_smem_bytes(dict(cfg, bk=BK), _value_bytes(st))
    if smem > SMEM_STATIC_LIMIT:
        raise ValueError(f"GEMM tiles {BM}x{BN}x{BK} x {cfg['stages']} stages need {smem} bytes of shared "
                         f"memory, over the {SMEM_STATIC_LIMIT} a kernel may declare")
    if k_out and Kn % BK == 0 and Mn % BM == 0 and Nn % BN == 0:
        # K tiles never straddle a row of the fused K labels: the regions stay exact, and one long
        # pipelined K loop replaces a serial loop around short ones (mttkrp: 0.58 vs 1.66 ms).
        # Not with a partial M or N tile: TVM then gave up on the tiles' regions and sized each
        # shared tile as its whole operand (aced,debc->ab at a = 48: 238 KiB, no GPU loads that)
        # Only the innermost K-out label joins: with three or more fused, TVM gave up on the
        # regions again (fbc of eafbc,dbcf->ead, 2x16x16: 64 KiB shared tiles, the whole operand)
        kf = sch.fuse(lp[k_out[-1]], lp[k_in])
        lp = dict(lp)
        lp[k_in] = kf
        joined = sz[k_out[-1]]
        Kn, Kout, k_out, rows = Kn * joined, Kout // joined, k_out[:-1], joined
    else:
        rows = 0
    tiles = _prod(sz[c] for c in outer) * math.ceil(Mn / BM) * math.ceil(Nn / BN)
    # split-K when there are too few output tiles for the SMs and a long K
    S, Ktot = 1, Kout * Kn
    split_on_outer = Kout > 1
    # split points on whole rows of fused K labels (a chunk straddling one loses TVM the tile
    # regions: dac,dbc->ab in float64 sized a shared tile as its whole 6.5 MiB operand)
    base = Kout if split_on_outer else (rows if rows else Kn // BK)
    while cfg["split_k"] and tiles * S < 2 * NUM_SM and base % (S * 2) == 0 and Ktot // (S * 2) >= 512:
        S *= 2
    kol = sch.fuse(*[lp[c] for c in k_out]) if len(k_out) > 1 else (lp[k_out[0]] if k_out else None)
    kil = lp[k_in]
    wb, desc_split = None, ""
    if S > 1:
        target = kol if split_on_outer else kil
        ks, krest = sch.split(target, [S, None])
        # every spatial loop must be listed: reorder permutes the given loops among their own slots
        # (and a K-out loop the split left between them and ks, or N would land after it)
        sch.reorder(ks, *[lp[c] for c in outer], lp[m_in], lp[n_in], *([kol] if kol is not None and not split_on_outer else []))
        rf = sch.rfactor(ks, 0)
        wb, blk = blk, rf
        loops = sch.get_loops(blk)
        no_ = len(outer)
        ol = loops[:1 + no_]
        ml, nl = loops[1 + no_], loops[2 + no_]
        rest = loops[3 + no_:]
        kol, kil = (rest[0], rest[1]) if k_out else (None, rest[0])  # (split or not, kol stays outside)
        desc_split = f", split-K x{S} (rfactor) + reduction kernel"
    else:
        ol = [lp[c] for c in outer]
        ml, nl = lp[m_in], lp[n_in]
    # register tile along N: [n2 x tx x nv] with nv = 4 lanes; n2 is a virtual thread so each
    # virtual thread's columns are contiguous (exact register regions) and a warp reads 64 values
    nv = 4 if tn % 4 == 0 else tn
    n2 = tn // nv
    mo, mt, mi = sch.split(ml, [None, ty, tm])
    no, n2l, nt, nvl = sch.split(nl, [None, n2, tx, nv])
    ko, ki = sch.split(kil, [None, BK])
    sch.reorder(*ol, mo, no, n2l, mt, nt, *([kol] if kol is not None else []), ko, ki, mi, nvl)
    bx = sch.fuse(*ol, mo, no)
    sch.bind(bx, "blockIdx.x")
    sch.bind(n2l, "vthread.x")
    sch.bind(mt, "threadIdx.y")
    sch.bind(nt, "threadIdx.x")
    nthreads = tx * ty
    below_ko = 5 + (1 if kol is not None else 0)  # bx, n2, mt, nt, [kol], ko
    # accumulate in registers, write back 4-wide
    cl = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(cl, nt)
    if st.convert_block and wb is None:
        try:
            reverse_inline(sch, sch.get_sblock(st.convert_block))
        except Exception:  # noqa: BLE001 - leave the conversion to its own map kernel
            pass
    # stage every operand's K tile through shared memory, loaded cooperatively
    n_reads = len(sch.get(blk).reads)
    read_labels = _read_labels(sch, blk, st)
    read_names = [r.source.name for r in sch.get(blk).reads]
    scratch = {b.name for b in sch.get(sch.get_sblock("root")).alloc_buffers}  # intermediates
    shared = [sch.cache_read(blk, i, "shared") for i in range(n_reads)]
    products = []
    for ss, buf in zip(shared, read_names):
        if buf in st.tile_products:
            # the copy into shared memory becomes the product itself (mttkrp's jr,kr->rjk)
            sch.compute_inline(sch.get_sblock(st.tile_products[buf]))
            products.append(buf)
        elif buf in st.view_blocks:  # an operand copy meant for the tensor cores: read it in place
            sch.compute_inline(sch.get_sblock(buf))
    kmajor = []
    k_all = set(K)
    for i, ss in enumerate(shared):
        sch.compute_at(ss, ko)
        inner = sch.get_loops(ss)[below_ko:]
        labs = read_labels[i]
        # the tile's M or N label and, when only K labels follow it and K ends it, its position:
        # such a tile can be stored K-major (that label innermost)
        pos = next((labs.index(c) for c in (m_in, n_in) if labs and c in labs), None)
        kt = bool(cfg["kt"] and pos is not None and labs[-1] == k_in and pos < len(labs) - 1
                  and all(c in k_all for c in labs[pos + 1:]))
        tiled = [c for c in labs or "" if c in (m_in, n_in, k_in)]  # the tile's non-unit axes
        if kt and read_names[i] in products and len(inner) == len(tiled) > 1:
            # a computed tile reads its operands along the same label: make it the innermost loop,
            # so the product is formed from 16-byte loads and written with 16-byte stores
            j = tiled.index(labs[pos])
            sch.reorder(*inner[j + 1:], inner[j])
            inner = sch.get_loops(ss)[below_ko:]
        last = _ext(sch, inner[-1])
        f = sch.fuse(*inner) if len(inner) > 1 else inner[0]
        total = _ext(sch, f)
        # lanes of one vector must be consecutive elements of the tile's innermost axis: a 3-long
        # axis copied 2 lanes at a time indexes by //3 and %3, which TVM cannot vectorize (an
        # eval_vec_ check failed: adc,db->ab with c = 3, found by the fuzzer on cuda-emu)
        vec = next((v for v in (4, 2) if total % (nthreads * v) == 0 and last % v == 0), 1)
        if not _vector_safe(sch, ss):
            vec = 1
        if read_names[i] in st.view_blocks and _bytes(str(sch.get(ss).writes[0].source.dtype)) == 1:
            # a padded operand's copy selects zeros past its end; TVM 0.27's CUDA C declares the
            # 4-lane condition of a char4 select as an int, code no compiler takes (float16 x int8
            # ac,cb->ba at K = 17, found by the CI campaign): 1-byte padded tiles copy one at a time
            vec = 1
        if kt and cfg["async"] and not cfg.get("tvm_bug_async_strided"):
            # TVM 0.27's InjectPTXAsyncCopy turns a vector copy into one 16-byte cp.async even when
            # the shared side is strided (the K-major tile): wrong results.  4-byte copies are exact
            # (``tvm_bug_async_strided=True`` leaves the vector copy, to show the bug in a test).
            vec = 1
        if cfg["async"] and labs and labs[-1] not in (m_in, n_in, k_in):
            # the operand's contiguous axis is not one of the tile's: the tile's rows are strided in
            # global memory, and InjectPTXAsyncCopy still makes each vector one contiguous cp.async
            # (wrong results: ace,cb->aeb in bfloat16, found by the fuzzer)
            vec = 1
        if cfg["async"] and read_names[i] in scratch and not cfg.get("tvm_bug_async_lanes"):
            # an intermediate buffer read 4-wide everywhere is retyped float32x4 by StorageRewrite,
            # and InjectPTXAsyncCopy then fails an ICHECK on the 4-wide copy (ao_to_mo, tucker):
            # copy such a tile 4 bytes at a time (``tvm_bug_async_lanes=True`` shows the bug)
            vec = 1
        if vec > 1:
            fo, fy, fx, fv = sch.split(f, [None, ty, tx, vec])
            sch.vectorize(fv)
        else:
            fo, fy, fx = sch.split(f, [None, ty, tx])
        sch.bind(fy, "threadIdx.y")
        sch.bind(fx, "threadIdx.x")
        if kt:
            # K-major tile: [.., x, k..] -> [.., k.., x], rows padded to a 16-byte multiple + 4 words
            nd = len(labs)
            sch.transform_layout(ss, ("write", 0), _move_last(pos))
            width = BM if labs[pos] == m_in else BN
            sch.storage_align(ss, 0, axis=nd - 2, factor=32 if width >= 32 else width, offset=4)
            kmajor.append(labs[pos])
    if cfg["unroll_k"]:
        sch.unroll(ki)  # measured: ~5-8 % slower on big-K GEMMs, 1.3-1.8x faster on attn/tucker/mttkrp
    sch.unroll(mi)
    sch.unroll(nvl)
    # 4-wide stores along N when N is the output's contiguous axis (else the last loop is another
    # label's: eac,ecbd->adbe vectorised its 8 M rows, float64x8, which TVM cannot print)
    if Nn % 4 == 0 and nv == 4 and st.out_labels[-1] == n_in and _vector_safe(sch, cl):
        try:
            sch.vectorize(sch.get_loops(cl)[-1])
        except Exception:  # noqa: BLE001
            pass
    sch.decompose_reduction(blk, kol if kol is not None else ko)
    # software pipeline over K tiles: the next tiles' global loads overlap this tile's math
    stages = cfg["stages"] if _ext(sch, ko) >= cfg["stages"] else 1
    if stages >= 2:
        nstage = len(shared)
        sch.annotate(ko, "software_pipeline_stage", [0] * nstage + [stages - 1])
        sch.annotate(ko, "software_pipeline_order", list(range(nstage + 1)))
        if cfg["async"]:
            sch.annotate(ko, "software_pipeline_async_stages", [0])
    if wb is not None:
        wsp, wrd = _spatial_reduce_loops(sch, wb)
        sch.reorder(*wsp, *wrd)
        _bind_flat(sch, wsp, 256)
        if S <= 128:
            sch.unroll(wrd[0])  # S independent loads in flight per thread
    tiled = f"{m_in}x{n_in}x{k_in}"
    extras = []
    if kmajor:
        extras.append(f"K-major shared tiles for {','.join(kmajor)}")
    if stages >= 2:
        extras.append(f"{stages}-stage {'cp.async ' if cfg['async'] else ''}pipeline")
    return (f"batch/outer {''.join(outer) or '-'}, tiles over {tiled}{', serial K ' + ''.join(k_out) if k_out else ''}: "
            f"block tile {BM}x{BN}x{BK}, {ty}x{tx} threads, {tm}x({n2}x{nv}) per thread, "
            f"{len(shared)} operands via shared memory{''.join(', ' + e for e in extras)}{desc_split}")


def _move_last(pos: int):
    """An index map moving axis ``pos`` to the end (TVM calls it with the indices only)."""
    return lambda *idx: (*idx[:pos], *idx[pos + 1:], idx[pos])


def _read_labels(sch, blk, st):
    """The einsum labels of each buffer the block reads, in read order (None when unknown: the
    block reads something that is not one of the step's operands, e.g. an inlined product)."""
    names = [r.source.name for r in sch.get(blk).reads]
    by_name = dict(zip(st.operand_names, st.operand_labels))
    return [by_name.get(n) for n in names]


def _gemm_tc(sch, name, st):
    """Tensor-core (WMMA) GEMM for float16/bfloat16 steps (``schedules_gpu_tc``).  A step it does not
    apply to (checked before the schedule changes) goes straight to the SIMT ``_gemm``, so its plan
    row stays plain ``gemm``; a failure while tensorizing raises, and the chain's ``_gemm`` takes it
    (``gemm->gemm``)."""
    from .schedules_gpu_tc import gemm_tensorcore, tc_plan

    try:
        tc_plan(sch, name, st)
    except ValueError:
        return _gemm(sch, name, st)
    return gemm_tensorcore(sch, name, st)


_RULES = {
    "gemm": [_gemm_tc, _gemm, _reduce_outer],
    "reduce-inner": [_reduce_two_stage, _reduce_inner, _reduce_outer],
    "reduce-outer": [_reduce_outer_two_stage, _reduce_outer, _reduce_inner],
    "reduce-short": [_reduce_outer, _reduce_inner],
    "transpose": [_transpose, _map],
    "map": [_map],
}


def schedule_naive(low):
    """Only bind every block's loops to threads (``schedule=False`` on a GPU): the reference point."""
    from ._tvm import s_tir, tvm

    sch = s_tir.Schedule(tvm.IRModule({"main": low.func}))
    rows = []
    for blk in _all_blocks(sch):
        name = sch.get(blk).name_hint
        rows.append((name, "none", _generic(sch, name, None)))
    return sch.mod, rows
