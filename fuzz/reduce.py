"""Delta debugging for fuzz findings: the smallest program and pipeline that still show the same
outcome signature (symptom x stage x exception).

``reduce(case, test)`` greedily tries candidate simplifications, coarse ones first (drop every
schedule primitive, every TIR pass, the einc passes, extra outputs), then one element at a time
(a pipeline item, an operand, an input axis, a cast), then smaller sizes and simpler dtypes; a
candidate is kept when ``test(candidate)`` still gives the target signature.  It restarts after each
success and stops at a fixpoint, after ``max_tests`` tests or ``budget_s`` seconds.  ``test`` is
usually ``harness.run_case_isolated`` (crashes and hangs stay in children).
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Iterator

from einc.ir.nodes import Cast, Einsum, Program, Value
from einc.ir.types import TensorType
from einc.ir.verify import verify

from .case import Case
from .gen import retype
from .mutate import dead_code_elim
from .outcome import Outcome


def _valid(prog: Program) -> Program | None:
    try:
        return verify(retype(dead_code_elim(prog)))
    except Exception:  # noqa: BLE001
        return None


def _pipeline_candidates(case: Case) -> Iterator[Case]:
    pl = case.pipeline
    if pl.sched:
        yield case.replace(pipeline=pl.replace(sched=()))
    if pl.tir:
        yield case.replace(pipeline=pl.replace(tir=()))
    if pl.config:
        yield case.replace(pipeline=pl.replace(config=()))
    if pl.gpu_knobs:
        yield case.replace(pipeline=pl.replace(gpu_knobs=()))
    if pl.passes:
        yield case.replace(pipeline=pl.replace(passes=""))
    if pl.oracle != "interp":
        yield case.replace(pipeline=pl.replace(oracle="interp"))
    if pl.base == "einc" and pl.sched:
        # a primitive-triggered TVM bug that shows on the naive loop nest no longer depends on einc's schedules
        yield case.replace(pipeline=pl.replace(base="none"))
    for field in ("sched", "tir", "config", "gpu_knobs"):
        items = getattr(pl, field)
        for i in range(len(items)):
            yield case.replace(pipeline=pl.replace(**{field: items[:i] + items[i + 1:]}))
    if pl.passes:
        from .case import _split_top

        parts = _split_top(pl.passes)
        for i in range(len(parts)):
            yield case.replace(pipeline=pl.replace(passes=",".join(parts[:i] + parts[i + 1:])))


def _program_candidates(prog: Program) -> Iterator[Program]:
    # fewer outputs
    if len(prog.outputs) > 1:
        for o in prog.outputs:
            yield prog.replace(outputs=(o,))
    # drop a step: its users read one of its operands instead (when the shapes allow it)
    for i, op in enumerate(prog.body):
        if op.result in prog.outputs and len(prog.body) > 1 and i == len(prog.body) - 1:
            prev = prog.body[i - 1].result
            yield prog.replace(body=prog.body[:i], outputs=tuple(prev if o == op.result else o for o in prog.outputs))
        if isinstance(op, Cast):
            body = [o for o in prog.body if o is not op]
            body = [_rename_use(o, op.result, op.operand) for o in body]
            outs = tuple(op.operand if o == op.result else o for o in prog.outputs)
            yield prog.replace(body=tuple(body), outputs=outs)
    # cut the program at a step: its result becomes a fresh input (what fed only it then goes away)
    for i, op in enumerate(prog.body):
        if len(prog.body) > 1:
            body = prog.body[:i] + prog.body[i + 1:]
            yield prog.replace(inputs=prog.inputs + (Value(op.result, op.type),), body=body)
    # drop an operand
    for i, op in enumerate(prog.body):
        if isinstance(op, Einsum) and op.arity > 1:
            for k in range(op.arity):
                inputs = op.inputs[:k] + op.inputs[k + 1:]
                left = "".join(inputs)
                new = replace(op, operands=op.operands[:k] + op.operands[k + 1:], inputs=inputs,
                              output="".join(c for c in op.output if c in left))
                yield _set(prog, i, new)
    # drop an input axis (its label goes from every use; outputs lose it where it disappears)
    for j, v in enumerate(prog.inputs):
        for a in range(v.type.rank):
            yield _drop_axis(prog, j, a)
    # smaller sizes
    for j, v in enumerate(prog.inputs):
        for a, n in enumerate(v.type.shape):
            for m in ([1, n // 2] if n > 2 else [1] if n == 2 else []):
                yield _resize_label_group(prog, j, a, m)
    # simpler dtypes
    dts = {v.type.dtype for v in prog.inputs}
    for simple in ("float32", "int32"):
        if dts != {simple}:
            yield prog.replace(inputs=tuple(Value(v.name, TensorType(v.type.shape, simple)) for v in prog.inputs))


def _rename_use(op, old: str, new: str):
    if isinstance(op, Einsum):
        return replace(op, operands=tuple(new if o == old else o for o in op.operands))
    return replace(op, operand=new if op.operand == old else op.operand)


def _set(prog: Program, i: int, op) -> Program:
    body = list(prog.body)
    body[i] = op
    return prog.replace(body=tuple(body))


def _drop_axis(prog: Program, j: int, a: int) -> Program:
    v = prog.inputs[j]
    shape = v.type.shape[:a] + v.type.shape[a + 1:]
    ins = list(prog.inputs)
    ins[j] = Value(v.name, TensorType(shape, v.type.dtype))
    body = []
    for op in prog.body:
        if isinstance(op, Einsum) and v.name in op.operands:
            inputs = tuple(labs[:a] + labs[a + 1:] if o == v.name else labs for o, labs in zip(op.operands, op.inputs))
            left = "".join(inputs)
            op = replace(op, inputs=inputs, output="".join(c for c in op.output if c in left))
        body.append(op)
    return prog.replace(inputs=tuple(ins), body=tuple(body))


def _resize_label_group(prog: Program, j: int, a: int, m: int) -> Program:
    """Resize input ``j`` axis ``a`` to ``m`` and every input axis of the same size read with the same label."""
    old = prog.inputs[j].type.shape[a]
    labels = set()
    for op in prog.body:
        if isinstance(op, Einsum):
            for o, labs in zip(op.operands, op.inputs):
                if o == prog.inputs[j].name:
                    labels.add((id(op), labs[a]))
    ins = list(prog.inputs)
    for jj, v in enumerate(prog.inputs):
        shape = list(v.type.shape)
        for aa, n in enumerate(shape):
            if n != old:
                continue
            same = jj == j and aa == a
            for op in prog.body:
                if isinstance(op, Einsum):
                    for o, labs in zip(op.operands, op.inputs):
                        if o == v.name and (id(op), labs[aa]) in labels:
                            same = True
            if same:
                shape[aa] = m
        ins[jj] = Value(v.name, TensorType(tuple(shape), v.type.dtype))
    return prog.replace(inputs=tuple(ins))


def candidates(case: Case) -> Iterator[Case]:
    if case.src is not None and case.program is not None:
        yield case.replace(src=None)  # the printed program instead of the text: unless the bug is in the parser
    yield from _pipeline_candidates(case)
    if case.program is not None and case.src is None:
        for p in _program_candidates(case.program):
            q = _valid(p)
            if q is not None and q != case.program:
                yield case.replace(program=q)
    if case.seed != 0:
        yield case.replace(seed=0)


def reduce(case: Case, test: Callable[[Case], Outcome], signature: str | None = None, *, max_tests: int = 200,
           budget_s: float = 120.0, stop: Callable[[], bool] = lambda: False) -> tuple[Case, dict]:
    """The smallest case found with the same signature as ``case`` (``signature`` if given, else
    ``test(case)``'s), and stats ``{"tests", "steps", "seconds", "size_before", "size_after"}``;
    ``stop()`` true ends it before the next test (an interrupted campaign)."""
    t0 = time.monotonic()
    tests = 0
    if signature is None:
        signature = test(case).signature
        tests += 1
    best, steps = case, 0
    seen = {case.digest}
    improved = True
    while improved and tests < max_tests and time.monotonic() - t0 < budget_s and not stop():
        improved = False
        for cand in candidates(best):
            if tests >= max_tests or time.monotonic() - t0 >= budget_s or stop():
                break
            if cand.digest in seen or cand.size > best.size and cand.pipeline.size >= best.pipeline.size:
                continue
            seen.add(cand.digest)
            tests += 1
            if test(cand).signature == signature:
                best, steps, improved = cand, steps + 1, True
                break
    return best, {"tests": tests, "steps": steps, "seconds": round(time.monotonic() - t0, 2),
                  "size_before": list(case.size), "size_after": list(best.size)}
