"""Lowering: an einc ``Program`` -> one TVM ``PrimFunc`` ``main(inputs..., outputs...)``.

Choice: ONE PrimFunc built by ``te.create_prim_func`` over every step, not Relax.  Each step is a
TE compute (a named block); intermediates become buffers TVM allocates inside ``main``.  A call is
one packed-function call with no VM, no per-step dispatch and no Python in between, the schedules
see every block of the program at once, and the exported ``.so`` is loadable by TVM's runtime
alone.  Relax would add a VM and a per-call dispatch for nothing einc needs (shapes are static).

Semantics follow ``numpy.einsum`` step by step (``ir.interp`` is the oracle):

* every operand is converted to the step's result dtype before multiplying (numpy casts inputs);
* ``bool``: product is logical AND, sum is logical OR (numpy's ``add`` on bools), computed on 0/1
  bytes (``uint8``: AND is ``*``, OR is ``max``) because TVM cannot vectorise ``bool`` buffers;
* signed integers multiply and add in the unsigned type of the same width and are reinterpreted at
  the end: the bits are numpy's two's-complement wrap-around, without LLVM's signed-overflow UB;
* for CUDA (``lower(..., gpu=True)``) 8/16-bit integers and bools compute in ``uint32`` instead and
  narrow at the end: the same bits (wrap-around modulo 2^8 or 2^16 is the image of wrap-around modulo
  2^32; OR of 0/1 is their max), and 32-bit values have warp shuffles, so their reductions run
  across threads (TVM's shared-memory tree for narrow ints lacks warp syncs: a single thread summed
  a whole ``int8 ij->``);
* ``float16`` accumulates in ``float32`` (as numpy's einsum inner loops do) and rounds at the end;
* ``bfloat16`` is stored as its ``uint16`` bit pattern (numpy has no native bfloat16 for DLPack);
  steps compute in ``float32`` and round to nearest even, like ``ir.interp``;
* complex dtypes raise ``Unsupported`` (TVM has no complex type; ``einc.kernel`` compiles a program's
  real form, ``einc.ir.realify``);
* a repeated label indexes all its axes with one variable (diagonal); a size-1 axis whose label is
  larger elsewhere is indexed with 0 (broadcast);
* zero-size values are never compiled: ``einc.kernel`` answers those without TVM.

The lowering also returns a ``StepInfo`` per step (labels, sizes, block names, shape class) for the
schedules in ``schedules_cpu``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from einc.errors import Unsupported
from einc.ir.nodes import Cast, Einsum, Program, einsum_sizes
from einc.ir.types import TensorType

from ._tvm import te, tirx

#: einc dtype -> the dtype of its buffer in TVM (bfloat16 travels as raw bits)
STORAGE = {"bfloat16": "uint16"}
UNSUPPORTED_DTYPES = ("complex64", "complex128")
_UNSIGNED = {"int8": "uint8", "int16": "uint16", "int32": "uint32", "int64": "uint64"}


def storage_dtype(dtype: str) -> str:
    return STORAGE.get(dtype, dtype)


#: result dtypes a GPU step computes in uint32 (see the module docstring)
GPU_WIDENED = ("bool", "int8", "uint8", "int16", "uint16")


def compute_dtype(dtype: str, gpu: bool = False) -> str:
    """The dtype a step of result ``dtype`` multiplies and accumulates in (``gpu``: for CUDA)."""
    if dtype in ("float16", "bfloat16"):
        return "float32"
    if gpu and dtype in GPU_WIDENED:
        return "uint32"
    if dtype == "bool":
        return "uint8"  # 0/1 bytes: product = AND, max = OR; TVM cannot vectorise i1 buffers
    return _UNSIGNED.get(dtype, dtype)


@dataclass
class StepInfo:
    """What the scheduler needs to know about one lowered step."""

    index: int
    kind: str  # "einsum" | "cast" | "copy"
    block: str  # the main block (the reduction for einsums)
    result: str
    out_labels: str = ""
    red_labels: str = ""
    operand_labels: tuple[str, ...] = ()
    operand_names: tuple[str, ...] = ()  # the TE tensors' names (= the PrimFunc buffers they read)
    operand_shapes: tuple[tuple[int, ...], ...] = ()
    sizes: dict = field(default_factory=dict)
    dtype: str = "float32"  # einc result dtype
    acc_dtype: str = "float32"
    convert_block: str | None = None  # block converting acc dtype -> storage dtype
    convert_inlined: bool = False  # the schedule computed it inside the main block's tile copy
    shape_class: str = ""  # filled by the scheduler's classifier
    gemm: object = None  # schedules_cpu.GemmPlan for GEMM-like steps
    padded: dict = field(default_factory=dict)  # label -> padded extent of the accumulator
    pack_block: str | None = None  # block packing the GEMM's B operand into panels
    pack_a_block: str | None = None  # block packing its A operand into MR-row panels
    # GPU: buffer read -> the product block that computes it into this GEMM's shared K tiles
    tile_products: dict = field(default_factory=dict)
    #: GPU tensor cores: operand copies (padded: ``tc_layout.padding``; K sliced: ``split_k``) that
    #: the WMMA rule computes straight into its shared tiles (block = buffer name)
    view_blocks: set = field(default_factory=set)
    split_k: int = 1  # GPU tensor cores: K slices computed as a batch, summed by ``convert_block``

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.sizes[c] for c in self.out_labels)

    @property
    def flops(self) -> int:
        n = 1
        for c in set(self.out_labels + self.red_labels):
            n *= self.sizes[c]
        return n * max(1, len(self.operand_labels))


@dataclass
class Lowered:
    func: object  # tirx.PrimFunc, unscheduled
    steps: list[StepInfo]
    in_types: list[TensorType]
    out_types: list[TensorType]


def check_supported(prog: Program) -> None:
    for name, t in prog.types().items():
        if t.dtype in UNSUPPORTED_DTYPES:
            raise Unsupported(f"value {name!r} has dtype {t.dtype}: TVM has no complex numbers; "
                              "lower the program's real form (einc.ir.realify), as einc.compile does")


#: tests set this to lower every program with 64-bit indices (the path a value over 2**31 - 1
#: elements takes), so the schedules are checked on it at sizes that fit a test
FORCE_INT64 = False
#: the most elements a buffer may have for 32-bit indices: 2**31 - 1 less room for the last tile
#: of a loop rounded up past a buffer's end (those indices are computed, then masked)
INT32_ELEMENTS = 2**31 - 1 - 2**20


def needs_int64(tensors) -> bool:
    """Index with 64-bit integers: some tensor of the lowered function (the values, and the padded
    copies tensor cores get) has more elements than 32-bit indices reach.  (With 32-bit indices a
    50000 x 50000 transpose failed deep in TVM's codegen: "Literal value 2500000000 exceeds range
    of int32".)  The rest keep 32-bit indices, which a GPU computes with half the instructions."""
    if FORCE_INT64:
        return True
    seen, todo = set(), [t.op for t in tensors]  # by operation: == on a 0-d te.Tensor is an error
    while todo:
        op = todo.pop()
        if op in seen:
            continue
        seen.add(op)
        if any(math.prod(int(d) for d in op.output(i).shape) > INT32_ELEMENTS for i in range(op.num_outputs)):
            return True
        todo.extend(t.op for t in op.input_tensors)
    return False


def has_zero_size(prog: Program) -> bool:
    return any(t.size == 0 for t in prog.types().values())


# ---------------------------------------------------------------------------------------------
# scalar conversions


def _bf16_to_f32(x):
    u32 = tirx.Cast("uint32", x)
    return tirx.reinterpret("float32", tirx.shift_left(u32, tirx.const(16, "uint32")))


def _f32_to_bf16(x):
    """Round a float32 to bfloat16 bits, to nearest even; NaN stays a (quiet) NaN."""
    u = tirx.reinterpret("uint32", x)
    one = tirx.const(1, "uint32")
    lsb = tirx.bitwise_and(tirx.shift_right(u, tirx.const(16, "uint32")), one)
    rounded = tirx.shift_right(u + tirx.const(0x7FFF, "uint32") + lsb, tirx.const(16, "uint32"))
    nan = tirx.bitwise_or(tirx.shift_right(u, tirx.const(16, "uint32")), tirx.const(0x40, "uint32"))
    return tirx.Cast("uint16", tirx.Select(x != x, nan, rounded))


def convert(x, src: str, dst: str):
    """Value ``x`` held in the storage/compute dtype of einc dtype ``src`` -> compute dtype ``dst``.

    ``src``/``dst`` are TVM dtypes except that "bfloat16" means bits in uint16.
    """
    if src == dst:
        return x
    if src == "bfloat16":
        x, src = _bf16_to_f32(x), "float32"
        if dst == "float32":
            return x
    if dst == "bfloat16":
        if src != "float32":
            x = convert(x, src, "float32")
        return _f32_to_bf16(x)
    if dst == "bool":
        if src.startswith("float"):  # NaN -> True, as numpy (an ordered != would say False)
            return tirx.Or(x != tirx.const(0, src), tirx.isnan(x))
        return x != tirx.const(0, src)
    if src.startswith("float") and dst.startswith(("int", "uint")):
        return _float_to_int(x, src, dst)
    return tirx.Cast(dst, x)


# --- float -> integer casts (fuzz finding wrong_result-run-190a5a7daf) -----------------------
# LLVM's fptosi/fptoui give poison outside the destination's range (a negative float to uint32
# gave 254).  numpy on x86-64 runs C casts, i.e. cvttss2si/cvttsd2si: truncate toward zero into a
# 32- or 64-bit signed integer, NaN/inf/out of range giving INT_MIN ("integer indefinite"); then
# the integer wraps to the destination width.  Measured with numpy 2 on this machine:
#   int8, int16, uint8, uint16, int32  via int32;   int64, uint32  via int64;
#   uint64: x >= 2**63 ? int64(x - 2**63) ^ 2**63 : int64(x)
# einc reproduces exactly that.  Known difference: for uint32 with x outside [-2**31, 2**32) or NaN,
# numpy's SIMD loop (arrays of >= 16 contiguous elements) gives 0 or 2**31 while its scalar loop
# gives the int64 wrap einc gives, so numpy disagrees with itself there.  Also, an int32 einsum
# computes in uint32 (see compute_dtype), so a float operand out of int32 range converts by the
# uint32 rule; in range, every rule is the plain truncation numpy gives.


def _trunc_indefinite(x, src: str, bits: int):
    """``x`` (float) truncated toward zero into int``bits``; NaN/inf/out of range -> INT_MIN."""
    if src != "float64" and src != "float32":
        x, src = tirx.Cast("float32", x), "float32"  # float16: exact in float32
    lo, hi = tirx.const(-2.0 ** (bits - 1), src), tirx.const(2.0 ** (bits - 1), src)
    ok = tirx.And(x >= lo, x < hi)  # False for NaN
    idt = f"int{bits}"
    # the Cast only ever sees in-range values, so LLVM has no poison to exploit
    return tirx.Select(ok, tirx.Cast(idt, tirx.Select(ok, x, tirx.const(0, src))),
                       tirx.const(-(2 ** (bits - 1)), idt))


def _float_to_int(x, src: str, dst: str):
    if dst == "uint64":
        if src != "float64" and src != "float32":
            x, src = tirx.Cast("float32", x), "float32"
        top = tirx.const(2.0 ** 63, src)
        low = tirx.Cast("uint64", _trunc_indefinite(x, src, 64))
        high = tirx.bitwise_xor(tirx.Cast("uint64", _trunc_indefinite(x - top, src, 64)),
                                tirx.const(1 << 63, "uint64"))
        return tirx.Select(x >= top, high, low)
    bits = 64 if dst in ("int64", "uint32") else 32
    return tirx.Cast(dst, _trunc_indefinite(x, src, bits))


def _zero(dtype):
    return tirx.const(False, "bool") if dtype == "bool" else tirx.const(0, dtype)


# ---------------------------------------------------------------------------------------------


def _pack_compute(op: Einsum, j: int, T, t: TensorType, cdt: str, lab: str, r: int, red: str, sizes, name: str):
    """Operand ``j`` packed as [other labels.., lab/r, contracted labels.., r] in the compute dtype
    (zero padded past ``lab``'s extent): B's panels (``lab`` = n), or A's (``lab`` = m)."""
    labs = op.inputs[j]
    ks = [c for c in red if c in labs]
    others = [c for c in labs if c != lab and c not in ks]
    N = sizes[lab]
    no = -(-N // r)
    shape = tuple(sizes[c] for c in others) + (no,) + tuple(sizes[c] for c in ks) + (r,)
    src = _src_tag(t.dtype)

    def body(*iv):
        env = dict(zip(others, iv[:len(others)]))
        env.update(zip(ks, iv[len(others) + 1:-1]))
        nv = iv[len(others)] * r + iv[-1]
        env[lab] = tirx.min(nv, N - 1) if N % r else nv  # the padded tail reads a valid element
        v = convert(T[tuple(env[c] for c in labs)], src, cdt)
        return tirx.Select(nv < N, v, _zero(cdt)) if N % r else v

    P = te.compute(shape, body, name=name)
    return P, others, ks


def _einsum_compute(op: Einsum, tensors, types, name: str, step: StepInfo, gemm=None, gpu=False):
    sizes = einsum_sizes(op, types)
    out_dt = op.type.dtype
    cdt = compute_dtype(out_dt, gpu)
    red = op.contracted()
    # a permutation or diagonal moves values, it computes nothing: no wider accumulator and no
    # conversion after it (an int8 transpose wrote a uint8 copy and converted it in a second pass;
    # bfloat16 went through float32).  bool keeps its uint8 compute type (TVM cannot vectorise i1)
    move = len(tensors) == 1 and not red and types[0].dtype == out_dt and out_dt != "bool"
    if move:
        cdt = storage_dtype(out_dt)
    step.out_labels, step.red_labels = op.output, red
    step.operand_labels = tuple(op.inputs)
    step.operand_names = tuple(t.op.name for t in tensors)
    step.operand_shapes = tuple(t.shape for t in types)
    step.sizes = dict(sizes)
    step.dtype, step.acc_dtype = out_dt, cdt

    packed = {}  # operand index -> (packed tensor, its other labels, its contracted labels, label, r)
    if gemm is not None and gemm.pack:
        b = gemm.b_operand
        packed[b] = _pack_compute(op, b, tensors[b], types[b], cdt, gemm.n, gemm.nr, red, sizes, f"{name}__pack") + \
            (gemm.n, gemm.nr)
        step.pack_block = f"{name}__pack"
    if gemm is not None and gemm.pack_a:
        a = 1 - gemm.b_operand
        packed[a] = _pack_compute(op, a, tensors[a], types[a], cdt, gemm.m, gemm.mr, red, sizes,
                                  f"{name}__pack_a") + (gemm.m, gemm.mr)
        step.pack_a_block = f"{name}__pack_a"
    step.gemm = gemm
    # a GEMM whose M or N is not a multiple of the register tile computes a padded accumulator
    # (clamped, in-bounds reads; the extra rows/columns are dropped by the final block, which the CPU
    # schedule computes in each tile's copy-out), so the micro-kernel stays vectorised instead of
    # predicating every element
    pad = {}
    if gemm is not None:
        for lab, r in ((gemm.n, gemm.nr), (gemm.m, gemm.mr)):
            if lab is not None and sizes[lab] % r and not (lab == gemm.m and gemm.m_tail):
                pad[lab] = -(-sizes[lab] // r) * r
    padded_in = {}  # operand index -> its padded copy (GPU tensor cores, ``tc_layout.padding``)
    if gpu:
        from .tc_layout import padding

        pad = padding(op, types)
        for j, (T, labs) in enumerate(zip(tensors, op.inputs)):
            if any(c in pad for c in labs):
                padded_in[j] = _padded_copy(T, labs, sizes, pad, set(red), f"{name}__pad{j}")
                step.view_blocks.add(padded_in[j].op.name)
        if not pad:
            from .tc_layout import split_k

            S = split_k(op, types)
            if S > 1:
                return _split_k_compute(op, tensors, types, name, step, S)
    step.padded = dict(pad)
    # (a padded contracted extent reads zeros past its end: ``_padded_copy``)
    raxes = {c: te.reduce_axis((0, pad.get(c, sizes[c])), name=f"r_{c}") for c in red}

    def body(*ovars):
        env = dict(zip(op.output, ovars))
        env.update({c: ax.var for c, ax in raxes.items()})
        clamp = {c: tirx.min(env[c], sizes[c] - 1) for c in pad}
        terms = []
        for j, (T, labs, t) in enumerate(zip(tensors, op.inputs, types)):
            if j in packed:
                P, others, ks, lab, r = packed[j]
                nv = env[lab]
                idx = [env[c] for c in others] + [tirx.floordiv(nv, r)] + [env[c] for c in ks] + \
                    [tirx.floormod(nv, r)]
                terms.append(P[tuple(idx)])
                continue
            if j in padded_in:
                v = padded_in[j][tuple(env[c] for c in labs)]
                terms.append(convert(v, _src_tag(t.dtype), cdt))
                continue
            idx = [clamp.get(c, env[c]) if (n != 1 or sizes[c] == 1) else 0 for c, n in zip(labs, t.shape)]
            v = T[tuple(idx)] if idx else T[()]
            terms.append(v if move else convert(v, _src_tag(t.dtype), cdt))
        if not terms:
            expr = _zero(cdt)
        else:
            expr = terms[0]
            for x in terms[1:]:
                expr = expr * x
        if not raxes:
            return expr
        axes = list(raxes.values())
        return te.max(expr, axis=axes) if out_dt == "bool" else te.sum(expr, axis=axes)

    shape = tuple(sizes[c] for c in op.output)
    needs_convert = storage_dtype(out_dt) != cdt or bool(pad)
    acc_name = f"{name}__acc" if needs_convert else name
    acc = te.compute(tuple(pad.get(c, sizes[c]) for c in op.output), body, name=acc_name)
    step.block = acc_name
    if not needs_convert:
        return acc
    step.convert_block = name
    final = te.compute(shape, lambda *i: convert(acc[i] if i else acc[()], cdt, _dst_tag(out_dt)), name=name)
    return final


def _split_k_compute(op: Einsum, tensors, types, name: str, step: StepInfo, S: int):
    """A float16/bfloat16 contraction as ``S`` slices of its K label (``tc_layout.split_k``): views
    of the operands with a leading slice label (``A[i, s*K/S + k]``: affine, computed straight into
    the WMMA shared tiles), a batched contraction into float32 partials over them, and their sum,
    pairwise and converted to the storage dtype, as a map over the result."""
    from .tc_layout import inner_k

    sizes = einsum_sizes(op, types)
    red = op.contracted()
    k = inner_k(op.inputs, red)
    used = set("".join(op.inputs) + op.output)
    s = next(c for c in "SZYXWVUTRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba" if c not in used)
    K1 = sizes[k] // S
    sub = {**sizes, k: K1, s: S}
    views = []
    for j, (T, labs) in enumerate(zip(tensors, op.inputs)):
        views.append(te.compute((S,) + tuple(sub[c] for c in labs), _slice_view(T, labs, k, K1),
                                name=f"{name}__split{j}"))
        step.view_blocks.add(views[-1].op.name)
    raxes = {c: te.reduce_axis((0, sub[c]), name=f"r_{c}") for c in red}

    def body(sv, *ovars):
        env = {**dict(zip(op.output, ovars)), **{c: ax.var for c, ax in raxes.items()}}
        a, b = (convert(V[(sv, *(env[c] for c in labs))], _src_tag(t.dtype), "float32")
                for V, labs, t in zip(views, op.inputs, types))
        return te.sum(a * b, axis=list(raxes.values()))

    shape = tuple(sizes[c] for c in op.output)
    acc = te.compute((S,) + shape, body, name=f"{name}__acc")

    def total(*i):
        terms = [acc[(j, *i)] for j in range(S)]
        while len(terms) > 1:  # pairwise: S - 1 additions, log2(S) deep
            terms = [terms[j] + terms[j + 1] if j + 1 < len(terms) else terms[j] for j in range(0, len(terms), 2)]
        return convert(terms[0], "float32", _dst_tag(op.type.dtype))

    step.out_labels, step.red_labels = s + op.output, red
    step.operand_labels = tuple(s + labs for labs in op.inputs)
    step.operand_names = tuple(V.op.name for V in views)
    step.operand_shapes = tuple(tuple(int(d) for d in V.shape) for V in views)
    step.sizes = sub
    step.dtype, step.acc_dtype = op.type.dtype, "float32"
    step.block, step.convert_block, step.split_k = acc.op.name, name, S
    return te.compute(shape, total, name=name)


def _slice_view(T, labs: str, k: str, K1: int):
    """``(s, *idx) -> T[idx]`` with label ``k`` at ``s * K1 + idx[k]``: slice ``s`` of ``k``."""
    def view(sv, *iv):
        return T[tuple(sv * K1 + v if c == k else v for v, c in zip(iv, labs))]

    return view


def _padded_copy(T, labs: str, sizes: dict, pad: dict, contracted: set, name: str):
    """``T`` over the padded extents of ``pad``.  Past the end of an output label it repeats the last
    row (in bounds; the results those rows feed are dropped); past the end of a contracted label it
    is zero in every operand, so the extra terms add nothing (repeating the last value would count
    it again, and zero times a repeated inf is nan)."""
    def body(*iv):
        v = T[tuple(tirx.min(v, sizes[c] - 1) if c in pad else v for v, c in zip(iv, labs))]
        past = [i < sizes[c] for i, c in zip(iv, labs) if c in pad and c in contracted]
        return tirx.Select(tirx.all(*past), v, tirx.const(0, T.dtype)) if past else v

    return te.compute(tuple(pad.get(c, sizes[c]) for c in labs), body, name=name)


def _src_tag(dtype: str) -> str:
    return "bfloat16" if dtype == "bfloat16" else dtype


def _dst_tag(dtype: str) -> str:
    return "bfloat16" if dtype == "bfloat16" else storage_dtype(dtype)


def _cast_compute(op: Cast, T, src: TensorType, name: str):
    shape = src.shape
    return te.compute(shape, lambda *i: convert(T[i] if i else T[()], _src_tag(src.dtype), _dst_tag(op.type.dtype)),
                      name=name)


def lower(prog: Program, plans: dict | None = None, *, gpu: bool = False) -> Lowered:
    """The unscheduled PrimFunc ``main(inputs..., outputs...)`` of ``prog`` and its step infos.

    ``plans`` (step index -> ``schedules_cpu.GemmPlan``) adds the packing computes GEMM-like steps
    want; without it the PrimFunc is the plain einsum of every step.  ``gpu``: for CUDA (narrow
    integers compute in ``uint32``, see ``compute_dtype``).
    """
    plans = plans or {}
    check_supported(prog)
    env_t = {v.name: v.type for v in prog.inputs}
    env: dict[str, object] = {}
    placeholders = []
    for v in prog.inputs:
        ph = te.placeholder(v.type.shape, storage_dtype(v.type.dtype), name=v.name)
        env[v.name] = ph
        placeholders.append(ph)
    steps: list[StepInfo] = []
    for i, op in enumerate(prog.body):
        types = [env_t[o] for o in op.operands]
        if isinstance(op, Einsum):
            st = StepInfo(i, "einsum", op.result, op.result)
            T = _einsum_compute(op, [env[o] for o in op.operands], types, op.result, st, plans.get(i), gpu)
        elif isinstance(op, Cast):
            st = StepInfo(i, "cast", op.result, op.result, out_labels=_labels(len(op.type.shape)),
                          operand_labels=(_labels(len(op.type.shape)),), operand_shapes=(types[0].shape,),
                          sizes=dict(zip(_labels(len(op.type.shape)), op.type.shape)), dtype=op.type.dtype,
                          acc_dtype=storage_dtype(op.type.dtype))
            T = _cast_compute(op, env[op.operand], types[0], op.result)
        else:
            raise Unsupported(f"op {type(op).__name__} cannot be lowered to TVM")
        env[op.result] = T
        env_t[op.result] = op.type
        steps.append(st)
    # outputs: a fresh tensor per output position (an input or a repeated output gets a copy)
    outs, seen = [], set(v.name for v in prog.inputs)
    for j, o in enumerate(prog.outputs):
        T = env[o]
        if o in seen:
            t = env_t[o]
            labs = _labels(len(t.shape))
            name = f"{o}__out{j}"
            T = te.compute(t.shape, _identity(T), name=name)
            steps.append(StepInfo(len(steps), "copy", name, o, out_labels=labs, operand_labels=(labs,),
                                  operand_shapes=(t.shape,), sizes=dict(zip(labs, t.shape)),
                                  dtype=t.dtype, acc_dtype=storage_dtype(t.dtype)))
        seen.add(o)
        outs.append(T)
    func = te.create_prim_func(placeholders + outs, index_dtype_override="int64" if needs_int64(placeholders + outs) else None)
    return Lowered(func, steps, [v.type for v in prog.inputs], [env_t[o] for o in prog.outputs])


def _identity(T):
    return lambda *i: T[i] if i else T[()]


def _labels(n: int) -> str:
    return "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]
