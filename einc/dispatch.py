"""Where a program runs: the numpy interpreter, or a compiled kernel for a target.

``execute(prog, arrays, target)`` is where ``einc.einsum`` hands a verified program; the
default-target policy lives here.  ``einsum_call`` is the same with a per-call-signature memo, so a
hot call neither re-parses its subscripts nor re-hashes its program.

The policy (what ``einc.einsum`` does)
--------------------------------------

``target="interp"`` (or ``"numpy"``)
    Always the interpreter: one ``numpy.einsum`` per step, numpy's exact semantics.

``target="llvm"`` (``"cpu"``, a target dict or JSON string), or ``EINC_TARGET`` set when
``target`` is None
    Always a compiled kernel, from the kernel cache (memory, then disk) or compiled and cached.
    Complex values are computed over their real and imaginary parts (``einc.ir.realify``).
    ``EINC_TARGET=interp`` forces the interpreter the same way.

``target=None`` (the default): a drop-in ``numpy.einsum`` that never waits on a compile for a
call that cannot repay it, and never changes the result's dtype or meaning:

1. zero-size operands, and complex steps other than GEMM-like contractions (numpy's complex loops
   beat their real and imaginary parts there): the interpreter, always.
2. a call whose numpy time is under ``FLOOR_S`` (predicted from its FLOPs and bytes, and
   checked again against the measured mean before compiling): the interpreter, always.  Below this a kernel call's fixed cost (argument checks,
   the packed call, output allocation) eats what compiled code gains.
3. otherwise, a kernel this process already holds for the exact program and host target is used,
   and so is one in the disk cache when TVM is already loaded in the process (looking the key up
   needs TVM to name the host target).
4. otherwise the interpreter runs, and the time spent interpreting this call signature is added
   up.  Once that sum (plus the next call's predicted time) reaches what getting a kernel costs
   (``COMPILE_S`` to build and export one, plus ``IMPORT_S`` the first time TVM is imported), the
   kernel is built (or loaded from disk) and serves every later call.  This is the ski-rental rule:
   a signature never spends more than about twice what the better choice in hindsight would have,
   one huge call compiles at once, and a loop of mid-size calls compiles after a few iterations.
5. a build that fails (``Unsupported``, ``CompileError``) sends that signature back to the
   interpreter for good; a ``CompileError`` also warns once, since it is an einc bug.

The constants are measured (``python bench/cpu_suite.py --overhead``, numbers beside them below)
and can be overridden with ``EINC_FLOOR_S``, ``EINC_COMPILE_S``, ``EINC_IMPORT_S`` (seconds).
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from typing import Any, Callable

import numpy as np

from einc.ir import Program
from einc.ir.nodes import Einsum
from einc.kernel import aligned_empty

INTERP_TARGETS = ("interp", "numpy")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# Measured with `python -m einc.bench.cpu_suite --overhead --threads 2` on an idle 16-core Xeon
# (TVM 0.27; the 2-core dev machine agrees within its noise):
#   numpy.einsum(optimize=False) vs a cached kernel through this module, matmul n x n (us):
#     n=32: 10 vs 27;  n=48: 38 vs 29;  n=64: 63 vs 30;  n=128: 313 vs 58
#     -> a kernel starts to win once numpy needs ~35 us: FLOOR_S = 40 us
#   cold build of a 2-operand einsum in a fresh process: 0.27 s + export 0.07 s; the 5-operand
#     ao_to_mo case 0.25-0.65 s  -> COMPILE_S = 0.5 s
#   first import of TVM: 0.8 s alone, 2-8 s when torch is installed (tvm_ffi imports it)  -> IMPORT_S = 3 s
FLOOR_S = _env_float("EINC_FLOOR_S", 40e-6)
COMPILE_S = _env_float("EINC_COMPILE_S", 0.5)
IMPORT_S = _env_float("EINC_IMPORT_S", 3.0)
#: numpy.einsum(optimize=False) throughput used to predict a call's time before it is measured:
#: multiply-adds per second (its C loops, no BLAS) and bytes touched per second
NUMPY_MACS_PER_S = 5.0e9
NUMPY_BYTES_PER_S = 20.0e9


def predict_numpy_s(prog: Program) -> float:
    """Predicted time of ``ir.interp`` on ``prog``: per step, multiply-adds and bytes over rates."""
    types = prog.types()
    total = 0.0
    for op in prog.body:
        out_t = op.type
        if isinstance(op, Einsum):
            sizes: dict[str, int] = {}
            for labs, o in zip(op.inputs, op.operands):
                for lab, n in zip(labs, types[o].shape):
                    sizes[lab] = max(sizes.get(lab, 1), n)
            macs = math.prod(sizes.values()) * max(1, op.arity - 1) if sizes else 1
            nbytes = sum(types[o].size * _itemsize(types[o].dtype) for o in op.operands)
        else:
            macs, nbytes = out_t.size, types[op.operand].size * _itemsize(types[op.operand].dtype)
        nbytes += out_t.size * _itemsize(out_t.dtype)
        total += 3e-6 + macs / NUMPY_MACS_PER_S + nbytes / NUMPY_BYTES_PER_S
    return total


def _itemsize(dtype: str) -> int:
    if dtype == "bool":
        return 1
    digits = "".join(c for c in dtype if c.isdigit())
    return max(1, int(digits or 64) // 8)


def slow_complex(prog: Program) -> str | None:
    """A complex step numpy runs faster than einc's real form of it (``einc.ir.realify.slow_step``)."""
    from einc.ir.realify import has_complex, slow_step

    return slow_step(prog) if has_complex(prog) else None


def _has_zero_size(prog: Program) -> bool:
    return any(t.size == 0 for t in prog.types().values())


# ------------------------------------------------------------------------------------------------
# targets


def resolve_request(target) -> tuple[str, Any]:
    """``("interp", None)``, ``("auto", None)`` or ``("compile", target)`` for a user's ``target``."""
    if target is None:
        env = os.environ.get("EINC_TARGET", "").strip()
        if not env:
            return "auto", None
        target = env
    if isinstance(target, str) and target.strip().lower() in INTERP_TARGETS:
        return "interp", None
    if isinstance(target, str) and target.strip().lower() == "auto":
        return "auto", None
    return "compile", target


def _tvm_loaded() -> bool:
    return "einc.lowering._tvm" in sys.modules


def get_kernel(prog: Program, target=None):
    """``(Kernel, origin)`` for ``prog`` on ``target`` through the kernel cache.

    origin is "memory", "disk" or "built"; zero-size programs get an interpreted Kernel ("interp").
    """
    from einc.kernel import Kernel, kernel_for
    from einc.lowering.lower import has_zero_size

    if has_zero_size(prog):
        return Kernel(prog), "interp"
    from einc.lowering.cache import build_cached

    origin = None

    def build(p: Program):
        nonlocal origin
        built, origin = build_cached(p, target)
        return built

    k = kernel_for(kernel_program(prog), build, source_program=prog)
    return k, origin


def kernel_program(prog: Program) -> Program:
    """The program a kernel is built from: ``prog``, with n-ary einsums split into pairs.

    ``numpy.einsum(optimize=False)`` (and so ``ir.interp``) evaluates an n-operand einsum as one loop
    nest over every label; a kernel of that nest is as slow asymptotically.  Splitting along the
    auto-chosen path (``einc.ir.passes.DEFAULT``) changes only the order of floating-point sums.
    Programs whose einsums have at most two operands are returned unchanged.
    """
    if all(not isinstance(op, Einsum) or op.arity <= 2 for op in prog.body):
        return prog
    from einc.ir.passes import DEFAULT, run_pipeline

    return run_pipeline(prog, DEFAULT)


def cached_kernel(prog: Program, target=None):
    """The kernel for ``prog`` if memory or the disk cache already has it (no compile), else None."""
    from einc.ir.realify import has_complex, realify
    from einc.lowering import cache as C

    kprog = kernel_program(prog)
    if has_complex(kprog):
        kprog = realify(kprog).program
    cache = C.default_cache()
    key = C.cache_key(kprog, C.resolve_target(target), schedule=True)
    if not cache.contains(key):
        return None
    return get_kernel(prog, target)[0]


class FastCall:
    """A ``Kernel`` called on arrays whose shapes and dtypes the plan already fixed.

    ``Kernel.__call__`` checks every argument (a public entry point must); a plan is keyed by the
    shapes and dtypes, so here only what can still differ is checked (contiguity, 64-byte
    alignment, dtype for ``execute`` callers) and anything else takes ``Kernel.__call__``'s path.
    """

    __slots__ = ("kernel", "fn", "ins", "outs")

    def __init__(self, kernel):
        from einc.ir.types import np_dtype

        self.kernel = kernel
        # a CUDA kernel takes device arrays: numpy goes through Kernel.__call__ (copies, or a clear
        # error without a GPU), never straight to the CUDA function
        self.fn = None if kernel.interpreted or kernel._cuda else kernel._fn
        self.ins = [(t.shape, np_dtype(t.dtype), t.dtype == "bfloat16") for t in kernel.in_types]
        self.outs = [(t.shape, np_dtype(t.dtype), t.dtype == "bfloat16") for t in kernel.out_types]

    def __call__(self, arrays) -> list[np.ndarray]:
        fn = self.fn
        if fn is None or len(arrays) != len(self.ins):
            return self._slow(arrays)
        args = []
        for a, (shape, dt, bf) in zip(arrays, self.ins):
            if type(a) is not np.ndarray or a.dtype != dt or a.shape != shape or not a.flags.writeable:
                return self._slow(arrays)  # (read-only arrays: DLPack refuses them, the Kernel aliases them)
            if not a.flags.c_contiguous or a.__array_interface__["data"][0] % 64:
                b = aligned_empty(shape, dt)
                b[...] = a
                a = b
            args.append(a.view(np.uint16) if bf else a)
        res = [aligned_empty(shape, dt) for shape, dt, _ in self.outs]
        for r, (_, _, bf) in zip(res, self.outs):
            args.append(r.view(np.uint16) if bf else r)
        fn(*args)
        return res

    def _slow(self, arrays):
        res = self.kernel(*arrays)
        return list(res) if isinstance(res, tuple) else [res]


# ------------------------------------------------------------------------------------------------
# per-signature state


class Plan:
    """What one call signature does; ``__call__(arrays) -> list of outputs``.

    ``mode``: "interp" (for good), "kernel", or "auto" (interpreting while counting time).
    """

    __slots__ = ("prog", "target", "mode", "kernel", "spent_s", "predicted_s", "calls", "reason", "origin")

    def __init__(self, prog: Program, target=None):
        self.prog = prog
        self.kernel = None
        self.spent_s = 0.0
        self.calls = 0
        self.origin = None
        request, self.target = resolve_request(target)
        self.predicted_s = predict_numpy_s(prog)
        if request == "interp":
            self.mode, self.reason = "interp", "target=interp"
        elif request == "compile":
            self._get_kernel(strict=True)
            self.reason = f"target {self.target!r} forces compilation"
        elif _has_zero_size(prog):
            self.mode, self.reason = "interp", "zero-size operand: nothing to compile"
        elif slow := slow_complex(prog):
            self.mode, self.reason = "interp", (f"{slow}: a complex step that is not a GEMM runs faster in "
                                                "numpy than as its real and imaginary parts")
        elif self.predicted_s < FLOOR_S:
            self.mode, self.reason = "interp", (f"predicted numpy time {self.predicted_s * 1e6:.0f} us < "
                                                f"floor {FLOOR_S * 1e6:.0f} us: a kernel cannot win")
        else:
            self.mode, self.reason = "auto", "interpreting until the time spent repays a compile"
            if _tvm_loaded():
                from einc.errors import EincError, EincInternalError

                try:
                    k = cached_kernel(prog)
                except EincInternalError:
                    raise
                except (EincError, OSError):  # unsupported here, unreadable cache: keep interpreting
                    k = None
                if k is not None:
                    self.kernel, self.mode, self.origin = FastCall(k), "kernel", "cache"
                    self.reason = "a cached kernel exists for this program"
            if self.kernel is None and self.predicted_s >= self.kernel_cost_s():
                self._get_kernel(strict=False)

    def kernel_cost_s(self) -> float:
        return COMPILE_S + (0.0 if _tvm_loaded() else IMPORT_S)

    def _get_kernel(self, strict: bool) -> None:
        from einc.errors import CompileError, Unsupported

        try:
            k, self.origin = get_kernel(self.prog, self.target)
            self.kernel, self.mode = FastCall(k), "kernel"
            self.reason = f"compiled ({self.origin})"
        except (Unsupported, CompileError) as e:
            if strict:
                raise
            self.kernel, self.mode = None, "interp"
            self.reason = f"compilation failed, interpreting: {e.message.splitlines()[0]}"
            if isinstance(e, CompileError):
                warnings.warn(f"einc: compiling {self.prog.body[-1].__class__.__name__} failed, "
                              f"falling back to numpy: {e.message.splitlines()[0]}", RuntimeWarning, stacklevel=4)

    def __call__(self, arrays) -> list[np.ndarray]:
        self.calls += 1
        k = self.kernel
        if k is not None:
            return k(arrays)
        from einc.ir.interp import run

        if self.mode == "interp":
            return run(self.prog, *arrays)
        t0 = time.perf_counter()
        res = run(self.prog, *arrays)
        dt = time.perf_counter() - t0
        self.spent_s += dt
        if self.spent_s + dt >= self.kernel_cost_s():
            mean = self.spent_s / self.calls
            if mean >= FLOOR_S:
                self._get_kernel(strict=False)
            else:  # numpy turned out faster than predicted (a view, a cheap special case)
                self.mode = "interp"
                self.reason = f"measured numpy time {mean * 1e6:.1f} us < floor {FLOOR_S * 1e6:.0f} us"
        return res

    def describe(self) -> str:
        return f"{self.mode}: {self.reason}"


_PLANS: dict[Any, Plan] = {}
MAX_PLANS = 4096  # a program that makes ever new shapes must not grow this without bound


def _remember(key, plan: Plan) -> Plan:
    if len(_PLANS) >= MAX_PLANS:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


def _target_key(target):
    if isinstance(target, dict):
        import json

        return json.dumps(target, sort_keys=True)
    return target


def plan_for(prog: Program, target=None) -> Plan:
    """The (memoized) plan of ``prog`` for ``target``."""
    tk = _target_key(target)
    key = ("prog", prog, tk, os.environ.get("EINC_TARGET") if target is None else None)
    p = _PLANS.get(key)
    if p is None:
        p = _remember(key, Plan(prog, target))
    return p


def execute(prog: Program, arrays: list[np.ndarray], target=None) -> list[np.ndarray]:
    """Run ``prog`` on ``arrays`` with the policy above; return its outputs (numpy arrays)."""
    return plan_for(prog, target)(arrays)


def einsum_call(subscripts: str, arrays: list[np.ndarray], make_program: Callable[[], Program], *,
                target=None, optimize: Any = "auto", extra: tuple = ()) -> list[np.ndarray]:
    """``execute`` keyed by the call signature (subscripts, shapes, dtypes, target, optimize, extra).

    ``make_program()`` (parse + passes) runs only the first time a signature is seen; ``arrays`` must
    be numpy arrays already; ``extra`` holds anything else that changes the program (``dtype=``,
    ``casting=``, a pipeline).  The hot path is a tuple, a dict lookup and the kernel call.
    """
    key = (subscripts, _target_key(target), optimize, extra,
           os.environ.get("EINC_TARGET") if target is None else None, *[(a.shape, a.dtype) for a in arrays])
    try:
        p = _PLANS.get(key)
    except TypeError:  # an unhashable optimize=/extra: no memo, same policy
        return execute(make_program(), arrays, target)
    if p is None:
        p = _remember(key, Plan(make_program(), target))
    return p(arrays)


def explain(prog: Program, target=None) -> str:
    """One line: what ``execute(prog, ..., target)`` would do now, and why."""
    return plan_for(prog, target).describe()


def reset() -> None:
    """Forget every plan (tests; after changing ``EINC_*`` settings)."""
    _PLANS.clear()


__all__ = ["execute", "einsum_call", "explain", "get_kernel", "kernel_program", "cached_kernel", "predict_numpy_s", "Plan",
           "plan_for", "reset", "resolve_request", "FLOOR_S", "COMPILE_S", "IMPORT_S"]
