"""``desilo``: DESILO's desilofhe (opt-in extra ``einc[desilo]``, pinned to 1.17.0).  The only module importing it.

How einc's protocol maps onto desilofhe 1.17.0:

- The engine is ``Engine(log2 N, k)`` with k = 3 special primes where the depth allows (N = 2^15: 16384
  slots, 15 levels; k = 2 or 1 give 17 or 18 levels): three special primes cut the key-switching
  components to a third, so keys are about half the size and key switches faster;
  ciphertexts are encrypted at level ``depth + 1``, not at the engine's top, so every operation works on
  the few primes a plan needs.  einc's level ``l`` is the engine's level ``l + 1``: desilofhe 1.17.0 cannot
  decrypt a *product* that reached level 0 (it decodes garbage of the order of 2^40), so the last level
  is never used.  Keys are made at most at the engine's ``max_level - 1`` (1.17.0 refuses the top), so
  the engine is chosen with ``max_level >= depth + 2``.
- desilofhe rescales inside ``multiply``; einc's ``rescale`` is therefore a no-op here (the planner only
  ever adds products of the same level before it rescales them, so the levels agree at every ``add``).
- Rotation keys are *fixed-rotation keys*, one per amount the plan uses, each generated at the highest
  level the plan rotates by that amount (``make_rotation_keys(amounts, levels)``): a key at level ``l``
  holds ``l + 2`` primes instead of the engine's 19.  Rotations of one ciphertext by several amounts are
  hoisted (``rotate_many`` -> ``Engine.rotate_batch``, which shares the key-switch decomposition).
- Direction: in 1.17.0 ``rotate`` by ``+d`` rolls *right* (``out[i] = in[i - d]``); einc's ``rotate(k)``
  rolls left, so the key is made for ``-k``.  desilofhe 2.0 reversed ``rotate`` (and renamed
  ``rotate_batch`` to ``rotate_many``): the backend checks the direction on a plaintext when it starts
  (no key needed, so a server context checks too) and raises ``FheError`` instead of computing wrong results.
- ``scale_bits`` is ignored: desilofhe chooses its own primes and scale.
"""
from __future__ import annotations

import json
import os

import numpy as np

from einc.errors import FheError

try:
    import desilofhe
except ImportError as e:  # pragma: no cover - reported by make_backend
    raise ImportError(f"desilofhe is not installed ({e})") from e

#: the version whose conventions this module implements (``rotate`` direction, ``rotate_batch``)
PINNED = "1.17.0"

#: magnitude from which values are encoded as full plaintexts and checked (light plaintexts wrap from 2^36)
LIGHT_MAX = 2.0 ** 30


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("desilofhe")
    except Exception:  # noqa: BLE001 - a build without metadata (e.g. the CUDA wheel under another name)
        return "unknown"


def _lib(what, fn, *args):
    """Call desilofhe, turning its RuntimeError/ValueError into an FheError that says what einc was doing."""
    try:
        return fn(*args)
    except (RuntimeError, ValueError, TypeError) as e:
        raise FheError(f"desilofhe failed to {what}: {e}") from None


class DesiloBackend:
    name = "desilo"

    def __init__(self, poly_modulus_degree: int, depth: int, scale_bits: int, files: dict | None = None):
        n = int(poly_modulus_degree)
        if n & (n - 1) or n < 2 ** 12:
            raise FheError(f"the desilo backend needs poly_modulus_degree a power of two >= 4096, not {n}")
        mode = os.environ.get("EINC_DESILO_MODE", "cpu")
        threads = os.environ.get("EINC_DESILO_THREADS")
        try:
            threads = int(threads) if threads else len(os.sched_getaffinity(0))
        except ValueError:
            raise FheError(f"EINC_DESILO_THREADS must be a number of threads, not {threads!r}") from None
        meta = json.loads(files["desilo.json"]) if files is not None else None
        # more special primes: fewer key-switching components, so smaller keys and faster key switches,
        # at the price of levels (N = 2^15: 18, 17, 15 levels with 1, 2, 3 special primes)
        specials = [int(meta.get("special_primes", 1))] if meta else [3, 2, 1]
        self.engine = None
        for k in specials:
            try:
                eng = desilofhe.Engine(n.bit_length() - 1, k, mode, thread_count=threads)
            except (RuntimeError, ValueError) as e:
                raise FheError(f"desilofhe cannot make an engine for N={n} in mode {mode!r}: {e}") from None
            self.engine, self.special_primes = eng, k
            if eng.max_level > int(depth) + 1:     # keys are made one level below the engine's top at most
                break
        self.slots = int(self.engine.slot_count)
        if self.slots != n // 2:
            raise FheError(f"desilofhe gave {self.slots} slots for N={n}, expected {n // 2}")
        self.depth = int(depth)
        self.top = self.depth + 1                       # engine level of a fresh ciphertext
        if self.top >= self.engine.max_level:
            # desilofhe 1.17.0 makes relinearization and rotation keys up to max_level - 1 only
            raise FheError(f"depth {depth} needs keys at engine level {self.top}; desilofhe's N={n} engine has "
                           f"{self.engine.max_level} levels and makes keys up to level {self.engine.max_level - 1} "
                           f"(depth {self.engine.max_level - 2} at most): use a larger poly_modulus_degree or less depth")
        self._check_direction()
        e = self.engine
        self._keys: dict = {}                           # amount -> FixedRotationKey
        self.secret_key = None
        if files is None:
            self.secret_key = e.create_secret_key()
            self.public_key = e.create_public_key(self.secret_key)
            self.relin_key = e.create_relinearization_key(self.secret_key, self.top)
        else:
            if meta.get("slots") != self.slots or meta.get("depth") != self.depth:
                raise FheError(f"desilo key files were made for {meta.get('slots')} slots, depth {meta.get('depth')}")
            self.public_key = _lib("read the public key", e.deserialize_public_key, files["public_key"])
            self.relin_key = _lib("read the relinearization key", e.deserialize_relinearization_key,
                                  files["relin_key"])
            for a in meta["rotation_keys"]:
                self._keys[int(a)] = _lib(f"read rotation key {a}", e.deserialize_fixed_rotation_key,
                                          files[f"rot{a}"])
            if "secret_key" in files:
                self.secret_key = _lib("read the secret key", e.deserialize_secret_key, files["secret_key"])
        self._batch = getattr(e, "rotate_batch", None) or getattr(e, "rotate_many", None)
        self._encode = getattr(e, "encode_to_light_plaintext", None) or e.encode

    def _check_direction(self) -> None:
        """A plaintext rotation needs no key: rotate a one-hot vector by einc's +1 and look where it went."""
        v = np.zeros(self.slots)
        v[1] = 1.0
        try:
            got = np.real(np.asarray(self.engine.decode(self.engine.rotate(self.engine.encode(v), -1))))
        except (RuntimeError, ValueError, TypeError) as e:
            raise FheError(f"desilofhe {_version()}: cannot check the rotation direction ({e}); "
                           f"einc supports desilofhe=={PINNED}") from None
        if not (abs(got[0] - 1.0) < 1e-3 and abs(got[1]) < 1e-3):
            raise FheError(f"desilofhe {_version()} rotates the other way than {PINNED} (2.0 reversed "
                           f"Engine.rotate); install desilofhe=={PINNED} (pip install 'einc[desilo]')")

    @property
    def has_secret(self) -> bool:
        return self.secret_key is not None

    # ------------------------------------------------------------------ keys
    def make_rotation_keys(self, amounts, levels: dict | None = None):
        """Fixed-rotation keys for ``amounts``, each at ``levels[amount]`` (einc level; default the top).
        A key already held at a lower level than asked for is made again."""
        levels = levels or {}
        todo = {}
        for a in {int(a) for a in amounts}:
            want = min(self.depth, max(0, int(levels.get(a, self.depth))))
            have = self._keys.get(a)
            if have is None or have.level < want + 1:
                todo[a] = want
        if not todo:
            return
        if not self.has_secret:
            raise FheError(f"rotation keys {sorted(todo)} are missing and this context holds no secret key to make "
                           "them; make them on the client (Context.keygen(plan)) and send the public context")
        for a, lvl in sorted(todo.items()):
            self._keys[a] = _lib(f"make a rotation key for {a}", self.engine.create_fixed_rotation_key,
                                 self.secret_key, (-a) % self.slots, lvl + 1)

    def rotation_keys(self) -> set:
        return set(self._keys)

    def rotation_key_levels(self) -> dict:
        return {a: k.level - 1 for a, k in self._keys.items()}

    def probe_rotation(self, ct, k):
        key = self.engine.create_fixed_rotation_key(self.secret_key, (-k) % self.slots, ct.level)
        return self.decrypt(self.engine.rotate(ct, key))

    def key_bytes(self) -> int:
        """Bytes of evaluation keys held in memory (relinearization + rotation keys), as desilofhe reports."""
        return int(self.relin_key.nbytes) + sum(int(k.nbytes) for k in self._keys.values())

    # ------------------------------------------------------------------ data
    def encode(self, vec, level):
        # a "light" plaintext encodes several times faster and multiplies about as fast as a full one, but
        # in 1.17.0 it silently wraps values from about 2^36 (N = 2^14) on: larger ones take a full plaintext
        v = np.asarray(vec, dtype=np.float64)
        if np.max(np.abs(v), initial=0.0) < LIGHT_MAX:
            return _lib("encode a plaintext", self._encode, v, int(level) + 1)
        return self._checked_encode(v, int(level) + 1)

    def _checked_encode(self, v, engine_level):
        """A full plaintext of ``v``, decoded again to check it holds ``v``: desilofhe encodes values too
        large for the level's modulus to garbage without a word."""
        pt = _lib("encode a plaintext", self.engine.encode, v, engine_level)
        back = np.real(np.asarray(self.engine.decode(pt)))
        top = float(np.max(np.abs(v)))
        if not np.max(np.abs(back - v)) <= 1e-6 * top:
            raise FheError(f"desilofhe cannot encode values up to {top:.3g} at level {engine_level - 1}: the "
                           "level's modulus is too small for them; scale the data down")
        return pt

    def encrypt(self, vec):
        v = np.asarray(vec, dtype=np.float64)
        if v.shape != (self.slots,):
            raise FheError(f"expected {self.slots} slots, got {v.shape}")
        if np.max(np.abs(v), initial=0.0) >= LIGHT_MAX:
            return self.engine.encrypt(self._checked_encode(v, self.top), self.public_key)
        return self.engine.encrypt(v, self.public_key, self.top)

    def decrypt(self, ct):
        if self.secret_key is None:
            raise FheError("this context holds no secret key (a server context): it cannot decrypt")
        return np.real(np.asarray(self.engine.decrypt(ct, self.secret_key)))

    def level(self, ct) -> int:
        return int(ct.level) - 1

    def size(self, ct) -> int:
        return int(ct.polynomial_count)

    def add(self, a, b):
        return _lib("add", self.engine.add, a, b)

    def mul_ct(self, a, b):
        if a.level <= 1:
            raise FheError("out of levels: the ciphertext is at level 0; create the Context with a larger depth")
        return _lib("multiply ciphertexts", self.engine.multiply, a, b)      # size 3, rescaled by the library

    def relin(self, a):
        return _lib("relinearize", self.engine.relinearize, a, self.relin_key)

    def mul_pt(self, a, pt):
        if a.level <= 1:
            raise FheError("out of levels: the ciphertext is at level 0; create the Context with a larger depth")
        return _lib("multiply by a plaintext", self.engine.multiply, a, pt)   # rescaled by the library

    def rescale(self, a):
        return a                                      # desilofhe rescaled inside ``multiply``

    def modswitch(self, a, level):
        return _lib(f"switch to level {level}", self.engine.level_down, a, int(level) + 1)

    def _key(self, k, ct):
        key = self._keys.get(k)
        if key is None:
            raise FheError(f"no rotation key for amount {k}; the context has keys for {sorted(self._keys)}")
        if key.level < ct.level:
            raise FheError(f"the rotation key for {k} is at level {key.level - 1}, the ciphertext at "
                           f"{ct.level - 1}; make keys with Context.keygen(plan)")
        return key

    def rotate(self, a, k):
        return _lib(f"rotate by {k}", self.engine.rotate, a, self._key(k, a))

    def rotate_many(self, a, amounts) -> list:
        """Hoisted rotations of one ciphertext (one key-switch decomposition shared by all amounts)."""
        keys = [self._key(k, a) for k in amounts]
        if self._batch is None or len(keys) < 2:
            return [self.rotate(a, k) for k in amounts]
        return list(_lib(f"rotate by {list(amounts)}", self._batch, a, keys))

    # ------------------------------------------------------------------ serialization
    def export(self, secret: bool) -> dict:
        e = self.engine
        files = {"desilo.json": json.dumps({"slots": self.slots, "depth": self.depth, "version": _version(),
                                            "special_primes": self.special_primes,
                                            "rotation_keys": sorted(self._keys)}).encode(),
                 "public_key": bytes(e.serialize_public_key(self.public_key)),
                 "relin_key": bytes(e.serialize_relinearization_key(self.relin_key))}
        for a, key in self._keys.items():
            files[f"rot{a}"] = bytes(e.serialize_fixed_rotation_key(key))
        if secret and self.secret_key is not None:
            files["secret_key"] = bytes(e.serialize_secret_key(self.secret_key))
        return files

    def ct_to_bytes(self, ct) -> bytes:
        return bytes(self.engine.serialize_ciphertext(ct))

    def ct_from_bytes(self, data: bytes):
        return _lib("read a ciphertext", self.engine.deserialize_ciphertext, bytes(data))
