"""Small helpers the passes share: fresh names, typed einsum construction, forwarding, dead code."""
from __future__ import annotations

import re
from typing import Iterable, Mapping

from ..nodes import Cast, Einsum, Program, einsum_sizes
from ..types import TensorType, result_dtype


class Names:
    """Fresh value names: ``base_0``, ``base_1``, ... avoiding every name already in the program."""

    def __init__(self, prog: Program):
        self.taken = {v.name for v in prog.inputs} | {op.result for op in prog.body} | set(prog.outputs)

    def fresh(self, base: str) -> str:
        base = re.sub(r"_\d+$", "", base) or "t"
        k = 0
        while f"{base}_{k}" in self.taken:
            k += 1
        name = f"{base}_{k}"
        self.taken.add(name)
        return name


def dedup(labels: Iterable[str]) -> str:
    """Distinct labels in first-appearance order."""
    return "".join(dict.fromkeys(labels))


def make_einsum(result: str, operands, inputs, output: str, env: Mapping[str, TensorType],
                dtype: str | None = None) -> Einsum:
    """An Einsum whose type follows from its operands' types (numpy's result dtype unless given)."""
    operands, inputs = tuple(operands), tuple(inputs)
    types = [env[o] for o in operands]
    tmp = Einsum(result, operands, inputs, output, TensorType((), "float32"))
    sizes = einsum_sizes(tmp, types)
    dt = dtype or (result_dtype(*[t.dtype for t in types]) if types else "float32")
    return Einsum(result, operands, inputs, output, TensorType(tuple(sizes[c] for c in output), dt))


def is_permutation(op) -> bool:
    """A unary einsum that only reorders distinct labels (the identity included)."""
    return (isinstance(op, Einsum) and op.arity == 1 and len(set(op.inputs[0])) == len(op.inputs[0])
            and sorted(op.inputs[0]) == sorted(op.output))


def is_identity(op, env: Mapping[str, TensorType]) -> bool:
    """``ij->ij`` or a cast to the dtype the operand already has."""
    if isinstance(op, Cast):
        return env[op.operand].dtype == op.type.dtype
    return is_permutation(op) and op.inputs[0] == op.output


def forward(prog: Program, mapping: Mapping[str, str]) -> Program:
    """Replace every use of a name in ``mapping`` (keys) by its value, following chains."""
    if not mapping:
        return prog

    def res(n):
        seen = 0
        while n in mapping and seen <= len(mapping):
            n, seen = mapping[n], seen + 1
        return n

    body = []
    for op in prog.body:
        if isinstance(op, Cast):
            body.append(op if op.operand not in mapping else Cast(op.result, res(op.operand), op.type))
        else:
            ops = tuple(res(o) for o in op.operands)
            body.append(op if ops == op.operands else Einsum(op.result, ops, op.inputs, op.output, op.type))
    return Program(prog.inputs, tuple(body), tuple(res(o) for o in prog.outputs))


def dce(prog: Program) -> Program:
    """Drop ops whose results no output needs (program inputs stay: they are the signature)."""
    live = set(prog.outputs)
    keep = []
    for op in reversed(prog.body):
        if op.result in live:
            keep.append(op)
            live.update(op.operands)
    keep.reverse()
    return prog if len(keep) == len(prog.body) else prog.replace(body=tuple(keep))


def use_counts(prog: Program) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in prog.body:
        for o in op.operands:
            counts[o] = counts.get(o, 0) + 1
    for o in prog.outputs:
        counts[o] = counts.get(o, 0) + 1
    return counts


def fixpoint(fn, prog: Program, limit: int | None = None) -> Program:
    """Apply ``fn`` until the program stops changing (structural equality).  Every rule of a pass
    shrinks the program or a finite measure of it, so this ends; the cap only guards against a bug."""
    from einc.errors import EincInternalError

    cap = limit if limit is not None else 16 + 4 * len(prog.body)
    for _ in range(cap):
        new = fn(prog)
        if new == prog:
            return new
        prog = new
    raise EincInternalError(f"{getattr(fn, '__module__', fn)}: no fixpoint after {cap} rounds")


def presum(prog: Program, suffix: str, drop) -> Program:
    """Sum labels out of operands of n-ary einsums by unary steps placed just before them.

    ``drop(op, k, env)`` names the labels of operand ``k`` to sum away (an empty set keeps it).  The
    step sums them and the einsum reads the smaller result: ``x = ij,jk->ik`` with ``i`` dropped from
    operand 0 becomes ``s = ij->j; x = j,jk->ik``.
    """
    env = dict(prog.types())
    names = Names(prog)
    body, changed = [], False
    for op in prog.body:
        if isinstance(op, Einsum) and op.arity >= 2:
            operands, inputs = list(op.operands), list(op.inputs)
            for k, labs in enumerate(op.inputs):
                gone = drop(op, k, env)
                if not gone:
                    continue
                kept = "".join(c for c in dedup(labs) if c not in gone)
                step = make_einsum(names.fresh(op.result + suffix), (op.operands[k],), (labs,), kept, env)
                env[step.result] = step.type
                body.append(step)
                operands[k], inputs[k] = step.result, kept
            if operands != list(op.operands):
                op = Einsum(op.result, tuple(operands), tuple(inputs), op.output, op.type)
                changed = True
        body.append(op)
    return prog.replace(body=tuple(body)) if changed else prog
