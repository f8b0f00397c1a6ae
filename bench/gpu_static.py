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
wheel, einc's ``sass`` extra).  A report, not a test; ``tests/test_gpu.py`` asserts bounds on it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

REGS_PER_SM, SMEM_PER_SM, MAX_BLOCKS_PER_SM = 65536, 228 * 1024, 32
FMA_OPS = ("FFMA", "DFMA", "HFMA2", "HMMA")


def nvdisasm() -> str | None:
    """The ``nvdisasm`` executable: on PATH, else the one the ``nvidia-cuda-nvdisasm`` wheel installs."""
    found = shutil.which("nvdisasm")
    if found:
        return found
    try:
        import nvidia  # namespace package of NVIDIA's CUDA wheels
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for exe in sorted(Path(root).glob("cu*/bin/nvdisasm")):
            if not os.access(exe, os.X_OK):
                try:
                    exe.chmod(exe.stat().st_mode | 0o111)
                except OSError:
                    continue
            return str(exe)
    return None


@dataclass
class KernelStatic:
    name: str
    registers: int
    stack_bytes: int
    smem_bytes: int
    threads: int  # per block (``__launch_bounds__``; 256 when the source does not say)
    blocks_per_sm: int
    loop_instrs: int = 0  # the hottest loop (most FMAs); 0 when no SASS or no loop
    loop_fmas: int = 0
    loop_shared_loads: int = 0
    loop_mix: dict = field(default_factory=dict)

    @property
    def fma_share(self) -> float:
        return self.loop_fmas / self.loop_instrs if self.loop_instrs else 0.0


def _blocks_per_sm(regs: int, smem: int, threads: int = 256) -> int:
    regs = -(-max(1, regs) // 8) * 8  # allocated per warp in units of 256 registers
    by_regs = REGS_PER_SM // (regs * threads)
    by_smem = SMEM_PER_SM // smem if smem else MAX_BLOCKS_PER_SM
    return max(0, min(by_regs, by_smem, MAX_BLOCKS_PER_SM))


def _ptxas_resources(stderr: str) -> dict[str, dict]:
    """ptxas -v output -> {kernel: {registers, stack, smem}}."""
    out, cur = {}, None
    for line in stderr.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            cur = out.setdefault(m.group(1), {"registers": 0, "stack": 0, "smem": 0})
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame", line)
        if m:
            cur["stack"] = int(m.group(1))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["registers"] = int(m.group(1))
        m = re.search(r"(\d+) bytes smem", line)
        if m:
            cur["smem"] = int(m.group(1))
    return out


def _opcode(ins: str) -> str:
    ins = re.sub(r"^@!?U?P\w+\s+", "", ins.strip())  # predicate guard
    return ins.split()[0] if ins else ""


def sass_loops(sass: str):
    """``(kernel, [opcodes])`` for every loop of ``nvdisasm`` output: the instructions from a label
    to a branch back to it."""
    kern, ops, labels = None, [], {}
    for line in sass.splitlines():
        m = re.match(r"\s*\.text\.(\w+):", line)
        if m:
            kern, ops, labels = m.group(1), [], {}
            continue
        m = re.match(r"\s*\.(L_x_\d+):", line)
        if m:
            labels[m.group(1)] = len(ops)
            continue
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;", line)
        if m is None or kern is None:
            continue
        ins = m.group(1)
        ops.append(_opcode(ins))
        b = re.search(r"\bBRA\b.*?(L_x_\d+)", ins)
        if b and b.group(1) in labels:
            yield kern, ops[labels[b.group(1)]:]


def _is_fma(op: str) -> bool:
    return op.split(".")[0] in FMA_OPS


def analyse_source(cuda_src: str, arch: str = "sm_90", workdir: str | None = None) -> list[KernelStatic]:
    """Compile CUDA C with nvcc for ``arch`` and report every kernel (SASS figures when nvdisasm is found)."""
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        cu, cubin = Path(d, "k.cu"), Path(d, "k.cubin")
        cu.write_text(cuda_src)
        r = subprocess.run(["nvcc", f"-arch={arch}", "-cubin", "-o", str(cubin), str(cu), "-Xptxas", "-v", "-w"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"nvcc failed:\n{r.stderr[-3000:]}")
        res = _ptxas_resources(r.stderr)
        hot: dict[str, tuple] = {}
        exe = nvdisasm()
        if exe:
            sass = subprocess.run([exe, "-c", str(cubin)], capture_output=True, text=True, timeout=300).stdout
            for kern, ops in sass_loops(sass):
                fmas = sum(_is_fma(o) for o in ops)
                if fmas and (kern not in hot or fmas > hot[kern][0]):
                    hot[kern] = (fmas, ops)
    bounds = {m.group(2): int(m.group(1))
              for m in re.finditer(r"__launch_bounds__\((\d+)\)\s+(\w+)\s*\(", cuda_src)}
    out = []
    for kern, rr in res.items():
        thr = bounds.get(kern, 256)
        k = KernelStatic(kern, rr["registers"], rr["stack"], rr["smem"], thr,
                         _blocks_per_sm(rr["registers"], rr["smem"], thr))
        if kern in hot:
            fmas, ops = hot[kern]
            k.loop_instrs, k.loop_fmas = len(ops), fmas
            k.loop_shared_loads = sum(o.startswith("LDS") for o in ops)
            k.loop_mix = dict(Counter(ops).most_common(8))
        out.append(k)
    return out


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
    return k.built.plan, analyse_source(k.built.rt_mod.imports[0].inspect_source(), arch)


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
