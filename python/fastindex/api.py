"""The Python face: the pipeline the command runs, as calls.

Async (anyio: asyncio or trio): `aindex` and `aiter_instances`. Sync:
`index` and `iter_instances`, which run the same code on an event loop of
their own, in a thread of their own, so that they work wherever they are
called, inside a running loop too (a notebook cell, a sync function called
from a coroutine). Every run gives its summary (the command's counts) and
its problems (path, reason, message): `Index.summary`/`Index.problems`, and
the same on the iterators. One file: `read_header` (a path) and
`read_bytes` (bytes or a file-like object).

The threads that read are the process's, shared by every run
(`configure`); cancelling a call, or closing or dropping an iterator, stops
its run and waits for what it started.
"""

from __future__ import annotations

import concurrent.futures
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import IO, Any, Literal, TypeVar

import anyio
import anyio.from_thread

from . import _native
from .outcomes import FALLBACK_REASONS, NotIndexed, Problem, Summary
from .pipeline import Options, Run
from .records import InstanceRecord, SubseriesRecord
from .tags import resolve

T = TypeVar("T")
_PathArg = str | os.PathLike[str]


def _options(
    jobs: int | None,
    relative_to: str | os.PathLike[str] | None,
    follow_symlinks: bool,
    tags: Iterable[str] | None,
    exclude: Iterable[str] | None,
    no_sign_request: bool = False,
) -> Options:
    return Options(
        jobs=jobs,
        relative_to=None if relative_to is None else os.fspath(relative_to),
        follow_symlinks=follow_symlinks,
        extras=resolve(tags or ()),
        exclude=tuple(exclude or ()),
        no_sign_request=no_sign_request,
    )


class Index(list[SubseriesRecord]):
    """The subseries records of a run (a list, sorted as the command writes
    them), with the run's `summary` and `problems`."""

    summary: Summary
    problems: list[Problem]


def configure(*, threads: int | None = None, prefetchers: int | None = None) -> dict[str, int]:
    """Set the threads that every run of the process shares: `threads`
    parse threads (default: the machine's cores), `prefetchers` header
    reads in flight ahead of them on a slow disk (default 16). Takes effect
    at once, for runs going on too; returns the settings."""
    if threads is not None and threads < 1 or prefetchers is not None and prefetchers < 1:
        raise ValueError("threads and prefetchers must be at least 1")
    t, p = _native.configure(threads, prefetchers)
    return {"threads": t, "prefetchers": p}


# ---------------------------------------------------------------------------
# async


async def aindex(
    paths: Iterable[_PathArg],
    *,
    jobs: int | None = None,
    relative_to: str | os.PathLike[str] | None = None,
    follow_symlinks: bool = False,
    tags: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    no_sign_request: bool = False,
) -> Index:
    """Subseries records of every DICOM file under `paths`, sorted, with
    the run's summary and problems. Cancelling the awaiting task stops the
    run; the cancellation returns once its threads are done."""
    run = Run(list(paths), _options(jobs, relative_to, follow_symlinks, tags, exclude, no_sign_request), keep_problems=True)
    try:
        while await run.next() is not None:
            pass
    finally:
        await run.aclose()
    # Made in a worker thread: a large index is many dicts.
    dicts: list[Any] = await anyio.to_thread.run_sync(run.aggregator.dicts)
    out = Index(dicts)
    out.summary, out.problems = run.summary, run.problems
    return out


class AsyncInstances(AsyncIterator[InstanceRecord]):
    """Per-file records as they are read (completion order); see
    `aiter_instances`. `summary` and `problems` so far (complete once the
    iteration ends)."""

    def __init__(self, paths: Iterable[_PathArg], options: Options):
        self._run: Run | None = Run(list(paths), options, records=True, keep_problems=True)
        self.summary = self._run.summary
        self.problems = self._run.problems
        self._batch: list[Any] = []
        self._at = 0

    def __aiter__(self) -> AsyncInstances:
        return self

    async def _pull(self) -> list[InstanceRecord] | None:
        """The records not handed out yet: the rest of the batch in hand,
        or the next batch; None once the run is over (then closed)."""
        rest = self._batch[self._at :]
        self._batch, self._at = [], 0
        while not rest:
            run = self._run
            if run is None:
                return None
            try:
                batch = await run.next()
            except BaseException:
                await self.aclose()
                raise
            if batch is None:
                await self.aclose()
                return None
            rest = batch
        return rest

    async def __anext__(self) -> InstanceRecord:
        if self._at >= len(self._batch):
            batch = await self._pull()
            if batch is None:
                raise StopAsyncIteration
            self._batch, self._at = batch, 0
        self._at += 1
        record: InstanceRecord = self._batch[self._at - 1]
        return record

    async def aclose(self) -> None:
        """Stop the run (if not over) and wait for what it started."""
        run, self._run = self._run, None
        self._batch = []
        if run is not None:
            await run.aclose()

    async def __aenter__(self) -> AsyncInstances:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        run = getattr(self, "_run", None)
        if run is not None and not sys.is_finalizing():
            run.close()


def aiter_instances(
    paths: Iterable[_PathArg],
    *,
    jobs: int | None = None,
    relative_to: str | os.PathLike[str] | None = None,
    follow_symlinks: bool = False,
    tags: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    no_sign_request: bool = False,
) -> AsyncInstances:
    """Per-file records of every DICOM file under `paths`, as an async
    iterator: `async with aiter_instances(p) as it: async for r in it`.
    Leaving early (`aclose`, the `async with`, a cancelled task) stops the
    run. A missing PATH raises here, before any iteration."""
    return AsyncInstances(paths, _options(jobs, relative_to, follow_symlinks, tags, exclude, no_sign_request))


# ---------------------------------------------------------------------------
# sync, on an event loop of their own


def _check_cancelled() -> None:
    """Raise the host's cancellation when this thread was started by
    anyio's (or trio's) `to_thread.run_sync` and its task was cancelled: an
    offloaded `index()` stops with the task that awaited it."""
    try:
        anyio.from_thread.check_cancelled()
    except RuntimeError:  # not such a thread (NoEventLoopError is one)
        pass


class _Loop:
    """An event loop on a daemon thread of its own, running calls for one
    sync call or iterator."""

    def __init__(self) -> None:
        self._portal: anyio.from_thread.BlockingPortal | None = None
        started = threading.Event()

        async def serve() -> None:
            async with anyio.from_thread.BlockingPortal() as portal:
                self._portal = portal
                started.set()
                await portal.sleep_until_stopped()

        def main() -> None:
            try:
                anyio.run(serve)
            finally:
                started.set()

        self._thread = threading.Thread(target=main, name="fastindex-loop", daemon=True)
        self._thread.start()
        started.wait()
        if self._portal is None:
            raise RuntimeError("fastindex: could not start an event loop")

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await fn(*args)` on the loop. Interrupted (KeyboardInterrupt, a
        cancelled host task), the call is cancelled, and waited for."""
        assert self._portal is not None
        over = threading.Event()

        async def call() -> T:
            try:
                return await fn(*args)
            finally:
                over.set()

        future = self._portal.start_task_soon(call)
        try:
            while True:
                try:
                    return future.result(timeout=0.01)
                except concurrent.futures.TimeoutError:
                    _check_cancelled()
        except BaseException:
            future.cancel()
            over.wait()  # its cleanup (closing the run) is done
            raise

    def close(self) -> None:
        portal, self._portal = self._portal, None
        if portal is not None:
            portal.call(portal.stop, True)
            self._thread.join()


def _sync(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    loop = _Loop()
    try:
        return loop.call(fn, *args)
    finally:
        loop.close()


def index(
    paths: Iterable[_PathArg],
    *,
    jobs: int | None = None,
    relative_to: str | os.PathLike[str] | None = None,
    follow_symlinks: bool = False,
    tags: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    no_sign_request: bool = False,
) -> Index:
    """Subseries records of every DICOM file under `paths`, sorted (a
    list), with the run's `summary` and `problems`. Works inside a running
    event loop too; from async code, `await aindex(...)` does not block
    the loop."""

    async def go() -> Index:
        return await aindex(paths, jobs=jobs, relative_to=relative_to, follow_symlinks=follow_symlinks, tags=tags, exclude=exclude, no_sign_request=no_sign_request)

    return _sync(go)


class Instances(Iterator[InstanceRecord]):
    """Per-file records as they are read (completion order); see
    `iter_instances`. `summary` and `problems` so far (complete once the
    iteration ends)."""

    def __init__(self, paths: Iterable[_PathArg], options: Options):
        self._loop: _Loop | None = _Loop()
        try:
            self._async = self._loop.call(self._start, list(paths), options)
        except BaseException:
            self._loop.close()
            self._loop = None
            raise
        self.summary = self._async.summary
        self.problems = self._async.problems
        self._batch: list[InstanceRecord] = []
        self._at = 0

    @staticmethod
    async def _start(paths: list[_PathArg], options: Options) -> AsyncInstances:
        return AsyncInstances(paths, options)

    def __iter__(self) -> Instances:
        return self

    def __next__(self) -> InstanceRecord:
        if self._at >= len(self._batch):
            if self._loop is None:
                raise StopIteration
            try:
                # A batch a round trip to the loop.
                batch = self._loop.call(self._async._pull)
            except BaseException:
                self.close()
                raise
            if batch is None:
                self.close()
                raise StopIteration
            self._batch, self._at = batch, 0
        self._at += 1
        return self._batch[self._at - 1]

    def close(self) -> None:
        """Stop the run (if not over) and wait for what it started."""
        loop, self._loop = self._loop, None
        self._batch = []
        if loop is not None:
            try:
                loop.call(self._async.aclose)
            finally:
                loop.close()

    def __enter__(self) -> Instances:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_loop", None) is not None and not sys.is_finalizing():
            self.close()


def iter_instances(
    paths: Iterable[_PathArg],
    *,
    jobs: int | None = None,
    relative_to: str | os.PathLike[str] | None = None,
    follow_symlinks: bool = False,
    tags: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    no_sign_request: bool = False,
) -> Instances:
    """Per-file records, as they are read (completion order). Closing the
    iterator (`close()`, `with`, or dropping it) before the end stops the
    run and waits for its threads and fallback processes."""
    return Instances(paths, _options(jobs, relative_to, follow_symlinks, tags, exclude, no_sign_request))


# ---------------------------------------------------------------------------
# one file


def _one(
    read_fast: Callable[[_native.Schema], tuple[str, Any, int]],
    read_slow: Callable[[list[tuple[str, int, str, bool]]], tuple[dict, int, list[str]]],
    engine: str,
    tags: Iterable[str] | None,
) -> InstanceRecord:
    """The engine rule of read_header and read_bytes."""
    if engine not in ("auto", "rust", "pydicom"):
        raise ValueError(f"engine must be auto, rust or pydicom, not {engine!r}")
    extras = list(resolve(tags or ()))
    record: InstanceRecord
    if engine == "pydicom":
        record = read_slow(extras)[0]  # type: ignore[assignment]
        return record
    status, payload, _ = read_fast(_native.Schema(extras))
    if status == "indexed":
        record = payload
        return record
    if engine == "auto" and status in FALLBACK_REASONS:
        record = read_slow(extras)[0]  # type: ignore[assignment]
        return record
    raise NotIndexed(status, payload)


def read_header(
    path: _PathArg,
    *,
    engine: Literal["auto", "rust", "pydicom"] = "auto",
    relative_to: str | None = None,
    tags: Iterable[str] | None = None,
    no_sign_request: bool = False,
) -> InstanceRecord:
    """The per-file record of one file, or of one object (an s3://, gs://
    or az:// URL). Raises NotIndexed when it has none.

    engine="rust" uses only the fast path, "pydicom" only pydicom, "auto"
    the fast path with pydicom for what it declines (as the command does).
    """
    from .fallback_pool import read_one
    from .objects import is_url
    from .pipeline import roots

    if is_url(os.fsdecode(os.fspath(path))):
        return _read_object(os.fsdecode(os.fspath(path)), engine, tags, no_sign_request)
    [(p, display)] = roots([path], relative_to)
    # As the walker does: FIFOs, sockets and devices are never read.
    if not stat.S_ISREG(os.stat(p).st_mode):
        raise NotIndexed("not_regular", "not a regular file (FIFO, socket or device)")
    return _one(
        lambda schema: _native.read_file(schema, p, display),
        lambda extras: read_one(p, display, extras),
        engine,
        tags,
    )


def read_bytes(
    data: bytes | bytearray | memoryview | IO[bytes],
    *,
    path: str,
    engine: Literal["auto", "rust", "pydicom"] = "auto",
    tags: Iterable[str] | None = None,
) -> InstanceRecord:
    """The per-file record of a file's bytes (an upload, a C-STORE
    payload), as if read from a file: the same fast path, the same
    fallback. `path` is written as its file_path (and gives its folder). A
    file-like object is read to its end. Raises NotIndexed when it has
    none."""
    from .fallback_pool import read_one

    raw = data.read() if hasattr(data, "read") else data
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError(f"read_bytes takes bytes or a binary file-like object, not {type(raw).__name__}")
    blob = bytes(raw)
    return _one(
        lambda schema: _native.read_bytes(schema, blob, path),
        lambda extras: read_one(path, path, extras, blob),
        engine,
        tags,
    )


def _read_object(url: str, engine: str, tags: Iterable[str] | None, no_sign_request: bool) -> InstanceRecord:
    """`read_header` of an object: ranged GETs for the fast path, a bounded
    download for pydicom (as a run reads it)."""
    from .fallback_pool import read_one
    from .objects import Copies

    stores = _native.Stores(anonymous=no_sign_request)

    def slow(extras: list[tuple[str, int, str, bool]]) -> tuple[dict, int, list[str]]:
        copies = Copies(stores)
        try:
            copy = anyio.run(copies.fetch, url)
            return read_one(copy, url, extras)
        finally:
            copies.close()

    return _one(lambda schema: _native.read_file(schema, url, url, stores), slow, engine, tags)
