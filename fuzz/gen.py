"""Generators of valid einc programs: a typed generator (any rank, dtype, repeated labels,
broadcast, several steps, casts) and a grammar generator (``.ein`` text through hypothesis'
``from_lark`` over ``frontend/program.lark``, which mostly exercises the frontend's error paths).

Every function takes a ``random.Random`` so a campaign is reproducible from its seed.
"""
from __future__ import annotations

import math
import random
from dataclasses import replace

from einc.ir.nodes import LABELS, Cast, Einsum, Program, Value, einsum_sizes, single_einsum
from einc.ir.types import TensorType, result_dtype
from einc.ir.verify import verify

#: dtypes the generator draws, weighted towards what the lowering handles natively (complex values
#: compile as their real form, ``einc.ir.realify``)
DTYPE_WEIGHTS = {
    "float32": 10, "float64": 4, "float16": 2, "bfloat16": 1,
    "int32": 3, "int64": 2, "int8": 1, "int16": 1, "uint8": 1, "uint32": 1, "bool": 1,
    "complex64": 1, "complex128": 0.5,
}
SIZES = (1, 1, 2, 3, 4, 5, 7, 8, 16)
MAX_ELEMS = 4096  # per tensor
MAX_ITERS = 60_000  # iteration space per step


def pick_dtype(rng: random.Random) -> str:
    names = list(DTYPE_WEIGHTS)
    return rng.choices(names, weights=[DTYPE_WEIGHTS[n] for n in names])[0]


def retype(prog: Program) -> Program:
    """Recompute every step's result type from its operands (shape from the labels, dtype by numpy's
    promotion; a cast keeps its dtype).  Mutators change inputs and then call this; ``verify`` decides."""
    env = {v.name: v.type for v in prog.inputs}
    body = []
    for op in prog.body:
        ts = [env[o] for o in op.operands]
        if isinstance(op, Einsum):
            if len(op.inputs) != len(ts) or any(len(l) != t.rank for l, t in zip(op.inputs, ts)):
                raise ValueError("labels do not match operand ranks")
            sizes = einsum_sizes(op, ts)
            if any(c not in sizes for c in op.output):
                raise ValueError("output label not in any operand")
            dt = result_dtype(*[t.dtype for t in ts]) if ts else op.type.dtype
            op = replace(op, type=TensorType(tuple(sizes[c] for c in op.output), dt))
        else:
            op = replace(op, type=TensorType(ts[0].shape, op.type.dtype))
        env[op.result] = op.type
        body.append(op)
    return prog.replace(body=tuple(body))


def _iters(op: Einsum, types) -> int:
    n = 1
    for s in einsum_sizes(op, types).values():
        n *= max(1, s)
    return n


MAX_OPS = 8
MAX_INPUTS = 6


def small_enough(prog: Program) -> bool:
    if len(prog.body) > MAX_OPS or len(prog.inputs) > MAX_INPUTS:
        return False
    env = {v.name: v.type for v in prog.inputs}
    if any(t.size > MAX_ELEMS for t in env.values()):
        return False
    for op in prog.body:
        if op.type.size > MAX_ELEMS:
            return False
        if isinstance(op, Einsum) and _iters(op, [env[o] for o in op.operands]) > MAX_ITERS:
            return False
        env[op.result] = op.type
    return True


class _Builder:
    def __init__(self, rng: random.Random, dtypes: list[str]):
        self.rng = rng
        self.dtypes = dtypes
        self.inputs: list[Value] = []
        self.body: list = []
        self.env: dict[str, TensorType] = {}

    def fresh(self, prefix: str) -> str:
        i = len(self.env)
        while f"{prefix}{i}" in self.env:
            i += 1
        return f"{prefix}{i}"

    def new_input(self, labels: str, sizes: dict[str, int]) -> str:
        rng = self.rng
        shape = []
        for c in labels:
            n = sizes[c]
            # broadcast: a size-1 axis for a label that is larger elsewhere (not on repeated labels)
            if n > 1 and labels.count(c) == 1 and rng.random() < 0.1:
                n = 1
            shape.append(n)
        name = self.fresh("x")
        t = TensorType(tuple(shape), rng.choice(self.dtypes))
        self.inputs.append(Value(name, t))
        self.env[name] = t
        return name

    def permutation(self) -> bool:
        """A pure transpose of an existing value of rank >= 2 (what the ``transposes`` pass folds)."""
        rng = self.rng
        cands = [n for n, t in self.env.items() if t.rank >= 2]
        if not cands:
            return False
        src = rng.choice(cands)
        t = self.env[src]
        labs = "".join(rng.sample(LABELS[:26], t.rank))
        perm = list(labs)
        while "".join(perm) == labs:
            rng.shuffle(perm)
        out = "".join(perm)
        op = Einsum(self.fresh("p"), (src,), (labs,), out, TensorType(tuple(t.shape[labs.index(c)] for c in out), t.dtype))
        self.body.append(op)
        self.env[op.result] = op.type
        return True

    def step(self) -> None:
        rng = self.rng
        feed = None
        if self.body and rng.random() < 0.15 and self.permutation():
            # a transpose usually feeds a step (the pattern the transposes pass folds), else it is an output
            if rng.random() < 0.3:
                return
            feed = self.body[-1].result
        pool = list(rng.sample(LABELS[:26] if rng.random() < 0.9 else LABELS, rng.randint(1, 5)))
        sizes = {c: rng.choice(SIZES) for c in pool}
        arity = rng.choices([1, 2, 3, 4], weights=[3, 6, 2, 1])[0]
        operands, inputs = [], []
        for slot in range(arity):
            reuse = [n for n, t in self.env.items() if t.rank <= 5]
            if (feed and slot == 0) or (reuse and rng.random() < (0.7 if self.body else 0.3)):
                name = feed if (feed and slot == 0) else rng.choice(reuse)
                t = self.env[name]
                labs = []
                for n in t.shape:
                    fits = [c for c in pool if sizes[c] == n or n == 1]
                    if fits and rng.random() < 0.8:
                        c = rng.choice(fits)
                        if labs.count(c) and t.shape[labs.index(c)] != n:  # repeated label: one size
                            c = None
                    else:
                        c = None
                    if c is None:
                        c = rng.choice([x for x in LABELS if x not in pool and x not in sizes] or ["Z"])
                        pool.append(c)
                        sizes[c] = n
                    labs.append(c)
                operands.append(name)
                inputs.append("".join(labs))
            else:
                rank = rng.choices([0, 1, 2, 3, 4], weights=[1, 3, 5, 3, 1])[0]
                labs = "".join(rng.choice(pool) for _ in range(rank))
                operands.append(self.new_input(labs, sizes))
                inputs.append(labs)
        seen = []
        for c in "".join(inputs):
            if c not in seen:
                seen.append(c)
        k = rng.randint(0, len(seen))
        out = "".join(rng.sample(seen, k))
        types = [self.env[o] for o in operands]
        dt = result_dtype(*[t.dtype for t in types])
        op = Einsum(self.fresh("t"), tuple(operands), tuple(inputs), out, TensorType((), dt))
        sz = einsum_sizes(op, types)
        op = replace(op, type=TensorType(tuple(sz[c] for c in out), dt))
        self.body.append(op)
        self.env[op.result] = op.type

    def cast(self) -> None:
        src = self.body[-1].result if self.body else self.inputs[-1].name
        t = self.env[src]
        dt = pick_dtype(self.rng)
        op = Cast(self.fresh("c"), src, TensorType(t.shape, dt))
        self.body.append(op)
        self.env[op.result] = op.type


def random_program(rng: random.Random, max_steps: int = 3, tries: int = 50) -> Program:
    """A verified, small program of 1..max_steps einsum steps (and sometimes casts)."""
    for _ in range(tries):
        mixed = rng.random() < 0.2
        base = pick_dtype(rng)
        dtypes = [base] + ([pick_dtype(rng)] if mixed else [])
        b = _Builder(rng, dtypes)
        try:
            for _ in range(rng.randint(1, max_steps)):
                b.step()
                if rng.random() < 0.1:
                    b.cast()
            last = b.body[-1].result
            outs = [last]
            others = [op.result for op in b.body[:-1]]
            if others and rng.random() < 0.2:
                outs.append(rng.choice(others))
            prog = Program(tuple(b.inputs), tuple(b.body), tuple(outs))
            verify(prog)
        except Exception:  # noqa: BLE001 - a draw that breaks an invariant is simply redrawn
            continue
        if small_enough(prog):
            return prog
    return _fallback(rng)


def _fallback(rng: random.Random) -> Program:
    n = rng.choice((2, 3, 4))
    return single_einsum("ij,jk->ik", [TensorType((n, n + 1), "float32"), TensorType((n + 1, 2), "float32")])


#: extents of GEMM-shaped programs: on and off the GPU rules' tiles (16, 32, 128) and small ones
GEMM_SIZES = (1, 2, 3, 8, 15, 16, 17, 31, 32, 33, 48, 64, 100, 128)
#: their dtypes: the tensor-core dtypes much more often than ``DTYPE_WEIGHTS`` draws them
GEMM_DTYPES = {"float32": 6, "float16": 4, "bfloat16": 3, "float64": 1, "int8": 1, "int32": 1}
GEMM_MAX_ELEMS = 64 * 1024  # per tensor (what the CUDA emulator takes)
GEMM_MAX_ITERS = 2_000_000


def gemm_program(rng: random.Random, tries: int = 50) -> Program:
    """A two-operand contraction shaped like a GEMM, at the extents the GPU rules tile: M, N and K
    labels, sometimes a batch label or a second M, N or K label (short), sometimes a long K (the
    split-K paths), operands and output in shuffled layouts.  ``random_program``'s extents (up to 16,
    4096 elements) never reach a 32-wide tile or the tensor-core rule; cuda-emu campaigns draw these
    too (a partial M tile with two contracted labels failed to build: found by such shapes)."""
    for _ in range(tries):
        labels = iter(LABELS)
        roles = {r: [next(labels)] for r in "mnk"}
        roles["b"] = []
        for _ in range(rng.choice((0, 0, 1, 2))):
            roles[rng.choice("bmnk")].append(next(labels))
        sizes = {c: rng.choice(GEMM_SIZES) for c in roles["m"][:1] + roles["n"][:1] + roles["k"][:1]}
        sizes.update({c: rng.randint(1, 4) for c in roles["b"] + roles["m"][1:] + roles["n"][1:] + roles["k"][1:]})
        if rng.random() < 0.2:
            sizes[roles["k"][0]] = rng.choice((256, 512, 1000, 1024))
        parts = [roles["b"] + roles["m"] + roles["k"], roles["b"] + roles["k"] + roles["n"],
                 roles["b"] + roles["m"] + roles["n"]]
        for p in parts:
            if rng.random() < 0.4:
                rng.shuffle(p)
        a, b, out = ("".join(p) for p in parts)
        names = list(GEMM_DTYPES)
        dt = rng.choices(names, weights=[GEMM_DTYPES[n] for n in names])[0]
        types = [TensorType(tuple(sizes[c] for c in labs), dt) for labs in (a, b)]
        out_size, iters = math.prod(sizes[c] for c in out), math.prod(sizes.values())
        if max(t.size for t in types) > GEMM_MAX_ELEMS or out_size > GEMM_MAX_ELEMS or iters > GEMM_MAX_ITERS:
            continue
        prog = single_einsum(f"{a},{b}->{out}", types)
        verify(prog)
        return prog
    return _fallback(rng)


def program_from_testing(seed: int) -> Program | None:
    """A program from ``einc.testing`` (the generators the tests share): ``rand_program`` or, half the
    time, ``rand_equation_program`` (numpy subscripts through the frontend: implicit outputs,
    ellipses); ``None`` when that module is missing or the draw fails."""
    try:
        from einc import testing
    except ImportError:
        return None
    rng = random.Random(seed)
    try:
        if rng.random() < 0.5 and hasattr(testing, "rand_equation_program"):
            got = testing.rand_equation_program(seed, dtypes=pick_dtype(rng))
        else:
            got = testing.rand_program(seed)
    except Exception:  # noqa: BLE001 - e.g. a dtype that equation does not take
        return None
    if isinstance(got, Program) and small_enough(got):
        return got
    return None


# ---------------------------------------------------------------------------------------------
# .ein text from the grammar (hypothesis from_lark)

_GRAMMAR_STRATEGY = None


def _grammar_strategy():
    global _GRAMMAR_STRATEGY
    if _GRAMMAR_STRATEGY is None:
        from importlib import resources

        from hypothesis import strategies as st
        from hypothesis.extra.lark import from_lark
        from lark import Lark

        text = resources.files("einc.frontend").joinpath("program.lark").read_text()
        grammar = Lark(text, parser="lalr", start="start")
        # from_lark puts no separator between adjacent NAMEs: each drawn name carries a trailing blank
        names = st.sampled_from([w + " " for w in ("input", "output", "einsum", "cast", "float32", "int32",
                                                   "float64", "bool", "a", "b", "c", "x", "y", "float16")])
        subs = st.sampled_from(['"ij,jk->ik"', '"ij->ji"', '"ii->i"', '"...i,...i->..."', '"i,j"',
                                '"ij,jk"', '"->"', '"ijk->"', '"i->ii"', '"a..."', "'ij'", '""'])
        _GRAMMAR_STRATEGY = from_lark(grammar, start="start", explicit={
            "NAME": names, "STRING": subs, "INT": st.sampled_from(["0", "1", "2", "3", "4"]),
            "_NL": st.just("\n"), "COMMENT": st.just("# c")})
    return _GRAMMAR_STRATEGY


def grammar_text(seed: int) -> str:
    """A ``.ein`` text drawn from the grammar: syntactically valid, rarely well-typed.

    hypothesis' ``.example()`` draws from its own randomness, so the text is not a function of
    ``seed`` alone; the corpus stores the text itself, so replays are exact all the same."""
    import warnings

    from hypothesis.errors import NonInteractiveExampleWarning

    strat = _grammar_strategy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        # .example() draws from a random seed of its own; seeding Python's RNG pins it per call
        state = random.getstate()
        random.seed(seed)
        try:
            return strat.example()
        finally:
            random.setstate(state)


def text_with_ellipsis(prog: Program, rng: random.Random) -> str | None:
    """Print ``prog`` as ``.ein`` text where one einsum's shared leading labels become ``...``
    (the IR has no ellipsis: only text can carry one, so the parser's expansion gets fuzzed)."""
    try:
        from einc.ir.printer import print_program
    except ImportError:
        return None
    cands = [i for i, op in enumerate(prog.body) if isinstance(op, Einsum) and op.inputs and all(op.inputs)]
    text = print_program(prog)
    if not cands:
        return text
    op = prog.body[rng.choice(cands)]
    # the labels every operand starts with, in the same order, and that the output starts with too
    k = min(len(x) for x in op.inputs)
    lead = 0
    while (lead < k and len({x[lead] for x in op.inputs}) == 1
           and not any(op.inputs[0][lead] in x[lead + 1:] for x in op.inputs + (op.output,))):
        lead += 1
    if lead == 0 or not op.output.startswith(op.inputs[0][:lead]):
        return text
    lead = rng.randint(1, lead)
    new = ",".join("..." + x[lead:] for x in op.inputs) + "->..." + op.output[lead:]
    return text.replace(f'"{op.subscripts}"', f'"{new}"', 1)
