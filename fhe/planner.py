"""The SIMD planner: einsum -> slot layouts + a straight-line program of CKKS operations.

Planning, in order:

1. parse the subscripts (``einc.frontend.subscripts``), rename repeated labels of an operand to
   pseudo-labels (``i`` and ``i'``: a diagonal), drop size-1 axes that broadcast;
2. merge all plaintext operands into one with numpy (plaintext work is free on the server);
3. give every label one *field* of the slot index for the whole plan (a global assignment): operands and
   intermediates then always agree, a broadcast is a replication by rotate-and-add (``log2`` rotations
   per axis) and a contraction a rotate-and-add sum; fields of summed labels are never reused, so their
   junk never needs a mask.  Encrypted inputs whose layout disagrees are moved: field by field (masked
   rotations in baby-step giant-step form, or replicate-mask-sum for a field moving to free bits, one
   level per field) or all fields at once (one level: one masked rotation per distinct slot offset,
   again baby-step giant-step);
4. try every pairwise contraction order (greedy beyond 5 operands), every priority among the given
   layouts and every way of moving, build the program for each, keep the cheapest by the cost model
   (key switches weighted by the primes they touch, products, rotation keys);
5. rotate by rarely used amounts through amounts that have keys anyway (``max_keys``: a hard budget),
   and record the level each rotation key is needed at (``Plan.key_levels``).

The program is a tuple of ``Op``; its counts are the cost model, and the ``sim`` backend counts the
same operations when it runs it (the tests check they are equal).
"""
from __future__ import annotations

import itertools
import math
import operator
from collections import Counter
from dataclasses import dataclass

from einc.errors import EincInternalError, FheError, Unsupported

from .layout import Axis, Layout, width_of

#: op kinds of the SIMD program
OP_KINDS = ("load", "rot", "add", "mul_ct", "relin", "mul_pt", "rescale", "modswitch", "output")


@dataclass(frozen=True)
class Op:
    """``out = kind(*args)``; registers are ints, ``load``'s args are (operand, ciphertext number)."""

    kind: str
    out: int
    args: tuple

    def __str__(self) -> str:
        nreg = {"load": 0, "rot": 1, "rescale": 1, "modswitch": 1, "mul_pt": 1, "output": 1}.get(self.kind, 2)
        a = ", ".join(f"%{x}" if k < nreg else (f"const{x}" if self.kind == "mul_pt" else str(x))
                      for k, x in enumerate(self.args))
        return f"%{self.out} = {self.kind}({a})" if self.out >= 0 else f"{self.kind}({a})"


@dataclass
class Plan:
    """What an encrypted einsum will do, computed from shapes alone (nothing is encrypted or keyed)."""

    expr: str
    inputs: tuple[str, ...]
    output: str
    sizes: dict
    slots: int
    kinds: tuple[str, ...]
    input_layouts: tuple            # Layout per operand (None for plaintext operands)
    output_layout: Layout | None
    output_junk: int
    ops: tuple
    consts: tuple
    path: tuple
    pt_merge: str | None
    fields: dict
    input_levels: tuple
    depth: int
    counts: dict
    rotations: dict
    rotation_keys: tuple
    moves: tuple = ()
    labels_of: tuple = ()           # per operand: label per dimension (pseudo-labels, None = broadcast)
    cost: float = 0.0               # estimated time in one-prime key switches (the search's objective)
    rotation_depths: dict = None    # amount -> fewest levels consumed before a rotation by it (key level)

    def key_levels(self, top: int) -> dict:
        """amount -> the level its rotation key needs when the operands start at level ``top``."""
        return {a: top - (self.rotation_depths or {}).get(a, 0) for a in self.rotation_keys}

    @property
    def key_switches(self) -> int:
        return self.counts.get("rot", 0)

    def summary(self) -> str:
        """A picture of the layouts, the op counts, the depth and the rotation keys."""
        nb = width_of(self.slots)
        lines = [f"encrypted einsum {self.expr}   ({self.slots} slots, bit {nb - 1} .. bit 0)"]
        names = [chr(ord("A") + k) for k in range(len(self.inputs))]
        for k, (lab, kind) in enumerate(zip(self.inputs, self.kinds)):
            lay = self.input_layouts[k]
            if lay is None:
                lines.append(f"  {names[k]}[{lab}] plaintext (encoded per use, replicated as needed)")
            else:
                lines.append(f"  {names[k]}[{lab}] {'x'.join(map(str, lay.shape)) or 'scalar'}  "
                             f"{lay.picture(_plain(self.labels_of[k], lab))}"
                             + (f"  level {self.input_levels[k]}" if self.input_levels[k] else ""))
        if self.output_layout is not None:
            pic = self.output_layout.picture(self.output or None)
            junk = "".join("~" if self.output_junk >> b & 1 else "" for b in range(nb))
            lines.append(f"  out[{self.output}] {pic}" + ("   (~ bits may hold partial sums)" if junk else ""))
        if self.moves:
            lines.append("  layout moves: " + "; ".join(self.moves))
        if self.path:
            lines.append("  contraction order: " + " ".join(f"({a},{b})" for a, b in self.path))
        c = self.counts
        lines.append(f"  ops: {c.get('rot', 0)} rotations, {c.get('mul_ct', 0)} ct-ct mult ({c.get('relin', 0)} "
                     f"relinearized), {c.get('mul_pt', 0)} "
                     f"ct-pt mult, {c.get('add', 0)} additions, {c.get('rescale', 0)} rescales, "
                     f"{c.get('modswitch', 0)} mod-switches")
        lines.append(f"  depth: {self.depth} level(s)")
        lines.append(f"  rotation keys ({len(self.rotation_keys)}): "
                     + (", ".join(str(r) for r in self.rotation_keys) or "none"))
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "expr": self.expr, "inputs": list(self.inputs), "output": self.output, "sizes": dict(self.sizes),
            "slots": self.slots, "kinds": list(self.kinds),
            "input_layouts": [None if l is None else l.to_json() for l in self.input_layouts],
            "output_layout": None if self.output_layout is None else self.output_layout.to_json(),
            "output_junk_bits": self.output_junk, "path": [list(p) for p in self.path],
            "depth": self.depth, "counts": dict(self.counts),
            "rotations": {str(k): v for k, v in sorted(self.rotations.items())},
            "rotation_keys": list(self.rotation_keys), "moves": list(self.moves),
            "rotation_depths": {str(k): v for k, v in sorted((self.rotation_depths or {}).items())},
            "ops": len(self.ops),
        }


def _plain(labels_of, lab):
    # one printable letter per dimension (a broadcast size-1 axis prints as '1')
    return "".join((l[0] if l else "1") for l in labels_of) if labels_of else lab


# ----------------------------------------------------------------------------- builder


@dataclass
class _TV:
    """An encrypted intermediate during planning: live labels, registers per tile, level, junk."""

    labels: frozenset
    keyed: tuple                    # tiled labels its ciphertexts are numbered by (sorted)
    tiles: dict                     # tuple of tile indices over ``keyed`` -> register
    junk: int = 0
    dirty: frozenset = frozenset()


@dataclass
class _PT:
    labels: frozenset


class _Builder:
    def __init__(self, slots: int, fields: dict):
        self.slots = slots
        self.fields = fields
        self.ops: list[Op] = []
        self.level: dict[int, int] = {}
        self.consts: dict = {}
        self.n = 0
        self.size3: set = set()         # registers holding a product not yet relinearized

    # -- primitive emission
    def _emit(self, kind, args, level) -> int:
        r = self.n
        self.n += 1
        self.ops.append(Op(kind, r, tuple(args)))
        self.level[r] = level
        return r

    def load(self, operand, tile, level) -> int:
        return self._emit("load", (operand, tile), level)

    def const(self, spec) -> int:
        return self.consts.setdefault(spec, len(self.consts))

    def ready(self, r) -> int:
        """``r`` relinearized (a rotation or another ct-ct product needs it; outputs and sums do not)."""
        if r in self.size3:
            return self._emit("relin", (r,), self.level[r])
        return r

    def rot(self, r, amount) -> int:
        r = self.ready(r)
        amount %= self.slots
        if amount == 0:
            return r
        if amount >= self.slots // 2:
            amount -= self.slots
        return self._emit("rot", (r, amount), self.level[r])

    def _align(self, a, b):
        la, lb = self.level[a], self.level[b]
        if la > lb:
            a = self._ms(a, lb)
        elif lb > la:
            b = self._ms(b, la)
        return a, b

    def _ms(self, a, level):
        r = self._emit("modswitch", (a, level), level)
        if a in self.size3:
            self.size3.add(r)
        return r

    def add(self, a, b) -> int:
        if a is None:
            return b
        a, b = self._align(a, b)
        r = self._emit("add", (a, b), self.level[a])
        if a in self.size3 or b in self.size3:
            self.size3.add(r)
        return r

    def mul_ct(self, a, b) -> int:
        a, b = self._align(self.ready(a), self.ready(b))
        r = self._emit("mul_ct", (a, b), self.level[a])
        r = self._emit("rescale", (r,), self.level[a] - 1)
        self.size3.add(r)
        return r

    def mul_pt_raw(self, a, spec) -> int:
        """A ct-pt product left at the doubled scale: sum several, then ``rescale`` once."""
        r = self._emit("mul_pt", (a, self.const(spec)), self.level[a])
        if a in self.size3:
            self.size3.add(r)
        return r

    def rescale(self, a) -> int:
        r = self._emit("rescale", (a,), self.level[a] - 1)
        if a in self.size3:
            self.size3.add(r)
        return r

    def mul_pt(self, a, spec) -> int:
        r = self._emit("mul_pt", (a, self.const(spec)), self.level[a])
        r2 = self._emit("rescale", (r,), self.level[a] - 1)
        if a in self.size3:
            self.size3 |= {r, r2}
        return r2

    # -- tensor-level helpers
    def entries(self, labels, key: dict, shifts=None):
        out = []
        for l in sorted(labels):
            ax = self.fields[l]
            out.append((ax.size, ax.block, (shifts or {}).get(l, ax.shift), key.get(l, 0)))
        return tuple(out)

    def mask(self, tv: _TV) -> _TV:
        """Multiply by the indicator of the canonical slots: junk and padding become zero (one level)."""
        tiles = {}
        for k, r in tv.tiles.items():
            key = dict(zip(tv.keyed, k))
            tiles[k] = self.mul_pt(r, ("ones", self.entries(tv.labels, key)))
        ragged = frozenset(l for l in tv.dirty if l not in tv.keyed)
        return _TV(tv.labels, tv.keyed, tiles, 0, ragged)

    def sum_labels(self, tv: _TV, labels) -> _TV:
        labels = set(labels) & set(tv.labels)
        if not labels:
            return tv
        if labels & tv.dirty:
            tv = self.mask(tv)
        keyed = tuple(l for l in tv.keyed if l not in labels)
        tiles: dict = {}
        for k, r in tv.tiles.items():                      # add tiles along tiled summed labels
            nk = tuple(t for l, t in zip(tv.keyed, k) if l not in labels)
            tiles[nk] = self.add(tiles.get(nk), r)
        for l in labels - set(tv.keyed):
            if self.fields[l].tiles > 1:
                raise EincInternalError(f"sum over tiled label {l!r} that no operand numbers its tiles by")
        junk = tv.junk
        for l in sorted(labels, key=lambda l: self.fields[l].shift):
            ax = self.fields[l]
            for nk, r in tiles.items():
                for b in range(ax.width):
                    r = self.ready(r)
                    r = self.add(r, self.rot(r, ax.stride << b))
                tiles[nk] = r
            junk |= ax.bits
        return _TV(tv.labels - labels, keyed, tiles, junk, tv.dirty - labels)

    def replicate(self, tv: _TV, labels) -> _TV:
        labels = set(labels) - set(tv.labels)
        if not labels:
            return tv
        bits = 0
        for l in labels:
            bits |= self.fields[l].bits
        if tv.junk & bits:
            tv = self.mask(tv)
        dirty = set(tv.dirty)
        tiles = dict(tv.tiles)
        for l in sorted(labels, key=lambda l: self.fields[l].shift):
            ax = self.fields[l]
            for k, r in tiles.items():
                for b in range(ax.width):
                    r = self.ready(r)
                    r = self.add(r, self.rot(r, -(ax.stride << b)))
                tiles[k] = r
            if ax.size % ax.block or (1 << ax.width) != ax.block:
                dirty.add(l)
        return _TV(tv.labels | labels, tv.keyed, tiles, tv.junk, frozenset(dirty))

    def binary(self, x, y, keep) -> _TV:
        """Contract two operands (``y`` may be the plaintext), keeping labels in ``keep``."""
        if isinstance(x, _PT):
            x, y = y, x
        x = self.sum_labels(x, x.labels - y.labels - keep)
        if isinstance(y, _TV):
            y = self.sum_labels(y, y.labels - x.labels - keep)
        union = x.labels | y.labels
        post = union - keep
        if isinstance(y, _PT):
            x = self.replicate(x, union - x.labels)
            ykeyed = tuple(sorted(l for l in y.labels if self.fields[l].tiles > 1))
        else:
            x, y = self.replicate(x, y.labels - x.labels), self.replicate(y, x.labels - y.labels)
            ykeyed = y.keyed
        allkeyed = sorted(set(x.keyed) | set(ykeyed))
        ranges = [range(self.fields[l].tiles) for l in allkeyed]
        res_keyed = tuple(l for l in allkeyed if l not in post)
        tiles: dict = {}
        for combo in itertools.product(*ranges):
            key = dict(zip(allkeyed, combo))
            xr = x.tiles[tuple(key[l] for l in x.keyed)]
            if isinstance(y, _PT):
                srt = sorted(union)
                p = self.mul_pt(xr, ("pt", self.entries(union, key), tuple(srt.index(l) for l in sorted(y.labels))))
            else:
                p = self.mul_ct(xr, y.tiles[tuple(key[l] for l in y.keyed)])
            rk = tuple(key[l] for l in res_keyed)
            tiles[rk] = self.add(tiles.get(rk), p)
        junk = x.junk & (y.junk if isinstance(y, _TV) else 0)
        dirty = x.dirty & (y.dirty if isinstance(y, _TV) else frozenset())
        # tiles along post-summed labels are already added: sum the fields only
        return self._sum_fields(_TV(union, res_keyed, tiles, junk, dirty), frozenset(post))

    def _sum_fields(self, tv: _TV, labels) -> _TV:
        if not labels:
            return tv
        if labels & tv.dirty:
            tv = self.mask(tv)
        junk, tiles = tv.junk, dict(tv.tiles)
        for l in sorted(labels, key=lambda l: self.fields[l].shift):
            ax = self.fields[l]
            for k, r in tiles.items():
                for b in range(ax.width):
                    r = self.ready(r)
                    r = self.add(r, self.rot(r, ax.stride << b))
                tiles[k] = r
            junk |= ax.bits
        return _TV(tv.labels - labels, tv.keyed, tiles, junk, tv.dirty - labels)


# ----------------------------------------------------------------------------- planning


@dataclass
class _Operand:
    index: int
    labels: tuple            # label per dimension: pseudo-label, or None for a broadcast size-1 axis
    layout: Layout | None     # given layout (encrypted operands)
    level: int
    junk: int


def _pseudo(labels: str, shape, sizes) -> tuple:
    """Per dimension: the label, ``i'``/``i''`` for repeats (a diagonal), None for a broadcast size-1 axis."""
    seen: Counter = Counter()
    out = []
    for lab, n in zip(labels, shape):
        if n == 1 and sizes[lab] != 1:
            out.append(None)
            continue
        out.append(lab + "'" * seen[lab])
        seen[lab] += 1
    return tuple(out)


def _assign(sizes: dict, order: list, prefs: list, slots: int) -> dict:
    """label -> Axis: blocks (tiling) and non-overlapping fields; ``prefs`` are given layouts to honour."""
    nbits = width_of(slots)
    block, fixed = {}, set()
    for pref in prefs:
        for l, ax in pref.items():
            if l not in block:
                block[l], _ = ax.block, fixed.add(l)
    for l in order:
        block.setdefault(l, sizes[l])
    # the axes of a diagonal (i, i', ...) are tiled alike: a tile of i meets the same index range of i'
    group = {l: [m for m in order if m.rstrip("'") == l.rstrip("'")] for l in order}
    for l in order:
        b = min(block[m] for m in group[l])
        if block[l] != b:
            block[l] = b
            fixed.discard(l)
    while sum(width_of(b) for b in block.values()) > nbits:
        free = [l for l in order if l not in fixed and block[l] > 1] or [l for l in order if block[l] > 1]
        l = max(free, key=lambda l: width_of(block[l]))
        half = 1 << (width_of(block[l]) - 1)
        for m in group[l]:
            block[m] = half
            fixed.discard(m)
    for attempt in (prefs, []):
        shift, used = {}, 0
        for pref in attempt:
            for l, ax in pref.items():
                w = width_of(block[l])
                m = ((1 << w) - 1) << ax.shift
                if l not in shift and ax.block == block[l] and not used & m and ax.shift + w <= nbits:
                    shift[l], used = ax.shift, used | m
        ok = True
        for l in order:
            if l in shift:
                continue
            w = width_of(block[l])
            for s in range(nbits - w + 1):
                m = ((1 << w) - 1) << s
                if not used & m:
                    shift[l], used = s, used | m
                    break
            else:
                ok = False
                break
        if ok:
            return {l: Axis(sizes[l], block[l], shift[l]) for l in order}
    raise EincInternalError("field assignment failed although the widths fit")


def _orders(n: int):
    """All pairwise contraction sequences of n operands (opt_einsum-style positions)."""
    if n <= 1:
        yield ()
        return
    for a, b in itertools.combinations(range(n), 2):
        for rest in _orders(n - 1):
            yield ((a, b),) + rest


def plan(expr: str, *shapes, plaintext=(), layouts=None, levels=None, junk=None, slots: int = 16384, out_layout=None,
         max_ciphertexts: int = 4096, optimize: str = "auto", max_keys: int | str | None = "auto") -> Plan:
    """Plan ``expr`` over operands of ``shapes`` without running anything.

    ``plaintext``: indices of operands that are plain numpy arrays (weights).  ``layouts``: the given
    layout of each encrypted operand (None: the planner chooses it; see ``Plan.input_layouts``).
    ``levels``: the level of each encrypted operand; when given, a plan deeper than that raises
    ``FheError``.  ``slots``: slots per ciphertext (N/2).  ``out_layout``: force the result's layout (e.g.
    ``Layout.row_major``) instead of the plan's, at the price of moving fields.  ``max_keys``: a budget of
    rotation keys; amounts beyond it are rotated as chains of amounts that have keys (more key switches,
    less key memory).  Without it, an amount used once is chained when two held amounts make it.
    ``"auto"`` (the default): at most log2(slots) keys — the size of EinHops' power-of-two key set —
    when a plan can be made within that budget, else the unbudgeted plan.
    """
    _check_options(slots, out_layout, max_ciphertexts, optimize, max_keys)
    slots = operator.index(slots)
    if max_keys == "auto":
        free = plan(expr, *shapes, plaintext=plaintext, layouts=layouts, levels=levels, junk=junk, slots=slots,
                    out_layout=out_layout, max_ciphertexts=max_ciphertexts, optimize=optimize, max_keys=None)
        budget = max(1, slots.bit_length() - 1)
        if len(free.rotation_keys) <= budget:
            return free
        try:
            return plan(expr, *shapes, plaintext=plaintext, layouts=layouts, levels=levels, junk=junk, slots=slots,
                        out_layout=out_layout, max_ciphertexts=max_ciphertexts, optimize=optimize, max_keys=budget)
        except FheError:
            return free
    from einc.frontend.subscripts import parse_subscripts

    shapes = [tuple(int(d) for d in s) for s in shapes]
    parsed = parse_subscripts(expr, shapes)
    sizes = dict(parsed.sizes)
    n = len(parsed.inputs)
    if any(s == 0 for s in sizes.values()):
        raise Unsupported("encrypted einsum over an empty axis (size 0)")
    if slots <= 0 or slots & (slots - 1):
        raise FheError(f"slot count {slots} is not a power of two")
    plaintext = frozenset(int(p) for p in plaintext)
    if any(not 0 <= p < n for p in plaintext):
        raise FheError(f"plaintext operand indices {sorted(plaintext)}: {expr!r} has operands 0 to {n - 1}")
    layouts = list(layouts) if layouts is not None else [None] * n
    levels_given = levels is not None
    levels = list(levels) if levels is not None else [0] * n
    junks = list(junk) if junk is not None else [0] * n
    output = parsed.output
    if out_layout is not None and out_layout.shape != tuple(sizes[l] for l in output):
        raise FheError(f"out_layout has shape {out_layout.shape}, the result of {expr} {tuple(sizes[l] for l in output)}")
    kinds = tuple("pt" if k in plaintext else "ct" for k in range(n))

    ops_ct = []
    labels_of = []
    for k in range(n):
        labs = _pseudo(parsed.inputs[k], shapes[k], sizes)
        labels_of.append(labs)
        if kinds[k] == "ct":
            lay = layouts[k]
            if lay is not None and lay.shape != shapes[k]:
                raise FheError(f"operand {k}: layout shape {lay.shape} does not match its shape {shapes[k]}")
            if lay is not None and lay.slots != slots:
                raise FheError(f"operand {k}: layout has {lay.slots} slots, the context {slots}")
            ops_ct.append(_Operand(k, labs, lay, levels[k], junks[k]))
    psizes = dict(sizes)
    for labs in labels_of:
        for l in labs:
            if l is not None:
                psizes[l] = sizes[l[0]]
    pt_idx = [k for k in range(n) if kinds[k] == "pt"]
    pt_merge = None
    pt_labels: frozenset = frozenset()
    if pt_idx:
        ct_labels = {l for o in ops_ct for l in o.labels if l is not None and "'" not in l}
        terms = ["".join(c for c, l in zip(parsed.inputs[k], labels_of[k]) if l is not None) for k in pt_idx]
        have = "".join(sorted({c for t in terms for c in t if c in set(output) | ct_labels}))
        pt_merge = ",".join(terms) + "->" + have
        pt_labels = frozenset(have)

    if not ops_ct:
        return Plan(expr, parsed.inputs, output, sizes, slots, kinds, tuple(None for _ in range(n)), None, 0,
                    (), (), (), pt_merge, {}, tuple(levels), 0, {}, {}, (), (), tuple(labels_of))

    all_labels = list(dict.fromkeys(
        list(reversed(output)) + [l for o in ops_ct for l in reversed(o.labels) if l is not None]
        + sorted(pt_labels)))
    given = [o for o in ops_ct if o.layout is not None]
    pref_orders = [given[i:] + given[:i] for i in range(len(given))] or [[]]
    n_ops = len(ops_ct) + (1 if pt_idx else 0)
    if n_ops <= 5 and optimize != "greedy":
        orders = list(_orders(n_ops))
    else:
        orders = [_greedy_order(ops_ct, pt_labels, output, psizes)]
    best, error = None, None
    for prefs in pref_orders:
        pref_maps = [{l: ax for l, ax in zip(o.labels, o.layout.axes) if l is not None} for o in prefs]
        fields = _assign(psizes, all_labels, pref_maps, slots)
        total = 1
        for o in ops_ct:
            total = max(total, math.prod(fields[l].tiles for l in o.labels if l is not None))
        if total > max_ciphertexts:
            raise FheError(f"{expr}: an operand needs {total} ciphertexts of {slots} slots, over the limit of "
                           f"{max_ciphertexts}; use a larger poly_modulus_degree or raise max_ciphertexts")
        needs_moves = out_layout is not None or any(o.layout is not None and any(
            l is not None and ax.shift != fields[l].shift for l, ax in zip(o.labels, o.layout.axes)) for o in ops_ct)
        modes = ("diag", "bsgs", "joint") if needs_moves else ("diag",)
        for diag, order in itertools.product(modes, orders):
            try:
                cand = _build(expr, parsed, output, sizes, slots, kinds, ops_ct, pt_labels, fields, order,
                              labels_of, diag, out_layout, max_keys)
            except FheError as e:       # this field assignment cannot rearrange an operand: try the next
                error = e
                break
            # depth counts down from the highest operand (lower ones are mod-switched down to meet it)
            too_deep = levels_given and cand.depth > max(levels[o.index] for o in ops_ct)
            over = max_keys is not None and len(cand.rotation_keys) > max_keys
            key = (too_deep, over, round(cand.cost, 6), cand.depth, len(cand.rotation_keys))
            if best is None or key < best[0]:
                best = (key, cand)
    if best is None:
        raise error
    result = best[1]
    if max_keys is not None and len(result.rotation_keys) > max_keys:
        raise FheError(f"{expr}: the plan needs at least {len(result.rotation_keys)} rotation keys, over "
                       f"max_keys={max_keys}")
    result.pt_merge = pt_merge
    result.input_levels = tuple(levels)
    if levels_given:
        avail = max(levels[o.index] for o in ops_ct)
        if result.depth > avail:
            raise FheError(f"{expr}: the plan needs {result.depth} levels but the encrypted operands have only "
                           f"{avail}; create the Context with depth>={result.depth} (or pass plan=)")
    return result


def _check_options(slots, out_layout, max_ciphertexts, optimize, max_keys) -> None:
    """EincTypeError or FheError for options ``plan`` cannot use (they used to fail deep inside, or not at all)."""
    from einc.errors import EincTypeError, PathError

    try:
        operator.index(slots)
    except TypeError:
        raise EincTypeError(f"slots must be an integer, not {slots!r}") from None
    if out_layout is not None and not isinstance(out_layout, Layout):
        raise EincTypeError(f"out_layout takes a fhe.Layout, not {type(out_layout).__name__}")
    if out_layout is not None and out_layout.slots != slots:
        raise FheError(f"out_layout has {out_layout.slots} slots, the plan {slots}")
    if not isinstance(max_ciphertexts, int) or isinstance(max_ciphertexts, bool) or max_ciphertexts < 1:
        raise FheError(f"max_ciphertexts must be a positive integer, not {max_ciphertexts!r}")
    if optimize not in ("auto", "greedy"):
        raise PathError(f"unknown optimize={optimize!r} for an encrypted einsum; choose 'auto' (every contraction "
                        "order up to 5 operands) or 'greedy'")
    if not (max_keys is None or max_keys == "auto" or (isinstance(max_keys, int) and not isinstance(max_keys, bool)
                                                       and max_keys >= 0)):
        raise FheError(f"max_keys takes a number of keys (0 or more), 'auto' or None, not {max_keys!r}")


def _greedy_order(ops_ct, pt_labels, output, sizes):
    # fall back on the path finder for many operands
    from einc.ir.paths import find_path

    terms = ["".join((l or "")[:1] for l in o.labels if l and "'" not in l) for o in ops_ct]
    if pt_labels:
        terms.append("".join(sorted(pt_labels)))
    info = find_path(terms, output, {k: v for k, v in sizes.items() if len(k) == 1}, optimize="greedy")
    return tuple(tuple(s.positions) for s in info.steps)


def _build(expr, parsed, output, sizes, slots, kinds, ops_ct, pt_labels, fields, order, labels_of,
           diag=True, out_layout=None, max_keys=None) -> Plan:
    b = _Builder(slots, fields)
    b.diag_moves = diag == "diag"
    b.joint_moves = diag == "joint"
    moves = []
    vals: list = []
    input_layouts = [None] * len(kinds)
    for o in ops_ct:
        target = Layout(slots, tuple(fields[l] if l is not None else Axis(1, 1, 0) for l in o.labels))
        input_layouts[o.index] = target
        vals.append(_load(b, o, target, moves))
    if pt_labels or any(k == "pt" for k in kinds):
        vals.append(_PT(pt_labels))
    out_set = frozenset(output)
    # unary pre-reduction: diagonals, then labels no other operand and not the output needs
    for k, v in enumerate(vals):
        if isinstance(v, _TV):
            others = set(out_set)
            for j, w in enumerate(vals):
                if j != k:
                    others |= set(w.labels)
            vals[k] = b.sum_labels(v, set(v.labels) - others) if len(vals) > 1 else v
    for a, c in order:
        x, y = vals[a], vals[c]
        rest = [w for j, w in enumerate(vals) if j not in (a, c)]
        keep = set(out_set)
        for w in rest:
            keep |= set(w.labels)
        vals = rest + [b.binary(x, y, frozenset(keep))]
    (final,) = vals
    if isinstance(final, _PT):
        raise EincInternalError("plan ended on a plaintext")
    final = b.sum_labels(final, set(final.labels) - out_set)
    out_axes = tuple(fields[l] for l in output)
    if out_layout is not None:
        if tuple(ax.block for ax in out_layout.axes) != tuple(ax.block for ax in out_axes):
            raise Unsupported(f"out_layout tiles the output in blocks {[a.block for a in out_layout.axes]}, the plan "
                              f"in {[a.block for a in out_axes]}; re-tiling is not supported")
        want = {l: ax.shift for l, ax in zip(output, out_layout.axes)}
        if any(want[l] != fields[l].shift for l in output):
            final = _move_fields(b, final, {l: fields[l].shift for l in output}, "output", moves, want)
        out_axes = tuple(out_layout.axes)
    out_layout = Layout(slots, out_axes)
    for k, r in final.tiles.items():
        key = dict(zip(final.keyed, k))
        if any(fields[l].tiles > 1 and l not in key for l in output):
            raise EincInternalError("output tiles not numbered by a tiled output label")
        flat = out_layout.tile_index(tuple(key.get(l, 0) for l in output))
        b._emit("output", (r, flat), b.level[r])
    ops = _share_keys(b, max_keys)
    counts: Counter = Counter()
    rotations: Counter = Counter()
    top = max((o.level for o in ops_ct), default=0)
    rot_depths: dict = {}
    for op in ops:
        if op.kind in ("load", "output"):
            continue
        counts[op.kind] += 1
        if op.kind == "rot":
            rotations[op.args[1]] += 1
            used = top - b.level[op.out]
            rot_depths[op.args[1]] = min(used, rot_depths.get(op.args[1], used))
    low = min(b.level.values())
    # estimated time, in units of one key switch with one data prime: with the modulus chain cut to the
    # plan's depth, a ciphertext at register level L has L - low + 1 data primes; a key switch costs about
    # (primes) x (primes + 1), a ct-pt product about primes / 8, an addition primes / 200
    cost = 0.0
    for op in ops:
        q = b.level[op.out] - low + 1 if op.out >= 0 else 1
        if op.kind in ("rot", "relin"):
            cost += q * (q + 1) / 2
        elif op.kind == "mul_ct":
            cost += q / 4
        elif op.kind == "mul_pt":
            cost += q / 8
        elif op.kind in ("add", "rescale", "modswitch"):
            cost += q / 200
    # each rotation key costs memory and key-generation time that grow with the chain: count it like a
    # key switch at the top level (this steers layout moves to the few-key diagonal method)
    q = top - low + 1
    cost += q * (q + 1) / 2 * len(rotations)
    consts = tuple(sorted(b.consts, key=b.consts.get))
    return Plan(expr, parsed.inputs, output, sizes, slots, kinds, tuple(input_layouts), out_layout, final.junk,
                ops, consts, tuple(order), None, dict(fields), (), top - low, dict(counts), dict(rotations),
                tuple(sorted(rotations)), tuple(moves), tuple(labels_of), cost, rot_depths)


def _load(b: _Builder, o: _Operand, target: Layout, moves: list) -> _TV:
    """Load an encrypted operand's ciphertexts, move fields where its layout disagrees, take diagonals."""
    given = o.layout or target
    labs = [l for l in o.labels if l is not None]
    if any(l is not None and ax.block != tx.block for l, ax, tx in zip(o.labels, given.axes, target.axes)):
        tv = _retile(b, o, given, moves)
    else:
        keyed = tuple(sorted(l for l in labs if b.fields[l].tiles > 1))
        tiles = {}
        for combo in itertools.product(*(range(ax.tiles) for ax in given.axes)):
            key = {l: t for l, t in zip(o.labels, combo) if l is not None}
            tiles[tuple(key[l] for l in keyed)] = b.load(o.index, given.tile_index(combo), o.level)
        tv = _TV(frozenset(labs), keyed, tiles, o.junk, frozenset())
        cur = {l: ax.shift for l, ax in zip(o.labels, given.axes) if l is not None}
        if any(cur[l] != b.fields[l].shift for l in labs):
            tv = _move_fields(b, tv, cur, f"operand {o.index}", moves)
    dups = [l for l in labs if "'" in l]
    if dups:
        tiles = {}
        pairs_l = [(l.rstrip("'"), l) for l in dups]
        for k, r in tv.tiles.items():
            key = dict(zip(tv.keyed, k))
            if any(key.get(a, 0) != key.get(d, 0) for a, d in pairs_l):
                continue                      # off-diagonal tile: all zero after the mask
            srt = sorted(tv.labels)
            pairs = tuple((srt.index(a), srt.index(d)) for a, d in pairs_l)
            tiles[k] = b.mul_pt(r, ("eye", b.entries(tv.labels, key), pairs))
        tv = _TV(tv.labels, tv.keyed, tiles, 0, frozenset())
        # the dup labels' tile index equals the main label's: drop it from the numbering, then sum the field
        keep = tuple(l for l in tv.keyed if l not in dups)
        tv = _TV(tv.labels, keep, {tuple(t for l, t in zip(tv.keyed, k) if l in keep): r for k, r in tv.tiles.items()},
                 tv.junk, tv.dirty)
        tv = b._sum_fields(tv, frozenset(dups))
    return tv


def _move_fields(b: _Builder, tv: _TV, cur: dict, index, moves: list, target: dict | None = None) -> _TV:
    """Move each misplaced field to the plan's place: one masked rotation per index (one level per field)."""
    nbits = width_of(b.slots)
    cur = dict(cur)
    target = target or {l: b.fields[l].shift for l in tv.labels}
    pending = [l for l in sorted(tv.labels) if cur[l] != target[l]]
    if getattr(b, "joint_moves", False) and pending:
        moves.append(f"{index} axes {','.join(repr(l[0]) for l in pending)}: strides "
                     + ", ".join(f"{1 << cur[l]} -> {1 << target[l]}" for l in pending) + " (one level)")
        return _move_joint(b, tv, cur, pending, target)
    for _ in range(4 * len(tv.labels) + 4):
        pending = [l for l in sorted(tv.labels) if cur[l] != target[l]]
        if not pending:
            return tv
        def bits(l, s):
            return ((1 << width_of(b.fields[l].block)) - 1) << s
        chosen = None
        for l in pending:
            others = 0
            for m in tv.labels:
                if m != l:
                    others |= bits(m, cur[m])
            if not others & bits(l, target[l]):
                chosen, dest = l, target[l]
                break
        if chosen is None:                       # two fields trading places (a transpose): one BSGS step
            pair = next(((l, m) for l in pending for m in pending if l < m and target[l] == cur[m]
                         and target[m] == cur[l] and b.fields[l].block == b.fields[m].block), None)
            if pair is not None:
                moves.append(f"{index} axes {pair[0][0]!r},{pair[1][0]!r}: swap strides {1 << cur[pair[0]]}, "
                             f"{1 << cur[pair[1]]}")
                tv = _swap_fields(b, tv, cur, *pair)
                cur[pair[0]], cur[pair[1]] = cur[pair[1]], cur[pair[0]]
                continue
        if chosen is None:                       # a cycle: park one field in free bits first
            l = pending[0]
            occupied = 0
            for m in tv.labels:
                occupied |= bits(m, cur[m])
            w = width_of(b.fields[l].block)
            for s in range(nbits - w + 1):
                if not occupied & (((1 << w) - 1) << s):
                    chosen, dest = l, s
                    break
            else:
                raise FheError(f"{index}: no free slot bits to rearrange its layout; encrypt operands with "
                               f"layout=plan.input_layouts[k]")
        ax = b.fields[chosen]
        w = width_of(ax.block)
        moves.append(f"{index} axis {chosen[0]!r}: stride {1 << cur[chosen]} -> {1 << dest}")
        if b.diag_moves and 2 * w < ax.block - 1 and not bits(chosen, dest) & bits(chosen, cur[chosen]):
            tv = _move_by_diagonal(b, tv, cur, chosen, dest)
            cur[chosen] = dest
            continue
        # out = sum_t rot(v * mask_t, t*delta), t = g*G + h, as baby steps rot(v, h*delta) shared by all g and
        # giant steps rot(., g*G*delta): about 2*sqrt(extent) rotations and keys, one level
        tiles = {}
        srt = sorted(tv.labels)
        pos = srt.index(chosen)
        delta = (1 << cur[chosen]) - (1 << dest)
        for k, r in tv.tiles.items():
            key = dict(zip(tv.keyed, k))
            ext = ax.extent(key.get(chosen, 0))
            G = max(1, math.isqrt(ext - 1) + 1) if ext > 1 else 1
            ent = b.entries(tv.labels, key, cur)
            baby = {h: b.rot(r, h * delta) for h in range(min(G, ext))}
            acc = None
            for g in range(-(-ext // G)):
                inner = None
                for h in range(G):
                    t = g * G + h
                    if t >= ext:
                        break
                    inner = b.add(inner, b.mul_pt_raw(baby[h], ("field", ent, pos, t, h * delta)))
                acc = b.add(acc, b.rot(b.rescale(inner), g * G * delta))
            tiles[k] = acc
        cur[chosen] = dest
        tv = _TV(tv.labels, tv.keyed, tiles, 0, frozenset())
    raise FheError(f"{index}: could not rearrange its layout; encrypt operands with layout=plan.input_layouts[k]")


def _split_step(amounts):
    """A step ``s`` splitting each amount into a giant part (a multiple of ``s``) and a baby part in
    ``[0, s)`` with the fewest distinct parts (the rotations of a baby-step giant-step product)."""
    import numpy as np

    a = np.asarray(amounts, dtype=np.int64)
    if len(a) <= 2:
        return None
    span = int(a.max() - a.min()) + 1
    cands = set()
    diffs = np.unique(np.abs(np.diff(np.sort(a))))
    for d in diffs[:8].tolist() + [1]:
        c = 1
        while c * d <= span:
            cands.add(int(c * d))
            c = c * 2 if c >= 8 else c + 1
    best = None
    for s in sorted(cands):
        h = np.mod(a, s)
        cost = len(np.unique(h)) + len(np.unique(a - h))
        if best is None or cost < best[0]:
            best = (cost, s)
    return best[1] if best and best[0] < len(a) else None


def _product_split(exts, deltas):
    """Per label a radix ``G_l``: index ``t = g * G_l + h``; baby amount ``sum h_l d_l``, giant
    ``sum g_l G_l d_l``.  Returns (rotations, radices) with the fewest distinct baby plus giant amounts."""
    import numpy as np

    opts = []
    for e in exts:
        o, g = {1, e}, 2
        while g < e:
            o.add(g)
            g *= 2
        opts.append(sorted(o))
    best = None
    for radices in itertools.product(*opts):
        hs, gs = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
        for e, d, G in zip(exts, deltas, radices):
            hs = np.unique(np.add.outer(hs, np.arange(min(G, e), dtype=np.int64) * d).ravel())
            gs = np.unique(np.add.outer(gs, np.arange(-(-e // G), dtype=np.int64) * G * d).ravel())
        cost = len(hs) + len(gs)
        if best is None or cost < best[0]:
            best = (cost, radices)
    return best


def _move_joint(b: _Builder, tv: _TV, cur: dict, labels, target: dict) -> _TV:
    """Move all of ``labels``' fields at once, in one level: slot ``p`` goes to ``p - a`` where
    ``a = sum_l i_l * (2**cur_l - 2**target_l)``.  Swaps and cycles need no parking."""
    srt = sorted(tv.labels)
    tiles = {}
    for k, r in tv.tiles.items():
        key = dict(zip(tv.keyed, k))
        ent = b.entries(tv.labels, key, cur)
        span = tuple((srt.index(l), (1 << cur[l]) - (1 << target[l]), 0, b.fields[l].extent(key.get(l, 0)))
                     for l in labels)
        tiles[k] = _joint_part(b, r, ent, span, 0)
    return _TV(tv.labels, tv.keyed, tiles, 0, frozenset())


def _joint_part(b: _Builder, r: int, ent, span, const: int) -> int:
    """``sum_a rot(v * [offset(slot) == a], a)`` over the slots whose index ``i_l`` lies in ``[lo_l, hi_l)``
    for each ``(pos, d, lo, hi)`` of ``span``, where ``offset = const + sum_l i_l * d``: one level, in
    baby-step giant-step form (masks rolled by the baby step).  The steps split either each index
    (``i - lo = g*G + h``, good for independent axes) or the set of offsets (``a = g + a mod s``, good for
    swaps, where offsets coincide)."""
    import numpy as np

    exts = [hi - lo for _, _, lo, hi in span]
    ds = [d for _, d, _, _ in span]
    base = const + sum(lo * d for _, d, lo, _ in span)
    amts = np.full(1, base, dtype=np.int64)
    for e, d in zip(exts, ds):
        amts = np.add.outer(amts, np.arange(e, dtype=np.int64) * d).ravel()
    amounts = sorted(set(amts.tolist()))
    step = _split_step(amounts)
    parts: dict = {}
    for a in amounts:
        h = a % step if step else 0
        parts.setdefault(a - h, []).append(h)
    mod_cost = len({h for hs in parts.values() for h in hs}) + len(parts)
    prod = _product_split(exts, ds) if math.prod(exts) <= 4096 else None
    terms: dict = {}                   # giant amount -> {baby amount: mask spec}
    if prod is not None and prod[0] < mod_cost:
        digits = tuple((pos, d, G, lo, hi) for (pos, d, lo, hi), G in zip(span, prod[1]))
        for combo in itertools.product(*(range(e) for e in exts)):
            h = sum((t % G) * d for t, (_, d, G, _, _) in zip(combo, digits))
            g = base + sum((t // G) * G * d for t, (_, d, G, _, _) in zip(combo, digits))
            terms.setdefault(g, {})[h] = ("radix", ent, digits, g - base, h, h)
    else:
        for g, hs in parts.items():
            for h in hs:
                terms.setdefault(g, {})[h] = ("span", ent, tuple(span), const, g + h, h)
    baby = {h: b.rot(r, h) for h in sorted({h for t in terms.values() for h in t})}
    acc = None
    for g, hs in sorted(terms.items()):
        inner = None
        for h, spec in sorted(hs.items()):
            inner = b.add(inner, b.mul_pt_raw(baby[h], spec))
        acc = b.add(acc, b.rot(b.rescale(inner), g))
    return acc


def _retile(b: _Builder, o: _Operand, given: Layout, moves: list) -> _TV:
    """Load an operand whose tiling differs from the plan's: every source ciphertext sends each index range
    to the plan tile and field place it belongs to (masked rotations, one level), and the pieces that land
    in one plan tile are added."""
    labs = sorted(l for l in o.labels if l is not None)
    gax = {l: ax for l, ax in zip(o.labels, given.axes) if l is not None}
    keyed = tuple(sorted(l for l in labs if b.fields[l].tiles > 1))
    moving = [l for l in labs if gax[l].shift != b.fields[l].shift or gax[l].block != b.fields[l].block]
    moves.append(f"operand {o.index} re-tiled: " + ", ".join(
        f"{l[0]!r} blocks {gax[l].block} -> {b.fields[l].block}" for l in moving if gax[l].block != b.fields[l].block)
        + " (one level)")
    pieces: dict = {}
    for combo in itertools.product(*(range(ax.tiles) for ax in given.axes)):
        r = b.load(o.index, given.tile_index(combo), o.level)
        u = {l: t for l, t in zip(o.labels, combo) if l is not None}
        ent = tuple((gax[l].size, gax[l].block, gax[l].shift, u[l]) for l in labs)
        dest = []
        for l in labs:
            Bg, Bp = gax[l].block, b.fields[l].block
            start, ext = u[l] * Bg, gax[l].extent(u[l])
            dest.append(range(start // Bp, (start + ext - 1) // Bp + 1) if l in moving else range(u[l], u[l] + 1))
        for tcombo in itertools.product(*dest):
            t = dict(zip(labs, tcombo))
            span, const = [], 0
            for pos, l in enumerate(labs):
                if l not in moving:
                    continue
                Bg, Bp = gax[l].block, b.fields[l].block
                start, ext = u[l] * Bg, gax[l].extent(u[l])
                lo, hi = max(0, t[l] * Bp - start), min(ext, (t[l] + 1) * Bp - start)
                span.append((pos, (1 << gax[l].shift) - (1 << b.fields[l].shift), lo, hi))
                const += (t[l] * Bp - start) << b.fields[l].shift
            piece = _joint_part(b, r, ent, tuple(span), const)
            k = tuple(t[l] for l in keyed)
            pieces[k] = b.add(pieces.get(k), piece)
    return _TV(frozenset(labs), keyed, pieces, 0, frozenset())


def _move_by_diagonal(b: _Builder, tv: _TV, cur: dict, label: str, dest: int) -> _TV:
    """Move ``label``'s field to the free bits at ``dest`` in 2*width rotations and one level:
    replicate along ``dest``, keep the diagonal (dest index == current index), sum the old field."""
    ax = b.fields[label]
    w = width_of(ax.block)
    srt = sorted(tv.labels)
    pos = srt.index(label)
    dbits = ((1 << w) - 1) << dest
    tiles = {}
    for k, r in tv.tiles.items():
        key = dict(zip(tv.keyed, k))
        ent = b.entries(tv.labels, key, cur)
        if tv.junk & dbits:
            r = b.mul_pt(r, ("ones", ent))
        for j in range(w):
            r = b.ready(r)
            r = b.add(r, b.rot(r, -((1 << dest) << j)))
        extra = (ax.size, ax.block, dest, key.get(label, 0))
        r = b.mul_pt(r, ("eye", ent + (extra,), ((pos, len(ent)),)))
        for j in range(w):
            r = b.ready(r)
            r = b.add(r, b.rot(r, (1 << cur[label]) << j))
        tiles[k] = r
    return _TV(tv.labels, tv.keyed, tiles, ((1 << w) - 1) << cur[label], frozenset())


def _swap_fields(b: _Builder, tv: _TV, cur: dict, l: str, m: str) -> _TV:
    """Exchange the fields of ``l`` and ``m`` (same width): slot (x, y) -> (y, x) moves by (x - y) * delta,
    so out = sum_t rot(v * [x - y == t], t * delta), 2e - 1 diagonals in baby-step giant-step form."""
    e = b.fields[l].block
    delta = (1 << cur[l]) - (1 << cur[m])
    srt = sorted(tv.labels)
    pl, pm = srt.index(l), srt.index(m)
    n = 2 * e - 1
    G = math.isqrt(n - 1) + 1
    tiles = {}
    for k, r in tv.tiles.items():
        key = dict(zip(tv.keyed, k))
        ent = b.entries(tv.labels, key, cur)
        baby = {h: b.rot(r, h * delta) for h in range(min(G, n))}
        acc = None
        for g in range(-(-n // G)):
            inner = None
            for h in range(G):
                t = g * G + h
                if t >= n:
                    break
                inner = b.add(inner, b.mul_pt_raw(baby[h], ("diff", ent, pl, pm, t - (e - 1), h * delta)))
            acc = b.add(acc, b.rot(b.rescale(inner), (g * G - (e - 1)) * delta))
        tiles[k] = acc
    return _TV(tv.labels, tv.keyed, tiles, 0, frozenset())


def _chain(a: int, held: list, slots: int, length: int):
    """A shortest sequence of at most ``length`` amounts from ``held`` summing to ``a`` modulo ``slots``."""
    want = a % slots
    mods = {h % slots: h for h in held}
    if want in mods:
        return [mods[want]]
    frontier = {0: []}
    for _ in range(length - 1):
        nxt = {}
        for s, seq in frontier.items():
            for h in held:
                t = (s + h) % slots
                if t not in nxt and t not in frontier:
                    nxt[t] = seq + [h]
                    if (want - t) % slots in mods:
                        return nxt[t] + [mods[(want - t) % slots]]
        frontier = nxt
    return None


def _share_keys(b: _Builder, max_keys) -> tuple:
    """Rotate by rarely used amounts through amounts that have keys anyway (fewer keys, more key switches).

    Powers of two (sums, replication) and amounts used twice or more keep their keys.  An amount used once
    is rewritten as a chain of two held amounts when one exists; with ``max_keys``, chains grow to four
    rotations and the least used amounts go first until the key set fits the budget."""
    ops = list(b.ops)
    uses = Counter(op.args[1] for op in ops if op.kind == "rot")
    if not uses:
        return tuple(ops)

    def pow2(a):
        a = abs(a)
        return a & (a - 1) == 0

    held = {a for a, c in uses.items() if c > 1 or pow2(a)}
    chains: dict = {}
    rest = sorted(set(uses) - held, key=lambda a: (uses[a], abs(a)))
    for a in rest:
        ch = _chain(a, sorted(held), b.slots, 2)
        if ch is None:
            held.add(a)
        else:
            chains[a] = ch
    length = 3
    while max_keys is not None and len(held) > max_keys and length <= 4:
        for a in sorted(held, key=lambda a: (uses[a], -abs(a))):
            if len(held) <= max_keys:
                break
            others = sorted(held - {a})
            ch = _chain(a, others, b.slots, length)
            if ch is not None:
                held.discard(a)
                chains[a] = ch
        length += 1
    # a chained amount may use another chained amount: expand until only held amounts remain
    def expand(a):
        if a in held:
            return [a]
        return [x for c in chains[a] for x in expand(c)]
    out = []
    for op in ops:
        if op.kind != "rot" or op.args[1] in held:
            out.append(op)
            continue
        seq = expand(op.args[1])
        r = op.args[0]
        for k, amount in enumerate(seq):
            dst = op.out if k == len(seq) - 1 else b.n
            if dst != op.out:
                b.n += 1
                b.level[dst] = b.level[op.out]
            out.append(Op("rot", dst, (r, amount)))
            r = dst
    return tuple(out)
