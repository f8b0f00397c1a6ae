"""The IR verifier: run between passes.  Raises VerifyError naming the op and the broken rule."""
from __future__ import annotations

import re

from einc.errors import VerifyError

from .nodes import LABELS, Cast, Einsum, Program, einsum_sizes
from .types import DTYPES, result_dtype, too_many_elements

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def verify(prog: Program) -> Program:
    """Check every invariant of ``prog``; return it unchanged so calls chain."""
    env = {}
    for v in prog.inputs:
        _check_name(v.name, env, "input")
        _check_type(v.type, f"input {v.name}")
        env[v.name] = v.type
    for i, op in enumerate(prog.body):
        where = f"op #{i} ({op.result})"
        _check_name(op.result, env, where)
        for o in op.operands:
            if o not in env:
                raise VerifyError(f"{where}: operand {o!r} is used before it is defined")
        _check_type(op.type, where)
        if isinstance(op, Einsum):
            _verify_einsum(op, [env[o] for o in op.operands], where)
        elif isinstance(op, Cast):
            if env[op.operand].shape != op.type.shape:
                raise VerifyError(f"{where}: cast changes the shape {env[op.operand].shape} -> {op.type.shape}")
        else:
            raise VerifyError(f"{where}: unknown op {type(op).__name__}")
        env[op.result] = op.type
    if not prog.outputs:
        raise VerifyError("program has no outputs")
    for o in prog.outputs:
        if o not in env:
            raise VerifyError(f"output {o!r} is not defined")
    return prog


def _check_name(name, env, where):
    if not _NAME.match(name):
        raise VerifyError(f"{where}: {name!r} is not a valid name")
    if name in env:
        raise VerifyError(f"{where}: {name!r} is defined twice")


def _check_type(t, where):
    if t.dtype not in DTYPES:
        raise VerifyError(f"{where}: unknown dtype {t.dtype!r}")
    if any(s < 0 for s in t.shape):
        raise VerifyError(f"{where}: negative size in shape {t.shape}")
    why = too_many_elements(t.shape)
    if why:
        raise VerifyError(f"{where}: shape {t.shape} has {why}")


def _verify_einsum(op: Einsum, types, where):
    if not op.operands:
        raise VerifyError(f"{where}: an einsum needs at least one operand")
    if len(op.inputs) != len(op.operands):
        raise VerifyError(f"{where}: {len(op.operands)} operands but {len(op.inputs)} label groups")
    for labs, t in zip(op.inputs, types):
        if any(c not in LABELS for c in labs):
            raise VerifyError(f"{where}: labels {labs!r} must be letters")
        if len(labs) != t.rank:
            raise VerifyError(f"{where}: labels {labs!r} for an operand of rank {t.rank}")
    if any(c not in LABELS for c in op.output) or len(set(op.output)) != len(op.output):
        raise VerifyError(f"{where}: output labels {op.output!r} must be distinct letters")
    seen = set("".join(op.inputs))
    for c in op.output:
        if c not in seen:
            raise VerifyError(f"{where}: output label {c!r} appears in no operand")
    sizes = einsum_sizes(op, types)
    for k, (labs, t) in enumerate(zip(op.inputs, types)):
        for lab, n in zip(labs, t.shape):
            if n != sizes[lab] and n != 1:
                raise VerifyError(f"{where}: label {lab!r} has size {n} in operand {k} but {sizes[lab]} elsewhere")
        # a repeated label within one operand must have one size (numpy: no broadcast on diagonals)
        for lab in set(labs):
            ns = {n for l2, n in zip(labs, t.shape) if l2 == lab}
            if len(ns) > 1:
                raise VerifyError(f"{where}: repeated label {lab!r} of operand {k} has sizes {sorted(ns)}")
    want = tuple(sizes[c] for c in op.output)
    if op.type.shape != want:
        raise VerifyError(f"{where}: result shape {op.type.shape} but labels give {want}")
    rd = result_dtype(*[t.dtype for t in types])
    if op.type.dtype != rd:
        raise VerifyError(f"{where}: result dtype {op.type.dtype} but operands give {rd}; insert a cast")
