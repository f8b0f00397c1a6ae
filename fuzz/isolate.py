"""Run a function in a forked child with a timeout: crashes and hangs stay in the child.

The parent forks (cheap: TVM, once imported by the parent, is shared copy-on-write, so a child
compiles in tens of milliseconds instead of paying TVM's import), the child runs ``fn``, streams
progress marks (``mark(stage)``) and finally its pickled result through a pipe, and exits with
``os._exit``.  The parent reads the pipe until EOF or the deadline, then reaps the child:

    ok       the child returned a value (``ChildResult.value``)
    error    the child raised (``exc_type``, ``message``, ``traceback``)
    crash    the child died by a signal (SIGSEGV, SIGABRT...) or exited without a result
    timeout  the deadline passed; the child was killed (SIGKILL)

``last_stage`` is the last mark the child reached, so a crash or hang is placed in a stage.
The child's stderr goes to a temporary file, returned as ``stderr`` (a TVM crash prints its C++
backtrace there).  ``Pool`` keeps up to ``jobs`` children running at once for a campaign.

The parent must fork from a single thread: callers avoid background threads (e.g. rich's
auto-refresh) in processes that use this module.
"""
from __future__ import annotations

import base64
import os
import pickle
import select
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

_PIPE_FD: int | None = None  # set in the child: where mark() writes


def mark(stage: str) -> None:
    """Record that the running child reached ``stage`` (a no-op outside a child)."""
    if _PIPE_FD is not None:
        try:
            os.write(_PIPE_FD, f"S {stage}\n".encode())
        except OSError:
            pass


def in_child() -> bool:
    return _PIPE_FD is not None


@dataclass
class ChildResult:
    status: str  # ok | error | crash | timeout
    value: Any = None
    exc_type: str = ""
    message: str = ""
    traceback: str = ""
    signal: int = 0
    exit_code: int = 0
    last_stage: str = ""
    stages: list = field(default_factory=list)
    stderr: str = ""
    wall_s: float = 0.0


class Child:
    """One running child (see ``spawn``)."""

    def __init__(self, pid: int, fd: int, errfile, deadline: float, tag=None):
        self.pid, self.fd, self.errfile, self.deadline, self.tag = pid, fd, errfile, deadline, tag
        self.buf = b""
        self.t0 = time.monotonic()
        self.eof = False

    def read_some(self) -> None:
        try:
            chunk = os.read(self.fd, 1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if chunk:
            self.buf += chunk
        else:
            self.eof = True

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self, timed_out: bool) -> ChildResult:
        if timed_out:
            self.kill()
        # drain what is left (a killed child closes its end)
        while not self.eof:
            r, _, _ = select.select([self.fd], [], [], 1.0)
            if not r:
                break
            self.read_some()
        os.close(self.fd)
        _, status = os.waitpid(self.pid, 0)
        res = ChildResult("crash", wall_s=time.monotonic() - self.t0)
        value_line = None
        for line in self.buf.split(b"\n"):
            if line.startswith(b"S "):
                res.stages.append(line[2:].decode(errors="replace"))
            elif line.startswith(b"R "):
                value_line = line[2:]
        res.last_stage = res.stages[-1] if res.stages else ""
        try:
            self.errfile.seek(0)
            res.stderr = self.errfile.read().decode(errors="replace")[-20000:]
        finally:
            self.errfile.close()
        if timed_out:
            res.status = "timeout"
            return res
        if os.WIFSIGNALED(status):
            res.signal = os.WTERMSIG(status)
            return res  # crash
        res.exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        if value_line is None:
            res.message = f"child exited with status {res.exit_code} and no result"
            return res  # crash: died without reporting (os._exit, fatal error)
        try:
            kind, payload = pickle.loads(base64.b64decode(value_line))
        except Exception as e:  # noqa: BLE001 - a result that does not unpickle
            res.status, res.exc_type, res.message = "error", type(e).__name__, f"unreadable child result: {e}"
            return res
        if kind == "ok":
            res.status, res.value = "ok", payload
        else:
            res.status = "error"
            res.exc_type, res.message, res.traceback = payload
        return res


#: signals held back while the parent forks: Python runs at-fork hooks (logging's lock) in between,
#: and a KeyboardInterrupt raised inside one is printed and dropped, so a Ctrl-C there was lost
_HELD = {signal.SIGINT, signal.SIGTERM}


def spawn(fn: Callable, args: tuple = (), kwargs: dict | None = None, timeout: float = 30.0, tag=None,
          setup: Callable | None = None, started: Callable[[Child], None] | None = None) -> Child:
    """Fork a child running ``setup()`` then ``fn(*args, **kwargs)``; returns at once.

    SIGINT and SIGTERM wait until the child is forked and handed to ``started`` (a pool's list of
    running children), so an interrupt lands where the caller can stop that child."""
    r, w = os.pipe()
    errfile = tempfile.TemporaryFile(prefix="einc-fuzz-err-")
    sys.stdout.flush()
    sys.stderr.flush()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        pid = os.fork()
        if pid == 0:
            _child(r, w, errfile, fn, args, kwargs, setup, mask)
        os.close(w)
        os.set_blocking(r, False)
        child = Child(pid, r, errfile, time.monotonic() + timeout, tag)
        if started is not None:
            started(child)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return child


def _child(r, w, errfile, fn, args, kwargs, setup, mask) -> None:
    """The forked child: run, write the result to the pipe, exit (never returns)."""
    global _PIPE_FD
    code = 0
    try:
        os.close(r)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(errfile.fileno(), 2)
        _PIPE_FD = w
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        # the forking thread's TVM pool came without its workers; with 1 thread TVM runs a
        # parallel loop inline (and the campaign's jobs are the parallelism)
        os.environ["TVM_NUM_THREADS"] = "1"
        import faulthandler

        faulthandler.disable()  # an inherited handler (pytest's) would write past our stderr
        try:
            if setup is not None:
                setup()
            value = fn(*args, **(kwargs or {}))
            payload = ("ok", value)
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            payload = ("error", (type(e).__name__, str(e)[:4000], traceback.format_exc()[-8000:]))
        try:
            blob = base64.b64encode(pickle.dumps(payload))
        except Exception as e:  # noqa: BLE001
            blob = base64.b64encode(pickle.dumps(("error", (type(e).__name__, f"result not picklable: {e}", ""))))
        data = b"R " + blob + b"\n"
        while data:
            n = os.write(w, data)
            data = data[n:]
    except BaseException:  # noqa: BLE001
        code = 70
    finally:
        os._exit(code)


def run_isolated(fn: Callable, *args, timeout: float = 30.0, setup: Callable | None = None, **kwargs) -> ChildResult:
    """Run ``fn(*args, **kwargs)`` in a forked child and wait for it (see the module docstring)."""
    child = spawn(fn, args, kwargs, timeout=timeout, setup=setup)
    try:
        while True:
            left = child.deadline - time.monotonic()
            if left <= 0:
                return child.finish(timed_out=True)
            rl, _, _ = select.select([child.fd], [], [], min(left, 1.0))
            if rl:
                child.read_some()
                if child.eof:
                    return child.finish(timed_out=False)
    except BaseException:  # an interrupt: no child outlives the wait
        child.finish(timed_out=True)
        raise


class Pool:
    """Up to ``jobs`` children at once.  ``submit`` starts one; ``wait`` returns finished ones."""

    def __init__(self, jobs: int = 1):
        self.jobs = max(1, jobs)
        self.running: list[Child] = []

    @property
    def free(self) -> int:
        return self.jobs - len(self.running)

    def submit(self, fn: Callable, args: tuple = (), kwargs: dict | None = None, timeout: float = 30.0, tag=None,
               setup: Callable | None = None) -> None:
        spawn(fn, args, kwargs, timeout=timeout, tag=tag, setup=setup, started=self.running.append)

    def wait(self, max_wait: float = 0.5) -> list[tuple[Any, ChildResult]]:
        """Block up to ``max_wait`` seconds; returns ``[(tag, result)]`` of children that finished."""
        done = []
        if not self.running:
            return done
        now = time.monotonic()
        for c in list(self.running):
            if c.deadline <= now:
                self.running.remove(c)
                done.append((c.tag, c.finish(timed_out=True)))
        if done:
            return done
        wait = max(0.0, min(max_wait, min(c.deadline for c in self.running) - now))
        rl, _, _ = select.select([c.fd for c in self.running], [], [], wait)
        for c in list(self.running):
            if c.fd in rl:
                c.read_some()
                if c.eof:
                    self.running.remove(c)
                    done.append((c.tag, c.finish(timed_out=False)))
        return done

    def shutdown(self) -> None:
        for c in self.running:
            c.finish(timed_out=True)
        self.running.clear()
