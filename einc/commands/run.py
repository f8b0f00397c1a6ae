"""``einc run``: compile an einsum (or ``.ein`` program) and run it on given or random inputs.

    einc run "ik,kj->ij" --shapes 512x256,256x128 --check          # random inputs, vs the interpreter
    einc run "ij,j->i" --inputs a.npy,x.npy -o y.npy                 # shapes and dtypes from the files
    einc run model.ein --target interp --seed 3

Random inputs: floats uniform in [-1, 1), signed integers in [-3, 3], unsigned in [0, 3], booleans
fair coins, complex with both parts uniform (``--seed``, default 0).  ``--check`` compares every
output with ``einc.ir.interp`` on the source program (before passes) with a tolerance for the dtype
(see ``TOLERANCES``; the least precise floating dtype anywhere in the program decides, since a
float32 step cast to float64 carries float32 error), prints the largest error, and exits 1 on a
mismatch.
"""
from __future__ import annotations

import argparse

HELP = "compile and run an einsum on given or random inputs (--check compares with the interpreter)"

#: dtype -> relative tolerance; the absolute tolerance is this times max(1, max |reference|)
TOLERANCES = {"float16": 1e-2, "bfloat16": 3e-2, "float32": 1e-4, "float64": 1e-10,
              "complex64": 1e-4, "complex128": 1e-10}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from einc.cli import count

    from einc.commands.compile import add_program_arguments

    add_program_arguments(p)
    p.add_argument("--inputs", metavar="A.npy,B.npy", help="operand arrays (.npy), in order; default: random")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--check", action="store_true",
                   help="compare with the numpy interpreter; exit 1 and print the max error on a mismatch")
    p.add_argument("-o", "--output", metavar="OUT.npy", help="save the (first) output here")
    p.add_argument("--repeat", type=count, default=0, metavar="N", help="also time N calls and print the best")


def random_inputs(prog, seed: int = 0) -> list:
    """Random arrays for the inputs of ``prog`` (see the module doc for the ranges)."""
    import numpy as np

    from einc.ir.types import np_dtype

    rng = np.random.default_rng(seed)
    out = []
    for v in prog.inputs:
        shape, dt = v.type.shape, v.type.dtype
        if dt == "bool":
            a = rng.random(shape) < 0.5
        elif dt.startswith("int"):
            a = rng.integers(-3, 4, shape)
        elif dt.startswith("uint"):
            a = rng.integers(0, 4, shape)
        elif dt.startswith("complex"):
            a = rng.uniform(-1, 1, shape) + 1j * rng.uniform(-1, 1, shape)
        else:
            a = rng.uniform(-1, 1, shape)
        out.append(np.asarray(a).astype(np_dtype(dt)))
    return out


def tolerance_dtype(prog, name: str) -> str:
    """The dtype whose tolerance applies to output ``name``: the least precise floating dtype of any
    value in ``prog`` (a float32 step cast to float64 carries float32 error), else the output's."""
    floats = [t.dtype for t in prog.types().values() if t.dtype in TOLERANCES]
    return max(floats, key=lambda d: TOLERANCES[d]) if floats else prog.types()[name].dtype


def compare(result, reference, dtype: str, tol_dtype: str | None = None) -> tuple[bool, float, float]:
    """``(ok, max abs error, tolerance)`` of ``result`` against ``reference``.

    ``dtype`` is the result's; ``tol_dtype`` (default ``dtype``) the one whose tolerance applies.
    Integer and boolean results are exact, unless a floating step came before them (``tol_dtype``
    is floating): then rounding may move a value by one.
    """
    import numpy as np

    r = np.asarray(result)
    ref = np.asarray(reference)
    tol_dtype = tol_dtype or dtype
    if r.shape != ref.shape:
        return False, float("inf"), 0.0
    if dtype not in TOLERANCES:  # integers and booleans
        err = float(np.max(np.abs(r.astype(np.float64) - ref.astype(np.float64)))) if r.size else 0.0
        if tol_dtype in TOLERANCES:
            return err <= 1.0, err, 1.0
        return bool(np.array_equal(r, ref)), err, 0.0
    wide = np.complex128 if dtype.startswith("complex") else np.float64
    r64, ref64 = r.astype(wide), ref.astype(wide)
    if not r.size:
        return True, 0.0, 0.0
    same_nan = np.isnan(r64) == np.isnan(ref64)
    finite = np.isfinite(ref64) & np.isfinite(r64)
    rtol = max(TOLERANCES[dtype], TOLERANCES.get(tol_dtype, 0.0))
    scale = max(1.0, float(np.max(np.abs(ref64[finite])))) if finite.any() else 1.0
    diff = np.abs(r64 - ref64)
    err = float(np.max(diff[finite])) if finite.any() else 0.0
    tol = rtol * scale
    ok = bool(same_nan.all() and np.all((r64 == ref64) | ~finite | (diff <= tol + rtol * np.abs(ref64))))
    return ok, err, tol


def _load_inputs(spec: str) -> list:
    import numpy as np

    from einc.errors import EincError

    arrays = []
    for path in [s.strip() for s in spec.split(",") if s.strip()]:
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise EincError(f"--inputs: cannot read {path}: {e}") from None
    return arrays


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    import numpy as np

    from einc.commands.compile import compile_kernel, load_program
    from einc.errors import EincError
    from einc.ir.interp import run as interp
    from einc.ir.types import dtype_name

    given = _load_inputs(args.inputs) if args.inputs else None
    shapes = dtypes = None
    if given is not None and args.shapes is None and not (args.source.endswith(".ein") or args.source == "-"):
        shapes = [a.shape for a in given]
        dtypes = [dtype_name(a.dtype) for a in given]
    prog0, prog, pipeline = load_program(args, shapes, dtypes)
    if given is not None:
        if len(given) != len(prog.inputs):
            raise EincError(f"--inputs: the program takes {len(prog.inputs)} operands, {len(given)} files given")
        for a, v in zip(given, prog.inputs):
            if tuple(a.shape) != v.type.shape:
                raise EincError(f"--inputs: operand {v.name} has shape {tuple(a.shape)}, the program expects "
                                f"{v.type.shape}")
        arrays = [np.asarray(a).astype(a.dtype if dtype_name(a.dtype) == v.type.dtype else v.type.dtype)
                  for a, v in zip(given, prog.inputs)]
    else:
        arrays = random_inputs(prog, args.seed)

    interp_target = args.target.strip().lower() in ("interp", "numpy")
    t0 = time.perf_counter()
    if interp_target:
        fn, origin = (lambda *xs: interp(prog, *xs)), "interp"
    else:
        k, origin = compile_kernel(prog, args.target, cache=not args.no_cache, source_program=prog0,
                                   pipeline=pipeline)

        def fn(*xs):
            r = k(*xs)
            return list(r) if isinstance(r, tuple) else [r]
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    outs = fn(*arrays)
    t_first = time.perf_counter() - t0
    best = None
    for _ in range(max(0, args.repeat)):
        t0 = time.perf_counter()
        fn(*arrays)
        best = min(best or 1e9, time.perf_counter() - t0)

    types = prog.types()
    for name, r in zip(prog.outputs, outs):
        r = np.asarray(r)
        print(f"{name}: {types[name].dtype}{list(r.shape)}")
        print(np.array2string(r, threshold=20, edgeitems=3, precision=5))
    line = f"kernel: {origin}" + ("" if interp_target else f" in {t_compile * 1e3:.0f} ms") + \
        f"; first call {t_first * 1e3:.3f} ms"
    if best is not None:
        line += f"; best of {args.repeat} {best * 1e3:.3f} ms"
    print(line, file=sys.stderr)
    if args.output:
        from einc.fileio import atomic_write
        import io

        buf = io.BytesIO()
        np.save(buf, np.asarray(outs[0]))
        atomic_write(args.output, buf.getvalue())

    if args.check:
        refs = interp(prog0, *arrays)
        bad = 0
        for name, r, ref in zip(prog.outputs, outs, refs):
            td = tolerance_dtype(prog, name)
            ok, err, tol = compare(r, ref, types[name].dtype, td)
            status = "ok" if ok else "MISMATCH"
            via = "" if td == types[name].dtype else f" with {td} steps"
            print(f"check {name}: {status}: max abs error {err:.3g} (tolerance {tol:.3g}, "
                  f"{types[name].dtype}{via})")
            bad += not ok
        return 1 if bad else 0
    return 0
