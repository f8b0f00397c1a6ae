"""einc.fuzz through TVM: fuzzed builds, the oracle against planted faults, a short campaign."""
from __future__ import annotations

import pytest

from einc.fuzz.case import Case, FuzzPipeline
from einc.fuzz.harness import run_case_isolated, warm_up
from einc.ir.nodes import Einsum, Program, Value, single_einsum
from einc.ir.types import TensorType as T

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module", autouse=True)
def _warm():
    warm_up()  # import TVM once here, so forked children share it


def _mm(m=4, k=5, n=6, dtype="float32"):
    return single_einsum("ij,jk->ik", [T((m, k), dtype), T((k, n), dtype)])


def test_fuzzed_build_with_tir_passes_and_schedule_primitives_is_checked_and_reports_features():
    pl = FuzzPipeline(passes="canonicalize", tir=("s_tir.LoopPartition", "tirx.CommonSubexprElim"),
                      sched=("split(b0,l0,2)", "vectorize(b0,l-1)", "cache_write(b0,0)", "reorder(b0,l0,l0)"),
                      config=("tirx.disable_vectorize=1",))
    outcome, feats, arcs, _ = run_case_isolated(Case(_mm(), pl, seed=3), timeout=120)
    assert outcome.key == "ok@done", outcome
    assert any(f.startswith("tvm:") and f.endswith(":changed") for f in feats)
    assert "sched:ok:split" in feats
    assert any(f.startswith("sched:skip:reorder") for f in feats)  # reorder of a loop with itself is skipped
    assert any(a[0].startswith("lowering/") for a in arcs)  # coverage of einc's lowering came back


def _broadcast_prog():
    x, y = T((4, 1), "float32"), T((4, 5), "float32")
    return single_einsum("ij,ij->ij", [x, y])


FAULT_CASES = {
    "wrong_loop_bound": _mm,
    "wrong_reduction_init": _mm,
    "swapped_labels": lambda: _mm(4, 5, 4),
    "dropped_broadcast": _broadcast_prog,
}


@pytest.mark.parametrize("fault", sorted(FAULT_CASES))
def test_oracle_catches_each_planted_lowering_fault(fault):
    from einc.fuzz import faults

    assert faults.check(fault), f"fault {fault} no longer applies to the lowering source"
    case = Case(FAULT_CASES[fault](), FuzzPipeline(), seed=1)
    clean = run_case_isolated(case, timeout=120, coverage=False)[0]
    assert clean.key == "ok@done", clean
    bad = run_case_isolated(case, timeout=120, coverage=False, faults=(fault,))[0]
    assert bad.is_bug and bad.symptom in ("wrong_result", "compile_error", "crash"), bad


def test_metamorphic_oracles_agree_on_a_multi_step_program():
    prog = Program(
        (Value("a", T((3, 4), "float32")), Value("b", T((4, 5), "float32")), Value("c", T((5,), "float32"))),
        (Einsum("t", ("a", "b"), ("ij", "jk"), "ik", T((3, 5), "float32")),
         Einsum("u", ("t", "c"), ("ik", "k"), "i", T((3,), "float32"))),
        ("u",))
    for oracle in ("relabel", "permute"):
        outcome = run_case_isolated(Case(prog, FuzzPipeline(oracle=oracle), seed=2), timeout=120, coverage=False)[0]
        assert outcome.key == "ok@done", (oracle, outcome)


def test_short_llvm_campaign_finds_tvm_feedback(tmp_path):
    from einc.fuzz.campaign import Campaign

    corpus = tmp_path / "corpus"
    (corpus / "seeds").mkdir(parents=True)
    (corpus / "seeds" / "mm.ein").write_text(
        'input a: float32[3, 4]\ninput b: float32[4, 5]\nc = einsum("ij,jk->ik", a, b)\noutput c\n')
    s = Campaign(corpus, tmp_path / "out", seed=2, budget_s=120, jobs=2, progress=False, max_execs=8,
                 reduce_budget_s=0, save_findings=False).run()
    assert s["execs"] >= 8
    assert any(k.startswith(("ok@", "compile_error@", "crash@", "wrong_result@", "rejected@")) for k in s["outcomes"])
    assert s["coverage"]["features"] > 10  # TVM pass-change signatures, not only einc arcs
