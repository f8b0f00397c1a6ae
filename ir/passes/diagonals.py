"""``diagonals``: repeated labels within an operand become their own unary step.

    ``x = iij,jk->ik``  ->  ``d = iij->ij; x = ij,jk->ik``
    ``t = ii->``        ->  ``d = ii->i;  t = i->``          (a trace is a diagonal and a sum)

Afterwards every einsum has distinct labels in each operand, except the unary diagonal steps
themselves, which sum nothing (``ii->i``, possibly permuting: ``iji->ji``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..nodes import Einsum, Program
from ._util import Names, dedup, make_einsum
from .base import Pass


def is_diagonal_step(op: Einsum) -> bool:
    """A unary einsum with repeated labels that sums nothing."""
    labs = op.inputs[0]
    return op.arity == 1 and len(set(labs)) < len(labs) and set(op.output) == set(labs)


@dataclass(frozen=True)
class Diagonals(Pass):
    """Extract repeated labels within an operand into a unary ``ii->i`` step."""

    name: ClassVar[str] = "diagonals"

    def apply(self, prog: Program) -> Program:
        env = prog.types()
        names = Names(prog)
        body, changed = [], False
        for op in prog.body:
            if isinstance(op, Einsum) and not (op.arity == 1 and is_diagonal_step(op)):
                operands, inputs = list(op.operands), list(op.inputs)
                for k, labs in enumerate(op.inputs):
                    if len(set(labs)) == len(labs):
                        continue
                    step = make_einsum(names.fresh(op.result + "_d"), (op.operands[k],), (labs,), dedup(labs), env)
                    env[step.result] = step.type
                    body.append(step)
                    operands[k], inputs[k] = step.result, dedup(labs)
                if operands != list(op.operands):
                    op = Einsum(op.result, tuple(operands), tuple(inputs), op.output, op.type)
                    changed = True
            body.append(op)
        return prog.replace(body=tuple(body)) if changed else prog
