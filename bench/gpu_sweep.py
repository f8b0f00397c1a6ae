"""Sweep the CUDA GEMM schedule's knobs (``schedules_gpu.GEMM_OVERRIDE``) over GPU suite cases.

    python bench/gpu_sweep.py --cases matmul,attn_scores --configs bench/gpu_sweep_configs.json \\
        --jobs 14 --json sweep.json

Every (case, config) pair is compiled in a worker process (``cache=False``: the override is not part
of the kernel cache key) and exported to a temporary ``.so``; the parent, the only process that
touches the GPU, loads each library (NVRTC makes the binary), checks the result against
``torch.einsum`` and times it with CUDA events, as ``gpu_suite`` does.  A config that fails to
compile or gives a wrong result is reported as such, never timed.  The table prints, per case, every
config's milliseconds and its ratio to the default config (the heuristics with no override).
A tuning aid, not a test: nothing asserts.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
from pathlib import Path

DEFAULT_CONFIGS = [
    {},  # the heuristics
    {"kt": False},
    {"async": True},
    {"bk": 8, "stages": 3, "async": True},
    {"bk": 8},
    {"unroll_k": False},
    {"ty": 16, "tm": 4, "tx": 16, "tn": 8},
    {"ty": 8, "tm": 8, "tx": 16, "tn": 8},
    {"ty": 16, "tm": 8, "tx": 16, "tn": 4},
    {"ty": 16, "tm": 8, "tx": 16, "tn": 4, "bk": 8, "stages": 3, "async": True},
    {"ty": 32, "tm": 8, "tx": 8, "tn": 8},  # 8x8 per thread when N is 64 (mttkrp)
    {"tile_products": False},  # mttkrp's product inlined into the inner loop, as before
]


def _compile_one(args):
    expr, shapes, cfg, path = args
    import einc
    from einc.lowering import schedules_gpu

    schedules_gpu.GEMM_OVERRIDE = cfg or None
    try:
        k = einc.compile(expr, *[tuple(s) for s in shapes], target={"kind": "cuda", "arch": os.environ.get("EINC_SWEEP_ARCH", "sm_90")},
                         cache=False)
        k.export(path)
        return {"path": path, "plan": [list(r) for r in k.built.plan]}
    except Exception as e:  # noqa: BLE001 - reported per config
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", help="comma-separated gpu suite cases (default: every GEMM-like one)")
    ap.add_argument("--configs", help="JSON file: a list of override dicts ({} = the heuristics)")
    ap.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).parent))
    from gpu_suite import _iters_for, cuda_time, load_suite

    suite = load_suite()
    names = args.cases.split(",") if args.cases else [n for n in suite if n != "transpose"]
    configs = json.loads(Path(args.configs).read_text()) if args.configs else DEFAULT_CONFIGS
    tmp = tempfile.mkdtemp(prefix="einc-sweep-")
    work = [(n, i, (suite[n]["expr"], suite[n]["shapes"], c, os.path.join(tmp, f"{n}-{i}.so")))
            for n in names for i, c in enumerate(configs)]
    # compile everything before CUDA is initialised in this process (forked workers)
    with cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("fork")) as ex:
        built = list(ex.map(_compile_one, [w[2] for w in work]))

    import torch

    import einc

    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for (n, i, (expr, shapes, cfg, _)), b in zip(work, built):
        row = {"case": n, "config": cfg, **b}
        rows.append(row)
        if "error" in b:
            print(f"{n:12} {json.dumps(cfg):70} compile error: {b['error']}", flush=True)
            continue
        gen = torch.Generator(device="cuda").manual_seed(0)
        xs = [torch.rand(tuple(s), device="cuda", generator=gen) * 2 - 1 for s in shapes]
        ref = torch.einsum(expr, *xs).contiguous()
        try:
            k = einc.load(b["path"])
            out = torch.empty_like(ref)
            k(*xs, out=out)
            torch.cuda.synchronize()
        except Exception as e:  # noqa: BLE001
            row["error"] = f"load/run: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            print(f"{n:12} {json.dumps(cfg):70} {row['error']}", flush=True)
            continue
        err = (out - ref).abs().max().item() / (ref.abs().max().item() or 1.0)
        row["rel_err"] = err
        if not err <= 1e-4:
            row["error"] = f"wrong result: max rel err {err:.2e}"
            print(f"{n:12} {json.dumps(cfg):70} {row['error']}", flush=True)
            continue
        fn = lambda: k(*xs, out=out)  # noqa: E731
        row["ms"] = cuda_time(fn, iters=_iters_for(fn), repeat=args.repeat)["median_ms"]
        print(f"{n:12} {json.dumps(cfg):70} {row['ms']:.3f} ms", flush=True)
        del xs, ref, out
        torch.cuda.empty_cache()
    # torch for reference, once per case
    torch_ms = {}
    for n in names:
        gen = torch.Generator(device="cuda").manual_seed(0)
        xs = [torch.rand(tuple(s), device="cuda", generator=gen) * 2 - 1 for s in suite[n]["shapes"]]
        fn = lambda: torch.einsum(suite[n]["expr"], *xs)  # noqa: E731
        torch_ms[n] = cuda_time(fn, iters=_iters_for(fn), repeat=args.repeat)["median_ms"]
        del xs
        torch.cuda.empty_cache()
    print()
    for n in names:
        base = next((r.get("ms") for r in rows if r["case"] == n and not r["config"]), None)
        print(f"{n}: torch {torch_ms[n]:.3f} ms")
        for r in sorted((r for r in rows if r["case"] == n), key=lambda r: r.get("ms", math.inf)):
            ms = r.get("ms")
            if ms is None:
                print(f"   {'-':>8}  {json.dumps(r['config'])}  {r.get('error')}")
            else:
                rel = f"{base / ms:5.2f}x default" if base else ""
                print(f"   {ms:8.3f}  torch/einc {torch_ms[n] / ms:5.2f}  {rel}  {json.dumps(r['config'])}")
    if args.json:
        Path(args.json).write_text(json.dumps({"torch_ms": torch_ms, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
