"""walk → read → record → aggregate: the native pipeline, fed to anyio.

The run itself is Rust (`_native.Pipeline`, see rust/pipeline.rs): a
thread walks (prefetching headers when the disk is cold), `jobs` threads
read and fold the records into the Rust aggregator. One task here pulls
its batches (with the GIL released while it waits), hands what the fast
path declines to the pydicom fallback pool, passes per-file records to
the caller (--level instance) and counts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc
import anyio.to_thread

from . import _native
from .fallback_pool import Limits, Pool
from .objects import Copies, is_url, split
from .outcomes import FALLBACK_REASONS, LIMIT_REASONS, WARNING, NotIndexed, Summary


@dataclass
class Options:
    #: parse threads (default: the machine's cores)
    jobs: int | None = None
    #: base of file_path and folder (default: the current directory)
    relative_to: str | None = None
    follow_symlinks: bool = False
    #: extra tags: (name, tag, vr, multi) as made by `tags.resolve`
    extras: Sequence[tuple[str, int, str, bool]] = ()
    #: entries per batch (the unit the native run hands over)
    batch_size: int = 256
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


async def run(
    paths: Iterable,
    options: Options,
    *,
    on_records: Callable[[list[dict]], None] | None = None,
    on_problem: Callable[[str, str, str], None] | None = None,
    files: Sequence[tuple[str, str]] | None = None,
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
    objects are read too, without listing them. URLs among `paths` are
    listed and read by ranged GETs (`Options` says how)."""
    started = time.perf_counter()
    jobs = max(1, options.jobs or os.cpu_count() or 1)
    schema = _native.Schema(list(options.extras))
    aggregator = _native.Aggregator(schema)
    summary = Summary()

    def keep(dicts: list[dict]) -> None:
        if on_records:
            on_records(dicts)
        for d in dicts:
            aggregator.add_dict(d, d["file_path"])

    async def fall_back(path: str, display: str, reason: str, message: str) -> None:
        copy = None
        try:
            if copies is not None and is_url(path):
                try:
                    path = copy = await copies.fetch(path)
                except OSError as e:
                    raise NotIndexed("unreadable", f"the object could not be downloaded for pydicom: {e}") from None
            rec, count, messages = await pool.read(path, display, options.extras)
        except NotIndexed as e:
            # A file the fast path only declined is judged by pydicom; one it
            # found damaged keeps that verdict, with pydicom's word added;
            # a file over a limit of the fallback says so.
            if reason == "unsupported" or e.reason in LIMIT_REASONS:
                reason = e.reason
            message = f"{message}; then {e.message}"
        else:
            summary.indexed += 1
            summary.via_pydicom += 1
            summary.warnings += count
            keep([rec])
            if messages and on_problem:
                on_problem(display, WARNING, "; ".join(messages))
            return
        finally:
            if copy is not None:
                Copies.done(copy)
        summary.reasons[reason] += 1
        if on_problem:
            on_problem(display, reason, message)

    # Fallback reads waiting or running at most: past that, the pull waits
    # (and so does the native run, once its queue is full).
    pending = anyio.Semaphore(2 * max(1, options.fallback.processes))

    async def fall_back_then_release(*problem: str) -> None:
        try:
            await fall_back(*problem)
        finally:
            pending.release()

    failed: list[BaseException] = []

    async def pull(native: _native.Pipeline, fallbacks: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                # Abandoned on cancel: close() below stops the run, and the
                # thread returns as soon as the native side does.
                result = await anyio.to_thread.run_sync(native.next_batch, abandon_on_cancel=True)
            except _native.RunFailed as e:
                # Raised as itself, not inside the task groups' wrapping.
                failed.append(e)
                fallbacks.cancel_scope.cancel()
                return
            if result is None:
                return
            dicts, problems, indexed, warnings = result
            summary.indexed += indexed
            summary.warnings += warnings
            if dicts is not None and on_records is not None:
                on_records(dicts)
            for p in problems:
                path, display, reason, message = p.path, p.display, p.reason, p.message
                if reason == WARNING:  # indexed, and counted in `warnings` already
                    if on_problem:
                        on_problem(display, reason, message)
                elif reason in FALLBACK_REASONS:
                    await pending.acquire()
                    fallbacks.start_soon(fall_back_then_release, path, display, reason, message)
                else:
                    summary.reasons[reason] += 1
                    if on_problem:
                        on_problem(display, reason, message)

    async def report(progress: Callable[[Summary], None]) -> None:
        while True:
            await anyio.sleep(0.25)
            summary.seconds = time.perf_counter() - started
            progress(summary)

    local, urls = split(paths) if files is None else ([], [])
    stores = None
    if urls or objects:
        stores = _native.Stores(anonymous=options.no_sign_request, first_bytes=options.first_bytes, retries=options.retries)
    concurrency = options.concurrency if options.concurrency is not None else 64 if stores else 16
    native = _native.Pipeline(
        schema,
        [] if files is not None else roots(local, options.relative_to),
        aggregator,
        records=on_records is not None,
        jobs=jobs,
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
    pool = Pool(options.fallback)
    copies = Copies(stores) if stores is not None else None
    try:
        async with anyio.create_task_group() as outer:
            if options.progress:
                outer.start_soon(report, options.progress)
            async with anyio.create_task_group() as fallbacks:
                await pull(native, fallbacks)
            outer.cancel_scope.cancel()
    finally:
        native.close()
        pool.close()
        if copies is not None:
            copies.close()
    if failed:
        raise failed[0]
    summary.duplicates = aggregator.duplicates
    summary.unresolved = aggregator.unresolved
    summary.seconds = time.perf_counter() - started
    return summary, aggregator

