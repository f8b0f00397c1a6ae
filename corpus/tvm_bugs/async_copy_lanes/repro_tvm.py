#!/usr/bin/env python
"""TVM-only reproducer: InjectPTXAsyncCopy fails the ICHECK
'load->indices[0].ty().lanes() == store->indices[0].ty().lanes()' on a vectorised global->shared copy
whose global source is an intermediate buffer that TVM's own StorageRewrite has retyped to float32x4
(every access to it is 4-wide and aligned): the load becomes mid[i] (scalar index, float32x4 value)
while the shared store keeps a 4-lane Ramp index.  It should emit the cp.async (or leave the copy
synchronous), not abort.

Needs TVM only (0.27), no GPU: tvm.compile generates CUDA C for sm_90.  Exit 1 while the bug is
there (the ICHECK fires), 0 otherwise.  einc refuses such builds (TVM_BUGS['async_copy_lanes'] in
lowering/fuzz_hooks.py: only with the non-default GEMM knob async=1).
"""
import sys

import tvm
from tvm.ir.instrument import pass_instrument
from tvm.script import tirx as T


@T.prim_func
def main(A: T.Buffer((128,), "float32"), B: T.Buffer((128,), "float32")):
    mid = T.alloc_buffer((128,), "float32")  # global, between the two kernels
    with T.launch_thread("threadIdx.x", 32) as tx:
        for v in T.vectorized(4):
            mid[tx * 4 + v] = A[tx * 4 + v] * T.float32(2)
    with T.launch_thread("threadIdx.x", 32) as tx2:
        Ms = T.alloc_buffer((128,), "float32", scope="shared")
        with T.attr(0, "async_commit_queue_scope", 0):
            with T.attr(0, "async_scope", 1):
                for v in T.vectorized(4):
                    Ms[tx2 * 4 + v] = mid[tx2 * 4 + v]
        with T.attr(0, "async_wait_queue_scope", 0):
            with T.attr(0, "async_wait_inflight_count", 0):
                T.tvm_storage_sync("shared")
                for j in range(4):
                    B[j * 32 + tx2] = Ms[j * 32 + tx2]


seen = {}


@pass_instrument
class _Before:
    def run_before_pass(self, mod, info):
        if "InjectPTXAsyncCopy" in info.name:
            seen["ir"] = mod.script()


try:
    with tvm.transform.PassContext(config={"tirx.use_async_copy": True}, instruments=[_Before()]):
        tvm.compile(tvm.IRModule({"main": main}), target=tvm.target.Target({"kind": "cuda", "arch": "sm_90"}))
except Exception as e:  # noqa: BLE001 - the ICHECK arrives as tvm.error.InternalError
    msg = str(e)
    lines = [ln.strip() for ln in seen.get("ir", "").splitlines()
             if ("mid = " in ln or "mid: " in ln or ("Ms[" in ln and "= mid" in ln))]
    print("TIR before InjectPTXAsyncCopy (mid retyped to float32x4; scalar-index load into a Ramp store):")
    for ln in lines:
        print("   ", ln)
    head = next((ln.strip() for ln in msg.splitlines() if "Check failed" in ln), msg.strip().splitlines()[-1])
    print(f"{type(e).__name__}: {head}")
    if "lanes() == store->indices[0]" in msg:
        print("BUG: InjectPTXAsyncCopy ICHECK on the lanes of a vectorised global->shared copy")
        sys.exit(1)
    print("a different error: not this bug")
    sys.exit(0)
print("compiled: the bug did not reproduce")
sys.exit(0)
