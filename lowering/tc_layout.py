"""Operand and result layouts that let float16/bfloat16 contractions take tensor cores (CUDA only).

The WMMA rule (``schedules_gpu_tc``) needs the two tiled labels of each operand to be its innermost
axes and the output to end in ``M, N``.  Attention in the ``[batch, seq, heads, dim]`` layout
(``bqhd,bkhd->bhqk``, ``bhqk,bkhd->bqhd``) and projections into heads (``bsd,dhe->bshe``) are not
like that, and ran on the SIMT rule: float32 FMAs, 8-16 times below the tensor cores' rate.
``for_tensor_cores`` rewrites such a step into explicit permutations of the operands that need one
(``bqhd->bhqd``: one coalesced pass over an operand, scheduled as a map or a tiled transpose), the
contraction in the layout the WMMA rule takes, and a permutation of its result when the requested
output order differs.  The extra passes move each operand (and the result) once more through memory;
a contraction big enough for tensor cores does far more work per element than that.

Only steps that would take the tensor cores after the rewrite are touched: two operands of float16 or
bfloat16, a GEMM (``schedules_gpu.classify``), a layout that is the only obstacle (tiled extents
that 16 does not divide are padded: ``padding``), and enough flops per permuted element
(``MIN_FLOPS_PER_MOVED``).  Everything else is returned unchanged.
"""
from __future__ import annotations

from types import SimpleNamespace

from einc.ir.nodes import Einsum, Program, einsum_sizes
from einc.ir.types import TensorType

from .schedules_gpu import NUM_SM, _pick_inner, _prod, classify, gemm_groups
from .schedules_gpu_tc import _plan, inner_k

#: off: steps keep the layout they were written in (the SIMT rule takes the ones WMMA cannot)
ENABLED = True
FRAG = 16
#: the least work per permuted element worth a rewrite, in flops.  A permutation moves an element
#: twice (read, write: ~1.3 ps for 16 bits at the H100's ~3 TB/s); tensor cores save ~0.02 ps a
#: flop against float32 FMAs (~40 vs ~400+ TFLOP/s), so break-even is near 60: 4x margin.
#: Attention scores (``bqhd,bkhd->bhqk``) do ``seq`` flops per moved element (1024 in the suite's
#: shapes); ao_to_mo's steps 64, and stay on the SIMT rule.
MIN_FLOPS_PER_MOVED = 256


def _step(op: Einsum, types: list[TensorType]):
    """The fields of ``lower.StepInfo`` that the classification reads, without lowering."""
    return SimpleNamespace(kind="einsum", out_labels=op.output, red_labels=op.contracted(),
                           operand_labels=tuple(op.inputs), operand_shapes=tuple(t.shape for t in types),
                           sizes=einsum_sizes(op, types), dtype=op.type.dtype, acc_dtype="float32")


def _last(labels: str, tiled: str) -> str:
    """``labels`` with the labels in ``tiled`` moved to the end, each group keeping its order."""
    return "".join(c for c in labels if c not in tiled) + "".join(c for c in labels if c in tiled)


def layouts(op: Einsum, types: list[TensorType], min_flops: float = MIN_FLOPS_PER_MOVED):
    """``(operand label strings, output label string)`` the WMMA rule takes for ``op``, or None when
    the step is not one for tensor cores, already has them, or does under ``min_flops`` per element
    the permutations would move."""
    g = _tc_gemm(op, types)
    if g is None:
        return None
    st, K, m_in, n_in = g
    la, lb = op.inputs
    # the contracted label the tiles run along: one already innermost in both operands, else the
    # one a operand holds innermost, else the last; the others stay serial loops outside it
    k = inner_k(op.inputs, K) or next((labs[-1] for labs in op.inputs if labs[-1] in K), K[-1])
    a_side = 0 if (m_in in la and m_in not in lb and n_in in lb and n_in not in la) else \
        1 if (m_in in lb and m_in not in la and n_in in la and n_in not in lb) else None
    if a_side is None:
        return None
    want = list(op.inputs)
    want[a_side] = _last(op.inputs[a_side], m_in + k)
    want[1 - a_side] = _last(op.inputs[1 - a_side], n_in + k)
    out = _last(op.output, m_in + n_in)  # N is the output's last label: this ends in M, N
    if tuple(want) == tuple(op.inputs) and out == op.output:
        return None
    moved = sum(_prod(t.shape) for t, labs, w in zip(types, op.inputs, want) if labs != w)
    moved += _prod(op.type.shape) if out != op.output else 0
    flops = 2 * _prod(st.sizes.values())
    if flops < min_flops * moved:
        return None
    return tuple(want), out


def _tc_gemm(op: Einsum, types: list[TensorType]):
    """``(step fields, contracted labels, tiled M label, tiled N label)`` of a two-operand float16 or
    bfloat16 GEMM-like step; None for any other step."""
    if op.type.dtype not in ("float16", "bfloat16") or len(op.operands) != 2:
        return None
    st = _step(op, types)
    g = gemm_groups(st)
    if g is None or classify(st) != "gemm":
        return None
    _, M, N, K = g
    return st, K, _pick_inner(M, st), N[-1]


def _wmma_step(op: Einsum, types: list[TensorType]):
    """``(step fields, M label, N label, K label)`` of a float16/bfloat16 contraction the WMMA rule
    takes as it is written, extents aside; None for any other step."""
    g = _tc_gemm(op, types)
    if g is None:
        return None
    st, K, m_in, n_in = g
    k = inner_k(op.inputs, K)
    if k is None or op.output[-2:] != m_in + n_in:
        return None
    for labs in op.inputs:
        if set(labs[-2:]) != {m_in if m_in in labs else n_in, k}:
            return None
    return st, m_in, n_in, k


def padding(op: Einsum, types: list[TensorType]) -> dict:
    """``{label: padded extent}`` for a float16/bfloat16 contraction whose M, N or K extent (not a
    multiple of 16) alone keeps it off the tensor cores (``bsd,vd->bsv`` with a 50257-word
    vocabulary, K = 1000); empty otherwise.  ``lower(gpu=True)`` then reads each operand holding
    such a label through a padded copy (clamped reads, zeros past the end of K), which the WMMA rule
    computes straight into its shared tiles, and drops the extra rows or columns when it converts
    the result."""
    w = _wmma_step(op, types)
    if w is None:
        return {}
    st, m_in, n_in, k = w
    pad = {c: _padded(st.sizes[c]) for c in (m_in, n_in) if st.sizes[c] % FRAG}
    if st.sizes[k] % FRAG:  # to whole 32-deep K tiles (16 when K is under 16)
        pad[k] = -(-st.sizes[k] // 32) * 32 if st.sizes[k] > FRAG else FRAG
    return pad


def split_k(op: Einsum, types: list[TensorType]) -> int:
    """How many slices of K a float16/bfloat16 contraction on the tensor cores computes as a batch
    of its own (1: none).  A long K over few output tiles (``ik,kj->ij`` at 64 x 65536 x 64: one
    block of two warps for 132 SMs, the float32 SIMT rule splits it 128 ways) is cut into ``S``
    slices (whole 32-deep K tiles, at least 512 deep with the other contracted labels) until every
    SM has a tile (the SIMT rule's 256-thread blocks aim at two an SM; several 128-thread WMMA
    blocks fit one, and 256 tiles of 128 x 128 are one wave); ``lower(gpu=True)`` then computes
    ``S`` float32 partial results and their sum (converted) as a second kernel.  Extents the WMMA
    rule cannot take as they are (``padding``) are not split."""
    w = _wmma_step(op, types)
    if w is None or padding(op, types):
        return 1
    st, m_in, n_in, k = w
    a, b = op.inputs if m_in in op.inputs[0] else op.inputs[::-1]
    try:
        BM, BN = _plan(st.sizes[m_in], st.sizes[n_in], st.sizes[k], a[-1] == k, b[-1] == k)[:2]
    except ValueError:  # no tile fits: not a tensor-core step
        return 1
    tiles = _prod(st.sizes[c] for c in op.output if c not in (m_in, n_in))
    tiles *= -(-st.sizes[m_in] // BM) * -(-st.sizes[n_in] // BN)
    S, K, Ktot = 1, st.sizes[k], _prod(st.sizes[c] for c in st.red_labels)  # (others: serial loops)
    while tiles * S < NUM_SM and K % (S * 2 * 32) == 0 and Ktot // (S * 2) >= 512:
        S *= 2
    return S


def _padded(n: int) -> int:
    """``n`` rounded up to a whole block tile (128, or the power of two above a smaller ``n``, at
    least 16): to 16 alone, 1000 became 1008 = 63 x 16, whose only tile was 16 x 16, one warp."""
    t = 128 if n >= 128 else max(FRAG, 1 << (n - 1).bit_length())
    return -(-n // t) * t


def _permute(name: str, src: str, labels: str, dst: str, t: TensorType) -> Einsum:
    shape = tuple(t.shape[labels.index(c)] for c in dst)
    return Einsum(name, (src,), (labels,), dst, TensorType(shape, t.dtype))


def for_tensor_cores(prog: Program) -> Program:
    """``prog`` with the float16/bfloat16 contractions that only their layout keeps off the tensor
    cores rewritten around permutations (see the module docstring)."""
    from . import schedules_gpu

    # the GEMM knob ``tc_layout`` (fuzzer, sweeps): True rewrites whatever the work, False never
    forced = (schedules_gpu.GEMM_OVERRIDE or {}).get("tc_layout")
    if not ENABLED or forced is False:
        return prog
    min_flops = 0 if forced else MIN_FLOPS_PER_MOVED
    env = {v.name: v.type for v in prog.inputs}
    for op in prog.body:
        env[op.result] = op.type
    taken = set(env)

    def fresh(base: str) -> str:
        i = 0
        while f"{base}_tc{i}" in taken:
            i += 1
        taken.add(f"{base}_tc{i}")
        return f"{base}_tc{i}"

    body, changed = [], False
    for op in prog.body:
        plan = layouts(op, [env[o] for o in op.operands], min_flops) if isinstance(op, Einsum) else None
        if plan is None:
            body.append(op)
            continue
        want, out = plan
        operands = []
        for o, labs, w in zip(op.operands, op.inputs, want):
            if labs == w:
                operands.append(o)
                continue
            p = _permute(fresh(op.result), o, labs, w, env[o])
            body.append(p)
            operands.append(p.result)
        if out == op.output:
            body.append(Einsum(op.result, tuple(operands), want, out, op.type))
        else:
            shape = tuple(op.type.shape[op.output.index(c)] for c in out)
            mid = Einsum(fresh(op.result), tuple(operands), want, out, TensorType(shape, op.type.dtype))
            body.append(mid)
            body.append(_permute(op.result, mid.result, out, op.output, mid.type))
        changed = True
    return prog.replace(body=tuple(body)) if changed else prog
