"""``einc.einsum``: a drop-in for ``numpy.einsum`` (and ``einc.einsum_path`` for ``numpy.einsum_path``).

Same arguments, same results (to float tolerance), same result shapes and dtypes, and the same
exception *families* for what numpy refuses (einc's exceptions derive from ``ValueError`` /
``TypeError`` / ``KeyError`` / ``IndexError`` / ``RuntimeError`` where numpy's do), with a message
that says what is wrong and, for subscripts, a caret under it.

numpy has two parsers, and einc follows the one numpy would use for the call:

* ``optimize=False`` (the default): the C rules.  An explicit output without ``'...'`` while
  operands have ellipsis dimensions is refused; spaces inside ``'->'`` or ``'...'`` are refused;
  a 0-d result is a numpy scalar; ``out=`` must have the result's shape.
* ``optimize`` anything else (``None`` included): the Python rules.  Spaces are dropped first,
  unlisted ellipsis dimensions are summed, ``out=`` may have extra leading axes the result
  broadcasts to, and a 0-d result is a 0-d array exactly when numpy's last path step is a
  ``matmul`` (two operands sharing a summed label of size > 1), else a scalar.

Dtypes follow the C rules on every path: the computation dtype is ``dtype=`` or the common type
of the operands *and* ``out=`` (int8 operands summed into a float64 ``out=`` do not wrap), every
operand is cast to it under ``casting=``, and ``out=`` must convert both ways under it.  numpy's
Python path instead computes each pairwise step in that step's operand types (a bool diagonal sum
becomes a logical or); einc does not reproduce that, so with ``optimize`` its values equal numpy's
``optimize=False`` values.  The path einc runs is the one ``einc.einsum_path`` reports (numpy's
memory limit: the largest operand or result), passed to the ``decompose`` pass as an explicit path.

Views (aliasing).  For one operand and no summed label (``'ij->ji'``, ``'ii->i'``, ``'...'``) and
no ``out=``, numpy returns a *view* of the operand (writable when the operand is) and ignores
``dtype=``.  einc does the same with a strided view it builds itself (nothing is computed), so
code that writes through the result, or relies on it not being a copy, behaves as with numpy.
Every other result is a fresh array.

Dtypes outside einc's IR that numpy's einsum accepts (``object``, ``longdouble``,
``clongdouble``) are handed to ``numpy.einsum`` unchanged when no compiled ``target`` is asked
for; with one they raise ``Unsupported``.

Known differences: bfloat16 operands (ml_dtypes), which numpy's einsum refuses, are computed (the
IR has bfloat16: float32 arithmetic, rounded); an explicit path naming an operand twice
(``(0, 0)``), which numpy silently misreads, is refused (``InvalidPath``); where numpy's Python
parser crashes with ``IndexError`` on a malformed expression, einc raises the ``ValueError`` its C
parser would; optimizer names beyond numpy's (``'dp'``, ``'branch-2'``, ``'auto'``, any case) are
accepted.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from einc.errors import EincError, EincTypeError, PathError, Unsupported
from einc.frontend.subscripts import MAX_OPERANDS, ParsedEinsum, parse_subscripts, sublist_to_subscripts
from einc.ir.types import DTYPES, dtype_name, np_dtype

CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")
ORDERS = ("C", "F", "A", "K")


class InvalidArgument(EincError, ValueError):
    """An argument of ``einc.einsum`` has a value numpy.einsum would also refuse (order, casting, out shape)."""


class UnknownOptimizer(PathError, KeyError):
    """``optimize=`` names no path optimizer (numpy raises KeyError here, so this is one too)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return EincError.__str__(self)


class InvalidPath(PathError, IndexError):
    """An explicit ``optimize=['einsum_path', ...]`` path names an operand that does not exist (or one twice)."""

    def __str__(self) -> str:
        return EincError.__str__(self)


class IncompletePath(PathError, RuntimeError):
    """An explicit path leaves operands uncontracted; add a last step over the ones that remain."""


class InvalidPathSpec(EincError, TypeError):
    """``optimize=`` is not False/True, an optimizer name, ``(name, memory_limit)`` or ``['einsum_path', ...]``."""


# ------------------------------------------------------------------------------------------- arguments


def _split_operands(operands) -> tuple[str, list]:
    """-> (subscripts, operands) for both numpy call forms."""
    if not operands:
        raise InvalidArgument("einsum needs the subscripts string and at least one operand, "
                              "or (operand, sublist) pairs")
    first = operands[0]
    if isinstance(first, bytes):
        first = first.decode("ascii")
    if isinstance(first, str):
        if len(operands) < 2:
            raise InvalidArgument(f"einsum({first!r}) has no operands: give at least one array after the subscripts")
        return first, list(operands[1:])
    return sublist_to_subscripts(*operands)


def _as_array(x, k: int, frame) -> np.ndarray:
    try:
        return frame.to_numpy(x, f"operand {k}")
    except EincError:
        raise
    except (ValueError, TypeError) as e:
        raise EincTypeError(f"operand {k} cannot be converted to an array: {e}") from None


def _in_ir(dt: np.dtype) -> bool:
    try:
        return dtype_name(dt) in DTYPES
    except EincError:
        return False


def _check_order(order) -> str:
    if not isinstance(order, str) or order.upper() not in ORDERS:
        raise InvalidArgument(f"order must be one of 'C', 'F', 'A', or 'K' (got {order!r})")
    return order.upper()


def _check_casting(casting) -> str:
    if casting not in CASTINGS:
        raise InvalidArgument(f"casting must be one of {', '.join(map(repr, CASTINGS))} (got {casting!r})")
    return casting


def _check_dtype(dtype) -> np.dtype | None:
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError as e:
        raise EincTypeError(f"dtype={dtype!r} is not a data type: {e}") from None


def _optimize_kind(optimize):
    """numpy's reading of ``optimize``: False (the C path) or the value for the path search.

    ``None`` is not False for numpy: it takes the Python path with no path search (one step).
    """
    if optimize is None or optimize is False:
        return optimize
    if optimize is True or isinstance(optimize, str):
        return optimize
    try:
        seq = list(optimize)
    except TypeError:
        raise InvalidPathSpec(f"optimize={optimize!r} is not understood: give True, False, 'greedy', 'optimal', "
                              "('greedy', memory_limit) or ['einsum_path', (0, 1), ...]") from None
    if seq and seq[0] == "einsum_path":
        return seq
    if len(seq) == 2 and isinstance(seq[0], str) and isinstance(seq[1], (int, float)) and not isinstance(seq[1], bool):
        return (seq[0], seq[1])
    raise InvalidPathSpec(f"optimize={optimize!r} is not understood: give True, False, 'greedy', 'optimal', "
                          "('greedy', memory_limit) or ['einsum_path', (0, 1), ...]")


# ------------------------------------------------------------------------------------------- paths


def _find_path(parsed: ParsedEinsum, optimize):
    """``PathInfo`` for ``optimize`` with numpy's conventions (memory limit = largest input or output)."""
    from einc.ir.paths import find_path

    n = len(parsed.inputs)
    labels = set("".join(parsed.inputs))
    if isinstance(optimize, list):  # explicit path: check it like numpy would fail on it
        try:
            return find_path(parsed.inputs, parsed.output, parsed.size_of, optimize=optimize)
        except PathError as e:
            kind = IncompletePath if "uncontracted" in e.message else InvalidPath
            raise kind(e.message) from None
    name, limit = (optimize, None) if not isinstance(optimize, tuple) else optimize
    if name is True:
        name = "greedy"
    trivial = name is False or name is None or n <= 2 or labels == set(parsed.output)
    if isinstance(name, str) and not trivial:
        from einc.ir.paths import OPTIMIZERS

        if name.strip().lower() not in OPTIMIZERS:
            raise UnknownOptimizer(f"optimize={name!r} names no path optimizer; valid: True, False, "
                                   f"{', '.join(map(repr, OPTIMIZERS))} or ['einsum_path', (0, 1), ...]")
    if trivial:
        return find_path(parsed.inputs, parsed.output, parsed.size_of, optimize=False)
    return find_path(parsed.inputs, parsed.output, parsed.size_of, optimize=name,
                     memory_limit="max_input" if limit is None else limit)


#: What runs around the contraction path: clean up, make diagonals and broadcasts explicit, clean up.
CLEANUP = "canonicalize,diagonals,broadcast,canonicalize"


def _pipeline(info) -> str:
    """The default pipeline: split along ``info``'s path (the one ``einsum_path`` reports), then clean up.

    The path goes to ``decompose`` as an explicit path (``path=0-1;0-1``) and runs first, before any
    pass could reorder operands.  Without a path (``optimize=False``) the einsum stays n-ary, as numpy's is.
    """
    if info is None or len(info.path) <= 1:
        return CLEANUP
    from einc.ir.passes.decompose import path_option

    return f"decompose{{path={path_option(info.path)}}}," + CLEANUP


def _run_passes(prog, pipeline):
    from einc.ir.passes import run_pipeline

    return run_pipeline(prog, pipeline)


# ------------------------------------------------------------------------------------------- views


def _single_operand_view(parsed: ParsedEinsum, a: np.ndarray) -> np.ndarray | None:
    """numpy's view for one operand and no summed label: axes permuted, repeated labels as diagonals."""
    labs, out = parsed.inputs[0], parsed.output
    if set(labs) != set(out):
        return None
    shape, strides = [], []
    for c in out:
        axes = [i for i, l in enumerate(labs) if l == c]
        shape.append(a.shape[axes[0]])
        strides.append(sum(a.strides[i] for i in axes))
    return np.lib.stride_tricks.as_strided(a, tuple(shape), tuple(strides), writeable=a.flags.writeable)


# ------------------------------------------------------------------------------------------- einsum


def _on_cuda(ops) -> bool:
    from einc.lowering.gpu_arrays import is_cuda_array

    return any(is_cuda_array(x) for x in ops)


def _einsum_on_cuda(subscripts, ops, *, out, dtype, order, casting, optimize, target, pipeline):
    """``einsum`` on CUDA arrays (torch, CuPy, TVM): compiled for the GPU, the operands read in place
    and the result returned as the same kind of device array (see ``einc.lowering.gpu_arrays``)."""
    from einc.kernel import _is_cuda_target
    from einc.lowering.target import resolve

    if target is None:
        target = "cuda"
    if not _is_cuda_target(resolve(target)):
        raise InvalidArgument(f"the operands are CUDA arrays but target={target!r} is not a CUDA target: "
                              "give target='cuda' (or None), or move the operands to the host")
    if dtype is not None or casting != "safe" or order not in ("K", "C", "A"):
        raise InvalidArgument("dtype=, casting= and order='F' are not supported for CUDA operands: the result "
                              "takes the operands' dtype, C order")
    key = (subscripts, tuple((tuple(x.shape), str(x.dtype)) for x in ops), str(target),
           _hashable(optimize), pipeline)
    k = _CUDA_KERNELS.get(key)
    if k is None:
        from einc.kernel import compile as _compile

        k = _compile(subscripts, *ops, target=target, pipeline=pipeline,
                     optimize="auto" if optimize is None or optimize is False else optimize)
        if len(_CUDA_KERNELS) >= 256:
            _CUDA_KERNELS.pop(next(iter(_CUDA_KERNELS)))
        _CUDA_KERNELS[key] = k
    return k(*ops, out=out) if out is not None else k(*ops)


_CUDA_KERNELS: dict = {}


def parse(subscripts: str, shapes=None, **kwargs) -> ParsedEinsum:
    """Parse numpy einsum subscripts (optionally against operand shapes); see ``parse_subscripts``."""
    return parse_subscripts(subscripts, shapes, **kwargs)


def einsum(*operands, out=None, dtype=None, order="K", casting="safe", optimize=False, target=None,
           pipeline=None):
    """``numpy.einsum`` through einc: parse, build a one-step program, run passes, execute.

    ``target``: None (the default policy of ``einc.dispatch``), ``"interp"``, or a compiled target.
    ``pipeline``: a pass pipeline string replacing the default one (built from ``optimize``).
    Everything decided from the call signature (subscripts, shapes, dtypes, keywords) is memoized, so
    a repeated call only converts its operands and runs the program.
    """
    subscripts, ops = _split_operands(operands)
    from einc.kernel import _Frame, check_pipeline_arg

    check_pipeline_arg(pipeline)
    order = _check_order(order)
    casting = _check_casting(casting)
    dt = _check_dtype(dtype)
    opt = _optimize_kind(optimize)
    if len(ops) > MAX_OPERANDS:
        raise InvalidArgument(f"too many operands: {len(ops)} (numpy.einsum takes at most {MAX_OPERANDS})")
    if any(type(x) is not np.ndarray and hasattr(x, "__dlpack_device__") for x in ops) and _on_cuda(ops):
        return _einsum_on_cuda(subscripts, ops, out=out, dtype=dt, order=order, casting=casting, optimize=opt,
                               target=target, pipeline=pipeline)
    frame = _Frame()  # torch tensors in, torch tensors out (zero-copy, as the kernels do)
    arrays = [_as_array(x, k, frame) for k, x in enumerate(ops)]
    if out is not None and not isinstance(out, np.ndarray):
        raise EincTypeError(f"out= must be a numpy array, not {type(out).__name__}")

    args = (subscripts, _hashable(opt), tuple(a.shape for a in arrays), tuple(a.dtype for a in arrays), dt, casting,
            None if out is None else (out.shape, out.dtype), pipeline,
            target if target is None or isinstance(target, str) else repr(target))
    try:
        hash(args)
        prep = _prepare(*args)
    except TypeError as e:
        if isinstance(e, EincError):
            raise
        prep = _prepare.__wrapped__(*args)  # an unhashable argument: the same steps, not memoized

    if prep.view:
        view = _single_operand_view(prep.parsed, arrays[0])
        return frame.give_back(view) if view.ndim or frame.torch else view[()]  # numpy: 0-d -> scalar
    if prep.plan is None:  # dtypes outside einc's IR: numpy computes them
        kw = {} if dt is None else {"dtype": dt}
        return frame.give_back(np.einsum(prep.text, *arrays, out=out, order=order, casting=casting,
                                         optimize=optimize, **kw))
    from einc.dispatch import einsum_call
    from einc.kernel import _native

    arrays = [_native(a) for a in arrays]  # a big-endian operand is converted, as numpy does
    # dispatch memoizes its run plan by the same call signature, so a hot call hashes no program
    (res,) = einsum_call(prep.text, arrays, lambda: prep.plan.program, target=target, optimize=args[1],
                         extra=(dt, casting, args[6], pipeline))
    res = np.asarray(res)
    if out is not None:
        np.copyto(out, res, casting="unsafe")  # the rule was checked in _prepare
        return out
    res = _with_order(res, order, arrays)
    if res.ndim == 0 and prep.scalar and frame.torch is None:
        return res[()]
    return frame.give_back(res)


@dataclass(frozen=True)
class _Prepared:
    text: str  # the subscripts as parsed (spaces dropped on the optimize path)
    parsed: ParsedEinsum
    view: bool  # numpy returns a view of the one operand
    plan: "Plan | None"  # None: a dtype outside the IR, numpy runs it
    scalar: bool  # a 0-d result is returned as a numpy scalar


@functools.lru_cache(maxsize=2048)
def _prepare(subscripts, opt, shapes, dtypes, dt, casting, out_sig, pipeline, target) -> _Prepared:
    """Every check and decision that depends only on the call signature, in numpy's order."""
    opt = _unhash(opt)
    text = subscripts.replace(" ", "") if opt is not False else subscripts
    parsed = parse_subscripts(text, shapes, sum_ellipsis=opt is not False)
    if len(shapes) == 1 and out_sig is None and set(parsed.inputs[0]) == set(parsed.output):
        return _Prepared(text, parsed, True, None, True)  # a view, of any dtype (strings too, as numpy)
    for k, d in enumerate(dtypes):
        if d.kind in "USVMm" and not _in_ir(d):  # bfloat16 (ml_dtypes, kind 'V') is in the IR: accepted
            raise EincTypeError(f"invalid data type for einsum: operand {k} has dtype {d} "
                                "(einsum needs numbers or booleans)")

    in_ir = all(_in_ir(d) for d in dtypes) and (dt is None or _in_ir(dt)) and (out_sig is None or _in_ir(out_sig[1]))
    if not in_ir:
        if target not in (None, "interp", "numpy"):
            raise Unsupported(f"dtypes {[str(d) for d in dtypes]} are outside einc's IR; "
                              f"target {target!r} cannot run them")
        return _Prepared(text, parsed, False, None, True)

    # The computation dtype, as numpy's C einsum picks it: dtype=, else the common type of the operands
    # and out= (so int8 operands summed into a float64 out= do not wrap).  Every operand is cast to it
    # under the casting rule, and out= is read and written in it (numpy checks both directions).
    if dt is not None:
        rd = dtype_name(dt)
    else:
        rd = dtype_name(np.result_type(*dtypes, *([out_sig[1]] if out_sig is not None else [])))
    for k, d in enumerate(dtypes):
        if not np.can_cast(d, np_dtype(rd), casting):
            raise EincTypeError(f"operand {k} of dtype {d} cannot be cast to {rd} under casting={casting!r}; "
                                f"{_casting_hint((d, np_dtype(rd)))}")
    if out_sig is not None:
        _check_out(out_sig, parsed.output_shape, rd, casting, broadcast=opt is not False)
    plan = _plan_cached(text, shapes, tuple(dtype_name(d) for d in dtypes), rd, _hashable(opt), pipeline)
    return _Prepared(text, parsed, False, plan, _returns_scalar(plan))


@dataclass(frozen=True)
class Plan:
    """What ``einsum`` runs for one call signature: the parse, the path (None: optimize=False) and the
    program after the pass pipeline."""

    parsed: ParsedEinsum
    info: object
    program: object


def plan(subscripts: str, shapes, dtypes, *, dtype: str | None = None, optimize=False,
         pipeline: str | None = None) -> Plan:
    """The ``Plan`` ``einc.einsum`` would run for operands of these shapes and dtypes (cached)."""
    opt = _optimize_kind(optimize)
    text = subscripts.replace(" ", "") if opt is not False else subscripts
    return _plan_cached(text, tuple(tuple(s) for s in shapes), tuple(dtypes), dtype, _hashable(opt), pipeline)


def _hashable(opt):
    if isinstance(opt, list):  # ['einsum_path', (0, 1), ...]: keep it a list marker, make it hashable
        try:
            return ("__path__",) + tuple(tuple(st) if isinstance(st, (list, tuple)) else st for st in opt[1:])
        except TypeError:
            return ("__path__",) + tuple(map(repr, opt[1:]))
    return opt


def _unhash(opt):
    if isinstance(opt, tuple) and opt and opt[0] == "__path__":
        return ["einsum_path", *opt[1:]]
    return opt


@functools.lru_cache(maxsize=1024)
def _plan_cached(text, shapes, dtypes, result_dtype, opt, pipeline) -> Plan:
    opt = _unhash(opt)
    parsed = parse_subscripts(text, shapes, sum_ellipsis=opt is not False)
    info = _find_path(parsed, opt) if opt is not False else None
    prog = parsed.to_program(list(dtypes), result_dtype)
    prog = _run_passes(prog, pipeline if pipeline is not None else _pipeline(info))
    return Plan(parsed, info, prog)


def _returns_scalar(plan: Plan) -> bool:
    """Whether numpy returns a 0-d result as a numpy scalar (True) or a 0-d array.

    numpy's C einsum returns scalars.  Its optimize path does each two-operand step with ``matmul`` (a
    0-d array) when the two share a summed label whose axes are not of size 1 in both, and with
    ``multiply`` or C einsum (scalars) otherwise; the last step decides.
    """
    info = plan.info
    if info is None or not info.steps:
        return True
    sizes = plan.parsed.size_of
    ops = [dict(zip(labs, shape)) for labs, shape in zip(plan.parsed.inputs, plan.parsed.shapes)]
    for k, st in enumerate(info.steps):
        picked = [ops[p] for p in sorted(st.positions)]
        if k == len(info.steps) - 1:
            if len(picked) != 2:
                return True
            a, b = picked
            return not any(c not in info.output and a[c] != 1 and b[c] != 1 for c in a if c in b)
        # an intermediate keeps size 1 where every operand it came from has size 1 (numpy broadcasts)
        res = {c: next((o[c] for o in picked if o.get(c, 1) != 1), 1 if any(c in o for o in picked) else sizes[c])
               for c in st.output}
        ops = [o for i, o in enumerate(ops) if i not in st.positions] + [res]
    return True


def _casting_hint(*pairs) -> str:
    """The least permissive casting rule that allows every ``(src, dst)`` cast, as advice."""
    for rule in ("equiv", "safe", "same_kind", "unsafe"):
        if all(np.can_cast(src, dst, rule) for src, dst in pairs):
            return f"pass casting={rule!r} (or a looser rule) to allow it"
    return "no casting rule allows it"


def _check_out(out_sig, shape, rd: str, casting: str, broadcast: bool) -> None:
    out_shape, out_dtype = out_sig
    if broadcast:
        try:
            ok = np.broadcast_shapes(shape, out_shape) == out_shape
        except ValueError:
            ok = False
        if not ok:
            raise InvalidArgument(f"out= has shape {out_shape}, which the result's shape {shape} cannot broadcast to")
    elif out_shape != tuple(shape):
        raise InvalidArgument(f"out= has shape {out_shape} but the result has shape {tuple(shape)}")
    for src, dst in ((np_dtype(rd), out_dtype), (out_dtype, np_dtype(rd))):
        if not np.can_cast(src, dst, casting):
            raise EincTypeError(f"out= of dtype {out_dtype} cannot be written and read as the computation dtype {rd} "
                                f"under casting={casting!r} ({src} -> {dst}); "
                                f"{_casting_hint((np_dtype(rd), out_dtype), (out_dtype, np_dtype(rd)))}")


def _with_order(res: np.ndarray, order: str, arrays) -> np.ndarray:
    if order == "F" or (order == "A" and arrays and all(a.flags.f_contiguous and not a.flags.c_contiguous
                                                           for a in arrays)):
        return np.asarray(res, order="F")
    if order in ("C", "A"):
        return np.asarray(res, order="C")
    return res


# ------------------------------------------------------------------------------------------- einsum_path


def einsum_path(*operands, optimize="greedy"):
    """``numpy.einsum_path``: ``(['einsum_path', (i, j), ...], report)`` for these operands."""
    from einc.ir.paths import numpy_report

    subscripts, ops = _split_operands(operands)
    shapes = []
    for k, x in enumerate(ops):
        shapes.append(tuple(np.shape(x)))
    opt = _optimize_kind(optimize)
    text = subscripts.replace(" ", "")
    parsed = parse_subscripts(text, shapes, sum_ellipsis=True)
    info = _find_path(parsed, opt)
    return info.numpy_path(), numpy_report(info)


__all__ = ["einsum", "einsum_path", "parse", "plan", "Plan", "InvalidArgument", "UnknownOptimizer", "InvalidPath",
           "IncompletePath", "InvalidPathSpec", "CASTINGS", "ORDERS"]
