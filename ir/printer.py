"""The IR printer: a ``Program`` as ``.ein`` text that the frontend parses back to an equal program.

    input q: float32[8, 12, 128, 64]
    input k: float32[8, 12, 128, 64]

    s: float32[8, 12, 128, 128] = einsum("bhqd,bhkd->bhqk", q, k)
    c: float64[8, 12, 128, 128] = cast(s, float64)
    output c

Every step carries its full type, and einsum subscripts are explicit (``->`` always present,
ellipses already expanded into labels), so ``parse_program(print_program(p)) == p`` for every
program that passes ``verify``.  The output is deterministic: it depends only on ``p``.
"""
from __future__ import annotations

from .nodes import Cast, Einsum, Program
from .types import TensorType


def type_text(t: TensorType) -> str:
    """``float32[2, 3]``; ``float32[]`` for a 0-d tensor."""
    return f"{t.dtype}[{', '.join(str(n) for n in t.shape)}]"


def op_text(op) -> str:
    """One step as a ``.ein`` line (no newline)."""
    if isinstance(op, Einsum):
        args = "".join(f", {o}" for o in op.operands)
        return f'{op.result}: {type_text(op.type)} = einsum("{op.subscripts}"{args})'
    if isinstance(op, Cast):
        return f"{op.result}: {type_text(op.type)} = cast({op.operand}, {op.type.dtype})"
    raise TypeError(f"print_program: unknown op {type(op).__name__}")


def print_program(prog: Program) -> str:
    """The ``.ein`` text of ``prog``: inputs, a blank line, one line per step, the output line."""
    lines = [f"input {v.name}: {type_text(v.type)}" for v in prog.inputs]
    if prog.inputs and prog.body:
        lines.append("")
    lines += [op_text(op) for op in prog.body]
    lines.append("output " + ", ".join(prog.outputs))
    return "\n".join(lines) + "\n"


__all__ = ["print_program", "type_text", "op_text"]
