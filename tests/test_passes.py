"""Passes and pipelines: parsing, formatting, errors, and every pass against the interpreter."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einc.errors import PipelineError, VerifyError
from einc.ir import Cast, Einsum, Program, TensorType, Value, einsum_sizes, interp, single_einsum, verify
from einc.ir.passes import (DEFAULT, Pass, format_pipeline, get_pass, parse_pipeline, pass_names,
                            pipeline_for_optimize, register_pass, run_pipeline)
from einc.ir.passes.canonicalize import exact_cast
from einc.ir.passes.decompose import Decompose
from einc.testing import programs, random_arrays, program_signature

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FLOATS = ("float64", "float32", "complex128")
INTS = ("int8", "int32", "int64", "uint8", "bool")
MIXED = ("float64", "int32", "int8", "bool", "complex64")


def _tol(prog: Program) -> float:
    """Relative tolerance: set by the least precise float any value of the program has."""
    dtypes = {t.dtype for t in prog.types().values()}
    return 1e-4 if dtypes & {"float32", "complex64"} else 1e-9


def assert_same(before: Program, after: Program, seed: int = 0):
    """``after`` computes what ``before`` does: same signature, same outputs on random data."""
    verify(after)
    assert after.inputs == before.inputs
    assert after.outputs == before.outputs
    assert [after.type_of(o) for o in after.outputs] == [before.type_of(o) for o in before.outputs]
    arrays = random_arrays(*program_signature(before), seed=seed)
    with np.errstate(all="ignore"):
        want = interp.run(before, *arrays)
        got = interp.run(after, *arrays)
    for o, w, g in zip(before.outputs, want, got):
        assert g.dtype == w.dtype and g.shape == w.shape, o
        if w.dtype.kind in "fc":
            tol = _tol(before)
            scale = max(1.0, float(np.max(np.abs(w), initial=0)))
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale * 10, err_msg=o)
        else:
            np.testing.assert_array_equal(g, w, err_msg=o)


# --------------------------------------------------------------------------------------- registry, strings


def test_registry_lists_builtin_passes():
    assert {"canonicalize", "diagonals", "broadcast", "decompose", "transposes"} <= set(pass_names())
    assert get_pass("decompose") is Decompose


def test_unknown_pass_lists_valid_ones_with_caret():
    with pytest.raises(PipelineError) as ei:
        parse_pipeline("canonicalize, decompos{path=dp}")
    e = ei.value
    assert "unknown pass 'decompos'" in e.message and "decompose" in e.message and "transposes" in e.message
    assert (e.line, e.column) == (1, 15)
    assert "^^^^^^^^" in str(e)


def test_unknown_pass_suggests_the_nearest_name(capsys):
    from einc.cli import main

    with pytest.raises(PipelineError) as ei:
        parse_pipeline("canonicalize, canonicalise")
    assert "unknown pass 'canonicalise' (did you mean 'canonicalize'?)" in ei.value.message
    assert (ei.value.line, ei.value.column) == (1, 15)
    with pytest.raises(PipelineError) as ei:
        parse_pipeline("fold")
    assert "did you mean" not in ei.value.message  # nothing near: only the list
    seed = Path(__file__).resolve().parents[1] / "corpus" / "seeds" / "attention.ein"
    assert main(["opt", str(seed), "-p", "canonicalise"]) == 2
    err = capsys.readouterr().err.split("\n")
    assert "did you mean 'canonicalize'?" in err[0]
    assert err[1:4] == ["pipeline:1:1", "  canonicalise", "  " + "^" * len("canonicalise")]


@pytest.mark.parametrize("text,col,what", [
    ("decompose{path=fastest}", 16, "bad value 'fastest'"),
    ("decompose{memory-limit=-3}", 24, "positive"),
    ("decompose{mem=3}", 11, "no option 'mem'"),
    ("decompose{path=dp,path=greedy}", 19, "given twice"),
    ("decompose{path=dp", 10, "unclosed"),
    ("decompose{path}", 15, "expected '='"),
    ("canonicalize,,diagonals", 14, "expected a pass name"),
    ("canonicalize diagonals", 14, "expected ','"),
    ("canonicalize,", 14, "expected a pass name"),
])
def test_pipeline_errors_point_at_the_problem(text, col, what):
    with pytest.raises(PipelineError, match=what) as ei:
        parse_pipeline(text)
    assert ei.value.column == col
    assert isinstance(ei.value, ValueError)


def test_a_path_that_parses_but_cannot_apply_points_at_its_pass():
    from einc.errors import PathError

    prog = single_einsum("ij,jk,kl->il", [TensorType((2, 3), "float32"), TensorType((3, 4), "float32"),
                                            TensorType((4, 5), "float32")])
    with pytest.raises(PathError, match="out of range") as ei:
        run_pipeline(prog, "canonicalize, decompose{path=0-5}")
    assert ei.value.column == 15 and "^" * len("decompose{path=0-5}") in str(ei.value)
    assert run_pipeline(prog, "none") == prog


@pytest.mark.parametrize("text", [
    DEFAULT,
    "canonicalize,decompose{path=optimal,memory-limit=4096}",
    "decompose{path=0-2;0-1}",
    "decompose{memory-limit=max-input}",
    "transposes,canonicalize,transposes",
    "",
])
def test_pipeline_round_trip(text):
    passes = parse_pipeline(text)
    assert parse_pipeline(format_pipeline(passes)) == passes
    assert format_pipeline(parse_pipeline(format_pipeline(passes))) == format_pipeline(passes)


def test_options_are_typed_and_defaults_are_omitted():
    (d,) = parse_pipeline(" decompose { path = dp , memory-limit = 0x100 } ")
    assert d == Decompose(path="dp", memory_limit=256)
    assert format_pipeline([Decompose()]) == "decompose"
    assert format_pipeline([Decompose(memory_limit=7)]) == "decompose{memory-limit=7}"
    assert parse_pipeline("decompose{memory-limit=none}") == (Decompose(),)
    with pytest.raises(ValueError):
        Decompose(path="nope")


@dataclass(frozen=True)
class _Flag(Pass):
    name: ClassVar[str] = "test-flag"
    on: bool = False
    ratio: float = 0.5

    def apply(self, prog):
        return prog


def test_register_duplicate_raises_and_custom_options_parse():
    register_pass(_Flag)
    register_pass(_Flag)  # the same class again is harmless

    @dataclass(frozen=True)
    class Other(Pass):
        name: ClassVar[str] = "test-flag"

    with pytest.raises(PipelineError, match="already registered"):
        register_pass(Other)

    @dataclass(frozen=True)
    class Shadow(Pass):
        name: ClassVar[str] = "canonicalize"

    with pytest.raises(PipelineError, match="already registered"):
        register_pass(Shadow)
    assert parse_pipeline("test-flag{on=true,ratio=0.25}") == (_Flag(True, 0.25),)
    with pytest.raises(PipelineError, match="true or false"):
        parse_pipeline("test-flag{on=maybe}")


def test_run_pipeline_verifies_and_prints_between():
    prog = single_einsum("ij,jk,kl->il", [TensorType((2, 3), "float64"), TensorType((3, 4), "float64"),
                                          TensorType((4, 5), "float64")])
    seen = []
    out = run_pipeline(prog, DEFAULT, print_between=lambda p, q: seen.append((p.name, len(q.body))))
    assert [n for n, _ in seen] == ["canonicalize", "diagonals", "broadcast", "decompose", "canonicalize"]
    assert seen[-1][1] == 2
    assert_same(prog, out)

    @dataclass(frozen=True)
    class Breaker(Pass):
        name: ClassVar[str] = "test-breaker"

        def apply(self, p):
            return p.replace(outputs=("nowhere",))

    with pytest.raises(VerifyError, match="after pass 'test-breaker'"):
        run_pipeline(prog, [Breaker()])
    assert run_pipeline(prog, [Breaker()], verify=False).outputs == ("nowhere",)


def test_pipeline_for_optimize():
    assert "decompose{path=0-1;0-1}" in pipeline_for_optimize(["einsum_path", (0, 1), (0, 1)])
    assert "decompose{path=greedy,memory-limit=9}" in pipeline_for_optimize(("greedy", 9))
    assert "decompose" not in pipeline_for_optimize(False)
    for opt in ("optimal", True, [(1, 2), (0, 1)]):
        parse_pipeline(pipeline_for_optimize(opt))
    with pytest.raises(PipelineError):
        pipeline_for_optimize("fastest")


# --------------------------------------------------------------------------------------- each pass, by hand


def _prog(subscripts, *shapes, dtype="float64"):
    return single_einsum(subscripts, [TensorType(s, dtype) for s in shapes])


def test_canonicalize_renames_labels_so_equal_computations_compare_equal():
    a = run_pipeline(_prog("ij,jk->ik", (2, 3), (3, 4)), "canonicalize")
    b = run_pipeline(_prog("xy,yz->xz", (2, 3), (3, 4)), "canonicalize")
    assert a == b and a.body[0].subscripts == "ab,bc->ac"


def test_canonicalize_sums_lonely_labels_first():
    prog = _prog("ij,jk->i", (2, 3), (3, 4))
    out = run_pipeline(prog, "canonicalize")
    assert [op.subscripts for op in out.body] == ["ab->a", "ab,b->a"]
    assert_same(prog, out)
    # not when the lonely operand has a narrower dtype than the einsum computes in
    mixed = single_einsum("ij,jk->i", [TensorType((2, 3), "float64"), TensorType((3, 4), "int8")])
    assert len(run_pipeline(mixed, "canonicalize").body) == 1


def test_canonicalize_forwards_identities_keeps_output_names_and_drops_dead_code():
    t = TensorType((2, 3), "float64")
    prog = Program(
        (Value("x", t), Value("y", t)),
        (Einsum("a", ("x", "y"), ("ij", "ij"), "ij", t),
         Einsum("b", ("a",), ("ij",), "ij", t),  # identity, not an output: forwarded
         Einsum("dead", ("x",), ("ij",), "ji", TensorType((3, 2), "float64")),
         Einsum("c", ("b", "x"), ("ij", "ij"), "ij", t),
         Einsum("out", ("c",), ("ij",), "ij", t),  # identity producing the output: c is renamed
         Einsum("copy", ("x",), ("ij",), "ij", t)),  # identity of an input into an output: kept
        ("out", "copy"))
    out = run_pipeline(prog, "canonicalize")
    assert [op.result for op in out.body] == ["a", "out", "copy"]
    assert out.body[1].operands == ("a", "x")
    assert_same(prog, out)


def test_canonicalize_folds_exact_cast_chains_only():
    t = lambda d: TensorType((3,), d)  # noqa: E731
    prog = Program((Value("x", t("int8")),),
                   (Cast("a", "x", t("int32")), Cast("b", "a", t("float64")),  # exact, then anything: fold
                    Cast("c", "x", t("float16")), Cast("d", "c", t("int32")),  # float -> int: keep
                    Cast("e", "x", t("int8"))),  # a no-op cast: forwarded
                   ("b", "d", "e"))
    out = run_pipeline(prog, "canonicalize")
    ops = {op.result: op for op in out.body}
    assert ops["b"].operand == "x" and "a" not in ops
    assert ops["d"].operand == "c"
    assert_same(prog, out)
    assert exact_cast("int32", "float64") and not exact_cast("int64", "float64")
    assert exact_cast("float16", "float32") and not exact_cast("float16", "bfloat16")
    assert not exact_cast("float32", "int64") and exact_cast("bool", "uint8") and not exact_cast("int8", "uint64")


def test_canonicalize_dedupes_common_subexpressions():
    t = TensorType((3, 3), "float64")
    prog = Program((Value("x", t),),
                   (Einsum("a", ("x",), ("ij",), "ji", t), Einsum("b", ("x",), ("pq",), "qp", t),
                    Einsum("c", ("a", "b"), ("ij", "jk"), "ik", t)), ("c",))
    out = run_pipeline(prog, "canonicalize")
    assert len(out.body) == 2 and out.body[1].operands == ("a", "a")
    assert_same(prog, out)


def test_diagonals_extracts_repeated_labels_and_traces():
    prog = _prog("iij,jk->ik", (3, 3, 2), (2, 4))
    out = run_pipeline(prog, "diagonals")
    assert [op.subscripts for op in out.body] == ["iij->ij", "ij,jk->ik"]
    assert_same(prog, out)
    trace = run_pipeline(_prog("ii->", (4, 4)), "diagonals")
    assert [op.subscripts for op in trace.body] == ["ii->i", "i->"]
    assert run_pipeline(_prog("iji->ji", (3, 2, 3)), "diagonals").body == _prog("iji->ji", (3, 2, 3)).body


def test_broadcast_squeezes_size_one_axes():
    prog = _prog("ij,jk->ik", (3, 1), (4, 5))
    out = run_pipeline(prog, "broadcast")
    assert [op.subscripts for op in out.body] == ["ij->i", "i,jk->ik"]
    assert_same(prog, out)


def test_decompose_ao_to_mo_matches_opt_einsum():
    import opt_einsum as oe

    from einc.ir.paths import find_path

    n = 6
    shapes = [(n, n), (n, n), (n, n, n, n), (n, n), (n, n)]
    prog = _prog("pi,qj,ijkl,rk,sl->pqrs", *shapes)
    out = run_pipeline(prog, "decompose{path=optimal}")
    assert len(out.body) == 4 and all(op.arity == 2 for op in out.body)
    flops = sum(find_path(op.inputs, op.output, einsum_sizes(op, [out.type_of(o) for o in op.operands]),
                          False).flops for op in out.body)
    assert flops == oe.contract_path("pi,qj,ijkl,rk,sl->pqrs", *shapes, shapes=True, optimize="optimal")[1].opt_cost
    assert_same(prog, out)


def test_decompose_casts_operands_to_the_result_dtype_first():
    prog = single_einsum("i,i,i->", [TensorType((4,), "int8"), TensorType((4,), "int8"), TensorType((4,), "int64")])
    out = run_pipeline(prog, "decompose{path=0-1;0-1}")
    assert sum(isinstance(op, Cast) for op in out.body) == 2
    assert all(op.type.dtype == "int64" for op in out.body)
    arrays = [np.full(4, 100, np.int8), np.full(4, 100, np.int8), np.ones(4, np.int64)]
    assert interp.run(out, *arrays)[0] == interp.run(prog, *arrays)[0] == 40000


def test_decompose_explicit_path_must_fit():
    from einc.errors import PathError

    prog = _prog("ij,jk,kl->il", (2, 3), (3, 4), (4, 5))
    with pytest.raises(PathError, match="out of range"):
        run_pipeline(prog, "decompose{path=0-3;0-1}")


def test_decompose_memory_limit_honoured():
    prog = _prog("ab,bc,cd,de->ae", (8, 2), (2, 8), (8, 2), (2, 8))
    free = run_pipeline(prog, "decompose{path=optimal}")
    limit = max(op.type.size for op in free.body[:-1]) - 1
    limited = run_pipeline(prog, f"decompose{{path=optimal,memory-limit={limit}}}")
    assert limited != free
    assert all(op.type.size <= limit for op in limited.body[:-1])
    assert_same(prog, limited)


def test_transposes_fold_into_consumers_and_producers():
    t = TensorType((2, 3), "float64")
    tt = TensorType((3, 2), "float64")
    prog = Program((Value("x", t), Value("y", t)),
                   (Einsum("xt", ("x",), ("ij",), "ji", tt),
                    Einsum("m", ("xt", "y"), ("ab", "bc"), "ac", TensorType((3, 3), "float64")),
                    Einsum("out", ("m",), ("ij",), "ji", TensorType((3, 3), "float64"))),
                   ("out",))
    out = run_pipeline(prog, "transposes")
    assert len(out.body) == 1
    (op,) = out.body
    assert op.result == "out" and op.operands == ("x", "y") and op.subscripts == "ba,bc->ca"
    assert_same(prog, out)
    # a permutation of an input that is itself an output stays explicit
    keep = Program((Value("x", t),), (Einsum("o", ("x",), ("ij",), "ji", tt),), ("o",))
    assert run_pipeline(keep, "transposes") == keep


# --------------------------------------------------------------------------------------- random programs

PASSES = ["canonicalize", "diagonals", "broadcast", "decompose", "decompose{path=greedy,memory-limit=8}",
          "decompose{path=dp}", "transposes"]


def _check_postcondition(name: str, prog: Program):
    env = prog.types()
    for op in prog.body:
        if not isinstance(op, Einsum):
            continue
        if name == "diagonals":
            repeated = any(len(set(t)) < len(t) for t in op.inputs)
            assert not repeated or (op.arity == 1 and set(op.output) == set(op.inputs[0])), op
        elif name == "broadcast" and op.arity >= 2:
            sizes = einsum_sizes(op, [env[o] for o in op.operands])
            for labs, o in zip(op.inputs, op.operands):
                assert all(n == sizes[c] for c, n in zip(labs, env[o].shape)), op
        elif name in ("decompose", "decompose{path=dp}"):
            assert op.arity <= 2, op
        elif name == "transposes":
            from einc.ir.passes._util import is_permutation

            for o in op.operands:
                p = prog.producers().get(o)
                assert not (p is not None and is_permutation(p)), (op, p)


@pytest.mark.parametrize("name", PASSES)
@pytest.mark.parametrize("dtypes", [FLOATS, INTS, MIXED], ids=["floats", "ints", "mixed"])
def test_pass_preserves_semantics_and_is_idempotent(name, dtypes):
    casts = dtypes is not MIXED  # float->int casts of reassociated sums are ill-conditioned

    @SETTINGS
    @given(programs(dtypes=dtypes, casts=casts, max_operands=4), st.integers(0, 3))
    def check(prog, seed):
        once = run_pipeline(prog, name)
        assert_same(prog, once, seed)
        _check_postcondition(name, once)
        assert run_pipeline(once, name) == once

    check()


@pytest.mark.parametrize("dtypes", [FLOATS, INTS, MIXED], ids=["floats", "ints", "mixed"])
def test_default_pipeline_preserves_semantics(dtypes):
    @SETTINGS
    @given(programs(dtypes=dtypes, casts=dtypes is not MIXED, max_operands=5), st.integers(0, 3))
    def check(prog, seed):
        out = run_pipeline(prog, DEFAULT)
        assert_same(prog, out, seed)
        assert all(op.arity <= 2 for op in out.body if isinstance(op, Einsum))
        assert run_pipeline(out, DEFAULT) == out

    check()


def test_random_pipelines_preserve_semantics():
    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(programs(dtypes=FLOATS + INTS[:2], casts=False, max_operands=4),
           st.lists(st.sampled_from(PASSES), min_size=1, max_size=5))
    def check(prog, names):
        pipeline = ",".join(names)
        assert_same(prog, run_pipeline(prog, pipeline))

    check()


# --------------------------------------------------------------------------------------- einc opt

AO_EIN = """\
input C: float64[5, 5]
input g: float64[5, 5, 5, 5]
t: float64[5, 5, 5, 5] = einsum("pi,qj,ijkl,rk,sl->pqrs", C, C, g, C, C)
tt = einsum("pqrs->srqp", t)
output tt
"""


def _opt(capsys, *argv):
    from einc.cli import main

    rc = main(["opt", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_opt_prints_the_optimized_program(tmp_path, capsys):
    from einc.frontend.program import parse_program

    src = tmp_path / "ao.ein"
    src.write_text(AO_EIN)
    rc, out, _ = _opt(capsys, str(src), "-p", "decompose{path=optimal},transposes,canonicalize")
    assert rc == 0
    before, after = parse_program(AO_EIN), parse_program(out)
    assert after == run_pipeline(before, "decompose{path=optimal},transposes,canonicalize")
    assert len(after.body) == 4 and after.outputs == ("tt",)
    assert_same(before, after)
    rc, out2, _ = _opt(capsys, str(src))  # the default pipeline
    assert rc == 0 and parse_program(out2) == run_pipeline(before, DEFAULT)


def test_opt_print_between_passes_and_output_file(tmp_path, capsys):
    src = tmp_path / "ao.ein"
    src.write_text(AO_EIN)
    dest = tmp_path / "out.ein"
    rc, out, _ = _opt(capsys, str(src), "-p", "canonicalize,decompose{path=dp}", "--print-between-passes",
                      "-o", str(dest))
    assert rc == 0 and out == ""
    text = dest.read_text()
    heads = [ln for ln in text.splitlines() if ln.startswith("# ")]
    assert heads == ["# input", "# after canonicalize", "# after decompose{path=dp}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ao.ein", "out.ein"]


def test_opt_errors_exit_2_with_caret(tmp_path, capsys):
    src = tmp_path / "ao.ein"
    src.write_text(AO_EIN)
    rc, out, err = _opt(capsys, str(src), "-p", "canonicalize,decompose{path=bogus}")
    assert rc == 2 and out == "" and "pipeline:1:29" in err and "^^^^^" in err
    rc, _, err = _opt(capsys, str(src), "-p", "unroll")
    assert rc == 2 and "valid passes: broadcast, canonicalize" in err
    rc, out, _ = _opt(capsys, "--list-passes")
    assert rc == 0 and "decompose{path=auto" in out


def test_decompose_with_a_memory_limit_is_idempotent_when_greedy_stops_early():
    """opt_einsum's greedy stops at its first pair over the limit (here a 9-element intermediate)
    though the operands left still pair below it; the left-overs are searched again, so a second
    ``decompose`` has nothing to split (hypothesis found the program)."""
    t = TensorType
    prog = Program((Value("v0", t((1, 1, 2), "float64")), Value("v1", t((1, 3), "float64"))),
                   (Einsum("v2", ("v0",), ("abc",), "a", t((1,), "float64")),
                    Einsum("v3", ("v2", "v1", "v1", "v1"), ("b", "db", "cd", "ab"), "da", t((3, 1), "float64"))),
                   ("v3",))
    name = "decompose{path=greedy,memory-limit=8}"
    once = run_pipeline(prog, name)
    assert run_pipeline(once, name) == once
    assert all(op.arity <= 2 for op in once.body)
