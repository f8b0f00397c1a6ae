"""Hooks the fuzzer needs inside the lowering: ``build`` with extra TIR passes, extra schedule
primitives, PassContext config, and a pass instrument that records which TVM passes changed the
module.  Built from the pieces of ``lowering.build`` (same stages, same ``CompileError`` wrapping),
so a fuzzed build differs from ``build()`` only by what the fuzzer adds.

    lower      lowering.lower.lower
    schedule   lowering.schedules_cpu.schedule, then the fuzzed primitives (``split(b0,l1,4)``...);
               a primitive TVM refuses with a ScheduleError is skipped and recorded
    tir_pass   the fuzzed TIR passes, inside a registered tir pipeline, before TVM's default one
    codegen    TVM's default TIR pipeline and LLVM codegen

``mark(stage)`` is called at each boundary (the fuzzer's child reports it to the parent, so a crash
is placed in a stage).  TVM is reached only through ``lowering._tvm``.
"""
from __future__ import annotations

import re
import time
from typing import Callable

import numpy as np

from einc.errors import CompileError, Unsupported
from einc.ir.nodes import Program

from . import target as _target
from .build import Built, _stage

PIPELINE_NAME = "einc_fuzz"


class ScheduleSkipped(Exception):
    """A fuzzed primitive TVM refused (ScheduleError): valid behaviour, recorded as a feature."""


# --- workarounds for TVM bugs the fuzzer found -------------------------------------------------
# Each combination below makes TVM crash, hang or fail an internal check instead of refusing it;
# einc refuses it up front with ``Unsupported`` (a ``rejected`` outcome).  The folder under
# corpus/regressions/ holds the case, which replays the workaround, and ``repro_tvm.py``, a pure-TVM
# reproducer for reporting the bug upstream.

#: widest loop einc vectorizes (its own schedules use at most 512 bits / 8-bit lanes = 64 lanes);
#: LLVM codegen of a vectorized loop of 1024 lanes ran for more than 300 s (timeout-codegen-fd6915aba3)
MAX_VECTOR_LANES = 64

TVM_BUGS = {
    "narrow_datatype": ("crash-tir_pass-c40e411020",
                        "tirx.transform.NarrowDataType segfaults (tvm::ObjectVisitor) on an s_tir module"),
    "nested_vectorize": ("compile_error-codegen-2a91188300",
                         "vectorize of a loop nested in or around a vectorized loop is accepted, then "
                         "codegen fails an ICHECK ('VectorizeLoop before LiftStorageAlloc')"),
    # one bug, found twice (5869a051c9, then e8f7d42d15 once the first characterisation - a 0-d
    # reduction into an intermediate buffer - turned out too narrow and too broad): rfactor rebuilds
    # the scope of the reduction block and takes every block realize it reaches there without
    # passing through a loop of its own for the reduction block itself
    "rfactor_0d": ("compile_error-schedule-5869a051c9",
                   "rfactor fails an ICHECK (block_realize == old_block_realize_) instead of a ScheduleError "
                   "when the reduction block's scope holds another block with no loop of its own outside the "
                   "reduction's loops (einc's loopless 0-d blocks); also compile_error-schedule-e8f7d42d15"),
    "reverse_inline_shared": ("compile_error-codegen-d8cb1f219a",
                              "reverse_compute_inline of a consumer whose producer's buffer is also read by "
                              "another block is accepted: the producer stops writing the buffer and its "
                              "allocation goes, so codegen fails an ICHECK ('Buffer ... is used before its "
                              "definition') instead of the primitive raising a ScheduleError"),
    "reverse_inline_uncovered": ("compile_error-schedule-32ed450cc8",
                                 "reverse_compute_inline of a consumer with a block iter (extent > 1) that its "
                                 "load of the producer's buffer does not index fails an ICHECK "
                                 "('Cannot dispatch a null expression') instead of a ScheduleError"),
    "nested_parallel": ("compile_error-codegen-990533e711",
                        "parallel of a loop nested in or around a parallel loop is accepted, then codegen fails "
                        "an ICHECK ('Nested parallel loop is not supported by threadpool')"),
    "vectorize_pragma_1": ("compile_error-codegen-541e74d59d",
                           "a vectorized loop of extent 1 that also carries pragma_auto_unroll_max_step (either "
                           "order) fails codegen's ICHECK 'lanes > 1'"),
    "rfactor_predicate": ("wrong_result-run-b901a8cbbe",
                          "rfactor of a block under a non-divisible split (a T.where predicate) compiles and "
                          "gives a wrong result (NaN: partial sums the predicate skipped are read uninitialized)"),
    "vectorize_producer": ("wrong_result-run-a5adb8b0c0",
                           "a vectorized loop around a block that writes a buffer and a block that reads it "
                           "(compute_at into or under the vectorized loop, or vectorize after it) compiles and "
                           "gives every lane the last lane's value: ',a->a' of [1, 2, 3] gave [1.5, 1.5, 1.5]"),
    "wide_vectorize": ("timeout-codegen-fd6915aba3",
                       f"vectorizing a loop of more than {MAX_VECTOR_LANES} iterations makes LLVM codegen "
                       "run for minutes"),
    # cuda-emu: with the GEMM knob async=1, InjectPTXAsyncCopy fails an ICHECK on some vectorised
    # global->shared copies (tucker 'ijk,ai,bj,ck->abc' at size 32).  einc's GEMM copies tiles of
    # intermediate buffers 4 bytes at a time under async (knob tvm_bug_async_lanes=1 undoes that);
    # should another path still hit it, the fuzzer refuses the build after TVM's check
    # TVM-only reproducer: corpus/tvm_bugs/async_copy_lanes/repro_tvm.py (the global source is an
    # intermediate buffer StorageRewrite retyped to float32x4: scalar-index load, 4-lane Ramp store)
    "async_copy_lanes": ("tests/test_fuzz_cuda_emu.py::test_async_copy_lanes_crash_is_a_known_tvm_bug",
                         "with cp.async pipelining (GEMM knob async=1) InjectPTXAsyncCopy fails the ICHECK "
                         "'load->indices[0].ty().lanes() == store->indices[0].ty().lanes()' on a vectorised "
                         "global->shared copy instead of emitting per-lane copies; TVM-only reproducer "
                         "corpus/tvm_bugs/async_copy_lanes/repro_tvm.py"),
    # not refused by the fuzzer: einc's GPU GEMM schedule never builds it (lowering/schedules_gpu.py _gemm
    # copies K-major tiles 4 bytes at a time under async; knob tvm_bug_async_strided shows the bug,
    # tests/test_gpu_emulated.py::test_tvm_async_copy_into_a_k_major_tile_is_wrong_so_einc_copies_4_bytes)
    "async_copy_strided": ("corpus/tvm_bugs/async_copy_strided_shared/repro_tvm.py",
                           "InjectPTXAsyncCopy turns a vectorised global->shared copy whose shared side is "
                           "strided (a K-major tile made with transform_layout) into ONE contiguous 16-byte "
                           "cp.async: the 4 values meant for 4 rows land in one row (wrong results)"),
}


def tvm_bug(key: str, what: str) -> Unsupported:
    """The ``Unsupported`` einc raises to keep clear of the TVM bug ``key`` (see ``TVM_BUGS``)."""
    folder, desc = TVM_BUGS[key]
    where = folder if "/" in folder else f"corpus/regressions/{folder}"
    return Unsupported(f"{what}: refused, TVM bug ({desc}; {where})")


def check_vectorize(sch, lp) -> None:
    """Raise ``Unsupported`` when vectorizing loop ``lp`` would hit a known TVM bug."""
    ext = sch.get(lp).extent
    if not hasattr(ext, "value") or int(ext.value) > MAX_VECTOR_LANES:
        raise tvm_bug("wide_vectorize", f"vectorize of a loop of extent {ext}")
    if _nested_with(sch, lp, _VECTORIZED):
        raise tvm_bug("nested_vectorize", "vectorize of a loop nested with a vectorized loop")
    if int(ext.value) == 1 and "pragma_auto_unroll_max_step" in sch.get(lp).annotations:
        raise tvm_bug("vectorize_pragma_1", "vectorize of an extent-1 loop with an unroll pragma")
    if _feeds_within(sch, lp):
        raise tvm_bug("vectorize_producer", "vectorize of a loop around a producer and its consumer")


def check_compute_at(sch, lp) -> None:
    """Raise ``Unsupported`` when computing a block at loop ``lp`` would hit a known TVM bug."""
    want = sch.get(lp)
    for b in sch.get_child_blocks(lp):  # lp and the loops around it: any vectorized?
        loops = [sch.get(x) for x in sch.get_loops(b)]
        upto = next(i for i, x in enumerate(loops) if x.same_as(want)) + 1
        if any(int(x.kind) == _VECTORIZED for x in loops[:upto]):
            raise tvm_bug("vectorize_producer", "compute_at into or under a vectorized loop")
        return


def _feeds_within(sch, lp) -> bool:
    """Whether a block under loop ``lp`` reads a buffer another block under ``lp`` writes."""
    blocks = [sch.get(b) for b in sch.get_child_blocks(lp)]
    written = {w.source.name: i for i, blk in enumerate(blocks) for w in blk.writes}
    return any(written.get(r.source.name, i) != i for i, blk in enumerate(blocks) for r in blk.reads)


def check_annotate_unroll(sch, lp) -> None:
    """Raise ``Unsupported`` when an unroll pragma on loop ``lp`` would hit a known TVM bug."""
    node = sch.get(lp)
    if int(node.kind) == _VECTORIZED and hasattr(node.extent, "value") and int(node.extent.value) == 1:
        raise tvm_bug("vectorize_pragma_1", "unroll pragma on a vectorized loop of extent 1")


def check_parallel(sch, lp) -> None:
    """Raise ``Unsupported`` when parallelizing loop ``lp`` would hit a known TVM bug."""
    if _nested_with(sch, lp, _PARALLEL):
        raise tvm_bug("nested_parallel", "parallel of a loop nested with a parallel loop")


_PARALLEL, _VECTORIZED = 1, 2  # tvm.tirx.ForKind


def _has_predicate(sch, name: str) -> bool:
    """Whether block ``name`` has a ``T.where`` predicate (read off the TVMScript: the block realize
    that carries it is not reachable from the Python schedule API)."""
    lines = sch.mod.script().splitlines()
    head = f'T.sblock("{name}")'
    for i, ln in enumerate(lines):
        if head in ln:
            for nxt in lines[i + 1:]:
                if "T.sblock(" in nxt:
                    break
                if "T.where(" in nxt:
                    return True
            return False
    return False


def _nested_with(sch, lp, kind: int) -> bool:
    """Whether a loop of ``kind`` other than ``lp`` encloses ``lp`` or lies inside it."""
    want = sch.get(lp)
    for b in sch.get_child_blocks(lp):
        for other in sch.get_loops(b):
            node = sch.get(other)
            if not node.same_as(want) and int(node.kind) == kind:
                return True
    return False


def check_rfactor(sch, block) -> None:
    """Raise ``Unsupported`` when ``rfactor`` on ``block`` would hit a known TVM bug."""
    blk = sch.get(block)
    if _has_predicate(sch, blk.name_hint):
        raise tvm_bug("rfactor_predicate", f"rfactor of block {blk.name_hint!r} under a non-divisible split")
    other = _loopless_sibling(sch, block)
    if other is not None:
        raise tvm_bug("rfactor_0d", f"rfactor of block {blk.name_hint!r} (block {other!r} shares its scope "
                                    "with no loop of its own)")


def _scope_path(sch, rv):
    """``(loops, scope)``: the loop statements from block/loop ``rv`` up to its nearest enclosing block,
    and that block (statements, innermost first)."""
    from ._tvm import tirx

    loops, p = [], sch.get_sref(rv).parent
    while p is not None and isinstance(p.stmt, tirx.For):
        loops.append(p.stmt)
        p = p.parent
    return loops, (p.stmt if p is not None else None)


def _loopless_sibling(sch, block):
    """The name of a block other than ``block`` in ``block``'s scope that TVM's rfactor replacer reaches:
    one whose loops up to the scope (none, for a loopless block) all enclose ``block`` too.  rfactor
    rewrites the scope descending only into ``block``'s loops and takes any block realize it meets
    there for ``block``'s (ICHECK block_realize == old_block_realize_)."""
    own_loops, scope = _scope_path(sch, block)
    me = sch.get(block)
    for c in _all_blocks(sch):
        node = sch.get(c)
        if node.same_as(me):
            continue
        loops, cscope = _scope_path(sch, c)
        if cscope is not None and scope is not None and cscope.same_as(scope) and \
                all(any(lp.same_as(o) for o in own_loops) for lp in loops):
            return node.name_hint
    return None


def check_reverse_compute_inline(sch, block) -> None:
    """Raise ``Unsupported`` when ``reverse_compute_inline`` of ``block`` would hit a known TVM bug."""
    from ._tvm import tirx

    me = sch.get(block)
    produced = [w.source for p in sch.get_producers(block) for w in sch.get(p).writes]
    inlined = [r for r in me.reads if any(r.source.same_as(b) for b in produced)]
    if not inlined:
        return
    # (1) the producer's buffer has another reader: TVM redirects the producer's store to the
    # consumer's output and drops the buffer, leaving the other reader reading nothing
    producers = [sch.get(p) for p in sch.get_producers(block)]
    _, scope = _scope_path(sch, block)
    for c in _all_blocks(sch):
        node = sch.get(c)
        if node.same_as(me) or any(node.same_as(p) for p in producers) or (scope is not None and node.same_as(scope)):
            continue
        if any(r.source.same_as(i.source) for r in node.reads for i in inlined):
            raise tvm_bug("reverse_inline_shared",
                          f"reverse_compute_inline of block {me.name_hint!r} (block {node.name_hint!r} also reads "
                          f"{inlined[0].source.name})")
    # (2) a block iter of the consumer the load of the producer's buffer does not index: TVM's inverse
    # index map leaves it undefined (unit iters are mapped to their minimum first, so they are fine)
    used = [v for r in inlined for rng in r.region for e in (rng.min, rng.extent)
            for v in tirx.analysis.undefined_vars(e)]
    for iv in me.iter_vars:
        ext = iv.dom.extent
        if hasattr(ext, "value") and int(ext.value) == 1:
            continue
        if not any(v.same_as(iv.var) for v in used):
            raise tvm_bug("reverse_inline_uncovered",
                          f"reverse_compute_inline of block {me.name_hint!r} (iter {iv.var.name} of extent {ext} "
                          f"does not index {inlined[0].source.name})")


def _all_blocks(sch):
    """Every schedulable block of ``main`` except the root, in program order (pre-order)."""
    out = []

    def visit(parent):
        for b in sch.get_child_blocks(parent):
            out.append(b)
            visit(b)

    try:
        root = sch.get_sblock("root")
    except Exception:  # noqa: BLE001 - a module without a root block
        return out
    visit(root)
    return out


def apply_primitive(sch, spec: str, *, workarounds: bool = True) -> str:
    """Apply one fuzzed primitive to ``sch`` (in place); returns a short description.

    ``workarounds=False`` skips the ``TVM_BUGS`` checks (for the pure-TVM reproducers only)."""
    from einc.fuzz.space import parse_sched_prim

    kind, args = parse_sched_prim(spec)
    blocks = _all_blocks(sch)
    if not blocks:
        raise ScheduleSkipped("no blocks")
    b = blocks[args[0][1] % len(blocks)] if args and args[0][0] == "b" else blocks[0]
    loops = sch.get_loops(b)

    def loop(ref):
        if not loops:
            raise ScheduleSkipped("no loops")
        return loops[ref[1] % len(loops)]

    rest = args[1:]
    if kind == "split":
        lp = loop(rest[0])
        sch.split(lp, [None, int(rest[1])])
    elif kind == "reorder":
        a, c = loop(rest[0]), loop(rest[1])
        if a.same_as(c):
            raise ScheduleSkipped("same loop")
        sch.reorder(a, c)
    elif kind == "fuse":
        if len(loops) < 2:
            raise ScheduleSkipped("one loop")
        i = rest[0][1] % (len(loops) - 1)
        sch.fuse(loops[i], loops[i + 1])
    elif kind == "vectorize":
        lp = loop(rest[0])
        if workarounds:
            check_vectorize(sch, lp)
        sch.vectorize(lp)
    elif kind == "parallel":
        lp = loop(rest[0])
        if workarounds:
            check_parallel(sch, lp)
        sch.parallel(lp)
    elif kind == "unroll":
        sch.unroll(loop(rest[0]))
    elif kind == "annotate_unroll":
        lp = loop(rest[0])
        if workarounds:
            check_annotate_unroll(sch, lp)
        sch.annotate(lp, "pragma_auto_unroll_max_step", 16)
    elif kind == "cache_write":
        sch.cache_write(b, int(rest[0]) if rest else 0, "global")
    elif kind == "cache_read":
        sch.cache_read(b, int(rest[0]) if rest else 0, "global")
    elif kind == "decompose_reduction":
        sch.decompose_reduction(b, loop(rest[0]))
    elif kind == "rfactor":
        lp = loop(rest[0])
        if workarounds:
            check_rfactor(sch, b)
        sch.rfactor(lp, 0)
    elif kind == "compute_inline":
        sch.compute_inline(b)
    elif kind == "reverse_compute_inline":
        if workarounds:
            check_reverse_compute_inline(sch, b)
        sch.reverse_compute_inline(b)
    elif kind == "compute_at":
        other = blocks[rest[0][1] % len(blocks)]
        ol = sch.get_loops(other)
        if not ol:
            raise ScheduleSkipped("no loops")
        at = ol[rest[1][1] % len(ol)]
        if workarounds:
            check_compute_at(sch, at)
        sch.compute_at(b, at)
    elif kind == "storage_align":
        sch.storage_align(b, 0, int(rest[0]), int(rest[1]), int(rest[2]))
    else:  # pragma: no cover - parse_sched_prim knows the kinds
        raise ValueError(kind)
    return spec


def _tir_pass(spec: str, workarounds: bool = True):
    from einc.fuzz.space import parse_tir_pass

    from ._tvm import s_tir, tirx

    ns, name, args = parse_tir_pass(spec)
    mod = {"tirx": tirx.transform, "s_tir": s_tir.transform}[ns]
    fn = getattr(mod, name, None)
    if workarounds and name == "NarrowDataType":
        raise tvm_bug("narrow_datatype", f"TIR pass {ns}.{name}")
    if fn is None:
        raise Unsupported(f"TVM has no TIR pass {ns}.{name}")
    return fn(*args)


def _register_pipeline(extra: list, mark: Callable[[str], None]) -> str:
    from tvm.s_tir.pipeline import default_s_tir_pipeline, finalize_device_passes, finalize_host_passes

    from ._tvm import tvm

    def factory():
        @tvm.transform.module_pass(opt_level=0, name="einc_fuzz_pipeline")
        def _pipeline(mod, ctx):
            if extra:
                mark("tir_pass")
                mod = tvm.ir.transform.Sequential(extra)(mod)
            mark("codegen")
            return default_s_tir_pipeline()[0](mod)

        return _pipeline, finalize_host_passes, finalize_device_passes

    tvm.tirx.register_tir_pipeline(PIPELINE_NAME, factory)
    return PIPELINE_NAME


def _instrument(changed: list):
    """A pass instrument that appends ``(pass name, changed?)`` for every TVM pass that runs."""
    from tvm.ir.instrument import pass_instrument

    from ._tvm import tvm_ffi

    @pass_instrument
    class _Changes:
        def __init__(self):
            self.stack = []

        def run_before_pass(self, mod, info):
            self.stack.append(tvm_ffi.structural_hash(mod))

        def run_after_pass(self, mod, info):
            before = self.stack.pop() if self.stack else None
            changed.append((info.name, before != tvm_ffi.structural_hash(mod)))

    return _Changes()


def build_fuzzed(prog: Program, *, tir=(), sched=(), config=(), target=None, einc_schedule: bool = True,
                 mark: Callable[[str], None] = lambda s: None, features: set | None = None,
                 record_passes: bool = True) -> Built:
    """``lowering.build.build`` plus the fuzzer's TIR passes, schedule primitives and config.

    ``features`` (when given) receives strings naming what happened: skipped primitives and, with
    ``record_passes``, every TVM pass as ``tvm:<name>:changed|same``.
    """
    from einc.fuzz.space import parse_config
    from einc.ir.verify import verify

    from . import lower as _lower
    from ._tvm import VERSION, s_tir, tvm

    verify(prog)
    tjson = _target.resolve(target)
    if _target.kind(tjson) != "llvm":
        raise Unsupported(f"fuzzed builds compile CPU (llvm) targets; got {tjson}")
    if _lower.has_zero_size(prog):
        raise Unsupported("program has a zero-size value; einc.kernel runs such programs without TVM")
    feats = features if features is not None else set()
    timings = {}
    mark("lower")
    low, timings["lower"] = _stage("lower", _lower.lower, prog)
    mark("schedule")
    if einc_schedule:
        from . import schedules_cpu

        (mod, plan), timings["schedule"] = _stage("schedule", schedules_cpu.schedule, low, tjson)
    else:
        mod, plan = tvm.IRModule({"main": low.func}), [(s.block, "none", "naive loop nest") for s in low.steps]
    if sched:
        sch = s_tir.Schedule(mod)
        for spec in sched:
            trial = sch.copy()
            try:
                apply_primitive(trial, spec)
            except (ScheduleSkipped, s_tir.ScheduleError) as e:
                feats.add(f"sched:skip:{spec.split('(')[0]}:{type(e).__name__}")
                continue
            except Unsupported:  # a known TVM bug einc keeps clear of (TVM_BUGS)
                raise
            except Exception as e:  # noqa: BLE001 - TVM failed inside a primitive instead of refusing it
                head = next((ln.strip() for ln in str(e).splitlines() if "Check failed" in ln or "rror" in ln), "")
                raise CompileError(f"TVM failed in stage 'schedule' (primitive {spec}): {type(e).__name__}: "
                                   f"{head[:300]}") from e
            feats.add(f"sched:ok:{spec.split('(')[0]}")
            sch = trial
            plan.append(("fuzz", "fuzz", spec))
        mod = sch.mod
    if tir:
        mark("tir_pass")
    extra = [_tir_pass(s) for s in tir]
    name = _register_pipeline(extra, mark)
    cfg = dict(parse_config(c) for c in config)
    changed: list = []
    instruments = [_instrument(changed)] if record_passes else []
    tvm_target = _target.to_tvm(tjson)

    def _compile():
        with tvm.transform.PassContext(opt_level=3, config=cfg, instruments=instruments):
            return tvm.compile(mod, target=tvm_target, tir_pipeline=name)

    t0 = time.perf_counter()
    try:
        ex = _compile()
    except Exception as e:  # noqa: BLE001 - same wrapping as build(): CompileError names the stage
        msg = str(e).strip().splitlines()
        head = next((ln for ln in msg if ln.startswith("Error message")), None) or \
            next((ln for ln in msg if "rror" in ln or "Check failed" in ln), msg[-1] if msg else "")
        raise CompileError(f"TVM failed in stage 'compile': {type(e).__name__}: {head.strip()[:300]}") from e
    timings["compile"] = time.perf_counter() - t0
    for pname, ch in changed:
        feats.add(f"tvm:{pname}:{'changed' if ch else 'same'}")
    return Built(prog, tjson, ex.mod, mod, low, plan, timings, VERSION)


def storage_array(x: np.ndarray, dtype: str) -> np.ndarray:
    """The array ``main`` reads for an einc value of ``dtype`` (bfloat16 travels as uint16 bits)."""
    from einc.ir.types import np_dtype

    # np.require, not np.ascontiguousarray: the latter turns a 0-d array into a 1-d one
    x = np.require(np.asarray(x).astype(np_dtype(dtype), copy=False), requirements="C")
    return x.view(np.uint16) if dtype == "bfloat16" else x


def run_built(built: Built, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Run a (fuzzed) build on numpy inputs; returns numpy outputs of the program's dtypes."""
    from einc.ir.types import np_dtype

    from ._tvm import empty, tensor
    from .lower import storage_dtype

    prog = built.program
    ins = [tensor(storage_array(a, v.type.dtype)) for a, v in zip(arrays, prog.inputs)]
    types = prog.types()
    outs_t = [types[o] for o in prog.outputs]
    outs = [empty(t.shape, storage_dtype(t.dtype)) for t in outs_t]
    built.run(ins, outs)
    res = []
    for o, t in zip(outs, outs_t):
        a = o.numpy()
        res.append(a.view(np_dtype("bfloat16")) if t.dtype == "bfloat16" else a.astype(np_dtype(t.dtype), copy=False))
    return res


# --- cuda-emu: einc's CUDA lowering, run on the CPU by lowering.cuda_emulator ---------------------

#: the emulator runs every CUDA thread: programs bigger than this are refused (``rejected``) on the
#: cuda-emu target rather than left to time out
EMU_MAX_ELEMS = 64 * 1024  # per value
EMU_MAX_WORK = 2_000_000  # multiply-adds over all steps (each step's iteration space)
#: seconds the emulated kernels may run (well under the fuzzer's per-case timeout, so a hang is
#: reported from inside the case and the emulator's own child never outlives it by much)
EMU_RUN_TIMEOUT_S = 15.0
CUDA_EMU_TARGET = {"kind": "cuda", "arch": "sm_90"}


class EmulatorTimeout(Exception):
    """The emulated kernels ran past ``EMU_RUN_TIMEOUT_S`` (the harness reports a hang at ``run``)."""


def has_cxx() -> bool:
    """Whether a host C++ compiler the CUDA emulator can use is on PATH."""
    import os
    import shutil

    return any(c and shutil.which(c) for c in (os.environ.get("CXX"), "g++", "c++", "clang++"))


def emu_work(prog: Program) -> tuple[int, int]:
    """``(largest value in elements, total multiply-adds)`` of ``prog`` (what the emulator pays)."""
    from einc.ir.nodes import Einsum, einsum_sizes

    types = prog.types()
    biggest = max([t.size for t in types.values()] + [0])
    work = 0
    for op in prog.body:
        if isinstance(op, Einsum):
            n = 1
            for v in einsum_sizes(op, [types[o] for o in op.operands]).values():
                n *= max(1, v)
            work += n
        else:
            work += op.type.size
    return biggest, work


def build_cuda_emu(prog: Program, *, gpu_knobs: dict | None = None, mark: Callable[[str], None] = lambda s: None,
                   features: set | None = None) -> Built:
    """einc's own CUDA build for ``sm_90`` (``lowering.build._build_cuda``: lower / schedule / compile,
    each failure a ``CompileError`` naming it), with ``gpu_knobs`` as ``schedules_gpu.GEMM_OVERRIDE``
    for this build only (always restored).  Programs too big to emulate are ``Unsupported``."""
    from einc.ir.verify import verify

    from . import lower as _lower
    from . import schedules_gpu
    from .build import _build_cuda

    verify(prog)
    mark("lower")
    if _lower.has_zero_size(prog):
        raise Unsupported("program has a zero-size value; einc.kernel runs such programs without TVM")
    biggest, work = emu_work(prog)
    if biggest > EMU_MAX_ELEMS or work > EMU_MAX_WORK:
        raise Unsupported(f"too big for the CUDA emulator: largest value {biggest} elements (max {EMU_MAX_ELEMS}), "
                          f"{work} multiply-adds (max {EMU_MAX_WORK})")
    saved = schedules_gpu.GEMM_OVERRIDE
    schedules_gpu.GEMM_OVERRIDE = dict(gpu_knobs) if gpu_knobs else None
    try:
        built = _build_cuda(prog, _target.resolve(CUDA_EMU_TARGET), True, mark, fallback=False)
    except CompileError as e:
        if gpu_knobs and gpu_knobs.get("async") and "load->indices[0].ty().lanes() == store->indices[0]" in str(e):
            raise tvm_bug("async_copy_lanes", "CUDA build with GEMM knob async=1") from e
        raise
    finally:
        schedules_gpu.GEMM_OVERRIDE = saved
    if features is not None:
        features.update(f"gpu:{row[1]}{':tensor-cores' if row[2].startswith('tensor cores') else ''}"
                        for row in built.plan)
    return built


def run_cuda_emu(built: Built, arrays: list[np.ndarray], *, mark: Callable[[str], None] = lambda s: None,
                 timeout: float = EMU_RUN_TIMEOUT_S) -> list[np.ndarray]:
    """Compile ``built``'s CUDA C for the CPU (stage ``codegen``: the host compiler rejecting it is a
    ``CompileError``) and run it (stage ``run``: a failing kernel program is an ``EincError``, one that
    runs past ``timeout`` an ``EmulatorTimeout``); returns the outputs."""
    from einc.errors import EincError

    from . import cuda_emulator

    mark("codegen")
    try:
        cuda_emulator.build_emulator(built)
    except EincError as e:
        if "host compiler rejected" in str(e):
            raise CompileError(f"the CUDA C einc generated does not compile (host C++ compiler, CUDA emulator): "
                               f"{_first_error(str(e))}") from e
        raise
    mark("run")
    try:
        return cuda_emulator.emulate(built, arrays, timeout=timeout)
    except EincError as e:
        if "ran past" in str(e):
            raise EmulatorTimeout(str(e)) from e
        raise


def _first_error(text: str) -> str:
    """The host compiler's first ``error:`` line, without the ``/tmp/.../k<hash>.cpp:LINE:COL:`` in
    front (a file named after the kernel's hash: kept, it gave one bug a signature per case)."""
    line = next((ln.strip() for ln in text.splitlines() if "error:" in ln), text.splitlines()[0] if text else "")
    return re.sub(r"^\S+\.(?:cpp|cu|cc|h):\d+(?::\d+)?:\s*", "", line)[:300]
