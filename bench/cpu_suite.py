"""CPU benchmark: einc's compiled kernels against numpy, opt_einsum and torch, side by side.

    python bench/cpu_suite.py                          # every cpu case of bench/suite.json
    python bench/cpu_suite.py --cases matmul,mttkrp --json
    python bench/cpu_suite.py "ik,kj->ij" --shapes 512x512,512x512
    python bench/cpu_suite.py --overhead               # cold compile, cached-call overhead, policy floor
    python bench/cpu_suite.py --suite bench/complex.json   # complex einsums
    einc bench ...                                     # the same, through the CLI

Every library runs with the same thread count (``--threads``, default: the cores this process may
use), set before numpy, torch or TVM are imported.  Peers: ``numpy.einsum(optimize=True)``,
``opt_einsum.contract_expression`` (path found once, outside the timing) and ``torch.einsum``
(when torch is installed).  einc: ``einc.compile`` (default pass pipeline, host CPU target), its
compile time reported apart; the timed call is ``Kernel.__call__`` on the same numpy arrays.
Each einc result is checked against numpy's.  Ratio = best peer time / einc time (> 1: einc wins);
the summary is the geometric mean of the ratios.  Every row times producing a new array: a library
whose answer is a view (``ij->ji``) is timed with its best way to materialize it (numpy's copy,
torch's ``.contiguous()``, einc's own compiled kernel writing into fresh memory through ``out=``).
Compile times are measured without the kernel cache.
A benchmark, not a test: nothing asserts.
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a script: its folder is on sys.path, einc comes from the install
    import common as C  # noqa: E402
else:
    from . import common as C

THREADS = C.threads_from_argv(sys.argv)
_LATE = C.pin_threads(THREADS)  # before numpy / torch / tvm

import argparse  # noqa: E402
import os  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

PEERS = ("numpy", "opt_einsum", "torch")


def _shapes(spec) -> list[tuple[int, ...]]:
    if isinstance(spec, str):
        from einc.cli import parse_shapes

        return parse_shapes(spec)
    return [tuple(int(d) for d in s) for s in spec]


def make_peers(expr: str, arrays, wanted) -> dict:
    """name -> zero-argument callable computing the einsum with that library.

    A library that answers with a view of an operand (numpy, torch and einc do for ``ij->ji``) is
    timed with the copy that makes its result an array of its own: every row times producing the
    result in fresh memory.
    """
    fns = {}
    if "numpy" in wanted:
        fns["numpy"] = _materialize(lambda: np.einsum(expr, *arrays, optimize=True), arrays)
    if "opt_einsum" in wanted:
        try:
            import opt_einsum
        except ImportError:
            pass
        else:
            ce = opt_einsum.contract_expression(expr, *[a.shape for a in arrays])
            fns["opt_einsum"] = _materialize(lambda: ce(*arrays), arrays)
    if "torch" in wanted:
        try:
            import torch
        except ImportError:
            pass
        else:
            torch.set_num_threads(THREADS)
            ts = [torch.from_numpy(a) for a in arrays]
            f = lambda: torch.einsum(expr, *ts)  # noqa: E731
            r = f()
            if not r.is_contiguous():
                fns["torch"] = lambda: torch.einsum(expr, *ts).contiguous()
            elif any(r.untyped_storage().data_ptr() == t.untyped_storage().data_ptr() for t in ts):
                fns["torch"] = lambda: torch.einsum(expr, *ts).clone()
            else:
                fns["torch"] = f
    return fns


def _materialize(f, arrays):
    r = f()
    if isinstance(r, np.ndarray) and any(np.shares_memory(r, a) for a in arrays):
        return lambda: np.array(f(), order="C", copy=True)
    return f


def bench_case(name: str, expr: str, shapes, dtype: str = "float32", *, peers=PEERS, min_time: float = 0.3,
               repeat: int = 5, seed: int = 0) -> dict:
    """Time one einsum with every peer and einc; check einc against numpy."""
    import einc
    from einc.commands.run import compare

    rng = np.random.default_rng(seed)
    arrays = [(rng.uniform(-1, 1, s) + (1j * rng.uniform(-1, 1, s) if dtype.startswith("complex") else 0)).astype(dtype)
              for s in _shapes(shapes)]
    row = {"name": name, "expr": expr, "shapes": [list(a.shape) for a in arrays], "dtype": dtype, "times": {}}
    ref = np.einsum(expr, *arrays, optimize=True)
    for peer, fn in make_peers(expr, arrays, peers).items():
        row["times"][peer] = C.time_fn(fn, min_time=min_time, repeat=repeat).as_dict()
    try:
        t0 = time.perf_counter()
        k = einc.compile(expr, *arrays, target="llvm", cache=False)
        row["compile_s"] = time.perf_counter() - t0
        row["compile_stages"] = dict(getattr(k.built, "timings", {}) or {})
        out = k(*arrays)
        ok, err, tol = compare(out, ref, dtype)
        row.update(ok=ok, max_err=err, tol=tol)
        if any(np.shares_memory(out, a) for a in arrays):  # a view: time the compiled copy
            def call():
                return k(*arrays, out=np.empty(out.shape, out.dtype))
        else:
            def call():
                return k(*arrays)
        row["times"]["einc"] = C.time_fn(call, min_time=min_time, repeat=repeat).as_dict()
        peer_times = [(t["best"], p) for p, t in row["times"].items() if p in PEERS]
        best_peer, row["best_peer"] = min(peer_times, default=(None, None))
        row["ratio"] = best_peer / row["times"]["einc"]["best"] if best_peer else None
    except einc.EincError as e:
        row.update(error=f"{type(e).__name__}: {e.message.splitlines()[0]}", ok=False, ratio=None)
    return row


# ------------------------------------------------------------------------------------------------
# compile cost, call overhead, the policy floor


COLD = r"""
import json, sys, time
t0 = time.perf_counter()
import einc.lowering._tvm
t1 = time.perf_counter()
import numpy as np, einc
n = int(sys.argv[1])
t2 = time.perf_counter()
k = einc.compile("ik,kj->ij", (n, n), (n, n), target="llvm", cache=False)
t3 = time.perf_counter()
import tempfile, os
d = tempfile.mkdtemp()
t4 = time.perf_counter()
k.export(os.path.join(d, "k.so"))
t5 = time.perf_counter()
print(json.dumps({"import_tvm_s": t1 - t0, "compile_s": t3 - t2, "export_s": t5 - t4,
                  "stages": k.built.timings}))
"""


def cold_compile(n: int = 1024) -> dict:
    """A fresh process: import TVM, then compile (and export) a 2-operand einsum ``ik,kj->ij``."""
    p = subprocess.run([sys.executable, "-c", COLD, str(n)], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def call_overhead(n: int = 4, min_time: float = 0.3) -> dict:
    """Per-call cost of each layer over the raw packed function, on an ``n x n`` matmul kernel."""
    import einc
    from einc import dispatch as D
    from einc.kernel import aligned_empty

    a = aligned_empty((n, n), "float32")
    a[...] = np.random.default_rng(0).uniform(-1, 1, (n, n))
    c = aligned_empty((n, n), "float32")
    k = einc.compile("ik,kj->ij", a, a, target="llvm")
    prog = k.program
    fn = k._fn
    D.einsum_call("ik,kj->ij", [a, a], lambda: prog, target="llvm")   # warm the plan
    einc.einsum("ik,kj->ij", a, a, target="llvm")
    t = {
        "raw_packed_call": C.time_fn(lambda: fn(a, a, c), min_time=min_time).best,
        "Kernel.__call__": C.time_fn(lambda: k(a, a), min_time=min_time).best,
        "dispatch.einsum_call (cached plan)": C.time_fn(
            lambda: D.einsum_call("ik,kj->ij", [a, a], lambda: prog, target="llvm"), min_time=min_time).best,
        "einc.einsum(target='llvm')": C.time_fn(lambda: einc.einsum("ik,kj->ij", a, a, target="llvm"),
                                                min_time=min_time).best,
        "numpy.einsum": C.time_fn(lambda: np.einsum("ik,kj->ij", a, a), min_time=min_time).best,
        # the default policy on a tiny call: the interpreter, i.e. numpy plus einc's front half
        "einc.einsum(default -> interp)": C.time_fn(lambda: einc.einsum("ik,kj->ij", a, a),
                                                    min_time=min_time).best,
    }
    raw = t["raw_packed_call"]
    return {"n": n, "seconds": t,
            "overhead_over_raw_s": {k2: v - raw for k2, v in t.items() if "interp" not in k2 and k2 != "numpy.einsum"},
            "default_overhead_over_numpy_s": t["einc.einsum(default -> interp)"] - t["numpy.einsum"]}


def policy_floor(sizes=(8, 16, 24, 32, 48, 64, 96, 128), min_time: float = 0.2) -> dict:
    """numpy.einsum(optimize=False) vs a cached kernel through the dispatcher, matmul n x n: where they cross."""
    from einc import dispatch as D
    from einc.ir import TensorType, single_einsum

    rows, crossover = [], None
    for n in sizes:
        a = np.random.default_rng(n).uniform(-1, 1, (n, n)).astype("float32")
        prog = single_einsum("ik,kj->ij", [TensorType((n, n), "float32")] * 2)
        D.execute(prog, [a, a], "llvm")
        t_np = C.time_fn(lambda: np.einsum("ik,kj->ij", a, a), min_time=min_time).best
        t_k = C.time_fn(lambda: D.execute(prog, [a, a], "llvm"), min_time=min_time).best
        rows.append({"n": n, "numpy_s": t_np, "kernel_s": t_k, "predicted_numpy_s": D.predict_numpy_s(prog)})
        if crossover is None and t_k < t_np:
            crossover = rows[-1]
    return {"rows": rows, "crossover": crossover, "FLOOR_S": D.FLOOR_S}


# ------------------------------------------------------------------------------------------------
# output


def print_table(rows, summary, use_json: bool, extra: dict | None = None) -> None:
    if use_json:
        doc = {"machine": C.machine_info(), "threads": THREADS, "cases": rows, "summary": summary}
        doc.update(extra or {})
        print(json.dumps(doc, indent=1, default=str))
        return
    peers = [p for p in PEERS if any(p in r["times"] for r in rows)]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        Console = None
    header = ["case", "expr", *peers, "einc", "peer/einc", "compile", "check"]
    body = []
    for r in rows:
        t = r["times"]
        ratio = r.get("ratio")
        body.append([r["name"], r["expr"], *[C.fmt_time(t.get(p, {}).get("best")) for p in peers],
                     C.fmt_time(t.get("einc", {}).get("best")), f"{ratio:.2f}x" if ratio else "-",
                     C.fmt_time(r.get("compile_s")),
                     "ok" if r.get("ok") else (r.get("error") or f"MISMATCH {r.get('max_err', 0):.2g}")])
    title = (f"einc vs peers, {THREADS} thread{'s' * (THREADS != 1)}, best of {summary.get('repeat')}; "
             f"geomean best peer/einc {summary['geomean_ratio']:.2f}x")
    if Console is None:
        print(title)
        print(" | ".join(header))
        for b in body:
            print(" | ".join(b))
    else:
        table = Table(title=title)
        Console = __import__("functools").partial(Console, width=max(140, __import__("shutil").get_terminal_size().columns))
        for h in header:
            table.add_column(h, justify="left" if h in ("case", "expr", "check") else "right")
        for b in body:
            table.add_row(*b)
        Console().print(table)
    for k, v in (extra or {}).items():
        print(f"{k}: {json.dumps(v, indent=1, default=str)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=os.environ.get("EINC_PROG", "bench/cpu_suite.py"),
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("expr", nargs="?", help="one einsum to benchmark instead of the suite (with --shapes)")
    ap.add_argument("--shapes", help="operand shapes for EXPR, e.g. 512x512,512x512")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--suite", help="suite JSON file (default bench/suite.json)")
    ap.add_argument("--section", default="cpu")
    ap.add_argument("--cases", help="comma-separated case names of the suite (default: all)")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS))
    ap.add_argument("--threads", type=int, default=THREADS, help="threads for every library (read before imports)")
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds of timed calls per measurement")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--overhead", action="store_true",
                    help="also measure a cold 2-operand compile, the cached-call overhead and the policy floor")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)

    from einc.errors import EincError

    if _LATE:
        print(f"warning: {', '.join(_LATE)} imported before the thread count was set", file=sys.stderr)
    t0 = time.perf_counter()
    import einc.lowering._tvm  # noqa: F401 - pay the import before the first compile is timed
    import_s = time.perf_counter() - t0
    try:
        if args.expr:
            if not args.shapes:
                raise EincError("give --shapes with an expression")
            cases = {"expr": {"expr": args.expr, "shapes": args.shapes, "dtype": args.dtype}}
        else:
            cases = C.load_suite(args.suite, args.section)
            if args.cases:
                want = [c.strip() for c in args.cases.split(",") if c.strip()]
                unknown = [c for c in want if c not in cases]
                if unknown:
                    raise EincError(f"unknown case(s) {', '.join(unknown)}; the suite has {', '.join(cases)}")
                cases = {c: cases[c] for c in want}
        peers = [p.strip() for p in args.peers.split(",") if p.strip()]
        bad = [p for p in peers if p not in PEERS]
        if bad:
            raise EincError(f"unknown peer(s) {', '.join(bad)}; choose from {', '.join(PEERS)}")
        rows = []
        for name, c in cases.items():
            if not args.json:
                print(f"... {name}", file=sys.stderr, flush=True)
            rows.append(bench_case(name, c["expr"], c["shapes"], c.get("dtype", args.dtype), peers=peers,
                                   min_time=args.min_time, repeat=args.repeat))
    except EincError as e:
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        return 2
    ratios = [r["ratio"] for r in rows if r.get("ratio")]
    summary = {"geomean_ratio": C.geomean(ratios),
               "cases": len(rows), "failed": sum(not r.get("ok") for r in rows),
               "repeat": args.repeat, "threads": THREADS, "import_tvm_s": import_s}
    extra = {}
    if args.overhead:
        extra["cold_compile_2op"] = cold_compile()
        extra["call_overhead"] = call_overhead()
        extra["policy_floor"] = policy_floor()
    print_table(rows, summary, args.json, extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
