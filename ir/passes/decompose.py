"""``decompose{path=auto|greedy|optimal|dp|branch-all|branch-2|branch-1|STEPS, memory-limit=N}``:
n-ary einsums become pairwise steps along a contraction path (``einc.ir.paths.find_path``).

``path`` names an optimizer, or spells an explicit path as STEPS: steps separated by ``;``, the operand
positions of a step by ``-`` (``path=0-2;0-1`` is numpy's ``['einsum_path', (0, 2), (0, 1)]``); an
explicit path applies to every einsum of three or more operands and must fit each.

    ``r = pi,qj,ijkl,rk,sl->pqrs``  ->  ``r_0 = pi,ijkl->pjkl; r_1 = ...; r = lpqr,sl->pqrs``

Intermediates get fresh names; the last step keeps the original result name and output labels.
Operands whose dtype differs from the einsum's result dtype are cast to it first, so every step computes
in the dtype the n-ary einsum would have used.  Unary and binary einsums stay as they are, and so does an
einsum whose path is one step (e.g. when the memory limit allows no intermediate).
"""
from __future__ import annotations

from dataclasses import dataclass
import re
from typing import Any, ClassVar, Literal

from ..nodes import Cast, Einsum, Program, einsum_sizes
from ..types import TensorType
from ._util import Names, make_einsum
from .base import Pass


_STEPS = re.compile(r"^\d+(-\d+)*(;\d+(-\d+)*)*$")


def path_option(path) -> str:
    """An explicit path ``[(0, 2), (0, 1)]`` as the ``path=`` option text ``0-2;0-1``."""
    return ";".join("-".join(str(int(p)) for p in st) for st in path)


@dataclass(frozen=True)
class Decompose(Pass):
    """Split n-ary einsums into pairwise steps along a contraction path."""

    name: ClassVar[str] = "decompose"
    # an optimizer name, or an explicit path spelled STEPS (checked by check_option)
    path: Literal["auto", "greedy", "optimal", "dp", "branch-all", "branch-2", "branch-1", "auto-hq"] | str = "auto"
    memory_limit: int | str | None = None  # elements, or "max-input" (the largest operand or result)

    @classmethod
    def check_option(cls, field: str, value: Any) -> None:
        from ..paths import OPTIMIZERS

        if field == "path":
            if not isinstance(value, str) or (value not in OPTIMIZERS and not _STEPS.match(value)):
                raise ValueError(f"expected one of {', '.join(OPTIMIZERS)} or an explicit path like 0-1;0-1")
        elif field == "memory_limit" and value is not None and value != "max-input":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError("expected a positive number of elements, max-input or none")

    def optimize(self):
        """The ``optimize`` argument for ``find_path``: a name or an explicit path."""
        if _STEPS.match(self.path):
            return [tuple(int(p) for p in st.split("-")) for st in self.path.split(";")]
        return self.path

    def apply(self, prog: Program) -> Program:
        from ..paths import find_path

        env = prog.types()
        names = Names(prog)
        body, changed = [], False
        for op in prog.body:
            if not (isinstance(op, Einsum) and op.arity >= 3):
                body.append(op)
                continue
            sizes = einsum_sizes(op, [env[o] for o in op.operands])
            info = find_path(op.inputs, op.output, sizes, self.optimize(),
                             "max_input" if self.memory_limit == "max-input" else self.memory_limit)
            if len(info.path) <= 1:
                body.append(op)
                continue
            changed = True
            current = []
            for name, labs in zip(op.operands, op.inputs):
                if env[name].dtype != op.type.dtype:
                    cast = Cast(names.fresh(op.result + "_c"), name, TensorType(env[name].shape, op.type.dtype))
                    env[cast.result] = cast.type
                    body.append(cast)
                    name = cast.result
                current.append(name)
            for k, st in enumerate(info.steps):
                picked = sorted(st.positions)
                last = k == len(info.steps) - 1
                result = op.result if last else names.fresh(op.result)
                step = make_einsum(result, [current[p] for p in picked], st.inputs, st.output, env)
                env[result] = step.type
                body.append(step)
                current = [n for i, n in enumerate(current) if i not in picked] + [result]
            assert body[-1].type == op.type, (body[-1], op)
        return prog.replace(body=tuple(body)) if changed else prog
