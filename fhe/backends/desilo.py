"""``desilo``: DESILO's desilofhe (opt-in extra ``einc[desilo]``, pinned to 1.17.0).

Not implemented yet: the module only checks that the library is importable so that the error says what
is missing.  desilofhe 2.0.0 reversed the direction of ``Engine.rotate``; an implementation must run
``check_rotation_direction`` (``Context`` does) rather than trust the version.
"""
from __future__ import annotations

from einc.errors import Unsupported

try:
    import desilofhe  # noqa: F401
except ImportError as e:
    raise ImportError(f"desilofhe is not installed ({e})") from e


class DesiloBackend:
    name = "desilo"

    def __init__(self, *args, **kwargs):
        raise Unsupported("the desilo backend is not implemented yet; use backend='seal' or 'sim'")
