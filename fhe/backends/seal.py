"""``seal``: Microsoft SEAL (CKKS) through TenSEAL's ``tenseal.sealapi``.  The only module importing it.

Scales: every ciphertext is kept at exactly ``2**scale_bits``; after a rescale the scale (``scale**2/q``
with ``q`` a prime close to ``2**scale_bits``) is set back to it, which costs a relative error of about
``|q - 2**scale_bits| / q`` (below 1e-6 for SEAL's 40-bit NTT primes).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from einc.errors import FheError

try:
    import tenseal.sealapi as sealapi
except ImportError as e:  # pragma: no cover - reported by make_backend
    raise ImportError(f"tenseal is not installed ({e})") from e

from . import MAX_BITS_128


def _save(obj) -> bytes:
    with tempfile.TemporaryDirectory(prefix="einc-seal-") as d:
        p = os.path.join(d, "obj")
        obj.save(p)
        with open(p, "rb") as f:
            return f.read()


def _load(obj, data: bytes, context=None):
    with tempfile.TemporaryDirectory(prefix="einc-seal-") as d:
        p = os.path.join(d, "obj")
        with open(p, "wb") as f:
            f.write(data)
        obj.load(p) if context is None else obj.load(context, p)
    return obj


class SealBackend:
    name = "seal"

    def __init__(self, poly_modulus_degree: int, depth: int, scale_bits: int, files: dict | None = None):
        n = int(poly_modulus_degree)
        bits = [60] + [scale_bits] * depth + [60]
        if n not in MAX_BITS_128 or sum(bits) > MAX_BITS_128[n]:
            raise FheError(f"N={n} with depth {depth} needs {sum(bits)} modulus bits, over the 128-bit-secure "
                           f"maximum {MAX_BITS_128.get(n, 0)}; use a larger poly_modulus_degree or less depth")
        self.slots = n // 2
        self.depth = depth
        self.scale = float(2 ** scale_bits)
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(n)
        parms.set_coeff_modulus(sealapi.CoeffModulus.Create(n, bits))
        self.parms = parms
        self.context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
        if not self.context.parameters_set():
            raise FheError(f"SEAL refused the parameters: {self.context.parameters_error_message()}")
        self._parms_ids = {}
        cd = self.context.first_context_data()
        while cd is not None:
            self._parms_ids[cd.chain_index()] = cd.parms_id()
            cd = cd.next_context_data()
        self.encoder = sealapi.CKKSEncoder(self.context)
        self.evaluator = sealapi.Evaluator(self.context)
        self._galois: list = []          # (frozenset of amounts, GaloisKeys)
        self.public_key = sealapi.PublicKey()
        self.relin_keys = sealapi.RelinKeys()
        self.secret_key = None
        if files is None:
            self.keygen = sealapi.KeyGenerator(self.context)
            self.secret_key = self.keygen.secret_key()
            self.keygen.create_public_key(self.public_key)
            self.keygen.create_relin_keys(self.relin_keys)
        else:
            _load(self.public_key, files["public_key"], self.context)
            _load(self.relin_keys, files["relin_keys"], self.context)
            k = 0
            while f"galois{k}" in files:
                amounts = frozenset(int(a) for a in files[f"galois{k}.amounts"].decode().split(",") if a)
                self._galois.append((amounts, _load(sealapi.GaloisKeys(), files[f"galois{k}"], self.context)))
                k += 1
            if "secret_key" in files:
                self.secret_key = _load(sealapi.SecretKey(), files["secret_key"], self.context)
                self.keygen = sealapi.KeyGenerator(self.context, self.secret_key)
        self.encryptor = sealapi.Encryptor(self.context, self.public_key)
        self.decryptor = sealapi.Decryptor(self.context, self.secret_key) if self.secret_key is not None else None

    @property
    def has_secret(self) -> bool:
        return self.secret_key is not None

    # ------------------------------------------------------------------ keys
    def make_rotation_keys(self, amounts, levels=None):
        # SEAL makes every Galois key at the key level (the whole chain): ``levels`` cannot shrink them
        amounts = sorted({int(a) for a in amounts} - self.rotation_keys())
        if not amounts:
            return
        if not self.has_secret:
            raise FheError(f"rotation keys {amounts} are missing and this context holds no secret key to make "
                           "them; make them on the client (Context.keygen(plan)) and send the public context")
        gk = sealapi.GaloisKeys()
        # the bound overload takes Galois elements (3^step mod 2N, as SEAL's GaloisTool), not steps
        m = 2 * 2 * self.slots
        self.keygen.create_galois_keys([pow(3, a % self.slots, m) for a in amounts], gk)
        self._galois.append((frozenset(amounts), gk))

    def probe_rotation(self, ct, k):
        gk = sealapi.GaloisKeys()
        self.keygen.create_galois_keys([pow(3, k % self.slots, 4 * self.slots)], gk)
        out = sealapi.Ciphertext(self.context)
        self.evaluator.rotate_vector(ct, int(k), gk, out)
        return self.decrypt(out)

    def rotation_keys(self) -> set:
        out: set = set()
        for a, _ in self._galois:
            out |= a
        return out

    def key_bytes(self) -> int:
        """Bytes of evaluation keys held in memory (relinearization + rotation keys)."""
        n = self.slots * 2
        k = self.depth + 1                    # data primes at the key level
        per_key = k * 2 * (k + 1) * n * 8     # k key-switching components, 2 polynomials, k+1 primes
        return per_key * (1 + len(self.rotation_keys()))

    # ------------------------------------------------------------------ data
    def _encode(self, v, level):
        pt = sealapi.Plaintext()
        try:
            self.encoder.encode(v.tolist(), self._parms_ids[level], self.scale, pt)
        except ValueError as e:       # "encoded values are too large", "values must be finite"
            bits = self.context.get_context_data(self._parms_ids[level]).total_coeff_modulus_bit_count()
            raise FheError(f"SEAL cannot encode values up to {float(np.max(np.abs(v))):.3g} at level {level} "
                           f"(scale 2^{int(np.log2(self.scale))}, {bits} modulus bits there): {e}; scale the "
                           "data down") from None
        return pt

    def encode(self, vec, level):
        v = np.asarray(vec, dtype=np.float64)
        return (self._encode(v, level), not v.any())

    def encrypt(self, vec):
        pt = self._encode(np.asarray(vec, dtype=np.float64), self.depth)
        ct = sealapi.Ciphertext(self.context)
        self.encryptor.encrypt(pt, ct)
        return ct

    def decrypt(self, ct):
        if self.decryptor is None:
            raise FheError("this context holds no secret key (a server context): it cannot decrypt")
        pt = sealapi.Plaintext()
        self.decryptor.decrypt(ct, pt)
        return np.asarray(self.encoder.decode_double(pt))

    def level(self, ct) -> int:
        return self.context.get_context_data(ct.parms_id()).chain_index()

    def add(self, a, b):
        out = sealapi.Ciphertext(self.context)
        self.evaluator.add(a, b, out)
        return out

    def mul_ct(self, a, b):
        out = sealapi.Ciphertext(self.context)
        self.evaluator.multiply(a, b, out)
        return out

    def relin(self, a):
        out = sealapi.Ciphertext(self.context)
        self.evaluator.relinearize(a, self.relin_keys, out)
        return out

    def size(self, ct) -> int:
        return ct.size()

    def mul_pt(self, a, encoded):
        pt, zero = encoded
        if zero:                              # SEAL refuses a product that is transparently zero
            z = self.encrypt(np.zeros(self.slots))
            self.evaluator.mod_switch_to_inplace(z, a.parms_id())
            z.scale = a.scale * self.scale
            return z
        out = sealapi.Ciphertext(self.context)
        self.evaluator.multiply_plain(a, pt, out)
        return out

    def rescale(self, a):
        if self.level(a) <= 0:
            raise FheError("out of levels: the ciphertext is at level 0; create the Context with a larger depth")
        out = sealapi.Ciphertext(self.context)
        self.evaluator.rescale_to_next(a, out)
        out.scale = self.scale
        return out

    def modswitch(self, a, level):
        out = sealapi.Ciphertext(self.context)
        self.evaluator.mod_switch_to(a, self._parms_ids[level], out)
        return out

    def rotate(self, a, k):
        for amounts, gk in self._galois:
            if k in amounts:
                out = sealapi.Ciphertext(self.context)
                self.evaluator.rotate_vector(a, int(k), gk, out)
                return out
        raise FheError(f"no rotation key for amount {k}; the context has keys for {sorted(self.rotation_keys())}")

    # ------------------------------------------------------------------ serialization
    def export(self, secret: bool) -> dict:
        files = {"public_key": _save(self.public_key), "relin_keys": _save(self.relin_keys)}
        for k, (amounts, gk) in enumerate(self._galois):
            files[f"galois{k}"] = _save(gk)
            files[f"galois{k}.amounts"] = ",".join(map(str, sorted(amounts))).encode()
        if secret and self.secret_key is not None:
            files["secret_key"] = _save(self.secret_key)
        return files

    def ct_to_bytes(self, ct) -> bytes:
        return _save(ct)

    def ct_from_bytes(self, data: bytes):
        return _load(sealapi.Ciphertext(self.context), data, self.context)
