"""What can be known about einc's CUDA kernels without a GPU: ptxas resources and the SASS of each
kernel's hottest loop.

    python bench/gpu_static.py                         # every gpu case of bench/suite.json, sm_90
    python bench/gpu_static.py --cases mttkrp --override '{"ty": 32, "tm": 8, "tx": 8, "tn": 8}'
    python bench/gpu_static.py --json static.json

Per kernel: registers, stack frame (local memory: a spilled or over-approximated register tile),
static shared memory, threads per block, the resident blocks per SM those allow (H100: 64K registers,
228 KiB shared memory, at most 32 blocks), and for the loop with the most floating-point FMAs
(the GEMM main loop): its instruction count, the FFMA/HFMA2/HMMA share of it, and the shared-memory
loads per FMA.  Those bound what the kernel can reach — one warp instruction issues per scheduler
per clock, so a loop of 85 % FFMAs runs at <= 85 % of the FP32 peak — but say nothing of latency or
memory stalls: speed is measured by ``bench/gpu_suite.py`` on a GPU.

Needs ``nvcc`` (ptxas) and, for the SASS, ``nvdisasm`` (on PATH or from the ``nvidia-cuda-nvdisasm``
wheel, einc's ``sass`` extra); the analysis is ``einc.lowering.cuda_static``.  A report, not a
test; ``tests/test_gpu.py`` asserts bounds on the same figures.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from einc.lowering.cuda_static import kernel_resources, nvdisasm


def analyse_case(expr: str, shapes, *, arch: str = "sm_90", dtype: str = "float32", override=None):
    """Compile one einsum for CUDA (no GPU needed) and analyse its kernels; returns (plan, kernels)."""
    import einc
    from einc.lowering import schedules_gpu

    schedules_gpu.GEMM_OVERRIDE = override
    try:
        k = einc.compile(expr, *[tuple(s) for s in shapes], dtype=dtype,
                         target={"kind": "cuda", "arch": arch}, cache=False)
    finally:
        schedules_gpu.GEMM_OVERRIDE = None
    return k.built.plan, kernel_resources(k)


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_suite import load_suite

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", help="comma-separated gpu case names (default: all)")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--override", help="GEMM knobs as JSON (schedules_gpu.GEMM_OVERRIDE)")
    ap.add_argument("--suite", help="suite.json (default: bench/suite.json)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    if shutil.which("nvcc") is None:
        print("gpu_static: nvcc is not on PATH", file=sys.stderr)
        return 2
    if nvdisasm() is None:
        print("gpu_static: no nvdisasm (pip install 'einc[sass]'): registers only", file=sys.stderr)
    suite = load_suite(a.suite)
    names = a.cases.split(",") if a.cases else list(suite)
    override = json.loads(a.override) if a.override else None
    rows = []
    print(f"{'case':12} {'kernel':14} {'regs':>4} {'stack':>5} {'smem':>6} {'thr':>4} {'blk/SM':>6} "
          f"{'loop':>5} {'FMA%':>5} {'FMA/LDS':>7}  loop mix")
    for n in names:
        c = suite[n]
        _, kernels = analyse_case(c["expr"], c["shapes"], arch=a.arch, override=override)
        for k in kernels:
            per_lds = k.loop_fmas / k.loop_shared_loads if k.loop_shared_loads else float("nan")
            mix = ", ".join(f"{op} {n}" for op, n in list(k.loop_mix.items())[:4])
            print(f"{n:12} {k.name[:14]:14} {k.registers:4} {k.stack_bytes:5} {k.smem_bytes:6} {k.threads:4} {k.blocks_per_sm:6} "
                  f"{k.loop_instrs:5} {100 * k.fma_share:5.1f} {per_lds:7.1f}  {mix}")
            rows.append({"case": n, **asdict(k), "fma_share": k.fma_share})
    if a.json:
        from einc.fileio import atomic_write

        atomic_write(a.json, json.dumps({"arch": a.arch, "override": override, "kernels": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
