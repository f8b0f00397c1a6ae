"""einc.frontend: Lark grammars for numpy einsum subscripts and ``.ein`` programs, with positioned errors."""
from __future__ import annotations

import importlib

_LAZY = {
    "parse_subscripts": "einc.frontend.subscripts",
    "ParsedEinsum": "einc.frontend.subscripts",
    "sublist_to_subscripts": "einc.frontend.subscripts",
    "parse_program": "einc.frontend.program",
    "parse_program_file": "einc.frontend.program",
    "expression_program": "einc.frontend.program",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'einc.frontend' has no attribute {name!r}")
