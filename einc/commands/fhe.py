"""``einc fhe``: plan encrypted einsums (CKKS) and show their slot layouts, op counts, depth and keys."""
from __future__ import annotations

import argparse

HELP = "encrypted einsum (CKKS): show the plan of an einsum over encrypted tensors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="fhe_command", metavar="ACTION")
    q = sub.add_parser("plan", help="slot layouts, SIMD op counts, depth and rotation keys of an einsum",
                       description="Plan an encrypted einsum without running it.")
    q.add_argument("expr", help="einsum subscripts, e.g. 'ik,k->i'")
    q.add_argument("--shapes", required=True, help="operand shapes, e.g. 128x128,128")
    q.add_argument("--plain", default="", help="comma-separated indices of plaintext operands (weights), e.g. 0")
    q.add_argument("--poly-modulus-degree", "-N", type=int, default=2 ** 15, help="CKKS ring degree (slots = N/2)")
    q.add_argument("--row-major", action="store_true",
                   help="plan for operands already encrypted compactly row-major (default: the planner picks layouts)")
    q.add_argument("--max-keys", type=_max_keys, default="auto",
                   help="rotation-key budget: chain rarely used rotations through shared keys (less key memory); "
                        "'auto' (default): at most log2(slots) keys when possible; 'none': no budget")
    q.add_argument("--ops", action="store_true", help="also list the SIMD program")
    q.add_argument("--json", action="store_true", help="print the plan as JSON")


def _max_keys(text: str):
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"--max-keys takes a number of keys (0 or more), 'auto' or 'none', "
                                         f"not {text!r}")
    return n


def run(args: argparse.Namespace) -> int:
    import json

    from einc.cli import parse_shapes
    from einc.errors import FheError
    from einc.fhe import plan

    if getattr(args, "fhe_command", None) != "plan":
        print("usage: einc fhe plan EXPR --shapes 128x128,128 [--plain 0] [--json]")
        return 2
    shapes = parse_shapes(args.shapes)
    try:
        plain = [int(x) for x in args.plain.split(",") if x.strip()]
    except ValueError:
        raise FheError(f"--plain takes operand indices like 0,2, not {args.plain!r}") from None
    from einc.fhe.backends import MAX_BITS_128

    n = args.poly_modulus_degree
    if n not in MAX_BITS_128:           # what fhe.Context accepts: a plan for other N could never run
        raise FheError(f"--poly-modulus-degree must be a power of two from {min(MAX_BITS_128)} to "
                       f"{max(MAX_BITS_128)}, not {n}")
    layouts = None
    if args.row_major:
        from einc.fhe import Layout

        layouts = [None if k in plain else Layout.row_major(s, n // 2) for k, s in enumerate(shapes)]
    p = plan(args.expr, *shapes, plaintext=plain, layouts=layouts, slots=n // 2, max_keys=args.max_keys)
    if args.json:
        print(json.dumps(p.to_json(), indent=2))
    else:
        print(p.summary())
        if args.ops:
            for op in p.ops:
                print("   ", op)
    return 0
