"""A fuzz case: a program (an IR ``Program``, or ``.ein`` text still to parse) and a pipeline.

``FuzzPipeline`` is everything between the program and the numbers it computes:

* ``passes``: an einc pass pipeline string (``canonicalize,decompose{path=optimal}``);
* ``tir``: TVM TIR passes applied before the default lowering pipeline (``s_tir.LoopPartition``,
  ``tirx.NarrowDataType(32)``);
* ``sched``: schedule primitives applied after einc's own schedule (``split(b0,l1,4)``);
* ``config``: PassContext config toggles (``tirx.disable_vectorize=1``);
* ``target``: ``llvm`` (compile with TVM), ``interp`` (einc passes only, no TVM) or ``cuda-emu``
  (einc's CUDA lowering for ``sm_90``, the generated CUDA C run on the CPU by
  ``lowering.cuda_emulator``; needs a C++ compiler, no GPU; ``tir``/``sched``/``config`` stay empty);
* ``gpu_knobs``: GEMM schedule knobs for ``cuda-emu`` (``kt=0``, ``stages=3``: the keys and values of
  ``lowering.schedules_gpu.gemm_config``, see ``space.GPU_KNOBS``), applied as ``GEMM_OVERRIDE``;
* ``base``: ``einc`` (primitives apply on top of einc's CPU schedule) or ``none`` (on the naive
  loop nest: a TVM bug reduced to ``none`` does not depend on einc's schedules);
* ``oracle``: ``interp`` (compare with the interpreter), ``relabel`` or ``permute`` (metamorphic:
  the program is rewritten by label renaming / operand permutation before it is compiled, and must
  still agree with the interpreter on the original).

Everything is plain data: cases hash, compare and round-trip through JSON (the corpus format) and
through ``pipeline.txt`` (the regression format).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

from einc.ir.jsonform import program_from_json, program_to_json
from einc.ir.nodes import Program

TARGETS = ("llvm", "interp", "cuda-emu")
ORACLES = ("interp", "relabel", "permute")
BASES = ("einc", "none")


@dataclass(frozen=True)
class FuzzPipeline:
    passes: str = ""
    tir: tuple[str, ...] = ()
    sched: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    target: str = "llvm"
    oracle: str = "interp"
    base: str = "einc"  # the schedule the primitives start from: einc's own, or "none" (the naive loop nest)
    gpu_knobs: tuple[str, ...] = ()  # "key=value" GEMM knobs (cuda-emu), one per key, sorted by key

    def __post_init__(self):
        for f in ("tir", "sched", "config"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        object.__setattr__(self, "gpu_knobs", _canonical_knobs(self.gpu_knobs))

    def knob_dict(self) -> dict:
        """``gpu_knobs`` as the dict ``schedules_gpu.GEMM_OVERRIDE`` takes (values typed)."""
        from .space import parse_gpu_knob

        return dict(parse_gpu_knob(k) for k in self.gpu_knobs)

    def replace(self, **kw) -> "FuzzPipeline":
        return replace(self, **kw)

    @property
    def size(self) -> int:
        """How much pipeline there is (the reducer minimizes this)."""
        n_passes = len([p for p in _split_top(self.passes) if p])
        return (n_passes + len(self.tir) + len(self.sched) + len(self.config) + len(self.gpu_knobs)
                + (self.oracle != "interp")
                + (self.base == "einc" and bool(self.sched)))  # primitives on top of einc's schedule count one more

    def to_text(self) -> str:
        return (f"# einc fuzz pipeline (einc.fuzz.case.FuzzPipeline.from_text reads it)\n"
                f"target: {self.target}\n"
                f"oracle: {self.oracle}\n"
                f"base: {self.base}\n"
                f"passes: {self.passes}\n"
                f"tir: {'; '.join(self.tir)}\n"
                f"schedule: {'; '.join(self.sched)}\n"
                f"config: {'; '.join(self.config)}\n"
                + (f"gpu_knobs: {'; '.join(self.gpu_knobs)}\n" if self.gpu_knobs else ""))

    @classmethod
    def from_text(cls, text: str) -> "FuzzPipeline":
        kw: dict = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or ":" not in line:
                continue
            key, val = (s.strip() for s in line.split(":", 1))
            items = tuple(s.strip() for s in val.split(";") if s.strip())
            if key == "passes":
                kw["passes"] = val
            elif key in ("tir", "config", "gpu_knobs"):
                kw[key] = items
            elif key == "schedule":
                kw["sched"] = items
            elif key in ("target", "oracle", "base"):
                allowed = {"target": TARGETS, "oracle": ORACLES, "base": BASES}[key]
                if val not in allowed:
                    from einc.errors import ParseError

                    raise ParseError(f"pipeline {key} {val!r} is not one of {', '.join(allowed)}")
                kw[key] = val
        return cls(**kw)

    def to_json(self) -> dict:
        return {"passes": self.passes, "tir": list(self.tir), "sched": list(self.sched),
                "config": list(self.config), "target": self.target, "oracle": self.oracle, "base": self.base,
                **({"gpu_knobs": list(self.gpu_knobs)} if self.gpu_knobs else {})}

    @classmethod
    def from_json(cls, d: dict) -> "FuzzPipeline":
        return cls(d.get("passes", ""), tuple(d.get("tir", ())), tuple(d.get("sched", ())),
                   tuple(d.get("config", ())), d.get("target", "llvm"), d.get("oracle", "interp"), d.get("base", "einc"),
                   tuple(d.get("gpu_knobs", ())))


def _canonical_knobs(knobs) -> tuple[str, ...]:
    """``key=value`` strings, one per key (the last one wins), sorted by key, written canonically."""
    from .space import format_gpu_knob, parse_gpu_knob

    if isinstance(knobs, dict):
        knobs = [f"{k}={v}" for k, v in knobs.items()]
    got = {}
    for k in knobs:
        key, val = parse_gpu_knob(k)
        got[key] = val
    return tuple(format_gpu_knob(k, got[k]) for k in sorted(got))


def _split_top(s: str) -> list[str]:
    """Split a pass pipeline string at top-level commas (not inside ``{...}``)."""
    out, depth, cur = [], 0, []
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


@dataclass(frozen=True)
class Case:
    """One input: a program (or the text to parse), a pipeline and the seed of the input arrays."""

    program: Program | None = None
    pipeline: FuzzPipeline = field(default_factory=FuzzPipeline)
    src: str | None = None  # .ein text; when set it is parsed in the child (stage "parse")
    seed: int = 0

    def replace(self, **kw) -> "Case":
        return replace(self, **kw)

    def to_json(self) -> dict:
        return {"program": program_to_json(self.program) if self.program is not None else None,
                "src": self.src, "pipeline": self.pipeline.to_json(), "seed": self.seed}

    @classmethod
    def from_json(cls, d: dict) -> "Case":
        prog = program_from_json(d["program"]) if d.get("program") else None
        return cls(prog, FuzzPipeline.from_json(d.get("pipeline") or {}), d.get("src"), int(d.get("seed", 0)))

    @property
    def digest(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:16]

    @property
    def size(self) -> tuple[int, int, int]:
        """(ops + operands + axes, total elements, pipeline size): what the reducer minimizes."""
        if self.program is None:
            return (len(self.src or ""), 0, self.pipeline.size)
        p = self.program
        structure = len(p.body) + len(p.inputs) + sum(len(op.operands) for op in p.body)
        structure += sum(v.type.rank for v in p.inputs)
        elems = sum(v.type.size for v in p.inputs) + sum(op.type.size for op in p.body)
        return (structure, elems, self.pipeline.size)
