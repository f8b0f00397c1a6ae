"""``einc cache``: look at and tidy the on-disk kernel cache.

    einc cache info               # folder, entries, bytes
    einc cache prune --max-size 200M
    einc cache clear              # delete every disk entry

The folder is ``$EINC_CACHE_DIR`` or the platform's user cache folder (``einc cache info`` prints
it).  Only einc's own entry files are touched; a kernel being written by another process is
published atomically, so pruning or clearing never leaves a half-written entry.
"""
from __future__ import annotations

import argparse

from einc.errors import EincError

HELP = "inspect, prune or clear the kernel cache on disk"

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``"200M"`` -> bytes (suffixes k, M, G, optional trailing B; plain bytes otherwise)."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    num = t[:-1] if unit else t
    try:
        value = float(num)
    except ValueError:
        raise EincError(f"--max-size {text!r}: expected a size such as 500M, 2G or 1048576") from None
    if value < 0:
        raise EincError(f"--max-size {text!r}: a size cannot be negative")
    return int(value * _UNITS[unit])


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("info", help="the folder, number of entries and their size")
    pr = sub.add_parser("prune", help="delete the oldest entries until the rest fit in --max-size")
    pr.add_argument("--max-size", required=True, metavar="SIZE", help="e.g. 500M, 2G")
    sub.add_parser("clear", help="delete every entry on disk")


def _usage(cache) -> tuple[int, int]:
    n = size = 0
    for p in cache.entries():
        try:
            size += p.stat().st_size
            n += 1
        except OSError:
            pass
    return n, size


def run(args: argparse.Namespace) -> int:
    from einc.lowering.cache import KernelCache

    cache = KernelCache()
    if args.action == "info":
        n, size = _usage(cache)
        print(f"kernel cache: {cache.directory}")
        print(f"entries: {n}, {size / 2**20:.1f} MiB")
        return 0
    if args.action == "prune":
        limit = parse_size(args.max_size)
        removed = cache.prune(limit)
        n, size = _usage(cache)
        print(f"removed {removed} entries; {n} left, {size / 2**20:.1f} MiB (limit {limit / 2**20:.1f} MiB)")
        return 0
    n, _ = _usage(cache)
    cache.clear(memory=False, disk=True)
    left, _ = _usage(cache)
    print(f"removed {n - left} entries from {cache.directory}")
    return 0
