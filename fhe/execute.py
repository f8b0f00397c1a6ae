"""Run a ``Plan``'s SIMD program on a backend."""
from __future__ import annotations

import numpy as np

from einc.errors import EincInternalError, FheError

from .layout import fill


def materialize(spec, slots: int, pt=None) -> np.ndarray:
    """The slot vector of a plaintext constant of a plan (a mask or the plaintext operand's packing)."""
    kind, entries = spec[0], spec[1]
    if kind == "ones":
        return fill(slots, entries, lambda g, i: 1.0)
    if kind == "eye":
        pairs = spec[2]

        def eye(g, i):
            v = np.ones(())
            for a, d in pairs:
                v = v * (g[a] == g[d])
            return v
        return fill(slots, entries, eye)
    if kind == "field":
        pos, t = spec[2], spec[3]
        vec = fill(slots, entries, lambda g, i: (i[pos] == t) * 1.0)
        roll = spec[4] if len(spec) > 4 else 0
        return np.roll(vec, -roll) if roll else vec     # the mask as seen after rotating by ``roll``
    if kind == "diff":
        pl, pm, t, roll = spec[2], spec[3], spec[4], spec[5]
        vec = fill(slots, entries, lambda g, i: (i[pl] - i[pm] == t) * 1.0)
        return np.roll(vec, -roll) if roll else vec
    if kind == "radix":
        digits, gw, hw, roll = spec[2], spec[3], spec[4], spec[5]

        def radix(g, i):
            hs, gs, ok = 0, 0, True
            for pos, d, G, lo, hi in digits:
                t = i[pos] - lo
                hs = hs + (t % G) * d
                gs = gs + (t // G) * G * d
                ok = ok & (i[pos] >= lo) & (i[pos] < hi)
            return (ok & (hs == hw) & (gs == gw)) * 1.0
        vec = fill(slots, entries, radix)
        return np.roll(vec, -roll) if roll else vec
    if kind == "span":
        span, const, a, roll = spec[2], spec[3], spec[4], spec[5]

        def spanned(g, i):
            acc, ok = const, True
            for pos, d, lo, hi in span:
                acc = acc + i[pos] * d
                ok = ok & (i[pos] >= lo) & (i[pos] < hi)
            return (ok & (acc == a)) * 1.0
        vec = fill(slots, entries, spanned)
        return np.roll(vec, -roll) if roll else vec
    if kind == "pt":
        idx = spec[2]
        return fill(slots, entries, lambda g, i: pt[tuple(g[j] for j in idx)] if idx else pt)
    raise EincInternalError(f"unknown constant kind {kind!r}")


def merge_plaintexts(plan, arrays):
    """The one plaintext operand of ``plan``: all plaintext operands contracted with numpy."""
    if plan.pt_merge is None:
        return None
    ins = []
    for k, kind in enumerate(plan.kinds):
        if kind != "pt":
            continue
        a = np.asarray(arrays[k], dtype=np.float64)
        drop = tuple(d for d, l in enumerate(plan.labels_of[k]) if l is None)
        ins.append(a.reshape([n for d, n in enumerate(a.shape) if d not in drop]) if drop else a)
    out = np.einsum(plan.pt_merge, *ins)
    if not np.isfinite(out).all():
        raise FheError(f"the plaintext operands of {plan.expr}, contracted ({plan.pt_merge}), overflow to "
                       "infinity or NaN; scale them down")
    return out


def run(plan, backend, operands) -> list:
    """Execute ``plan``: ``operands[k]`` is a list of backend ciphertexts (encrypted) or an array.
    Returns the output ciphertexts, numbered as ``plan.output_layout`` numbers them."""
    pt = merge_plaintexts(plan, operands)
    last = {}
    fans: dict = {}                 # register -> rotations of it (hoisted together where the backend can)
    for i, op in enumerate(plan.ops):
        for a in _reg_args(op):
            last[a] = i
        if op.kind == "rot":
            fans.setdefault(op.args[0], []).append(op)
    hoist = getattr(backend, "rotate_many", None)
    hoisted: dict = {}              # rot op's out register -> its result, computed with its siblings
    done: set = set()               # registers computed so far
    regs: dict = {}
    consts: dict = {}
    outs: dict = {}
    for i, op in enumerate(plan.ops):
        k, a = op.kind, op.args
        if k == "load":
            v = operands[a[0]][a[1]]
        elif k == "rot":
            if op.out in hoisted:
                v = hoisted.pop(op.out)
            elif hoist is not None and len(fans[a[0]]) > 1:
                sib = [o for o in fans[a[0]] if o.out not in hoisted and o.out not in done]
                for o, r in zip(sib, hoist(regs[a[0]], [o.args[1] for o in sib])):
                    hoisted[o.out] = r
                v = hoisted.pop(op.out)
            else:
                v = backend.rotate(regs[a[0]], a[1])
        elif k == "add":
            v = backend.add(regs[a[0]], regs[a[1]])
        elif k == "mul_ct":
            v = backend.mul_ct(regs[a[0]], regs[a[1]])
        elif k == "mul_pt":
            ct = regs[a[0]]
            lvl = backend.level(ct)
            key = (a[1], lvl)
            if key not in consts:
                consts[key] = backend.encode(materialize(plan.consts[a[1]], plan.slots, pt), lvl)
            v = backend.mul_pt(ct, consts[key])
        elif k == "relin":
            v = backend.relin(regs[a[0]])
        elif k == "rescale":
            v = backend.rescale(regs[a[0]])
        elif k == "modswitch":
            v = backend.modswitch(regs[a[0]], a[1])
        elif k == "output":
            outs[a[1]] = regs[a[0]]
            continue
        else:
            raise EincInternalError(f"unknown op {k!r}")
        regs[op.out] = v
        done.add(op.out)
        for r in _reg_args(op):
            if last.get(r) == i and r in regs:
                del regs[r]
    return [outs[t] for t in range(len(outs))]


def _reg_args(op):
    if op.kind in ("rot", "relin", "rescale", "modswitch", "mul_pt", "output"):
        return (op.args[0],)
    if op.kind in ("add", "mul_ct"):
        return op.args
    return ()
