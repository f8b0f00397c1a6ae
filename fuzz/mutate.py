"""Mutators: program edits and pipeline edits, drawn from weighted tables.

Each program mutator is ``f(prog, rng) -> Program | None`` (``None``: not applicable); ``mutate_program``
retypes and verifies the result and redraws until one is valid, so every mutated program verifies.
Pipeline mutators edit the einc pass tuple (as pass instances, through ``einc.ir.passes``), the
TVM TIR pass list, the schedule primitive list and the PassContext config.

The schedule of mutation follows Tzer: a campaign mutates programs until ``N`` mutations in a row add
no feedback, then switches to mutating pipelines (and back), see ``Interleave``.
"""
from __future__ import annotations

import random
from dataclasses import replace

from einc.ir.nodes import LABELS, Cast, Einsum, Program, Value
from einc.ir.types import TensorType
from einc.ir.verify import verify

from . import space
from .case import Case, FuzzPipeline
from .gen import SIZES, pick_dtype, random_program, retype, small_enough

# ---------------------------------------------------------------------------------------------
# helpers


def _einsum_indices(prog: Program) -> list[int]:
    return [i for i, op in enumerate(prog.body) if isinstance(op, Einsum)]


def _pick_einsum(prog: Program, rng, where=None):
    """``(index, op)`` of a random einsum step (one ``where(op)`` accepts), or None when there is none."""
    idx = [i for i in _einsum_indices(prog) if where is None or where(prog.body[i])]
    if not idx:
        return None
    i = rng.choice(idx)
    return i, prog.body[i]


def _set_op(prog: Program, i: int, op) -> Program:
    body = list(prog.body)
    body[i] = op
    return prog.replace(body=tuple(body))


def _fresh_label(used: str, rng: random.Random) -> str | None:
    free = [c for c in LABELS if c not in used]
    return rng.choice(free) if free else None


def dead_code_elim(prog: Program) -> Program:
    live = set(prog.outputs)
    body = []
    for op in reversed(prog.body):
        if op.result in live:
            body.append(op)
            live.update(op.operands)
    ins = tuple(v for v in prog.inputs if v.name in live)
    return prog.replace(inputs=ins, body=tuple(reversed(body)))


def relabel(prog: Program, rng: random.Random) -> Program:
    """Metamorphic: rename every einsum's labels by a random bijection (same meaning)."""
    body = list(prog.body)
    for i in _einsum_indices(prog):
        op = body[i]
        used = sorted(set("".join(op.inputs)))
        target = rng.sample(LABELS, len(used))
        m = str.maketrans(dict(zip(used, target)))
        body[i] = replace(op, inputs=tuple(x.translate(m) for x in op.inputs), output=op.output.translate(m))
    return prog.replace(body=tuple(body))


def permute_operands(prog: Program, rng: random.Random) -> Program:
    """Metamorphic: shuffle the operand order of every einsum (same meaning; float sums may reassociate)."""
    body = list(prog.body)
    for i in _einsum_indices(prog):
        op = body[i]
        order = list(range(op.arity))
        rng.shuffle(order)
        body[i] = replace(op, operands=tuple(op.operands[k] for k in order), inputs=tuple(op.inputs[k] for k in order))
    return prog.replace(body=tuple(body))


# ---------------------------------------------------------------------------------------------
# program mutators


def m_rename_label(prog, rng):
    picked = _pick_einsum(prog, rng)
    if picked is None:
        return None
    i, op = picked
    used = "".join(op.inputs)
    if not used:
        return None
    old = rng.choice(used)
    new = _fresh_label(used + op.output, rng)
    if new is None:
        return None
    m = str.maketrans(old, new)
    return _set_op(prog, i, replace(op, inputs=tuple(x.translate(m) for x in op.inputs), output=op.output.translate(m)))


def m_merge_labels(prog, rng):
    """Two labels of one einsum become one (a diagonal, or a broadcast when a size is 1)."""
    picked = _pick_einsum(prog, rng)
    if picked is None:
        return None
    _, op = picked
    used = sorted(set("".join(op.inputs)))
    if len(used) < 2:
        return None
    a, b = rng.sample(used, 2)
    i = prog.body.index(op)
    out = op.output.replace(b, a) if a not in op.output else op.output.replace(b, "")
    return _set_op(prog, i, replace(op, inputs=tuple(x.replace(b, a) for x in op.inputs), output=out))


def m_repeat_label(prog, rng):
    """Make two equal-size axes of one operand share a label (a diagonal or a trace)."""
    picked = _pick_einsum(prog, rng)
    if picked is None:
        return None
    i, op = picked
    types = prog.types()
    k = rng.randrange(op.arity) if op.arity else None
    if k is None:
        return None
    labs, shape = op.inputs[k], types[op.operands[k]].shape
    pairs = [(p, q) for p in range(len(labs)) for q in range(p + 1, len(labs)) if shape[p] == shape[q] and labs[p] != labs[q]]
    if not pairs:
        return None
    p, q = rng.choice(pairs)
    gone = labs[q]
    new_labs = labs[:q] + labs[p] + labs[q + 1:]
    inputs = list(op.inputs)
    inputs[k] = new_labs
    still = "".join(inputs)
    out = op.output if gone in still else op.output.replace(gone, "")
    return _set_op(prog, i, replace(op, inputs=tuple(inputs), output=out))


def m_toggle_output_label(prog, rng):
    picked = _pick_einsum(prog, rng)
    if picked is None:
        return None
    i, op = picked
    used = sorted(set("".join(op.inputs)))
    if op.output and (rng.random() < 0.5 or len(op.output) == len(used)):
        c = rng.choice(op.output)
        out = op.output.replace(c, "")
    else:
        free = [c for c in used if c not in op.output]
        if not free:
            return None
        c = rng.choice(free)
        pos = rng.randint(0, len(op.output))
        out = op.output[:pos] + c + op.output[pos:]
    return _set_op(prog, i, replace(op, output=out))


def m_transpose_output(prog, rng):
    picked = _pick_einsum(prog, rng, lambda o: len(o.output) > 1)
    if picked is None:
        return None
    i, op = picked
    out = list(op.output)
    rng.shuffle(out)
    return _set_op(prog, i, replace(op, output="".join(out)))


def m_swap_operands(prog, rng):
    picked = _pick_einsum(prog, rng, lambda o: o.arity > 1)
    if picked is None:
        return None
    i, op = picked
    a, b = rng.sample(range(op.arity), 2)
    ops, ins = list(op.operands), list(op.inputs)
    ops[a], ops[b] = ops[b], ops[a]
    ins[a], ins[b] = ins[b], ins[a]
    return _set_op(prog, i, replace(op, operands=tuple(ops), inputs=tuple(ins)))


def m_add_operand(prog, rng):
    """Add an operand to an einsum: a fresh input over some of its labels, or an existing value."""
    picked = _pick_einsum(prog, rng)
    if picked is None:
        return None
    i, op = picked
    types = prog.types()
    from einc.ir.nodes import einsum_sizes

    sizes = einsum_sizes(op, [types[o] for o in op.operands])
    used = list(sizes)
    rank = rng.randint(0, 3)
    labs = "".join(rng.choice(used) if used and rng.random() < 0.8 else (_fresh_label("".join(used), rng) or "z")
                   for _ in range(rank))
    shape = []
    for c in labs:
        if c not in sizes:
            sizes[c] = rng.choice(SIZES)
        shape.append(sizes[c])
    name = _fresh_name(prog, "x")
    dt = rng.choice([v.type.dtype for v in prog.inputs] or ["float32"])
    prog = prog.replace(inputs=prog.inputs + (Value(name, TensorType(tuple(shape), dt)),))
    pos = rng.randint(0, op.arity)
    op = replace(op, operands=op.operands[:pos] + (name,) + op.operands[pos:], inputs=op.inputs[:pos] + (labs,) + op.inputs[pos:])
    return _set_op(prog, i, op)


def m_remove_operand(prog, rng):
    picked = _pick_einsum(prog, rng, lambda o: o.arity > 1)
    if picked is None:
        return None
    i, op = picked
    k = rng.randrange(op.arity)
    inputs = op.inputs[:k] + op.inputs[k + 1:]
    left = "".join(inputs)
    out = "".join(c for c in op.output if c in left)
    prog = _set_op(prog, i, replace(op, operands=op.operands[:k] + op.operands[k + 1:], inputs=inputs, output=out))
    return dead_code_elim(prog)


def _fresh_name(prog: Program, prefix: str) -> str:
    names = set(prog.types())
    i = len(names)
    while f"{prefix}{i}" in names:
        i += 1
    return f"{prefix}{i}"


def m_resize_axis(prog, rng):
    """Change one input axis size; every label of that axis follows (through retype)."""
    cands = [(j, a) for j, v in enumerate(prog.inputs) for a in range(v.type.rank)]
    if not cands:
        return None
    j, a = rng.choice(cands)
    v = prog.inputs[j]
    old = v.type.shape[a]
    new = rng.choice([s for s in SIZES + (0, 9, 13, 32) if s != old] or [1])
    # the same label may sit on other inputs' axes too: resize every input axis carrying it, per use
    labels_of = _input_axis_labels(prog)
    group = {(j, a)}
    changed = True
    while changed:
        changed = False
        for (jj, aa), labs in labels_of.items():
            if (jj, aa) in group:
                continue
            if any(labs & labels_of.get(g, set()) for g in group) and prog.inputs[jj].type.shape[aa] == old:
                group.add((jj, aa))
                changed = True
    ins = list(prog.inputs)
    for jj, aa in group:
        t = ins[jj].type
        shape = list(t.shape)
        shape[aa] = new
        ins[jj] = Value(ins[jj].name, TensorType(tuple(shape), t.dtype))
    return prog.replace(inputs=tuple(ins))


def _input_axis_labels(prog: Program) -> dict:
    """(input index, axis) -> the set of (op index, label) it is read with (direct uses only)."""
    pos = {v.name: j for j, v in enumerate(prog.inputs)}
    out: dict = {}
    for i, op in enumerate(prog.body):
        if not isinstance(op, Einsum):
            continue
        for name, labs in zip(op.operands, op.inputs):
            if name in pos:
                for a, c in enumerate(labs):
                    out.setdefault((pos[name], a), set()).add((i, c))
    return out


def m_broadcast_axis(prog, rng):
    cands = [(j, a) for j, v in enumerate(prog.inputs) for a in range(v.type.rank) if v.type.shape[a] != 1]
    if not cands:
        return None
    j, a = rng.choice(cands)
    v = prog.inputs[j]
    shape = list(v.type.shape)
    shape[a] = 1
    ins = list(prog.inputs)
    ins[j] = Value(v.name, TensorType(tuple(shape), v.type.dtype))
    return prog.replace(inputs=tuple(ins))


def m_change_dtype(prog, rng):
    if rng.random() < 0.5 or not prog.inputs:
        dt = pick_dtype(rng)
        return prog.replace(inputs=tuple(Value(v.name, TensorType(v.type.shape, dt)) for v in prog.inputs))
    j = rng.randrange(len(prog.inputs))
    v = prog.inputs[j]
    ins = list(prog.inputs)
    ins[j] = Value(v.name, TensorType(v.type.shape, pick_dtype(rng)))
    return prog.replace(inputs=tuple(ins))


def m_add_cast(prog, rng):
    i = rng.randrange(len(prog.body))
    op = prog.body[i]
    name = _fresh_name(prog, "c")
    cast = Cast(name, op.result, TensorType(op.type.shape, pick_dtype(rng)))
    body = list(prog.body)
    body.insert(i + 1, cast)
    outs = tuple(name if o == op.result and rng.random() < 0.7 else o for o in prog.outputs)
    if outs == prog.outputs:
        outs = outs + (name,)
    return prog.replace(body=tuple(body), outputs=outs)


def m_add_step(prog, rng):
    """Append a new einsum over existing values (a chain, a fan-in or a reuse of an input)."""
    types = prog.types()
    names = list(types)
    k = rng.choice([1, 1, 2, 2, 3])
    operands = [rng.choice(names) for _ in range(k)]
    inputs = []
    pool = {}
    for o in operands:
        labs = ""
        for n in types[o].shape:
            fits = [c for c, s in pool.items() if s == n] if rng.random() < 0.7 else []
            c = rng.choice(fits) if fits else _fresh_label("".join(pool) + labs, rng)
            if c is None or (c in labs):
                c = _fresh_label("".join(pool) + labs, rng) or "Z"
            pool.setdefault(c, n)
            labs += c
        inputs.append(labs)
    seen = sorted(set("".join(inputs)))
    out = "".join(rng.sample(seen, rng.randint(0, len(seen))))
    op = Einsum(_fresh_name(prog, "t"), tuple(operands), tuple(inputs), out, TensorType((), "float32"))
    prog = prog.replace(body=prog.body + (op,), outputs=(op.result,) + tuple(o for o in prog.outputs if rng.random() < 0.3))
    return dead_code_elim(prog)


def m_split_step(prog, rng):
    """Split an n-ary einsum (n >= 3) into two steps: contract two operands first (same meaning)."""
    picked = _pick_einsum(prog, rng, lambda o: o.arity >= 3)
    if picked is None:
        return None
    i, op = picked
    a, b = sorted(rng.sample(range(op.arity), 2))
    rest = [k for k in range(op.arity) if k not in (a, b)]
    keep = set("".join(op.inputs[k] for k in rest)) | set(op.output)
    pair = op.inputs[a] + op.inputs[b]
    mid_out = "".join(dict.fromkeys(c for c in pair if c in keep))
    mid = Einsum(_fresh_name(prog, "s"), (op.operands[a], op.operands[b]), (op.inputs[a], op.inputs[b]), mid_out,
                 TensorType((), "float32"))
    new = replace(op, operands=(mid.result,) + tuple(op.operands[k] for k in rest),
                  inputs=(mid_out,) + tuple(op.inputs[k] for k in rest))
    body = list(prog.body)
    body[i:i + 1] = [mid, new]
    return prog.replace(body=tuple(body))


def m_merge_steps(prog, rng):
    """Inline an einsum used once into the einsum that uses it (same meaning)."""
    prods = {op.result: i for i, op in enumerate(prog.body) if isinstance(op, Einsum)}
    cands = []
    for j, op in enumerate(prog.body):
        if isinstance(op, Einsum):
            for k, o in enumerate(op.operands):
                if o in prods and prog.uses(o) == 1 and o not in prog.outputs:
                    cands.append((j, k))
    if not cands:
        return None
    j, k = rng.choice(cands)
    user = prog.body[j]
    i = prods[user.operands[k]]
    inner = prog.body[i]
    used_user = set("".join(user.inputs)) | set(user.output)
    m = dict(zip(inner.output, user.inputs[k]))
    if len(set(m.values())) != len(m):  # the user reads a diagonal of the inner result: keep it simple
        return None
    taken = set(used_user) | set(m.values())
    for c in inner.contracted():
        f = _fresh_label("".join(taken), rng)
        if f is None:
            return None
        m[c] = f
        taken.add(f)
    tr = str.maketrans(m)
    new = replace(user, operands=user.operands[:k] + inner.operands + user.operands[k + 1:],
                  inputs=user.inputs[:k] + tuple(x.translate(tr) for x in inner.inputs) + user.inputs[k + 1:])
    body = [op for n, op in enumerate(prog.body) if n != i]
    body[body.index(user)] = new
    return prog.replace(body=tuple(body))


def m_add_transpose(prog, rng):
    """Insert a pure permutation of a value (rank >= 2) and let one of its users read the permuted copy."""
    types = prog.types()
    users = [(i, k) for i, op in enumerate(prog.body) if isinstance(op, Einsum)
             for k, o in enumerate(op.operands) if types[o].rank >= 2]
    if not users:
        return None
    i, k = rng.choice(users)
    op = prog.body[i]
    src = op.operands[k]
    t = types[src]
    labs = "".join(LABELS[:t.rank])
    perm = list(labs)
    while "".join(perm) == labs:
        rng.shuffle(perm)
    perm = "".join(perm)
    name = _fresh_name(prog, "p")
    pstep = Einsum(name, (src,), (labs,), perm, TensorType(tuple(t.shape[labs.index(c)] for c in perm), t.dtype))
    # the user reads the permuted copy with its labels permuted the same way
    old = op.inputs[k]
    new_labs = "".join(old[labs.index(c)] for c in perm)
    user = replace(op, operands=op.operands[:k] + (name,) + op.operands[k + 1:],
                   inputs=op.inputs[:k] + (new_labs,) + op.inputs[k + 1:])
    body = list(prog.body)
    body[i] = user
    body.insert(i, pstep)
    return prog.replace(body=tuple(body))


def m_regenerate(prog, rng):
    return random_program(rng)


def m_relabel_all(prog, rng):
    return relabel(prog, rng)


PROGRAM_MUTATORS = {
    "rename_label": (m_rename_label, 3),
    "merge_labels": (m_merge_labels, 2),
    "repeat_label": (m_repeat_label, 3),
    "toggle_output_label": (m_toggle_output_label, 3),
    "transpose_output": (m_transpose_output, 3),
    "swap_operands": (m_swap_operands, 2),
    "add_operand": (m_add_operand, 2),
    "remove_operand": (m_remove_operand, 2),
    "resize_axis": (m_resize_axis, 4),
    "broadcast_axis": (m_broadcast_axis, 2),
    "change_dtype": (m_change_dtype, 3),
    "add_cast": (m_add_cast, 1),
    "add_step": (m_add_step, 2),
    "split_step": (m_split_step, 2),
    "merge_steps": (m_merge_steps, 2),
    "add_transpose": (m_add_transpose, 2),
    "relabel_all": (m_relabel_all, 1),
    "regenerate": (m_regenerate, 1),
}


def mutate_program(prog: Program, rng: random.Random, tries: int = 30) -> tuple[Program, str]:
    """A verified, small mutant of ``prog`` and the name of the mutator that made it."""
    names = list(PROGRAM_MUTATORS)
    weights = [PROGRAM_MUTATORS[n][1] for n in names]
    for _ in range(tries):
        name = rng.choices(names, weights=weights)[0]
        try:
            new = PROGRAM_MUTATORS[name][0](prog, rng)
            if new is None:
                continue
            new = verify(retype(new))
        except Exception:  # noqa: BLE001 - an invalid mutant is redrawn
            continue
        if new != prog and small_enough(new):
            return new, name
    return random_program(rng), "regenerate"


# ---------------------------------------------------------------------------------------------
# pipeline mutators


def _list_edit(items: tuple, rng: random.Random, new_item, max_len: int = 8) -> tuple:
    items = list(items)
    ops = ["insert"] * 3 + (["delete", "swap", "shuffle", "replace"] if items else [])
    if len(items) >= max_len:
        ops = [o for o in ops if o != "insert"] or ["delete"]
    op = rng.choice(ops)
    if op == "insert":
        items.insert(rng.randint(0, len(items)), new_item())
    elif op == "delete":
        items.pop(rng.randrange(len(items)))
    elif op == "swap" and len(items) > 1:
        a, b = rng.sample(range(len(items)), 2)
        items[a], items[b] = items[b], items[a]
    elif op == "shuffle":
        rng.shuffle(items)
    else:
        items[rng.randrange(len(items))] = new_item()
    return tuple(items)


def p_einc_passes(pl: FuzzPipeline, rng: random.Random) -> FuzzPipeline:
    return pl.replace(passes=space.mutate_einc_pipeline(pl.passes, rng))


def p_tir(pl, rng):
    return pl.replace(tir=_list_edit(pl.tir, rng, lambda: space.random_tir_pass(rng)))


def p_sched(pl, rng):
    return pl.replace(sched=_list_edit(pl.sched, rng, lambda: space.random_sched_prim(rng), max_len=10))


def p_config(pl, rng):
    return pl.replace(config=_list_edit(pl.config, rng, lambda: space.random_config(rng), max_len=4))


def p_oracle(pl, rng):
    return pl.replace(oracle=rng.choice(("interp", "interp", "relabel", "permute")))


def p_base(pl, rng):
    return pl.replace(base="none" if pl.base == "einc" else "einc")


def p_gpu_knobs(pl, rng):
    """Add a GEMM knob, change one knob's value, or drop one (``cuda-emu``)."""
    knobs = pl.knob_dict()
    free = [k for k in space.GPU_KNOBS if k not in knobs]
    op = rng.choice((["add", "add"] if free else []) + (["change", "drop"] if knobs else []))
    if op == "add":
        key = rng.choice(free)
        knobs[key] = rng.choice(space.GPU_KNOBS[key])
    elif op == "change":
        key = rng.choice(sorted(knobs))
        others = [v for v in space.GPU_KNOBS[key] if v != knobs[key]]
        knobs[key] = rng.choice(others)
    else:
        knobs.pop(rng.choice(sorted(knobs)))
    return pl.replace(gpu_knobs=knobs)


PIPELINE_MUTATORS = {
    "einc_passes": (p_einc_passes, 4),
    "tir_passes": (p_tir, 4),
    "schedule": (p_sched, 5),
    "config": (p_config, 1),
    "oracle": (p_oracle, 1),
    "base_schedule": (p_base, 1),
    "gpu_knobs": (p_gpu_knobs, 4),
}

#: the pipeline mutators that apply to each target (the others edit TVM-side lists it never uses)
TARGET_MUTATORS = {
    "interp": ("einc_passes", "oracle"),
    "cuda-emu": ("einc_passes", "oracle", "gpu_knobs"),
    "llvm": ("einc_passes", "tir_passes", "schedule", "config", "oracle", "base_schedule"),
}


def mutate_pipeline(pl: FuzzPipeline, rng: random.Random) -> tuple[FuzzPipeline, str]:
    names = list(TARGET_MUTATORS.get(pl.target, TARGET_MUTATORS["llvm"]))
    weights = [PIPELINE_MUTATORS[n][1] for n in names]
    for _ in range(10):
        name = rng.choices(names, weights=weights)[0]
        new = PIPELINE_MUTATORS[name][0](pl, rng)
        if new != pl:
            return new, name
    return pl, "none"


def random_pipeline(rng: random.Random, target: str = "llvm") -> FuzzPipeline:
    pl = FuzzPipeline(passes=space.random_einc_pipeline(rng), target=target)
    if target == "cuda-emu":
        knobs = {}
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            key, val = space.parse_gpu_knob(space.random_gpu_knob(rng))
            knobs[key] = val
        return pl.replace(gpu_knobs=knobs)
    if target == "llvm":
        pl = pl.replace(tir=tuple(space.random_tir_pass(rng) for _ in range(rng.choice((0, 0, 1, 2)))),
                        sched=tuple(space.random_sched_prim(rng) for _ in range(rng.choice((0, 1, 2, 3)))))
    return pl


class Interleave:
    """Tzer's interleaving: mutate programs until ``patience`` mutations in a row add no feedback,
    then pipelines until the same, and so on.  ``record(gained)`` after each execution."""

    def __init__(self, patience: int = 20, mode: str = "program"):
        self.patience = patience
        self.mode = mode
        self.stale = 0
        self.switches = 0

    def record(self, gained: bool) -> None:
        if gained:
            self.stale = 0
            return
        self.stale += 1
        if self.stale >= self.patience:
            self.mode = "pipeline" if self.mode == "program" else "program"
            self.stale = 0
            self.switches += 1

    def state(self) -> dict:
        return {"patience": self.patience, "mode": self.mode, "stale": self.stale, "switches": self.switches}

    @classmethod
    def from_state(cls, d: dict) -> "Interleave":
        it = cls(d.get("patience", 20), d.get("mode", "program"))
        it.stale, it.switches = d.get("stale", 0), d.get("switches", 0)
        return it


def mutate_case(case: Case, rng: random.Random, mode: str) -> tuple[Case, str]:
    """One mutation of ``case`` in ``mode`` ("program" or "pipeline")."""
    if mode == "program" and case.program is not None:
        prog, how = mutate_program(case.program, rng)
        # a fifth of the mutants travel as .ein text (with an ellipsis where one fits), so the child's
        # frontend parses them and its branches count too
        src = None
        if rng.random() < 0.2:
            from .gen import text_with_ellipsis

            src = text_with_ellipsis(prog, rng)
        return case.replace(program=prog, src=src, seed=rng.randrange(2**31)), "prog:" + how
    if case.program is None:
        return case.replace(program=random_program(rng), src=None), "prog:regenerate"
    pl, how = mutate_pipeline(case.pipeline, rng)
    return case.replace(pipeline=pl), "pipe:" + how
