"""Replay every fuzz finding under corpus/regressions/<id>/ (see einc.fuzz.replay for the rules).

* ``open`` findings xfail while they reproduce and fail once they stop (mark them ``fixed``);
* ``fixed`` and ``workaround`` findings must give their ``expect`` outcome.

The replay harness itself is tested on synthetic folders, so this module always has real tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from einc.fuzz import corpus as fcorpus
from einc.fuzz.case import Case, FuzzPipeline
from einc.fuzz.outcome import Outcome
from einc.fuzz.replay import needs_tvm, replay
from einc.ir.nodes import single_einsum
from einc.ir.types import TensorType

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
FOLDERS = fcorpus.list_regressions(CORPUS)


def _param(folder: Path):
    marks = [pytest.mark.tvm] if needs_tvm(folder) else []
    meta = json.loads((folder / "meta.json").read_text())
    if (meta.get("case", {}).get("pipeline") or {}).get("target") == "cuda-emu":
        # einc's CUDA code run by the CPU emulator: the replay rebuilds with the folder's GEMM knobs
        from einc.lowering.fuzz_hooks import has_cxx

        marks.append(pytest.mark.skipif(not has_cxx(), reason="cuda-emu replays need a C++ compiler"))
    if meta.get("symptom") == "timeout" and meta.get("status", "open") == "open":
        marks.append(pytest.mark.slow)  # a hang replays for its whole timeout
    return pytest.param(folder, id=folder.name, marks=marks)


@pytest.mark.parametrize("folder", [_param(f) for f in FOLDERS])
def test_regression_folder(folder):
    for name in ("case.ein", "pipeline.txt", "meta.json", "err.log", "repro.py"):
        assert (folder / name).is_file(), f"{folder.name} lacks {name}"
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("status") == "workaround":
        # a TVM bug kept with a workaround: the folder carries a pure-TVM reproducer for upstream
        # (never run here: it may crash or hang), and the workaround is a clean einc rejection
        src = (folder / "repro_tvm.py").read_text()
        compile(src, str(folder / "repro_tvm.py"), "exec")
        assert "import einc" not in src and "from einc" not in src, "repro_tvm.py must need TVM only"
        assert meta["expect"].startswith("rejected@"), meta["expect"]
    v = replay(folder)
    if v.result == "xfail":
        pytest.xfail(v.reason)
    assert v.result == "pass", v.reason


# ------------------------------------------------------------------------------------------- the harness itself


def _write(tmp_path, status, expect="ok@done", passes="canonicalize"):
    prog = single_einsum("ijk->kij", [TensorType((2, 3, 4), "float32")])
    case = Case(prog, FuzzPipeline(passes=passes, target="interp"), seed=2)
    outcome = Outcome("wrong_result", "passes", "", "synthetic", {"dtype": "float32"})
    folder = fcorpus.save_regression(tmp_path, case, outcome, status=status, expect=expect)
    return folder


def test_replay_of_a_fixed_folder_passes_when_the_outcome_is_the_expected_one(tmp_path):
    v = replay(_write(tmp_path, "fixed"))
    assert v.result == "pass" and v.outcome.key == "ok@done"


def test_replay_of_a_fixed_folder_fails_when_the_expectation_breaks(tmp_path):
    v = replay(_write(tmp_path, "workaround", expect="rejected@lower"))
    assert v.result == "fail" and "expected rejected@lower" in v.reason


def test_replay_of_an_open_folder_asks_for_an_update_once_it_no_longer_reproduces(tmp_path):
    v = replay(_write(tmp_path, "open"))
    assert v.result == "fail" and "set status 'fixed'" in v.reason


def test_replay_of_an_open_folder_xfails_while_the_bug_reproduces(tmp_path):
    folder = _write(tmp_path, "open", passes="transposes")
    # plant the bug the folder records: the transposes pass folding the inverse permutation
    meta = json.loads((folder / "meta.json").read_text())
    meta["faults"] = ["inverse_permutation"]
    prog = fcorpus.load_regression(folder)[0].program
    from einc.fuzz.harness import run_case_isolated

    case = Case(prog, FuzzPipeline(passes="transposes", target="interp"), seed=2)
    from einc.ir.nodes import Einsum, Program, Value

    # a permutation consumed by another step, so the pass folds it into the consumer
    t = TensorType((2, 3, 4), "float32")
    prog = Program((Value("x", t),), (Einsum("p", ("x",), ("ijk",), "kij", TensorType((4, 2, 3), "float32")),
                                      Einsum("q", ("p", "p"), ("abc", "abc"), "abc", TensorType((4, 2, 3), "float32"))),
                   ("q",))
    case = case.replace(program=prog)
    got = run_case_isolated(case, coverage=False, faults=("inverse_permutation",))[0]
    assert got.is_bug
    (folder / "case.ein").write_text(fcorpus.case_text(case))
    meta["signature"] = got.signature
    (folder / "meta.json").write_text(json.dumps(meta))
    v = replay(folder)
    assert v.result == "xfail", v.reason
