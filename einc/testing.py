"""Generators of einsum calls and IR programs, shared by the tests and the fuzzer.

Two faces over one set of generators:

* seeded functions, deterministic for a seed (``random.Random``):
  ``rand_equation(seed)`` -> ``(subscripts, shapes)``, ``rand_program(seed)`` -> ``Program``;
* hypothesis strategies that shrink well: ``einsum_calls()`` and ``programs()``.

Both draw every choice through a small ``Chooser`` so a generator is written once.  Sizes stay
small (at most ``max_size`` per axis, a few labels) so the interpreter runs each case in
microseconds.  ``random_arrays`` makes operands of any einc dtype.

``hypothesis`` is imported only by the strategy functions, so the seeded half works without it.
"""
from __future__ import annotations

import random
from typing import NamedTuple, Sequence

import numpy as np

from einc.ir.nodes import LABELS, Cast, Einsum, Program, Value
from einc.ir.types import DTYPES, TensorType, np_dtype, result_dtype

LOWER = LABELS[:26]

# names that stress the printer and parser: the statement words and dtype names are ordinary names
_NAMES = ("a", "b", "x", "q", "k", "v", "s", "o", "w", "t0", "x_1", "_tmp", "Out",
          "input", "output", "einsum", "cast", "float32", "bool")


# ---------------------------------------------------------------------------------- choosers


class Chooser:
    """Every random choice a generator makes.  Subclasses: seeded (``random``) or hypothesis."""

    def integer(self, lo: int, hi: int) -> int:  # inclusive
        raise NotImplementedError

    def boolean(self, p: float = 0.5) -> bool:
        """True with probability ``p``; shrinks to False."""
        raise NotImplementedError

    def choice(self, seq: Sequence):
        seq = list(seq)
        return seq[self.integer(0, len(seq) - 1)]

    def sample(self, seq: Sequence, k: int) -> list:
        """``k`` distinct items of ``seq`` in a random order."""
        pool, out = list(seq), []
        for _ in range(k):
            out.append(pool.pop(self.integer(0, len(pool) - 1)))
        return out


class RandomChooser(Chooser):
    def __init__(self, seed):
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)

    def integer(self, lo, hi):
        return self.rng.randint(lo, hi)

    def boolean(self, p=0.5):
        return self.rng.random() < p


class DrawChooser(Chooser):
    """Choices drawn from hypothesis' ``draw``; small integers and False are the shrink targets."""

    def __init__(self, draw):
        from hypothesis import strategies as st

        self.draw, self.st = draw, st

    def integer(self, lo, hi):
        return self.draw(self.st.integers(lo, hi))

    def boolean(self, p=0.5):
        if p <= 0:
            return False
        if p >= 1:
            return True
        return self.draw(self.st.integers(0, 999)) >= round(1000 * (1 - p))


# ---------------------------------------------------------------------------------- equations


def _labels(ch: Chooser, n: int) -> list[str]:
    """``n`` distinct labels, mostly lowercase, now and then an uppercase one."""
    pool = LOWER if not ch.boolean(0.2) else LABELS
    return ch.sample(pool, n)


def equation(ch: Chooser, *, n_operands: int | None = None, max_operands: int = 3, max_rank: int = 4,
             max_size: int = 4, repeated: bool = True, ellipsis: bool = True, broadcast: bool = True,
             implicit: bool | None = None, spaces: bool = False) -> tuple[str, list[tuple[int, ...]]]:
    """A random valid ``numpy.einsum`` call as ``(subscripts, shapes)``, its choices made by ``ch``.

    ``repeated``: a label may repeat within an operand (diagonals, traces);
    ``ellipsis``: operands may carry ``...`` (right-aligned broadcasting of the dims under it);
    ``broadcast``: an operand may have size 1 where the label is bigger;
    ``implicit``: no ``->`` (numpy's implicit output); None chooses at random.
    """
    n = n_operands if n_operands is not None else ch.integer(1, max_operands)
    pool = _labels(ch, ch.integer(1, min(6, max(1, max_rank * n))))
    size = {c: ch.integer(1, max_size) for c in pool}
    use_ell = ellipsis and ch.boolean(0.25)
    ell_dims = [ch.integer(1, max_size) for _ in range(ch.integer(0, 2))] if use_ell else []

    terms, shapes, any_ell = [], [], 0
    for _ in range(n):
        labs: list[str] = []
        for _ in range(ch.integer(0, max_rank)):
            if repeated and labs and ch.boolean(0.15):
                labs.append(ch.choice(labs))
            else:
                free = [c for c in pool if c not in labs]
                if not free:
                    break
                labs.append(ch.choice(free))
        ones = {c for c in set(labs) if broadcast and ch.boolean(0.12)}  # whole label: diagonals stay square
        shape = [1 if c in ones else size[c] for c in labs]
        term = "".join(labs)
        if use_ell and ch.boolean(0.7):
            k = ch.integer(0, len(ell_dims))  # this operand sees the last k ellipsis dims
            dims = [1 if broadcast and ch.boolean(0.15) else d for d in ell_dims[len(ell_dims) - k:]]
            at = ch.integer(0, len(labs))
            term = term[:at] + "..." + term[at:]
            shape = shape[:at] + dims + shape[at:]
            any_ell = max(any_ell, k)
        terms.append(term)
        shapes.append(tuple(shape))

    used = sorted(set("".join(terms).replace(".", "")))
    if implicit is None:
        implicit = ch.boolean(0.3)
    if implicit:
        subscripts = ",".join(terms)
    else:
        out = ch.sample(used, ch.integer(0, min(len(used), max_rank)))
        if any("..." in t for t in terms) and (any_ell or ch.boolean(0.5)):
            out.insert(ch.integer(0, len(out)), "...")
        subscripts = ",".join(terms) + "->" + "".join(out)
    if spaces and ch.boolean(0.3):
        subscripts = subscripts.replace(",", " , ").replace("->", " -> ")
    return subscripts, shapes


def rand_equation(seed, **kw) -> tuple[str, list[tuple[int, ...]]]:
    """A random valid ``numpy.einsum`` call ``(subscripts, shapes)``, the same for the same seed.

    Keywords as ``equation``: ``n_operands``, ``max_operands``, ``max_rank``, ``max_size``,
    ``repeated``, ``ellipsis``, ``broadcast``, ``implicit``.
    """
    return equation(RandomChooser(seed), **kw)


def rand_equation_program(seed, dtypes="float64", **kw) -> Program:
    """``rand_equation(seed, **kw)`` as a verified one-step ``Program`` (inputs ``t0, t1, ...``, result
    ``out``); ``dtypes`` one name for all operands or one per operand."""
    from einc.frontend.program import expression_program

    subscripts, shapes = rand_equation(seed, **kw)
    return expression_program(subscripts, shapes, dtypes)


class EinsumCall(NamedTuple):
    subscripts: str
    shapes: list[tuple[int, ...]]
    dtypes: list[str]


def einsum_calls(*, dtypes: Sequence[str] = ("float64",), **kw):
    """Hypothesis strategy of ``EinsumCall(subscripts, shapes, dtypes)``: valid numpy einsum calls.

    ``dtypes``: the operand dtypes to draw from (one per operand).  Other keywords as ``equation``.
    """
    from hypothesis import strategies as st

    @st.composite
    def calls(draw):
        ch = DrawChooser(draw)
        subscripts, shapes = equation(ch, **kw)
        return EinsumCall(subscripts, shapes, [ch.choice(dtypes) for _ in shapes])

    return calls()


# ---------------------------------------------------------------------------------- programs


def _einsum_step(ch: Chooser, name: str, env: dict[str, TensorType], *, max_operands: int, max_rank: int,
                 repeated: bool, broadcast: bool) -> Einsum:
    """An einsum over existing values: labels fitted to their shapes, a random output."""
    operands = [ch.choice(list(env)) for _ in range(ch.integer(1, max_operands))]
    size: dict[str, int] = {}
    inputs = []
    for o in operands:
        shape = env[o].shape
        labs: list[str] = []
        for n in shape:
            fits = [c for c, m in size.items()
                    if (m == n or (broadcast and (m == 1 or n == 1)))
                    and (repeated or c not in labs)
                    and all(n2 == n for c2, n2 in zip(labs, shape) if c2 == c)]  # a diagonal is square
            if fits and ch.boolean(0.6):
                c = ch.choice(fits)
            else:
                fresh = [c for c in LABELS if c not in size]
                c = ch.choice(fresh[:26] if ch.boolean(0.85) else fresh)
            labs.append(c)
            if size.get(c, 1) == 1:
                size[c] = n
        inputs.append("".join(labs))
    labels = [c for c in LABELS if c in size]
    out = "".join(ch.sample(labels, ch.integer(0, min(len(labels), max_rank))))
    typ = TensorType(tuple(size[c] for c in out), result_dtype(*[env[o].dtype for o in operands]))
    return Einsum(name, tuple(operands), tuple(inputs), out, typ)


def program(ch: Chooser, *, max_inputs: int = 3, max_steps: int = 4, max_operands: int = 3, max_rank: int = 4,
            max_size: int = 3, dtypes: Sequence[str] = DTYPES, casts: bool = True, repeated: bool = True,
            broadcast: bool = True, max_outputs: int = 3) -> Program:
    """A random valid multi-step ``Program``, its choices made by ``ch``; it passes ``einc.ir.verify``.

    Steps are einsums over earlier values (repeated labels, size-1 broadcasting, any output order)
    and casts to any of ``dtypes``; no result has rank above ``max_rank``.
    """
    from einc.ir.verify import verify

    used: set[str] = set()

    def new_name() -> str:
        if ch.boolean(0.8):
            free = [n for n in _NAMES if n not in used]
            if free:
                used.add(name := ch.choice(free))
                return name
        i = len(used)
        while f"v{i}" in used:
            i += 1
        used.add(f"v{i}")
        return f"v{i}"

    env: dict[str, TensorType] = {}
    inputs = []
    for _ in range(ch.integer(1, max_inputs)):
        t = TensorType(tuple(ch.integer(1, max_size) for _ in range(ch.integer(0, max_rank))), ch.choice(dtypes))
        v = Value(new_name(), t)
        inputs.append(v)
        env[v.name] = t
    body = []
    for _ in range(ch.integer(1, max_steps)):
        name = new_name()
        if casts and ch.boolean(0.2):
            src = ch.choice(list(env))
            op = Cast(name, src, TensorType(env[src].shape, ch.choice(dtypes)))
        else:
            op = _einsum_step(ch, name, env, max_operands=max_operands, max_rank=max_rank, repeated=repeated,
                              broadcast=broadcast)
        body.append(op)
        env[name] = op.type
    names = list(env)
    outputs = [body[-1].result] + [ch.choice(names) for _ in range(ch.integer(0, max_outputs - 1))]
    if ch.boolean(0.5):
        outputs.reverse()
    return verify(Program(tuple(inputs), tuple(body), tuple(outputs)))


def rand_program(seed, **kw) -> Program:
    """A random valid ``Program``, the same for the same seed.  Keywords as ``program``."""
    return program(RandomChooser(seed), **kw)


def programs(**kw):
    """Hypothesis strategy of valid multi-step ``Program``s (they pass ``einc.ir.verify``).

    Keywords as ``program``: ``max_inputs``, ``max_steps``, ``max_operands``, ``max_rank``,
    ``max_size``, ``dtypes``, ``casts``, ``repeated``, ``broadcast``, ``max_outputs``.
    """
    from hypothesis import strategies as st

    @st.composite
    def progs(draw):
        return program(DrawChooser(draw), **kw)

    return progs()


# ---------------------------------------------------------------------------------- operands


def random_array(shape, dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Small values of ``dtype``: bools, integers in [-3, 3] ([0, 3] unsigned), floats in [-1, 1)."""
    shape = tuple(shape)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("int"):
        return rng.integers(-3, 4, shape).astype(dtype)
    if dtype.startswith("uint"):
        return rng.integers(0, 4, shape).astype(dtype)
    if dtype.startswith("complex"):
        return (rng.uniform(-1, 1, shape) + 1j * rng.uniform(-1, 1, shape)).astype(dtype)
    return rng.uniform(-1, 1, shape).astype(np_dtype(dtype))


def random_arrays(shapes, dtypes, seed=0) -> list[np.ndarray]:
    """One array per shape; ``dtypes`` one name for all or one per shape.  A ``Program`` gives both:
    ``random_arrays(*program_signature(prog), seed)``."""
    rng = np.random.default_rng(seed)
    if isinstance(dtypes, str):
        dtypes = [dtypes] * len(shapes)
    return [random_array(s, d, rng) for s, d in zip(shapes, dtypes)]


def program_signature(prog: Program) -> tuple[list[tuple[int, ...]], list[str]]:
    """``(shapes, dtypes)`` of a program's inputs, for ``random_arrays``."""
    return [v.type.shape for v in prog.inputs], [v.type.dtype for v in prog.inputs]


__all__ = ["Chooser", "RandomChooser", "DrawChooser", "equation", "rand_equation", "rand_equation_program",
           "EinsumCall", "einsum_calls",
           "program", "rand_program", "programs", "random_array", "random_arrays", "program_signature"]
