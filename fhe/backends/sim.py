"""``sim``: slot vectors as numpy arrays.  Exact, counts every operation, tracks levels and keys.

It models a CKKS backend closely enough to test plans: a rotation without its key, a level below 0,
operands at different levels, or decryption without the secret key raise ``FheError`` as they would.
"""
from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np

from einc.errors import FheError


class SimCiphertext:
    __slots__ = ("vec", "level", "size")

    def __init__(self, vec, level, size=2):
        self.vec, self.level, self.size = vec, level, size


class SimBackend:
    name = "sim"

    def __init__(self, poly_modulus_degree: int, depth: int, scale_bits: int, files: dict | None = None):
        self.slots = poly_modulus_degree // 2
        self.depth = depth
        self.scale_bits = scale_bits
        self.has_secret = True
        self.counts: Counter = Counter()
        self.rotations: Counter = Counter()
        self._keys: dict = {}            # amount -> level of its key (as desilo: a key serves its level and below)
        if files is not None:
            meta = json.loads(files["sim.json"])
            levels = meta.get("key_levels", {})
            self._keys = {int(a): int(levels.get(str(a), depth)) for a in meta["rotation_keys"]}
            self.has_secret = "secret" in files

    def reset_counts(self):
        self.counts.clear()
        self.rotations.clear()

    # keys
    def make_rotation_keys(self, amounts, levels: dict | None = None):
        if not self.has_secret:
            raise FheError("rotation keys can only be made where the secret key is")
        for a in amounts:
            lvl = min(self.depth, int((levels or {}).get(a, self.depth)))
            self._keys[int(a)] = max(lvl, self._keys.get(int(a), -1))

    def rotation_key_levels(self) -> dict:
        return dict(self._keys)

    def probe_rotation(self, ct, k):
        return np.roll(ct.vec, -k)

    def rotation_keys(self) -> set:
        return set(self._keys)

    def key_bytes(self) -> int:
        return 0

    # data
    def encrypt(self, vec):
        v = np.asarray(vec, dtype=np.float64)
        if v.shape != (self.slots,):
            raise FheError(f"expected {self.slots} slots, got {v.shape}")
        return SimCiphertext(v.copy(), self.depth)

    def decrypt(self, ct):
        if not self.has_secret:
            raise FheError("this context holds no secret key (a server context): it cannot decrypt")
        return ct.vec.copy()

    def encode(self, vec, level):
        return np.asarray(vec, dtype=np.float64)

    def level(self, ct) -> int:
        return ct.level

    def _same(self, a, b, what):
        if a.level != b.level:
            raise FheError(f"{what} of ciphertexts at levels {a.level} and {b.level}")

    def add(self, a, b):
        self._same(a, b, "addition")
        self.counts["add"] += 1
        return SimCiphertext(a.vec + b.vec, a.level, max(a.size, b.size))

    def mul_ct(self, a, b):
        self._same(a, b, "multiplication")
        if a.size != 2 or b.size != 2:
            raise FheError("ct-ct product of a ciphertext that is not relinearized")
        self.counts["mul_ct"] += 1
        return SimCiphertext(a.vec * b.vec, a.level, 3)

    def relin(self, a):
        if a.size != 3:
            raise FheError("relinearizing a ciphertext of size 2")
        self.counts["relin"] += 1
        return SimCiphertext(a.vec, a.level, 2)

    def mul_pt(self, a, pt):
        self.counts["mul_pt"] += 1
        return SimCiphertext(a.vec * pt, a.level, a.size)

    def rescale(self, a):
        if a.level <= 0:
            raise FheError("out of levels: the ciphertext is at level 0 and cannot be rescaled; "
                           "create the Context with a larger depth")
        self.counts["rescale"] += 1
        return SimCiphertext(a.vec, a.level - 1, a.size)

    def modswitch(self, a, level):
        if level > a.level:
            raise FheError(f"cannot switch a level-{a.level} ciphertext up to level {level}")
        self.counts["modswitch"] += 1
        return SimCiphertext(a.vec, level, a.size)

    def rotate(self, a, k):
        if k not in self._keys:
            raise FheError(f"no rotation key for amount {k}; the context has keys for {sorted(self._keys)}")
        if a.level > self._keys[k]:
            raise FheError(f"the rotation key for {k} is at level {self._keys[k]}, the ciphertext at {a.level}")
        if a.size != 2:
            raise FheError("rotating a ciphertext that is not relinearized")
        self.counts["rot"] += 1
        self.rotations[k] += 1
        return SimCiphertext(np.roll(a.vec, -k), a.level)

    # serialization
    def export(self, secret: bool) -> dict:
        files = {"sim.json": json.dumps({"rotation_keys": sorted(self._keys),
                                         "key_levels": {str(a): v for a, v in self._keys.items()}}).encode()}
        if secret and self.has_secret:
            files["secret"] = b"sim"
        return files

    def ct_to_bytes(self, ct) -> bytes:
        buf = io.BytesIO()
        np.save(buf, ct.vec)
        return json.dumps({"level": ct.level, "size": ct.size}).encode() + b"\n" + buf.getvalue()

    def ct_from_bytes(self, data: bytes):
        head, _, body = data.partition(b"\n")
        vec = np.load(io.BytesIO(body))
        meta = json.loads(head)
        if vec.shape != (self.slots,) or vec.dtype != np.float64:
            raise FheError(f"a ciphertext of {vec.shape} {vec.dtype} slots, not ({self.slots},) float64")
        return SimCiphertext(vec, int(meta["level"]), int(meta.get("size", 2)))

    def size(self, ct) -> int:
        return ct.size
