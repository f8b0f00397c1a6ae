"""``transposes``: pure permutations disappear into their neighbours' labels.

* into consumers: an einsum reading a permuted value reads the original with relabelled axes
      ``t = ij->ji; u = ab,bc->ac(t, y)``  ->  ``u = ba,bc->ac(x, y)``
* into the producer: a permutation of a value used nowhere else is computed in that order directly
      ``t = ik,kj->ij; out = ij->ji(t)``  ->  ``out = ik,kj->ji``

A permutation stays explicit only when it is needed: it produces a program output (or feeds a cast) and
its operand is a program input or a value with other uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..nodes import Einsum, Program
from ._util import dce, fixpoint, is_permutation, use_counts
from .base import Pass


def _into_consumers(prog: Program) -> Program:
    perms = {op.result: op for op in prog.body if is_permutation(op)}
    body, changed = [], False
    for op in prog.body:
        if isinstance(op, Einsum) and any(o in perms for o in op.operands):
            operands, inputs = [], []
            for o, labs in zip(op.operands, op.inputs):
                p = perms.get(o)
                if p is None:
                    operands.append(o)
                    inputs.append(labs)
                    continue
                src, q = p.inputs[0], p.output  # t[q] = x[src]; t's axis k carries labs[k]
                operands.append(p.operands[0])
                inputs.append("".join(labs[q.index(c)] for c in src))
            op = Einsum(op.result, tuple(operands), tuple(inputs), op.output, op.type)
            changed = True
        body.append(op)
    return dce(prog.replace(body=tuple(body))) if changed else prog


def _into_producer(prog: Program) -> Program:
    producers = prog.producers()
    uses = use_counts(prog)
    outputs = set(prog.outputs)
    merged: dict[str, Einsum] = {}  # producer result -> the producer computing the permuted order
    drop: set[str] = set()
    for op in prog.body:
        if not is_permutation(op):
            continue
        t = op.operands[0]
        p = producers.get(t)
        if not isinstance(p, Einsum) or uses.get(t, 0) != 1 or t in outputs or t in drop or t in merged:
            continue
        src, q = op.inputs[0], op.output  # op[q] = p[src]; p's axis k is labelled p.output[k]
        new_out = "".join(p.output[src.index(c)] for c in q)
        merged[t] = Einsum(op.result, p.operands, p.inputs, new_out, op.type)
        drop.add(op.result)
    if not merged:
        return prog
    body = tuple(merged.get(o.result, o) for o in prog.body if o.result not in drop)
    return prog.replace(body=body)


def _round(prog: Program) -> Program:
    return _into_producer(_into_consumers(prog))


@dataclass(frozen=True)
class Transposes(Pass):
    """Fold pure permutation steps into consumers' labels, or into their producer's output order."""

    name: ClassVar[str] = "transposes"

    def apply(self, prog: Program) -> Program:
        return fixpoint(_round, prog)
