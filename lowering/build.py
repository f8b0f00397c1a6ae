"""Build: a verified einc ``Program`` -> a compiled TVM runtime module with ``main``.

Stages, each timed into ``Built.timings`` and each failure reported as ``CompileError`` naming it:

    lower     ir -> one TE PrimFunc (``lowering.lower``)
    schedule  per-step CPU schedules (``lowering.schedules_cpu``), or none with ``schedule=False``
    compile   ``tvm.compile`` (TIR pipeline + LLVM codegen)

Zero-size programs are refused here (``Unsupported``): ``einc.kernel`` answers them without TVM.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from einc.errors import CompileError, EincError, Unsupported
from einc.ir.nodes import Program

from . import target as _target


@dataclass
class Built:
    program: Program
    target: str  # canonical JSON of the TVM target
    rt_mod: object  # tvm.runtime.Module with the function "main"
    mod: object = None  # the scheduled IRModule (None for a module loaded from disk)
    lowered: object = None  # lower.Lowered
    plan: list = field(default_factory=list)  # per step: (block, shape class, schedule description)
    timings: dict = field(default_factory=dict)
    tvm_version: str = ""
    #: "element": parameters declared element-aligned, any address is safe; None: the code assumes
    #: 64-byte aligned arrays (``einc.kernel`` copies others)
    param_align: str | None = None

    def tir(self) -> str:
        """The scheduled TensorIR of ``main`` as TVMScript."""
        if self.mod is None:
            raise Unsupported("this kernel was loaded from a library: its TIR is not available")
        return self.mod.script()

    @property
    def main(self):
        return self.rt_mod["main"]

    def run(self, in_arrays, out_arrays) -> None:
        """Call ``main(*in_arrays, *out_arrays)``; arrays are TVM tensors or C-contiguous numpy
        arrays of the storage dtypes, at any address (CPU parameters are element-aligned; see
        ``einc.kernel`` for a checked wrapper)."""
        self.main(*in_arrays, *out_arrays)

    def export(self, path: str) -> None:
        self.rt_mod.export_library(path)


def _stage(name: str, fn, *args, **kw):
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kw)
    except EincError:
        raise
    except Exception as e:  # noqa: BLE001 - TVM raises builtin types, InternalError, ScheduleError
        msg = str(e).strip().splitlines()
        head = next((ln for ln in msg if ln.startswith("Error message")), None) or \
            next((ln for ln in msg if "rror" in ln or "Check failed" in ln), msg[-1] if msg else "")
        raise CompileError(f"TVM failed in stage '{name}': {type(e).__name__}: {head.strip()[:300]}") from e
    return out, time.perf_counter() - t0


def _ms_build(mod, target, _params):
    # MetaSchedule's default build function first imports tvm.s_tir.tensor_intrin (~40 s), longer
    # than the builder's timeout, so every trial would fail: build without it
    from ._tvm import remove_weight_layout_rewrite_block, tvm

    return tvm.tirx.build(remove_weight_layout_rewrite_block(mod), target=target)


def tune_dir_default() -> str:
    import os

    env = os.environ.get("EINC_TUNE_DIR")
    if env:
        return env
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir("einc"), "tune")


def verbose() -> bool:
    import os

    return os.environ.get("EINC_VERBOSE", "").strip() not in ("", "0")


class _quiet_unless_verbose:
    """Silence MetaSchedule while tuning (its per-round tables go to stdout/stderr from Python
    loggers and from C++) unless ``EINC_VERBOSE=1``: file descriptors 1 and 2 point to a temp
    file meanwhile, whose last lines are printed if tuning fails.  (Its own logs stay in the
    tuning work_dir.)"""

    def __enter__(self):
        import logging
        import sys
        import tempfile

        self.active = not verbose()
        if not self.active:
            return self
        self.loggers = []
        for name in ("tvm.s_tir.meta_schedule", "tvm.meta_schedule"):
            lg = logging.getLogger(name)
            self.loggers.append((lg, lg.level))
            lg.setLevel(logging.WARNING)
        sys.stdout.flush()
        sys.stderr.flush()
        import os

        self.log = tempfile.TemporaryFile(mode="w+b")
        self.saved = [os.dup(1), os.dup(2)]
        os.dup2(self.log.fileno(), 1)
        os.dup2(self.log.fileno(), 2)
        # Python-level streams too (they may not be fds 1/2: pytest, notebooks)
        self.streams = (sys.stdout, sys.stderr)
        self.text = open(os.dup(self.log.fileno()), "w", buffering=1, errors="replace")
        sys.stdout = sys.stderr = self.text
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.active:
            return False
        import os
        import sys

        try:
            self.text.flush()
        except Exception:  # noqa: BLE001
            pass
        sys.stdout, sys.stderr = self.streams
        self.text.close()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        for lg, level in self.loggers:
            lg.setLevel(level)
        if exc_type is not None:
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace").strip().splitlines()[-20:]
            if tail:
                print("\n".join(tail), file=sys.stderr)
        self.log.close()
        return False


def _tune(low, tvm_target, trials: int, work_dir: str | None):
    """MetaSchedule over the unscheduled PrimFunc; the database persists in ``work_dir``.

    Returns the best scheduled IRModule, or None when tuning found nothing that builds.
    """
    import os

    from ._tvm import meta_schedule, tvm

    ms = meta_schedule()

    work_dir = work_dir or tune_dir_default()
    os.makedirs(work_dir, exist_ok=True)
    mod = tvm.IRModule({"main": low.func})
    cores = int(tvm_target.attrs.get("num-cores", 1)) if "num-cores" in tvm_target.attrs else 1
    if os.path.exists(os.path.join(work_dir, "database_tuning_record.json")):
        db = ms.database.JSONDatabase(work_dir=work_dir)
        sch = ms.tir_integration.compile_tir(db, mod, tvm_target)
        if sch is not None:  # tuned before: replay the best record, no new trials
            return sch.mod
    with _quiet_unless_verbose():
        db = ms.tune_tir(
            mod, tvm_target, work_dir=work_dir, max_trials_global=trials, num_trials_per_iter=min(trials, 16),
            builder=ms.builder.LocalBuilder(max_workers=1, timeout_sec=120, f_build=_ms_build),
            runner=ms.runner.LocalRunner(timeout_sec=60),
            strategy=ms.search_strategy.EvolutionarySearch(population_size=64, genetic_num_iters=2),
            cost_model="random", num_tuning_cores=max(1, cores), seed=0)
    sch = ms.tir_integration.compile_tir(db, mod, tvm_target)
    return None if sch is None else sch.mod


def _lower_cpu(prog: Program, plans: dict):
    """``lower.lower`` with the parameters declared element-aligned (``_tvm.element_aligned``):
    the kernel then runs on any C-contiguous array, whatever its address, without a copy."""
    from . import lower as _lower
    from ._tvm import element_aligned

    low = _lower.lower(prog, plans)
    try:
        low.func = element_aligned(low.func)
        low.param_align = "element"
    except Exception:  # noqa: BLE001 - TVMScript cannot round-trip it (a value named like a Python
        low.param_align = None  # keyword): keep align 64; Kernel then copies unaligned arrays
    return low


def schedule_only(prog: Program, target=None):
    """The scheduled IRModule ``build`` would compile (hand schedules), without compiling it: the TIR
    of a kernel the cache loaded from disk."""
    from . import schedules_cpu

    tjson = _target.resolve(target)
    low = _lower_cpu(prog, schedules_cpu.plan_steps(prog, tjson))
    return schedules_cpu.schedule(low, tjson)[0]


def build(prog: Program, target=None, *, schedule: bool = True, tune: int = 0,
          tune_dir: str | None = None) -> Built:
    """Lower, schedule and compile ``prog`` for ``target`` (``None``/"llvm": the host CPU).

    ``tune=N`` (N > 0) runs MetaSchedule for N trials over the whole PrimFunc instead of the hand
    schedules (``tune_dir``, default ``$EINC_TUNE_DIR`` or the user cache, keeps its database so a
    second build of the same program replays the best schedule); if tuning finds nothing, the hand
    schedules are used.  Tuning needs ``psutil`` and ``cloudpickle`` and takes minutes.
    """
    from einc.ir.verify import verify

    from . import lower as _lower
    from ._tvm import VERSION, compile_mod, tvm

    verify(prog)
    tjson = _target.resolve(target)
    # --- cuda (gpu helper) ---
    if _target.kind(tjson) == "cuda":
        if _lower.has_zero_size(prog):
            raise Unsupported("program has a zero-size value; einc.kernel runs such programs without TVM")
        return _build_cuda(prog, tjson, schedule)
    # --- end cuda ---
    if _target.kind(tjson) != "llvm":
        raise Unsupported(f"einc.lowering.build compiles CPU (llvm) targets; got {tjson}")
    if _lower.has_zero_size(prog):
        raise Unsupported("program has a zero-size value; einc.kernel runs such programs without TVM")
    timings = {}
    tvm_target = _target.to_tvm(tjson)
    plans = {}
    if tune and tune > 0:
        low, timings["lower"] = _stage("lower", _lower_cpu, prog, {})
        tuned, timings["tune"] = _stage("tune", _tune, low, tvm_target, int(tune), tune_dir)
        if tuned is not None:
            plan = [(s.block, "tuned", f"MetaSchedule, {tune} trials") for s in low.steps]
            ex, timings["compile"] = _stage("compile", compile_mod, tuned, tvm_target)
            timings["schedule"] = 0.0
            return Built(prog, tjson, ex.mod, tuned, low, plan, timings, VERSION, low.param_align)
    if schedule:
        from . import schedules_cpu

        plans = schedules_cpu.plan_steps(prog, tjson)
    low, timings["lower"] = _stage("lower", _lower_cpu, prog, plans)
    if schedule:
        (mod, plan), timings["schedule"] = _stage("schedule", schedules_cpu.schedule, low, tjson)
    else:
        mod, plan = tvm.IRModule({"main": low.func}), [(s.block, "none", "naive loop nest") for s in low.steps]
        timings["schedule"] = 0.0
    ex, timings["compile"] = _stage("compile", compile_mod, mod, tvm_target)
    return Built(prog, tjson, ex.mod, mod, low, plan, timings, VERSION, getattr(low, "param_align", None))


# --- cuda (gpu helper) ---------------------------------------------------------------------------


def _build_cuda(prog: Program, tjson: str, schedule: bool, mark=lambda stage: None, fallback: bool = True) -> Built:
    """Lower, schedule (``schedules_gpu``; ``schedule=False`` only binds loops to threads, the GPU
    equivalent of the naive loop nest) and generate CUDA C.  Works without a GPU: the binary is made
    by NVRTC/nvcc when the module is first loaded where a driver exists.  ``mark`` is told each stage
    as it starts ("lower", "schedule", "codegen"; the fuzzer's stage names).

    When einc's schedule fails to generate code (a TVM check, or more shared memory than a kernel
    may declare), the function is scheduled by TVM's dlight rules instead and the plan says why
    (``fallback=False``: the error is raised, as the fuzzer wants it)."""
    from . import lower as _lower
    from . import schedules_gpu
    from ._tvm import VERSION, tvm

    from .tc_layout import for_tensor_cores

    timings = {}
    mark("lower")
    given = {op.result for op in prog.body}
    prog = for_tensor_cores(prog)  # float16/bfloat16 contractions in layouts WMMA takes
    low, timings["lower"] = _stage("lower", _lower.lower, prog, {}, gpu=True)
    mark("schedule")
    if schedule:
        (mod, plan), timings["schedule"] = _stage("schedule", schedules_gpu.schedule, low, tjson)
    else:
        (mod, plan), timings["schedule"] = _stage("schedule", schedules_gpu.schedule_naive, low)
    # the steps the layout rewrite added, named where the plan names their blocks
    plan = [(op.result, "layout", f"added for tensor cores: {op.result} = einsum('{op.subscripts}', "
                                  f"{', '.join(op.operands)})")
            for op in prog.body if op.result not in given] + list(plan)
    mark("codegen")
    try:
        ex, timings["compile"] = _codegen_cuda(mod, tjson)
    except CompileError as e:
        if not (schedule and fallback):
            raise
        mod = schedules_gpu.dlight_schedule(tvm.IRModule({"main": low.func}), tjson)
        try:
            ex, timings["compile"] = _codegen_cuda(mod, tjson)
        except CompileError:
            raise e from None  # einc's schedule's error is the one to report
        why = str(e).splitlines()[0][:200]
        plan = [(st.block, "dlight", f"dlight default rules (einc's schedule did not build: {why})") for st in low.steps]
    return Built(prog, tjson, ex.mod, mod, low, plan, timings, VERSION)


def _codegen_cuda(mod, tjson: str):
    """``(executable, seconds)``: CUDA C for ``mod``, refused when a kernel is left unbound or
    declares more static shared memory than ptxas allows."""
    from ._tvm import compile_mod
    from .cuda_emulator import check_static_shared
    from .cuda_source import editing

    # cp.async for the pipelines that ask for it (copies outside an async stage are left alone);
    # the generated CUDA C goes through einc's edits (cuda_source) before anything compiles it
    with editing():
        ex, seconds = _stage("compile", compile_mod, mod, _target.to_tvm(tjson), {"tirx.use_async_copy": True})
    kinds = [m.kind for m in ex.mod.imports]
    if "cuda" not in kinds:
        raise CompileError(f"CUDA build produced no device code (imports {kinds}): a loop nest was left unbound")
    # what NVRTC/ptxas would refuse on the GPU machine, refused here (dlight's fallback kernels have
    # declared hundreds of KiB of shared memory)
    check_static_shared(ex.mod.imports[kinds.index("cuda")].inspect_source())
    return ex, seconds
# --- end cuda ---
