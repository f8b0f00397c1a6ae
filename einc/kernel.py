"""``einc.compile``: a reusable compiled einsum kernel, and ``einc.load`` for exported ones.

    k = einc.compile("ik,kj->ij", (512, 256), (256, 128))          # shapes, float32
    k = einc.compile("bik,bkj->bij", a, b)                          # or example arrays
    c = k(a, b)                                                     # numpy in, numpy out
    k.export("mm.so"); k2 = einc.load("mm.so")                     # + mm.so.json sidecar

A ``Kernel`` checks shapes and dtypes at call time (errors name the operand), takes numpy arrays and
any CPU DLPack producer, and returns numpy arrays for numpy inputs (torch tensors for torch inputs).
Copies: none for a C-contiguous array of the compiled dtype, at any address that is a multiple of
its item size (numpy's ``flags.aligned``, true of every array numpy allocates; CPU kernels declare
their parameters element-aligned, so the vector code uses unaligned moves: a plain numpy array that
is only 16- or 4-byte aligned runs in place, at the same speed).  An input is copied only when it is
not C-contiguous (a transposed or sliced view) or when it is a Python list/scalar to convert; an
array of another dtype is an error, not a silent cast.  ``out=`` arrays are written in place when
C-contiguous and writeable, else computed into a temporary and copied.  Kernels loaded from a
library exported before this rule (sidecar without ``"param_align": "element"``) still get 64-byte
aligned copies, as their code assumes.  Programs with a zero-size value never reach TVM:
their result is computed by ``ir.interp`` (empty or all-zero arrays).
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any

import numpy as np

from einc.errors import EincError, EincTypeError, ShapeMismatch, Unsupported, WriteError
from einc.fileio import atomic_path, atomic_write
from einc.ir.jsonform import program_from_json, program_to_json
from einc.ir.nodes import Einsum, Program
from einc.ir.types import dtype_name, np_dtype

ALIGN = 64
_BIG_OUT = 1 << 16  # results of at least this many bytes are allocated 64-byte aligned
#: sidecar/``Kernel`` marker: the library's parameters are element-aligned (any address is safe)
PARAM_ALIGN = "element"
SIDECAR_SUFFIX = ".json"
FORMAT = "einc-kernel/1"


# ------------------------------------------------------------------------------------------------
# program <-> JSON (the sidecar must not depend on the text printer)




def _program_text(prog: Program) -> str:
    try:
        from einc.ir.printer import print_program  # type: ignore

        return print_program(prog)
    except Exception:  # noqa: BLE001 - the printer is optional here
        lines = [f"input {v.name}: {v.type}" for v in prog.inputs]
        for op in prog.body:
            if isinstance(op, Einsum):
                lines.append(f"{op.result}: {op.type} = einsum(\"{op.subscripts}\", {', '.join(op.operands)})")
            else:
                lines.append(f"{op.result}: {op.type} = cast({op.operand})")
        lines.append("return " + ", ".join(prog.outputs))
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# arrays


def _addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]  # cheaper than a.ctypes.data


def aligned_empty(shape, dtype, align: int = ALIGN) -> np.ndarray:
    """An uninitialised C-contiguous numpy array whose data start on an ``align``-byte boundary."""
    dt = np.dtype(dtype)
    n = dt.itemsize
    for s in shape:
        n *= int(s)
    raw = np.empty(n + align, np.uint8)
    off = (-_addr(raw)) % align
    return raw[off:off + n].view(dt).reshape(shape)


def _is_aligned(a: np.ndarray) -> bool:
    return a.flags.c_contiguous and _addr(a) % ALIGN == 0


def _is_contiguous(a: np.ndarray) -> bool:
    # numpy's ``aligned``: the address is a multiple of the item size (only odd buffers fail it)
    return a.flags.c_contiguous and a.flags.aligned


def _storage_view(a: np.ndarray, dtype: str) -> np.ndarray:
    return a.view(np.uint16) if dtype == "bfloat16" else a


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` in the machine's byte order (a big-endian ``>f8`` array is converted, as numpy does)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


class _Unlocked:
    """Holds a read-only array and exposes its memory as writeable (``np.asarray(_Unlocked(a))``).

    TVM takes arrays through DLPack, which numpy refuses for read-only arrays (a memory map opened
    ``'r'``, ``np.frombuffer``); a compiled kernel never writes its inputs, so an alias is safe and
    saves a copy."""

    def __init__(self, a: np.ndarray):
        self.keep = a
        ai = dict(a.__array_interface__)
        ai["data"] = (ai["data"][0], False)
        self.__array_interface__ = ai


def _unlocked(a: np.ndarray) -> np.ndarray:
    return a if a.flags.writeable else np.asarray(_Unlocked(a))


class _Frame:
    """What kind of arrays the caller passed (to give back the same kind)."""

    def __init__(self):
        self.torch = None

    def to_numpy(self, x: Any, what: str) -> np.ndarray:
        if isinstance(x, np.ndarray):
            return x
        if hasattr(x, "__dlpack__") and not isinstance(x, (list, tuple)):
            if type(x).__module__.startswith("torch"):
                self.torch = self.torch or __import__("torch")
                if x.requires_grad:
                    raise EincTypeError(f"{what}: a torch tensor that requires grad; einc computes no "
                                        "gradients (pass x.detach())")
                # a lazily conjugated or negated tensor (t.conj(), t.conj().imag): DLPack refuses the
                # conjugate bit and drops the negative one (-x read as x); resolving copies only then
                x = x.resolve_conj().resolve_neg()
                if x.dtype == self.torch.bfloat16:  # numpy's DLPack import knows no bfloat16
                    return self.to_numpy(x.view(self.torch.int16), what).view(np_dtype("bfloat16"))
            try:
                return np.from_dlpack(x)
            except Exception as e:  # noqa: BLE001 - device, dtype or grad problems of the producer
                raise EincTypeError(f"{what}: cannot take this {type(x).__name__} through DLPack "
                                    f"({str(e).strip().splitlines()[0]}); pass a CPU array") from None
        return np.asarray(x)

    def give_back(self, arr):
        if self.torch is not None and isinstance(arr, np.ndarray):
            try:
                if arr.dtype == np_dtype("bfloat16"):
                    return self.torch.from_dlpack(arr.view(np.int16)).view(self.torch.bfloat16)
                return self.torch.from_dlpack(arr)
            except Exception:  # noqa: BLE001 - e.g. a dtype torch lacks: numpy is fine
                return arr
        return arr


# ------------------------------------------------------------------------------------------------


class Kernel:
    """A compiled program.  Call it like the einsum it came from: ``k(*arrays, out=None)``."""

    def __init__(self, program: Program, built=None, *, target: str | None = None, rt_mod=None,
                 subscripts: str | None = None, source_program: Program | None = None, pipeline: str | None = None,
                 param_align: str | None = "built"):
        self.program = program
        self.built = built
        self.subscripts = subscripts
        self.source_program = source_program or program
        self.pipeline = pipeline
        self.target = target or (built.target if built is not None else None)
        self._rt = rt_mod if rt_mod is not None else (built.rt_mod if built is not None else None)
        self._library: bytes | None = None  # the library's bytes, for a kernel loaded from one
        self._fn = self._rt["main"] if self._rt is not None else None
        self.in_types = [v.type for v in program.inputs]
        types = program.types()
        self.out_types = [types[o] for o in program.outputs]
        self.interpreted = self._fn is None
        # "element": the code takes any C-contiguous array in place; None (an old exported library):
        # it assumes 64-byte aligned data, so unaligned arrays are copied
        if param_align == "built":  # a fresh build says; a CUDA build has no alignment rule
            param_align = getattr(built, "param_align", None) if built is not None else PARAM_ALIGN
            if built is not None and _is_cuda_target(self.target):
                param_align = PARAM_ALIGN
        self.param_align = param_align
        self._usable = _is_contiguous if param_align == PARAM_ALIGN else _is_aligned
        self._perm = _permutation_of_input(program)
        # hot path: plain C-contiguous numpy arrays of the exact dtypes and shapes, no out=
        self._in_specs = [(np_dtype(t.dtype), t.shape) for t in self.in_types]
        self._out_specs = [(np_dtype(t.dtype), t.shape, t.dtype == "bfloat16") for t in self.out_types]
        self._fast = (self._fn is not None and self._perm is None and
                      not any(t.dtype == "bfloat16" for t in self.in_types))
        self._out_alloc = [(dt, shp, bf, np.dtype(dt).itemsize * int(np.prod(shp)) >= _BIG_OUT)
                           for dt, shp, bf in self._out_specs]
        self._bf_out = any(bf for _, _, bf in self._out_specs)
        self._cuda = not self.interpreted and _is_cuda_target(self.target)

    # -- calling ----------------------------------------------------------------------------------

    def _name(self, i: int) -> str:
        return f"operand {i} ({self.program.inputs[i].name})"

    def _check(self, i: int, a: np.ndarray) -> None:
        t = self.in_types[i]
        if a.dtype != np_dtype(t.dtype):
            raise EincTypeError(f"{self._name(i)}: dtype {a.dtype} but the kernel was compiled for {t.dtype}")
        if tuple(a.shape) != t.shape:
            raise ShapeMismatch(f"{self._name(i)}: shape {tuple(a.shape)} but the kernel was compiled for {t.shape}")

    def _prepare_input(self, i: int, x: Any, frame: _Frame) -> np.ndarray:
        t = self.in_types[i]
        a = self._host_array(i, x, frame)
        if self.interpreted:
            return a
        if not self._usable(a):
            b = aligned_empty(a.shape, a.dtype)
            b[...] = a
            a = b
        return _unlocked(_storage_view(a, t.dtype))

    def _host_array(self, i: int, x: Any, frame: _Frame) -> np.ndarray:
        """Operand ``i`` as a numpy array of the compiled dtype and shape (lists and scalars are
        converted; an array of another dtype is an error)."""
        t = self.in_types[i]
        a = _native(frame.to_numpy(x, self._name(i)))
        want = np_dtype(t.dtype)
        if a.dtype != want:
            if isinstance(x, np.ndarray) or hasattr(x, "__dlpack__") or a.ndim > 0 and not isinstance(x, (list, tuple)):
                raise EincTypeError(f"{self._name(i)}: dtype {a.dtype} but the kernel was compiled for {t.dtype}; "
                                    f"cast it (a.astype('{t.dtype}')) or compile for {a.dtype}")
            a = np.asarray(a, dtype=want)
        if tuple(a.shape) != t.shape:
            raise ShapeMismatch(f"{self._name(i)}: shape {tuple(a.shape)} but the kernel was compiled for {t.shape}")
        return a

    def _check_out(self, j: int, o: Any) -> None:
        t = self.out_types[j]
        if not isinstance(o, np.ndarray):
            raise EincTypeError(f"out[{j}]: expected a numpy array, got {type(o).__name__}")
        if o.shape != t.shape or o.dtype != np_dtype(t.dtype):
            raise ShapeMismatch(f"out[{j}]: {o.dtype}{list(o.shape)} but the result is {t.dtype}{list(t.shape)}")

    def _prepare_out(self, j: int, o: Any) -> tuple[np.ndarray, np.ndarray | None]:
        t = self.out_types[j]
        self._check_out(j, o)
        if self._usable(o) and o.flags.writeable:
            return o, None
        return aligned_empty(t.shape, np_dtype(t.dtype)), o

    def __call__(self, *arrays, out=None):
        n = len(self.in_types)
        if len(arrays) != n:
            raise EincError(f"kernel takes {n} operand{'s' * (n != 1)}, got {len(arrays)}")
        # --- cuda (gpu helper): device arrays in/out through DLPack, host arrays copied ---
        if self._cuda:
            from einc.lowering.gpu_arrays import call as _cuda_call

            return _cuda_call(self, arrays, out)
        # --- end cuda ---
        if out is None and self._fast:
            any_addr = self.param_align == PARAM_ALIGN
            for x, (dt, shp) in zip(arrays, self._in_specs):
                if type(x) is not np.ndarray or x.dtype != dt or x.shape != shp:
                    break
                f = x.flags
                if not f.c_contiguous or not f.writeable or not (f.aligned if any_addr else _addr(x) % ALIGN == 0):
                    break
            else:
                # small results: plain np.empty (aligned_empty costs ~4 us); large ones 64-byte aligned
                # (vector stores that never straddle a cache line)
                outs = [aligned_empty(shp, dt) if big else np.empty(shp, dt) for dt, shp, _, big in self._out_alloc]
                try:
                    if self._bf_out:
                        self._fn(*arrays, *[o.view(np.uint16) if bf else o
                                            for o, (_, _, bf) in zip(outs, self._out_specs)])
                    else:
                        self._fn(*arrays, *outs)
                except Exception as e:  # noqa: BLE001 - arguments were checked; a TVM runtime failure
                    from einc.errors import CompileError

                    raise CompileError(f"kernel call failed at run time: {type(e).__name__}: "
                                       f"{str(e).strip().splitlines()[-1][:300]}") from e
                return outs[0] if len(outs) == 1 else tuple(outs)
        frame = _Frame()
        if self._perm is not None and out is None:  # like numpy.einsum: a permutation is a view
            i, perm = self._perm
            a = frame.to_numpy(arrays[i], self._name(i))
            self._check(i, a)
            return frame.give_back(np.transpose(a, perm))
        ins = [self._prepare_input(i, x, frame) for i, x in enumerate(arrays)]
        single = len(self.out_types) == 1
        outs_user = None if out is None else ([out] if single and not isinstance(out, (list, tuple)) else list(out))
        if outs_user is not None and len(outs_user) != len(self.out_types):
            raise EincError(f"out: {len(self.out_types)} arrays expected, got {len(outs_user)}")
        if self.interpreted:
            from einc.ir.interp import run

            res = run(self.program, *ins)
            if outs_user is not None:
                for j, (o, r) in enumerate(zip(outs_user, res)):
                    self._prepare_out(j, o)
                    o[...] = r
                res = outs_user
        else:
            pairs = [self._prepare_out(j, o) for j, o in enumerate(outs_user)] if outs_user is not None else \
                [(aligned_empty(t.shape, np_dtype(t.dtype)), None) for t in self.out_types]
            try:
                self._fn(*ins, *[_storage_view(p[0], t.dtype) for p, t in zip(pairs, self.out_types)])
            except Exception as e:  # noqa: BLE001 - arguments were checked; this is a TVM runtime failure
                from einc.errors import CompileError

                raise CompileError(f"kernel call failed at run time: {type(e).__name__}: "
                                   f"{str(e).strip().splitlines()[-1][:300]}") from e
            res = []
            for buf, user in pairs:
                if user is not None:
                    user[...] = buf
                    buf = user
                res.append(buf)
        res = [frame.give_back(r) for r in res]
        return res[0] if single else tuple(res)

    # -- introspection ----------------------------------------------------------------------------

    def explain(self) -> str:
        lines = []
        if self.subscripts:
            lines.append(f"einsum {self.subscripts!r}")
        lines.append(f"target  {self.target or 'interp'}")
        if not self.interpreted and not self._cuda:
            from einc.lowering import threads

            n, why = threads.current()
            lines.append(f"threads {n} ({why})")
        if self.pipeline:
            lines.append(f"pipeline {self.pipeline}")
        lines.append("program:")
        lines += ["  " + ln for ln in _program_text(self.program).splitlines()]
        if self.interpreted:
            lines.append("runs in the numpy interpreter (zero-size values: nothing to compile)")
        elif self.built is not None:
            lines.append("schedules:")
            for blk, cls, desc in self.built.plan:
                lines.append(f"  {blk:<16} {cls:<12} {desc}")
            lines.append("timings: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in self.built.timings.items()))
        else:
            lines.append("loaded from a shared library")
        return "\n".join(lines)

    def source(self, kind: str = "ir") -> str:
        """The program after passes (``ir``), the scheduled TensorIR (``tir``) or, for a CUDA
        kernel, the CUDA C TVM generated (``cuda``)."""
        if kind == "ir":
            return _program_text(self.program)
        if kind == "tir":
            if self.built is None:
                raise Unsupported("no TIR for this kernel (interpreted, or loaded from a library)")
            if getattr(self.built, "mod", None) is None and getattr(self.built, "plan", None) is not None \
                    and self.target and not _is_cuda_target(self.target):
                # loaded from the disk cache: schedule again (no codegen) to show the TIR
                from einc.lowering.build import schedule_only

                self.built.mod = schedule_only(self.program, self.target)
            return self.built.tir()
        if kind == "cuda":
            cuda = [m for m in getattr(getattr(self.built, "rt_mod", None), "imports", []) if m.kind == "cuda"]
            if not cuda:
                raise Unsupported("no CUDA C for this kernel (compile it with target='cuda')")
            return cuda[0].inspect_source()
        raise EincError(f"source kind {kind!r}: expected 'ir', 'tir' or 'cuda'")

    def __repr__(self):
        sig = ", ".join(str(t) for t in self.in_types)
        return f"<einc.Kernel {self.subscripts or 'program'} ({sig}) -> {', '.join(map(str, self.out_types))}>"

    # -- export / load ----------------------------------------------------------------------------

    def metadata(self) -> dict:
        from einc.lowering._tvm import VERSION

        return {"format": FORMAT, "subscripts": self.subscripts, "program": program_to_json(self.program),
                "program_text": _program_text(self.program), "target": self.target, "tvm_version": VERSION,
                "pipeline": self.pipeline, "interpreted": self.interpreted, "param_align": self.param_align}

    def export(self, path: str | os.PathLike) -> str:
        """Write the kernel as a shared library at ``path`` and its metadata at ``path + '.json'``.

        The metadata records the library's size and SHA-256, which ``load`` checks before handing
        the file to the dynamic loader (a truncated library would crash the process there)."""
        path = os.fspath(path)
        lib = getattr(self.built, "library", None) or self._library  # cached or loaded: copy its bytes
        meta = self.metadata()
        if not self.interpreted and lib:
            atomic_write(path, lib)
        elif not self.interpreted:
            try:
                with atomic_path(path) as tmp:
                    self._rt.export_library(tmp)
            except WriteError:
                raise
            except Exception as e:  # noqa: BLE001
                from einc.errors import CompileError

                raise CompileError(f"export to {path} failed: {type(e).__name__}: {str(e).strip()[:300]}") from e
        if not self.interpreted:
            import hashlib

            with open(path, "rb") as f:
                data = f.read()
            meta.update(library_bytes=len(data), library_sha256=hashlib.sha256(data).hexdigest())
        atomic_write(path + SIDECAR_SUFFIX, json.dumps(meta, indent=1))
        return path


class ComplexKernel(Kernel):
    """A kernel of a program with complex values, compiled over its real form (``einc.ir.realify``).

    Complex operands go in as real views of their (re, im) parts and complex results come back as
    complex views of real ones: no copies for C-contiguous numpy arrays or torch tensors (CPU or CUDA,
    ``torch.view_as_real``).  ``inner`` is the real program's ``Kernel``; the constants the real form
    needs are passed after the operands."""

    def __init__(self, form, inner: Kernel):
        self.form, self.inner = form, inner
        self.program = form.source
        self.built, self.target, self._rt = inner.built, inner.target, inner._rt
        self.subscripts, self.source_program, self.pipeline = inner.subscripts, inner.source_program, inner.pipeline
        self.in_types = [v.type for v in form.source.inputs]
        types = form.source.types()
        self.out_types = [types[o] for o in form.source.outputs]
        self.interpreted, self.param_align, self._cuda = inner.interpreted, inner.param_align, inner._cuda
        self._fn, self._fast = None, False  # every call converts (dispatch.FastCall too)
        self._perm = _permutation_of_input(form.source)  # (a view of the complex operand, as numpy gives)
        self._consts = form.constant_arrays()

    @property
    def _library(self):
        return self.inner._library

    def _check_tensor(self, i: int, x: Any) -> bool:
        """Whether operand ``i`` is a torch tensor (then of the compiled dtype and shape)."""
        if not (type(x).__module__.startswith("torch") and hasattr(x, "resolve_conj")):
            return False
        import torch

        t = self.in_types[i]
        if x.dtype != getattr(torch, t.dtype) or tuple(x.shape) != t.shape:
            raise EincTypeError(f"{self._name(i)}: {x.dtype} {list(x.shape)} but the kernel was compiled "
                                f"for {t.dtype} {list(t.shape)}")
        return True

    def _parts(self, i: int, x: Any):
        """Complex operand ``i`` as the real array of its parts."""
        from einc.ir.realify import as_real

        if self._check_tensor(i, x):
            import torch

            # a lazily conjugated or negated tensor has no real view of its value (DLPack would hand
            # over its memory, the value before the conjugation or negation)
            return torch.view_as_real(x.resolve_conj().resolve_neg())
        from einc.lowering.gpu_arrays import is_cuda_array

        if is_cuda_array(x):
            raise Unsupported(f"{self._name(i)}: complex CUDA arrays go in as torch tensors or numpy arrays, "
                              f"not {type(x).__name__}")
        return as_real(self._host_array(i, x, _Frame()))

    def __call__(self, *arrays, out=None):
        from einc.ir.realify import as_complex, as_real

        n = len(self.in_types)
        if len(arrays) != n:
            raise EincError(f"kernel takes {n} operand{'s' * (n != 1)}, got {len(arrays)}")
        if self._perm is not None and out is None:  # like numpy.einsum: a permutation is a view
            i, perm = self._perm
            x = arrays[i]
            if self._check_tensor(i, x):
                return x.permute(*perm)  # (a lazy conjugation stays one)
            return np.transpose(self._host_array(i, x, _Frame()), perm)
        cin, cout = self.form.complex_inputs, self.form.complex_outputs
        ins = [self._parts(i, x) if cx else x for i, (x, cx) in enumerate(zip(arrays, cin))] + self._consts
        single = len(self.out_types) == 1
        users = None if out is None else ([out] if single and not isinstance(out, (list, tuple)) else list(out))
        if users is not None and len(users) != len(self.out_types):
            raise EincError(f"out: {len(self.out_types)} arrays expected, got {len(users)}")
        outs = None
        if users is not None:
            outs = []
            for j, (o, cx) in enumerate(zip(users, cout)):
                self._check_out(j, o)
                outs.append(as_real(o) if cx and o.flags.c_contiguous and o.flags.writeable else
                            np.empty(o.shape + (2,), o.real.dtype) if cx else o)
        res = self.inner(*ins, out=outs)
        res = [res] if single else list(res)
        back = []
        for j, (r, cx) in enumerate(zip(res, cout)):
            if users is not None and cx:
                if not np.shares_memory(users[j], r):
                    users[j][...] = as_complex(r, self.out_types[j].dtype)
                r = users[j]
            elif cx and type(r).__module__.startswith("torch"):
                import torch

                r = torch.view_as_complex(r.contiguous())
            elif cx:
                r = as_complex(r, self.out_types[j].dtype)
            back.append(r)
        return back[0] if single else tuple(back)

    def explain(self) -> str:
        consts = ", ".join(name for name, _ in self.form.constants)
        note = "program (complex values as their (re, im) parts" + (f"; constants {consts}" if consts else "") + "):"
        return "\n".join(note if ln == "program:" else ln for ln in self.inner.explain().splitlines())

    def source(self, kind: str = "ir") -> str:
        if kind == "ir":
            return (f"# complex program\n{_program_text(self.program)}\n"
                    f"# computed over real and imaginary parts (einc.ir.realify) as\n{self.inner.source('ir')}")
        return self.inner.source(kind)

    def metadata(self) -> dict:
        meta = self.inner.metadata()
        meta.update(subscripts=self.subscripts, pipeline=self.pipeline,
                    complex={"program": program_to_json(self.program),
                             "constants": [list(c) for c in self.form.constants]})
        return meta


def kernel_for(prog: Program, build, *, subscripts: str | None = None, source_program: Program | None = None,
               pipeline: str | None = None) -> Kernel:
    """The ``Kernel`` of ``prog`` given ``build(program) -> Built``: a program with complex values is
    built over its real form (``ComplexKernel``)."""
    from einc.ir.realify import has_complex, realify

    real = realify(prog) if has_complex(prog) else None
    kprog = prog if real is None else real.program
    k = Kernel(kprog, build(kprog), subscripts=subscripts, source_program=source_program or prog, pipeline=pipeline)
    return k if real is None else ComplexKernel(real, k)


def _complex_form(meta: dict, prog: Program):
    """The ``RealForm`` a sidecar records for a complex kernel (``prog``: its real program)."""
    from einc.errors import EincError
    from einc.ir.realify import CONSTANTS, RealForm, has_complex, realify
    from einc.ir.verify import verify

    src = program_from_json(meta["program"])
    consts = tuple((str(name), str(kind)) for name, kind in meta["constants"])
    if any(kind not in CONSTANTS for _, kind in consts):
        raise ValueError(f"unknown constants {[kind for _, kind in consts]}")
    # the library computes ``prog``: the complex program must be the one whose real form it is (its
    # types decide how operands go in and results come out)
    try:
        form = realify(verify(src))
    except EincError as e:
        raise ValueError(f"the complex program is not valid: {e}") from None
    if not has_complex(src) or form.constants != consts or \
            program_to_json(form.program) != program_to_json(prog):
        raise ValueError("the complex program does not match the real one")
    return RealForm(src, prog, consts)


def _check_library(path: str, data: bytes, meta: dict) -> None:
    """Refuse a library the dynamic loader would crash on: a size or SHA-256 that differs from the
    sidecar's, or (for a sidecar older than those fields) an ELF file whose headers point past its end."""
    import hashlib

    from einc.errors import CacheError

    want = meta.get("library_sha256")
    if want is not None:
        if len(data) != meta.get("library_bytes", len(data)) or hashlib.sha256(data).hexdigest() != want:
            raise CacheError(f"{path}: the library is not the one exported with {path + SIDECAR_SUFFIX} "
                             f"({len(data)} bytes, expected {meta.get('library_bytes')}; truncated or "
                             "changed since): export it again")
        return
    if data[:4] != b"\x7fELF":
        return  # not ELF (another platform's format): the loader's own error is a clean one
    import struct

    ok = len(data) >= 64 and data[4] == 2  # 64-bit
    if ok:
        end = "<" if data[5] == 1 else ">"
        phoff, shoff = struct.unpack_from(end + "QQ", data, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(end + "HHHH", data, 54)
        ok = phoff + phentsize * phnum <= len(data) and shoff + shentsize * shnum <= len(data)
        for i in range(phnum if ok else 0):
            p_offset, _, _, p_filesz = struct.unpack_from(end + "QQQQ", data, phoff + i * phentsize + 8)
            ok = ok and p_offset + p_filesz <= len(data)
    if not ok:
        raise CacheError(f"{path}: not a complete shared library ({len(data)} bytes; truncated?): export it again")


def _permutation_of_input(prog: Program):
    """(input index, axes) when the program's one output is an axis permutation of an input."""
    if len(prog.body) != 1 or len(prog.outputs) != 1:
        return None
    op = prog.body[0]
    if not isinstance(op, Einsum) or op.arity != 1 or op.result != prog.outputs[0]:
        return None
    labs = op.inputs[0]
    names = [v.name for v in prog.inputs]
    if op.operands[0] not in names or len(set(labs)) != len(labs) or sorted(labs) != sorted(op.output):
        return None
    if prog.type_of(op.operands[0]).dtype != op.type.dtype:
        return None
    return names.index(op.operands[0]), tuple(labs.index(c) for c in op.output)


# --- cuda (gpu helper) ---
@functools.lru_cache(maxsize=64)  # (memoised by the CPU side: called on every kernel call)
def _is_cuda_target(target) -> bool:
    if not target:
        return False
    try:
        return json.loads(target).get("kind") == "cuda"
    except (TypeError, ValueError, AttributeError):
        return False
# --- end cuda ---


def load(path: str | os.PathLike) -> Kernel:
    """A ``Kernel`` from a library written by ``Kernel.export`` (needs its ``.json`` sidecar)."""
    from einc.errors import CacheError

    path = os.fspath(path)
    try:
        with open(path + SIDECAR_SUFFIX) as f:
            meta = json.load(f)
        prog = program_from_json(meta["program"])
        form = _complex_form(meta["complex"], prog) if "complex" in meta else None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CacheError(f"{path}: cannot read the kernel metadata {path + SIDECAR_SUFFIX}: {e}") from None
    if meta.get("interpreted"):
        return Kernel(prog, subscripts=meta.get("subscripts"), pipeline=meta.get("pipeline"))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CacheError(f"{path}: cannot read the library: {e.strerror or e}") from None
    _check_library(path, data, meta)
    from einc.lowering._tvm import load_module

    try:
        rt = load_module(path)
    except Exception as e:  # noqa: BLE001
        raise CacheError(f"{path}: TVM cannot load this library: {str(e).strip().splitlines()[-1][:300]}") from None
    k = Kernel(prog, target=meta.get("target"), rt_mod=rt, subscripts=meta.get("subscripts"),
               pipeline=meta.get("pipeline"), param_align=meta.get("param_align"))
    k._library = data  # export() copies these bytes (a loaded module cannot export itself)
    return k if form is None else ComplexKernel(form, k)


# ------------------------------------------------------------------------------------------------
# compile


def _shape_and_dtype(x: Any, dtype, i: int):
    if isinstance(x, (tuple, list)) and all(isinstance(s, (int, np.integer)) for s in x):
        return tuple(int(s) for s in x), dtype_name(dtype or "float32")
    if isinstance(x, (int, np.integer)):
        return (int(x),), dtype_name(dtype or "float32")
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        try:
            dt = dtype_name(dtype) if dtype is not None else dtype_name(np.dtype(str(x.dtype).replace("torch.", "")))
        except (TypeError, ValueError, EincTypeError):
            dt = dtype_name(_Frame().to_numpy(x, f"operand {i}").dtype)
        return tuple(int(s) for s in x.shape), dt
    a = np.asarray(x)
    return a.shape, dtype_name(dtype or a.dtype)


def check_pipeline_arg(pipeline) -> None:
    if pipeline is not None and not isinstance(pipeline, str):
        raise EincTypeError(f"pipeline= takes a pipeline string like 'canonicalize,decompose' (or 'none'), "
                            f"not {type(pipeline).__name__}")


def _dtypes_for(dtype, n: int):
    if dtype is None or isinstance(dtype, (str, np.dtype, type)):
        return [dtype] * n
    ds = list(dtype)
    if len(ds) != n:
        raise EincError(f"dtype: {n} operands but {len(ds)} dtypes")
    return ds


def _parse(subscripts: str, shapes, dtypes) -> Program:
    try:
        from einc.frontend.subscripts import parse_subscripts
    except ImportError:
        parse_subscripts = None
    if parse_subscripts is not None:
        return parse_subscripts(subscripts, shapes).to_program(dtypes)
    # fallback until the frontend lands: explicit or implicit output, no ellipsis
    from einc.errors import ParseError
    from einc.ir import TensorType, single_einsum

    s = subscripts.replace(" ", "")
    if "." in s:
        raise ParseError("ellipsis needs einc.frontend")
    if "->" not in s:
        labs = s.replace(",", "")
        s = s + "->" + "".join(sorted(c for c in set(labs) if labs.count(c) == 1))
    return single_einsum(s, [TensorType(sh, dt) for sh, dt in zip(shapes, dtypes)])


def pipeline_for(optimize="auto", pipeline: str | None = None) -> str | None:
    """The pass pipeline string for numpy's ``optimize`` argument (an explicit ``pipeline`` wins).

    ``"auto"``/``True``: the default pipeline; an optimizer name (``"greedy"``, ``"optimal"``, ``"dp"``...)
    or an explicit path (``["einsum_path", (0, 1), (0, 1)]``) sets ``decompose{path=...}``; ``False``
    keeps n-ary einsums whole (no ``decompose``).
    """
    if pipeline is not None:
        return pipeline
    try:
        from einc.ir import passes as P
    except ImportError:
        return None
    spec = getattr(P, "DEFAULT", None)
    if not isinstance(spec, str):
        return None
    stages = [st.strip() for st in _split_top(spec)]
    if optimize is False:
        stages = [st for st in stages if not st.startswith("decompose")]
    elif optimize not in (True, None, "auto"):
        if isinstance(optimize, (list, tuple)):
            from einc.ir.passes.decompose import path_option

            steps = [st for st in optimize if not isinstance(st, str)]
            path = path_option(steps)
        else:
            path = str(optimize)
        stages = [f"decompose{{path={path}}}" if st.startswith("decompose") else st for st in stages]
    return ",".join(stages)


def _split_top(spec: str) -> list[str]:
    """Split a pipeline string at the commas outside ``{...}``."""
    out, depth, cur = [], 0, ""
    for ch in spec:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def _run_pipeline(prog: Program, optimize, pipeline):
    spec = pipeline_for(optimize, pipeline)
    if spec is None:
        return prog, None
    from einc.ir import passes as P

    return P.run_pipeline(prog, spec), spec


def compile_program(prog: Program, target="llvm", *, subscripts: str | None = None,
                    source_program: Program | None = None, pipeline: str | None = None,
                    schedule: bool = True, tune: int = 0, tune_dir: str | None = None,
                    cache: bool = True) -> Kernel:
    """A ``Kernel`` for an IR program as it is (no passes run here).

    ``tune=N`` tunes with MetaSchedule (N trials, database kept in ``tune_dir``); see
    ``einc.lowering.build.build``.  ``cache=True`` goes through the kernel cache
    (``einc.lowering.cache.build_cached``: in memory, then ``$EINC_CACHE_DIR``), so compiling the
    same program again, in this process or another, loads the library instead of building it.
    """
    from einc.ir.verify import verify

    verify(prog)
    from einc.lowering.lower import has_zero_size

    if has_zero_size(prog):
        return Kernel(prog, subscripts=subscripts, source_program=source_program, pipeline=pipeline)

    def build(p: Program):
        if cache:
            from einc.lowering.cache import build_cached

            return build_cached(p, target, schedule=schedule, tune=tune, tune_dir=tune_dir)[0]
        from einc.lowering.build import build

        return build(p, target, schedule=schedule, tune=tune, tune_dir=tune_dir)

    return kernel_for(prog, build, subscripts=subscripts, source_program=source_program, pipeline=pipeline)


def compile(subscripts: str, *shapes_or_arrays, dtype=None, target="llvm", optimize="auto",
            pipeline: str | None = None, tune: int = 0, tune_dir: str | None = None,
            cache: bool = True) -> Kernel:  # noqa: A001
    """Compile ``subscripts`` for operands of these shapes (float32 unless ``dtype``) or like these arrays.

    ``cache=False`` always builds afresh (see ``compile_program``)."""
    if not isinstance(subscripts, str):
        raise EincTypeError(f"subscripts must be a string, got {type(subscripts).__name__}")
    check_pipeline_arg(pipeline)
    dts = _dtypes_for(dtype, len(shapes_or_arrays))
    sd = [_shape_and_dtype(x, d, i) for i, (x, d) in enumerate(zip(shapes_or_arrays, dts))]
    prog0 = _parse(subscripts, [s for s, _ in sd], [d for _, d in sd])
    prog, spec = _run_pipeline(prog0, optimize, pipeline)
    return compile_program(prog, target, subscripts=subscripts, source_program=prog0, pipeline=spec,
                           tune=tune, tune_dir=tune_dir, cache=cache)


__all__ = ["Kernel", "ComplexKernel", "kernel_for", "compile", "compile_program", "load", "aligned_empty", "program_to_json", "program_from_json"]
