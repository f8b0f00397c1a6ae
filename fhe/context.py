"""Contexts, encrypted tensors, ``einsum`` and serialization (client/server split)."""
from __future__ import annotations

import json
import operator
import os
import secrets
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from einc.errors import EincError, EincTypeError, FheError, WriteError

from . import execute
from .backends import BACKENDS, MAX_BITS_128, check_rotation_direction, make_backend
from .layout import Layout
from .planner import Plan
from .planner import plan as _plan

FORMAT = "einc-fhe/1"


def _integer(value, name: str) -> int:
    """``value`` as an int: Python and numpy integers, not floats or strings."""
    try:
        return operator.index(value)
    except TypeError:
        raise EincTypeError(f"{name} must be an integer, not {value!r}") from None


def _default_depth(n: int, scale_bits: int) -> int:
    budget = MAX_BITS_128.get(n, 0) - 120
    return max(1, min(4, budget // scale_bits))


class Context:
    """A CKKS context: parameters, keys and a backend.

    ``Context(backend="sim"|"seal"|"desilo", poly_modulus_degree=2**15, depth=None, scale_bits=40, plan=None)``.
    The modulus chain is ``[60] + [scale_bits] * depth + [60]`` bits (128-bit secure for N=2^15 up to
    depth 19; depth 0 suits plans without multiplications; ``scale_bits`` from 30 to 60).  ``depth`` defaults to ``plan.depth`` (or several plans' maximum) when plans are given, else 4
    (less where N is small).  ``security=None`` lifts the 128-bit check, for ``sim`` only (small test
    rings).  Rotation keys are made only for the amounts a plan uses: the ones of ``plan``
    at construction, and any later plan's missing ones on first use (``keygen``).
    """

    def __init__(self, backend: str = "sim", poly_modulus_degree: int = 2 ** 15, depth: int | None = None,
                 scale_bits: int = 40, plan=None, *, security: int | None = 128, _files: dict | None = None,
                 key_id: str | None = None):
        if backend not in BACKENDS:
            raise FheError(f"unknown FHE backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        plans = [] if plan is None else (list(plan) if isinstance(plan, (list, tuple)) else [plan])
        for p in plans:
            if not isinstance(p, Plan):
                raise EincTypeError(f"plan= takes Plans (from fhe.plan or ctx.plan), not {type(p).__name__}")
        n = _integer(poly_modulus_degree, "poly_modulus_degree")
        if n not in MAX_BITS_128:
            raise FheError(f"poly_modulus_degree must be a power of two from 1024 to 32768, not {n}")
        scale_bits = _integer(scale_bits, "scale_bits")
        if not 30 <= scale_bits <= 60:
            # SEAL's primes have at most 60 bits; below 30 noise swamps results (an 8x8 matmul on SEAL is
            # off by 6% at 25 bits, by 47x at 20) and rotations look reversed to the direction check
            raise FheError(f"scale_bits must be from 30 to 60 (CKKS noise swamps results below 30 bits), "
                           f"not {scale_bits}")
        if depth is None:
            depth = max([p.depth for p in plans]) if plans else _default_depth(n, scale_bits)
        depth = _integer(depth, "depth")
        if depth < 0:
            raise FheError(f"depth must be at least 0, not {depth}")
        need = 120 + depth * scale_bits
        if security is None and backend != "sim":
            raise FheError("security=None (no 128-bit check) is only for the sim backend")
        if security is not None and security != 128:
            raise FheError(f"only 128-bit security parameters are supported, not {security}")
        if security is not None and need > MAX_BITS_128[n]:
            raise FheError(f"depth {depth} at {scale_bits}-bit scale needs {need} modulus bits; N={n} allows "
                           f"{MAX_BITS_128[n]} at 128-bit security: use a larger poly_modulus_degree")
        for p in plans:
            if p.slots != n // 2:
                raise FheError(f"plan for {p.expr} was made for {p.slots} slots, the context has {n // 2}")
            if p.depth > depth:
                raise FheError(f"plan for {p.expr} needs depth {p.depth}, the context has {depth}")
        self.backend_name = backend
        self.poly_modulus_degree = n
        self.depth = depth
        self.scale_bits = scale_bits
        self.security = security
        self.backend = make_backend(backend, n, depth, scale_bits, files=_files)
        #: names the key set: a public copy and a saved and loaded context keep it; two contexts
        #: made separately differ, so their ciphertexts are never mixed (that decrypts to noise)
        self.key_id = key_id if key_id is not None else (secrets.token_hex(8) if _files is None else None)
        if _files is None:
            check_rotation_direction(self.backend)
        for p in plans:
            self.keygen(p)

    # ------------------------------------------------------------------ properties
    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def is_public(self) -> bool:
        """True for a server-side context: no secret key, cannot decrypt or make keys."""
        return not self.backend.has_secret

    @property
    def rotation_keys(self) -> list[int]:
        return sorted(self.backend.rotation_keys())

    def key_bytes(self) -> int:
        return self.backend.key_bytes()

    # ------------------------------------------------------------------ keys
    def keygen(self, plan_or_amounts) -> None:
        """Make the rotation keys ``plan`` needs that this context lacks (FheError on a server context).

        With a plan, each key is made at the highest level the plan rotates by its amount (backends with
        per-key levels, such as ``desilo``, then hold smaller keys); a key held at too low a level is made again."""
        if isinstance(plan_or_amounts, Plan):
            amounts = plan_or_amounts.rotation_keys
            levels = plan_or_amounts.key_levels(self.depth)
        else:
            amounts = [_integer(a, "a rotation amount") for a in plan_or_amounts]
            levels = {a: self.depth for a in amounts}
        have = self.backend.rotation_keys()
        held = getattr(self.backend, "rotation_key_levels", None)
        held = held() if held is not None else {}
        missing = {int(a) for a in amounts if int(a) not in have or held.get(int(a), self.depth) < levels[a]}
        if missing:
            if self.is_public:
                raise FheError(f"rotation keys {sorted(missing)} are missing and this is a public (server) "
                               "context; make them on the client with ctx.keygen(plan) before exporting")
            if held or hasattr(self.backend, "rotation_key_levels"):
                self.backend.make_rotation_keys(sorted(missing), {a: levels[a] for a in missing})
            else:
                self.backend.make_rotation_keys(sorted(missing))

    # ------------------------------------------------------------------ data
    def encrypt(self, array, layout: Layout | None = None) -> "CipherTensor":
        """Encrypt ``array`` in ``layout`` (default: compact row-major, tiled if it does not fit)."""
        a = _array(array, "encrypt")
        if a.dtype.kind not in "biuf":
            raise FheError(f"encrypt takes real numbers, not {a.dtype}"
                           + (" (CKKS slots hold reals here: encrypt .real and .imag apart)" if a.dtype.kind == "c" else ""))
        a = _finite(a.astype(np.float64), "encrypt")
        if layout is None:
            layout = Layout.row_major(a.shape, self.slots)
        elif not isinstance(layout, Layout):
            raise EincTypeError(f"layout= takes a fhe.Layout (e.g. plan.input_layouts[k]), not {type(layout).__name__}")
        if layout.slots != self.slots:
            raise FheError(f"layout has {layout.slots} slots, the context {self.slots}")
        vecs = layout.pack(a)
        return CipherTensor(self, layout, [self.backend.encrypt(v) for v in vecs], self.depth, 0)

    def decrypt(self, x: "CipherTensor") -> np.ndarray:
        if not isinstance(x, CipherTensor):
            raise FheError(f"decrypt expects a CipherTensor, not {type(x).__name__}")
        if self.is_public:
            raise FheError("this context holds no secret key (a server context): it cannot decrypt")
        if not _same_keys(x.ctx, self):
            raise FheError("this tensor was encrypted under another context's keys: decrypt it with that context")
        return x.layout.unpack(np.stack([self.backend.decrypt(c) for c in x.cts]))

    # ------------------------------------------------------------------ compute
    def plan(self, expr: str, *operands, **options) -> Plan:
        """The plan ``einsum(expr, *operands)`` would run (operands: CipherTensors or arrays)."""
        _check_subscripts(expr)
        unknown = sorted(set(options) - PLAN_OPTIONS)
        if unknown:
            raise EincTypeError(f"unknown option(s) {', '.join(unknown)}; fhe.einsum takes {', '.join(sorted(PLAN_OPTIONS))}")
        lay = options.get("out_layout")
        if lay is not None and not isinstance(lay, Layout):
            raise EincTypeError(f"out_layout takes a fhe.Layout, not {type(lay).__name__}")
        shapes, plain, layouts, levels, junk = _describe(operands)
        return _cached_plan(expr, tuple(shapes), frozenset(plain), tuple(layouts), tuple(levels), tuple(junk),
                            self.slots, tuple(sorted(options.items())))

    def einsum(self, expr: str, *operands, **options):
        """Encrypted ``numpy.einsum``: CipherTensor operands, plain numpy arrays as plaintext weights."""
        for x in operands:
            if isinstance(x, CipherTensor) and not _same_keys(x.ctx, self):
                raise FheError("operands were encrypted under different contexts' keys (each Context makes its "
                               "own; share one, or its public() copy, between the operands)")
        p = self.plan(expr, *operands, **options)
        if not any(k == "ct" for k in p.kinds):
            return _in_numpy(expr, operands)
        operands = [x if isinstance(x, CipherTensor) else
                    _finite(_array(x, f"plaintext operand {k}").astype(np.float64), f"plaintext operand {k}")
                    for k, x in enumerate(operands)]
        self.keygen(p)
        # a previous einsum may have left a product unrelinearized (size 3): plans start from size 2
        args = [[c if self.backend.size(c) == 2 else self.backend.relin(c) for c in x.cts]
                if isinstance(x, CipherTensor) else x for x in operands]
        outs = execute.run(p, self.backend, args)
        level = min(self.backend.level(c) for c in outs)
        return CipherTensor(self, p.output_layout, outs, level, p.output_junk)

    # ------------------------------------------------------------------ serialization
    def save(self, path, secret: bool = False) -> None:
        """Write the context to one file (atomically).  ``secret=False`` writes the public part only
        (parameters, public, relinearization and rotation keys): what a server gets."""
        meta = {"format": FORMAT, "kind": "context", "backend": self.backend_name,
                "poly_modulus_degree": self.poly_modulus_degree,
                "depth": self.depth, "scale_bits": self.scale_bits, "security": self.security,
                "secret": bool(secret and not self.is_public), "key_id": self.key_id}
        files = {"meta.json": json.dumps(meta).encode()}
        files.update({f"backend/{k}": v for k, v in self.backend.export(secret).items()})
        _write_zip(path, files)

    def public(self) -> "Context":
        """A server-side copy of this context without the secret key."""
        buf = {f"backend/{k}": v for k, v in self.backend.export(False).items()}
        return Context._from_files(self.backend_name, self.poly_modulus_degree, self.depth, self.scale_bits, buf,
                                   self.security, self.key_id)

    @classmethod
    def load(cls, path) -> "Context":
        files = _read_zip(path)
        meta = _read_meta(files, path, "context")
        with _reading(path):
            return cls._from_files(meta["backend"], int(meta["poly_modulus_degree"]), int(meta["depth"]),
                                   int(meta["scale_bits"]), files, meta.get("security", 128), meta.get("key_id"))

    @classmethod
    def _from_files(cls, backend, n, depth, scale_bits, files, security=128, key_id=None):
        sub = {k[len("backend/"):]: v for k, v in files.items() if k.startswith("backend/")}
        return cls(backend, n, depth, scale_bits, security=security, _files=sub, key_id=key_id)

    def load_tensor(self, path) -> "CipherTensor":
        files = _read_zip(path)
        meta = _read_meta(files, path, "tensor")
        with _reading(path):
            if meta["backend"] != self.backend_name or meta["poly_modulus_degree"] != self.poly_modulus_degree:
                raise FheError(f"{path}: tensor was made for {meta['backend']} N={meta['poly_modulus_degree']}")
            if None not in (meta.get("key_id"), self.key_id) and meta["key_id"] != self.key_id:
                raise FheError(f"{path}: the tensor was encrypted under another context's keys")
            layout = Layout.from_json(meta["layout"])
            if layout.slots != self.slots:
                raise FheError(f"{path}: its layout has {layout.slots} slots, the context {self.slots}")
            missing = [f"ct{k}" for k in range(layout.ntiles) if f"ct{k}" not in files]
            if missing:
                raise FheError(f"{path}: its layout has {layout.ntiles} ciphertexts, the file lacks {', '.join(missing[:4])}"
                               + (" ..." if len(missing) > 4 else ""))
            cts = [self.backend.ct_from_bytes(files[f"ct{k}"]) for k in range(layout.ntiles)]
            level = min(self.backend.level(c) for c in cts)
            if int(meta["level"]) != level or not 0 <= level <= self.depth:
                raise FheError(f"{path}: says level {meta['level']}, its ciphertexts are at level {level} (the "
                               f"context's depth is {self.depth})")
            return CipherTensor(self, layout, cts, level, int(meta["junk"]))

    def __repr__(self) -> str:
        return (f"Context(backend={self.backend_name!r}, poly_modulus_degree={self.poly_modulus_degree}, "
                f"depth={self.depth}, rotation_keys={len(self.rotation_keys)}, public={self.is_public})")


def _same_keys(a: Context, b: Context) -> bool:
    """Whether ciphertexts of ``a`` can meet those of ``b``: the same context, or copies of one (a
    public() copy, a saved and loaded one).  Files written before key ids existed match on parameters."""
    if a is b:
        return True
    same_params = (a.backend_name, a.poly_modulus_degree, a.depth) == (b.backend_name, b.poly_modulus_degree, b.depth)
    if a.key_id is None or b.key_id is None:
        return same_params
    return same_params and a.key_id == b.key_id


@dataclass
class CipherTensor:
    """An encrypted tensor: its ciphertexts (one per tile), layout, level and junk bits."""

    ctx: Context
    layout: Layout
    cts: list
    level: int
    junk: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.layout.shape

    @property
    def ndim(self) -> int:
        return len(self.layout.axes)

    def decrypt(self) -> np.ndarray:
        return self.ctx.decrypt(self)

    def save(self, path) -> None:
        """Write the ciphertexts and layout to one file (atomically)."""
        meta = {"format": FORMAT, "kind": "tensor", "backend": self.ctx.backend_name, "key_id": self.ctx.key_id,
                "poly_modulus_degree": self.ctx.poly_modulus_degree, "layout": self.layout.to_json(),
                "level": self.level, "junk": self.junk}
        files = {"meta.json": json.dumps(meta).encode()}
        for k, c in enumerate(self.cts):
            files[f"ct{k}"] = self.ctx.backend.ct_to_bytes(c)
        _write_zip(path, files)

    def __repr__(self) -> str:
        return f"CipherTensor(shape={self.shape}, level={self.level}, ciphertexts={len(self.cts)})"


def _describe(operands):
    shapes, plain, layouts, levels, junk = [], [], [], [], []
    for k, x in enumerate(operands):
        if isinstance(x, CipherTensor):
            shapes.append(x.shape)
            layouts.append(x.layout)
            levels.append(x.level)
            junk.append(x.junk)
        else:
            a = _array(x, f"operand {k}")
            if a.dtype.kind not in "biuf":
                raise FheError(f"operand {k}: plaintext operands must be real numbers, not {a.dtype}")
            shapes.append(a.shape)
            plain.append(k)
            layouts.append(None)
            levels.append(10 ** 6)
            junk.append(0)
    return shapes, plain, layouts, levels, junk


def _finite(a: np.ndarray, what: str) -> np.ndarray:
    """``a`` itself; FheError where it holds NaN or infinity (CKKS encodes finite reals only: SEAL raises
    deep inside, desilofhe encodes them to garbage or runs out of memory)."""
    bad = ~np.isfinite(a)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise FheError(f"{what}: {int(bad.sum())} value(s) are NaN or infinite (the first at index {first}, "
                       f"{a[first]}); CKKS encodes finite real numbers only")
    return a


@lru_cache(maxsize=256)
def _cached_plan(expr, shapes, plain, layouts, levels, junk, slots, options):
    return _plan(expr, *shapes, plaintext=plain, layouts=list(layouts), levels=list(levels), junk=list(junk),
                 slots=slots, **dict(options))


def einsum(expr: str, *operands, **options):
    """``numpy.einsum`` over encrypted tensors: operands are CipherTensors or plain numpy arrays."""
    _check_subscripts(expr)
    ctx = next((x.ctx for x in operands if isinstance(x, CipherTensor)), None)
    if ctx is None:
        return _in_numpy(expr, operands)
    return ctx.einsum(expr, *operands, **options)


def _check_subscripts(expr) -> None:
    if not isinstance(expr, str):
        raise EincTypeError(f"fhe.einsum takes the subscripts as a str first, not {type(expr).__name__} "
                            "(numpy's interleaved operand, sublist form is not supported)")


def _in_numpy(expr: str, operands) -> np.ndarray:
    """An einsum with no encrypted operand: plain ``numpy.einsum`` in float64."""
    return np.einsum(expr, *[_array(o, f"operand {k}").astype(np.float64) for k, o in enumerate(operands)])


#: the keyword options of ``einsum`` and ``Context.plan`` (passed on to ``fhe.plan``)
PLAN_OPTIONS = frozenset({"out_layout", "max_ciphertexts", "optimize", "max_keys"})


def _array(x, what: str) -> np.ndarray:
    """``x`` as a numpy array; torch tensors are detached and copied to the host (bfloat16 as float64)."""
    if type(x).__module__.partition(".")[0] == "torch":
        x = x.detach().cpu().resolve_conj().resolve_neg()
        if x.is_floating_point():
            x = x.double()
    try:
        return np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise EincTypeError(f"{what}: cannot read a {type(x).__name__} as an array: {e}") from None


def _fspath(path) -> str:
    try:
        return os.fsdecode(path)
    except TypeError:
        raise EincTypeError(f"a file path is a str, bytes or os.PathLike, not {type(path).__name__}") from None


def _write_zip(path, files: dict) -> None:
    from einc.fileio import atomic_path

    path = _fspath(path)
    with atomic_path(path) as tmp:
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
                for name, data in files.items():
                    z.writestr(name, data)
        except OSError as e:            # disk full, quota: atomic_path removes the temporary file
            raise WriteError(f"cannot write {path}: {e.strerror or e}") from None


def _read_zip(path) -> dict:
    path = _fspath(path)
    try:
        with zipfile.ZipFile(path) as z:
            return {n: z.read(n) for n in z.namelist()}
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as e:
        raise FheError(f"cannot read {path}: {e}") from None


def _read_meta(files: dict, path, kind: str) -> dict:
    """The ``meta.json`` of an einc FHE file of ``kind`` ("context" or "tensor"); FheError for anything else."""
    if "meta.json" not in files:
        raise FheError(f"{path}: not an einc FHE file (no meta.json)")
    try:
        meta = json.loads(files["meta.json"])
    except (ValueError, UnicodeDecodeError) as e:
        raise FheError(f"{path}: damaged einc FHE file (meta.json: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FheError(f"{path}: not an einc FHE {kind} file")
    got = meta.get("kind", "context")          # context files written before "kind" have none
    if got != kind:
        what = {"tensor": "an encrypted tensor", "context": "a context"}.get(got, repr(got))
        raise FheError(f"{path}: holds {what}, not {'an encrypted tensor' if kind == 'tensor' else 'a context'}")
    return meta


@contextmanager
def _reading(path):
    """Turn what a damaged file makes json, the layout or a CKKS library raise into one FheError."""
    try:
        yield
    except FheError as e:
        if e.message.startswith(f"{path}:"):
            raise
        raise FheError(f"{path}: {e.message}") from None
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError, EOFError,
            OverflowError, MemoryError) as e:
        raise FheError(f"{path}: damaged einc FHE file ({type(e).__name__}: {e})") from None
