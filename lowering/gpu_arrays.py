"""Calling a CUDA kernel with arrays from anywhere.

* CUDA arrays (torch, CuPy, TVM tensors, anything with ``__dlpack__`` on a CUDA device) go in
  through DLPack without a copy; results come back as the same kind of array, again through DLPack
  (zero-copy views of TVM-allocated device memory).  A non-contiguous or oddly aligned view is copied
  to a fresh contiguous array on the device first (TVM requires 64-byte aligned, compact data).
* Host arrays (numpy, CPU torch, lists) are checked like a CPU kernel's inputs, copied to the
  device, and the results copied back (numpy out for numpy in, torch for CPU torch).

With torch or CuPy arrays the kernel runs on that library's *current stream* (``torch.cuda.stream``
and ``cupy.cuda.Stream`` contexts are honoured: the kernel is ordered after the work that produced
its inputs and before what the caller queues next, without a device synchronisation), and results
are allocated by that library (torch's caching allocator, CuPy's memory pool): no ``cudaMalloc`` /
``cudaFree`` per call, and ``cudaFree`` would have synchronised the device.  Otherwise kernels run
on TVM's current stream, the default (legacy) stream.

A call runs on the device its CUDA arrays are on (``cuda:N``; host arrays are copied there), device 0
when all are host arrays; CUDA arrays on two devices are an error.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from einc.errors import EincError, EincTypeError, ShapeMismatch, Unsupported
from einc.ir.types import np_dtype

#: DLPack device types that are CUDA memory (kDLCUDA, kDLCUDAHost is excluded, kDLCUDAManaged)
_CUDA_DEVICE_TYPES = (2, 13)


def _device_type(x: Any) -> int | None:
    f = getattr(x, "__dlpack_device__", None)
    if f is None:
        return None
    try:
        return int(f()[0])
    except Exception:  # noqa: BLE001
        return None


def is_cuda_array(x: Any) -> bool:
    return _device_type(x) in _CUDA_DEVICE_TYPES


def _kind(x: Any) -> str:
    mod = type(x).__module__
    if mod.startswith("torch"):
        return "torch"
    if mod.startswith("cupy"):
        return "cupy"
    if mod.startswith("tvm"):
        return "tvm"
    return "dlpack"


def _storage(dtype: str) -> str:
    return "uint16" if dtype == "bfloat16" else dtype


def _contiguous_copy(x: Any):
    if hasattr(x, "contiguous") and hasattr(x, "clone"):  # torch
        return x.contiguous().clone()
    if hasattr(x, "copy"):  # cupy (copy() is C-contiguous)
        return x.copy()
    raise EincTypeError(f"cannot make a contiguous copy of a {type(x).__name__}")


def _to_tvm(x: Any, what: str, t, tvm_mod):
    """A TVM tensor viewing CUDA array ``x`` (copied only when it is not compact and aligned)."""
    if tvm_mod.is_tvm_tensor(x):
        tv = x
    else:
        if _kind(x) == "torch":  # DLPack refuses a conjugate bit and drops a negative one (-x read as x)
            x = x.resolve_conj().resolve_neg()
        try:
            tv = tvm_mod.from_dlpack(x)
        except Exception:  # noqa: BLE001 - strides or alignment: copy on the device
            try:
                tv = tvm_mod.from_dlpack(_contiguous_copy(x))
            except EincError:
                raise
            except Exception as e:  # noqa: BLE001
                raise EincTypeError(f"{what}: cannot take this {type(x).__name__} through DLPack "
                                    f"({str(e).strip().splitlines()[-1][:200]})") from None
    shape = tuple(int(s) for s in tv.shape)
    if shape != tuple(t.shape):
        raise ShapeMismatch(f"{what}: shape {shape} but the kernel was compiled for {tuple(t.shape)}")
    dt = str(tv.dtype)
    if t.dtype == "bfloat16" and dt == "bfloat16":
        tv = tv._create_view(tv.shape, "uint16")
        dt = "uint16"
    if dt != _storage(t.dtype):
        raise EincTypeError(f"{what}: dtype {dt} but the kernel was compiled for {t.dtype}; cast it first")
    if int(tv.__dlpack_device__()[0]) not in _CUDA_DEVICE_TYPES:
        raise EincTypeError(f"{what}: array is on {tv.device}, not a CUDA device")
    return tv


def call_device(named) -> int:
    """The CUDA device a call runs on: the one its CUDA arrays (``(name, array)`` pairs: operands,
    then ``out=`` arrays) are on, 0 when none is.  Arrays on two devices are an error naming both."""
    seen = None
    for what, x in named:
        if not is_cuda_array(x):
            continue
        dev = int(x.__dlpack_device__()[1])
        if seen is None:
            seen = (what, dev)
        elif dev != seen[1]:
            raise EincTypeError(f"{what} is on cuda:{dev} but {seen[0]} on cuda:{seen[1]}: a kernel call's "
                                "CUDA arrays must all be on one device")
    return 0 if seen is None else seen[1]


def _give(kind: str, tv, t):
    """Result tensor ``tv`` (TVM, on the GPU) as the caller's kind of array, zero-copy."""
    if kind == "tvm":
        return tv
    if kind == "torch":
        import torch

        r = torch.from_dlpack(tv)
        return r.view(torch.bfloat16) if t.dtype == "bfloat16" else r
    if kind == "cupy":
        import cupy

        return cupy.from_dlpack(tv)
    return tv


class _Owner:
    """The library of the first CUDA array of a call (torch or CuPy): its current stream, its
    allocator, and a way to wait for that stream.  ``None`` members: TVM's own."""

    def __init__(self, x: Any):
        self.kind = _kind(x) if x is not None else None
        self.x = x
        self.stream = None
        if self.kind == "torch":
            import torch

            self.stream = int(torch.cuda.current_stream(x.device).cuda_stream)
        elif self.kind == "cupy":
            import cupy

            self.stream = int(cupy.cuda.get_current_stream().ptr)

    def empty(self, shape, dtype: str):
        """A fresh result array from the library's allocator, or None (TVM allocates it)."""
        if self.kind == "torch":
            import torch

            tdt = getattr(torch, dtype, None)  # uint16/32/64 only in newer torch
            return None if tdt is None else torch.empty(tuple(shape), dtype=tdt, device=self.x.device)
        if self.kind == "cupy" and dtype != "bfloat16":  # CuPy has no bfloat16
            import cupy

            return cupy.empty(tuple(shape), dtype=np_dtype(dtype))
        return None

    def synchronize(self) -> None:
        """Wait for the stream the kernel ran on (before TVM copies a result to the host)."""
        if self.kind == "torch":
            import torch

            torch.cuda.current_stream(self.x.device).synchronize()
        elif self.kind == "cupy":
            import cupy

            cupy.cuda.get_current_stream().synchronize()


def call(kernel, arrays, out=None):
    """Run CUDA ``kernel`` (an ``einc.Kernel``) on ``arrays``; see the module docstring."""
    from einc.kernel import _Frame

    from . import _tvm

    single = len(kernel.out_types) == 1
    outs_user = None if out is None else ([out] if single and not isinstance(out, (list, tuple)) else list(out))
    if outs_user is not None and len(outs_user) != len(kernel.out_types):
        raise EincError(f"out: {len(kernel.out_types)} arrays expected, got {len(outs_user)}")
    dev_id = call_device([(kernel._name(i), x) for i, x in enumerate(arrays)] +
                         [(f"out[{j}]", o) for j, o in enumerate(outs_user or [])])
    if not _tvm.cuda_exists():
        raise Unsupported("this kernel was compiled for CUDA and no GPU is present here "
                          "(compile with target='llvm' to run on the CPU)")
    # the arrays' device: TVM's host code sets it from the first argument before each launch, and
    # loads the module there on first use
    dev = _tvm.cuda_device(dev_id)
    frame = _Frame()
    ins = []
    for i, x in enumerate(arrays):
        t = kernel.in_types[i]
        what = kernel._name(i)
        if is_cuda_array(x):
            ins.append(_to_tvm(x, what, t, _tvm))
        else:
            a = kernel._prepare_input(i, x, frame)  # checks shape/dtype, numpy storage view
            ins.append(_tvm.tensor_on(np.ascontiguousarray(a), dev))
    owner = _Owner(next((x for x in arrays if is_cuda_array(x)), None))  # results come back as its kind
    outs, copy_back, fresh = [], [], {}
    for j, t in enumerate(kernel.out_types):
        o = outs_user[j] if outs_user is not None else None
        if o is not None and is_cuda_array(o):
            outs.append(_to_tvm(o, f"out[{j}]", t, _tvm))
            copy_back.append(None)
            continue
        if o is not None and not isinstance(o, np.ndarray):
            raise EincTypeError(f"out[{j}]: expected a CUDA array or a numpy array, got {type(o).__name__}")
        if o is not None and (o.shape != t.shape or o.dtype != np_dtype(t.dtype)):
            raise ShapeMismatch(f"out[{j}]: {o.dtype}{list(o.shape)} but the result is {t.dtype}{list(t.shape)}")
        mine = owner.empty(t.shape, t.dtype) if o is None else None
        if mine is not None:  # the caller's library allocates; the result is that array itself
            outs.append(_to_tvm(mine, f"result {j}", t, _tvm))
            copy_back.append(None)
            fresh[j] = mine
            continue
        outs.append(_tvm.empty_on(t.shape, _storage(t.dtype), dev))
        copy_back.append(o)
    try:
        with _tvm.stream_scope(dev, owner.stream):
            kernel._fn(*ins, *outs)
    except Exception as e:  # noqa: BLE001 - arguments were checked; this is a CUDA runtime failure
        from einc.errors import CompileError

        raise CompileError(f"CUDA kernel call failed: {type(e).__name__}: "
                           f"{str(e).strip().splitlines()[-1][:300]}") from e
    if any(o is not None for o in copy_back):
        owner.synchronize()  # TVM copies to the host on the default stream
    res = []
    for j, (tv, o, t) in enumerate(zip(outs, copy_back, kernel.out_types)):
        if j in fresh:
            res.append(fresh[j])
            continue
        if outs_user is not None and o is None:
            res.append(outs_user[j])  # written in place on the device
            continue
        if o is not None:
            o[...] = tv.numpy().view(np_dtype(t.dtype)) if t.dtype == "bfloat16" else tv.numpy()
            res.append(o)
        elif owner.kind is not None:
            res.append(_give(owner.kind, tv, t))
        else:
            a = tv.numpy()
            res.append(frame.give_back(a.view(np_dtype(t.dtype)) if t.dtype == "bfloat16" else a))
    return res[0] if single else tuple(res)
