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
        trial = sch.copy()
        try:
            return trial, rule, rule(trial, *args)
        except Exception as e:  # noqa: BLE001 - ScheduleError & co: try the next rule
            desc = describe_failure(rule, e)
    return sch, None, desc
