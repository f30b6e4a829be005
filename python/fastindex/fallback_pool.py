"""The pydicom fallback, bounded: it runs in worker processes, few of them
whatever `-j` is, each with a memory limit and each file with a time limit.

pydicom builds the whole data set in memory; a valid file that the fast
path declines can hold millions of empty items or tiny private elements
(5 GB and 90 s in one process), and nothing inside a thread can stop it.
A process can be limited (RLIMIT_AS) and killed, and a signal to the run
reaches only the run: the workers sit in their own session, and the parent
kills them when it is cancelled or done.

Protocol: the parent sends a pickled (path, display, extras); the worker
answers ("ok", record, warnings, messages) or ("no", reason, message).
Both sides are this package: pickle is safe here.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from .outcomes import NotIndexed

#: defaults of --fallback-jobs, --fallback-memory (MiB), --fallback-timeout (s)
PROCESSES = 2
MEMORY_MIB = 256
TIMEOUT_S = 30.0

_LENGTH = struct.Struct("<I")


@dataclasses.dataclass(frozen=True)
class Limits:
    #: worker processes at most, whatever the number of parse threads
    processes: int = PROCESSES
    #: address space a worker may grow by while reading a file, in MiB
    #: (beyond what it needs idle); 0: no limit
    memory_mib: int = MEMORY_MIB
    #: seconds one file may take; 0: no limit
    timeout: float = TIMEOUT_S


class _Died(Exception):
    pass


class Worker:
    """One worker process; `read` is blocking (call it from a thread)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = f"import sys; sys.path.insert(0, {package_parent!r}); from fastindex.fallback_pool import serve; serve({limits.memory_mib})"
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            # A Ctrl-C at the terminal goes to the run, which then ends its
            # workers; they never see it themselves.
            start_new_session=True,
        )

    def read(self, path: str, display: str, extras: Sequence[tuple], data: bytes | None = None) -> tuple[dict, int, list[str]]:
        """The record, its warning count and messages; NotIndexed if none.
        A file over a limit is NotIndexed too ("too_large", "timeout"); the
        worker is then gone (`alive` is False). With `data`, those bytes
        are read as the file (`path` is then unused)."""
        _send(self.proc.stdin, (os.fsencode(path), display, list(extras), data))
        deadline = time.monotonic() + self.limits.timeout if self.limits.timeout > 0 else None
        try:
            reply = _receive(self.proc.stdout, deadline)
        except TimeoutError:
            self.kill()
            raise NotIndexed("timeout", f"pydicom took more than {self.limits.timeout:g} s (see --fallback-timeout)") from None
        except _Died:
            self.kill()
            code = self.proc.returncode
            if code is not None and code < 0:
                raise NotIndexed("malformed", f"pydicom's worker process died (signal {-code})") from None
            raise NotIndexed("malformed", "pydicom's worker process died") from None
        if reply[0] == "ok":
            return reply[1], reply[2], reply[3]
        if reply[1] == "too_large":
            self.kill()  # a worker that ran out of memory is not reused
        raise NotIndexed(reply[1], reply[2])

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass


def _send(f, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        f.write(_LENGTH.pack(len(data)) + data)
        f.flush()
    except (BrokenPipeError, ValueError):
        raise _Died() from None


def _read_exactly(f, n: int, deadline: float | None) -> bytes:
    fd = f.fileno()
    out = bytearray()
    while len(out) < n:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            raise TimeoutError()
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise _Died()
        out += chunk
    return bytes(out)


def _receive(f, deadline: float | None) -> Any:
    (n,) = _LENGTH.unpack(_read_exactly(f, _LENGTH.size, deadline))
    return pickle.loads(_read_exactly(f, n, deadline))


# --------------------------------------------------------------------------
# The worker's side


def _limit_memory(mib: int) -> int | None:
    """The address-space limit that lets this process grow by `mib` beyond
    what it is now (pydicom imported, idle), or None for no limit."""
    if mib <= 0:
        return None
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE") + mib * 1024 * 1024


def _soft_limit(limit: int | None) -> None:
    """Set the soft RLIMIT_AS (the hard one stays): on while pydicom reads,
    off while the worker answers (memory freed after a MemoryError is not
    always given back to the system at once)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = hard if limit is None else limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def serve(memory_mib: int) -> None:
    """The worker: read requests from stdin until it closes."""
    import signal
    import warnings

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
    from . import fallback

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Nothing a library prints may land in the replies.
    sys.stdout = sys.stderr
    try:
        limit = _limit_memory(memory_mib)
    except (OSError, ValueError):
        limit = None
    while True:
        try:
            path, display, extras, data = _receive(stdin, None)
        except _Died:
            return
        try:
            if limit is not None:
                _soft_limit(limit)
            try:
                with _as_file(os.fsdecode(path), data) as source:
                    rec, notes = fallback.read_noted(source, display, [tuple(e) for e in extras])
            finally:
                if limit is not None:
                    _soft_limit(None)
            reply: tuple = ("ok", rec, notes.count, notes.messages)
        except NotIndexed as e:
            reply = ("no", e.reason, e.message)
        except MemoryError:
            reply = ("no", "too_large", f"pydicom needed more than {memory_mib} MiB to read it (see --fallback-memory)")
        except RecursionError:
            reply = ("no", "malformed", "pydicom: nesting too deep")
        except Exception as e:  # pydicom raises many kinds on damaged files
            reply = ("no", "malformed", f"pydicom: {type(e).__name__}: {e}")
        try:
            _send(stdout, reply)
        except _Died:
            return
        if reply[1] == "too_large":
            return  # the heap may be fragmented past use: start afresh


@contextlib.contextmanager
def _as_file(path: str, data: bytes | None) -> Iterator[str]:
    """`path`, or a file holding `data` (in memory where the system can):
    bytes are read as a file would be, by the same code."""
    if data is None:
        yield path
        return
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("fastindex-bytes")
        try:
            _write_all(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix="fastindex-bytes-") as f:
        f.write(data)
        f.flush()
        yield f.name


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Pool:
    """Workers shared by the tasks of one run (async), started as needed."""

    def __init__(self, limits: Limits):
        import anyio

        self.limits = limits
        self._slots = anyio.Semaphore(max(1, limits.processes))
        self._idle: list[Worker] = []
        self._all: list[Worker] = []

    async def read(self, path: str, display: str, extras: Sequence[tuple]) -> tuple[dict, int, list[str]]:
        import anyio.to_thread

        async with self._slots:
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                worker = await anyio.to_thread.run_sync(Worker, self.limits)
                self._all.append(worker)
            try:
                # Cancelled (a signal, a closed iterator): the thread is
                # left to return on its own once the worker is killed.
                return await anyio.to_thread.run_sync(worker.read, path, display, extras, abandon_on_cancel=True)
            except BaseException:
                if not isinstance(sys.exc_info()[1], NotIndexed):
                    worker.kill()
                raise
            finally:
                if worker.alive:
                    self._idle.append(worker)

    def close(self) -> None:
        for w in self._all:
            w.kill()
        self._all.clear()
        self._idle.clear()


_shared: Worker | None = None
_shared_lock = threading.Lock()


def read_one(path: str, display: str, extras: Sequence[tuple], data: bytes | None = None) -> tuple[dict, int, list[str]]:
    """One file (or `data`, read as that file), through a worker kept for
    such calls (`read_header`, `read_bytes`)."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.alive:
            _shared = Worker(Limits())
            atexit.register(_shared.kill)
        return _shared.read(path, display, extras, data)
