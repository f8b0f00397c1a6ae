"""Timing helpers shared by einc's benchmarks (benchmarks, not tests).

``pin_threads(n)`` must run before numpy/torch/TVM are imported: the thread pools of OpenBLAS, MKL,
OpenMP and TVM read their sizes from the environment once, at load time.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

THREAD_VARS = ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
SUITE = Path(__file__).with_name("suite.json")


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def pin_threads(n: int) -> list[str]:
    """Set every thread-count variable to ``n``; returns the heavy modules already loaded (too late for them)."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    return [m for m in ("numpy", "torch", "tvm") if m in sys.modules]


def threads_from_argv(argv: list[str], default: int | None = None) -> int:
    """``--threads N`` / ``--threads=N`` read from raw argv (before argparse, before numpy is imported)."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
        if a.startswith("--threads=") and a.split("=", 1)[1].isdigit():
            return int(a.split("=", 1)[1])
    return default or default_threads()


@dataclass
class Timing:
    """Seconds per call: the best and the median of ``repeat`` rounds of ``number`` calls each."""

    best: float
    median: float
    number: int
    repeat: int
    samples: list = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("samples")
        return d


def time_fn(fn: Callable[[], object], *, min_time: float = 0.3, repeat: int = 5, warmup: int = 1,
            max_number: int = 100_000) -> Timing:
    """Time ``fn()``: ``warmup`` calls, then ``repeat`` rounds of ``number`` calls each, where ``number``
    is chosen so one round takes about ``min_time / repeat`` (at least one call)."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    number = max(1, min(max_number, int(min_time / repeat / one)))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return Timing(min(samples), statistics.median(samples), number, repeat, samples)


def geomean(xs) -> float:
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def load_suite(path: str | Path | None = None, section: str = "cpu") -> dict[str, dict]:
    """``name -> {"expr", "shapes", ["dtype"]}`` of one section of a suite file (default: bench/suite.json)."""
    from einc.errors import EincError

    p = Path(path) if path else SUITE
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise EincError(f"cannot read the benchmark suite {p}: {e}") from None
    cases = doc.get(section)
    if not isinstance(cases, dict) or not cases:
        raise EincError(f"{p}: no {section!r} section (sections: {', '.join(k for k in doc if not k.startswith('_'))})")
    for name, c in cases.items():
        if not isinstance(c, dict) or "expr" not in c or "shapes" not in c:
            raise EincError(f"{p}: case {name!r} needs 'expr' and 'shapes'")
    return cases


def fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def machine_info() -> dict:
    import platform

    info = {"python": platform.python_version(), "machine": platform.machine(), "cores": default_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info
