"""einc.fuzz without TVM: outcomes, cases, generators, mutators, reducer, isolation, campaigns."""
from __future__ import annotations

import ctypes
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from einc.fuzz import corpus as fcorpus
from einc.fuzz.case import Case, FuzzPipeline
from einc.ir.jsonform import program_from_json, program_to_json
from einc.fuzz.gen import random_program, small_enough
from einc.fuzz.isolate import Pool, mark, run_isolated
from einc.fuzz.mutate import (PROGRAM_MUTATORS, Interleave, mutate_pipeline, mutate_program, permute_operands,
                              random_pipeline, relabel)
from einc.fuzz.outcome import Outcome
from einc.fuzz.reduce import reduce
from einc.ir import interp
from einc.ir.nodes import Einsum, single_einsum
from einc.ir.types import TensorType
from einc.ir.verify import verify

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- outcomes


def test_outcome_vocabulary_and_bug_rules():
    assert Outcome("wrong_result", "run").is_bug
    assert Outcome("crash", "tir_pass", "SIGSEGV").is_bug
    assert Outcome("einc_internal_error", "passes", "KeyError").is_bug
    assert Outcome("compile_error", "lower", "InternalError").is_bug
    assert not Outcome("compile_error", "tir_pass", "InternalError").is_bug  # fuzzed TIR pass preconditions
    assert not Outcome("rejected", "lower", "Unsupported").is_bug
    assert not Outcome("ok", "done").is_bug
    with pytest.raises(ValueError):
        Outcome("exploded", "run")
    with pytest.raises(ValueError):
        Outcome("ok", "somewhere")


def test_signature_ignores_numbers_and_addresses():
    a = Outcome("compile_error", "lower", "InternalError", "Check failed: x < 12 at 0xdeadbeef\nmore")
    b = Outcome("compile_error", "lower", "InternalError", "Check failed: x < 7 at 0x1234\nother")
    c = Outcome("compile_error", "lower", "ValueError", "Check failed: x < 7 at 0x1234")
    assert a.signature == b.signature != c.signature
    assert Outcome.from_json(json.loads(json.dumps(a.to_json()))) == a


# ------------------------------------------------------------------------------------------- cases


def test_case_and_pipeline_round_trip():
    rng = random.Random(3)
    for _ in range(30):
        prog = random_program(rng)
        pl = random_pipeline(rng)
        for _ in range(5):
            pl, _how = mutate_pipeline(pl, rng)
        case = Case(prog, pl, seed=rng.randrange(1000))
        assert Case.from_json(json.loads(json.dumps(case.to_json()))) == case
        assert program_from_json(program_to_json(prog)) == prog
        assert FuzzPipeline.from_text(pl.to_text()) == pl


def test_generated_programs_verify_and_print_round_trip():
    from einc.frontend.program import parse_program
    from einc.ir.printer import print_program

    rng = random.Random(0)
    seen_repeated = seen_broadcast = seen_multi = 0
    for _ in range(150):
        p = random_program(rng)
        verify(p)
        assert small_enough(p)
        assert parse_program(print_program(p)) == p
        types = p.types()
        for op in p.body:
            if isinstance(op, Einsum):
                seen_repeated += any(len(set(l)) < len(l) for l in op.inputs)
                seen_broadcast += any(n == 1 for o in op.operands for n in types[o].shape)
        seen_multi += len(p.body) > 1
    # the generator reaches the interesting corners: diagonals, broadcasts, several steps
    assert seen_repeated and seen_broadcast and seen_multi


def test_gemm_programs_reach_the_gpu_rules_tiles_within_the_emulators_limits():
    from einc.fuzz.gen import GEMM_MAX_ELEMS, GEMM_MAX_ITERS, gemm_program
    from einc.ir.nodes import einsum_sizes
    from einc.lowering.fuzz_hooks import EMU_MAX_ELEMS, EMU_MAX_WORK

    assert GEMM_MAX_ELEMS <= EMU_MAX_ELEMS and GEMM_MAX_ITERS <= EMU_MAX_WORK
    rng = random.Random(0)
    dtypes, partial, long_k, multi_k = set(), 0, 0, 0
    for _ in range(200):
        p = gemm_program(rng)
        verify(p)
        (op,) = p.body
        types = p.types()
        sizes = einsum_sizes(op, [types[o] for o in op.operands])
        assert len(op.operands) == 2 and max(t.size for t in types.values()) <= GEMM_MAX_ELEMS
        assert np.prod(list(sizes.values())) <= GEMM_MAX_ITERS
        red = op.contracted()
        dtypes.add(op.type.dtype)
        partial += any(n > 32 and n % 32 for c, n in sizes.items() if c in op.output)
        long_k += any(sizes[c] >= 256 for c in red)
        multi_k += len(red) > 1
    # tensor-core dtypes, extents past a 32-wide tile but not a multiple of it, long and several K
    assert {"float16", "bfloat16", "float32"} <= dtypes
    assert partial >= 20 and long_k >= 10 and multi_k >= 10, (partial, long_k, multi_k)


def test_program_mutators_produce_valid_programs_and_each_one_fires():
    rng = random.Random(1)
    prog = random_program(rng)
    used = set()
    for _ in range(400):
        new, how = mutate_program(prog, rng)
        verify(new)  # raises on an invalid program
        assert small_enough(new)
        used.add(how)
        prog = new if rng.random() < 0.8 else random_program(rng)
    missing = set(PROGRAM_MUTATORS) - used
    assert len(missing) <= 3, f"mutators that never produced a valid program: {missing}"


@pytest.mark.parametrize("transform", [relabel, permute_operands])
def test_metamorphic_transforms_keep_the_meaning(transform):
    from einc.fuzz.harness import compare, make_inputs

    rng = random.Random(7)
    for i in range(40):
        p = random_program(rng)
        q = verify(transform(p, rng))
        xs = make_inputs(p, i)
        with np.errstate(all="ignore"):
            assert compare(p, xs, interp.run(p, *xs), interp.run(q, *xs)) is None


def test_compare_catches_a_wrong_float_and_an_off_by_one_int():
    from einc.fuzz.harness import compare, make_inputs

    p = single_einsum("ij,jk->ik", [TensorType((3, 4), "float32"), TensorType((4, 2), "float32")])
    xs = make_inputs(p, 0)
    ref = interp.run(p, *xs)
    assert compare(p, xs, ref, [ref[0] + 1e-7]) is None  # rounding noise is fine
    bad = compare(p, xs, ref, [ref[0] + 1e-2])
    assert bad is not None and bad["dtype"] == "float32"
    q = single_einsum("i->", [TensorType((5,), "int32")])
    ys = make_inputs(q, 0)
    r = interp.run(q, *ys)
    assert compare(q, ys, r, [r[0] + 1]) is not None
    # float16 sums among the subnormals (spacing 2^-24): one step is rounding however small the
    # value (an intermediate a kernel keeps in float32), a thousand steps are not
    h = single_einsum("i,i->", [TensorType((4,), "float16")] * 2)
    hs = [np.full(4, 1e-3, np.float16), np.full(4, 2.5e-4, np.float16)]
    r = interp.run(h, *hs)
    assert 0 < abs(float(r[0])) < 2.0 ** -14  # subnormal
    assert compare(h, hs, r, [r[0] + np.float16(2.0 ** -24)]) is None
    assert compare(h, hs, r, [r[0] + np.float16(1000 * 2.0 ** -24)]) is not None


def test_compare_leaves_open_only_conversions_that_rounding_can_flip():
    """A float turned into a bool or an integer is compared exactly, except where the float lies
    within its rounding bound of the jump (a sum the interpreter makes 0.0 and a kernel 8.6e-16:
    the campaign's false 'wrong_result@run:bool'); what depends on such an element is left open too."""
    from einc.frontend.program import parse_program
    from einc.fuzz.harness import compare

    p = parse_program("""
input x: int8[2, 3]
input w: float32[3, 2]
y: float32[2, 2] = einsum("ij,jk->ik", x, w)
flags: bool[2, 2] = cast(y, bool)
ones: int32[2, 2] = cast(flags, int32)
n: int32[2] = einsum("ik->i", ones)
output flags, n
""")
    x = np.array([[1, -1, 0], [1, 1, 1]], np.int8)
    w = np.array([[0.3, 0.25], [0.3, 0.5], [0.1, 0.7]], np.float32)  # row 0: 0.3 - 0.3 = 0 exactly, row 1 not
    ref = interp.run(p, x, w)
    assert ref[0].tolist() == [[False, True], [True, True]]
    flipped = ref[0].copy()
    flipped[0, 0] = True  # the kernel's tiny non-zero
    assert compare(p, [x, w], ref, [flipped, ref[1] + np.array([1, 0], np.int32)]) is None
    wrong = ref[0].copy()
    wrong[1, 0] = False  # 0.3 + 0.3 + 0.1 is far from 0: a real bug
    assert compare(p, [x, w], ref, [wrong, ref[1]])["index"] == [1, 0]
    assert compare(p, [x, w], ref, [ref[0], ref[1] + np.array([0, 1], np.int32)])["output"] == 1
    # integers summed in float32 are exact: their conversion back is compared exactly
    q = parse_program("""
input a: int8[4]
f: float32[4] = cast(a, float32)
s: float32[] = einsum("i->", f)
t: int32[] = cast(s, int32)
output t
""")
    a = np.array([3, -3, 1, -1], np.int8)
    r = interp.run(q, a)
    assert compare(q, [a], r, [r[0] + 1]) is not None


def test_compare_leaves_open_complex_conversions_that_rounding_can_flip():
    """The real form of a complex -> bool cast tests each part: a part the interpreter sums to 0 and
    a kernel to a tiny number flips the bool only where the other part is near 0 too."""
    import warnings

    from einc.frontend.program import parse_program
    from einc.fuzz.harness import compare

    p = parse_program("""
input x: complex64[2, 3]
input w: float32[3]
y: complex64[2] = einsum("ij,j->i", x, w)
flags: bool[2] = cast(y, bool)
n: int32[2] = cast(y, int32)
output flags, n
""")
    x = np.array([[1, -1, 0], [1 + 1j, -1 + 0j, 0]], np.complex64)
    w = np.array([0.3, 0.3, 0.1], np.float32)  # row 0: 0 + 0j; row 1: 0 + 0.3j
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = interp.run(p, x, w)
    assert ref[0].tolist() == [False, True] and ref[1].tolist() == [0, 0]
    assert compare(p, [x, w], ref, [np.array([True, True]), ref[1]]) is None  # row 0: both parts near 0
    assert compare(p, [x, w], ref, [np.array([False, False]), ref[1]])["index"] == [1]  # 0.3j is not
    # the real part near an integer (0) leaves the integer open; far from one it does not
    assert compare(p, [x, w], ref, [ref[0], np.array([-1, -1], np.int32)]) is None
    x2 = x.copy()
    x2[1, 0] = 2.5 + 1j  # row 1's real part 0.45: its int is 0 whatever the rounding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref2 = interp.run(p, x2, w)
    assert compare(p, [x2, w], ref2, [ref2[0], np.array([0, 1], np.int32)])["output"] == 1


def test_interleave_switches_after_patience_without_feedback():
    it = Interleave(patience=3)
    for _ in range(2):
        it.record(False)
    assert it.mode == "program"
    it.record(True)  # feedback resets the count
    for _ in range(3):
        it.record(False)
    assert it.mode == "pipeline" and it.switches == 1
    assert Interleave.from_state(it.state()).mode == "pipeline"


# ------------------------------------------------------------------------------------------- reducer


def _has_diagonal(prog):
    return any(isinstance(op, Einsum) and any(len(set(l)) < len(l) for l in op.inputs) for op in prog.body)


def test_reducer_shrinks_a_synthetic_failure_to_one_small_step():
    rng = random.Random(11)
    prog = random_program(rng, max_steps=4)
    while not _has_diagonal(prog) or len(prog.body) < 2:
        prog = random_program(rng, max_steps=4)
    case = Case(prog, FuzzPipeline(passes="", tir=("s_tir.LoopPartition",), sched=("split(b0,l0,2)",)), seed=9)

    def test(c):  # the "bug": any einsum reading a diagonal
        return Outcome("wrong_result", "run", detail={"dtype": "x"}) if _has_diagonal(c.program) else Outcome("ok", "done")

    small, stats = reduce(case, test)
    assert _has_diagonal(small.program)  # still fails the same way
    assert small.size < case.size
    assert len(small.program.body) == 1 and small.pipeline.size == 0
    assert all(n <= 2 for v in small.program.inputs for n in v.type.shape)
    assert stats["steps"] >= 3 and stats["tests"] <= 200


def test_reducer_stops_when_asked_and_signals_wait_for_coverage_to_let_go(monkeypatch):
    """An interrupted campaign stops its reducer at the next test; and its signal handler does not
    raise while coverage's tracer holds its data lock (a campaign hung after SIGTERM: the exception
    left the lock held and the report's first traced call waited on it)."""
    from einc.fuzz import harness

    rng = random.Random(11)
    prog = random_program(rng, max_steps=4)
    while not _has_diagonal(prog) or len(prog.body) < 2:
        prog = random_program(rng, max_steps=4)
    case = Case(prog, FuzzPipeline(), seed=9)
    calls = []

    def test(c):
        calls.append(c)
        return Outcome("wrong_result", "run", detail={"dtype": "x"}) if _has_diagonal(c.program) else Outcome("ok", "done")

    small, stats = reduce(case, test, stop=lambda: len(calls) >= 2)
    assert stats["tests"] == len(calls) == 2 and small.size <= case.size
    assert not harness.coverage_busy()  # no campaign coverage running
    import threading
    from types import SimpleNamespace

    lock = threading.Lock()  # stands for coverage's Collector.data_lock
    monkeypatch.setattr(harness, "_PARENT_COV", SimpleNamespace(_collector=SimpleNamespace(data_lock=lock)))
    assert not harness.coverage_busy()
    with lock:
        assert harness.coverage_busy()
    import coverage

    cov = coverage.Coverage(data_file=None, config_file=False)  # the lock the check reads is coverage's
    cov.start()
    try:
        assert isinstance(getattr(cov._collector, "data_lock", None), type(lock))
    finally:
        cov.stop()


# ------------------------------------------------------------------------------------------- isolation


def _segfault():
    mark("run")
    ctypes.string_at(0)


def _hang():
    mark("codegen")
    time.sleep(60)


def _boom():
    raise KeyError("boom")


def test_child_segfault_is_a_crash_and_the_parent_survives():
    res = run_isolated(_segfault, timeout=20)
    assert res.status == "crash" and res.signal == signal.SIGSEGV and res.last_stage == "run"
    from einc.fuzz.harness import outcome_from_child

    outcome = outcome_from_child(res)[0]
    assert outcome.key == "crash@run" and outcome.exc_type == "SIGSEGV" and outcome.is_bug
    assert run_isolated(pow, 2, 10).value == 1024  # and this process carries on


def test_child_hang_is_a_timeout_in_its_stage_and_errors_come_back_as_values():
    t0 = time.monotonic()
    res = run_isolated(_hang, timeout=1.0)
    assert res.status == "timeout" and res.last_stage == "codegen"
    assert time.monotonic() - t0 < 10
    err = run_isolated(_boom)
    assert err.status == "error" and err.exc_type == "KeyError" and "boom" in err.message


def test_pool_runs_children_concurrently():
    pool = Pool(3)
    for i in range(3):
        pool.submit(time.sleep, (0.5,), tag=i)
    t0 = time.monotonic()
    done = []
    while len(done) < 3 and time.monotonic() - t0 < 20:
        done += pool.wait(0.2)
    assert sorted(t for t, _ in done) == [0, 1, 2]
    assert all(r.status == "ok" for _, r in done)
    assert time.monotonic() - t0 < 1.4  # three half-second sleeps, in parallel


# ------------------------------------------------------------------------------------------- corpus and campaigns


def test_regression_folder_is_complete_and_atomic(tmp_path):
    prog = single_einsum("ij->j", [TensorType((3, 4), "float32")])
    case = Case(prog, FuzzPipeline(passes="canonicalize", target="interp"), seed=4)
    outcome = Outcome("wrong_result", "passes", "", "output 0 differs", {"dtype": "float32"})
    folder = fcorpus.save_regression(tmp_path, case, outcome, log="stderr tail")
    assert {p.name for p in folder.iterdir()} == {"case.ein", "pipeline.txt", "meta.json", "err.log", "repro.py"}
    assert fcorpus.save_regression(tmp_path, case, outcome) is None  # same id: kept once
    assert not [p for p in (tmp_path / "regressions").iterdir() if p.name.startswith(".")]
    back, meta = fcorpus.load_regression(folder)
    assert back == case and meta["signature"] == outcome.signature and meta["status"] == "open"
    assert fcorpus.known_signatures(tmp_path) == {outcome.signature: folder.name}


def test_repro_script_runs_standalone(tmp_path):
    prog = single_einsum("ij->ji", [TensorType((2, 3), "float32")])
    case = Case(prog, FuzzPipeline(passes="transposes", target="interp"), seed=1)
    folder = fcorpus.save_regression(tmp_path, case, Outcome("wrong_result", "passes", "", "", {"dtype": "float32"}))
    p = subprocess.run([sys.executable, str(folder / "repro.py"), "--in-process"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    # the case is fine, so the recorded bug does not reproduce: exit 0 and the outcome printed
    assert p.returncode == 0, p.stderr
    assert "outcome:   ok@done" in p.stdout


def _campaign(tmp_path, **kw):
    from einc.fuzz.campaign import Campaign

    corpus = tmp_path / "corpus"
    (corpus / "seeds").mkdir(parents=True, exist_ok=True)
    (corpus / "seeds" / "mm.ein").write_text(
        'input a: float32[3, 4]\ninput b: float32[4, 5]\nc = einsum("ij,jk->ik", a, b)\noutput c\n')
    args = dict(seed=5, budget_s=60, jobs=2, target="interp", progress=False, max_execs=40)
    args.update(kw)
    return Campaign(corpus, tmp_path / "out", **args)


SUMMARY_KEYS = {"execs": int, "execs_per_s": float, "elapsed_s": float, "coverage": dict, "findings": list,
                "outcomes": dict, "corpus_size": int, "new_findings": int, "seed": int}


def test_only_open_and_workaround_folders_hide_a_finding_and_a_fixed_one_met_again_is_new(tmp_path):
    """A campaign does not report again a bug whose folder is ``open`` (known) or ``workaround`` (a
    TVM bug einc avoids), but a ``fixed`` bug met again is a regression: a new folder of its own
    (ids hash the case too) that names the fixed one."""
    from einc.fuzz import corpus as fc
    from einc.fuzz.harness import run_case_isolated
    from einc.ir.nodes import Program, Value

    t = TensorType((2, 3, 4), "float32")
    prog = Program((Value("x", t),), (Einsum("p", ("x",), ("ijk",), "kij", TensorType((4, 2, 3), "float32")),
                                      Einsum("q", ("p", "p"), ("abc", "abc"), "abc", TensorType((4, 2, 3), "float32"))),
                   ("q",))
    case = Case(prog, FuzzPipeline(passes="transposes", target="interp"), seed=2)
    got = run_case_isolated(case, coverage=False, faults=("inverse_permutation",))[0]
    assert got.is_bug
    # a wrong result has no message: its signature is the dtype, the target and the path taken
    wrong = Outcome("wrong_result", "run", "", "", {"dtype": "float32", "target": "llvm", "via": "fuzzed"})
    assert wrong.signature == "wrong_result@run:float32:llvm:fuzzed"
    other = case.replace(seed=3)
    first = fc.save_regression(tmp_path / "corpus", other, got, status="fixed")
    assert fc.finding_id(got, case) != first.name  # same signature, another case: another folder
    assert fc.known_signatures(tmp_path / "corpus") == {}
    assert fc.known_signatures(tmp_path / "corpus", ("fixed",)) == {got.signature: first.name}

    def finding(status_of_first):
        meta = json.loads((first / "meta.json").read_text())
        (first / "meta.json").write_text(json.dumps({**meta, "status": status_of_first}))
        camp = _campaign(tmp_path, faults=("inverse_permutation",), reduce_budget_s=0)
        camp.known = fc.known_signatures(camp.corpus)
        camp.fixed = fc.known_signatures(camp.corpus, ("fixed",))
        camp._finding(case, got, "")
        return camp

    camp = finding("fixed")
    f, = camp.findings
    assert f.new and f.reduce["same_signature_as"] == first.name and Path(f.path).name != first.name
    assert json.loads((Path(f.path) / "meta.json").read_text())["reduce"]["same_signature_as"] == first.name
    for status in ("open", "workaround"):
        camp = finding(status)
        assert not camp.findings and camp.known_hits == {got.signature: 1}


def test_campaign_summary_schema_and_feedback(tmp_path):
    s = _campaign(tmp_path).run()
    for key, typ in SUMMARY_KEYS.items():
        assert isinstance(s[key], typ), key
    assert s["execs"] >= 40 and s["execs_per_s"] > 0
    cov = s["coverage"]
    assert cov["branches"] > 100 and cov["features"] >= 1
    assert cov["timeline_fields"][:4] == ["elapsed_s", "execs", "branches", "features"]
    rows = cov["timeline"]
    assert len(rows) >= 2 and all(len(r) == 5 for r in rows)
    assert [r[2] for r in rows] == sorted(r[2] for r in rows)  # coverage never decreases
    assert s["corpus_size"] >= 2  # inputs that added feedback joined the queue
    out = tmp_path / "out"
    assert json.loads((out / "summary.json").read_text())["execs"] == s["execs"]
    try:
        import matplotlib  # noqa: F401  (the fuzz extra)
    except ImportError:
        return
    assert (out / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_campaign_resumes_after_a_kill(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    _campaign(tmp_path)  # writes the seed
    cmd = [sys.executable, "-m", "einc", "fuzz", "--time", "12s", "--seed", "3", "--target", "interp",
           "--corpus", str(corpus), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    state = out / "state.json"
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 60:
            if state.exists() and json.loads(state.read_text())["execs"] >= 8:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the campaign made no progress")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = json.loads(state.read_text())
    queue_before = set(os.listdir(corpus / "queue"))
    assert before["runs"] == 1 and before["elapsed_s"] < 12
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode in (0, 1), p.stderr
    after = json.loads((out / "summary.json").read_text())
    assert after["runs"] == 2
    assert after["execs"] > before["execs"]  # continued from the checkpoint, nothing lost
    assert after["elapsed_s"] >= 12 - 1e-6  # the budget is the total over both runs
    assert queue_before <= set(os.listdir(corpus / "queue"))


@pytest.mark.parametrize("sig,rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_campaign_reports_even_when_signalled_twice(tmp_path, sig, rc):
    """Ctrl-C (to the whole process group, as a terminal sends it) or SIGTERM, twice in a row as
    ``timeout`` and impatient users do: the campaign stops with 128 + the signal, its children
    gone, and the summary says so (a second signal used to land in the shutdown and lose it)."""
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    _campaign(tmp_path)  # writes the seed
    cmd = [sys.executable, "-m", "einc", "fuzz", "--time", "60s", "--seed", "3", "--target", "interp", "--jobs", "2",
           "--corpus", str(corpus), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)
    state = out / "state.json"
    t0 = time.monotonic()
    while not (state.exists() and json.loads(state.read_text())["execs"] >= 8):
        assert time.monotonic() - t0 < 60 and proc.poll() is None, "the campaign made no progress"
        time.sleep(0.1)
    os.killpg(proc.pid, sig)
    time.sleep(0.05)
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    o, e = proc.communicate(timeout=60)
    assert proc.returncode == rc, e
    assert "interrupted; run the same command again" in e and "Traceback" not in e
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["signal"] == sig and summary["elapsed_s"] < 60
    with pytest.raises(ProcessLookupError):  # no child outlived the campaign
        os.killpg(proc.pid, 0)


def test_parse_duration():
    from einc.commands.fuzz import parse_duration
    from einc.errors import ParseError

    assert parse_duration("90") == 90 and parse_duration("90s") == 90
    assert parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    with pytest.raises(ParseError):
        parse_duration("ten minutes")
    with pytest.raises(ParseError):
        parse_duration("0s")


def test_a_fresh_clone_without_a_queue_runs_and_keeps_the_queue_out_of_git(tmp_path):
    import shutil

    repo = Path(__file__).resolve().parents[1]
    # corpus/queue/ is the campaigns' working set: git-ignored, so a fresh clone has seeds and regressions only
    ignores = (repo / ".gitignore").read_text().split()
    assert "/corpus/queue/" in ignores
    corpus = tmp_path / "corpus"
    shutil.copytree(repo / "corpus" / "seeds", corpus / "seeds")
    shutil.copytree(repo / "corpus" / "regressions", corpus / "regressions")
    regs_before = {p.name: (p / "meta.json").read_text() for p in (corpus / "regressions").iterdir()}
    from einc.fuzz.campaign import Campaign

    s = Campaign(corpus, tmp_path / "out", seed=7, budget_s=60, jobs=2, target="interp", progress=False,
                 max_execs=30, save_findings=False).run()
    queue = list((corpus / "queue").glob("*.json"))
    assert queue and s["corpus_size"] >= len(queue)  # the queue was created and filled
    assert {p.name: (p / "meta.json").read_text() for p in (corpus / "regressions").iterdir()} == regs_before


def test_queue_entries_are_picked_by_energy_which_decays(tmp_path):
    import random

    camp = _campaign(tmp_path)
    prog = single_einsum("ij->ji", [TensorType((2, 3), "float32")])
    a, b = Case(prog, FuzzPipeline(target="interp"), seed=1), Case(prog, FuzzPipeline(target="interp"), seed=2)
    camp.queue = {"a": a, "b": b}
    camp.energy = {"a": 20.0, "b": 1.0}
    rng = random.Random(0)
    picks = [camp._pick_energy(rng).seed for _ in range(10)]
    assert picks.count(1) >= 7  # the entry that brought much new feedback is mutated most
    assert camp.energy["a"] < 20.0 * 0.85 ** 5  # ... and each pick costs it energy, so b gets its turn
    picks = [camp._pick_energy(rng).seed for _ in range(60)]
    assert picks.count(2) >= 15


def test_coverage_mode_generates_more_when_fresh_inputs_pay_off_more(tmp_path):
    camp = _campaign(tmp_path)
    assert camp.fresh_rate is None and camp.fresh_share() == 0.5  # no evidence yet
    prog = single_einsum("ij->ji", [TensorType((2, 3), "float32")])
    case = Case(prog, FuzzPipeline(target="interp"), seed=1)
    ok = Outcome("ok", "done")
    for i in range(40):  # fresh inputs keep adding feedback, mutants never do
        camp._record(case, "generate", ok, {f"f{i}"}, set(), "")
        camp._record(case, "prog:relabel", ok, set(), set(), "")
    assert camp.fresh_share() == 0.8  # capped: mutants keep a fifth
    for i in range(400):  # then the generator saturates while mutants pay
        camp._record(case, "generate", ok, set(), set(), "")
        camp._record(case, "prog:relabel", ok, {f"m{i}"}, set(), "")
    assert camp.fresh_share() == 0.2
    assert _campaign(tmp_path, mode="nofeedback").fresh_share() == 0.2  # the ablation variants keep a fixed share


def test_fail_on_einc_counts_only_findings_on_einc_own_compile_path(tmp_path):
    """`einc fuzz --fail-on einc` (CI) fails on bugs a user can hit, not on fuzzed-TVM-pipeline robustness bugs."""
    from einc.commands.fuzz import _on_einc_path
    from einc.fuzz.case import FuzzPipeline

    plain, fuzzed = tmp_path / "plain", tmp_path / "fuzzed"
    for folder, pl in ((plain, FuzzPipeline(passes="canonicalize")),
                       (fuzzed, FuzzPipeline(sched=("vectorize(b0,l1)",)))):
        folder.mkdir()
        (folder / "pipeline.txt").write_text(pl.to_text())
    assert _on_einc_path({"path": str(plain)}) is True
    assert _on_einc_path({"path": str(fuzzed)}) is False
    assert _on_einc_path({"path": str(tmp_path / "missing")}) is True  # nothing to tell: it counts


def test_a_spent_campaign_says_why_nothing_runs(tmp_path, capsys):
    from einc.commands.fuzz import _say_if_spent

    (tmp_path / "state.json").write_text(json.dumps({"elapsed_s": 25.0}))
    _say_if_spent(tmp_path, 5.0)
    assert "already ran 25s of its 5s budget" in capsys.readouterr().err
    _say_if_spent(tmp_path, 60.0)  # budget left: the campaign goes on, nothing to say
    assert capsys.readouterr().err == ""


def _fuzz_cli(capsys, *argv):
    from einc.cli import main

    try:
        rc = main(["fuzz", *map(str, argv)])
    except SystemExit as e:  # argparse refusals
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_fuzz_refuses_what_would_run_wrong_or_lose_work(tmp_path, capsys, monkeypatch):
    """Values and folders that used to be accepted and do damage (a 0 s case timeout saved every case
    as a 'timeout' regression; --time nan never stopped; a typo in --replay passed CI) are usage
    errors, before any campaign work; an unwritable --out fails at once, not after TVM warmed up."""
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "corpus"
    (corpus / "seeds").mkdir(parents=True)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    for argv, msg in [
        (["--time", "nan"], "must be positive and finite"),
        (["--time", "inf"], "must be positive and finite"),
        (["--case-timeout", "0"], "expected a number of seconds > 0"),
        (["--case-timeout", "nan"], "expected a number of seconds > 0"),
        (["--reduce-time", "-1"], "expected a number of seconds >= 0"),
        (["--max-execs", "-3"], "expected a whole number >= 0"),
        (["--replay", tmp_path / "nowhere"], "nothing to replay in .*nowhere: no such folder"),
        (["--replay", tmp_path / "afile"], "afile: not a folder"),
        (["--replay", tmp_path / "empty"], "empty: no regression folders"),
        (["--corpus", tmp_path / "nowhere"], "no corpus folder .*nowhere"),
        (["--corpus", corpus, "--out", tmp_path / "afile" / "sub"], "afile is not a directory"),
        (["--corpus", corpus, "--out", tmp_path / "afile"], "afile is not a directory"),
    ]:
        rc, text = _fuzz_cli(capsys, *argv)
        assert rc == 2 and re.search(msg, text), (argv, text)
        assert "Traceback" not in text
    assert not (tmp_path / "nowhere").exists() and (tmp_path / "afile").read_text() == "x"


def test_a_campaign_folder_is_one_campaigns(tmp_path):
    """Resuming an --out with another seed, target or mode would mix two campaigns under one label;
    two campaigns at once on one --out would overwrite each other's report: both are refused."""
    from einc.errors import UsageError
    from einc.fuzz.corpus import locked

    camp = _campaign(tmp_path, max_execs=4)
    camp.run()
    with pytest.raises(UsageError, match="another seed 5 \\(now 6\\).*--fresh"):
        _campaign(tmp_path, seed=6, max_execs=8).run()
    assert _campaign(tmp_path, max_execs=8).run()["execs"] >= 8  # the same settings go on
    with locked(tmp_path / "out"):
        with pytest.raises(UsageError, match=f"in use by another einc fuzz campaign \\(pid {os.getpid()}\\)"):
            _campaign(tmp_path, max_execs=12).run()
    assert _campaign(tmp_path, max_execs=12).run()["execs"] >= 12  # released


def test_replay_reports_an_unreadable_folder_and_goes_on(tmp_path, capsys):
    """A hand-made regression folder with a missing file or key, or a case.ein that does not parse, is
    a FAIL line naming the folder and the file (with a caret for case.ein); the other folders still
    replay; one folder alone can be replayed too."""
    prog = single_einsum("ij->j", [TensorType((3, 4), "float32")])
    good = fcorpus.save_regression(tmp_path, Case(prog, FuzzPipeline(target="interp"), seed=1),
                                   Outcome("wrong_result", "run", "", "", {"dtype": "float32"}), status="fixed")
    root = tmp_path / "regressions"
    for name in ("no_signature", "no_pipeline", "bad_case", "bad_target"):
        (root / name).mkdir()
        for f in ("meta.json", "pipeline.txt", "case.ein"):
            (root / name / f).write_bytes((good / f).read_bytes())
    meta = json.loads((good / "meta.json").read_text())
    (root / "no_signature" / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "signature"}))
    (root / "no_pipeline" / "pipeline.txt").unlink()
    (root / "bad_case" / "case.ein").write_text("input x: float32[3, 4]\ny = einsum(\"ij->k\", x)\noutput y\n")
    (root / "bad_target" / "pipeline.txt").write_text("target: nosuch\n")
    rc, text = _fuzz_cli(capsys, "--replay", root)
    assert rc == 1, text
    assert f"{good.name}: PASS" in text
    assert re.search(r"no_signature: FAIL \[\?\] unreadable\n .*cannot read meta.json: no 'signature'", text)
    assert re.search(r"no_pipeline: FAIL .*\n .*cannot read pipeline.txt: No such file", text)
    assert re.search(r"bad_case: FAIL .*\n .*'k'.*\n .*bad_case/case.ein:2:", text)
    assert re.search(r"bad_target: FAIL .*\n .*pipeline target 'nosuch' is not one of", text)
    rc, text = _fuzz_cli(capsys, "--replay", good)
    assert rc == 0 and text.startswith(f"{good.name}: PASS")


def test_a_seed_that_cannot_be_read_is_named(tmp_path):
    corpus = tmp_path / "corpus"
    camp = _campaign(tmp_path)
    (corpus / "seeds" / "broken.ein").write_text("input x: float32[2]\noutput y\n")
    (corpus / "seeds" / "odd.ein").write_text((corpus / "seeds" / "mm.ein").read_text())
    (corpus / "seeds" / "odd.pipeline.txt").write_text("target: nosuch\n")
    skipped = camp.skipped_seeds()
    assert len(skipped) == 2 and "broken.ein" in skipped[0] and "'nosuch'" in skipped[1]
    assert len(fcorpus.load_seeds(corpus)) == 1


def test_reduce_a_folder_again_in_place(tmp_path, capsys):
    """``einc fuzz --reduce FOLDER`` shrinks a hand-made (or half-reduced) finding while it keeps its
    recorded signature, and swaps the folder in whole; a folder whose signature no longer shows is
    refused."""
    from einc.fuzz.harness import run_case_isolated
    from einc.ir.nodes import Program, Value

    t, u = TensorType((6, 5, 4), "float32"), TensorType((4, 6, 5), "float32")
    prog = Program((Value("x", t), Value("y", TensorType((7,), "float32"))),
                   (Einsum("p", ("x",), ("ijk",), "kij", u), Einsum("q", ("p", "p"), ("abc", "abc"), "abc", u),
                    Einsum("s", ("y",), ("i",), "", TensorType((), "float32"))), ("q", "s"))
    case = Case(prog, FuzzPipeline(passes="canonicalize,transposes", target="interp"), seed=2)
    got = run_case_isolated(case, coverage=False, faults=("inverse_permutation",))[0]
    assert got.is_bug
    folder = fcorpus.save_regression(tmp_path, case, got, extra_meta={"faults": ["inverse_permutation"]})
    (folder / "note.txt").write_text("kept")
    rc, text = _fuzz_cli(capsys, "--reduce", folder, "--reduce-time", 60)
    assert rc == 0 and "-> " in text, text
    small, meta = fcorpus.load_regression(folder)
    assert small.size < case.size and len(small.program.outputs) == 1 and meta["reduce_again"]["steps"] >= 1
    assert run_case_isolated(small, coverage=False, faults=("inverse_permutation",))[0].signature == got.signature
    assert (folder / "note.txt").read_text() == "kept"
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # nothing left beside it
    meta["faults"] = []
    (folder / "meta.json").write_text(json.dumps(meta))
    rc, text = _fuzz_cli(capsys, "--reduce", folder)
    assert rc == 2 and "does not show its recorded" in text
