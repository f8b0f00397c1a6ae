"""CKKS backends behind one small protocol (see ``Backend``), registered by name with lazy loaders.

Each CKKS library is imported in exactly one module of this package, when its backend is created.
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol

from einc.errors import FheError

#: name -> (module, class); modules are imported only when the backend is asked for
BACKENDS = {
    "sim": ("einc.fhe.backends.sim", "SimBackend"),
    "seal": ("einc.fhe.backends.seal", "SealBackend"),
    "desilo": ("einc.fhe.backends.desilo", "DesiloBackend"),
}

#: largest total coefficient-modulus bits for 128-bit security (HE standard, as SEAL's MaxBitCount)
MAX_BITS_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}


class Backend(Protocol):
    """What the executor needs.  Levels count down: a fresh ciphertext is at ``depth``, 0 is the last."""

    name: str
    slots: int
    depth: int
    has_secret: bool

    def encrypt(self, vec) -> Any: ...
    def decrypt(self, ct): ...
    def encode(self, vec, level: int) -> Any: ...
    def add(self, a, b) -> Any: ...
    def mul_ct(self, a, b) -> Any: ...          # size-3 product: not relinearized, not rescaled
    def relin(self, a) -> Any: ...
    def size(self, ct) -> int: ...
    def mul_pt(self, a, pt) -> Any: ...
    def rescale(self, a) -> Any: ...
    def rotate(self, a, k: int) -> Any: ...     # out[i] = a[i + k]
    def modswitch(self, a, level: int) -> Any: ...
    def level(self, a) -> int: ...
    def make_rotation_keys(self, amounts, levels: dict | None = None) -> None: ...  # levels: amount -> level
    def rotation_keys(self) -> set: ...
    # optional: ``rotation_key_levels() -> dict`` (backends whose keys have levels: sim, desilo) and
    # ``rotate_many(ct, amounts) -> list`` (hoisted rotations of one ciphertext: desilo)
    def probe_rotation(self, ct, k: int): ...     # decrypt(rotate(ct, k)) with a throwaway key
    def key_bytes(self) -> int: ...
    def export(self, secret: bool) -> dict: ...   # name -> bytes
    def ct_to_bytes(self, ct) -> bytes: ...
    def ct_from_bytes(self, data: bytes) -> Any: ...


def make_backend(name: str, poly_modulus_degree: int, depth: int, scale_bits: int, files: dict | None = None):
    """Create backend ``name`` (fresh keys, or loaded from ``files`` as written by ``export``)."""
    if name not in BACKENDS:
        raise FheError(f"unknown FHE backend {name!r}; choose one of {', '.join(BACKENDS)}")
    mod, cls = BACKENDS[name]
    try:
        m = importlib.import_module(mod)
    except ImportError as e:  # the library itself is missing
        extra = {"seal": "pip install 'einc[fhe]' (tenseal)", "desilo": "pip install 'einc[desilo]' (desilofhe)"}
        raise FheError(f"FHE backend {name!r} is not available: {e}; {extra.get(name, '')}") from None
    return getattr(m, cls)(poly_modulus_degree, depth, scale_bits, files=files)


def check_rotation_direction(backend) -> None:
    """Rotate a one-hot vector by +1 and check the element moved left (``out[i] = in[i + 1]``).

    Libraries have changed direction between versions (desilofhe 2.0 reversed ``rotate``); a backend whose
    rotation does not match the planner's convention would silently compute wrong results."""
    import numpy as np

    if not backend.has_secret:
        return
    v = np.zeros(backend.slots)
    v[1] = 1.0
    got = np.asarray(backend.probe_rotation(backend.encrypt(v), 1))
    if not (abs(got[0] - 1.0) < 1e-2 and abs(got[1]) < 1e-2):
        raise FheError(f"backend {backend.name!r}: rotate(+1) does not roll left (library version changed "
                       f"the direction?); refusing to compute wrong results")
