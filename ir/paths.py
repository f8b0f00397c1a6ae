"""Contraction paths: in which order to contract the operands of an n-ary einsum.

``find_path`` asks opt_einsum's searches (greedy, optimal, dp, branch-and-bound) for an order and
then does its own accounting: the FLOPs of every step, the naive cost of one n-ary loop nest, the
largest intermediate, and the memory limit, which every optimizer honours (a search whose path
builds an intermediate over the limit is cut there and the remaining operands contract in one
step, as numpy and opt_einsum do).

Conventions (numpy's and opt_einsum's):

* a path is a tuple of steps; a step is a tuple of positions in the *current* operand list; the
  operands it names are removed and its result is appended at the end;
* a step over ``k`` operands touching the labels ``L`` costs ``prod(sizes[L]) * (max(1, k-1) + s)``
  FLOPs, where ``s`` is 1 when the step sums a label away and 0 otherwise;
* the memory limit counts elements and bounds every intermediate a path builds; the last step's
  result is the einsum's output, which has to exist anyway, so it is not bounded;
* ``largest_intermediate`` is the largest result of any step, the output included (numpy's report).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from einc.errors import PathError

# optimizer name -> opt_einsum path function name; "auto" picks one by operand count (below).
OPTIMIZERS: tuple[str, ...] = ("auto", "greedy", "optimal", "dp", "branch-all", "branch-2", "branch-1", "auto-hq")
_OE_NAMES = {"greedy": "greedy", "optimal": "optimal", "dp": "dp", "branch-all": "branch-all",
             "branch-2": "branch-2", "branch-1": "branch-1", "auto-hq": "auto-hq"}
# "auto": exhaustive search while it is cheap, then branch-and-bound with a shrinking width, then greedy
# (the same operand-count thresholds as opt_einsum's "auto", but the choice is recorded in PathInfo).
_AUTO = ((4, "optimal"), (6, "branch-all"), (8, "branch-2"), (14, "branch-1"))

# "optimal" searches exhaustively up to this many operands, then runs "dp" (recorded in PathInfo.optimizer)
_OPTIMAL_MAX = 10

Path = tuple[tuple[int, ...], ...]


def _size(labels, sizes: Mapping[str, int]) -> int:
    n = 1
    for lab in set(labels):
        n *= sizes[lab]
    return n


def flop_count(labels, summed: bool, num_operands: int, sizes: Mapping[str, int]) -> int:
    """FLOPs of one loop nest over ``labels`` multiplying ``num_operands`` operands (+1 add if ``summed``)."""
    return _size(labels, sizes) * (max(1, num_operands - 1) + (1 if summed else 0))


@dataclass(frozen=True)
class Step:
    """One contraction of a path: which operands, the einsum it performs, what it costs."""

    positions: tuple[int, ...]  # as written in the path: positions in the current operand list
    inputs: tuple[str, ...]  # labels of the contracted operands, in ascending position order
    output: str  # labels of the result (the einsum's output for the last step)
    flops: int
    size: int  # elements of the result
    remaining: tuple[str, ...]  # labels of the operand list after this step

    @property
    def subscripts(self) -> str:
        return ",".join(self.inputs) + "->" + self.output

    @property
    def summed(self) -> str:
        """Labels this step sums away, in first-appearance order."""
        return "".join(dict.fromkeys(c for c in "".join(self.inputs) if c not in self.output))

    @property
    def scaling(self) -> int:
        """Number of distinct labels of the loop nest (the exponent of its cost)."""
        return len(set("".join(self.inputs)))


@dataclass(frozen=True)
class PathInfo:
    """A contraction path with its cost.  ``optimizer`` names the search that actually ran
    (``"auto"`` resolves to one), ``"explicit"`` for a given path, ``"none"`` for ``optimize=False``."""

    inputs: tuple[str, ...]
    output: str
    size_items: tuple[tuple[str, int], ...]
    path: Path
    steps: tuple[Step, ...]
    flops: int
    naive_flops: int
    largest_intermediate: int
    optimizer: str
    memory_limit: int | None = None

    @property
    def sizes(self) -> dict[str, int]:
        return dict(self.size_items)

    @property
    def subscripts(self) -> str:
        return ",".join(self.inputs) + "->" + self.output

    @property
    def speedup(self) -> float:
        """naive FLOPs / path FLOPs (1.0 when both are zero)."""
        if self.flops == 0:
            return 1.0 if self.naive_flops == 0 else math.inf
        return self.naive_flops / self.flops

    def numpy_path(self) -> list:
        """The path in ``numpy.einsum_path``'s form: ``['einsum_path', (0, 1), ...]``."""
        return ["einsum_path", *self.path]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with a stable key order (what ``einc explain --json`` prints)."""
        return {
            "subscripts": self.subscripts,
            "sizes": dict(self.size_items),
            "optimizer": self.optimizer,
            "memory_limit": self.memory_limit,
            "path": [list(p) for p in self.path],
            "steps": [
                {"positions": list(s.positions), "subscripts": s.subscripts, "summed": s.summed,
                 "flops": s.flops, "size": s.size, "scaling": s.scaling,
                 "remaining": ",".join(s.remaining) + "->" + self.output}
                for s in self.steps
            ],
            "flops": self.flops,
            "naive_flops": self.naive_flops,
            "speedup": self.speedup if math.isfinite(self.speedup) else None,
            "largest_intermediate": self.largest_intermediate,
        }


# ----------------------------------------------------------------------------------------------- search


def find_path(inputs: Sequence[str], output: str, sizes: Mapping[str, int], optimize: Any = "auto",
              memory_limit: int | str | None = None) -> PathInfo:
    """The contraction path for ``inputs -> output`` (labels per operand) with label ``sizes``.

    ``optimize``: ``False``/``None`` (one n-ary step), ``True`` (``"greedy"``, as numpy), an optimizer
    name (``"auto"``, ``"greedy"``, ``"optimal"``, ``"dp"``, ``"branch-all"``, ``"branch-2"``,
    ``"branch-1"``, ``"auto-hq"``; ``"optimal"`` runs ``"dp"`` above 10 operands), numpy's ``(name, memory_limit)`` pair, or an explicit path: a list of
    position tuples, optionally headed by ``'einsum_path'``.  ``memory_limit``: ``None`` (no limit), a
    number of elements, or ``"max_input"`` (the largest input or output, as numpy's default).
    """
    inputs = tuple(inputs)
    missing = sorted({c for c in "".join(inputs) + output if c not in sizes})
    if missing:
        raise PathError(f"no size for label(s) {', '.join(map(repr, missing))}")
    sizes = {c: int(sizes[c]) for c in dict.fromkeys("".join(inputs) + output)}
    strategy, explicit, limit = _parse_optimize(optimize, memory_limit)
    limit = _memory_arg(limit, inputs, output, sizes)
    n = len(inputs)

    if explicit is not None:
        path, name = _check_explicit(explicit, n), "explicit"
    elif strategy is None:
        path, name = ((tuple(range(n)),) if n else ()), "none"
    else:
        name = strategy
        if strategy == "auto":
            name = next((opt for most, opt in _AUTO if n <= most), "greedy")
        elif strategy == "optimal" and n > _OPTIMAL_MAX:
            name = "dp"  # exhaustive search is factorial in the operand count; dp is exact and polynomial-ish
        if n <= 2:
            path = (tuple(range(n)),) if n else ()
        else:
            path = _limited_search(name, inputs, output, sizes, limit)
    info = _account(inputs, output, sizes, path, name, limit)
    if explicit is not None and limit is not None:
        for k, st in enumerate(info.steps[:-1]):
            if st.size > limit:
                raise PathError(f"explicit path step {k} {st.positions} builds an intermediate of {st.size} "
                                f"elements, over the memory limit of {limit}")
    return info


def _parse_optimize(optimize, memory_limit):
    """-> (strategy name or None, explicit path or None, memory limit)."""
    if optimize is None or optimize is False:
        return None, None, memory_limit
    if optimize is True:
        return "greedy", None, memory_limit
    if isinstance(optimize, str):
        name = optimize.strip().lower()
        if name not in OPTIMIZERS:
            raise PathError(f"unknown path optimizer {optimize!r}; valid: {', '.join(OPTIMIZERS)}, "
                            "True, False, or an explicit path")
        return name, None, memory_limit
    if isinstance(optimize, (list, tuple)):
        seq = list(optimize)
        if len(seq) == 2 and isinstance(seq[0], str) and seq[0] != "einsum_path" and _is_number(seq[1]):
            if memory_limit is not None:
                raise PathError("memory limit given twice: in optimize=(name, limit) and memory_limit=")
            name, _, _ = _parse_optimize(seq[0], None)
            return name, None, int(seq[1])
        if seq and seq[0] == "einsum_path":
            seq = seq[1:]
        return None, seq, memory_limit
    raise PathError(f"optimize={optimize!r} is not understood: give True, False, an optimizer name "
                    f"({', '.join(OPTIMIZERS)}) or an explicit path like [(0, 1), (0, 1)]")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _memory_arg(limit, inputs, output, sizes) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, str):
        if limit != "max_input":
            raise PathError(f"memory_limit={limit!r}: give a number of elements, None or 'max_input'")
        return max([_size(t, sizes) for t in inputs] + [_size(output, sizes)])
    if not _is_number(limit) or (isinstance(limit, float) and not math.isfinite(limit)):
        if isinstance(limit, float) and limit == math.inf:
            return None
        raise PathError(f"memory_limit={limit!r}: give a number of elements, None or 'max_input'")
    if limit == -1:  # numpy / opt_einsum spelling of "no limit"
        return None
    if limit < 1:
        raise PathError(f"memory_limit={limit!r} must be at least 1 element")
    return int(limit)


def _check_explicit(steps, n: int) -> Path:
    out, count = [], n
    for k, st in enumerate(steps):
        if isinstance(st, (int, str)) or not isinstance(st, Sequence):
            raise PathError(f"path step {k} is {st!r}: each step is a tuple of operand positions like (0, 1)")
        st = tuple(st)
        if not st:
            raise PathError(f"path step {k} is empty: each step contracts at least one operand")
        for p in st:
            if isinstance(p, bool) or not isinstance(p, int):
                raise PathError(f"path step {k} {st!r}: position {p!r} is not an integer")
            if not 0 <= p < count:
                raise PathError(f"path step {k} {st!r}: position {p} is out of range; "
                                f"{count} operand(s) remain at that step (positions 0..{count - 1})")
        if len(set(st)) != len(st):
            raise PathError(f"path step {k} {st!r} names an operand twice")
        out.append(st)
        count = count - len(st) + 1
    if n and count != 1:
        raise PathError(f"the path leaves {count} operands uncontracted; add a final step "
                        f"{tuple(range(count))} to finish it")
    if not n and out:
        raise PathError("the einsum has no operands, so the path must be empty")
    return tuple(out)


def _search(name, inputs, output, sizes, limit) -> Path:
    import opt_einsum.paths as oep

    fn = oep.get_path_fn(_OE_NAMES[name])
    args = ([frozenset(t) for t in inputs], frozenset(output), dict(sizes))
    try:
        path = fn(*args, limit)
    except RuntimeError:  # dp gives up when no pairwise order fits the limit: search freely, cut below
        path = fn(*args, None)
    return tuple(tuple(int(p) for p in st) for st in path)


def _limited_search(name, inputs, output, sizes, limit) -> Path:
    """``_search`` cut at the memory limit; when the cut leaves three or more operands to contract at
    once, the operands left are searched again.  (opt_einsum's greedy stops at its first candidate
    over the limit, though a search over what is left may still pair some below it: without this,
    ``decompose`` split that last step further when run a second time.)"""
    path = _enforce_limit(_search(name, inputs, output, sizes, limit), inputs, output, sizes, limit)
    while limit is not None and len(path) > 1 and len(path[-1]) > 2:
        ops = _remaining(path[:-1], inputs, output)
        more = _enforce_limit(_search(name, ops, output, sizes, limit), ops, output, sizes, limit)
        if len(more) <= 1:
            break
        path = path[:-1] + more
    return path


def _remaining(path: Path, inputs, output) -> list[str]:
    """The operands' labels after the steps of ``path`` (each result keeps the labels used later)."""
    ops = [frozenset(t) for t in inputs]
    out = frozenset(output)
    for st in path:
        rest, keep = _contract(ops, st, out)
        ops = rest + [keep]
    return ["".join(sorted(o)) for o in ops]


def _contract(ops: list[frozenset], st, out: frozenset) -> tuple[list[frozenset], frozenset]:
    """The operands a step leaves, and its result's labels: those the output or a left operand needs."""
    rest = [o for i, o in enumerate(ops) if i not in set(st)]
    return rest, frozenset().union(*(ops[p] for p in st)) & out.union(*rest)


def _enforce_limit(path: Path, inputs, output, sizes, limit) -> Path:
    """Cut ``path`` before its first step whose intermediate exceeds ``limit``; contract the rest at once."""
    if limit is None:
        return path
    ops = [frozenset(t) for t in inputs]
    out = frozenset(output)
    kept = []
    for k, st in enumerate(path):
        if len(ops) - len(st) + 1 == 1:  # the last step: its result is the output
            kept.append(st)
            ops = [ops[0]]
            break
        rest, keep = _contract(ops, st, out)
        if _size(keep, sizes) > limit:
            kept.append(tuple(range(len(ops))))
            ops = [out]
            break
        kept.append(st)
        ops = rest + [keep]
    if len(ops) > 1:  # the search left operands (should not happen); finish in one step
        kept.append(tuple(range(len(ops))))
    return tuple(kept)


def _account(inputs, output, sizes, path: Path, name: str, limit) -> PathInfo:
    ops = list(inputs)
    steps = []
    for k, st in enumerate(path):
        picked = sorted(st)
        step_in = tuple(ops[p] for p in picked)
        rest = [o for i, o in enumerate(ops) if i not in set(st)]
        if k == len(path) - 1:
            res = output
        else:
            # kept labels: those of the einsum's output first, in its order, then the ones a later step
            # contracts, in first-appearance order (the final step then rarely has to permute)
            alive = set().union(*rest)
            here = set("".join(step_in))
            res = "".join(c for c in output if c in here)
            res += "".join(c for c in dict.fromkeys("".join(step_in)) if c in alive and c not in output)
        touched = "".join(step_in)
        summed = any(c not in res for c in touched)
        steps.append(Step(tuple(st), step_in, res, flop_count(touched, summed, len(st), sizes),
                          _size(res, sizes), tuple(rest) + (res,)))
        ops = rest + [res]
    all_labels = "".join(inputs)
    naive = flop_count(all_labels, any(c not in output for c in all_labels), len(inputs), sizes) if inputs else 0
    return PathInfo(
        inputs=tuple(inputs), output=output, size_items=tuple(sizes.items()), path=tuple(path),
        steps=tuple(steps), flops=sum(s.flops for s in steps), naive_flops=naive,
        largest_intermediate=max((s.size for s in steps), default=_size(output, sizes)),
        optimizer=name, memory_limit=limit,
    )


# ----------------------------------------------------------------------------------------------- report


def numpy_report(info: PathInfo) -> str:
    """The text ``numpy.einsum_path`` prints for this path (numpy's own cost conventions: its naive cost
    counts an add whenever a label is shared, its optimized cost adds 1, and intermediates list their
    labels by size)."""
    sizes = info.sizes
    inputs = list(info.inputs)
    out_set = set(info.output)
    sets = [set(t) for t in inputs]
    indices = set("".join(inputs))
    costs, scales, result_sizes, rows = [], [], [], []
    for k, st in enumerate(info.path):
        st = tuple(sorted(st, reverse=True))
        contract = set().union(*(sets[p] for p in st))
        remain_sets = [s for i, s in enumerate(sets) if i not in st]
        new = contract & out_set.union(*remain_sets)
        costs.append(flop_count(contract, bool(contract - new), len(st), sizes))
        scales.append(len(contract))
        result_sizes.append(_size(new, sizes))
        picked = [inputs.pop(p) for p in st]
        res = info.output if k == len(info.path) - 1 else "".join(c for _, c in sorted((sizes[c], c) for c in new))
        inputs.append(res)
        sets = remain_sets + [new]
        rows.append((",".join(picked) + "->" + res, ",".join(inputs) + "->" + info.output))
    all_in = list(info.inputs)
    inner = sum(len(set(t)) for t in all_in) - len(indices) > 0
    naive = flop_count(indices, inner, len(all_in), sizes)
    opt = sum(costs) + 1
    text = f"  Complete contraction:  {info.subscripts}\n"
    text += f"         Naive scaling:  {len(indices)}\n"
    text += "     Optimized scaling:  %d\n" % max(scales, default=0)
    text += f"      Naive FLOP count:  {naive:.3e}\n"
    text += f"  Optimized FLOP count:  {opt:.3e}\n"
    text += f"   Theoretical speedup:  {naive / opt:3.3f}\n"
    text += f"  Largest intermediate:  {max(result_sizes, default=1):.3e} elements\n"
    text += "-" * 74 + "\n"
    text += "%6s %24s %40s\n" % ("scaling", "current", "remaining")
    text += "-" * 74
    for scale, (cur, rem) in zip(scales, rows):
        text += "\n%4d    %24s %40s" % (scale, cur, rem)
    return text


__all__ = ["OPTIMIZERS", "Path", "PathInfo", "Step", "find_path", "flop_count", "numpy_report"]
