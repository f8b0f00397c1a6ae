"""The fuzzer's ``cuda-emu`` target: einc's CUDA lowering, the generated CUDA C run on the CPU by
``einc.lowering.cuda_emulator``, compared with the interpreter.  Needs TVM and a C++ compiler, no GPU."""
from __future__ import annotations

import json
import random

import pytest

from einc.fuzz.case import Case, FuzzPipeline
from einc.fuzz.mutate import PIPELINE_MUTATORS, mutate_pipeline, random_pipeline
from einc.fuzz.outcome import Outcome
from einc.fuzz.space import GPU_KNOBS, parse_gpu_knob
from einc.ir.nodes import Einsum, Program, Value, single_einsum
from einc.ir.types import TensorType
from einc.lowering.fuzz_hooks import has_cxx

_no_cxx = pytest.mark.skipif(not has_cxx(), reason="the CUDA emulator needs a C++ compiler")


def emu(f):
    """Marks a test that builds with TVM and runs the CUDA emulator."""
    return pytest.mark.tvm(_no_cxx(f))


def _matmul(m=16, k=8, n=16, dtype="float32"):
    return single_einsum("ik,kj->ij", [TensorType((m, k), dtype), TensorType((k, n), dtype)])


# ------------------------------------------------------------------------------------------- data (no TVM)


def test_cuda_emu_case_round_trips_with_its_knobs():
    rng = random.Random(5)
    seen_knobs = set()
    for _ in range(40):
        pl = random_pipeline(rng, "cuda-emu")
        for _ in range(4):
            pl, _how = mutate_pipeline(pl, rng)
        assert pl.target == "cuda-emu" and not (pl.tir or pl.sched or pl.config)
        for k in pl.gpu_knobs:
            key, val = parse_gpu_knob(k)
            assert val in GPU_KNOBS[key]
            seen_knobs.add(key)
        case = Case(_matmul(), pl, seed=rng.randrange(1000))
        back = Case.from_json(json.loads(json.dumps(case.to_json())))
        assert back == case and back.pipeline.knob_dict() == pl.knob_dict()
        assert FuzzPipeline.from_text(pl.to_text()) == pl
    assert len(seen_knobs) >= 6  # the mutators reach most knobs


def test_knobs_are_canonical_and_checked():
    pl = FuzzPipeline(target="cuda-emu", gpu_knobs=("stages=3", "kt=false", "async=1", "stages=1"))
    assert pl.gpu_knobs == ("async=1", "kt=0", "stages=1")
    assert pl.knob_dict() == {"async": True, "kt": False, "stages": 1}
    assert "gpu_knobs: async=1; kt=0; stages=1" in pl.to_text()
    # a pipeline without knobs serialises as before (queue digests do not change)
    assert "gpu_knobs" not in FuzzPipeline().to_json() and "gpu_knobs" not in FuzzPipeline().to_text()
    for bad in ("stages=4", "ty=12", "warp=1", "kt"):
        with pytest.raises(ValueError):
            FuzzPipeline(gpu_knobs=(bad,))


def test_knob_mutator_adds_changes_and_drops():
    rng = random.Random(0)
    mut = PIPELINE_MUTATORS["gpu_knobs"][0]
    pl = FuzzPipeline(target="cuda-emu")
    sizes = set()
    for _ in range(60):
        new = mut(pl, rng)
        assert abs(len(new.gpu_knobs) - len(pl.gpu_knobs)) <= 1
        sizes.add(len(new.gpu_knobs) - len(pl.gpu_knobs))
        pl = new
    assert sizes == {-1, 0, 1}


# ------------------------------------------------------------------------------------------- running cases


@emu
@pytest.mark.parametrize("knobs", [(), ("kt=0", "stages=3", "bk=8"), ("async=1", "tm=4", "tn=4")])
@pytest.mark.parametrize("make", [
    lambda: _matmul(),
    lambda: single_einsum("bik,bkj->bij", [TensorType((2, 16, 16), "float32"), TensorType((2, 16, 8), "float32")]),
    lambda: single_einsum("ij->j", [TensorType((7, 5), "int8")]),
], ids=["matmul", "batched", "reduce-int8"])
def test_known_good_programs_are_ok_on_cuda_emu(make, knobs):
    from einc.fuzz.harness import execute

    case = Case(make(), FuzzPipeline(target="cuda-emu", gpu_knobs=knobs), seed=3)
    res = execute(case, coverage=False)
    assert res["outcome"]["symptom"] == "ok", res["outcome"]
    assert any(f.startswith("gpu:") for f in res["features"])



@emu
def test_knobs_reach_the_schedule_and_are_restored():
    from einc.lowering import fuzz_hooks, schedules_gpu

    schedules_gpu.GEMM_OVERRIDE = None
    b = fuzz_hooks.build_cuda_emu(_matmul(32, 32, 32), gpu_knobs={"ty": 16, "tm": 4, "tx": 16, "tn": 4, "bk": 8,
                                                                      "stages": 3})
    assert schedules_gpu.GEMM_OVERRIDE is None
    assert "16x16 threads" in b.plan[0][2] and "3-stage" in b.plan[0][2], b.plan
    b = fuzz_hooks.build_cuda_emu(_matmul(32, 32, 32))  # the heuristics again: 8x8 threads for 32x32
    assert "16x16 threads" not in b.plan[0][2] and "3-stage" not in b.plan[0][2], b.plan


@emu
def test_zero_size_and_too_big_programs_are_rejected_complex_ones_run():
    from einc.fuzz.harness import execute

    for prog in (_matmul(0, 4, 4), _matmul(512, 256, 256)):
        res = execute(Case(prog, FuzzPipeline(target="cuda-emu"), seed=0), coverage=False)
        assert res["outcome"]["symptom"] == "rejected", res["outcome"]
    # the size cap, not the dtype, refused the last one
    assert "too big for the CUDA emulator" in res["outcome"]["message"]
    # complex values run as their (re, im) parts through einc's CUDA schedules, checked against numpy
    res = execute(Case(_matmul(12, 20, 16, "complex64"), FuzzPipeline(target="cuda-emu"), seed=0), coverage=False)
    assert res["outcome"]["symptom"] == "ok", res["outcome"]
    assert "complex" in res["features"]


@emu
def test_a_missing_barrier_in_the_cuda_path_is_a_wrong_result():
    from einc.fuzz import faults
    from einc.fuzz.harness import run_case_isolated

    assert faults.check("dropped_barrier")
    case = Case(_matmul(32, 32, 32), FuzzPipeline(target="cuda-emu"), seed=1)
    clean = run_case_isolated(case, coverage=False)[0]
    assert clean.key == "ok@done", clean
    got = run_case_isolated(case, coverage=False, faults=("dropped_barrier",))[0]
    assert got.key == "wrong_result@run" and got.is_bug, got


@emu
def test_emulator_failures_map_to_stages():
    from einc.errors import EincError
    from einc.fuzz.harness import execute
    from einc.lowering import fuzz_hooks

    case = Case(_matmul(), FuzzPipeline(target="cuda-emu"), seed=0)

    def bad_cxx(built, arrays, mark):
        mark("codegen")
        raise fuzz_hooks.CompileError("the CUDA C einc generated does not compile (host C++ compiler): error: x")

    def crash(built, arrays, mark):
        mark("run")
        raise EincError("CUDA emulator: the kernel program failed (exit 3): einc-emu: divergent barrier")

    def hang(built, arrays, mark):
        mark("run")
        raise fuzz_hooks.EmulatorTimeout("CUDA emulator: the kernels ran past 15 s")

    got = {name: execute(case, coverage=False, hooks={"run_cuda": fn})["outcome"]
           for name, fn in (("cxx", bad_cxx), ("crash", crash), ("hang", hang))}
    assert (got["cxx"]["symptom"], got["cxx"]["stage"]) == ("compile_error", "codegen")
    assert (got["crash"]["symptom"], got["crash"]["stage"]) == ("crash", "run")
    assert (got["hang"]["symptom"], got["hang"]["stage"]) == ("timeout", "run")


@emu
def test_real_host_compile_error_is_a_codegen_compile_error(monkeypatch):
    """The real path: CUDA C the host compiler refuses (a kernel calling an unknown intrinsic)."""
    import dataclasses

    from einc.errors import CompileError
    from einc.lowering import fuzz_hooks

    b = fuzz_hooks.build_cuda_emu(_matmul())
    src = b.rt_mod.imports[0].inspect_source()

    class _Src:
        def inspect_source(self, *_):
            return src.replace("__syncthreads();", "__no_such_intrinsic();", 1)

    class _Mod:
        imports = [_Src()]

    bad = dataclasses.replace(b, rt_mod=_Mod())
    stages = []
    with pytest.raises(CompileError, match="does not compile"):
        fuzz_hooks.run_cuda_emu(bad, [], mark=stages.append)
    assert stages == ["codegen"]


@emu
def test_async_copy_lanes_crash_is_a_known_tvm_bug(monkeypatch):
    """TVM 0.27's InjectPTXAsyncCopy fails an ICHECK for cp.async copies (GEMM knob async=1) of an
    intermediate buffer read 4-wide, on the second step of the decomposed tucker contraction at
    size 32: the fuzzer refuses it (``TVM_BUGS['async_copy_lanes']``) instead of reporting it again.
    einc's schedule keeps clear of it (4-byte copies of such tiles); ``tvm_bug_async_lanes``
    switches that off to show the bug.  Without the knobs the same program builds."""
    from einc.errors import Unsupported
    from einc.lowering import fuzz_hooks

    monkeypatch.setattr(fuzz_hooks, "EMU_MAX_WORK", 1 << 22)  # two 32^4 steps
    t3, t2 = TensorType((32, 32, 32), "float32"), TensorType((32, 32), "float32")
    prog = Program((Value("t0", t3), Value("t1", t2), Value("t2", t2)),
                   (Einsum("out_0", ("t0", "t1"), ("abc", "da"), "dbc", t3),
                    Einsum("out_1", ("t2", "out_0"), ("ab", "cbd"), "cad", t3)), ("out_1",))
    with pytest.raises(Unsupported, match="TVM bug") as e:
        fuzz_hooks.build_cuda_emu(prog, gpu_knobs={"async": True, "tvm_bug_async_lanes": True})
    assert fuzz_hooks.TVM_BUGS["async_copy_lanes"][0] in str(e.value)
    fuzz_hooks.build_cuda_emu(prog, gpu_knobs={"async": True})
    fuzz_hooks.build_cuda_emu(prog)


# ------------------------------------------------------------------------------------------- campaigns


@emu
def test_short_campaign_runs_cases_on_cuda_emu(tmp_path):
    from einc.fuzz.campaign import Campaign

    s = Campaign(tmp_path / "corpus", tmp_path / "out", seed=3, budget_s=60, jobs=1, progress=False,
                 max_execs=12, cuda_emu_share=0.5, reduce_budget_s=0).run()
    assert s["execs"] >= 12
    assert s["cuda_emu_share"] == 0.5
    per = s["targets"]
    assert set(per) <= {"llvm", "cuda-emu"}
    assert per["cuda-emu"]["execs"] >= 2 and per["llvm"]["execs"] >= 2, per
    assert sum(v["execs"] for v in per.values()) == s["execs"]
    assert per["cuda-emu"]["outcomes"].get("ok@done", 0) >= 1, per
    # the state carries the per-target counts across a resume
    st = json.loads((tmp_path / "out" / "state.json").read_text())
    assert st["target_counts"]["cuda-emu"] == per["cuda-emu"]["outcomes"]


@emu
def test_cuda_emu_only_campaign_and_a_cuda_emu_finding_replays(tmp_path):
    """--target cuda-emu runs only cuda-emu cases; with the dropped-barrier fault it finds a wrong
    result, saves it with its knobs, and the folder replays (same signature) under that fault."""
    from einc.fuzz import corpus as fcorpus
    from einc.fuzz.campaign import Campaign
    from einc.fuzz.replay import replay

    corpus = tmp_path / "corpus"
    (corpus / "seeds").mkdir(parents=True)
    (corpus / "seeds" / "mm.ein").write_text(
        "input a: float32[32, 32]\ninput b: float32[32, 32]\n\nc = einsum(\"ik,kj->ij\", a, b)\noutput c\n")
    s = Campaign(corpus, tmp_path / "out", seed=1, budget_s=90, jobs=1, progress=False, target="cuda-emu",
                 max_execs=6, faults=("dropped_barrier",), reduce_budget_s=20, fresh_rate=0.0).run()
    assert set(s["targets"]) == {"cuda-emu"}, s["targets"]
    wrong = [f for f in s["findings"] if f["symptom"] == "wrong_result"]
    assert wrong, s["outcomes"]
    folder = fcorpus.regressions_dir(corpus) / wrong[0]["id"]
    case, meta = fcorpus.load_regression(folder)
    assert case.pipeline.target == "cuda-emu" and meta["faults"] == ["dropped_barrier"]
    assert "target: cuda-emu" in (folder / "pipeline.txt").read_text()
    v = replay(folder)
    assert v.result == "xfail", v.reason


@emu
def test_scratch_buffer_reused_through_a_smaller_view_gets_its_full_size(monkeypatch):
    """Found by the first cuda-emu campaign (crash@run, heap corruption): TVM's StorageRewrite let
    ``t1``'s 7-element accumulator reuse ``t6``'s 49-element one through ``t6__acc.view(7)``, and the
    emulator sized the scratch buffer from that view (the last declaration of the name).  Maps now
    fold their conversion (no ``t6__acc``); it is kept apart here to rebuild the case."""
    from einc.frontend.program import parse_program
    from einc.fuzz.harness import execute
    from einc.lowering import cuda_emulator, fuzz_hooks, schedules_gpu

    monkeypatch.setattr(schedules_gpu, "_fold_convert", lambda sch, name, st: False)

    prog = parse_program('input x0: int32[7, 7]\ninput x5: int32[7, 7]\n\nt1 = einsum("ii->i", x0)\n'
                         't4 = einsum("CC->", x0)\nt6 = einsum("fZ,->fZ", x5, t4)\noutput t6, t1\n')
    b = fuzz_hooks.build_cuda_emu(prog)
    _exe, bufs = cuda_emulator.build_emulator(b)
    scratch = {name: shape for name, shape, _dt in bufs[len(b.mod["main"].params):]}
    assert scratch.get("t6__acc") == (49,), bufs
    res = execute(Case(prog, FuzzPipeline(target="cuda-emu"), seed=1), coverage=False)
    assert res["outcome"]["symptom"] == "ok", res["outcome"]


def test_a_host_compiler_error_is_signed_without_the_kernels_file_name():
    """The emulator's source file is named after the kernel's hash: left in the message, one bug got
    a signature (and a regression folder) per case, as the CI campaign showed (two folders for one
    char4-select bug)."""
    from einc.lowering.fuzz_hooks import _first_error

    msgs = [f"In function:\n/tmp/einc-cuda-emu-0/{name}.cpp:{line}:75: error: request for member 'y' in 'v__13'"
            for name, line in (("kd9a45ee151a1eab499e6", 355), ("k29fbe95aab32095be9a5", 328))]
    firsts = [_first_error(m) for m in msgs]
    assert firsts[0] == firsts[1] == "error: request for member 'y' in 'v__13'"
    outs = [Outcome("compile_error", "codegen", "EincError", f"does not compile: {f}") for f in firsts]
    assert outs[0].signature == outs[1].signature
