"""Atomic file writes: a reader sees the old file or the whole new one, never a partial file.

Everything einc writes for a user (kernels, sidecars, cache entries, FHE keys and tensors, fuzzing
state and regression folders, ``einc opt -o``) goes through here.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from einc.errors import WriteError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    For writers that want a file name (``export_library``, ``zipfile``) rather than bytes.  When the
    place cannot be written (a file where a directory should be, a directory at ``path``, no
    permission) it raises ``WriteError``, an ``OSError`` that is also an einc error; the writer's own
    errors pass through unchanged.
    """
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as e:
        above = next((p for p in path.parents if p.exists()), None)
        raise _cannot_write(path, e, f"{above} is not a directory" if above and not above.is_dir() else None) from None
    os.close(fd)
    try:
        yield tmp
        try:
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as e:
            raise _cannot_write(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically and durably."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_path(path, mode) as tmp:
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # disk full, quota
            raise _cannot_write(path, e) from None


def writable_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder einc can write into, made when missing (``mkdir -p``); ``WriteError``
    otherwise, before any work is done."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        above = next((p for p in (path, *path.parents) if p.exists()), None)
        raise _cannot_write(path, e, f"{above} is not a directory" if above and not above.is_dir() else None) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise WriteError(f"cannot write {path}: permission denied")
    return path


def _cannot_write(path, e: OSError, why: str | None = None) -> WriteError:
    return WriteError(f"cannot write {path}: {why or e.strerror or e}")
