"""einc.fuzz: a coverage-guided fuzzer that checks every lowering against the interpreter.

Modules (data flows top to bottom; nothing in einc imports this package):

    outcome    Outcome(symptom, stage): the fixed vocabulary of results, signatures, is_bug
    case       Case(program | .ein text, FuzzPipeline(passes, tir, sched, config, target, oracle))
    space      the pipeline search space: einc passes, TVM TIR passes, schedule primitives, configs
    gen        typed program generator, .ein text from the grammar (hypothesis from_lark), ellipsis text
    mutate     weighted program and pipeline mutators, Tzer-style interleaving, metamorphic transforms
    isolate    fork a child with a timeout: crash/hang isolation, a pool of children
    harness    execute(case): parse -> oracle -> passes -> lower/schedule/tir_pass/codegen -> run
    faults     planted bugs (source mutants) for the self-check
    reduce     delta debugging of a finding to the smallest case with the same signature
    corpus     seeds, queue, regression folders (atomic writes, repro.py)
    replay     replaying regression folders (tests/test_regressions.py)
    upstream   pure-TVM reproducers (repro_tvm.py) of the TVM bugs einc works around
    campaign   the campaign loop, checkpoints and resumption, summary.json and coverage.png

The command line is ``einc fuzz`` (``einc/commands/fuzz.py``); TVM-side hooks live in
``einc.lowering.fuzz_hooks``, which also holds ``TVM_BUGS``: the primitive/pass combinations that make
TVM crash, hang or fail an internal check, refused up front with ``Unsupported`` (each one a
``workaround`` folder under ``corpus/regressions/``).
"""
from __future__ import annotations

import importlib

_LAZY = {
    "Campaign": "einc.fuzz.campaign",
    "Case": "einc.fuzz.case",
    "FuzzPipeline": "einc.fuzz.case",
    "Outcome": "einc.fuzz.outcome",
    "execute": "einc.fuzz.harness",
    "run_case_isolated": "einc.fuzz.harness",
    "reduce": "einc.fuzz.reduce",
    "random_program": "einc.fuzz.gen",
    "mutate_program": "einc.fuzz.mutate",
    "mutate_pipeline": "einc.fuzz.mutate",
    "run_isolated": "einc.fuzz.isolate",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'einc.fuzz' has no attribute {name!r}")


__all__ = sorted(_LAZY)
