"""Replaying regression folders: what ``tests/test_regressions.py`` and ``einc fuzz --replay`` run.

``replay(folder)`` re-runs the folder's case in a child and returns a ``Verdict``:

* status ``open`` (the bug is known, not fixed): ``xfail`` while it still reproduces (same signature);
  ``fail`` when it no longer does, so that someone checks the fix and marks the folder ``fixed``
  (or the behaviour changed into something else, which needs a look too);
* a ``cuda-emu`` case rebuilds with the GEMM knobs its ``pipeline.txt`` records (``gpu_knobs:``);
* status ``fixed`` or ``workaround``: ``pass`` when the outcome is ``meta["expect"]`` (``ok@done`` by
  default, or e.g. ``rejected@lower`` when the fix is a clean rejection); ``fail`` otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .corpus import load_regression
from .outcome import Outcome


@dataclass
class Verdict:
    result: str  # pass | xfail | fail
    reason: str
    outcome: Outcome | None  # None: the folder could not be read
    meta: dict


def needs_tvm(folder) -> bool:
    import json

    meta = json.loads((Path(folder) / "meta.json").read_text())
    return (meta.get("case", {}).get("pipeline", {}) or {}).get("target", "llvm") != "interp"


def run_recorded(case, meta: dict, timeout: float | None = None) -> Outcome:
    """``case`` run in a child the way its folder records it: the folder's timeout and planted faults."""
    from .harness import run_case_isolated

    return run_case_isolated(case, timeout=timeout or meta.get("timeout_s", 60), coverage=False,
                             faults=tuple(meta.get("faults") or ()))[0]


def reproduce(folder, *, in_process: bool = False) -> int:
    """What a folder's ``repro.py`` runs: the case once, outcome printed; 1 while the recorded signature shows."""
    from .harness import execute, warm_up

    case, meta = load_regression(folder)
    if in_process:
        outcome = Outcome.from_json(execute(case, coverage=False, faults=tuple(meta.get("faults") or ()))["outcome"])
    else:
        warm_up()
        outcome = run_recorded(case, meta)
    print("outcome:  ", outcome)
    print("recorded: ", meta["signature"])
    return 1 if outcome.signature == meta["signature"] else 0


def replay(folder, timeout: float | None = None) -> Verdict:
    """The verdict on one folder; a folder that cannot be read fails, with the reason (no outcome)."""
    from einc.errors import EincError

    try:
        case, meta = load_regression(folder)
    except EincError as e:
        return Verdict("fail", str(e), None, {})
    outcome = run_recorded(case, meta, timeout)
    status = meta.get("status", "open")
    if status == "open":
        if outcome.signature == meta["signature"]:
            return Verdict("xfail", f"open bug still reproduces: {outcome}", outcome, meta)
        return Verdict("fail", f"open bug no longer reproduces (now {outcome}); if fixed, set status "
                               f"'fixed' in {Path(folder) / 'meta.json'}", outcome, meta)
    expect = meta.get("expect", "ok@done")
    if outcome.key == expect:
        return Verdict("pass", f"{status}: {outcome.key}", outcome, meta)
    return Verdict("fail", f"{status} regression: expected {expect}, got {outcome}", outcome, meta)
