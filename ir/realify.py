"""Complex values as pairs of reals: the form in which TVM, which has no complex type, computes them.

numpy stores a complex tensor of shape ``S`` as real and imaginary parts interleaved, which is a real
tensor of shape ``S + (2,)`` (``as_real`` is a view, no copy).  ``realify(prog)`` rewrites a program
with complex values into one over such real tensors, step by step:

* an einsum with one complex operand carries that operand's trailing (re, im) axis to its result;
* a product of k >= 2 complex operands is a chain of 2x2 real matrices: every complex operand but one
  (the "vector", the largest) is first expanded into the matrix ``[[re, -im], [im, re]]`` of
  multiplication by it (an einsum with the constant ``J``), and the chain
  ``out[.., r] = sum M1[r, c1] M2[c1, c2] .. V[.., c_{k-1}]`` is one einsum, with the same
  multiplications as complex arithmetic (4 real per complex);
* casts: complex -> complex casts both parts; real -> complex multiplies by the constant ``U = (1, 0)``;
  complex -> bool is "either part non-zero" (a bool sum is a logical or); complex -> other reals take
  the real part (``x . U``), as numpy's ``astype`` does.

The constants are extra program inputs after the program's own (``RealForm.constants``), so the real
program is an ordinary einc program: every pass, schedule and target applies to it unchanged.

Where numpy's complex arithmetic would not multiply by zero, the real form may: a part that is
infinite or NaN can make the *other* part of a result NaN where numpy gives a number.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from einc.errors import Unsupported

from .nodes import LABELS, Cast, Einsum, Program, Value
from .passes._util import dedup, make_einsum
from .types import TensorType, np_dtype

PART = {"complex64": "float32", "complex128": "float64"}  # the dtype of each part

#: the constant inputs: ``J[d, r, c]`` maps the parts ``d`` of z to the matrix of multiplication by z,
#: ``U`` picks the real part (and makes a real value complex)
CONSTANTS = {
    "J": np.array([[[1, 0], [0, 1]], [[0, -1], [1, 0]]], dtype=np.int8),
    "U": np.array([1, 0], dtype=np.int8),
}


def is_complex(dtype: str) -> bool:
    return dtype in PART


def has_complex(prog: Program) -> bool:
    return any(is_complex(t.dtype) for t in prog.types().values())


@dataclass(frozen=True)
class RealForm:
    """``program`` computes ``source`` over real tensors (see the module docstring)."""

    source: Program
    program: Program
    constants: tuple[tuple[str, str], ...]  # (input name, CONSTANTS key), after the source's inputs

    @property
    def complex_inputs(self) -> tuple[bool, ...]:
        return tuple(is_complex(v.type.dtype) for v in self.source.inputs)

    @property
    def complex_outputs(self) -> tuple[bool, ...]:
        types = self.source.types()
        return tuple(is_complex(types[o].dtype) for o in self.source.outputs)

    def constant_arrays(self) -> list[np.ndarray]:
        return [CONSTANTS[kind] for _, kind in self.constants]

    def inputs(self, arrays) -> list[np.ndarray]:
        """The real program's arguments for the source program's numpy ``arrays``."""
        return [as_real(np.asarray(a)) if cx else a for a, cx in zip(arrays, self.complex_inputs)] + \
            self.constant_arrays()

    def outputs(self, results) -> list[np.ndarray]:
        """The source program's results from the real program's numpy ``results``."""
        types = self.source.types()
        return [as_complex(r, types[o].dtype) if cx else r
                for r, o, cx in zip(results, self.source.outputs, self.complex_outputs)]


def as_real(a: np.ndarray) -> np.ndarray:
    """A complex array as a real one of shape ``a.shape + (2,)`` (a view when ``a`` is C-contiguous)."""
    a = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
    return a.reshape(-1).view(a.real.dtype).reshape(a.shape + (2,))


def as_complex(r: np.ndarray, dtype: str) -> np.ndarray:
    """The inverse of ``as_real``: a real array of shape ``S + (2,)`` as a complex one of shape ``S``."""
    r = r if r.flags.c_contiguous else r.copy(order="C")
    return r.reshape(-1).view(np_dtype(dtype)).reshape(r.shape[:-1])


# ------------------------------------------------------------------------------------------------


class _Builder:
    def __init__(self, prog: Program):
        self.taken = set(prog.types())
        self.body: list = []
        self.types: dict[str, TensorType] = {}
        self.constants: dict[str, str] = {}  # kind -> input name

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}{k}"
        self.taken.add(name)
        return name

    def constant(self, kind: str) -> str:
        if kind not in self.constants:
            self.constants[kind] = self.fresh(f"cx_{kind}")
            self.types[self.constants[kind]] = TensorType(CONSTANTS[kind].shape, "int8")
        return self.constants[kind]

    def emit(self, op):
        self.body.append(op)
        self.types[op.result] = op.type
        return op.result

    def einsum(self, result: str, operands, inputs, output: str) -> str:
        return self.emit(make_einsum(result, operands, inputs, output, self.types))


def _free_labels(used: str, n: int, where: str) -> str:
    free = [c for c in LABELS if c not in used]
    if len(free) < n:
        raise Unsupported(f"{where}: computing it over real and imaginary parts needs {n} more labels than "
                          f"the {len(set(used))} it uses (at most {len(LABELS)} letters)")
    return "".join(free[:n])


def realify(prog: Program) -> RealForm:
    """The real form of ``prog`` (which must verify); ``Unsupported`` when an einsum leaves too few
    free labels for the parts."""
    b = _Builder(prog)
    cx: set[str] = set()  # names whose real form has the trailing parts axis
    inputs = []
    for v in prog.inputs:
        t = v.type
        if is_complex(t.dtype):
            t = TensorType(t.shape + (2,), PART[t.dtype])
            cx.add(v.name)
        inputs.append(Value(v.name, t))
        b.types[v.name] = t
    for i, op in enumerate(prog.body):
        where = f"op #{i} ({op.result})"
        if isinstance(op, Cast):
            _cast(b, op, cx, where)
        elif any(o in cx for o in op.operands):
            _einsum(b, op, cx, where)
        else:
            b.emit(op)
    consts = tuple((name, kind) for kind, name in b.constants.items())
    inputs += [Value(name, b.types[name]) for name, _ in consts]
    real = Program(tuple(inputs), tuple(b.body), prog.outputs)
    return RealForm(prog, real, consts)


def _cast(b: _Builder, op: Cast, cx: set, where: str) -> None:
    src, dst = op.operand, op.type.dtype
    rank = b.types[src].rank - (src in cx)
    if src in cx and is_complex(dst):
        b.emit(Cast(op.result, src, TensorType(op.type.shape + (2,), PART[dst])))
        cx.add(op.result)
    elif src in cx:
        labs = _free_labels("", rank + 1, where)
        x, v = labs[:rank], labs[rank]
        if dst == "bool":  # non-zero if either part is: a logical or over the parts
            nz = b.emit(Cast(b.fresh(f"{op.result}_nz"), src, TensorType(b.types[src].shape, "bool")))
            b.einsum(op.result, [nz], [x + v], x)
        else:
            exact = b.types[src].dtype == dst  # the real part is the result
            re = b.einsum(op.result if exact else b.fresh(f"{op.result}_re"), [src, b.constant("U")], [x + v, v], x)
            if not exact:
                b.emit(Cast(op.result, re, op.type))
    elif is_complex(dst):
        part = PART[dst]
        if b.types[src].dtype != part:
            src = b.emit(Cast(b.fresh(f"{op.result}_re"), src, TensorType(b.types[src].shape, part)))
        labs = _free_labels("", rank + 1, where)
        x, v = labs[:rank], labs[rank]
        b.einsum(op.result, [src, b.constant("U")], [x, v], x + v)
        cx.add(op.result)
    else:
        b.emit(op)


def _einsum(b: _Builder, op: Einsum, cx: set, where: str) -> None:
    cpos = [k for k, o in enumerate(op.operands) if o in cx]
    used = "".join(op.inputs) + op.output
    chain = _free_labels(used, len(cpos) + (len(cpos) > 1), where)
    inputs = list(op.inputs)
    operands = list(op.operands)
    out_part = chain[0]
    planar = _contraction(op)
    if len(cpos) == 1:
        inputs[cpos[0]] += out_part
    else:
        d = chain[-1]  # the parts of a value being expanded (its own einsum's label)
        # the vector, whose parts stay a trailing axis: in a GEMM-like step the largest operand, the
        # GEMM's B (it holds the result's last label) among equals; else the largest operand whose
        # last label is summed (its parts continue the summed axes)
        def rank_key(k):
            labs = op.inputs[k]
            if planar:  # (expanding the largest would write 4 times its size)
                return (b.types[op.operands[k]].size, op.output[-1] in labs)
            return (bool(labs) and labs[-1] not in op.output, b.types[op.operands[k]].size)

        vec = max(cpos, key=rank_key)
        links = [k for k in cpos if k != vec]
        for step, k in enumerate(links):
            r, c = chain[step], chain[step + 1]  # rows: the result's (or previous matrix's) parts
            labs = op.inputs[k]
            uniq = dedup(labs)  # (a diagonal is taken here)
            if planar:  # rows outermost, the columns just before the summed labels (the innermost
                # summed label is then the operand's own, of its own size)
                first = min((i for i, lab in enumerate(uniq) if lab not in op.output), default=len(uniq))
                mat = r + uniq[:first] + c + uniq[first:]
            else:
                mat = _matrix_labels(uniq, op.output, r, c)
            name = b.einsum(b.fresh(f"{op.result}_m{step}"), [op.operands[k], b.constant("J")],
                            [labs + d, d + r + c], mat)
            operands[k], inputs[k] = name, mat
        inputs[vec] += chain[len(links)]
        if planar:  # the vector last: the summed loops nest in first-appearance order, so the
            # innermost is then an operand's own summed axis, not the parts' (2 long: no k-unroll)
            operands.append(operands.pop(vec))
            inputs.append(inputs.pop(vec))
    if planar:  # parts outermost, so that a GEMM's N is the result's own last axis; then interleave
        p = b.einsum(b.fresh(f"{op.result}_p"), operands, inputs, out_part + op.output)
        b.einsum(op.result, [p], [out_part + op.output], op.output + out_part)
    else:
        b.einsum(op.result, operands, inputs, op.output + out_part)
    if b.types[op.result].dtype != PART[op.type.dtype]:
        from einc.errors import EincInternalError

        raise EincInternalError(f"{where}: real form computes in {b.types[op.result].dtype}, "
                                f"not {PART[op.type.dtype]}")
    cx.add(op.result)


def _contraction(op: Einsum) -> bool:
    """A GEMM-like step: two operands share a summed label and the result has an axis.  Its real
    form computes the parts outermost (each a GEMM with the result's own N), then interleaves them;
    any other step keeps the parts innermost throughout."""
    summed = set(op.contracted())
    shared = any(lab in summed and any(lab in other for other in op.inputs[k + 1:])
                 for k, labs in enumerate(op.inputs) for lab in labs)
    return shared and bool(op.output)


def slow_step(prog: Program) -> str | None:
    """The first step whose real form is slower than numpy's complex loops, described, or None.

    Every complex einsum step must be GEMM-like (``_contraction``, with a kept label on each side of
    the product): those compile to real GEMMs that beat numpy's complex einsum (``ij,jk->ik`` 256^2,
    1 thread: 1.5 ms against 50).  Sums, products and matrix-vector steps do not: their parts axis
    is 2 long where the schedules vectorise (``ij->j`` 1024^2: 10.7 ms against 0.23; ``ij,ij->ij``
    3.6 against 2.4; ``ij,j->i`` 1.6 against 1.1).  Casts are cheap either way."""
    types = prog.types()
    for op in prog.body:
        if not isinstance(op, Einsum) or not is_complex(op.type.dtype):
            continue
        sides = [set(labs) & set(op.output) for labs in op.inputs]
        two_sided = any(a - b and b - a for i, a in enumerate(sides) for b in sides[i + 1:])
        if not (_contraction(op) and two_sided and op.arity >= 2):
            return f"{op.result} = einsum('{op.subscripts}') over {types[op.operands[0]].dtype}"
    return None


def _matrix_labels(labs: str, output: str, r: str, c: str) -> str:
    """An expanded operand's labels: the row label after its last kept label, the column label after
    its last summed one, so that a GEMM reads it with each part next to the axes it goes with."""
    out = list(labs)
    kept = [i for i, lab in enumerate(labs) if lab in output]
    summed = [i for i, lab in enumerate(labs) if lab not in output]
    at_r = kept[-1] + 1 if kept else len(labs)
    at_c = summed[-1] + 1 if summed else len(labs)
    for at, lab in sorted([(at_r, r), (at_c, c)], key=lambda p: (-p[0], p[1] != c)):
        out.insert(at, lab)  # (r == "": no row label)
    return "".join(out)


__all__ = ["realify", "slow_step", "RealForm", "has_complex", "is_complex", "as_real", "as_complex", "CONSTANTS", "PART"]
