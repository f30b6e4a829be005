"""walk → read → record → aggregate: the native pipeline, fed to anyio.

The run itself is Rust (`_native.Pipeline`, see rust/pipeline.rs): a
thread walks (prefetching headers when the disk is cold), the process's
parse threads (shared by every run, rust/pool.rs) read and fold the
records into the Rust aggregator. `Run` pulls its batches (with the GIL
released while it waits), hands what the fast path declines to the
pydicom fallback pool, passes per-file records on and counts; `run` is
the loop the command uses.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc
import anyio.to_thread

from . import _native
from .fallback_pool import Limits, Pool
from .objects import Copies, is_url, split
from .outcomes import FALLBACK_REASONS, LIMIT_REASONS, WARNING, NotIndexed, Problem, Summary


@dataclass
class Options:
    #: parse threads (default: the machine's cores)
    jobs: int | None = None
    #: base of file_path and folder (default: the current directory)
    relative_to: str | None = None
    follow_symlinks: bool = False
    #: extra tags: (name, tag, vr, multi) as made by `tags.resolve`
    extras: Sequence[tuple[str, int, str, bool]] = ()
    #: entries per batch (the unit the native run hands over). Small: a
    #: batch's records become dicts with the GIL held, in one go, while an
    #: event loop beside it waits (64: a worst loop lag near 10 ms instead
    #: of 15-25 at 256, at no cost in speed: bench/RESULTS-async.md)
    batch_size: int = 64
    #: header reads requested ahead of the parsers when the disk is slow
    #: (0: none); idle while files come from the page cache. Also the
    #: ranged GETs in flight for objects. None: 16, or 64 when objects are
    #: read
    concurrency: int | None = None
    #: objects (s3://, gs://, az://): unsigned requests (public buckets),
    #: the bytes of each object's first ranged GET, retries of a request
    no_sign_request: bool = False
    first_bytes: int = 64 * 1024
    retries: int = 10
    #: --exclude globs, matched below each PATH (see rust/sources/walk.rs)
    exclude: Sequence[str] = ()
    #: (device, inode) of this run's own output files: never indexed
    own: Sequence[tuple[int, int]] = ()
    #: the pydicom fallback's processes and their limits
    fallback: Limits = field(default_factory=Limits)
    #: called with the running summary now and then (progress display)
    progress: Callable[[Summary], None] | None = field(default=None, repr=False)


def check_path(path: str) -> None:
    """Raise what is wrong with a PATH (FileNotFoundError, PermissionError
    for a folder on the way that may not be searched...), with a message
    that names it: the CLI prints it, the API raises it. An object-store
    URL is looked at when it is listed: what cannot be listed is listed
    with its reason, as an unreadable file is."""
    if is_url(os.fsdecode(os.fspath(path))):
        return
    try:
        os.lstat(path)
    except OSError as e:
        why = (e.strerror or str(e)).lower()
        raise type(e)(e.errno, f"{path}: {why}") from None


def roots(paths: Iterable, relative_to: str | None) -> list[tuple[str, str]]:
    """(path, display prefix) per PATH, each file once (see `Root::given`
    in rust/sources/walk.rs): displayed as given ('/'-separated, without
    `.` components or repeated and trailing slashes, "" for `.`), or
    relative to `relative_to`; a PATH that is, or lies inside, another
    PATH (after resolving links) is walked as part of that one. Raises
    FileNotFoundError for a missing PATH or base, NotADirectoryError for a
    base that is not a directory."""
    base = None
    if relative_to is not None:
        base = os.path.abspath(relative_to)
        if not os.path.isdir(base):
            error = NotADirectoryError if os.path.exists(base) else FileNotFoundError
            raise error(f"--relative-to {relative_to}: {'not a directory' if os.path.exists(base) else 'no such directory'}")
    checked = []
    for p in split(paths)[0]:  # URLs are listed by the stores
        p = os.fsdecode(os.fspath(p))
        check_path(p)
        checked.append(p)
    return _native.roots(checked, base)


class Run:
    """One run, pulled a batch at a time (`next`), from any anyio event loop
    (asyncio or trio). The native run starts at once; `aclose` (or `close`,
    from sync code) stops it and waits for everything it started. The
    summary, the aggregator (subseries records, duplicates, references)
    and, with `keep_problems`, the problems grow as batches are pulled.

    Pulling waits in a worker thread with the GIL released, so the event
    loop keeps running; cancelling a task blocked in `next` stops the
    native run at once (its threads end within a file each), and the
    task's cleanup, `aclose`, waits for them without blocking the loop.
    """

    def __init__(
        self,
        paths: Iterable,
        options: Options,
        *,
        records: bool = False,
        files: Sequence[tuple[str, str]] | None = None,
        objects: Sequence[tuple[str, int, str | None, str]] | None = None,
        on_records: Callable[[list[dict]], None] | None = None,
        on_problem: Callable[[str, str, str], None] | None = None,
        on_fallback: Callable[[str, int], None] | None = None,
        keep_problems: bool = False,
    ):
        self.options = options
        self.summary = Summary()
        self.problems: list[Problem] = []
        self._on_records = on_records
        self._on_problem = on_problem
        self._on_fallback = on_fallback
        self._keep_problems = keep_problems
        self._records = records
        self._started = time.perf_counter()
        self._schema = _native.Schema(list(options.extras))
        self.aggregator = _native.Aggregator(self._schema)
        local, urls = split(paths) if files is None else ([], [])
        listed = [] if files is not None else roots(local, options.relative_to)
        stores = None
        if urls or objects:
            stores = _native.Stores(anonymous=options.no_sign_request, first_bytes=options.first_bytes, retries=options.retries)
        concurrency = options.concurrency if options.concurrency is not None else 64 if stores else 16
        self._pool = Pool(options.fallback)
        #: objects the fallback reads are downloaded (bounded) first
        self._copies = Copies(stores) if stores is not None else None
        self._native: _native.Pipeline | None = _native.Pipeline(
            self._schema,
            listed,
            self.aggregator,
            records=records,
            jobs=max(1, options.jobs or os.cpu_count() or 1),
            batch_size=options.batch_size,
            concurrency=concurrency,
            follow_symlinks=options.follow_symlinks,
            exclude=list(options.exclude),
            own=list(options.own),
            files=None if files is None else list(files),
            stores=stores,
            urls=urls,
            objects=None if objects is None else list(objects),
        )
        _exit.watch(self)

    def _problem(self, display: str, reason: str, message: str) -> None:
        if self._keep_problems:
            self.problems.append(Problem(display, reason, message))
        if self._on_problem is not None:
            self._on_problem(display, reason, message)

    async def next(self) -> list[dict] | None:
        """The next batch's per-file records (with `records`; else []),
        those of its files read by the pydicom fallback included (also
        handed to `on_records`, each before its file's problems); None once
        the run is over. Raises RunFailed when a thread of the run failed."""
        native = self._native
        if native is None:
            return None
        try:
            # Abandoned on cancel: stopping the run makes it return soon,
            # and aclose() waits for that.
            result = await anyio.to_thread.run_sync(native.next_batch, abandon_on_cancel=True)
        except BaseException:
            native.stop()
            raise
        if result is None:
            await self.aclose()
            return None
        dicts, problems, indexed, warnings = result
        self.summary.indexed += indexed
        self.summary.warnings += warnings
        out: list[dict] = dicts if dicts is not None else []
        # A file's record is heard of before its warning (as --errors and
        # the state want them).
        if out and self._on_records is not None:
            self._on_records(out)
        fallbacks = []
        for p in problems:
            if p.reason == WARNING:  # indexed, and counted in `warnings` already
                self._problem(p.display, p.reason, p.message)
            elif p.reason in FALLBACK_REASONS:
                fallbacks.append(p)
            else:
                self.summary.reasons[p.reason] += 1
                self._problem(p.display, p.reason, p.message)
        if fallbacks:
            async with anyio.create_task_group() as tg:
                for p in fallbacks:
                    tg.start_soon(self._fall_back, p.path, p.display, p.reason, p.message, out)
        self.summary.seconds = time.perf_counter() - self._started
        return out

    async def _fall_back(self, path: str, display: str, reason: str, message: str, out: list[dict]) -> None:
        copy = None
        try:
            if self._copies is not None and is_url(path):
                try:
                    path = copy = await self._copies.fetch(path)
                except OSError as e:
                    raise NotIndexed("unreadable", f"the object could not be downloaded for pydicom: {e}") from None
            rec, count, messages = await self._pool.read(path, display, self.options.extras)
        except NotIndexed as e:
            # A file the fast path only declined is judged by pydicom; one it
            # found damaged keeps that verdict, with pydicom's word added;
            # a file over a limit of the fallback says so.
            if reason == "unsupported" or e.reason in LIMIT_REASONS:
                reason = e.reason
            self.summary.reasons[reason] += 1
            self._problem(display, reason, f"{message}; then {e.message}")
            return
        finally:
            if copy is not None:
                Copies.done(copy)
        self.summary.indexed += 1
        self.summary.via_pydicom += 1
        self.summary.warnings += count
        if self._on_fallback is not None:
            self._on_fallback(display, count)
        self.aggregator.add_dict(rec, rec["file_path"])
        if self._records:
            out.append(rec)
            if self._on_records is not None:
                self._on_records([rec])
        if messages:
            self._problem(display, WARNING, "; ".join(messages))

    def _finish(self) -> None:
        self.summary.duplicates = self.aggregator.duplicates
        self.summary.unresolved = self.aggregator.unresolved
        self.summary.seconds = time.perf_counter() - self._started

    async def aclose(self) -> None:
        """Stop (if not over) and wait for every thread and process the run
        started; the loop runs meanwhile. Also when cancelled."""
        native, self._native = self._native, None
        if native is None:
            return
        native.stop()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(native.close)
        self._pool.close()
        if self._copies is not None:
            self._copies.close()
        self._finish()
        _exit.forget(self)

    def close(self) -> None:
        """`aclose` for sync code (and for a run dropped without it): it
        blocks for as long as the threads take to stop (a file each)."""
        native, self._native = self._native, None
        if native is None:
            return
        native.close()
        self._pool.close()
        if self._copies is not None:
            self._copies.close()
        self._finish()
        _exit.forget(self)

    def __del__(self) -> None:
        if hasattr(self, "_native") and not sys.is_finalizing():
            self.close()


class _Exit:
    """At interpreter exit, before non-daemon threads are joined: stop every
    run still going (see `_native.shutdown`), and close them."""

    def __init__(self) -> None:
        self._runs: weakref.WeakSet[Run] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._registered = False

    def watch(self, run: Run) -> None:
        with self._lock:
            self._runs.add(run)
            if not self._registered:
                self._registered = True
                # Before threading joins non-daemon threads (as
                # concurrent.futures does): a thread waiting on a run must
                # be able to end.
                register = getattr(threading, "_register_atexit", None)
                if register is not None:
                    register(self.shutdown)
                else:  # pragma: no cover - CPython has it since 3.9
                    atexit.register(self.shutdown)

    def forget(self, run: Run) -> None:
        with self._lock:
            self._runs.discard(run)

    def shutdown(self) -> None:
        _native.shutdown(10.0)
        with self._lock:
            runs = list(self._runs)
        for r in runs:
            try:
                r.close()
            except Exception:  # exiting: nothing to tell anyone
                pass


_exit = _Exit()


async def run(
    paths: Iterable,
    options: Options,
    *,
    on_records: Callable[[list[dict]], None] | None = None,
    on_problem: Callable[[str, str, str], None] | None = None,
    files: Sequence[tuple[str, str]] | None = None,
    on_fallback: Callable[[str, int], None] | None = None,
    objects: Sequence[tuple[str, int, str | None, str]] | None = None,
) -> tuple[Summary, _native.Aggregator]:
    """Index `paths`: every record is folded into the returned Aggregator
    (subseries records, duplicates, references); with `on_records`, the
    per-file records are also passed to it as they are read.
    `on_problem(display, reason, message)` hears of every file that gave
    no record, and of every indexed file with warnings (reason "warning").
    With `files`, a list of (path, display path), just those files are
    read: nothing is walked and `paths` is ignored; with `objects`, a list
    of (url, size, etag, last_modified) as `Stores.list` gives them, those
    objects are read too, without listing them. URLs among `paths`
    (s3://, gs://, az://) are listed and read by ranged GETs (`Options`
    says how). `on_fallback(display, warnings)` hears of each file the
    pydicom fallback indexed."""
    r = Run(paths, options, records=on_records is not None, files=files, objects=objects, on_records=on_records, on_problem=on_problem, on_fallback=on_fallback)

    async def report(progress: Callable[[Summary], None]) -> None:
        while True:
            await anyio.sleep(0.25)
            r.summary.seconds = time.perf_counter() - r._started
            progress(r.summary)

    try:
        async with anyio.create_task_group() as tg:
            if options.progress:
                tg.start_soon(report, options.progress)
            while await r.next() is not None:
                pass
            tg.cancel_scope.cancel()
    finally:
        await r.aclose()
    return r.summary, r.aggregator
