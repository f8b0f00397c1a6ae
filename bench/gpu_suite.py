"""GPU benchmark: einc's CUDA kernels against ``torch.einsum`` on the same device, side by side.

    python bench/gpu_suite.py                              # every gpu case of bench/suite.json
    python bench/gpu_suite.py --cases matmul,mttkrp --json out.json
    python bench/gpu_suite.py --scale 0.25                 # every extent / 4 (quick look)
    einc bench --target cuda                               # the same, from the CLI
    einc bench "ik,kj->ij" --shapes 4096x4096,4096x4096 --target cuda --json

TF32 is off on both sides (``torch.backends.cuda.matmul.allow_tf32 = False``, the same for cuDNN):
einc's float32 kernels are plain FP32 FMA, so the comparison is FP32 against FP32.  Inputs are
torch CUDA tensors (uniform in [-1, 1)); einc takes them through DLPack with no copy and writes into
a preallocated torch tensor (``out=``), torch allocates through its caching allocator.  A result that
is a view (``torch.einsum("ij->ji")``) is timed with ``.contiguous()``: both sides produce the
result in fresh memory.  Timing: CUDA events around ``--iters`` back-to-back calls after a warm-up,
median of ``--repeat`` rounds.  Correctness: einc's result against torch's (float64 reference for
float32 would take too long on the biggest cases): ``max|d| <= tol * max|ref|``.  Ratio = torch ms /
einc ms (> 1: einc wins); summary: geometric mean of the ratios.  For the transpose case the
device-to-device copy bandwidth (``dst.copy_(src)``, same bytes) is measured in the same run.
A benchmark, not a test: nothing asserts.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

SUITE = Path(__file__).with_name("suite.json")
_SHARED_SUITE = Path("/work/shared/bench/suite.json")


def load_suite(path: str | None = None, section: str = "gpu") -> dict:
    p = Path(path) if path else (SUITE if SUITE.exists() else _SHARED_SUITE)
    return json.loads(p.read_text())[section]


def cuda_time(fn, *, iters: int = 10, repeat: int = 5, warmup: int = 2) -> dict:
    """Milliseconds per call of ``fn`` (CUDA events around ``iters`` calls; median/best of ``repeat``)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            fn()
        b.record()
        b.synchronize()
        samples.append(a.elapsed_time(b) / iters)
    return {"median_ms": statistics.median(samples), "best_ms": min(samples), "iters": iters, "repeat": repeat}


def _iters_for(fn, budget_ms: float = 200.0) -> int:
    import torch

    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    one = (time.perf_counter() - t0) * 1e3
    return max(1, min(200, int(budget_ms / max(one, 1e-3))))


def _scaled(shapes, scale: float):
    if scale == 1.0:
        return shapes
    return [[max(1, int(round(d * scale))) for d in s] for s in shapes]


#: relative tolerance per dtype (float16/bfloat16: both sides accumulate in float32 and round once)
TOLERANCE = {"float32": 1e-4, "float64": 1e-10, "float16": 2e-3, "bfloat16": 1e-2, "complex64": 1e-4,
             "complex128": 1e-10}


def _inputs(shapes, dtype: str, gen):
    import torch

    if dtype.startswith(("int", "uint")):  # small values: sums wrap the same way on both sides
        return [torch.randint(-5, 5, tuple(s), device="cuda", generator=gen).to(getattr(torch, dtype))
                for s in shapes]
    def uniform(s):
        return torch.rand(tuple(s), device="cuda", generator=gen) * 2 - 1

    if dtype.startswith("complex"):  # both parts uniform
        return [torch.complex(uniform(s), uniform(s)).to(getattr(torch, dtype)) for s in shapes]
    return [uniform(s).to(getattr(torch, dtype)) for s in shapes]


def bench_case(name: str, expr: str, shapes, *, repeat: int = 5, tol: float | None = None, seed: int = 0,
               target="cuda", dtype: str = "float32") -> dict:
    import torch

    import einc

    gen = torch.Generator(device="cuda").manual_seed(seed)
    xs = _inputs(shapes, dtype, gen)
    tol = TOLERANCE.get(dtype, 0.0) if tol is None else tol
    row = {"name": name, "expr": expr, "shapes": [list(s) for s in shapes], "dtype": dtype}
    ref = torch.einsum(expr, *xs)
    if ref.dtype != xs[0].dtype:  # torch sums int8 into int64; numpy's (einc's) einsum wraps in int8
        ref = ref.to(xs[0].dtype)
    view = not ref.is_contiguous() or any(ref.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
                                          for x in xs)
    if view:
        tfn = lambda: torch.einsum(expr, *xs).contiguous()  # noqa: E731 - a fresh array, as einc's
        row["torch_note"] = "view: timed with .contiguous()"
    else:
        tfn = lambda: torch.einsum(expr, *xs)  # noqa: E731
    ref = ref.contiguous()
    try:
        t0 = time.perf_counter()
        k = einc.compile(expr, *xs, target=target)
        row["compile_s"] = time.perf_counter() - t0
        row["plan"] = [list(r) for r in getattr(k.built, "plan", [])]
        out = torch.empty_like(ref)
        t0 = time.perf_counter()
        k(*xs, out=out)  # the first call loads the module: NVRTC/nvcc turns the CUDA C into a binary
        torch.cuda.synchronize()
        row["first_call_s"] = time.perf_counter() - t0
        res = out
        wide = torch.complex128 if ref.is_complex() else torch.float64
        err = (res.to(wide) - ref.to(wide)).abs().max().item()
        scale = ref.to(wide).abs().max().item() or 1.0
        row.update(ok=bool(err <= tol * scale * max(1.0, math.log2(max(2, res.numel())) / 4)),
                   max_err=err, ref_max=scale)
        # einc: zero-copy in, preallocated out
        row["einc"] = cuda_time(lambda: k(*xs, out=out), iters=_iters_for(lambda: k(*xs, out=out)), repeat=repeat)
        row["torch"] = cuda_time(tfn, iters=_iters_for(tfn), repeat=repeat)
        row["ratio"] = row["torch"]["median_ms"] / row["einc"]["median_ms"]
        # the GPU time of the kernel alone (no DLPack / Python call overhead): TVM's time_evaluator
        row["einc_kernel_ms"] = _kernel_only_ms(k, xs, out)
    except einc.EincError as e:
        row.update(error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", ok=False, ratio=None)
    nbytes = sum(x.numel() * x.element_size() for x in xs) + ref.numel() * ref.element_size()
    row["bytes_moved_min"] = nbytes
    if "einc" in row:
        row["einc_GBps"] = nbytes / row["einc"]["median_ms"] / 1e6
        row["torch_GBps"] = nbytes / row["torch"]["median_ms"] / 1e6
    if len(xs) == 1 and ref.numel() == xs[0].numel():  # a permutation: compare with a plain copy
        src = xs[0]
        dst = torch.empty_like(src)
        c = cuda_time(lambda: dst.copy_(src), iters=_iters_for(lambda: dst.copy_(src)), repeat=repeat)
        row["copy"] = c
        row["copy_GBps"] = 2 * src.numel() * src.element_size() / c["median_ms"] / 1e6
    return row


def _kernel_only_ms(k, xs, out):
    try:
        from einc.lowering import _tvm

        dev = _tvm.cuda_device(0)
        if getattr(k, "form", None) is not None:  # a complex kernel: its real kernel's arguments
            import torch

            xs = [torch.view_as_real(x) if x.is_complex() else x for x in xs] + \
                [torch.as_tensor(c, device=out.device) for c in k.form.constant_arrays()]
            out = torch.view_as_real(out)
        ins = [_tvm.from_dlpack(x) for x in xs] + [_tvm.from_dlpack(out)]
        f = k._rt.time_evaluator("main", dev, number=10, repeat=5, min_repeat_ms=50)
        return statistics.median(f(*ins).results) * 1e3
    except Exception:  # noqa: BLE001 - informative only
        return None


def render(rows) -> str:
    lines = [f"{'case':<12} {'expr':<26} {'torch ms':>9} {'einc ms':>9} {'kern ms':>8} {'ratio':>6} {'ok':>3}  notes"]
    for r in rows:
        if r.get("ratio") is None:
            lines.append(f"{r['name']:<12} {r['expr']:<26} {'-':>9} {'-':>9} {'-':>8} {'-':>6} {'no':>3}  "
                         f"{r.get('error', '')}")
            continue
        note = ""
        if "copy_GBps" in r:
            note = f"einc {r['einc_GBps']:.0f} GB/s, torch {r['torch_GBps']:.0f} GB/s, copy {r['copy_GBps']:.0f} GB/s"
        km = r.get("einc_kernel_ms")
        lines.append(f"{r['name']:<12} {r['expr']:<26} {r['torch']['median_ms']:>9.3f} {r['einc']['median_ms']:>9.3f} "
                     f"{(f'{km:.3f}' if km else '-'):>8} {r['ratio']:>6.2f} {'yes' if r['ok'] else 'NO':>3}  {note}")
    ratios = [r["ratio"] for r in rows if r.get("ratio")]
    if ratios:
        gm = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        lines.append(f"geometric mean of torch/einc over {len(ratios)} cases: {gm:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=os.environ.get("EINC_PROG"), description=__doc__.split("\n\n")[0])
    ap.add_argument("expr", nargs="?", metavar="EXPR", help="one einsum to time (with --shapes) instead of the suite")
    ap.add_argument("--shapes", help="operand shapes for EXPR, e.g. 512x512,512x512")
    ap.add_argument("--dtype", default="float32", help="operand dtype for EXPR (suite cases carry their own)")
    ap.add_argument("--cases", help="comma-separated case names (default: all gpu cases)")
    ap.add_argument("--suite", help="suite JSON (default bench/suite.json)")
    ap.add_argument("--section", default="gpu", help="suite section (default gpu)")
    ap.add_argument("--target", default="cuda", help="einc's target: cuda or a JSON cuda target (default cuda)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every extent (quick runs)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", metavar="PATH", help="write the rows and the summary here ('-': print them)")
    args = ap.parse_args(argv)
    if bool(args.expr) != bool(args.shapes):
        ap.error("EXPR and --shapes go together")

    try:
        import torch
    except ImportError:
        print("einc bench --target cuda: needs torch with CUDA (the arrays and the comparison)", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("einc bench --target cuda: no CUDA device here, nothing to time (einc compile --target cuda "
              "--resources shows what can be known without one)", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if args.expr:
        from einc.cli import parse_shapes

        suite = {"expr": {"expr": args.expr, "shapes": parse_shapes(args.shapes), "dtype": args.dtype}}
    else:
        suite = load_suite(args.suite, args.section)
    names = args.cases.split(",") if args.cases else list(suite)
    unknown = [n for n in names if n not in suite]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; the suite has {', '.join(suite)}")
    quiet = args.json == "-"
    rows = []
    for n in names:
        case = suite[n]
        r = bench_case(n, case["expr"], _scaled(case["shapes"], args.scale), repeat=args.repeat, target=args.target,
                       dtype=case.get("dtype", "float32"))
        rows.append(r)
        if not quiet:
            print(render([r]).splitlines()[1], flush=True)
        torch.cuda.empty_cache()
    table = render(rows)
    if not quiet:
        print()
        print(table)
    ratios = [r["ratio"] for r in rows if r.get("ratio")]
    summary = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "tf32": False,
               "geomean_torch_over_einc": math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None,
               "cases": len(rows), "failed": [r["name"] for r in rows if not r.get("ok")]}
    if quiet:
        print(json.dumps({"summary": summary, "rows": rows}, indent=1))
    elif args.json:
        from einc.fileio import atomic_write

        atomic_write(args.json, json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0 if not summary["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
