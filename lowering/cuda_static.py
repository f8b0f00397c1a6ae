"""Static facts about CUDA kernels, no GPU needed: what ptxas allocates (registers, stack frame,
shared memory), the blocks per SM that allows, and the SASS instruction mix of each kernel's hottest
loop (the one with the most FMAs: a GEMM's main loop).

The loop's share of FMAs bounds the kernel's FP32 throughput (a scheduler issues one warp
instruction per clock and FP32 FMAs are issued at that rate), its shared-memory loads per FMA say
whether the register tile amortises them; neither says anything of latency or memory stalls.

Needs ``nvcc`` (ptxas) and, for the SASS, ``nvdisasm``: on PATH or from NVIDIA's
``nvidia-cuda-nvdisasm`` wheel (einc's ``sass`` extra).  Used by ``einc compile --resources``,
``bench/gpu_static.py`` and the GEMM checks in ``tests/test_gpu.py``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from einc.errors import CompileError, EincError

REGS_PER_SM, SMEM_PER_SM, MAX_BLOCKS_PER_SM, MAX_THREADS_PER_SM = 65536, 228 * 1024, 32, 2048
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
    loop_mmas: int = 0  # of ``loop_fmas``, tensor-core instructions (HMMA/IMMA/DMMA)

    @property
    def fma_share(self) -> float:
        return self.loop_fmas / self.loop_instrs if self.loop_instrs else 0.0


def _blocks_per_sm(regs: int, smem: int, threads: int = 256) -> int:
    regs = -(-max(1, regs) // 8) * 8  # allocated per warp in units of 256 registers
    by_regs = REGS_PER_SM // (regs * threads)
    by_smem = SMEM_PER_SM // smem if smem else MAX_BLOCKS_PER_SM
    # (the resident-thread limit: a 256-thread kernel of 20 registers was reported at 10 blocks an SM)
    return max(0, min(by_regs, by_smem, MAX_BLOCKS_PER_SM, MAX_THREADS_PER_SM // max(1, threads)))


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
    if shutil.which("nvcc") is None:
        raise EincError("ptxas figures need nvcc on PATH (the CUDA toolkit); no GPU is needed")
    if not re.fullmatch(r"sm_\d+[a-z]?", arch):
        raise EincError(f"arch {arch!r}: expected an sm_XY name such as sm_90")
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        cu, cubin = Path(d, "k.cu"), Path(d, "k.cubin")
        cu.write_text(cuda_src)
        try:
            r = subprocess.run(["nvcc", f"-arch={arch}", "-cubin", "-o", str(cubin), str(cu), "-Xptxas", "-v", "-w"],
                               capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as e:
            raise EincError(f"nvcc took over {e.timeout:.0f} s on the kernel's CUDA C") from None
        if r.returncode != 0:
            raise CompileError(f"nvcc -arch={arch} failed on the kernel's CUDA C:\n{r.stderr[-3000:]}")
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
            k.loop_mmas = sum(o.split(".")[0] in ("HMMA", "IMMA", "DMMA") for o in ops)
            k.loop_mix = dict(Counter(ops).most_common(8))
        out.append(k)
    return out




def kernel_resources(kernel, arch: str | None = None) -> list[KernelStatic]:
    """The figures for every CUDA kernel of a compiled einc kernel (``target="cuda"``); ``arch``
    defaults to the kernel's target arch."""
    import json

    target = kernel.target if isinstance(kernel.target, dict) else json.loads(kernel.target or "{}")
    if target.get("kind") != "cuda":
        raise EincError("resources: a CUDA kernel is needed (compile with target='cuda')")
    return analyse_source(kernel.source("cuda"), arch or target.get("arch", "sm_90"))
