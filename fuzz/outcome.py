"""Fuzz outcomes are values: a symptom (what happened) at a stage (where it happened).

The vocabulary is fixed, as in nnsmith's ``Symptom``/``Stage``: a campaign counts outcomes by
``(symptom, stage)``, deduplicates findings by ``Outcome.signature`` and decides what is a bug with
``Outcome.is_bug``.  ``rejected`` (an einc ``Unsupported`` or an input the frontend refuses) is never
a bug.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

SYMPTOMS = ("ok", "wrong_result", "crash", "timeout", "compile_error", "einc_internal_error", "rejected")
#: ``oracle`` is where the reference (``ir.interp``) itself runs; it comes first.
STAGES = ("parse", "oracle", "passes", "lower", "schedule", "tir_pass", "codegen", "run", "done")

#: symptoms that are bugs wherever they happen
_ALWAYS_BUGS = {"wrong_result", "crash", "timeout", "einc_internal_error"}

_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NUM = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")


def first_line(msg: str) -> str:
    """The first meaningful line of an error message (TVM's ``Check failed`` line when there is one)."""
    lines = [ln.strip() for ln in (msg or "").splitlines() if ln.strip()]
    return next((ln for ln in lines if ln.startswith(("Check failed", "Error message"))), lines[0] if lines else "")


def normalize_message(msg: str, limit: int = 120) -> str:
    """``first_line`` with numbers and addresses erased (for dedup)."""
    line = _HEX.sub("#", first_line(msg))
    line = _NUM.sub("N", line)
    return _SPACES.sub(" ", line)[:limit]


@dataclass(frozen=True)
class Outcome:
    symptom: str
    stage: str
    exc_type: str = ""  # exception class name, or "SIGSEGV"-style for crashes
    message: str = ""  # first lines of the error, or the mismatch description
    detail: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.symptom not in SYMPTOMS:
            raise ValueError(f"unknown symptom {self.symptom!r}")
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}")

    @property
    def key(self) -> str:
        """``symptom@stage``: the bucket outcomes are counted in."""
        return f"{self.symptom}@{self.stage}"

    @property
    def signature(self) -> str:
        """What dedup compares: symptom, stage, exception type and the normalized first message line
        (for wrong results, which have no message: the dtype, target and path)."""
        if self.symptom in ("ok", "timeout", "rejected"):
            return f"{self.key}"
        if self.symptom == "wrong_result":
            # the dtype, the target and einc's path vs a fuzzed TVM pipeline: a float32 miscompile of
            # einc's own CPU schedule is not the known float32 one of a fuzzed rfactor
            d = self.detail
            where = f":{d['target']}:{d.get('via', 'einc')}" if d.get("target") else ""
            return f"{self.key}:{d.get('dtype', '')}{where}"
        if self.symptom == "crash" and self.exc_type.startswith("SIG"):
            # where a memory error surfaces varies from run to run: the signal is the stable part
            return f"{self.key}:{self.exc_type}"
        return f"{self.key}:{self.exc_type}:{normalize_message(self.message)}"

    @property
    def is_bug(self) -> bool:
        """A finding: wrong results, crashes, hangs, einc internal errors anywhere; compile errors
        everywhere except after a fuzzed sequence of TVM TIR passes (those often break a pass's
        documented precondition, which is expected, and count as feedback only)."""
        if self.symptom in _ALWAYS_BUGS:
            return True
        if self.symptom == "compile_error":
            return self.stage != "tir_pass"
        return False

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Outcome":
        return cls(d["symptom"], d["stage"], d.get("exc_type", ""), d.get("message", ""), dict(d.get("detail") or {}))

    def __str__(self) -> str:
        tail = f" {self.exc_type}: {_SPACES.sub(' ', first_line(self.message))[:200]}" if self.exc_type or self.message else ""
        return f"{self.key}{tail}"


OK = Outcome("ok", "done")
