"""``einc explain``: the contraction path einc would take for an einsum, step by step, with its cost.

    einc explain "pi,qj,ijkl,rk,sl->pqrs" --shapes 24x24,24x24,24x24x24x24,24x24,24x24
    einc explain "ij,jk,kl->il" --shapes 2x3,3x4,4x5 --optimize optimal --memory-limit 64 --json
    einc explain "ij,jk,kl->il" --shapes 2x3,3x4,4x5 --optimize "1-2;0-1"     # an explicit path
    einc explain "ij,jk,kl->il" --shapes 2x3,3x4,4x5 --numpy                 # numpy.einsum_path's report

FLOPs follow numpy's and opt_einsum's convention: a step over k operands touching labels L costs
prod(sizes of L) * (max(1, k-1) + 1 if it sums a label).  The naive cost is one loop nest over all labels.
"""
from __future__ import annotations

import argparse

HELP = "show the contraction path for an einsum: steps, FLOPs, intermediate sizes, speedup"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("expr", metavar="EXPR", help='numpy einsum subscripts, e.g. "ij,jk->ik"')
    p.add_argument("--shapes", required=True, metavar="SHAPES",
                   help="operand shapes, e.g. 2x3,3x4 ('' or () for a 0-d operand)")
    p.add_argument("--optimize", default="auto", metavar="OPT",
                   help="auto (default), greedy, optimal, dp, branch-all, branch-2, branch-1, auto-hq, "
                        "none (one n-ary step), or an explicit path like '0-2;0-1'")
    p.add_argument("--memory-limit", default=None, metavar="N",
                   help="largest intermediate allowed, in elements, or max-input (the largest operand/output)")
    p.add_argument("--json", action="store_true", help="print a JSON document instead of the table")
    p.add_argument("--numpy", action="store_true", help="print numpy.einsum_path's report for the same path")


def _optimize_arg(text: str):
    import re

    from einc.errors import PathError

    t = text.strip().lower()
    if t in ("none", "false", "no"):
        return False
    if t == "true":
        return True
    if re.fullmatch(r"\d+([-,]\d+)*(;\d+([-,]\d+)*)*", t):
        return [tuple(int(p) for p in re.split(r"[-,]", st)) for st in t.split(";")]
    if re.fullmatch(r"[\d\s(),\[\]]+", t):
        raise PathError(f"--optimize {text!r}: write an explicit path as steps separated by ';' and positions "
                        "by '-', e.g. '0-2;0-1'")
    return t


def _memory_arg(text):
    from einc.errors import PathError

    if text is None:
        return None
    t = text.strip().lower()
    if t.replace("-", "_") in ("max_input", "none"):
        return None if t == "none" else "max_input"
    try:
        n = int(t)  # 1_000_000 is fine; a sign is kept
    except ValueError:
        n = 0
    if n < 1:
        raise PathError(f"--memory-limit {text!r}: give a positive number of elements, max-input or none")
    return n


def explain(expr: str, shapes, optimize="auto", memory_limit=None):
    """``(ParsedEinsum, PathInfo)`` for ``expr`` over operand ``shapes``."""
    from einc.frontend.subscripts import parse_subscripts
    from einc.ir.paths import find_path

    parsed = parse_subscripts(expr, shapes, filename="expr")
    info = find_path(parsed.inputs, parsed.output, parsed.size_of, optimize, memory_limit)
    return parsed, info


def document(expr: str, shapes, requested, info) -> dict:
    """The ``--json`` document: the request, then ``PathInfo.to_json()``."""
    req = requested if isinstance(requested, (str, bool)) else [list(s) for s in requested]
    return {"expression": expr, "shapes": [list(s) for s in shapes], "requested": req, **info.to_json()}


def dumps(obj, indent: int = 0) -> str:
    """JSON with one key per line, but lists of numbers (shapes, path steps) kept on one line."""
    import json

    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(x, (dict, list)) for x in obj) or all(
                isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x) for x in obj):
            return json.dumps(obj, separators=(", ", ": "))
        return "[\n" + ",\n".join(inner + dumps(x, indent + 1) for x in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def _num(n: int) -> str:
    return f"{n:,}" if n < 10 ** 7 else f"{n:.3e}"


def table(expr: str, shapes, requested, info) -> str:
    """The readable report: one row per step, then the totals."""
    shape_text = ", ".join("x".join(map(str, s)) or "()" for s in shapes)
    lines = [f"einsum      {info.subscripts}", f"shapes      {shape_text}"]
    opt = info.optimizer
    if isinstance(requested, str) and requested != opt:
        opt += f" (chosen by {requested})"
    if info.memory_limit is not None:
        opt += f", memory limit {info.memory_limit:,} elements"
    lines.append(f"optimizer   {opt}")
    lines.append("")
    rows = [("step", "contraction", "sums", "FLOPs", "result elements", "scaling")]
    for k, st in enumerate(info.steps, 1):
        rows.append((str(k), st.subscripts, st.summed or "-", _num(st.flops), _num(st.size), str(st.scaling)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {0, 3, 4, 5}
    for j, r in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    speed = f"{info.speedup:,.1f}x" if info.speedup != float("inf") else "inf"
    lines += [
        f"total FLOPs           {_num(info.flops)}",
        f"naive FLOPs           {_num(info.naive_flops)}  (one loop nest over all labels)",
        f"speedup               {speed}",
        f"largest intermediate  {_num(info.largest_intermediate)} elements",
    ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    import sys

    from einc.cli import parse_shapes

    shapes = parse_shapes(args.shapes)
    requested = _optimize_arg(args.optimize)
    parsed, info = explain(args.expr, shapes, requested, _memory_arg(args.memory_limit))
    if args.json:
        sys.stdout.write(dumps(document(args.expr, shapes, requested, info)) + "\n")
    elif args.numpy:
        from einc.ir.paths import numpy_report

        sys.stdout.write(numpy_report(info) + "\n")
    else:
        sys.stdout.write(table(args.expr, shapes, requested, info))
    return 0
