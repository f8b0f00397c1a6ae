"""Where a program runs: the interpreter, or a compiled kernel for a target.

``execute`` is the single place ``einc.einsum`` hands a verified program to; the default-target
policy (when to compile, when to interpret) lives here.
"""
from __future__ import annotations

import numpy as np

from einc.ir import Program


def execute(prog: Program, arrays: list[np.ndarray], target: str | None = None) -> list[np.ndarray]:
    """Run ``prog`` on ``arrays`` and return its outputs (numpy arrays)."""
    if target in (None, "interp", "numpy"):
        from einc.ir.interp import run

        return run(prog, *arrays)
    from einc.errors import Unsupported

    raise Unsupported(f"target {target!r} is not available yet")
