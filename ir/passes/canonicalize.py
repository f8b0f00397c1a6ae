"""``canonicalize``: the cleanup every pipeline starts and ends with.  Rules, applied to a fixpoint:

* labels of each einsum are renamed a, b, c, ... in first-appearance order   ``ij,jk->ik`` -> ``ab,bc->ac``
* a label only one operand has and the output lacks is summed first           ``ij,jk->i`` -> ``t=jk->j; ij,j->i``
  (only when that operand already has the einsum's dtype, so no sum changes precision)
* a cast of an exact cast skips the inner one                                 ``f64(f32(x:f16))`` -> ``f64(x)``
* identities are forwarded to their operand                                   ``ij->ij``, ``cast x to x's dtype``
* equal ops over equal operands are computed once (common subexpressions)
* ops no output needs are dropped

Output names never change: an identity that produces an output renames its operand's producer instead,
and stays as a copy when the operand is a program input.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from ..nodes import LABELS, Cast, Einsum, Program
from ._util import dce, dedup, fixpoint, forward, is_identity, presum, use_counts
from .base import Pass

# dtype -> (kind, significant bits): a cast is exact when every value of the source survives.
_KIND = {
    "bool": ("b", 1),
    "int8": ("i", 7), "int16": ("i", 15), "int32": ("i", 31), "int64": ("i", 63),
    "uint8": ("u", 8), "uint16": ("u", 16), "uint32": ("u", 32), "uint64": ("u", 64),
    # floats: (significand bits, exponent bits)
    "float16": ("f", (11, 5)), "bfloat16": ("f", (8, 8)), "float32": ("f", (24, 8)), "float64": ("f", (53, 11)),
    "complex64": ("c", (24, 8)), "complex128": ("c", (53, 11)),
}


def exact_cast(src: str, dst: str) -> bool:
    """Whether casting ``src`` to ``dst`` keeps every value (so a later cast sees the same value)."""
    if src == dst or src == "bool":
        return True
    (sk, sb), (dk, db) = _KIND[src], _KIND[dst]
    if dk in "bui" and sk not in "bui":
        return False
    if dk == "b":
        return False
    if sk in "iu":
        if dk == "i":
            return sb <= db
        if dk == "u":
            return sk == "u" and sb <= db
        return sb <= db[0]  # an integer fits the significand of the float
    if sk == "c" and dk == "f":
        return False
    return sb[0] <= db[0] and sb[1] <= db[1]  # float/complex widening


def _rename_labels(op: Einsum) -> Einsum:
    order = dedup("".join(op.inputs) + op.output)
    m = {c: LABELS[k] for k, c in enumerate(order)}
    if all(m[c] == c for c in order):
        return op
    return Einsum(op.result, op.operands, tuple("".join(m[c] for c in t) for t in op.inputs),
                  "".join(m[c] for c in op.output), op.type)


def _sum_early(prog: Program) -> Program:
    def lonely(op: Einsum, k: int, env) -> set[str]:
        if env[op.operands[k]].dtype != op.type.dtype:  # summing first would change the precision
            return set()
        count: dict[str, int] = {}
        for labs in op.inputs:
            for c in set(labs):
                count[c] = count.get(c, 0) + 1
        return {c for c in op.inputs[k] if count[c] == 1 and c not in op.output}

    return presum(prog, "_s", lonely)


def _fold_casts(prog: Program) -> Program:
    env = prog.types()
    producers = prog.producers()
    body, changed = [], False
    for op in prog.body:
        if isinstance(op, Cast):
            inner = producers.get(op.operand)
            while isinstance(inner, Cast):
                t0, t1, t2 = env[inner.operand].dtype, inner.type.dtype, op.type.dtype
                float_to_int = _KIND[t1][0] in "fc" and _KIND[t2][0] in "iu" and t0 != "bool"
                if not exact_cast(t0, t1) or float_to_int:
                    break
                op, changed = Cast(op.result, inner.operand, op.type), True
                inner = producers.get(op.operand)
            producers[op.result] = op
        body.append(op)
    return prog.replace(body=tuple(body)) if changed else prog


def _forward_identities(prog: Program) -> Program:
    env = prog.types()
    producers = prog.producers()
    uses = use_counts(prog)
    outputs = set(prog.outputs)
    inputs = {v.name for v in prog.inputs}
    mapping: dict[str, str] = {}
    rename: dict[str, str] = {}  # producer result -> identity's (output) name
    drop: set[str] = set()
    for op in prog.body:
        if not is_identity(op, env):
            continue
        src = op.operands[0]
        if op.result not in outputs:
            mapping[op.result] = src
            drop.add(op.result)
        elif (src not in inputs and src not in outputs and uses.get(src, 0) == 1 and src in producers
              and src not in rename and src not in mapping):
            rename[src] = op.result
            drop.add(op.result)
    if not drop:
        return prog
    body = []
    for op in prog.body:
        if op.result in drop:
            continue
        if op.result in rename:
            op = replace(op, result=rename[op.result])
        body.append(op)
    return forward(prog.replace(body=tuple(body)), mapping)


def _cse(prog: Program) -> Program:
    outputs = set(prog.outputs)
    seen: dict[tuple, str] = {}
    mapping: dict[str, str] = {}
    body = []
    for op in prog.body:
        ops = tuple(mapping.get(o, o) for o in op.operands)
        if isinstance(op, Cast):
            key = ("cast", ops, op.type)
        else:
            key = ("einsum", ops, op.inputs, op.output, op.type)
        if key in seen and op.result not in outputs:
            mapping[op.result] = seen[key]
            continue
        seen.setdefault(key, op.result)
        body.append(op)
    if not mapping:
        return prog
    return forward(prog.replace(body=tuple(body)), mapping)


def _round(prog: Program) -> Program:
    prog = prog.replace(body=tuple(_rename_labels(op) if isinstance(op, Einsum) else op for op in prog.body))
    prog = _sum_early(prog)
    prog = _fold_casts(prog)
    prog = _forward_identities(prog)
    prog = _cse(prog)
    return dce(prog)


@dataclass(frozen=True)
class Canonicalize(Pass):
    """Cleanup to a canonical form: labels renamed, identities forwarded, dead code dropped (see module doc)."""

    name: ClassVar[str] = "canonicalize"

    def apply(self, prog: Program) -> Program:
        return fixpoint(_round, prog)
