"""The numpy interpreter: the oracle for tests, the fuzzer and the FHE planner.

Each Einsum runs as one ``numpy.einsum`` call (no path optimisation), so a program means
exactly what numpy would compute step by step.  bfloat16 steps compute in float32 and round.
"""
from __future__ import annotations

import numpy as np

from einc.errors import EincError

from .nodes import Cast, Einsum, Program
from .types import np_dtype


def run(prog: Program, *args, **kwargs) -> list[np.ndarray]:
    """Evaluate ``prog`` on arrays given by position or by input name; returns the outputs."""
    env: dict[str, np.ndarray] = {}
    if len(args) + len(kwargs) != len(prog.inputs):
        raise EincError(f"program takes {len(prog.inputs)} inputs, got {len(args) + len(kwargs)}")
    for v, a in zip(prog.inputs, list(args) + [kwargs.pop(v.name) for v in prog.inputs[len(args):]]):
        a = np.asarray(a)
        if a.shape != v.type.shape:
            raise EincError(f"input {v.name}: shape {a.shape} but the program expects {v.type.shape}")
        env[v.name] = a.astype(np_dtype(v.type.dtype), copy=False)
    for op in prog.body:
        env[op.result] = eval_op(op, [env[o] for o in op.operands])
    return [env[o] for o in prog.outputs]


def eval_op(op, xs: list[np.ndarray]) -> np.ndarray:
    dt = np_dtype(op.type.dtype)
    if isinstance(op, Cast):
        return xs[0].astype(dt)
    if isinstance(op, Einsum):
        # numpy.einsum computes in the operands' common (result) dtype; casting first is the same
        # and also covers bfloat16 (ml_dtypes), which numpy cannot promote: it computes in float32
        work = np.dtype(np.float32) if op.type.dtype == "bfloat16" else dt
        xs = [x.astype(work, copy=False) for x in xs]
        out = np.einsum(op.subscripts, *xs, optimize=False)
        return np.asarray(out).astype(dt, copy=False)
    raise TypeError(f"unknown op {op!r}")
