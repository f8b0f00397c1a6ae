"""The printer round-trips: ``parse_program(print_program(p)) == p`` for every valid program.

Programs come from ``einc.testing.programs()`` (hypothesis): multi-step, every dtype, casts, repeated
labels, size-1 broadcasting, uppercase labels, and names that are statement words or dtype names.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from einc.frontend.program import expression_program, parse_program
from einc.ir import Cast, Einsum, Program, TensorType, Value, verify
from einc.ir.interp import run as interp
from einc.ir.printer import print_program
from einc.testing import einsum_calls, programs, rand_program, random_arrays

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(programs())
def test_parse_print_roundtrip(prog):
    text = print_program(prog)
    back = parse_program(text)
    assert back == prog
    assert print_program(back) == text  # printing is deterministic and idempotent


@pytest.mark.filterwarnings("ignore:Casting complex values")
@FAST
@given(programs(max_steps=2, max_rank=3, max_size=2, dtypes=("float64", "int32", "complex128")))
def test_generated_programs_verify_and_run(prog):
    assert verify(prog) is prog
    outs = interp(prog, *random_arrays([v.type.shape for v in prog.inputs], [v.type.dtype for v in prog.inputs]))
    assert [o.shape for o in outs] == [prog.type_of(n).shape for n in prog.outputs]


@FAST
@given(einsum_calls(dtypes=("float64", "int64")))
def test_einsum_calls_agree_with_numpy_through_the_printed_program(call):
    arrays = random_arrays(call.shapes, call.dtypes, seed=3)
    ref = np.einsum(call.subscripts, *arrays, optimize=False)
    prog = parse_program(print_program(expression_program(call.subscripts, call.shapes, call.dtypes)))
    (got,) = interp(prog, *arrays)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_programs_exercise_the_features():
    progs = [rand_program(s) for s in range(300)]
    ops = [op for p in progs for op in p.body]
    einsums = [op for op in ops if isinstance(op, Einsum)]
    assert any(isinstance(op, Cast) for op in ops)
    assert any(len(set(t)) < len(t) for op in einsums for t in op.inputs)  # repeated labels
    assert any(c.isupper() for op in einsums for c in "".join(op.inputs))
    assert any(len(p.body) > 1 for p in progs) and any(len(p.outputs) > 1 for p in progs)
    assert {v.type.dtype for p in progs for v in p.inputs} >= {"bool", "bfloat16", "complex64", "uint64"}
    broadcast = False
    for p in progs:
        types = p.types()
        for op in p.body:
            if isinstance(op, Einsum):
                sizes = {}
                for labs, o in zip(op.inputs, op.operands):
                    for c, n in zip(labs, types[o].shape):
                        sizes.setdefault(c, set()).add(n)
                broadcast |= any(1 in s and len(s) > 1 for s in sizes.values())
    assert broadcast
    assert rand_program(5) == rand_program(5)


def test_printer_text_format():
    prog = Program(
        (Value("input", TensorType((2, 3), "float32")), Value("s", TensorType((), "int8"))),
        (Einsum("t", ("input", "s"), ("iJ", ""), "Ji", TensorType((3, 2), "float32")),
         Cast("output", "t", TensorType((3, 2), "bfloat16"))),
        ("output", "t"))
    text = print_program(prog)
    assert text == (
        "input input: float32[2, 3]\n"
        "input s: int8[]\n"
        "\n"
        't: float32[3, 2] = einsum("iJ,->Ji", input, s)\n'
        "output: bfloat16[3, 2] = cast(t, bfloat16)\n"
        "output output, t\n")
    assert parse_program(text) == prog


@pytest.mark.parametrize("seed", range(0, 400, 7))
def test_seeded_programs_roundtrip(seed):
    prog = rand_program(seed, max_operands=4, max_rank=5)
    assert parse_program(print_program(prog)) == prog
