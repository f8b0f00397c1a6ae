"""The pipeline search space: einc passes (from the registry), TVM TIR passes, schedule
primitives and PassContext config toggles.  Pure data: nothing here imports TVM; the names are
resolved in the child by ``einc.lowering.fuzz_hooks``.

Schedule primitives are written ``kind(b<block>,l<loop>,...)`` with indices taken modulo the number
of blocks/loops of the module they are applied to, so any primitive applies to any program (TVM
refuses the invalid ones with a ScheduleError, which the hooks record and skip).
"""
from __future__ import annotations

import dataclasses
import random
import types
import typing
from typing import Literal

# ------------------------------------------------------------------------------------------- einc passes


def _einc_registry():
    try:
        from einc.ir.passes import base
    except ImportError:  # pragma: no cover - passes not built yet
        return None
    return base


def _random_option_value(ann, default, rng: random.Random):
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return rng.choice(args)
    if origin is typing.Union or origin is types.UnionType:
        a = rng.choice(args)
        if a is type(None):
            return None
        return _random_option_value(a, default, rng)
    if ann is bool:
        return rng.random() < 0.5
    if ann is int:
        return rng.choice([0, 1, 2, 3, 4, 8, 64, 1024, 1 << 20])
    if ann is float:
        return rng.choice([0.0, 0.5, 1.0, 2.0, 1e6])
    return default


def random_pass(rng: random.Random):
    base = _einc_registry()
    if base is None:
        return None
    names = base.pass_names()
    if not names:
        return None
    for _ in range(5):
        try:
            cls = base.get_pass(rng.choice(names))
        except Exception:  # noqa: BLE001 - a registered pass whose module does not load (yet)
            continue
        kw = {}
        for _key, (field, ann, default) in base.pass_options(cls).items():
            if default is dataclasses.MISSING or rng.random() < 0.4:
                v = _random_option_value(ann, default, rng)
                if v is not dataclasses.MISSING:
                    kw[field] = v
        try:
            return cls(**kw)
        except Exception:  # noqa: BLE001 - an option combination the pass refuses
            continue
    return None


def random_einc_pipeline(rng: random.Random) -> str:
    base = _einc_registry()
    if base is None:
        return ""
    n = rng.choice((0, 1, 2, 3, 4))
    passes = [p for p in (random_pass(rng) for _ in range(n)) if p is not None]
    return base.format_pipeline(passes)


def mutate_einc_pipeline(text: str, rng: random.Random) -> str:
    """Insert, delete, swap, shuffle passes, or change one pass's options: on the pass instances."""
    base = _einc_registry()
    if base is None:
        return text
    try:
        passes = list(base.parse_pipeline(text))
    except Exception:  # noqa: BLE001
        passes = []
    ops = ["insert", "insert"] + (["delete", "swap", "options", "shuffle"] if passes else [])
    op = rng.choice(ops)
    if op == "insert" and len(passes) < 8:
        p = random_pass(rng)
        if p is not None:
            passes.insert(rng.randint(0, len(passes)), p)
    elif op == "delete" and passes:
        passes.pop(rng.randrange(len(passes)))
    elif op == "swap" and len(passes) > 1:
        a, b = rng.sample(range(len(passes)), 2)
        passes[a], passes[b] = passes[b], passes[a]
    elif op == "shuffle":
        rng.shuffle(passes)
    elif op == "options" and passes:
        k = rng.randrange(len(passes))
        cls = type(passes[k])
        opts = base.pass_options(cls)
        if opts:
            _key, (field, ann, default) = rng.choice(list(opts.items()))
            try:
                passes[k] = dataclasses.replace(passes[k], **{field: _random_option_value(ann, default, rng)})
            except Exception:  # noqa: BLE001
                pass
    return base.format_pipeline(passes)


# ------------------------------------------------------------------------------------------- TVM TIR passes

#: TIR passes (``namespace.Name`` or ``namespace.Name(arg)``) that take a schedulable module; they run
#: before TVM's default pipeline.  Weighted towards the ones that rewrite loops and arithmetic.
TIR_PASSES: dict[str, float] = {
    "s_tir.LoopPartition": 3, "s_tir.StmtSimplify": 3, "tirx.StmtSimplify": 2, "tirx.RemoveNoOp": 2,
    "s_tir.CanonicalizeLoop": 2, "s_tir.LowerInitBlock": 2, "s_tir.ConvertBlocksToOpaque": 1,
    "s_tir.CompactBufferAllocation": 2, "s_tir.PlanAndUpdateBufferAllocationLocation": 1,
    "s_tir.LowerOpaqueBlock": 1, "tirx.FlattenBuffer": 1, "tirx.NarrowDataType(32)": 2,
    "tirx.NarrowDataType(16)": 1, "tirx.CommonSubexprElim": 2, "tirx.UnrollLoop": 1,
    "tirx.VectorizeLoop(True)": 1, "tirx.VectorizeLoop(False)": 1, "s_tir.HoistIfThenElse": 1,
    "s_tir.HoistExpression": 1, "s_tir.RenormalizeSplitPattern": 1, "tirx.StorageRewrite": 1,
    "s_tir.RewriteUnsafeSelect": 1, "tirx.ConvertSSA": 1, "s_tir.ConvertSSA": 1,
    "tirx.ForceNarrowIndexToInt32": 1, "s_tir.RemoveStoreUndef": 1, "s_tir.UseAssumeToReduceBranches": 1,
    "tirx.RemoveAssume": 1, "s_tir.LowerMatchBuffer": 1, "s_tir.InjectVirtualThread": 1,
    "s_tir.InjectDoubleBuffer": 1, "s_tir.AnnotateIrregularLoop": 1, "s_tir.InstrumentBoundCheckers": 1,
    "s_tir.UnifyThreadBinding": 1, "s_tir.LiftThreadBinding": 1, "tirx.BF16ComputeLegalize": 1,
}


def random_tir_pass(rng: random.Random) -> str:
    names = list(TIR_PASSES)
    return rng.choices(names, weights=[TIR_PASSES[n] for n in names])[0]


def parse_tir_pass(spec: str) -> tuple[str, str, tuple]:
    """``tirx.NarrowDataType(32)`` -> ("tirx", "NarrowDataType", (32,))."""
    spec = spec.strip()
    args: tuple = ()
    if spec.endswith(")") and "(" in spec:
        spec, raw = spec[:-1].split("(", 1)
        args = tuple(_literal(a) for a in raw.split(",") if a.strip())
    ns, name = spec.rsplit(".", 1)
    if ns not in ("tirx", "s_tir"):
        raise ValueError(f"unknown TIR pass namespace {ns!r} (tirx or s_tir)")
    return ns, name, args


def _literal(text: str):
    text = text.strip()
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    try:
        return int(text)
    except ValueError:
        return text.strip("'\"")


# ------------------------------------------------------------------------------------------- schedule primitives

SCHED_PRIMS: dict[str, float] = {
    "split": 4, "reorder": 3, "fuse": 2, "vectorize": 3, "parallel": 3, "unroll": 2,
    "cache_write": 2, "cache_read": 2, "decompose_reduction": 2, "compute_inline": 1,
    "reverse_compute_inline": 1, "annotate_unroll": 1, "rfactor": 1, "compute_at": 1, "storage_align": 1,
}


def random_sched_prim(rng: random.Random) -> str:
    names = list(SCHED_PRIMS)
    kind = rng.choices(names, weights=[SCHED_PRIMS[n] for n in names])[0]
    b = rng.randrange(4)
    loop = lambda: rng.choice((0, 1, 2, 3, -1, -2))  # noqa: E731
    if kind == "split":
        return f"split(b{b},l{loop()},{rng.choice((2, 3, 4, 8, 16, 5))})"
    if kind in ("reorder",):
        return f"reorder(b{b},l{loop()},l{loop()})"
    if kind in ("fuse",):
        return f"fuse(b{b},l{loop()})"
    if kind in ("vectorize", "parallel", "unroll", "decompose_reduction", "rfactor", "annotate_unroll"):
        return f"{kind}(b{b},l{loop()})"
    if kind in ("cache_write", "cache_read"):
        return f"{kind}(b{b},{rng.randrange(3)})"
    if kind == "compute_at":
        return f"compute_at(b{b},b{rng.randrange(4)},l{loop()})"
    if kind == "storage_align":
        return f"storage_align(b{b},{rng.choice((0, 1))},{rng.choice((4, 8, 16))},{rng.choice((0, 1, 3))})"
    return f"{kind}(b{b})"


def parse_sched_prim(spec: str) -> tuple[str, list]:
    """``split(b0,l1,4)`` -> ("split", [("b", 0), ("l", 1), 4])."""
    spec = spec.strip()
    if not spec.endswith(")") or "(" not in spec:
        raise ValueError(f"bad schedule primitive {spec!r}: write kind(b0,l1,...)")
    kind, raw = spec[:-1].split("(", 1)
    if kind not in SCHED_PRIMS:
        raise ValueError(f"unknown schedule primitive {kind!r}; known: {', '.join(SCHED_PRIMS)}")
    args: list = []
    for a in (x.strip() for x in raw.split(",") if x.strip()):
        if a[0] in "bl" and a[1:].lstrip("-").isdigit():
            args.append((a[0], int(a[1:])))
        else:
            args.append(int(a))
    return kind, args


# ------------------------------------------------------------------------------------------- PassContext config

CONFIGS: dict[str, tuple] = {
    "tirx.disable_vectorize": (True, False),
    "tirx.disable_storage_rewrite": (True, False),
    "tirx.disable_cse_tir": (True, False),
    "tirx.instrument_bound_checkers": (True,),
    "tirx.disable_assert": (True,),
}


def random_config(rng: random.Random) -> str:
    key = rng.choice(list(CONFIGS))
    return f"{key}={int(rng.choice(CONFIGS[key]))}"


def parse_config(spec: str) -> tuple[str, object]:
    key, _, val = spec.partition("=")
    key = key.strip()
    if key not in CONFIGS:
        raise ValueError(f"unknown config {key!r}; known: {', '.join(CONFIGS)}")
    return key, bool(int(val.strip() or "1"))


# ------------------------------------------------------------------------------------------- GPU GEMM knobs

#: einc's own GEMM schedule knobs (``lowering.schedules_gpu.gemm_config``) and the values the fuzzer
#: draws for the ``cuda-emu`` target; a case carries them as ``key=value`` strings (booleans as 0/1)
GPU_KNOBS: dict[str, tuple] = {
    "ty": (8, 16), "tx": (8, 16), "tm": (4, 8), "tn": (4, 8), "bk": (8, 16), "kt": (True, False),
    "stages": (1, 2, 3), "async": (True, False), "unroll_k": (True, False), "split_k": (True, False),
    "tile_products": (True, False), "tc_layout": (True, False),
}


def parse_gpu_knob(spec: str) -> tuple[str, object]:
    """``stages=3`` -> ("stages", 3); ``kt=0`` -> ("kt", False).  Unknown keys and values raise."""
    key, sep, val = str(spec).partition("=")
    key, val = key.strip(), val.strip()
    if key not in GPU_KNOBS or not sep:
        raise ValueError(f"unknown GPU knob {spec!r}; write key=value with a key of {', '.join(GPU_KNOBS)}")
    allowed = GPU_KNOBS[key]
    if isinstance(allowed[0], bool):
        if val.lower() in ("1", "true"):
            return key, True
        if val.lower() in ("0", "false"):
            return key, False
    elif val.lstrip("-").isdigit() and int(val) in allowed:
        return key, int(val)
    raise ValueError(f"GPU knob {key} takes {', '.join(str(int(v)) for v in allowed)}; got {val!r}")


def format_gpu_knob(key: str, val) -> str:
    return f"{key}={int(val)}"


def random_gpu_knob(rng: random.Random, key: str | None = None) -> str:
    key = key or rng.choice(list(GPU_KNOBS))
    return format_gpu_knob(key, rng.choice(GPU_KNOBS[key]))
