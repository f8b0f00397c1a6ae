"""Contraction paths: costs against opt_einsum and numpy, memory limits, explicit path validation."""
from __future__ import annotations

import random

import numpy as np
import opt_einsum as oe
import pytest

from einc.errors import EincError, PathError
from einc.ir.paths import find_path, flop_count, numpy_report

AO = ("pi", "qj", "ijkl", "rk", "sl")


def _oe_info(inputs, output, sizes, optimize, memory_limit=None):
    expr = ",".join(inputs) + "->" + output
    shapes = [tuple(sizes[c] for c in t) for t in inputs]
    return oe.contract_path(expr, *shapes, shapes=True, optimize=optimize, memory_limit=memory_limit)[1]


def rand_expr(seed: int, max_ops: int = 6):
    """A random einsum (labels per operand, output, sizes): repeated labels, outer products, reductions."""
    rng = random.Random(seed)
    nlab = rng.randint(2, 8)
    labels = "abcdefghij"[:nlab]
    sizes = {c: rng.choice([1, 2, 3, 4, 5, 7]) for c in labels}
    n = rng.randint(1, max_ops)
    inputs = ["".join(rng.choice(labels) for _ in range(rng.randint(0, 4))) for _ in range(n)]
    used = list(dict.fromkeys("".join(inputs)))
    output = "".join(rng.sample(used, rng.randint(0, len(used))))
    return inputs, output, sizes


def _replay(info):
    """Check the steps chain: each step's operands are the ones the path names at that point."""
    ops = list(info.inputs)
    for st in info.steps:
        assert tuple(ops[p] for p in sorted(st.positions)) == st.inputs
        ops = [o for i, o in enumerate(ops) if i not in st.positions] + [st.output]
        assert tuple(ops) == st.remaining
    assert ops == ([info.output] if info.inputs else [])


def test_ao_to_mo_optimal_matches_opt_einsum():
    sizes = {c: 24 for c in "pqrsijkl"}
    info = find_path(AO, "pqrs", sizes, "optimal")
    ref = _oe_info(AO, "pqrs", sizes, "optimal")
    assert info.flops == ref.opt_cost
    assert info.naive_flops == ref.naive_cost
    assert info.optimizer == "optimal"
    assert len(info.path) == 4 and all(len(s) == 2 for s in info.path)
    assert info.largest_intermediate == 24 ** 4
    assert info.speedup == pytest.approx(ref.naive_cost / ref.opt_cost)


@pytest.mark.parametrize("optimizer", ["optimal", "dp", "greedy", "branch-all", "branch-2", "auto"])
@pytest.mark.parametrize("seed", range(25))
def test_costs_match_opt_einsum(optimizer, seed):
    inputs, output, sizes = rand_expr(seed)
    if optimizer == "optimal" and len(inputs) > 5:
        inputs = inputs[:5]
        output = "".join(c for c in output if c in "".join(inputs))
    info = find_path(inputs, output, sizes, optimizer)
    _replay(info)
    # our accounting of opt_einsum's own path equals opt_einsum's accounting
    ref = _oe_info(inputs, output, sizes, optimizer)
    ours_on_theirs = find_path(inputs, output, sizes, list(ref.path))
    assert ours_on_theirs.flops == ref.opt_cost
    assert ours_on_theirs.largest_intermediate == max(ref.size_list)
    if optimizer in ("optimal", "dp") and len(inputs) > 2:
        assert info.flops == ref.opt_cost
    # no optimizer does worse than the single n-ary loop nest by more than the per-step add
    assert info.flops <= find_path(inputs, output, sizes, False).flops * max(1, len(inputs))


@pytest.mark.parametrize("seed", range(30))
def test_optimal_is_never_worse_than_greedy(seed):
    inputs, output, sizes = rand_expr(seed, max_ops=5)
    assert find_path(inputs, output, sizes, "optimal").flops <= find_path(inputs, output, sizes, "greedy").flops


@pytest.mark.parametrize("optimizer", ["optimal", "dp", "greedy", "branch-all", "branch-1", "auto"])
@pytest.mark.parametrize("seed", range(15))
def test_memory_limit_honoured(optimizer, seed):
    inputs, output, sizes = rand_expr(seed + 100)
    free = find_path(inputs, output, sizes, optimizer)
    limit = max(1, min((s.size for s in free.steps), default=1))
    info = find_path(inputs, output, sizes, optimizer, memory_limit=limit)
    _replay(info)
    assert info.memory_limit == limit
    for st in info.steps[:-1]:
        assert st.size <= limit


def test_memory_limit_forces_single_step_on_ao_to_mo():
    sizes = {c: 24 for c in "pqrsijkl"}
    info = find_path(AO, "pqrs", sizes, "optimal", memory_limit=24 ** 3)
    assert info.path == ((0, 1, 2, 3, 4),)
    assert info.flops == info.naive_flops


def test_max_input_limit_is_largest_operand_or_output():
    sizes = {"i": 3, "j": 50, "k": 4}
    info = find_path(["ij", "jk", "k"], "i", sizes, "greedy", memory_limit="max_input")
    assert info.memory_limit == 200
    info2 = find_path(["ij", "jk", "k"], "i", sizes, ("greedy", 7))
    assert info2.memory_limit == 7


def test_auto_records_the_optimizer_it_chose():
    sizes = {c: 3 for c in "abcdefghij"}
    assert find_path(["ab", "bc", "cd"], "ad", sizes).optimizer == "optimal"
    assert find_path(["ab", "bc", "cd", "de", "ef", "fg", "gh"], "ah", sizes).optimizer == "branch-2"
    assert find_path(["ab"] * 20, "", sizes).optimizer == "greedy"


def test_false_and_true():
    sizes = {"a": 2, "b": 3, "c": 4}
    none = find_path(["ab", "bc", "c"], "a", sizes, False)
    assert none.path == ((0, 1, 2),) and none.optimizer == "none"
    assert none.flops == none.naive_flops == flop_count("abc", True, 3, sizes)
    assert find_path(["ab", "bc", "c"], "a", sizes, True).optimizer == "greedy"


def test_single_and_no_operands():
    info = find_path(["ii"], "", {"i": 5}, "optimal")
    assert info.path == ((0,),) and info.flops == 10 and info.steps[0].summed == "i"
    assert find_path([], "", {}, "auto").path == ()


@pytest.mark.parametrize("path,msg", [
    ([(0, 5)], "position 5 is out of range"),
    ([(0, 1)], "leaves 2 operands uncontracted"),
    ([(0, 0), (0, 1)], "names an operand twice"),
    ([()], "is empty"),
    ([(0, "a")], "not an integer"),
    ([3], "tuple of operand positions"),
    (["einsum_path", (1, 2), (0, 2)], "position 2 is out of range"),
])
def test_explicit_path_errors(path, msg):
    with pytest.raises(PathError, match=msg) as ei:
        find_path(["ab", "bc", "cd"], "ad", {c: 2 for c in "abcd"}, path)
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, EincError)


def test_explicit_path_numpy_form_and_memory_limit():
    sizes = {c: 4 for c in "abcd"}
    a = find_path(["ab", "bc", "cd"], "ad", sizes, ["einsum_path", (1, 2), (0, 1)])
    b = find_path(["ab", "bc", "cd"], "ad", sizes, [(1, 2), (0, 1)])
    assert a == b and a.optimizer == "explicit" and a.steps[0].subscripts == "bc,cd->db"
    with pytest.raises(PathError, match="over the memory limit"):
        find_path(["ab", "cd", "bc"], "ad", sizes, [(0, 1), (0, 1)], memory_limit=16)


@pytest.mark.parametrize("bad", ["fastest", 3, object()])
def test_unknown_optimizer(bad):
    with pytest.raises(PathError, match="greedy"):
        find_path(["ab", "bc"], "ac", {"a": 1, "b": 2, "c": 3}, bad)


def test_bad_memory_limit_and_missing_size():
    with pytest.raises(PathError, match="memory_limit"):
        find_path(["ab", "bc"], "ac", {"a": 1, "b": 2, "c": 3}, "greedy", memory_limit="lots")
    with pytest.raises(PathError, match="'c'"):
        find_path(["ab", "bc"], "ac", {"a": 1, "b": 2}, "greedy")


@pytest.mark.parametrize("seed", range(20))
def test_numpy_report_matches_numpy(seed):
    inputs, output, sizes = rand_expr(seed + 200)
    if not inputs or any(len(set(t)) != len(t) for t in inputs):
        inputs = [t for t in inputs if len(set(t)) == len(t)] or ["a"]
        output = "".join(c for c in output if c in "".join(inputs))
    info = find_path(inputs, output, sizes, "greedy")
    arrays = [np.zeros([sizes[c] for c in t]) for t in inputs]
    expr = ",".join(inputs) + "->" + output
    path, text = np.einsum_path(expr, *arrays, optimize=info.numpy_path())
    assert path == info.numpy_path()
    assert numpy_report(info) == text


def test_json_is_stable():
    sizes = {c: 24 for c in "pqrsijkl"}
    doc = find_path(AO, "pqrs", sizes, "optimal").to_json()
    assert list(doc) == ["subscripts", "sizes", "optimizer", "memory_limit", "path", "steps", "flops",
                         "naive_flops", "speedup", "largest_intermediate"]
    assert sum(s["flops"] for s in doc["steps"]) == doc["flops"]
    assert doc["steps"][-1]["subscripts"].endswith("->pqrs")


# --------------------------------------------------------------------------------------- einc explain

AO_SHAPES = "24x24,24x24,24x24x24x24,24x24,24x24"


def _explain(capsys, *argv):
    import json

    from einc.cli import main

    rc = main(["explain", *argv])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if "--json" in argv and rc == 0 else out), err


def test_explain_json_document(capsys):
    rc, doc, _ = _explain(capsys, "pi,qj,ijkl,rk,sl->pqrs", "--shapes", AO_SHAPES, "--optimize", "optimal", "--json")
    assert rc == 0
    assert list(doc)[:3] == ["expression", "shapes", "requested"]
    assert doc["shapes"][2] == [24, 24, 24, 24] and doc["requested"] == "optimal"
    assert set(doc["steps"][0]) == {"positions", "subscripts", "summed", "flops", "size", "scaling", "remaining"}
    shapes = [tuple(map(int, s.split("x"))) for s in AO_SHAPES.split(",")]
    ref = oe.contract_path("pi,qj,ijkl,rk,sl->pqrs", *shapes, shapes=True, optimize="optimal")[1]
    assert doc["flops"] == ref.opt_cost and doc["naive_flops"] == ref.naive_cost
    assert doc["largest_intermediate"] == max(s["size"] for s in doc["steps"])
    assert doc["speedup"] == pytest.approx(ref.naive_cost / ref.opt_cost)


def test_explain_table_and_numpy_report(capsys):
    rc, out, _ = _explain(capsys, "ij,jk,kl->il", "--shapes", "2x3,3x4,4x5", "--optimize", "greedy")
    assert rc == 0
    info = find_path(["ij", "jk", "kl"], "il", {"i": 2, "j": 3, "k": 4, "l": 5}, "greedy")
    for st in info.steps:
        assert st.subscripts in out
    assert f"total FLOPs           {info.flops}" in out and "speedup" in out
    rc, out, _ = _explain(capsys, "ij,jk,kl->il", "--shapes", "2x3,3x4,4x5", "--optimize", "0-2;0-1", "--numpy")
    arrays = [np.zeros(s) for s in [(2, 3), (3, 4), (4, 5)]]
    assert out == np.einsum_path("ij,jk,kl->il", *arrays, optimize=["einsum_path", (0, 2), (0, 1)])[1] + "\n"


def test_explain_memory_limit_and_errors(capsys):
    rc, doc, _ = _explain(capsys, "ab,bc,cd->ad", "--shapes", "8x2,2x8,8x8", "--memory-limit", "10", "--json")
    assert rc == 0 and doc["memory_limit"] == 10
    assert all(s["size"] <= 10 for s in doc["steps"][:-1])
    rc, _, err = _explain(capsys, "ij,jk->ik", "--shapes", "2x3,3x4", "--optimize", "fastest")
    assert rc == 2 and "unknown path optimizer 'fastest'" in err and "Traceback" not in err
    rc, _, err = _explain(capsys, "ij,jk,kl->il", "--shapes", "2x3,3x4,4x5", "--optimize", "0-7")
    assert rc == 2 and "position 7 is out of range" in err
    rc, _, err = _explain(capsys, "ij,jk->ik", "--shapes", "2x3,4x4")
    assert rc == 2 and "^" in err
