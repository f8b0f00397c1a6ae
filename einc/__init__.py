"""einc: an einsum compiler and fuzzer toolkit.

Public API (imported lazily, so ``import einc`` never pays for TVM or CKKS):
``einc.einsum``, ``einc.einsum_path``, ``einc.compile``, ``einc.load``, ``einc.Kernel``, ``einc.fhe``.
"""
from __future__ import annotations

import importlib

from .errors import *  # noqa: F401,F403
from .errors import EincError

__version__ = "0.1.0"

_LAZY = {
    "einsum": ("einc.api", "einsum"),
    "einsum_path": ("einc.api", "einsum_path"),
    "parse": ("einc.api", "parse"),
    "compile": ("einc.kernel", "compile"),
    "load": ("einc.kernel", "load"),
    "Kernel": ("einc.kernel", "Kernel"),
    "fhe": ("einc.fhe", None),
}


def __getattr__(name):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        m = importlib.import_module(mod)
        value = m if attr is None else getattr(m, attr)
        globals()[name] = value  # later lookups skip this hook (einsum is on the hot path)
        return value
    raise AttributeError(f"module 'einc' has no attribute {name!r}")
