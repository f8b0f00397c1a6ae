"""The kernel cache: compiled kernels kept in memory and on disk, shared between processes.

Key.  ``cache_key(prog, target_json)`` is the SHA-256 of the printed program, the target's JSON,
the TVM version, einc's version, the schedule version and the entry format.  Any change in one
of them is a different kernel, so a stale entry is never found, only left behind (``prune``).

Disk layout.  One file per kernel, ``<dir>/<key[:2]>/<key>.ekc``, written whole to a temp file in
the same folder and moved into place with ``os.replace``: a reader sees either no file or a
complete one, and two processes writing the same key just race to replace a good file by another
good one.  A file is

    MAGIC (8 bytes)  header length (4 bytes, little endian)  header (JSON)  payload  SHA-256 (32 bytes)

where the payload is the kernel's shared library, the header records its key, size and metadata,
and the trailing SHA-256 covers everything before it.  ``KernelCache.read`` checks magic, format,
key, size and digest before anything is loaded: a truncated, corrupted or
foreign file is reported as a miss (counted in ``stats["corrupt"]``) and rebuilt, never handed
to ``dlopen``.  The library is loaded from a private copy of the verified bytes, so another
process replacing the entry meanwhile cannot swap what is loaded.

Where.  ``EINC_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("einc")/kernels``.  A cache
folder that cannot be written costs a warning (once) and a rebuild next time, never an error.

This module imports no TVM: loading a library goes through ``einc.lowering._tvm``.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from einc.fileio import atomic_write

MAGIC = b"EINCKC01"
FORMAT_VERSION = 1
SUFFIX = ".ekc"
_HEADER_LEN = struct.Struct("<I")
_DIGEST = 32  # trailing SHA-256
_MAX_HEADER = 16 << 20  # a header larger than this is garbage, whatever it says


def cache_dir() -> Path:
    """The disk cache folder: ``$EINC_CACHE_DIR``, else the user cache dir of einc."""
    env = os.environ.get("EINC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("einc")) / "kernels"


def program_text(prog) -> str:
    """The program as text for hashing: the IR printer's form when the printer exists."""
    try:
        from einc.ir.printer import print_program
    except ImportError:
        return repr(prog)
    return print_program(prog)


_VERSIONS: dict[str, str] | None = None


def versions() -> dict[str, str]:
    """Versions that change what a kernel is: TVM, einc, the schedules, the entry format."""
    global _VERSIONS
    if _VERSIONS is None:
        from importlib import metadata

        import einc

        try:
            tvm_version = metadata.version("apache-tvm")
        except metadata.PackageNotFoundError:
            tvm_version = "none"
        _VERSIONS = {
            "tvm": tvm_version,
            "einc": einc.__version__,
            "schedule": str(_schedule_version()),
            "format": str(FORMAT_VERSION),
        }
    return dict(_VERSIONS)


#: the lowering sources whose text is part of the key: editing a schedule invalidates old kernels
_LOWERING_SOURCES = ("lower.py", "schedules_cpu.py", "schedules_gpu.py", "schedules_gpu_tc.py", "rules.py", "build.py", "target.py",
                     "tc_layout.py", "cuda_source.py")


def _schedule_version() -> str:
    """``SCHEDULE_VERSION`` of the schedules (when they declare one) + a hash of the lowering sources.

    Hashing the files (read as text, nothing imported) means a kernel built by an older schedule is
    never served after the code changes, even when nobody bumped a version number.
    """
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in _LOWERING_SOURCES:
        try:
            h.update(name.encode() + b"\0" + (here / name).read_bytes())
        except OSError:
            continue
    declared = "0"
    try:
        import re

        m = re.search(r"^SCHEDULE_VERSION\s*=\s*['\"]?([\w.\-]+)", (here / "schedules_cpu.py").read_text(), re.M)
        declared = m.group(1) if m else "0"
    except OSError:
        pass
    return f"{declared}+{h.hexdigest()[:16]}"


def cache_key(prog, target_json: str, **extra: Any) -> str:
    """The hex SHA-256 naming the kernel of ``prog`` for ``target_json`` (see the module doc).

    ``extra`` (JSON-able) adds anything else that changes the kernel, e.g. build options.
    """
    doc = {"program": program_text(prog), "target": target_json, "versions": versions()}
    if extra:
        doc["extra"] = extra
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# the entry format


def encode_entry(key: str, payload: bytes, meta: dict | None = None) -> bytes:
    """The bytes of one entry: magic, header length, header, payload, SHA-256 of all that."""
    header = {"format": FORMAT_VERSION, "key": key, "size": len(payload), "created": time.time(),
              "meta": meta or {}}
    hb = json.dumps(header, sort_keys=True, default=str).encode()
    body = MAGIC + _HEADER_LEN.pack(len(hb)) + hb + payload
    return body + hashlib.sha256(body).digest()


class BadEntry(Exception):
    """An entry that fails a check; the message says which (internal to the cache)."""


def decode_entry(blob: bytes, key: str | None = None) -> tuple[dict, bytes]:
    """``(header, payload)`` of an entry, after every check; raise ``BadEntry`` otherwise."""
    if len(blob) < len(MAGIC) + _HEADER_LEN.size + _DIGEST:
        raise BadEntry(f"truncated: {len(blob)} bytes")
    if blob[: len(MAGIC)] != MAGIC:
        raise BadEntry("not an einc kernel cache entry (bad magic)")
    body, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise BadEntry("checksum mismatch (corrupt or truncated)")
    (hlen,) = _HEADER_LEN.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + _HEADER_LEN.size
    if hlen > _MAX_HEADER or start + hlen > len(body):
        raise BadEntry("truncated or corrupt header")
    try:
        header = json.loads(blob[start : start + hlen].decode())
    except (UnicodeDecodeError, ValueError):
        raise BadEntry("corrupt header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise BadEntry("foreign entry format")
    if key is not None and header.get("key") != key:
        raise BadEntry("entry belongs to another key")
    payload = body[start + hlen :]
    if header.get("size") != len(payload):
        raise BadEntry(f"payload of {len(payload)} bytes, header says {header.get('size')}")
    return header, payload


# ---------------------------------------------------------------------------------------------
# the cache


@dataclass
class Entry:
    """What the cache holds for one key: the verified library bytes and, once loaded, the module."""

    key: str
    payload: bytes
    meta: dict = field(default_factory=dict)
    module: Any = None  # the loaded runtime module, or what ``loader`` returned
    origin: str = "built"  # "built" (this process compiled it) or "disk"


class KernelCache:
    """In-memory dict in front of an on-disk folder of entries.

    ``get_or_build(key, build)`` is the one call most code needs: memory, else disk, else
    ``build()`` (which returns ``(payload, meta, module)``) and store.  ``stats`` counts
    memory/disk hits, misses, corrupt entries and failed writes.
    """

    def __init__(self, directory: Path | str | None = None, *, disk: bool = True,
                 loader: Callable[[bytes, dict], Any] | None = None):
        self._directory = Path(directory) if directory is not None else None
        self.disk = disk
        self.loader = loader or load_library
        self.memory: dict[str, Entry] = {}
        self.stats = {"memory": 0, "disk": 0, "miss": 0, "corrupt": 0, "write_failed": 0}
        self._lock = threading.Lock()
        self._warned = False
        self._unloadable: set[str] = set()  # good disk entries this machine cannot load

    @property
    def directory(self) -> Path:
        return self._directory if self._directory is not None else cache_dir()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}{SUFFIX}"

    # -- reading

    def lookup(self, key: str, *, load: bool = True) -> Entry | None:
        """The entry for ``key`` from memory or disk (verified, loaded when ``load``), else None."""
        e = self.memory.get(key)
        if e is not None:
            self.stats["memory"] += 1
            return e
        if not self.disk:
            return None
        e = self.read(key)
        if e is None:
            return None
        if load:
            if _cuda_without_gpu(e.meta):
                # a good entry this machine cannot load (no CUDA runtime/GPU): a miss, not corruption;
                # the rebuild serves cross-compilation and leaves the entry on disk as it was
                self._unloadable.add(key)
                return None
            try:
                e.module = self.loader(e.payload, e.meta)
            except Exception as exc:  # a verified file that still fails to load: rebuild it
                self.stats["corrupt"] += 1
                self._warn(f"einc kernel cache: entry {key[:12]} failed to load ({exc}); rebuilding")
                return None
        self.stats["disk"] += 1
        with self._lock:
            self.memory[key] = e
        return e

    def read(self, key: str) -> Entry | None:
        """The verified disk entry for ``key``, not loaded; None when absent or bad."""
        p = self.path(key)
        try:
            blob = p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn(f"einc kernel cache: cannot read {p}: {exc}")
            return None
        try:
            header, payload = decode_entry(blob, key)
        except BadEntry:
            self.stats["corrupt"] += 1
            return None
        return Entry(key, payload, header.get("meta", {}), origin="disk")

    def contains(self, key: str) -> bool:
        """Whether memory or disk holds ``key`` (a disk entry is checked but not loaded)."""
        return key in self.memory or (self.disk and self.read(key) is not None)

    # -- writing

    def store(self, key: str, payload: bytes, meta: dict | None = None, module: Any = None) -> Entry:
        """Keep an entry in memory and write it to disk (a failed write only warns)."""
        e = Entry(key, payload, dict(meta or {}), module, origin="built")
        with self._lock:
            self.memory[key] = e
        if self.disk and key not in self._unloadable:
            try:
                atomic_write(self.path(key), encode_entry(key, payload, e.meta))
            except OSError as exc:
                self.stats["write_failed"] += 1
                self._warn(f"einc kernel cache: cannot write {self.path(key)}: {exc}")
        return e

    def get_or_build(self, key: str, build: Callable[[], tuple[bytes, dict, Any]]) -> Entry:
        """The entry for ``key``; on a miss ``build()`` returns ``(payload, meta, module)``."""
        e = self.lookup(key)
        if e is not None:
            return e
        self.stats["miss"] += 1
        payload, meta, module = build()
        return self.store(key, payload, meta, module)

    # -- housekeeping

    def clear(self, *, memory: bool = True, disk: bool = False) -> None:
        if memory:
            self.memory.clear()
        if disk and self.directory.is_dir():
            for p in self.directory.glob(f"*/*{SUFFIX}"):
                try:
                    p.unlink()
                except OSError:
                    pass

    def entries(self) -> list[Path]:
        d = self.directory
        return sorted(d.glob(f"*/*{SUFFIX}")) if d.is_dir() else []

    def prune(self, max_bytes: int) -> int:
        """Delete the least recently written disk entries until the rest fit in ``max_bytes``."""
        files = []
        for p in self.entries():
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total, removed = sum(f[1] for f in files), 0
        for _, size, p in sorted(files):
            if total <= max_bytes:
                break
            try:
                p.unlink()
            except OSError:
                continue
            total -= size
            removed += 1
        return removed

    def _warn(self, msg: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _cuda_without_gpu(meta) -> bool:
    try:
        kind = json.loads((meta or {}).get("target") or "{}").get("kind")
    except (TypeError, ValueError, AttributeError):
        return False
    if kind != "cuda":
        return False
    from ._tvm import cuda_exists

    return not cuda_exists()


# ---------------------------------------------------------------------------------------------
# loading a library


_LOAD_DIR: tempfile.TemporaryDirectory | None = None


def load_library(payload: bytes, meta: dict | None = None):
    """Load verified shared-library bytes as a TVM runtime module, from a private copy.

    The copy lives in a per-process temp folder (removed at exit): ``dlopen`` reads exactly the
    bytes that passed the checksum, whatever happens to the cache entry meanwhile.
    """
    global _LOAD_DIR
    from einc.lowering import _tvm

    if _LOAD_DIR is None:
        _LOAD_DIR = tempfile.TemporaryDirectory(prefix="einc-kernels-")
    digest = hashlib.sha256(payload).hexdigest()[:24]
    path = Path(_LOAD_DIR.name) / f"{digest}.so"
    if not path.exists():
        atomic_write(path, payload)
    load = getattr(_tvm, "load_module", None)
    if load is None:  # older _tvm without the helper
        load = _tvm.tvm.runtime.load_module
    return load(str(path))


_DEFAULT: KernelCache | None = None
_RESOLVED: dict = {}


def resolve_target(target=None) -> str:
    """``lowering.target.resolve`` memoized for hashable specs (host detection costs ~100 us)."""
    try:
        return _RESOLVED[target]
    except KeyError:
        pass
    except TypeError:  # a dict
        from . import target as _target

        return _target.resolve(target)
    from . import target as _target

    tjson = _RESOLVED[target] = _target.resolve(target)
    return tjson


_CACHED_BUILT = None


def _cached_built_class():
    """``Built`` for a library loaded from the cache: it keeps the bytes, so ``export`` copies them
    (a loaded library module has nothing left to link)."""
    global _CACHED_BUILT
    if _CACHED_BUILT is None:
        from dataclasses import dataclass

        from .build import Built

        @dataclass
        class CachedBuilt(Built):
            library: bytes = b""

            def export(self, path: str) -> None:
                atomic_write(path, self.library)

        _CACHED_BUILT = CachedBuilt
    return _CACHED_BUILT


def build_cached(prog, target=None, *, schedule: bool = True, cache: KernelCache | None = None,
                 tune: int = 0, tune_dir: str | None = None):
    """``lowering.build.build`` through the cache: ``(Built, origin)``, origin "memory"/"disk"/"built".

    A disk hit returns a ``Built`` whose ``rt_mod`` is the loaded library (``mod`` is None, so no
    TIR); its ``timings`` are those of the original build plus ``load``.  ``tune``/``tune_dir`` are
    passed to ``build`` and are part of the key (a tuned kernel is never served for an untuned
    request, nor one tuned with another budget or database).
    """
    from . import build as _build

    cache = cache or default_cache()
    tjson = resolve_target(target)
    tune = int(tune or 0)
    if tune > 0:
        key = cache_key(prog, tjson, schedule=bool(schedule), tune=tune,
                        tune_dir=os.path.abspath(tune_dir) if tune_dir else None)
    else:  # the key of untuned kernels is unchanged (no "tune" entry)
        key = cache_key(prog, tjson, schedule=bool(schedule))
    hit = cache.lookup(key)
    if hit is not None:
        origin = "memory" if hit.origin == "built" or isinstance(hit.module, _build.Built) else "disk"
        if not isinstance(hit.module, _build.Built):
            meta = hit.meta or {}
            hit.module = _cached_built_class()(
                prog, tjson, hit.module, plan=[tuple(p) for p in meta.get("plan", [])],
                timings=dict(meta.get("timings", {})), tvm_version=versions()["tvm"],
                param_align=meta.get("param_align"), library=hit.payload)
            origin = "disk"
        return hit.module, origin
    cache.stats["miss"] += 1
    built = _build.build(prog, tjson, schedule=schedule, tune=tune, tune_dir=tune_dir)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="einc-export-") as d:
        so = os.path.join(d, "kernel.so")
        try:
            built.export(so)
            payload = Path(so).read_bytes()
        except Exception as exc:  # noqa: BLE001 - no compiler to link with, full disk: run uncached
            cache._warn(f"einc kernel cache: cannot export the library ({type(exc).__name__}: {exc}); not cached")
            return built, "built"
    built.timings["export"] = time.perf_counter() - t0
    meta = {"target": tjson, "timings": built.timings, "plan": [list(map(str, p)) for p in built.plan],
            "program": program_text(prog), "param_align": getattr(built, "param_align", None)}
    cache.store(key, payload, meta, built)
    return built, "built"


def default_cache() -> KernelCache:
    """The process-wide cache (folder from ``EINC_CACHE_DIR`` at each access)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = KernelCache()
    return _DEFAULT
