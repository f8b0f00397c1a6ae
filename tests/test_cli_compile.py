"""``einc compile``, ``einc run``, ``einc bench``: outputs, ``--check``, ``--emit``, exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from einc.cli import main
from einc.commands import run as run_cmd


def einc_cli(*args, cache_dir=None, timeout=300):
    env = dict(os.environ)
    if cache_dir is not None:
        env["EINC_CACHE_DIR"] = str(cache_dir)
    env.pop("EINC_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "einc", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(autouse=True)
def cache_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EINC_CACHE_DIR", str(tmp_path / "cache"))


# -- errors: exit 2, a caret, no traceback --------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["compile", "ij,jk->ik", "--shapes", "2x3,4x5"], "disagree"),
    (["compile", "ij,jk->ik", "--shapes", "2x3,3x"], "bad shape"),
    (["compile", "ij,jk->ik", "--shapes", "2x3"], "operand"),
    (["run", "ij,jk->iq", "--shapes", "2x3,3x4"], "q"),
    (["compile", "no_such_file.ein"], "no_such_file.ein"),
    (["run", "ij->i", "--inputs", "missing.npy"], "missing.npy"),
    (["compile", "ij->i", "--shapes", "2x3", "--target", "interp"], "interp"),
    pytest.param(["run", "ij->i", "--shapes", "2x3", "--target", '{"kind": "nonsense"}'], "nonsense",
                 marks=pytest.mark.tvm),
    (["bench", "ij->i"], "shapes"),
    (["run", "i->i", "--shapes", "99999999999999999999"], "64-bit"),
    (["explain", "ij,jk->ik", "--shapes", "2x3,3x4", "--memory-limit=-5"], "positive number"),
])
def test_bad_input_exits_2_with_a_message(argv, needle):
    p = einc_cli(*argv)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"einc {argv[0]}: error:")


@pytest.mark.parametrize("argv, needle", [
    (["bench", "ij,jk->ik", "--shapes", "3x4,4x5", "--threads", "0"], "--threads: expected a whole number >= 1"),
    (["bench", "ij,jk->ik", "--shapes", "3x4,4x5", "--min-time", "-1"], "--min-time: expected a number of seconds"),
    (["run", "ij->j", "--shapes", "4x4", "--repeat", "-1"], "--repeat: expected a whole number >= 0"),
    (["fuzz", "--jobs", "0", "--time", "1s"], "--jobs/-j: expected a whole number >= 1"),
])
def test_number_flags_out_of_range_are_refused(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_unwritable_outputs_and_memory_errors_exit_2_without_a_traceback(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "k.so", tmp_path):
        assert main(["compile", "ij,jk->ik", "--shapes", "4x3,3x2", "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("einc compile: error: cannot write") and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["afile", "cache"]  # no temp files beside them

    def big(args):
        raise MemoryError("Unable to allocate 3.64 TiB for an array with shape (4000000000064,)")

    monkeypatch.setattr(run_cmd, "run", big)  # the parser takes run_cmd.run when it is built
    assert main(["run", "i,j->ij", "--shapes", "1000000,1000000"]) == 2
    assert "error: out of memory: Unable to allocate 3.64 TiB" in capsys.readouterr().err


def test_a_zero_size_kernel_exports_its_sidecar_alone(tmp_path, capsys):
    assert main(["compile", "ij,jk->ik", "--shapes", "0x3,3x4", "-o", str(tmp_path / "z.so")]) == 0
    assert "no library" in capsys.readouterr().err
    assert "z.so.json" in os.listdir(tmp_path) and "z.so" not in os.listdir(tmp_path)


def test_caret_points_at_the_bad_shape():
    p = einc_cli("compile", "ij,jk->ik", "--shapes", "2x3,3xq")
    lines = p.stderr.splitlines()
    assert p.returncode == 2
    src = next(i for i, ln in enumerate(lines) if ln.strip() == "2x3,3xq")
    assert lines[src + 1].index("^") == lines[src].index("3xq")


# -- emit ir (no TVM) ---------------------------------------------------------------------------------

def test_emit_ir_prints_a_program_that_parses_back(capsys):
    from einc.frontend.program import parse_program
    from einc.ir.interp import run as interp

    assert main(["compile", "ij,jk,kl->il", "--shapes", "4x5,5x6,6x3", "--emit", "ir"]) == 0
    text = capsys.readouterr().out
    prog = parse_program(text)
    assert len(prog.body) == 2                          # the 3-operand einsum was split in two steps
    xs = [np.random.default_rng(i).random(s) for i, s in enumerate([(4, 5), (5, 6), (6, 3)])]
    np.testing.assert_allclose(interp(prog, *[x.astype("float32") for x in xs])[0], xs[0] @ xs[1] @ xs[2],
                               rtol=1e-5)


def test_run_interp_check_and_output(tmp_path, capsys):
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    b = np.arange(3, dtype=np.int64)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    rc = main(["run", "ij,j->i", "--inputs", f"{tmp_path / 'a.npy'},{tmp_path / 'b.npy'}", "--target", "interp",
               "--check", "-o", str(tmp_path / "y.npy")])
    out = capsys.readouterr().out
    assert rc == 0 and "check out: ok" in out and "int64[2]" in out
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), a @ b)


def test_check_mismatch_exits_1_and_prints_the_error(monkeypatch, capsys):
    from einc.commands import compile as compile_cmd

    class WrongKernel:
        def __call__(self, *xs):
            return np.einsum("ij,j->i", *xs) + 0.5

    monkeypatch.setattr(compile_cmd, "compile_kernel", lambda prog, target, **kw: (WrongKernel(), "built"))
    rc = main(["run", "ij,j->i", "--shapes", "3x4,4", "--check"])
    out = capsys.readouterr().out
    assert rc == 1 and "MISMATCH" in out and "max abs error 0.5" in out


@pytest.mark.parametrize("dtype, delta, ok", [
    ("float32", 1e-6, True), ("float32", 1e-2, False), ("float16", 5e-3, True), ("float16", 0.1, False),
    ("int32", 0, True), ("int32", 1, False), ("bool", 0, True),
])
def test_compare_tolerances(dtype, delta, ok):
    ref = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    res = ref.astype(np.float64) + delta
    res = res.astype(dtype) if dtype in ("int32", "bool") else res
    assert run_cmd.compare(res, ref, dtype)[0] is ok


def test_tolerance_follows_the_least_precise_step():
    from einc.frontend.program import parse_program

    prog = parse_program("input a: float32[3, 4]\n\ns: float32[3] = einsum(\"ij->i\", a)\n"
                         "c: float64[3] = cast(s, float64)\noutput c\n")
    assert run_cmd.tolerance_dtype(prog, "c") == "float32"
    ref = np.array([1.0, 2.0, 3.0])
    assert run_cmd.compare(ref + 1e-7, ref, "float64", "float32")[0]
    assert not run_cmd.compare(ref + 1e-7, ref, "float64")[0]


def test_compare_nan_and_shape():
    ref = np.array([1.0, np.nan], np.float32)
    assert run_cmd.compare(np.array([1.0, np.nan], np.float32), ref, "float32")[0]
    assert not run_cmd.compare(np.array([1.0, 2.0], np.float32), ref, "float32")[0]
    assert not run_cmd.compare(np.zeros(3, np.float32), ref, "float32")[0]


def test_random_inputs_follow_dtypes():
    from einc.frontend.program import expression_program

    prog = expression_program("ij,j,j,j->i", [(3, 4), (4,), (4,), (4,)], ["int8", "uint16", "bool", "float64"])
    xs = run_cmd.random_inputs(prog, seed=1)
    assert [x.dtype.name for x in xs] == ["int8", "uint16", "bool", "float64"]
    assert xs[0].min() >= -3 and xs[0].max() <= 3 and xs[1].max() <= 3 and np.abs(xs[3]).max() <= 1
    assert all(np.array_equal(x, y) for x, y in zip(xs, run_cmd.random_inputs(prog, seed=1)))


def test_bench_argv_is_checked_before_spawning():
    from einc.cli import build_parser
    from einc.commands.bench import suite_argv
    from einc.errors import EincError

    args = build_parser().parse_args(["bench", "ik,kj->ij", "--shapes", "8x8,8x8", "--threads", "1", "--json"])
    assert suite_argv(args) == ["ik,kj->ij", "--shapes", "8x8,8x8", "--dtype", "float32", "--section", "cpu",
                                "--threads", "1", "--json"]
    with pytest.raises(EincError):
        suite_argv(build_parser().parse_args(["bench", "ij->i", "--shapes", "2x3", "--suite", "x.json"]))


def test_bench_target_cuda_runs_the_gpu_suite_and_refuses_cpu_only_flags():
    from einc.cli import build_parser
    from einc.commands.bench import suite_argv
    from einc.errors import EincError

    args = build_parser().parse_args(["bench", "ik,kj->ij", "--shapes", "8x8,8x8", "--target", "cuda", "--json"])
    assert suite_argv(args) == ["ik,kj->ij", "--shapes", "8x8,8x8", "--target", "cuda", "--json", "-"]
    args = build_parser().parse_args(["bench", "--target", "cuda", "--cases", "matmul", "--repeat", "3"])
    assert suite_argv(args) == ["--cases", "matmul", "--repeat", "3", "--target", "cuda"]
    for flags in (["--threads", "2"], ["--peers", "numpy"], ["--overhead"], ["--dtype", "float16"]):
        with pytest.raises(EincError, match="only apply to the CPU benchmark"):
            suite_argv(build_parser().parse_args(["bench", "--target", "cuda", *flags]))
    # with EXPR, --dtype goes to the GPU benchmark (suite cases carry their own)
    args = build_parser().parse_args(["bench", "ik,kj->ij", "--shapes", "8x8,8x8", "--target", "cuda",
                                      "--dtype", "float16"])
    assert suite_argv(args) == ["ik,kj->ij", "--shapes", "8x8,8x8", "--target", "cuda", "--dtype", "float16"]


def test_bench_target_cuda_without_a_gpu_says_so(tmp_path):
    """No GPU (or no torch): exit status 2 and a sentence, not a traceback."""
    try:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is here")
    except ImportError:
        pass
    p = einc_cli("bench", "ik,kj->ij", "--shapes", "8x8,8x8", "--target", "cuda", cache_dir=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "einc bench --target cuda:" in p.stderr and "Traceback" not in p.stderr, p.stderr


# -- with TVM -------------------------------------------------------------------------------------------

@pytest.mark.tvm
def test_compile_export_load_and_emit_tir(tmp_path):
    so = tmp_path / "out" / "mm.so"
    p = einc_cli("compile", "ik,kj->ij", "--shapes", "16x8,8x4", "-o", str(so), "--emit", "tir",
                 cache_dir=tmp_path / "cache")
    assert p.returncode == 0, p.stderr
    assert "T.prim_func" in p.stdout and "def main" in p.stdout
    meta = json.loads((tmp_path / "out" / "mm.so.json").read_text())
    assert meta["program"]["inputs"][0]["shape"] == [16, 8]
    import einc

    k = einc.load(so)
    a, b = np.random.default_rng(0).random((16, 8), np.float32), np.random.default_rng(1).random((8, 4), np.float32)
    np.testing.assert_allclose(k(a, b), a @ b, rtol=1e-5)
    assert [f.name for f in (tmp_path / "out").iterdir()] and all(not f.name.startswith(".") for f in
                                                                   (tmp_path / "out").iterdir())


@pytest.mark.tvm
def test_run_check_builds_then_compile_exports_from_the_disk_cache(tmp_path):
    first = einc_cli("run", "bik,bkj->bij", "--shapes", "2x5x3,2x3x7", "--check", "--dtype", "float64",
                     cache_dir=tmp_path / "c")
    assert first.returncode == 0, first.stderr
    assert "check out: ok" in first.stdout and "kernel: built" in first.stderr
    # a new process finds the kernel on disk, and a library loaded from the cache still exports
    so = tmp_path / "k.so"
    second = einc_cli("compile", "bik,bkj->bij", "--shapes", "2x5x3,2x3x7", "--dtype", "float64", "-o", str(so),
                      cache_dir=tmp_path / "c")
    assert second.returncode == 0, second.stderr
    assert "kernel: disk" in second.stderr
    import einc

    a = np.random.default_rng(0).random((2, 5, 3))
    b = np.random.default_rng(1).random((2, 3, 7))
    np.testing.assert_allclose(einc.load(so)(a, b), a @ b, rtol=1e-12)
