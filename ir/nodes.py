"""The einc IR: immutable, hashable, compared structurally.

A ``Program`` is a straight-line SSA list of ops over named tensors:

    inputs   named, typed tensors                      (Value)
    body     ops, each defining one new name           (Einsum | Cast)
    outputs  names of values returned, in order

``Einsum`` is the core op: numpy einsum semantics over single-character labels
(``[a-zA-Z]``), explicit output, ellipsis already expanded into labels, repeated labels
allowed (diagonals, traces), size-1 axes broadcast against the label's size.  Its result
dtype is numpy's result type of its operands; ``Cast`` changes a dtype explicitly.
Change a node only through ``dataclasses.replace``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Union

from .types import TensorType

LABELS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Value:
    name: str
    type: TensorType


@dataclass(frozen=True)
class Einsum:
    result: str
    operands: tuple[str, ...]
    inputs: tuple[str, ...]  # one label string per operand
    output: str
    type: TensorType  # of the result

    def __post_init__(self):
        object.__setattr__(self, "operands", tuple(self.operands))
        object.__setattr__(self, "inputs", tuple(self.inputs))

    @property
    def subscripts(self) -> str:
        return ",".join(self.inputs) + "->" + self.output

    @property
    def arity(self) -> int:
        return len(self.operands)

    def contracted(self) -> str:
        """Labels summed away, in first-appearance order."""
        seen = []
        for lab in "".join(self.inputs):
            if lab not in self.output and lab not in seen:
                seen.append(lab)
        return "".join(seen)


@dataclass(frozen=True)
class Cast:
    result: str
    operand: str
    type: TensorType

    @property
    def operands(self) -> tuple[str, ...]:
        return (self.operand,)


Op = Union[Einsum, Cast]


@dataclass(frozen=True)
class Program:
    inputs: tuple[Value, ...]
    body: tuple[Op, ...]
    outputs: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "body", tuple(self.body))
        object.__setattr__(self, "outputs", tuple(self.outputs))

    def types(self) -> dict[str, TensorType]:
        """Every defined name -> its type."""
        env = {v.name: v.type for v in self.inputs}
        for op in self.body:
            env[op.result] = op.type
        return env

    def type_of(self, name: str) -> TensorType:
        return self.types()[name]

    def producers(self) -> dict[str, Op]:
        return {op.result: op for op in self.body}

    def uses(self, name: str) -> int:
        return sum(op.operands.count(name) for op in self.body) + self.outputs.count(name)

    def replace(self, **kw) -> "Program":
        return replace(self, **kw)


def einsum_sizes(op: Einsum, operand_types: list[TensorType]) -> dict[str, int]:
    """label -> size, broadcasting size-1 axes (largest size wins)."""
    sizes: dict[str, int] = {}
    for labs, t in zip(op.inputs, operand_types):
        for lab, n in zip(labs, t.shape):
            if sizes.get(lab, 1) == 1:
                sizes[lab] = n
    return sizes


def single_einsum(subscripts: str, types: list[TensorType], result_dtype: str | None = None) -> Program:
    """A one-step program ``out = einsum(subscripts, t0, t1, ...)`` over explicit-output, expanded subscripts.

    No validation beyond the verifier's; the frontend is the place for user input.
    """
    from .types import result_dtype as rd

    lhs, out = subscripts.replace(" ", "").split("->")
    ins = tuple(lhs.split(",")) if lhs else ()
    names = tuple(f"t{i}" for i in range(len(types)))
    tmp = Einsum("out", names, ins, out, TensorType((), "float32"))
    sizes = einsum_sizes(tmp, types)
    dtype = result_dtype or rd(*[t.dtype for t in types])
    op = replace(tmp, type=TensorType(tuple(sizes[c] for c in out), dtype))
    return Program(tuple(Value(n, t) for n, t in zip(names, types)), (op,), ("out",))


__all__ = ["LABELS", "Value", "Einsum", "Cast", "Op", "Program", "TensorType", "einsum_sizes", "single_einsum", "field"]
