"""``broadcast``: no implicit size-1 broadcasting left inside an einsum.

A size-1 axis whose label has a larger size in another operand is squeezed first, by a unary step that
sums the single element away (exact):

    ``x = ij,jk->ik`` with shapes (3,1),(4,5)  ->  ``b = ij->i; x = i,jk->ik``

Afterwards every label of an einsum has one size in all the operands that carry it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..nodes import Einsum, Program, einsum_sizes
from ._util import Names, dedup, make_einsum
from .base import Pass


@dataclass(frozen=True)
class Broadcast(Pass):
    """Squeeze size-1 axes that broadcast against a larger size of the same label."""

    name: ClassVar[str] = "broadcast"

    def apply(self, prog: Program) -> Program:
        env = prog.types()
        names = Names(prog)
        body, changed = [], False
        for op in prog.body:
            if isinstance(op, Einsum) and op.arity >= 2:
                sizes = einsum_sizes(op, [env[o] for o in op.operands])
                operands, inputs = list(op.operands), list(op.inputs)
                for k, labs in enumerate(op.inputs):
                    shape = env[op.operands[k]].shape
                    squeeze = {c for c, n in zip(labs, shape) if n == 1 and sizes[c] > 1}
                    if not squeeze:
                        continue
                    kept = "".join(c for c in dedup(labs) if c not in squeeze)
                    step = make_einsum(names.fresh(op.result + "_b"), (op.operands[k],), (labs,), kept, env)
                    env[step.result] = step.type
                    body.append(step)
                    operands[k], inputs[k] = step.result, kept
                if operands != list(op.operands):
                    op = Einsum(op.result, tuple(operands), tuple(inputs), op.output, op.type)
                    changed = True
            body.append(op)
        return prog.replace(body=tuple(body)) if changed else prog
