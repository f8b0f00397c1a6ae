"""How many threads einc's CPU kernels run on.

TVM sizes a thread's pool from ``TVM_NUM_THREADS``, else ``OMP_NUM_THREADS``, else half of
``std::thread::hardware_concurrency()`` on x86 (it assumes every core has two hyper-threads).  On a
machine without SMT that is half the cores: on a 2-core VM every kernel ran on one thread
(``ecd,edh->ech`` 8x256x256x512 f32: 7.0 ms, 3.9 ms on two).  So when neither variable is set,
``configure()`` sets ``TVM_NUM_THREADS`` to the physical cores this process may use (its CPU
affinity, SMT siblings counted once, capped by a cgroup CPU quota).  A variable the user set is
left alone.

A forked child inherits the pool of the thread that forked, without its worker threads: the next
parallel kernel waits for them forever.  TVM runs a launch inline when the count is 1, so in a forked
child einc's default becomes 1 (a user-set value is TVM's business, as it was).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

VARS = ("TVM_NUM_THREADS", "OMP_NUM_THREADS")
_SET_BY_EINC = False


def allowed_cpus():
    """The CPUs this process may run on (its affinity; every CPU where the OS has no affinity)."""
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return range(os.cpu_count() or 1)


def physical_cores(cpus=None, sysfs: str | os.PathLike = "/sys/devices/system/cpu") -> int:
    """Cores among ``cpus`` (default: ``allowed_cpus()``), hyper-thread siblings counted once."""
    if cpus is None:
        cpus = allowed_cpus()
    cores = set()
    for c in cpus:
        try:
            cores.add((Path(sysfs) / f"cpu{c}/topology/thread_siblings_list").read_text().strip())
        except OSError:  # no sysfs (macOS, some containers): every CPU a core
            cores.add(f"cpu{c}")
    return max(1, len(cores))


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup") -> int | None:
    """The CPU quota of this process's cgroup, rounded up to whole CPUs (None: no quota)."""
    root = Path(root)
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu/cpu.cfs_quota_us").read_text())
        period = int((root / "cpu/cpu.cfs_period_us").read_text())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def default_threads() -> int:
    limit = cgroup_cpu_limit()
    cores = physical_cores()
    return min(cores, limit) if limit else cores


def configure() -> None:
    """Set ``TVM_NUM_THREADS`` when the user set neither it nor ``OMP_NUM_THREADS`` (idempotent)."""
    global _SET_BY_EINC
    if any(os.environ.get(v) for v in VARS):
        return
    os.environ["TVM_NUM_THREADS"] = str(default_threads())
    _SET_BY_EINC = True


def _after_fork_in_child() -> None:
    if _SET_BY_EINC:
        os.environ["TVM_NUM_THREADS"] = "1"


def current() -> tuple[int, str]:
    """(threads a CPU kernel launched now uses, where that number comes from)."""
    for v in VARS:
        val = os.environ.get(v)
        if val:
            try:
                n = max(1, int(val))
            except ValueError:  # TVM reads it with atoi
                n = 1
            return n, f"{v}, set by einc" if v == "TVM_NUM_THREADS" and _SET_BY_EINC else v
    return max(1, (os.cpu_count() or 2) // 2), "TVM's default"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
