"""Lowering einc IR to TVM CPU kernels: every result is checked against ``ir.interp`` (numpy)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("tvm")

from einc.errors import CompileError, Unsupported  # noqa: E402
from einc.ir import Cast, Einsum, Program, TensorType, Value, single_einsum  # noqa: E402
from einc.ir.interp import run as interp  # noqa: E402
from einc.ir.types import np_dtype  # noqa: E402
from einc.kernel import compile as ecompile, compile_program  # noqa: E402

pytestmark = pytest.mark.tvm

SUITE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench", "suite.json")
# the CPU suite (a copy, so the tests do not depend on the shared folder); sizes are reduced below
CPU_SUITE = {
    "matmul": ("ik,kj->ij", [[1024, 1024], [1024, 1024]]),
    "batched_mm": ("bik,bkj->bij", [[64, 128, 128], [64, 128, 128]]),
    "matvec": ("ij,j->i", [[4096, 4096], [4096]]),
    "transpose": ("ij->ji", [[4096, 4096]]),
    "sum_rows": ("ij->i", [[4096, 4096]]),
    "outer": ("i,j->ij", [[4096], [4096]]),
    "hadamard3": ("ij,ij,ij->ij", [[2048, 2048], [2048, 2048], [2048, 2048]]),
    "bilinear": ("bn,anm,bm->ba", [[128, 128], [64, 128, 128], [128, 128]]),
    "attn_scores": ("bhqd,bhkd->bhqk", [[8, 12, 128, 64], [8, 12, 128, 64]]),
    "attn_out": ("bhqk,bhkd->bhqd", [[8, 12, 128, 128], [8, 12, 128, 64]]),
    "mttkrp": ("ijk,jr,kr->ir", [[128, 128, 128], [128, 32], [128, 32]]),
    "tucker_ttm": ("ijk,ai,bj,ck->abc", [[64, 64, 64], [64, 64], [64, 64], [64, 64]]),
    "chain4": ("ij,jk,kl,lm->im", [[512, 8], [8, 512], [512, 8], [8, 512]]),
    "ao_to_mo": ("pi,qj,ijkl,rk,sl->pqrs", [[24, 24], [24, 24], [24, 24, 24, 24], [24, 24], [24, 24]]),
    "trace": ("ii->", [[4096, 4096]]),
    "diag_mul": ("ii,i->i", [[4096, 4096], [4096]]),
    "moe": ("ecd,edh->ech", [[8, 256, 256], [8, 256, 512]]),
    "kron": ("ab,cd->acbd", [[64, 64], [64, 64]]),
}


def _reduced(expr, shapes, cap=48):
    """The same einsum with every label's size capped (keeps label sizes consistent)."""
    lhs = expr.split("->")[0].split(",")
    size = {}
    for labs, shp in zip(lhs, shapes):
        for c, n in zip(labs, shp):
            size[c] = min(n, cap if n > 16 else n)
    return [tuple(size[c] for c in labs) for labs in lhs]


def _arrays(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        if dtype == "bool":
            out.append(rng.random(s) < 0.5)
        elif dtype.startswith(("int", "uint")):
            out.append(rng.integers(0, 100, size=s).astype(dtype))
        elif dtype.startswith("complex"):
            out.append((rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(dtype))
        else:
            out.append(rng.standard_normal(s).astype(np_dtype(dtype)))
    return out


def _close(got, ref, dtype, scale=None):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape
    if dtype == "bool" or dtype.startswith(("int", "uint")):
        np.testing.assert_array_equal(got, ref)
        return
    tol = {"float16": 2e-2, "bfloat16": 5e-2, "float32": 1e-4, "float64": 1e-10, "complex64": 1e-4,
           "complex128": 1e-10}[dtype]
    wide = np.complex128 if dtype.startswith("complex") else np.float64
    g, r = got.astype(wide), ref.astype(wide)
    denom = scale if scale is not None else max(1.0, float(np.abs(r).max()) if r.size else 1.0)
    assert float(np.abs(g - r).max() if r.size else 0.0) <= tol * denom


def test_suite_json_matches_the_copy():
    if not os.path.exists(SUITE):
        pytest.skip("shared suite not present")
    with open(SUITE) as f:
        cpu = json.load(f)["cpu"]
    assert {k: (v["expr"], v["shapes"]) for k, v in cpu.items()} == CPU_SUITE


@pytest.mark.parametrize("name", sorted(CPU_SUITE))
def test_cpu_suite_reduced(name):
    expr, shapes = CPU_SUITE[name]
    shapes = _reduced(expr, shapes)
    xs = _arrays(shapes, "float32")
    k = ecompile(expr, *shapes)
    ref = np.einsum(expr, *[x.astype(np.float64) for x in xs], optimize=True)
    _close(k(*xs), ref, "float32")
    # no step of the suite runs as the naive loop nest
    if k.built is not None:
        for blk, cls, desc in k.built.plan:
            assert "naive" not in desc, (blk, cls, desc)


@pytest.mark.parametrize("seed", range(24))
def test_random_equations(seed):
    from einc.testing import rand_equation

    subs, shapes = rand_equation(seed)
    xs = _arrays(shapes, "float32", seed)
    k = ecompile(subs, *shapes)
    _close(k(*xs), np.einsum(subs, *[x.astype(np.float64) for x in xs], optimize=True), "float32")


@pytest.mark.parametrize("seed", range(8))
def test_random_programs_match_interp(seed):
    from einc.testing import rand_program

    prog = rand_program(seed)
    xs = [_arrays([v.type.shape], v.type.dtype, seed)[0] for v in prog.inputs]
    k = compile_program(prog)
    got = k(*xs)
    got = got if isinstance(got, tuple) else (got,)
    refs = interp(prog, *xs)
    types = prog.types()
    for g, r, o in zip(got, refs, prog.outputs):
        _close(g, r, types[o].dtype, scale=max(1.0, float(np.abs(r).max(initial=0))) * 4)


DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "bfloat16", "float32", "float64"]
# gemm path (packed), reduce-inner, transpose, trace, broadcast map
DTYPE_CASES = [("ik,kj->ij", [(12, 20), (20, 40)]), ("ij->i", [(5, 70)]), ("ij->ji", [(40, 72)]),
               ("ii->", [(9, 9)]), ("i,j->ij", [(5,), (33,)])]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes(dtype):
    for subs, shapes in DTYPE_CASES:
        prog = single_einsum(subs, [TensorType(s, dtype) for s in shapes])
        xs = _arrays(shapes, dtype, 1)
        if dtype.startswith("int"):  # make the sums overflow: must wrap like numpy
            xs = [(x * 37).astype(dtype) for x in xs]
        got = compile_program(prog)(*xs)
        assert got.dtype == np_dtype(dtype)
        ref = interp(prog, *xs)[0]
        if dtype in ("float16", "bfloat16"):
            # einc accumulates in float32; numpy's float16 einsum rounds partial sums: compare to float64
            exact = np.einsum(subs, *[x.astype(np.float64) for x in xs])
            terms = np.einsum(subs, *[np.abs(x.astype(np.float64)) for x in xs])
            _close(got, exact, dtype, scale=max(1.0, float(np.max(terms))))
        else:
            _close(got, ref, dtype)


def test_bool_sum_is_logical_or():
    prog = single_einsum("ik,kj->ij", [TensorType((3, 40), "bool"), TensorType((40, 32), "bool")])
    a = np.ones((3, 40), bool)
    b = np.ones((40, 32), bool)
    got = compile_program(prog)(a, b)
    assert got.dtype == np.bool_ and got.all()


def test_int8_products_wrap():
    prog = single_einsum("i,i->i", [TensorType((64,), "int8"), TensorType((64,), "int8")])
    a = np.full(64, 100, np.int8)
    got = compile_program(prog)(a, a)
    np.testing.assert_array_equal(got, (a.astype(np.int64) * 100).astype(np.int8))


def test_mixed_dtypes_promote_like_numpy():
    prog = single_einsum("ij,j->i", [TensorType((4, 40), "int8"), TensorType((40,), "uint8")])
    assert prog.body[0].type.dtype == "int16"
    a = _arrays([(4, 40)], "int8", 3)[0]
    b = _arrays([(40,)], "uint8", 4)[0]
    np.testing.assert_array_equal(compile_program(prog)(a, b), np.einsum("ij,j->i", a, b))


def test_the_lowering_refuses_complex_values_that_compile_program_realifies():
    from einc.lowering.lower import lower

    prog = single_einsum("ij,jk->ik", [TensorType((2, 3), "complex64"), TensorType((3, 4), "complex64")])
    with pytest.raises(Unsupported, match="complex64.*realify"):
        lower(prog, {})
    a, b = _arrays([(2, 3), (3, 4)], "complex64", 1)
    np.testing.assert_allclose(compile_program(prog)(a, b), a @ b, rtol=1e-5)


@pytest.mark.parametrize("subs,shapes", [
    ("iij->j", [(5, 5, 40)]), ("ii->i", [(37, 37)]), ("iji->j", [(6, 20, 6)]), ("ii,i->i", [(33, 33), (33,)]),
    ("iij,jk->ik", [(8, 8, 20), (20, 24)]),
])
def test_repeated_labels(subs, shapes):
    xs = _arrays(shapes, "float32", 2)
    prog = single_einsum(subs, [TensorType(s, "float32") for s in shapes])
    _close(compile_program(prog)(*xs), interp(prog, *xs)[0], "float32")


@pytest.mark.parametrize("subs,shapes", [
    ("ij,j->ij", [(3, 1), (40,)]), ("ik,kj->ij", [(20, 1), (33, 24)]), ("ij,ij->i", [(1, 50), (7, 50)]),
    ("ijk->ik", [(1, 5, 40)]),
])
def test_size_one_broadcast(subs, shapes):
    xs = _arrays(shapes, "float32", 5)
    prog = single_einsum(subs, [TensorType(s, "float32") for s in shapes])
    _close(compile_program(prog)(*xs), interp(prog, *xs)[0], "float32")


def test_zero_dim_operands_and_results():
    prog = single_einsum(",->", [TensorType((), "float32"), TensorType((), "float32")])
    k = compile_program(prog)
    assert float(k(np.float32(3), np.float32(4))) == 12.0
    prog = single_einsum("i,i->", [TensorType((100,), "float64"), TensorType((100,), "float64")])
    x = np.arange(100.0)
    assert compile_program(prog)(x, x).shape == ()
    assert float(compile_program(prog)(x, x)) == float(x @ x)


def test_zero_size_never_reaches_tvm():
    prog = single_einsum("ik,kj->ij", [TensorType((3, 0), "float32"), TensorType((0, 5), "float32")])
    k = compile_program(prog)
    assert k.interpreted and k.built is None
    np.testing.assert_array_equal(k(np.zeros((3, 0), "f4"), np.zeros((0, 5), "f4")), np.zeros((3, 5), "f4"))


def test_multi_step_program_with_casts_and_odd_outputs():
    f32, i32 = "float32", "int32"
    prog = Program(
        (Value("a", TensorType((6, 20), f32)), Value("b", TensorType((20, 24), f32))),
        (Einsum("c", ("a", "b"), ("ik", "kj"), "ij", TensorType((6, 24), f32)),
         Cast("d", "c", TensorType((6, 24), i32)),
         Cast("e", "c", TensorType((6, 24), "bfloat16")),
         Einsum("s", ("d",), ("ij",), "j", TensorType((24,), "int32")),
         Cast("z", "c", TensorType((6, 24), "bool"))),
        ("s", "a", "c", "c", "e", "z"),  # an input and a repeated output are returned too
    )
    a = _arrays([(6, 20)], f32, 7)[0] * 10
    b = _arrays([(20, 24)], f32, 8)[0]
    got = compile_program(prog)(a, b)
    ref = interp(prog, a, b)
    assert len(got) == 6
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], a)
    _close(got[2], ref[2], f32)
    _close(got[3], ref[3], f32)
    assert got[2] is not got[3]
    _close(got[4], ref[4], "bfloat16")
    np.testing.assert_array_equal(got[5], ref[5])


def test_float_to_int_and_bool_casts_match_numpy():
    for src, dst in [("float32", "int8"), ("float64", "uint16"), ("int32", "bool"), ("float32", "bool"),
                     ("bool", "float32"), ("bfloat16", "float64"), ("float32", "bfloat16"), ("int64", "float16")]:
        prog = Program((Value("x", TensorType((50,), src)),), (Cast("y", "x", TensorType((50,), dst)),), ("y",))
        x = _arrays([(50,)], src, 9)[0]
        if src.startswith("float"):
            x = (x * 20).astype(np_dtype(src))
        if src == "float64" and dst == "uint16":
            x = np.abs(x)
        got = compile_program(prog)(x)
        np.testing.assert_array_equal(got.astype(np.float64), interp(prog, x)[0].astype(np.float64), err_msg=f"{src}->{dst}")


def test_nary_step_without_decomposition():
    shapes = [(6, 7), (7, 8), (8, 9)]
    prog = single_einsum("ij,jk,kl->il", [TensorType(s, "float64") for s in shapes])
    xs = _arrays(shapes, "float64", 11)
    k = compile_program(prog)
    assert len(k.program.body) == 1 and k.program.body[0].arity == 3
    _close(k(*xs), interp(prog, *xs)[0], "float64")


def test_schedule_off_gives_the_same_result():
    from einc.lowering.build import build

    shapes = [(16, 64), (64, 96)]  # big enough to be parallel (>= PARALLEL_MIN_WORK)
    prog = single_einsum("ik,kj->ij", [TensorType(s, "float32") for s in shapes])
    xs = _arrays(shapes, "float32")
    outs = []
    for sched in (True, False):
        b = build(prog, schedule=sched)
        from einc.kernel import aligned_empty

        ins = []
        for x in xs:
            y = aligned_empty(x.shape, x.dtype)
            y[...] = x
            ins.append(y)
        o = aligned_empty((16, 96), "float32")
        b.run(ins, [o])
        outs.append(o)
        assert set(b.timings) == {"lower", "schedule", "compile"}
        assert ("T.parallel" in b.tir()) == sched
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5)


def test_gemm_schedule_is_tiled_vectorized_and_parallel():
    from einc.lowering.build import build

    prog = single_einsum("ik,kj->ij", [TensorType((64, 64), "float32"), TensorType((64, 512), "float32")])
    b = build(prog)
    classes = {blk: cls for blk, cls, _ in b.plan}
    assert classes["out"] == "gemm" and classes["out__pack"] == "pack"
    tir = b.tir()
    assert "T.vectorized" in tir and "T.parallel" in tir and "T.unroll" in tir
    # rows 2 KiB apart are packed into panels; short rows are used in place; small work is serial
    small = single_einsum("ik,kj->ij", [TensorType((8, 16), "float32"), TensorType((16, 32), "float32")])
    b2 = build(small)
    assert [cls for _, cls, _ in b2.plan] == ["gemm"]
    assert "T.parallel" not in b2.tir() and "T.vectorized" in b2.tir()


@pytest.mark.parametrize("shape", [(4097, 64), (1001, 45), (100, 700), (9, 4096)])
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_transposes_of_any_extent_are_cache_blocked(shape, dtype):
    """Extents 8 does not divide take 16 x 16 tiles with predicated last tiles (they took the map
    rule, writing a column at a time: 4097 x 4096 ran 5.5 times slower than 4096 x 4096); an int8
    permutation is one step, no accumulator copy converted by a second pass."""
    x = (np.arange(np.prod(shape)) % 251 - 125).astype(dtype).reshape(shape)
    k = ecompile("ij->ji", x, cache=False)
    assert [(cls, "predicated" in desc) for _, cls, desc in k.built.plan] == \
        [("transpose", bool(shape[0] % 16 or shape[1] % 16) and bool(shape[0] % 8 or shape[1] % 8))], k.built.plan
    out = np.empty(shape[::-1], dtype)
    np.testing.assert_array_equal(k(x, out=out), x.T)


@pytest.mark.parametrize("subs,shapes,rows", [
    ("ij,j->i", [(4099, 64), (64,)], 8),  # a last group of 3 rows under a predicate
    ("ij->i", [(13, 256)], 8),
    ("ij,ij->i", [(37, 96), (37, 96)], 4),  # two operands stream every row
    ("ij,ij,ij->i", [(9, 64), (9, 64), (9, 64)], 2),
    ("ijk,jk->i", [(21, 5, 64), (5, 64)], 8),  # another reduced label outside the vectorised one
    ("bij,bj->bi", [(3, 6, 128), (3, 128)], 6),  # fewer rows than a group
])
def test_row_reductions_accumulate_several_rows_at_once(subs, shapes, rows):
    """reduce-inner accumulates R rows together (one load of x per R rows of ``ij,j->i``), R x the
    operands streaming a row <= 8, and the values match numpy whatever the row count."""
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(s).astype("float32") for s in shapes]
    k = ecompile(subs, *xs, cache=False)
    (cls, desc), = [(cls, desc) for blk, cls, desc in k.built.plan if blk == "out"]
    assert cls == "reduce-inner" and f"{rows} rows at once" in desc, k.built.plan
    np.testing.assert_allclose(k(*xs), np.einsum(subs, *xs), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("subs,shapes,dtype,tail", [
    ("ij->j", [(37, 4095)], "float32", 7),  # the last 7 columns: a scalar loop of their own
    ("ij->j", [(37, 1000)], "float32", 0),  # 125 vectors: a short last chunk, no scalar tail
    ("ij,ij->j", [(19, 300), (19, 300)], "float64", 0),
    ("bij->bj", [(3, 50, 77)], "float32", 5),
    ("ij->j", [(64, 100)], "int8", 4),  # wraps like numpy's int8 sum
    ("ijk->ik", [(5, 33, 9)], "float16", 1),
    # k alone is too short to vectorise; j x k is one contiguous run (a complex sum's j x (re, im))
    ("ijk->jk", [(40, 64, 6)], "float32", 0),
    ("ijk->jk", [(40, 6, 2)], "float64", 0),
])
def test_column_reductions_vectorize_whatever_the_width(subs, shapes, dtype, tail):
    """reduce-outer vectorises the output axis in whole vectors, chunks of up to 32 vectors in
    parallel; a width that the vector does not divide is partitioned (a scalar loop for the last
    few columns) instead of the whole axis running in scalar 8-column chunks."""
    rng = np.random.default_rng(4)
    xs = [(rng.standard_normal(s) * 40).astype(dtype) for s in shapes]
    k = ecompile(subs, *xs, cache=False)
    desc = [desc for blk, cls, desc in k.built.plan if cls == "reduce-outer"]
    assert len(desc) == 1 and "vectorized" in desc[0], k.built.plan
    assert (f"last {tail} of" in desc[0]) == bool(tail), desc
    if dtype == "int8":
        np.testing.assert_array_equal(k(*xs), np.einsum(subs, *xs))
    else:
        want = np.einsum(subs, *[x.astype("float64") for x in xs])
        rtol = 1e-2 if dtype == "float16" else 1e-5
        np.testing.assert_allclose(np.asarray(k(*xs), "float64"), want, rtol=rtol, atol=rtol * 40)


@pytest.mark.parametrize("subs,shapes,dtype,vectorized", [
    ("ij->", [(512, 96)], "float32", True),
    ("i,i->", [(3 * 4096,), (3 * 4096,)], "float32", True),
    ("ijk,ijk->", [(8, 16, 64), (8, 16, 64)], "float64", True),
    ("ij->", [(64, 256)], "int32", True),
    ("ij->", [(64, 256)], "float16", True),
    ("i->", [(100_003,)], "float32", False),  # prime: no parts x vectors split divides it
    ("ij,j->", [(256, 64), (64,)], "float32", False),  # a sum over b, then a 64-element dot: too short
    ("ij,ji->", [(128, 128), (128, 128)], "float32", False),
])
def test_full_reductions_stream_parts_into_vector_accumulators(subs, shapes, dtype, vectorized):
    rng = np.random.default_rng(5)
    xs = [(rng.standard_normal(s) * 4).astype(dtype) for s in shapes]
    k = ecompile(subs, *xs, cache=False)
    desc = [desc for blk, cls, desc in k.built.plan if cls.startswith("reduce")][-1]  # the final sum
    assert ("lanes of partial sums" in desc) == vectorized, k.built.plan
    want = np.einsum(subs, *[x.astype("float64") for x in xs])
    rtol = 2e-2 if dtype == "float16" else 1e-5
    np.testing.assert_allclose(np.asarray(k(*xs), "float64"), want, rtol=rtol, atol=rtol * np.abs(xs[0]).sum() * 1e-3)


def test_a_bfloat16_permutation_moves_every_bit_pattern_unchanged():
    """All 65536 bfloat16 bit patterns (NaN payloads, -0, subnormals) come out of a transpose as they
    went in: a permutation copies bits, it does not convert through float32."""
    import ml_dtypes

    bits = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    x = bits.view(ml_dtypes.bfloat16)
    k = ecompile("ij->ji", x, cache=False)
    assert len(k.built.plan) == 1, k.built.plan
    out = np.empty((256, 256), ml_dtypes.bfloat16)
    np.testing.assert_array_equal(k(x, out=out).view(np.uint16), bits.T)


def test_compile_errors_name_the_stage(monkeypatch):
    from einc.lowering import _tvm, build as B

    def boom(mod, target):
        raise RuntimeError("Check failed: simulated codegen failure")

    monkeypatch.setattr(_tvm, "compile_mod", boom)
    prog = single_einsum("ij->i", [TensorType((4, 4), "float32")])
    with pytest.raises(CompileError, match="stage 'compile'.*simulated"):
        B.build(prog)


def test_target_detection():
    from einc.lowering import target as T

    t = json.loads(T.resolve(None))
    assert t["kind"] == "llvm" and t["mcpu"] not in ("", "native", "generic") and t["num-cores"] >= 1
    assert json.loads(T.resolve({"kind": "llvm"}))["mcpu"] == t["mcpu"]
    with pytest.raises(Unsupported):
        T.resolve("llvm -mcpu=skylake")
    assert json.loads(T.resolve({"kind": "llvm", "mcpu": "skylake-avx512"}))["mcpu"] == "skylake-avx512"
    # an mcpu LLVM does not know: an error naming close ones (TVM logged and built for a generic CPU)
    with pytest.raises(Unsupported, match="no CPU 'znver'.*'znver3'"):
        T.resolve({"kind": "llvm", "mcpu": "znver"})
    for other in ("rocm", '{"kind": "vulkan"}', {"kind": "opencl"}):
        with pytest.raises(Unsupported, match="'llvm' \\(CPU\\) and 'cuda'"):
            T.resolve(other)


@pytest.mark.parametrize("subs,shapes,pack_b,pack_a", [
    ("ik,kj->ij", [(256, 256), (256, 256)], True, False),  # 64 row tiles re-read each panel
    ("bik,kj->bij", [(16, 64, 64), (64, 64)], True, False),  # B shared by every batch
    ("bik,bkj->bij", [(64, 16, 16), (64, 16, 16)], False, False),  # 4 row tiles per panel: in place
    ("ik,jk->ij", [(8, 64), (64, 64)], True, False),  # n not contiguous in B: always packed
    ("ki,kj->ij", [(64, 64), (64, 64)], True, True),  # A's contiguous axis is not contracted
])
def test_gemm_packing_decisions(subs, shapes, pack_b, pack_a):
    prog = single_einsum(subs, [TensorType(s, "float32") for s in shapes])
    k = compile_program(prog, cache=False)
    desc, = [d for _, cls, d in k.built.plan if cls == "gemm"]
    assert ("packed B" in desc, "packed A" in desc) == (pack_b, pack_a), desc
    xs = _arrays(shapes, "float32", 4)
    _close(k(*xs), interp(prog, *xs)[0], "float32")


@pytest.mark.parametrize("dtype,M", [("float32", 1021), ("float16", 510), ("float16", 509), ("int32", 403)])
def test_gemm_tiles_the_rows_no_tile_height_divides_without_writing_past_the_output(dtype, M):
    """An M 6 does not divide: float32 (accumulated in the output's own dtype) takes 6-row tiles over
    the first M - M % 6 rows and one shorter tile for the rest (no padding); float16 and int32
    (accumulated in float32 and int64) are padded (509 -> 512), and the padded rows dropped and the
    accumulator converted by the predicated copy-out of each tile: no second pass over a padded
    buffer.  Either way nothing is written past the caller's output (guard elements after it stay
    as they were)."""
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((M, 64)) * 3).astype(dtype)
    b = (rng.standard_normal((64, 48)) * 3).astype(dtype)
    k = ecompile("ik,kj->ij", a, b, cache=False)
    rows = {blk: (cls, desc) for blk, cls, desc in k.built.plan}
    if dtype != "float32":
        assert rows["out"][0] == "inlined" and "in the tile copy" in rows["out__acc"][1], k.built.plan
        assert f"tile {6 if M % 6 == 0 else 4}x16" in rows["out__acc"][1]
        assert ("padded" in rows["out__acc"][1]) == (M % 4 != 0 and M % 6 != 0)
    else:
        desc = rows["out"][1]
        assert "tile 6x16" in desc and f"last {M % 6} of a a tile of their own" in desc, k.built.plan
        assert "padded" not in desc and "out__acc" not in rows
    guard = np.full(M * 48 + 64, 7, dtype)
    out = guard[:M * 48].reshape(M, 48)
    k(a, b, out=out)
    assert (guard[M * 48:] == 7).all()
    want = a.astype("float64") @ b.astype("float64")
    if dtype == "int32":
        np.testing.assert_array_equal(out, want.astype("int64").astype("int32"))
    else:
        np.testing.assert_allclose(out.astype("float64"), want, rtol=2e-3 if dtype == "float16" else 1e-5,
                                   atol=0.1 if dtype == "float16" else 1e-3)


@pytest.mark.parametrize("subs,shapes,dtype", [
    ("ik,kj->ij", [(37, 29), (29, 53)], "float32"),  # tails everywhere: M%4, N%16, K%4
    ("ik,jk->ij", [(20, 30), (70, 30)], "float32"),  # B transposed: packed panels with a padded tail
    ("bik,bkj->bij", [(3, 12, 16), (3, 16, 600)], "float64"),  # batch + packed wide rows
    ("abk,kcd->abcd", [(3, 8, 12), (12, 5, 32)], "float32"),  # several M and N labels
    ("ik,kj->ij", [(16, 24), (24, 1024)], "int32"),  # integer gemm wraps
    ("ik,kj->ij", [(9, 40), (40, 96)], "uint8"),
    ("ik,kj->ij", [(8, 16), (16, 600)], "float16"),  # packed, float32 accumulation
    ("kj,ik->ij", [(40, 48), (24, 40)], "float32"),  # B is the first operand
    ("ki,kj->ij", [(29, 37), (29, 53)], "float32"),  # A transposed: packed A panels, padded M
    ("bki,kj->bij", [(2, 40, 10), (40, 24)], "float64"),  # packed A per batch, B shared by the batch
    ("ki,jk->ij", [(33, 21), (18, 33)], "int32"),  # both packed
])
def test_gemm_edge_shapes(subs, shapes, dtype):
    prog = single_einsum(subs, [TensorType(s, dtype) for s in shapes])
    k = compile_program(prog)
    assert "gemm" in [cls for _, cls, _ in k.built.plan]
    xs = _arrays(shapes, dtype, 12)
    got = k(*xs)
    if dtype == "float16":
        exact = np.einsum(subs, *[x.astype(np.float64) for x in xs])
        terms = np.einsum(subs, *[np.abs(x.astype(np.float64)) for x in xs])
        _close(got, exact, dtype, scale=float(terms.max()))
    else:
        _close(got, interp(prog, *xs)[0], dtype)


@pytest.mark.slow
def test_metaschedule_tuning_persists_and_replays(tmp_path):
    pytest.importorskip("psutil")
    pytest.importorskip("cloudpickle")
    from einc.lowering.build import build

    prog = single_einsum("ik,kj->ij", [TensorType((32, 32), "float32")] * 2)
    b = build(prog, tune=4, tune_dir=str(tmp_path))
    assert b.plan[0][1] == "tuned" and (tmp_path / "database_tuning_record.json").exists()
    from einc.kernel import Kernel

    xs = _arrays([(32, 32)] * 2, "float32")
    _close(Kernel(prog, b)(*xs), xs[0].astype(np.float64) @ xs[1], "float32")
    b2 = build(prog, tune=4, tune_dir=str(tmp_path))  # replays the database: no new trials
    assert b2.timings["tune"] < 5 and b2.plan[0][1] == "tuned"
