"""Execute one fuzz case, stage by stage, and return its outcome and feedback.

``execute(case)`` is what a child process runs (``einc.fuzz.isolate``); it may also run in-process
(tests, the reproducer of a regression folder).  The stages, in order:

    parse     .ein text -> Program (only when the case carries text)
    oracle    ir.interp on seeded inputs: the reference
    passes    the einc pass pipeline; its result must still agree with the reference
    lower / schedule / tir_pass / codegen   a fuzzed TVM build (``lowering.fuzz_hooks``)
    run       the compiled kernel on the same inputs, compared with the reference

On the ``cuda-emu`` target the build is einc's own CUDA lowering (``fuzz_hooks.build_cuda_emu``, with the
case's GEMM knobs) and ``codegen`` also covers compiling the CUDA C for the CPU emulator (the host
compiler refusing it is a ``compile_error``); ``run`` runs it in the emulator (a failing kernel program
is a ``crash``, one past ``fuzz_hooks.EMU_RUN_TIMEOUT_S`` a ``timeout``).

Outcome rules (see ``outcome.Outcome``): an einc ``Unsupported`` is ``rejected``; a frontend error on
generated text is ``rejected``; a ``CompileError`` is ``compile_error``; any other exception out of
einc's code is ``einc_internal_error``; an exception while the kernel runs is ``crash``; numbers
outside the dtype's tolerance are ``wrong_result``.  Crashes by signal and hangs are classified by
the parent (``outcome_from_child``), in the stage the child last marked.

Feedback: the branch arcs of einc's own code (``coverage``, started and stopped around the case),
plus strings naming TVM passes that changed the module, skipped schedule primitives and the outcome.
"""
from __future__ import annotations

import os
import random
import numpy as np

from einc.errors import CompileError, EincError, PipelineError, Unsupported
from einc.ir.realify import has_complex, realify
from einc.ir import interp
from einc.ir.nodes import Cast, Einsum, Program, einsum_sizes

from .case import Case
from .isolate import ChildResult, mark
from .outcome import Outcome

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(_HERE)
#: the einc source folders whose branch coverage is the feedback (the fuzzer itself is left out)
COVERED = [os.path.join(ROOT, d) for d in ("einc", "ir", "frontend", "lowering")]
OMIT = [os.path.join(ROOT, "fuzz", "*"), os.path.join(ROOT, "einc", "testing.py"),
        os.path.join(ROOT, "einc", "commands", "*"), os.path.join(ROOT, "lowering", "fuzz_hooks.py")]

EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 2.0 ** -23, "float64": 2.0 ** -52,
       "complex64": 2.0 ** -23, "complex128": 2.0 ** -52}
#: the spacing of each float dtype's subnormals: a value rounded there is off by up to half of it,
#: however small the value, which a bound relative to the values alone misses
TINY = {"float16": 2.0 ** -24, "bfloat16": 2.0 ** -133, "float32": 2.0 ** -149, "float64": 2.0 ** -1074,
        "complex64": 2.0 ** -149, "complex128": 2.0 ** -1074}


# ------------------------------------------------------------------------------------------- inputs


def make_inputs(prog: Program, seed: int) -> list[np.ndarray]:
    """Seeded input arrays: small integers, floats in [-1, 1), random bools."""
    from einc.ir.types import np_dtype

    rng = np.random.default_rng(seed)
    out = []
    for v in prog.inputs:
        dt, shape = v.type.dtype, v.type.shape
        if dt == "bool":
            a = rng.random(shape) < 0.5
        elif dt.startswith("uint"):
            a = rng.integers(0, 5, size=shape)
        elif dt.startswith("int"):
            a = rng.integers(-3, 4, size=shape)
        elif dt.startswith("complex"):
            a = rng.uniform(-1, 1, size=shape) + 1j * rng.uniform(-1, 1, size=shape)
        else:
            a = rng.uniform(-1, 1, size=shape)
        out.append(np.asarray(a).astype(np_dtype(dt)))
    return out


def _abs_bounds(prog: Program, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per value (inputs included) and element, the sum of |products| (float64, casts as identity):
    the rounding scale."""
    env = {v.name: np.abs(np.asarray(a).astype(np.complex128 if np.iscomplexobj(a) else np.float64))
           for v, a in zip(prog.inputs, inputs)}
    for op in prog.body:
        xs = [env[o] for o in op.operands]
        if isinstance(op, Cast):
            env[op.result] = xs[0]
        else:
            env[op.result] = np.asarray(np.einsum(op.subscripts, *xs, optimize=False) if xs else np.zeros(()))
    return {name: np.real(a).astype(np.float64) for name, a in env.items()}


#: bits of integers a float dtype (each part of a complex one) holds exactly
_EXACT_BITS = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53, "complex64": 24, "complex128": 53}


def _integral(a: np.ndarray) -> bool:
    return bool(np.all(np.mod(np.real(a), 1) == 0) and np.all(np.mod(np.imag(a), 1) == 0))


def _unstable(prog: Program, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Per output, the elements that depend on a float turned into a bool or an integer (a cast, or
    an einsum of a non-float dtype over float operands) where the float lies within its rounding
    bound of where that conversion jumps (0 for bool, the integers for truncation): a compiled
    kernel that sums in another order may land on the other side (``cast(z, bool)`` of a z the
    interpreter computes as 0.0 and TVM as 8.6e-16), so such elements prove nothing.

    A computed float is exact, and has no rounding bound, when its operands are exact and its
    values are integers that the dtype holds exactly (bound below ``2**bits``).  A complex value
    turned into a bool is near its jump when both parts are near 0 (the real form tests each part),
    into an integer when its real part is near one."""
    types = prog.types()

    def is_inexact(dt: str) -> bool:  # float or complex
        return dt in EPS

    absb = _abs_bounds(prog, inputs)
    env, exact, tol, amb = {}, {}, {}, {}
    for v, a in zip(prog.inputs, inputs):
        a = np.asarray(a)
        env[v.name] = a
        exact[v.name] = not is_inexact(v.type.dtype) or _integral(a)
        tol[v.name] = np.zeros(a.shape)  # inputs are what they are: nothing rounded yet
        amb[v.name] = np.zeros(a.shape, bool)
    for op in prog.body:
        dt = op.type.dtype
        xs = [env[o] for o in op.operands]
        with np.errstate(all="ignore"):
            val = np.asarray(interp.eval_op(op, xs))
        env[op.result] = val
        bound = absb[op.result]
        exact[op.result] = all(exact[o] for o in op.operands) and (
            not is_inexact(dt) or (_integral(val) and bool(np.all(bound < 2.0 ** _EXACT_BITS[dt]))))
        if is_inexact(dt) and not exact[op.result]:
            tol[op.result] = _tolerance(prog, bound, np.abs(val).astype(np.float64))
        else:
            tol[op.result] = np.zeros(val.shape)
        # which operand elements are ambiguous for this op: their own, or a float near a jump
        masks = []
        for o in op.operands:
            m = amb[o]
            if not is_inexact(dt) and is_inexact(types[o].dtype) and np.any(tol[o] > 0):
                x = env[o]
                if np.iscomplexobj(x):
                    near = np.maximum(np.abs(x.real), np.abs(x.imag)) if dt == "bool" else \
                        np.abs(x.real - np.round(x.real))
                else:
                    x = x.astype(np.float64)
                    near = np.abs(x) if dt == "bool" else np.abs(x - np.round(x))
                m = m | (near <= tol[o])
            masks.append(m)
        if isinstance(op, Cast):
            amb[op.result] = masks[0]
        else:
            res = np.zeros(val.shape, bool)
            for i, m in enumerate(masks):
                if np.any(m):
                    args = [m.astype(np.float64) if k == i else np.ones(np.shape(env[o]))
                            for k, o in enumerate(op.operands)]
                    res |= np.asarray(np.einsum(op.subscripts, *args, optimize=False)) > 0
            amb[op.result] = res
    return [amb[o] for o in prog.outputs]


def _tolerance(prog: Program, bound: np.ndarray, val: np.ndarray) -> np.ndarray:
    """How far a compiled kernel's ``val`` may lie from the interpreter's, per element: rounding
    relative to the sum of |products| ``bound`` and to the value, in the program's coarsest float
    dtype, plus that dtype's subnormal spacing for each term (a float16 intermediate the kernel
    keeps in float32 where the interpreter rounds it to 7.7e-7 is one subnormal step away)."""
    types = prog.types().values()
    eps = max([EPS.get(t.dtype, 0.0) for t in types] + [0.0])
    tiny = max([TINY.get(t.dtype, 0.0) for t in types] + [0.0])
    terms = _terms(prog)
    scale = max(1.0, float(bound.max())) if bound.size else 1.0
    return 4 * eps * terms * bound + 4 * eps * np.abs(val) + 4 * terms * tiny * scale + 1e-30


def _terms(prog: Program) -> int:
    types = prog.types()
    n = 2
    for op in prog.body:
        if isinstance(op, Einsum):
            sz = einsum_sizes(op, [types[o] for o in op.operands])
            k = 1
            for c in op.contracted():
                k *= max(1, sz[c])
            n += k + len(op.operands)
        else:
            n += 1
    return n


def compare(prog: Program, inputs, ref: list[np.ndarray], got: list[np.ndarray]) -> dict | None:
    """``None`` when ``got`` matches ``ref`` (exact for integers and bool, within a rounding bound
    for floats, except elements ``_unstable`` leaves open); otherwise a description of the first
    mismatch."""
    types = prog.types()
    bound = unstable = None
    for j, (name, r, g) in enumerate(zip(prog.outputs, ref, got)):
        dt = types[name].dtype
        r, g = np.asarray(r), np.asarray(g)
        if r.shape != g.shape:
            return {"output": j, "dtype": dt, "why": f"shape {g.shape} != {r.shape}"}
        if r.size == 0:
            continue
        if dt in EPS:
            if bound is None:
                bounds = _abs_bounds(prog, inputs)
                bound = [bounds[o] for o in prog.outputs]
            rr = r.astype(np.complex128 if np.iscomplexobj(r) else np.float64)
            gg = g.astype(rr.dtype)
            tol = _tolerance(prog, bound[j], rr)
            bad = ~((np.abs(gg - rr) <= tol) | (np.isnan(rr) & np.isnan(gg)) | (rr == gg))
        else:
            bad = r != g
        if np.any(bad):
            if unstable is None:
                unstable = _unstable(prog, inputs)
            bad &= ~unstable[j]
        if np.any(bad):
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            return {"output": j, "dtype": dt, "index": list(idx), "expected": repr(r[idx].item()),
                    "got": repr(g[idx].item()), "n_bad": int(np.count_nonzero(bad)), "size": int(r.size)}
    return None


# ------------------------------------------------------------------------------------------- the stages


class _Done(Exception):
    def __init__(self, outcome: Outcome):
        self.outcome = outcome


def _classify(stage: str, e: BaseException) -> Outcome:
    msg = str(e)
    name = type(e).__name__
    if isinstance(e, Unsupported):
        return Outcome("rejected", stage, name, msg)
    if stage == "parse" and isinstance(e, EincError):
        return Outcome("rejected", stage, name, msg)
    if isinstance(e, PipelineError) and stage == "passes":
        return Outcome("rejected", stage, name, msg)
    if isinstance(e, CompileError):
        # a CompileError says which TVM step failed; keep the exception type TVM raised
        cause = type(e.__cause__).__name__ if e.__cause__ is not None else name
        return Outcome("compile_error", stage, cause, msg)
    if stage == "run":
        return Outcome("crash", stage, name, msg)
    return Outcome("einc_internal_error", stage, name, msg)


def _metamorphic(prog: Program, oracle: str, seed: int) -> Program:
    from .mutate import permute_operands, relabel

    rng = random.Random(seed ^ 0x5EED)
    if oracle == "relabel":
        return relabel(prog, rng)
    if oracle == "permute":
        return permute_operands(prog, rng)
    return prog


def _run_case(case: Case, features: set, hooks: dict) -> Outcome:
    stage = "parse"
    pl = case.pipeline
    try:
        if case.src is not None:
            mark("parse")
            from einc.frontend.program import parse_program

            prog = parse_program(case.src)
        else:
            prog = case.program
        stage = "oracle"
        mark(stage)
        inputs = make_inputs(prog, case.seed)
        with np.errstate(all="ignore"):
            ref = interp.run(prog, *inputs)
        stage = "passes"
        mark(stage)
        if pl.passes.strip():
            from einc.ir.passes import run_pipeline

            prog2 = run_pipeline(prog, pl.passes)
            features.add(f"passes:changed={prog2 != prog}")
            with np.errstate(all="ignore"):
                got = interp.run(prog2, *inputs)
            bad = compare(prog, inputs, ref, got)
            if bad:
                return _wrong("passes", bad, pl)
        else:
            prog2 = prog
        prog3 = _metamorphic(prog2, pl.oracle, case.seed)
        if pl.target == "interp":
            with np.errstate(all="ignore"):
                got = interp.run(prog3, *inputs)
            bad = compare(prog, inputs, ref, got)
            return _wrong("run", bad, pl) if bad else Outcome("ok", "done")
        stage = "lower"
        from einc.lowering import fuzz_hooks

        def on_stage(s):
            nonlocal stage
            stage = s
            mark(s)

        real = None
        if has_complex(prog3):  # TVM computes complex values as their parts, as einc.compile does
            real = realify(prog3)
            prog3, inputs_k = real.program, real.inputs(inputs)
            features.add("complex")
        else:
            inputs_k = inputs
        if pl.target == "cuda-emu":
            return _run_cuda_emu(prog, prog3, inputs, inputs_k, ref, pl, features, hooks, on_stage, real)
        build = hooks.get("build", fuzz_hooks.build_fuzzed)
        built = build(prog3, tir=pl.tir, sched=pl.sched, config=pl.config, target=None, mark=on_stage,
                      features=features, einc_schedule=pl.base != "none")
        stage = "run"
        mark(stage)
        got = hooks.get("run", fuzz_hooks.run_built)(built, inputs_k)
        got = got if real is None else real.outputs(got)
        bad = compare(prog, inputs, ref, got)
        if bad:
            return _wrong("run", bad, pl)
        return Outcome("ok", "done")
    except Exception as e:  # noqa: BLE001 - every exception becomes a value
        if stage == "passes" and pl.passes.strip() and _is_option_refusal(e):
            return Outcome("rejected", stage, type(e).__name__, str(e))
        return _classify(stage, e)


def _run_cuda_emu(prog, prog3, inputs, inputs_k, ref, pl, features, hooks, on_stage, real) -> Outcome:
    """The ``cuda-emu`` target: einc's CUDA build (with the case's GEMM knobs), its CUDA C compiled
    for the CPU (stage ``codegen``) and run by ``lowering.cuda_emulator`` (stage ``run``).  Exceptions
    go back to ``_run_case``, which classifies them in the stage reached; a kernel program that runs
    past its time is a hang (``timeout@run``)."""
    from einc.lowering import fuzz_hooks

    if pl.tir or pl.sched or pl.config:
        raise Unsupported("the cuda-emu target takes no fuzzed TIR passes, schedule primitives or configs")
    build = hooks.get("build_cuda", fuzz_hooks.build_cuda_emu)
    built = build(prog3, gpu_knobs=pl.knob_dict(), mark=on_stage, features=features)
    try:
        got = hooks.get("run_cuda", fuzz_hooks.run_cuda_emu)(built, inputs_k, mark=on_stage)
    except fuzz_hooks.EmulatorTimeout as e:
        return Outcome("timeout", "run", "", str(e))
    got = got if real is None else real.outputs(got)
    bad = compare(prog, inputs, ref, got)
    if bad:
        return _wrong("run", bad, pl)
    return Outcome("ok", "done")


def _is_option_refusal(e: Exception) -> bool:
    return isinstance(e, PipelineError)


def _wrong(stage: str, bad: dict, pl) -> Outcome:
    """A ``wrong_result`` at ``stage``; its detail names the target and whether the case went through
    einc's own compile path or a fuzzed TVM pipeline (TIR passes, schedule primitives, configs): both
    are part of its signature."""
    via = "fuzzed" if (pl.tir or pl.sched or pl.config) else "einc"
    return Outcome("wrong_result", stage, "", _mismatch_text(bad), {**bad, "target": pl.target, "via": via})


def _mismatch_text(bad: dict) -> str:
    if "why" in bad:
        return f"output {bad['output']} ({bad['dtype']}): {bad['why']}"
    return (f"output {bad['output']} ({bad['dtype']}) at {tuple(bad['index'])}: expected {bad['expected']}, "
            f"got {bad['got']} ({bad['n_bad']} of {bad['size']} elements differ)")


def _arcs(cov) -> set:
    data = cov.get_data()
    out = set()
    for f in data.measured_files():
        rel = os.path.relpath(f, ROOT)
        for a, b in data.arcs(f) or ():
            out.add((rel, a, b))
    return out


# Coverage in forked children.  A Coverage started per child pays for its own start-up and for
# deciding, file by file, what to trace (~0.3 s a case here).  ``start_parent_coverage`` starts one
# Coverage in the parent instead: children inherit the running tracer with its warm file cache, empty
# the collector's per-file arc sets on entry and read them back on exit (~0.1 s a case).  That reads
# ``Collector.data`` (coverage's packed-arc sets), so it is checked and falls back to a per-child
# Coverage when the internals differ.
_PARENT_COV = None


def start_parent_coverage() -> bool:
    """Start the campaign-wide Coverage (idempotent); False when coverage cannot be shared this way."""
    global _PARENT_COV
    if _PARENT_COV is not None:
        return True
    import coverage as _coverage

    cov = _coverage.Coverage(branch=True, data_file=None, source=COVERED, omit=OMIT, config_file=False)
    cov.start()
    col = getattr(cov, "_collector", None)
    if col is None or not isinstance(getattr(col, "data", None), dict) or not getattr(col.core, "packed_arcs", False):
        cov.stop()
        return False
    _PARENT_COV = cov
    return True


def coverage_busy() -> bool:
    """Whether the campaign-wide Coverage's tracer is inside its own Python code, holding its data
    lock (an exception raised there leaves the lock held)."""
    lock = getattr(getattr(_PARENT_COV, "_collector", None), "data_lock", None)
    return bool(lock is not None and lock.locked())


def stop_parent_coverage() -> None:
    global _PARENT_COV
    if _PARENT_COV is not None:
        _PARENT_COV.stop()
        _PARENT_COV = None


def _unpack(packed: int) -> tuple[int, int]:
    l1 = packed & 0xFFFFFFF
    l2 = (packed & (0xFFFFFFF << 28)) >> 28
    if packed & (1 << 56):
        l1 = -l1
    if packed & (1 << 57):
        l2 = -l2
    return l1, l2


def _shared_arcs(data: dict) -> set:
    out = set()
    for f, packed in data.items():
        if not packed:
            continue
        rel = os.path.relpath(f, ROOT)
        for p in packed:
            a, b = _unpack(p)
            out.add((rel, a, b))
    return out


def warm_up(target: str = "llvm", cuda: bool = False) -> None:
    """Import everything a case needs, so forked children do not each import it again
    (``target="interp"`` leaves TVM out; ``cuda=True`` also readies the CUDA lowering)."""
    import coverage  # noqa: F401

    import einc.ir.interp  # noqa: F401
    from einc.ir import passes  # noqa: F401

    from . import mutate  # noqa: F401
    try:
        if target == "interp":
            raise ImportError("no TVM for the interp target")
        import einc.frontend.program  # noqa: F401
        import einc.lowering.fuzz_hooks  # noqa: F401
        import einc.lowering.lower  # noqa: F401
        import einc.lowering.schedules_cpu  # noqa: F401
        import tvm.ir.instrument  # noqa: F401
        import tvm.s_tir.pipeline  # noqa: F401
        if cuda or target == "cuda-emu":
            _warm_cuda()
    except ImportError:  # pragma: no cover - a tree without TVM: interp-only campaigns still run
        pass
    try:
        from einc.ir.passes import base

        for n in base.pass_names():
            try:
                base.get_pass(n)
            except Exception:  # noqa: BLE001
                pass
    except ImportError:  # pragma: no cover
        pass


def _warm_cuda() -> None:
    """Import the CUDA schedules and let TVM load what a CUDA build needs (the first CUDA build in a
    process takes seconds: paid once in the parent, not in every child)."""
    import einc.lowering.cuda_emulator  # noqa: F401
    import einc.lowering.schedules_gpu  # noqa: F401
    from einc.ir.nodes import single_einsum
    from einc.ir.types import TensorType
    from einc.lowering import fuzz_hooks

    try:
        fuzz_hooks.build_cuda_emu(single_einsum("ik,kj->ij", [TensorType((16, 8), "float32"),
                                                             TensorType((8, 16), "float32")]))
    except Exception:  # noqa: BLE001 - a broken CUDA path shows up in the cases, not here
        pass


def execute(case: Case, *, coverage: bool = True, faults: tuple = (), hooks: dict | None = None) -> dict:
    """Run ``case`` (normally inside a child); returns ``{"outcome", "features", "arcs"}``.

    ``faults`` names fault injections (``einc.fuzz.faults``) applied before the case runs.
    """
    features: set = set()
    hooks = dict(hooks or {})
    if faults:
        from . import faults as _faults

        _faults.apply(faults)
    cov = shared = None
    if coverage and _PARENT_COV is not None:
        shared = _PARENT_COV._collector.data
        for s in shared.values():
            s.clear()
    elif coverage:
        import coverage as _coverage

        cov = _coverage.Coverage(branch=True, data_file=None, source=COVERED, omit=OMIT, config_file=False)
        cov.start()
    try:
        outcome = _run_case(case, features, hooks)
    finally:
        if cov is not None:
            cov.stop()
    if shared is not None:
        arcs = _shared_arcs(shared)
    else:
        arcs = _arcs(cov) if cov is not None else set()
    features.add(f"outcome:{outcome.key}")
    return {"outcome": outcome.to_json(), "features": sorted(features), "arcs": arcs}


# ------------------------------------------------------------------------------------------- in a child


def outcome_from_child(res: ChildResult) -> tuple[Outcome, set, set]:
    """Turn what a child reported into ``(outcome, features, arcs)`` (crash/timeout placed in a stage)."""
    import signal as _signal

    stage = res.last_stage if res.last_stage in ("parse", "oracle", "passes", "lower", "schedule", "tir_pass",
                                                "codegen", "run") else "parse"
    if res.status == "ok" and isinstance(res.value, dict):
        v = res.value
        return Outcome.from_json(v["outcome"]), set(v.get("features", ())), set(v.get("arcs", ()))
    if res.status == "timeout":
        return Outcome("timeout", stage, "", f"no answer after {res.wall_s:.1f}s"), {f"outcome:timeout@{stage}"}, set()
    if res.status == "crash":
        sig = _signal.Signals(res.signal).name if res.signal else f"exit{res.exit_code}"
        head = next((ln.strip() for ln in res.stderr.splitlines() if "tvm::" in ln or "Check failed" in ln), "")
        return (Outcome("crash", stage, sig, head or res.message, {"stderr_tail": res.stderr[-2000:]}),
                {f"outcome:crash@{stage}"}, set())
    # the harness itself raised (it catches everything, so this is a fuzzer bug or a fault hook)
    return Outcome("einc_internal_error", stage, res.exc_type, res.message), {f"outcome:error@{stage}"}, set()


def run_case_isolated(case: Case, *, timeout: float = 30.0, coverage: bool = True, faults: tuple = ()):
    """``execute`` in a forked child: ``(outcome, features, arcs, ChildResult)``; never raises for the case."""
    from .isolate import run_isolated

    res = run_isolated(execute, case, timeout=timeout, coverage=coverage, faults=faults)
    out, feats, arcs = outcome_from_child(res)
    return out, feats, arcs, res

