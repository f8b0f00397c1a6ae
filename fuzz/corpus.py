"""The on-disk corpus: seeds, the queue of inputs that added feedback, and regression folders.

    corpus/seeds/*.ein                 hand-written programs (an optional NAME.pipeline.txt beside one)
    corpus/queue/<digest>.json         inputs that added feedback (the campaign's working set)
    corpus/regressions/<id>/           one folder per finding:
        case.ein      the (reduced) program, or the raw text for a parse-stage finding
        pipeline.txt  the (reduced) pipeline (FuzzPipeline.to_text)
        meta.json     symptom, stage, signature, status, expected outcome, seeds, versions
        err.log       the error message / mismatch and the child's stderr tail
        repro.py      a standalone reproducer (exit 1 while the bug reproduces)

Every write is atomic: a file goes through a temporary name and ``os.replace``, a regression folder is
assembled under a temporary name and renamed into place, so a kill never leaves half a folder.

``status`` in meta.json: ``open`` (reproduces; the replay test xfails and fails once it stops
reproducing, so that someone marks it fixed), ``fixed`` (the replay asserts ``expect``), ``workaround``
(a TVM bug einc works around: the replay asserts ``expect``, the workaround's outcome).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from einc.fileio import atomic_write

from .case import Case, FuzzPipeline
from .outcome import Outcome


def atomic_write_json(path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


# ------------------------------------------------------------------------------------------- seeds and queue


def load_seeds(corpus: str | os.PathLike, skipped: list[str] | None = None) -> list[Case]:
    """Cases from ``corpus/seeds/*.ein`` (default pipeline unless a ``NAME.pipeline.txt`` is beside).

    A seed that cannot be read is skipped, not fatal; ``skipped`` gets ``"path: why"`` for each."""
    from einc.frontend.program import parse_program

    out = []
    for p in sorted(Path(corpus, "seeds").glob("*.ein")):
        pl_path = p.with_suffix(".pipeline.txt")
        try:
            prog = parse_program(p.read_text(), filename=str(p))
            pl = FuzzPipeline.from_text(pl_path.read_text()) if pl_path.exists() else FuzzPipeline()
        except (OSError, UnicodeDecodeError, ValueError) as e:  # einc's parse errors are ValueErrors
            if skipped is not None:
                skipped.append(f"{p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            continue
        out.append(Case(prog, pl))
    return out


@contextlib.contextmanager
def locked(out: str | os.PathLike):
    """Hold ``out/.lock`` (an advisory ``flock``) while a campaign writes ``out``: a second campaign on
    the same folder is refused instead of the last writer's report silently winning."""
    import fcntl

    from einc.errors import UsageError
    from einc.fileio import writable_dir

    path = writable_dir(out) / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise UsageError(f"{out} is in use by another einc fuzz campaign{f' (pid {holder})' if holder else ''}: "
                             "wait for it, or give this one another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def queue_dir(corpus) -> Path:
    return Path(corpus, "queue")


def save_queue_entry(corpus, case: Case, info: dict) -> str:
    d = case.digest
    atomic_write_json(queue_dir(corpus) / f"{d}.json", {"case": case.to_json(), "info": info})
    return d


def load_queue(corpus) -> dict[str, Case]:
    out = {}
    q = queue_dir(corpus)
    if not q.is_dir():
        return out
    for p in sorted(q.glob("*.json")):
        try:
            out[p.stem] = Case.from_json(json.loads(p.read_text())["case"])
        except Exception:  # noqa: BLE001 - a damaged entry is skipped
            continue
    return out


# ------------------------------------------------------------------------------------------- regressions


def regressions_dir(corpus) -> Path:
    return Path(corpus, "regressions")


def finding_id(outcome: Outcome, case: Case | None = None) -> str:
    """``symptom-stage-hash`` of the signature and the (reduced) case: two cases of one signature (a
    fixed bug met again by another program) get folders of their own."""
    key = outcome.signature + (f"\n{case.digest}" if case is not None else "")
    return f"{outcome.symptom}-{outcome.stage}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


#: the folders whose signature a campaign does not report again: bugs still there (``open``), and TVM
#: bugs einc works around (``workaround``: met again through a fuzzed TVM pipeline, as expected).  A
#: ``fixed`` bug met again is a regression, reported as a new finding.
SUPPRESSING = ("open", "workaround")


def known_signatures(corpus, statuses: tuple[str, ...] | None = SUPPRESSING) -> dict[str, str]:
    """signature -> folder id, over the regression folders of ``statuses`` (None: every folder)."""
    out = {}
    for folder in list_regressions(corpus):
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if statuses is None or meta.get("status", "open") in statuses:
                out[meta["signature"]] = folder.name
        except (OSError, ValueError, KeyError, TypeError):  # a damaged folder: replay reports it
            continue
    return out


def case_text(case: Case) -> str:
    if case.src is not None:
        return case.src
    from einc.ir.printer import print_program

    return print_program(case.program)


REPRO = '''#!/usr/bin/env python
"""Reproducer for einc fuzz finding {id}: {symptom} at stage {stage}.

    {summary}

Run from anywhere with einc installed:  python repro.py [--in-process]
It replays case.ein, pipeline.txt and meta.json next to it through einc.fuzz.replay.reproduce (in a
child process, so a crash cannot take this script down; --in-process runs it here, showing any
traceback) and prints the outcome.  Exit status 1 while the bug reproduces (same signature), 0
otherwise.  repro_tvm.py, when present, reproduces it with TVM alone.
"""
import pathlib
import sys

if __name__ == "__main__":
    from einc.fuzz.replay import reproduce

    sys.exit(reproduce(pathlib.Path(__file__).resolve().parent, in_process="--in-process" in sys.argv))
'''


def save_regression(corpus, case: Case, outcome: Outcome, *, extra_meta: dict | None = None, log: str = "",
                    status: str = "open", expect: str = "ok@done") -> Path | None:
    """Write the regression folder for ``outcome`` atomically; ``None`` when one with its id exists."""
    root = regressions_dir(corpus)
    root.mkdir(parents=True, exist_ok=True)
    fid = finding_id(outcome, case)
    final = root / fid
    if final.exists():
        return None
    try:  # the installed version, without importing TVM (seconds)
        from importlib.metadata import version

        tvm_version = version("apache-tvm")
    except Exception:  # noqa: BLE001
        tvm_version = ""
    from einc import __version__

    meta = {
        "id": fid, "symptom": outcome.symptom, "stage": outcome.stage, "exc_type": outcome.exc_type,
        "message": outcome.message[:2000], "signature": outcome.signature, "status": status, "expect": expect,
        "seed": case.seed, "from_text": case.src is not None, "found_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "einc_version": __version__, "tvm_version": tvm_version, "timeout_s": 60, "case": case.to_json(),
    }
    meta.update(extra_meta or {})
    summary = str(outcome).replace('"""', "'''")[:300]
    tmp = Path(tempfile.mkdtemp(prefix=f".{fid}.", dir=root))
    try:
        (tmp / "case.ein").write_text(case_text(case))
        (tmp / "pipeline.txt").write_text(case.pipeline.to_text())
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
        detail = json.dumps(outcome.detail, indent=1, default=str) if outcome.detail else ""
        (tmp / "err.log").write_text(f"{outcome}\n\n{outcome.message}\n\n{detail}\n\n{log}".rstrip() + "\n")
        (tmp / "repro.py").write_text(REPRO.format(id=fid, symptom=outcome.symptom, stage=outcome.stage, summary=summary))
        os.rename(tmp, final)
    except FileExistsError:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if final.exists():
            return None
        raise e
    return final


def load_regression(folder: str | os.PathLike) -> tuple[Case, dict]:
    """The case and meta of a regression folder (case.ein parsed back unless the finding is on text)."""
    from einc.errors import EincError, UsageError
    from einc.frontend.program import parse_program

    folder = Path(folder)
    try:
        name = "meta.json"
        meta = json.loads((folder / name).read_text())
        if not isinstance(meta, dict) or "signature" not in meta:
            raise ValueError("no 'signature' in it")
        name = "pipeline.txt"
        pl = FuzzPipeline.from_text((folder / name).read_text())
        name = "case.ein"
        text = (folder / name).read_text()
        if meta.get("from_text"):
            return Case(None, pl, src=text, seed=meta.get("seed", 0)), meta
        return Case(parse_program(text, filename=str(folder / name)), pl, seed=meta.get("seed", 0)), meta
    except EincError:
        raise  # a parse error of case.ein: it names the file, with a caret
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        raise UsageError(f"regression folder {folder}: cannot read {name}: {why}") from None


def rewrite_case(folder: str | os.PathLike, case: Case, meta_update: dict) -> None:
    """Replace a regression folder's case (``case.ein``, ``pipeline.txt``, ``meta.json``'s ``case``)
    as a whole: the new folder is assembled beside it and swapped in, so a kill leaves the old one
    or the new one (the old one, renamed ``.NAME.old``, until the swap finishes)."""
    folder = Path(folder)
    meta = {**json.loads((folder / "meta.json").read_text()), **meta_update, "case": case.to_json()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for p in folder.iterdir():
            if p.is_file() and p.name not in ("case.ein", "pipeline.txt", "meta.json"):
                shutil.copy2(p, tmp / p.name)
        (tmp / "case.ein").write_text(case_text(case))
        (tmp / "pipeline.txt").write_text(case.pipeline.to_text())
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
        old = folder.with_name(f".{folder.name}.old")
        os.rename(folder, old)
        os.rename(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def list_regressions(corpus) -> list[Path]:
    root = regressions_dir(corpus)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "meta.json").exists())
