"""CPU schedules, chosen per step by shape class.

``plan_steps(prog, target)`` looks at the IR only (no TVM) and decides, per einsum step, whether it
is GEMM-like and, if so, the register tile and the packing of the vectorised operand; ``lower`` turns
that decision into a packing compute.  ``schedule(lowered, target)`` then schedules every block:

=============  ================================================================================
class          schedule
=============  ================================================================================
gemm           two operands, a contracted label, a row label, and the output's last label ``n`` in
               one operand (``B``).  Register tile ``MR x NR`` (6x16 f32 on AVX2, 8x32 on
               AVX-512; NR = 2 vectors, 3 when that divides N), ``NR`` vectorised, ``MR``
               unrolled, the tile accumulated in a cache-write buffer, every outer loop fused and
               parallel.  ``B`` is packed into zero-padded panels ``[.., n/NR, k.., NR]`` when ``n``
               is not its contiguous axis, when 16 row tiles re-read a panel (2 if its rows are
               >= 2 KiB apart), or when N needs padding; ``A`` into ``[.., m/MR, k.., MR]`` when its
               contiguous axis is not contracted.  An M or N that is not a multiple of the tile is
               computed padded; each tile's copy-out crops it and converts to the output dtype.
               Single thread on Zen 3 this was 0.94x OpenBLAS SGEMM for 1000^3, 1023^3 and
               257x300x333 with 4-row tiles.
reduce-inner   the contracted label is the contiguous axis (``ij->i``, ``ij,j->i``): ``rfactor``
               over a vector-wide split of it, partial sums vectorised, R rows accumulated together
               (R x the operands streaming a row <= 8), rows parallel.
reduce         a reduction to a scalar: over operands laid out in loop order, the loops fused and
               split into parallel parts of vector partial sums; otherwise ``rfactor`` into 16
               scalar partial sums.
reduce-outer   the output's last label is contiguous in the operands (``ij->j``, batched dots):
               reduction loops move outside the vectorised output axis, chunks of up to 32
               vectors of it parallel; the last ``n % lanes`` columns partitioned off into a
               scalar loop.
transpose      no reduction, the output's last label is not contiguous in a big operand: 2-D
               cache-blocked tiles (read rows of a tile, write its columns), tiles parallel.
map            elementwise / broadcast / outer products: vectorise the last axis, parallel outer.
cast, copy     as map.
=============  ================================================================================

Every block is scheduled on a copy of the schedule; a heuristic that fails (``ScheduleError``)
falls back to a simpler schedule, so no step runs as the naive loop nest unless every rule fails
(the plan then says so).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from einc.ir.nodes import Einsum, Program, einsum_sizes

from .rules import first_rule, reverse_inline

SCHEDULE_VERSION = 3


def _bytes(dtype: str) -> int:
    if dtype == "bool":
        return 1
    digits = "".join(ch for ch in dtype if ch.isdigit())
    return max(1, int(digits or 32) // 8)


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= x
    return n


@dataclass(frozen=True)
class GemmPlan:
    """How a GEMM-like step is tiled (decided from the IR before lowering)."""

    b_operand: int  # index of the operand holding the vectorised output label n
    n: str  # the output's last label
    m: str | None  # the register-blocked row label (innermost output label not in B), if any
    mr: int
    nr: int
    pack: bool  # pack B into panels [.., n/NR, k.., NR]
    ku: int  # split of the innermost reduce loop
    pack_a: bool = False  # pack A into panels [.., m/MR, k.., MR]
    m_tail: bool = False  # the last M % MR rows: a loop partitioned off the MR-row tiles, not padding


def lanes_for(dtype: str, vbits: int) -> int:
    return max(1, vbits // 8 // _bytes(dtype))


def plan_einsum(op: Einsum, types, vbits: int) -> GemmPlan | None:
    """A ``GemmPlan`` when ``op`` is GEMM-like, else None."""
    from .lower import compute_dtype, storage_dtype

    if len(op.operands) != 2 or not op.output:
        return None
    sizes = einsum_sizes(op, types)
    red = op.contracted()
    if not red:
        return None
    # broadcasting (size-1 axes against a larger label) or repeated labels: leave to the generic rules
    for labs, t in zip(op.inputs, types):
        if len(set(labs)) != len(labs) or any(n != sizes[c] for c, n in zip(labs, t.shape)):
            return None
    n = op.output[-1]
    holders = [i for i, labs in enumerate(op.inputs) if n in labs]
    if len(holders) != 1:
        return None
    b = holders[0]
    a = 1 - b
    if not any(c in op.inputs[a] and c in op.inputs[b] for c in red):
        return None  # no shared contraction: an outer product followed by sums
    lanes = lanes_for(compute_dtype(op.type.dtype), vbits)
    N = sizes[n]
    if N < lanes:
        return None
    ms = [c for c in op.output if c not in op.inputs[b]]
    if not ms:
        return None  # matrix-vector shapes: the reduce-inner / reduce-outer rules stream B once
    m = ms[-1]
    M = sizes[m] if m else 1
    # NR: two vector registers wide (padding N up to it when N is large: 1000 -> 1008 beats a 4x8
    # tile, 0.95 vs 0.58 of OpenBLAS), else three (N=24: 0.93 vs 1.40 ms on ao_to_mo), else one, else
    # half a register (AVX-512 on N=24), preferring widths that divide N
    half = max(1, lanes // 2)
    if N % (2 * lanes) == 0 or N >= 8 * lanes:
        nr = 2 * lanes
    else:
        nr = next((w for w in (3 * lanes, lanes, half) if w <= N and N % w == 0), 2 * lanes if N >= 2 * lanes else lanes)
    # MR rows of NR/lanes accumulators: 6x2 or 4x2 registers of 16 (AVX2), 8x2 of 32 (AVX-512).
    # AVX2: 6 rows (12 of the 16 ymm registers accumulate) where 6 divides M, else 4; padding M for
    # 6 rows costs more than it gains (padded rows are computed, A's rows clamped).  2 threads,
    # interleaved, 4 -> 6 rows: ik,kj->ij 516x512x512 1.58 -> 1.44 ms, 1536x1024x1024 21.3 -> 18.1;
    # padded, 512^3 (to 516) 1.55 -> 1.73 ms, attn_out (128 to 132) 3.0 -> 3.4
    mr_pref = (8, 4, 6) if vbits >= 512 else (6, 4)
    mr = next((r for r in mr_pref if M % r == 0), 4 if M >= 16 else min(M, 4))
    # AVX2 where 6 does not divide M (every power of two): 6-row tiles over the first M - M % 6 rows,
    # the last few rows a loop of their own (``_gemm`` partitions m, outermost), when nothing else
    # pads or converts the accumulator (its copy-out would then have two producers) and B is the
    # same for every batch (a batched B is streamed again by the tail's pass over all batches:
    # attn_scores 1.34 -> 1.57 ms).  2 threads, interleaved, 4 rows -> 6 + tail: ik,kj->ij 1024^3
    # 11.9 -> 11.4 ms, 512^3 1.57 -> 1.48, 1021x1024x1024 (was padded to 1024) 11.8 -> 11.2
    tail = (vbits < 512 and M % 6 != 0 and M >= 96 and N % (2 * lanes) == 0
            and compute_dtype(op.type.dtype) == storage_dtype(op.type.dtype)
            and all(c == m or c not in op.inputs[b] for c in op.output[:-1]))
    if tail:
        mr = 6
    k_in_b = [c for c in red if c in op.inputs[b]]
    K = _prod(sizes[c] for c in k_in_b)
    # pack when n is not the contiguous axis of B (vector loads need it), or when the panel is re-read
    # by enough row tiles to pay for the copy: 16 or more (M/MR times the output labels B lacks), or
    # 2 when B's rows are >= 2 KiB apart.  In place, the micro-kernel reads one line of B per k at
    # a power-of-two stride, lines that share L1 sets.  2 threads, interleaved, in place -> packed:
    # bik,kj->bij 16x256x256x256 6.0 -> 4.3 ms, bik,bkj->bij 64x128^3 2.7 -> 2.3, attn_out 2.0 -> 1.9,
    # ik,kj->ij 256^3 0.41 -> 0.29; but 1024 batches of 16x16x16 0.09 -> 0.13 (4 row tiles per panel).
    contiguous = op.inputs[b][-1] == n
    kpos = max(op.inputs[b].index(c) for c in k_in_b)  # B's innermost contracted axis
    row_bytes = _prod(types[b].shape[kpos + 1:]) * _bytes(compute_dtype(op.type.dtype))
    reuse = (M // mr) * _prod(sizes[c] for c in op.output if c != m and c not in op.inputs[b])
    pack = (not contiguous) or (K >= 16 and (reuse >= 16 or (M >= 2 * mr and row_bytes >= 2048)))
    pack = pack or N % nr != 0  # a padded N reads B through the zero-padded panels, not clamped gathers
    klast = red[-1]
    ku = 4 if sizes[klast] % 4 == 0 and sizes[klast] >= 8 else 1
    # pack A when its contiguous axis is not contracted (``ji,jk->ik``): the micro-kernel reads MR
    # elements of A per k, one cache line per k at a power-of-two stride, every line in the same
    # L1 set: 1024^3 37 ms in place, 13 ms packed
    pack_a = mr > 1 and op.inputs[a][-1] not in red and M >= 2 * mr and K >= 16
    return GemmPlan(b, n, m, mr, nr, pack, ku, pack_a, tail)


def plan_steps(prog: Program, target_json: str) -> dict[int, GemmPlan]:
    """Step index -> GemmPlan for the GEMM-like einsum steps of ``prog``."""
    from . import target as _target

    vbits = _target.vector_bits(target_json)
    env = {v.name: v.type for v in prog.inputs}
    plans = {}
    for i, op in enumerate(prog.body):
        if isinstance(op, Einsum):
            p = plan_einsum(op, [env[o] for o in op.operands], vbits)
            if p is not None:
                plans[i] = p
        env[op.result] = op.type
    return plans


# ------------------------------------------------------------------------------------------------
# scheduling (TVM from here on)


def schedule(low, target_json: str):
    """Schedule every block of ``low.func``; returns ``(IRModule, plan rows)``.

    A plan row is ``(block, shape class, description)``.
    """
    from . import target as _target
    from ._tvm import s_tir, tvm

    sch = s_tir.Schedule(tvm.IRModule({"main": low.func}))
    vbits = _target.vector_bits(target_json)
    rows = []
    sch, inlined = _inline_maps(sch, low.steps)
    for st in low.steps:
        if st.block in inlined:
            rows.append((st.block, "inlined", f"computed inside {inlined[st.block]} (no intermediate buffer)"))
            continue
        _STATE.serial = st.flops < PARALLEL_MIN_WORK
        work = []
        if st.pack_block:
            work.append((st.pack_block, "pack"))
        if st.pack_a_block:
            work.append((st.pack_a_block, "pack-a"))
        work.append((st.block, None))
        if st.convert_block:
            work.append((st.convert_block, "map"))
        for blk, forced in work:
            cls = forced or classify(st)
            if blk == st.convert_block and st.convert_inlined:
                rows.append((blk, "inlined", f"computed in {st.block}'s tile copy"))
                continue
            if not _has_block(sch, blk):  # te.create_prim_func drops steps no output depends on
                rows.append((blk, cls, "dead: no output needs it"))
                continue
            if blk == st.block:
                st.shape_class = cls
            chain = _RULES.get(cls, []) + [_generic]
            sch, rule, desc = first_rule(sch, chain, (blk, st, vbits),
                                         lambda r, e: f"{r.__name__} failed: {type(e).__name__}")
            if rule is None:
                desc = f"naive loop nest ({desc})"
            elif rule is not chain[0]:
                cls = f"{cls}->{rule.__name__.strip('_')}"
            rows.append((blk, cls, desc + (" (serial: small)" if _STATE.serial else "")))
    _STATE.serial = False
    return sch.mod, rows


def _inline_maps(sch, steps):
    """Inline reduction-free intermediates into consumers that read each of their elements once.

    ``ij,ij,ij->ij`` is split by the path pass into two products; computing the first inside the
    second saves writing and re-reading a whole intermediate (one pass over memory instead of
    three); ``ii->`` extracts the diagonal, then sums it: the sum reads the diagonal directly.
    Only when every consumer is a non-GEMM einsum whose iteration domain has as many points as
    the intermediate has elements (each element read once: nothing is recomputed).  Returns
    ``(schedule, {inlined block: consumer})``.
    """
    by_block = {}
    for st in steps:
        for b in (st.block, st.convert_block, st.pack_block, st.pack_a_block):
            if b:
                by_block[b] = st
    inlined = {}
    for st in steps:
        if st.kind != "einsum" or st.red_labels or st.convert_block or st.pack_block or st.pack_a_block \
                or not st.out_labels:
            continue
        size = _prod(st.out_shape)
        try:
            blk = sch.get_sblock(st.block)
            consumers = [sch.get(c).name_hint for c in sch.get_consumers(blk)]
        except Exception:  # noqa: BLE001 - no such block (dead step)
            continue
        if not consumers:
            continue
        ok = True
        for c in consumers:
            cs = by_block.get(c)
            if cs is None or cs.kind != "einsum" or cs.gemm is not None or c != cs.block or \
                    _prod(cs.sizes[x] for x in set(cs.out_labels + cs.red_labels)) != size:
                ok = False
                break
        if not ok:
            continue
        trial = sch.copy()
        try:
            trial.compute_inline(trial.get_sblock(st.block))  # refuses output blocks
        except Exception:  # noqa: BLE001 - ScheduleError: keep the step
            continue
        sch = trial
        inlined[st.block] = ", ".join(consumers)
    return sch, inlined


def _has_block(sch, name: str) -> bool:
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # noqa: BLE001 - ScheduleError: no such block
        return False


def classify(st) -> str:
    if st.kind in ("cast", "copy"):
        return _map_or_transpose(st)
    if st.gemm is not None:
        return "gemm"
    if st.red_labels:
        ops = [(labs, shp) for labs, shp in zip(st.operand_labels, st.operand_shapes) if labs]
        n = st.out_labels[-1] if st.out_labels else None
        klast = st.red_labels
        # contiguous reduction: some reduced label is the last axis of the biggest operand
        big = max(ops, key=lambda x: _prod(x[1])) if ops else None
        if big is not None and big[0][-1] in st.red_labels and n is not None and \
                not all(labs[-1] == n for labs, _ in ops if n in labs):
            return "reduce-inner"
        if n is not None and all(labs[-1] == n for labs, _ in ops if n in labs):
            return "reduce-outer"
        return "reduce" if klast else "map"
    return _map_or_transpose(st)


def _map_or_transpose(st) -> str:
    n = st.out_labels[-1] if st.out_labels else None
    if n is None:
        return "map"
    for labs, shp in zip(st.operand_labels, st.operand_shapes):
        if n in labs and labs[-1] != n and _prod(shp) >= 4096:
            return "transpose"
    return "map"


def _loops_by_label(sch, blk, st):
    loops = sch.get_loops(blk)
    labels = st.out_labels + st.red_labels
    if len(loops) != len(labels):
        raise ValueError(f"block {st.block}: {len(loops)} loops for labels {labels!r}")
    return dict(zip(labels, loops)), loops


#: below this many multiply-adds a step runs serially: waking the thread pool costs more (~5 us)
PARALLEL_MIN_WORK = 1 << 16
class _Flag(threading.local):
    serial = False


_STATE = _Flag()  # per thread: whether the step being scheduled is too small to parallelise


def _fuse_parallel(sch, loops, min_iters: int = 1):
    if not loops:
        return None
    f = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    _par(sch, f)
    return f


def _par(sch, loop):
    if not _STATE.serial:
        sch.parallel(loop)


# -- gemm -----------------------------------------------------------------------------------------


def _partition(sch, name, loop, at: int):
    """Partition the outermost loop of block ``name`` into ``[0, at)`` and the rest; returns the two
    blocks.  TVM's ``loop_partition`` gives each part's block the whole part as its read/write
    regions (``C[0:96, 0:64]``, not ``C[v_i, v_j]``), so a later ``cache_write`` would buffer and
    copy a whole part per tile: the regions are inferred again from each block's body."""
    from ._tvm import get_sblock_read_write_region, s_tir

    var = sch.get(loop).loop_var.name
    sch.loop_partition(loop, [at, None])

    def infer(block_name: str, tensors=None):
        rv = sch.get_sblock(block_name)
        b = sch.get(rv)
        tensors = tensors or {r.source: r.source for r in [*b.reads, *b.writes]}
        reads, writes = get_sblock_read_write_region(b, tensors)
        exact = s_tir.SBlock(b.iter_vars, reads, writes, b.name_hint, b.body, b.init, b.alloc_buffers,
                             b.match_buffers, b.annotations)
        sch.state.replace(sch.get_sref(rv), exact, {b: exact})
        return rv

    blocks = [infer(f"{name}_{var}{i}") for i in (0, 1)]
    # the wrapper blocks around the parts read and write nothing as TVM leaves them: a later primitive
    # that follows the dataflow (cache_write of a producer the parts read) then put its copy after them
    used = {r.source: r.source for b in blocks for r in [*sch.get(b).reads, *sch.get(b).writes]}
    for wrapper in (f"{name}_{var}0_partition", f"{name}_{var}1_partition", f"{name}_{var}_common"):
        if _has_block(sch, wrapper):
            infer(wrapper, used)
    return blocks


def _gemm(sch, name, st, vbits):
    from .lower import storage_dtype

    g = st.gemm
    blk = sch.get_sblock(name)
    lp, _ = _loops_by_label(sch, blk, st)
    lanes = lanes_for(st.acc_dtype, vbits)
    M = st.sizes[g.m] if g.m is not None else 1
    tiles = [(blk, lp, False)]
    if g.m_tail and M % g.mr:
        order = [g.m] + [c for c in st.out_labels + st.red_labels if c != g.m]
        sch.reorder(*[lp[c] for c in order])  # m outermost, so that its partition splits the whole nest
        parts = _partition(sch, name, lp[g.m], M - M % g.mr)
        tiles = [(b, dict(zip(order, sch.get_loops(b))), i == 1) for i, b in enumerate(parts)]
    for b, loops, tail in tiles:
        vec_ok, n_outer = _gemm_tile(sch, b, loops, st, lanes, tail)
    # the conversion to the output dtype and the crop of padded rows/columns happen in the tile's
    # copy-out (TVM predicates the padded part), not in a pass over a whole padded accumulator
    conv, st.convert_inlined = "", False
    if st.convert_block and _has_block(sch, st.convert_block):
        try:
            reverse_inline(sch, sch.get_sblock(st.convert_block))
            what = ["cropped"] * bool(st.padded) + ["converted"] * (st.acc_dtype != storage_dtype(st.dtype))
            st.convert_inlined, conv = True, f", {' and '.join(what) or 'copied'} in the tile copy"
        except Exception:  # noqa: BLE001 - ScheduleError: the output block is scheduled on its own
            pass
    return (f"tile {g.mr}x{g.nr} over {g.m or '-'}x{g.n}, k-unroll {g.ku}, "
            f"{'packed B' if g.pack else 'B in place'}{', packed A' if g.pack_a else ''}, {'vectorized' if vec_ok else 'predicated tail'}"
            f"{', padded ' + 'x'.join(f'{c}={n}' for c, n in st.padded.items()) if st.padded else ''}, "
            f"parallel over {n_outer} fused loops{conv}"
            f"{f'; last {M % g.mr} of {g.m} a tile of their own' if len(tiles) > 1 else ''}")


def _gemm_tile(sch, blk, lp, st, lanes, tail):
    """Tile one GEMM block (``lp``: label -> loop) into MR x NR register tiles; ``tail``: its m loop
    holds the last M % MR rows (partitioned off), one tile of its own height.  Returns
    ``(vectorized, number of parallel loops fused)``."""
    g = st.gemm
    n_o, n_i = sch.split(lp[g.n], [None, g.nr])
    if tail:
        m_o, m_i = None, lp[g.m]
    elif g.m is not None and g.mr > 1:
        m_o, m_i = sch.split(lp[g.m], [None, g.mr])
    elif g.m is not None:
        m_o, m_i = lp[g.m], None
    else:
        m_o = m_i = None
    red = list(st.red_labels)
    k_last = lp[red[-1]]
    if g.ku > 1:
        k_o, k_i = sch.split(k_last, [None, g.ku])
        red_loops = [lp[c] for c in red[:-1]] + [k_o, k_i]
    else:
        red_loops = [lp[c] for c in red]
    outer = [lp[c] for c in st.out_labels if c not in (g.n, g.m)]
    if m_o is not None:
        outer.append(m_o)
    outer.append(n_o)
    inner = ([m_i] if m_i is not None else [])
    if g.nr > lanes and g.nr % lanes == 0:
        n_v_o, n_v = sch.split(n_i, [None, lanes])
        inner += [n_v_o, n_v]
    else:
        n_v_o, n_v = None, n_i
        inner += [n_v]
    sch.reorder(*outer, *red_loops, *inner)
    # accumulate the MR x NR tile in a cache-write buffer copied out once per tile ("local" scope
    # measured slower; accumulating into the output directly, no better)
    cw = sch.cache_write(blk, 0, "global")
    sch.reverse_compute_at(cw, n_o)
    vec_ok = st.padded.get(g.n, st.sizes[g.n]) % g.nr == 0
    if vec_ok:
        sch.vectorize(n_v)
        sch.vectorize(sch.get_loops(cw)[-1])
    if n_v_o is not None:
        sch.unroll(n_v_o)
    if m_i is not None:
        sch.unroll(m_i)
    _fuse_parallel(sch, outer)
    init = sch.decompose_reduction(blk, red_loops[0])
    if vec_ok:
        sch.vectorize(sch.get_loops(init)[-1])
    return vec_ok, len(outer)


def _panels(sch, name, st, operand: int):
    """Parallel over a packing block's loops before its k's (layout [others.., x_o, k.., x_i]);
    returns the innermost loop (x_i)."""
    loops = sch.get_loops(sch.get_sblock(name))
    nk = len([c for c in st.red_labels if c in st.operand_labels[operand]])
    _fuse_parallel(sch, loops[:len(loops) - nk - 1])
    return loops[-1]


def _pack(sch, name, st, vbits):
    g = st.gemm
    inner = _panels(sch, name, st, g.b_operand)
    lanes = lanes_for(st.acc_dtype, vbits)
    if g.nr % lanes == 0 or g.nr in (lanes // 2, 2 * lanes, 3 * lanes):
        sch.vectorize(inner)
    return f"pack B panels [.., {g.n}/{g.nr}, k, {g.nr}]"


def _pack_a(sch, name, st, vbits):
    g = st.gemm
    sch.unroll(_panels(sch, name, st, 1 - g.b_operand))
    return f"pack A panels [.., {g.m}/{g.mr}, k, {g.mr}]"


# -- reductions ----------------------------------------------------------------------------------


def _reduce_inner(sch, name, st, vbits):
    """rfactor over a vector-wide split of the innermost (contiguous) reduced label, ``R`` rows at once.

    The partial sums of ``R`` consecutive output rows are accumulated together, so a vector of an
    operand without the row label (``x`` of ``ij,j->i``) is loaded once per ``R`` rows and ``R``
    independent streams are in flight.  4096^2 ``ij,j->i`` f32, 2 threads, interleaved with the old
    rule: 4.0-5.3 ms one row at a time, 2.7-3.5 ms eight (numpy 1.9-2.6).
    """
    blk = sch.get_sblock(name)
    lp, loops = _loops_by_label(sch, blk, st)
    lanes = lanes_for(st.acc_dtype, vbits)
    red = list(st.red_labels)
    big = max(zip(st.operand_labels, st.operand_shapes), key=lambda x: _prod(x[1]))
    kc = big[0][-1]
    K = st.sizes[kc]
    if K < 2 * lanes:
        raise ValueError("reduced axis too short to vectorise")
    # R rows with R x (operands streaming a row) <= 8: rows of a power-of-two stride share L1 sets
    # (8 ways on Zen 3), so 8 rows of two operands (ij,ij->i) evict each other: 2048^2 f32 1.2 ms at
    # R=4, 1.9 ms at R=8.  The last group is cut short by a predicate (4099x4096 ij,j->i: 5.8 ms one
    # row at a time, 2.7 ms eight)
    rows = min(max(1, 8 // max(1, _row_streams(sch, blk, len(st.out_labels)))),
               st.sizes[st.out_labels[-1]]) if st.out_labels else 1
    # at least 4 independent accumulators: R rows, times an unrolled k when R < 4
    unroll = max(1, 4 // rows)
    if K % (unroll * lanes) or K < 16 * lanes:
        unroll = 1
    k_o, k_i = sch.split(lp[kc], [None, lanes * unroll])
    others = [lp[c] for c in red if c != kc]
    out = [lp[c] for c in st.out_labels]
    sch.reorder(*out, *others, k_o, k_i)
    nout = len(out)
    rf = _rfactor(sch, k_i, nout)  # partial sums laid out [out.., k_i]: contiguous vector stores
    # rf block loops: out.., others.., k_o, k_i (k_i now spatial)
    if rows > 1:
        _, r_i = sch.split(sch.get_loops(rf)[nout - 1], [None, rows])
        sch.reorder(*sch.get_loops(rf)[nout + 1:-1], r_i)  # out.., r_o, others.., k_o, r_i, k_i
        sch.unroll(r_i)
    kil = sch.get_loops(rf)[-1]
    if unroll > 1:
        ku, kv = sch.split(kil, [unroll, lanes])
        sch.vectorize(kv)
        sch.unroll(ku)
    else:
        sch.vectorize(kil)
    if nout:
        _fuse_parallel(sch, sch.get_loops(rf)[:nout])
        _fuse_parallel(sch, sch.get_loops(blk)[:nout])
    init = sch.decompose_reduction(rf, sch.get_loops(rf)[1 if nout else 0])  # outs are fused: one loop
    sch.vectorize(sch.get_loops(init)[-1])
    return f"rfactor over {kc} ({lanes}x{unroll} lanes), {rows} rows at once, parallel rows"


def _rfactor(sch, loop, factor_axis: int):
    """``sch.rfactor``, after giving every loop-less block a unit loop: TVM's rfactor fails an internal
    check ("block_realize == old_block_realize_") when a loop-less block (the 0-d conversion of an
    ``ij->`` sum in int32 or float16) sits beside the reduction."""
    for blk in sch.get_child_blocks(sch.get_sblock("root")):
        if not sch.get_loops(blk):
            sch.add_unit_loop(blk)
    return sch.rfactor(loop, factor_axis)


def _row_streams(sch, blk, nout: int) -> int:
    """How many buffers the block reads along its last output axis (producers inlined into it count)."""
    from ._tvm import tvm

    b = sch.get(blk)
    row = b.iter_vars[nout - 1].var
    writes = [w.source for w in b.writes]
    return sum(1 for r in b.reads
               if not any(r.source.same_as(w) for w in writes)
               and any(v.same_as(row) for x in r.region for v in tvm.tirx.analysis.undefined_vars(x.min)))


def _reduce_outer(sch, name, st, vbits):
    """Reduction loops outside the vectorised, contiguous output axis (column sums ``ij->j``).

    The output axis ``n`` is cut into vectors of ``lanes``, and those into chunks of up to 32
    vectors (1 KiB of f32 a row: whole cache lines, a stream the prefetcher follows); the chunks
    and the other output labels run in parallel, each summing its rows into a chunk of the output.
    When ``lanes`` does not divide ``n``, the loop is partitioned: the first ``n - n % lanes``
    columns take that schedule, the last few a scalar loop of their own, instead of the whole
    axis falling back to 8-column scalar chunks.  2 threads, interleaved with the old rule:
    ``ij->j`` 4096x4095 13.4 -> 3.8 ms, 4096x1000 3.9 -> 0.67 ms (numpy 3.7 and 0.56).
    """
    blk = sch.get_sblock(name)
    lp, _ = _loops_by_label(sch, blk, st)
    lanes = lanes_for(st.acc_dtype, vbits)
    group = _trailing_group(st)  # n: these labels' loops fused (one contiguous run in every tensor)
    if _prod(st.sizes[c] for c in group) % lanes:  # a fused loop cut at a partition: not affine
        group = group[-1:]
    n = "".join(group)
    N = _prod(st.sizes[c] for c in group)
    if N < lanes:
        raise ValueError("output axis too short to vectorise")
    main = N - N % lanes
    others, red = st.out_labels[:-len(group)], st.red_labels
    sch.reorder(*[lp[c] for c in group], *[lp[c] for c in others], *[lp[c] for c in red])  # n outermost
    nloop = sch.fuse(*[lp[c] for c in group]) if len(group) > 1 else lp[n]
    blocks = [blk] if main == N else _partition(sch, name, nloop, main)
    nl, *rest = sch.get_loops(blocks[0])  # n, others.., red.. (n was outermost: nothing above it)
    vo, lv = sch.split(nl, [None, lanes])
    vchunk = min(32, main // lanes)
    co, ci = sch.split(vo, [None, vchunk])
    sch.reorder(co, *rest, ci, lv)
    sch.vectorize(lv)
    _fuse_parallel(sch, [co, *rest[:len(others)]])
    init = sch.decompose_reduction(blocks[0], rest[len(others)] if red else ci)
    sch.vectorize(sch.get_loops(init)[-1])
    desc = f"reduce outside {n} ({vchunk}x{lanes}-wide chunks, vectorized), parallel chunks"
    if len(blocks) > 1:  # the last N % lanes columns: rows outside, those few columns inside
        tail = sch.get_loops(blocks[1])
        sch.reorder(*tail[1:], tail[0])
        desc += f"; last {N - main} of {n} a scalar loop of their own"
    return desc


def _trailing_group(st) -> list[str]:
    """The output's last labels that every operand holding one of them also ends with, in the same
    order and at full size: one contiguous run of memory in every tensor, scheduled as one loop.
    (A complex sum's real form, ``abc->bc``: the (re, im) axis c is 2 long, the run b x c is not.)"""
    group = []
    for k in range(1, len(st.out_labels) + 1):
        tail = st.out_labels[-k:]
        if not all(labs[-k:] == tail and tuple(shp[-k:]) == tuple(st.sizes[c] for c in tail)
                   for labs, shp in zip(st.operand_labels, st.operand_shapes) if set(tail) & set(labs)):
            break
        group = list(tail)
    return group


def _reduce(sch, name, st, vbits):
    blk = sch.get_sblock(name)
    lp, loops = _loops_by_label(sch, blk, st)
    out = [lp[c] for c in st.out_labels]
    if not out:
        raise ValueError("full reduction: nothing to parallelise")
    _fuse_parallel(sch, out)
    return "parallel over outputs, serial reduction"


def _full_reduce_vec(sch, name, st, vbits):
    """A reduction to a scalar over operands laid out in loop order (``ij->``, ``i,i->``,
    ``ij,ij->``): the loops fused into one linear index, split ``[P parts, chunk, U x lanes]``, and
    ``rfactor`` over parts x lanes, so each part (parallel) streams its chunk into U vector
    accumulators.  4096^2 ``ij->`` f32, 2 threads: 8.1 ms with scalar partial sums, 2.0 ms so."""
    blk = sch.get_sblock(name)
    loops = sch.get_loops(blk)
    if st.out_labels or not loops or st.acc_dtype == "bool":
        raise ValueError("not a vectorisable full reduction")
    if any(labs != st.red_labels for labs in st.operand_labels if labs):
        raise ValueError("an operand is not laid out in the loop order")
    lanes = lanes_for(st.acc_dtype, vbits)
    total = _prod(st.sizes[c] for c in st.red_labels)
    split = next(((p, u) for p in (16, 8, 4, 2) for u in (4, 2, 1)
                  if total % (p * u * lanes) == 0 and total >= 8 * p * u * lanes), None)
    if split is None:
        raise ValueError("no parts x vectors split divides the reduction")
    parts, unroll = split
    vec = unroll * lanes
    f = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    p, m, v = sch.split(f, [parts, None, vec])
    sch.reorder(p, v, m)
    rf = _rfactor(sch, sch.fuse(p, v), 0)  # rf[part * vec + lane]: spatial (part, lane), reduce chunk
    pv, m = sch.get_loops(rf)
    p, v = sch.split(pv, [parts, vec])
    sch.reorder(p, m, v)
    if unroll > 1:
        vu, v = sch.split(v, [unroll, lanes])
        sch.unroll(vu)
    sch.vectorize(v)
    _par(sch, p)
    init = sch.decompose_reduction(rf, m)
    sch.vectorize(sch.get_loops(init)[-1])
    return f"{parts} parts x {unroll}x{lanes} lanes of partial sums, parallel parts"


def _full_reduce(sch, name, st, vbits):
    """A reduction to a scalar: rfactor over the outermost reduced loop so both cores work."""
    blk = sch.get_sblock(name)
    loops = sch.get_loops(blk)
    if st.out_labels or not loops:
        raise ValueError("not a full reduction")
    ext = st.sizes[st.red_labels[0]]
    if ext < 64:
        raise ValueError("too small to split")
    parts = 16
    ko, ki = sch.split(loops[0], [parts, None])
    rf = _rfactor(sch, ko, 0)
    _par(sch, sch.get_loops(rf)[0])
    return f"rfactor into {parts} partial sums"


# -- maps -----------------------------------------------------------------------------------------


def _map(sch, name, st, vbits):
    blk = sch.get_sblock(name)
    loops = sch.get_loops(blk)
    if not loops:
        return "scalar"
    shape = [int(x) for x in _extents(sch, loops)]
    dtype = st.acc_dtype if name == st.block else st.dtype
    from .lower import storage_dtype

    lanes = lanes_for(storage_dtype(dtype) if dtype != "bool" else "bool", vbits)
    desc = []
    last = loops[-1]
    writes_bool = st.dtype == "bool" and name != st.block or st.kind in ("cast", "copy") and st.dtype == "bool"
    if not writes_bool and shape[-1] >= lanes and shape[-1] % lanes == 0:
        chunk = lanes * 4 if shape[-1] % (lanes * 4) == 0 else lanes
        lo, li = sch.split(last, [None, chunk])
        if chunk > lanes:
            _, lv = sch.split(li, [None, lanes])
            sch.vectorize(lv)
        else:
            sch.vectorize(li)
        desc.append(f"vector {lanes}")
        outer = list(loops[:-1]) + [lo]
    else:
        outer = list(loops[:-1])
    if outer:
        _fuse_parallel(sch, outer)
        desc.append("parallel outer")
    return ", ".join(desc) or "serial (tiny)"


def _transpose(sch, name, st, vbits):
    """Cache-blocked 2-D tiles over the output's last axis and the big operand's last axis."""
    blk = sch.get_sblock(name)
    loops = sch.get_loops(blk)
    labels = st.out_labels
    if len(loops) != len(labels):
        raise ValueError("loop/label mismatch")
    big = max(((l, s) for l, s in zip(st.operand_labels, st.operand_shapes) if l),
              key=lambda x: _prod(x[1]))
    c_in = big[0][-1]  # contiguous axis of the source
    if c_in not in labels or c_in == labels[-1]:
        raise ValueError("not a transpose")
    a = labels.index(c_in)
    b = len(labels) - 1
    na, nb = st.sizes[c_in], st.sizes[labels[-1]]
    if min(na, nb) < 8:
        raise ValueError("an axis under 8: no tile to block")
    # 16 x 16 tiles, 8 x 8 where both extents divide by 8 but not 16; otherwise 16 x 16 with the
    # last tile of an axis cut short by a predicate (4097 x 4096 took the map rule before, its
    # column-strided writes 5.5 times slower than 4096 x 4096)
    T = 8 if (na % 16 or nb % 16) and not (na % 8 or nb % 8) else 16
    ao, ai = sch.split(loops[a], [None, T])
    bo, bi = sch.split(loops[b], [None, T])
    others = [lp for i, lp in enumerate(loops) if i not in (a, b)]
    sch.reorder(*others, ao, bo, ai, bi)
    lanes = lanes_for(st.dtype if st.dtype != "bfloat16" else "uint16", vbits)
    ragged = bool(na % T or nb % T)
    if T % lanes == 0 and st.dtype != "bool" and not nb % T:
        sch.vectorize(bi)
    sch.unroll(ai)
    _fuse_parallel(sch, others + [ao, bo])
    return f"{T}x{T} tiles over ({c_in},{labels[-1]}){', last tiles predicated' if ragged else ''}, parallel tiles"


def _extents(sch, loops):
    return [sch.get(lp).extent for lp in loops]


def _generic(sch, name, st, vbits):
    blk = sch.get_sblock(name)
    loops = sch.get_loops(blk)
    if not loops:
        return "scalar"
    nout = len(st.out_labels) if name == st.block else len(loops)
    if nout >= 1:
        _fuse_parallel(sch, loops[:max(1, nout - 1)] if nout > 1 else loops[:1])
        return "parallel outer loops"
    return "serial"


_RULES = {
    "gemm": [_gemm],
    "pack": [_pack],
    "pack-a": [_pack_a],
    "reduce-inner": [_reduce_inner, _reduce],
    "reduce-outer": [_reduce_outer, _reduce],
    "reduce": [_full_reduce_vec, _full_reduce, _reduce],
    "transpose": [_transpose, _map],
    "map": [_map],
}
