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
from ._util import presum
from .base import Pass


@dataclass(frozen=True)
class Broadcast(Pass):
    """Squeeze size-1 axes that broadcast against a larger size of the same label."""

    name: ClassVar[str] = "broadcast"

    def apply(self, prog: Program) -> Program:
        def squeeze(op: Einsum, k: int, env) -> set[str]:
            sizes = einsum_sizes(op, [env[o] for o in op.operands])
            return {c for c, n in zip(op.inputs[k], env[op.operands[k]].shape) if n == 1 and sizes[c] > 1}

        return presum(prog, "_b", squeeze)
