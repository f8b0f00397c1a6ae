"""Trying schedule rules in order: shared by the CPU and GPU schedulers."""
from __future__ import annotations


def first_rule(sch, chain, args, describe_failure):
    """Apply the first rule of ``chain`` that succeeds on a copy of ``sch``.

    Each rule is called as ``rule(trial, *args)`` and returns a description.  Returns
    ``(schedule, rule, description)``: the scheduled copy, the rule that took (None when every rule
    failed, ``schedule`` then being ``sch`` unchanged) and its description, or
    ``describe_failure(rule, exc)`` of the last failure.
    """
    desc = None
    for rule in chain:
        trial = _copy(sch)
        try:
            return trial, rule, rule(trial, *args)
        except Exception as e:  # noqa: BLE001 - ScheduleError & co: try the next rule
            desc = describe_failure(rule, e)
    return sch, None, desc


def _copy(sch):
    """``sch.copy()``; after a tensor-core rule TVM 0.27's ``Schedule.copy`` can fail
    (``unordered_map::at``: a multi-step float16 program with WMMA steps fell back to dlight, whose
    kernel needed 263 KiB of shared memory), so then a fresh schedule of the same module."""
    try:
        return sch.copy()
    except Exception:  # noqa: BLE001 - TVM InternalError
        return type(sch)(sch.mod)
