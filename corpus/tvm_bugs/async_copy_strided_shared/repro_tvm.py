#!/usr/bin/env python
"""TVM-only reproducer: InjectPTXAsyncCopy makes ONE contiguous 16-byte cp.async of a vectorised
global->shared copy whose shared side is strided (4 consecutive floats of A go to 4 ROWS of the
shared tile As, a K-major tile), so the 4 values land in one row: wrong results.

Needs TVM only (0.27), no GPU: tvm.compile generates CUDA C for sm_90.  Exit 1 while the bug is
there (a 16-byte cp.async into As is emitted), 0 otherwise.  einc steers around it:
lowering/schedules_gpu.py _gemm copies K-major tiles 4 bytes at a time (knob tvm_bug_async_strided).
"""
import re
import sys

import tvm
from tvm.ir.instrument import pass_instrument
from tvm.script import tirx as T

PITCH = 32  # floats per row of As


@T.prim_func
def main(A: T.Buffer((32, 16), "float32"), B: T.Buffer((16, 32), "float32")):
    tx = T.launch_thread("threadIdx.x", 32)
    As = T.alloc_buffer((16, 32), "float32", scope="shared")  # As[k, m] = A[m, k]: K-major
    with T.attr(0, "async_commit_queue_scope", 0):
        with T.attr(0, "async_scope", 1):
            for k0 in range(4):
                for v in T.vectorized(4):  # 4 consecutive k: contiguous in A, one row apart in As
                    As[k0 * 4 + v, tx] = A[tx, k0 * 4 + v]
    with T.attr(0, "async_wait_queue_scope", 0):
        with T.attr(0, "async_wait_inflight_count", 0):
            T.tvm_storage_sync("shared")
            for k in range(16):
                B[k, tx] = As[k, tx]


seen = {}


@pass_instrument
class _Before:
    def run_before_pass(self, mod, info):
        if "InjectPTXAsyncCopy" in info.name:
            seen["ir"] = mod.script()


with tvm.transform.PassContext(config={"tirx.use_async_copy": True}, instruments=[_Before()]):
    ex = tvm.compile(tvm.IRModule({"main": main}), target=tvm.target.Target({"kind": "cuda", "arch": "sm_90"}))
src = ex.mod.imports[0].inspect_source()

store = [ln.strip() for ln in seen.get("ir", "").splitlines() if "As[" in ln and "Ramp" in ln and "=" in ln]
print("TIR store before InjectPTXAsyncCopy (shared index: a Ramp with stride", PITCH, "= the row pitch):")
print("   ", store[0] if store else "(not found)")
calls = [ln.strip() for ln in src.splitlines() if "cp_async" in ln and "As_ptr" in ln and "(" in ln]
print("generated CUDA:")
for c in calls:
    print("   ", c)
# the copy size is the "n"(bytes) operand of the cp.async in each called helper's body
sizes = set()
for name in {re.match(r"(\w+)\(", c).group(1) for c in calls}:
    body = src[src.index(f"void {name}("):]
    body = body[:body.index("\n}")]
    insn = re.search(r"cp[.]async[^;]*;", body).group(0)
    nbytes = re.findall(r'"n"[(](\d+)[)]', body)
    print(f"    {name}: {insn} with n = {nbytes} bytes")
    sizes.update(int(b) for b in nbytes)
if 16 in sizes:
    print(f"BUG: one 16-byte cp.async copies 4 consecutive floats to As[dst..dst+3], but the TIR store "
          f"writes them {PITCH} floats apart (As[(k0*4+v)*{PITCH} + tx], v = 0..3)")
    sys.exit(1)
print("no 16-byte cp.async into the strided tile: the bug did not reproduce")
sys.exit(0)
