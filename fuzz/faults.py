"""Fault injection for the fuzzer's self-check: known bugs planted in the lowering and the passes.

Each fault is a source mutant: one snippet of one function is replaced and the function is
re-defined in its module (in the child process only; the parent never applies a fault).  A fault
whose snippet is no longer in the source reports itself as not applicable instead of silently
testing nothing.  ``bench/fuzz_ablation.py`` measures how long a campaign takes to catch each one.
"""
from __future__ import annotations

import importlib
import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Fault:
    name: str
    module: str
    function: str
    old: str
    new: str
    what: str
    target: str = "llvm"  # where a campaign meets it: "interp" for a pass fault (no TVM needed), "cuda-emu"


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("wrong_loop_bound", "einc.lowering.lower", "_einsum_compute",
          "te.reduce_axis((0, pad.get(c, sizes[c]))", "te.reduce_axis((0, max(1, pad.get(c, sizes[c]) - 1))",
          "every reduction loop stops one iteration early"),
    Fault("wrong_reduction_init", "einc.lowering.lower", "_einsum_compute",
          "te.sum(expr, axis=axes)",
          "te.comm_reducer(lambda x, y: x + y, lambda t: tirx.const(1, t), name='sum1')(expr, axis=axes)",
          "sums start from 1 instead of 0 (a sum reducer with the wrong identity)"),
    Fault("swapped_labels", "einc.lowering.lower", "_einsum_compute",
          "env = dict(zip(op.output, ovars))", "env = dict(zip(op.output[::-1], ovars))",
          "output axes bound to the labels in reverse order"),
    Fault("dropped_broadcast", "einc.lowering.lower", "_einsum_compute",
          "(n != 1 or sizes[c] == 1)", "True",
          "a size-1 (broadcast) axis is indexed with its label's variable instead of 0"),
    Fault("inverse_permutation", "einc.ir.passes.transposes", "_into_consumers",
          'inputs.append("".join(labs[q.index(c)] for c in src))',
          'inputs.append("".join(labs[src.index(c)] for c in q))',
          "the transposes pass folds the inverse permutation into consumers", "interp"),
    # the CUDA path: the kernels reach the emulator without their barriers (a shared-memory race)
    Fault("dropped_barrier", "einc.lowering.cuda_emulator", "_rewrite",
          'src = src.replace("#include <cuda.h>", "")',
          'src = src.replace("#include <cuda.h>", "").replace("__syncthreads();", ";")',
          "every __syncthreads() is dropped from the generated CUDA C (shared tiles read before they are "
          "written)", "cuda-emu"),
)}


class FaultNotApplicable(Exception):
    """The fault's snippet is not in the current source (the code moved on)."""


def _function_source(mod, function: str) -> str:
    """The source of top-level ``function`` as the module's file holds it now (``inspect.getsource``
    would mix the loaded code's line numbers with a file edited since)."""
    import ast

    text = Path(mod.__file__).read_text()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            return ast.get_source_segment(text, node) or ""
    return textwrap.dedent(inspect.getsource(getattr(mod, function)))


def check(name: str) -> bool:
    """True when fault ``name`` can be applied to the current source."""
    f = FAULTS[name]
    try:
        src = _function_source(importlib.import_module(f.module), f.function)
    except Exception:  # noqa: BLE001
        return False
    return f.old in src


def apply(names) -> None:
    """Apply the named faults to this process (call it in a child only)."""
    by_function: dict[tuple[str, str], list[Fault]] = {}
    for name in names:
        f = FAULTS[name]
        by_function.setdefault((f.module, f.function), []).append(f)
    for (module, function), fs in by_function.items():
        mod = importlib.import_module(module)
        src = _function_source(mod, function)
        for f in fs:
            if f.old not in src:
                raise FaultNotApplicable(f"fault {f.name}: {f.old!r} is not in {module}.{function}")
            src = src.replace(f.old, f.new, 1)
        code = compile(src, mod.__file__ or module, "exec")
        exec(code, mod.__dict__)  # noqa: S102 - redefines the function in its own module
