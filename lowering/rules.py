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


def reverse_inline(sch, consumer) -> None:
    """``sch.reverse_compute_inline(consumer)``, refused (``ValueError``) when a producer it would
    merge into runs under a predicate (a ``T.where`` of a partial tile): TVM 0.27 gives the merged
    block the consumer's predicate alone, dropping the producer's, so the partial tile's copy-out
    wrote past its columns (float16 x bool ``ac,bc->ab`` at N = 48 with 32-wide tiles overwrote the
    next row: found by the fuzzer on cuda-emu).  Callers keep the consumer a block of its own."""
    from ._tvm import s_tir, tirx

    for p in sch.get_producers(consumer):
        loops = sch.get_loops(p)
        body = sch.get(loops[-1]).body if loops else None
        for stmt in getattr(body, "seq", None) or [body]:
            if isinstance(stmt, s_tir.SBlockRealize) and stmt.block.same_as(sch.get(p)):
                pred = stmt.predicate
                if not (isinstance(pred, tirx.IntImm) and int(pred) == 1):
                    raise ValueError(f"block {stmt.block.name_hint} runs under a predicate ({pred}): "
                                     "inlining its consumer would drop it")
    sch.reverse_compute_inline(consumer)
