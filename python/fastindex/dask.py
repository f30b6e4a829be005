"""The same index from a Dask cluster: `fastindex --dask ADDRESS PATH...`,
`fastindex.dask.index(paths, client=...)`, `fastindex.dask.iter_instances`.

Needs the extra: `pip install 'fastindex-dicom[dask]'`, on the client and
on every worker (the workers import this module to run their tasks).

How a run goes:

- The client walks the PATHs (`_native.Walker`: the walk a local run makes,
  with the same --exclude, link and own-output rules, in the same order)
  and cuts the listing into shards of `shard_files` entries, numbered in
  listing order. Entries the walk skips or cannot look at never leave the
  client: they are counted and listed there, as a local run does.
- A shard is a list of (path, display) files: the task (`_index_shard`)
  runs the local pipeline over exactly those (`pipeline.run(files=...)`,
  the pydicom fallback included) and returns a `Partial`: the shard's
  aggregate as bytes, and its `Outcome` (counts, problems, and the
  per-file records when asked for) in listing order. Thousands of files
  per task: never a task per file.
- Two small tasks take a partial apart where it lies (its aggregate, its
  outcome), so that aggregates are merged on the workers, `FAN_IN` at a
  time, without the records travelling with them; the client folds the
  merged groups into the final aggregate, which it needs whole to write
  the sorted subseries records. Merging gives the same bytes whatever the
  split and the order (rust/aggregate.rs).
- Outcomes are written in shard order (a shard that finishes early waits
  for those before it), so per-file records and problems come out in the
  listing order, whatever order the tasks finish in and however the
  listing was cut.
- At most `4 × worker threads` shards (at least 8, and no more than
  MAX_LISTED entries) are listed and not yet written: the client holds
  the outcomes of those only, a worker one shard (and a group of FAN_IN
  aggregates) at a time.
- A worker that dies loses only its tasks: Dask runs them again elsewhere
  (tasks are pure functions of their shard), and the output is the same.

Local PATHs must be on a file system every worker sees at the same path
(NFS, Lustre, GPFS, a CephFS mount...): a task that cannot see one of the
PATHs fails the run with `NotShared`, rather than list every file as
unreadable.

Object-store URLs (s3://, gs://, az://) work from any worker: the client
lists them (after the local walk, as a local run does; a URL that cannot
be listed is an `unreadable` entry there) into entries that carry each
object's (url, size, etag, last_modified), and a shard's task reads its
objects by ranged GETs without listing them again
(`pipeline.run(objects=...)`). The client and every worker reach the
stores with the credentials of their own environment (AWS_*, GOOGLE_*,
AZURE_* variables, config files), or unsigned (--no-sign-request).

Other listings plug in as `Run(listing=pages)`: any iterable of pages of
`Listed` entries (an object-store listing, a walk filtered against a
state database); `Run(records=True)` returns the per-file records at
either level, for a caller that keeps them (the state).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any

from . import _native
from .api import Index
from .objects import split
from .outcomes import WARNING, Problem, Summary
from .pipeline import Options
from .pipeline import roots as given_roots
from .pipeline import run as run_local

#: entries of the listing per shard (one task each), by default
SHARD_FILES = 2048
#: aggregates merged by one merge task on a worker
FAN_IN = 8
#: listing entries in flight at most (in shards not written yet): about
#: 250 bytes each in the scheduler's task specs
MAX_LISTED = 1 << 21
#: one entry of a listing: (path, display, reason, message), reason and
#: message None for a file to read (see `_native.Walker.page`)
Listed = tuple[str, str, "str | None", "str | None"]
#: one object of a store: (url, size, etag, last_modified), as
#: `_native.Stores.list` gives them
Obj = tuple[str, int, "str | None", str]
#: an object of a listing: (object, url, None, None)
ListedObject = tuple[Obj, str, None, None]
#: (place in its shard, display, reason, message) of a file that gave no
#: record, or of an indexed file with warnings (reason "warning")
Placed = tuple[int, str, str, str]


class NotShared(RuntimeError):
    """A worker cannot see a PATH: --dask needs local PATHs on a file
    system every worker mounts at the same path."""


def need_distributed():
    """The distributed package, or an ImportError that says how to get it."""
    try:
        import distributed
    except ImportError:
        raise ImportError("--dask needs dask.distributed: pip install 'fastindex-dicom[dask]'", name="distributed") from None
    return distributed


@dataclasses.dataclass
class Outcome:
    """What a shard gave, in the shard's listing order."""

    indexed: int = 0
    via_pydicom: int = 0
    warnings: int = 0
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    #: the shard's problems, placed among its files
    problems: list[Placed] = dataclasses.field(default_factory=list)
    #: (display, warnings) of each file the pydicom fallback indexed
    fallback: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    #: per-file records, compact: the column names once, then value rows
    names: tuple[str, ...] = ()
    rows: list[tuple] = dataclasses.field(default_factory=list)

    def records(self) -> list[dict]:
        return [dict(zip(self.names, row)) for row in self.rows]


#: (aggregate bytes, outcome): what a shard task returns
Partial = tuple[bytes, Outcome]


# --- on the workers ---------------------------------------------------------


def _jobs() -> int:
    """Parse threads per task when -j is not given: the worker's share of
    its machine's cores (a worker with several threads runs several tasks)."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        threads = 1
    return max(1, (os.cpu_count() or 1) // max(1, threads))


def _check_visible(roots: Sequence[str]) -> None:
    for root in roots:
        if not os.path.lexists(root):
            raise NotShared(
                f"worker {socket.gethostname()} (pid {os.getpid()}) cannot see {root}: "
                "--dask needs the PATHs on a file system every worker mounts at the same path"
            )


def _test_hook(number: int) -> None:
    """FASTINDEX_TEST_DASK=DIR, for the tests only: with DIR/shuffle (a
    seed), each shard waits a while of its own first, so that shards finish
    out of order, and then adds its number to DIR/finished; with DIR/hold (a shard number), that shard's first try
    writes its process id to DIR/held and waits to be killed."""
    folder = os.environ.get("FASTINDEX_TEST_DASK")
    if not folder:
        return
    import random

    try:
        with open(os.path.join(folder, "shuffle")) as f:
            seed = int(f.read())
        time.sleep(random.Random(seed * 100_003 + number).uniform(0, 0.25))
        fd = os.open(os.path.join(folder, "finished"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, f"{number}\n".encode())
        os.close(fd)
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(folder, "hold")) as f:
            held = int(f.read())
    except FileNotFoundError:
        return
    if number == held:
        try:
            fd = os.open(os.path.join(folder, "held"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return  # the try after the kill
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        time.sleep(60)


def _index_shard(number: int, items: list, roots: Sequence[str], options: Options, records: bool) -> Partial:
    """Index one shard's items, files (path, display) and objects (url,
    size, etag, last_modified), as a local run would."""
    import anyio

    _test_hook(number)
    files = [item for item in items if len(item) == 2]
    objects = [item for item in items if len(item) == 4]
    if files:
        _check_visible(roots)
    # An object is displayed as its URL.
    position = {item[1] if len(item) == 2 else item[0]: i for i, item in enumerate(items)}
    found: list[dict] = []
    problems: list[Placed] = []
    fallback: list[tuple[str, int]] = []

    def on_problem(display: str, reason: str, message: str) -> None:
        problems.append((position[display], display, reason, message))

    options = dataclasses.replace(options, jobs=options.jobs or _jobs())
    summary, aggregator = anyio.run(
        lambda: run_local((), options, on_records=found.extend if records else None, on_problem=on_problem, files=files, objects=objects or None, on_fallback=lambda display, warnings: fallback.append((display, warnings)))
    )
    # A file's record comes before its warning, as in a local run's lists.
    problems.sort(key=lambda p: (p[0], p[2] == WARNING))
    found.sort(key=lambda r: position[r["file_path"]])
    names = tuple(found[0]) if found else ()
    return aggregator.to_bytes(), Outcome(
        indexed=summary.indexed,
        via_pydicom=summary.via_pydicom,
        warnings=summary.warnings,
        reasons=dict(summary.reasons),
        problems=problems,
        fallback=sorted(fallback, key=lambda f: position[f[0]]),
        names=names,
        rows=[tuple(r.values()) for r in found],
    )


def _aggregate(partial: Partial) -> bytes:
    return partial[0]


def _outcome(partial: Partial) -> Outcome:
    return partial[1]


def _merge(extras: list, *parts: bytes) -> bytes:
    """Aggregates (bytes) merged into one."""
    schema = _native.Schema(extras)
    merged = _native.Aggregator.from_bytes(schema, parts[0])
    for data in parts[1:]:
        merged.merge(_native.Aggregator.from_bytes(schema, data))
    return merged.to_bytes()


# --- on the client ----------------------------------------------------------


def pages(paths: Iterable, options: Options, size: int) -> Iterator[list]:
    """The local walk of `paths`, then the listing of their URLs, `size`
    entries a page: the order of a local run's listing."""
    local, urls = split(paths)
    walker = _native.Walker(given_roots(local, options.relative_to), follow_symlinks=options.follow_symlinks, exclude=list(options.exclude), own=list(options.own))
    while page := walker.page(size):
        yield page
    if not urls:
        return
    stores = _native.Stores(anonymous=options.no_sign_request, first_bytes=options.first_bytes, retries=options.retries)
    entries: list[Listed | ListedObject] = []
    for display, obj, reason, message in stores.entries_of(urls):
        entries.append((obj, display, None, None) if obj is not None else (display, display, reason, message))
        if len(entries) == size:
            yield entries
            entries = []
    if entries:
        yield entries


class Run:
    """One run over a cluster. `events()` yields ("records", [dict...]),
    ("problem", (display, reason, message)) and ("fallback", (display,
    warnings)) for each file pydicom read (before its records), in listing
    order; once it is
    exhausted, `summary` and `aggregator` hold the totals. Closing the
    generator early cancels the run's tasks."""

    def __init__(self, client, paths: Iterable, options: Options, *, records: bool, shard_files: int = SHARD_FILES, listing: Iterable[list[Listed]] | None = None):
        if shard_files < 1:
            raise ValueError("shard_files must be at least 1")
        self.client = client
        self.options = options
        self.records = records
        self.shard_files = shard_files
        paths = [os.fsdecode(os.fspath(p)) for p in paths]
        self.listing = listing if listing is not None else pages(paths, options, shard_files)
        cwd = os.getcwd()
        #: the PATHs as the workers open them
        self.roots = [os.path.join(cwd, p) for p, _ in given_roots(paths, options.relative_to)]
        self.summary = Summary()
        self.aggregator = _native.Aggregator(_native.Schema(list(options.extras)))
        #: tasks submitted, of each kind
        self.tasks: Counter = Counter()
        self.stop = False

    def events(self) -> Generator[tuple[str, Any], None, None]:
        distributed = need_distributed()
        client = self.client
        started = time.perf_counter()
        options = dataclasses.replace(self.options, progress=None, own=())
        extras = list(options.extras)
        run_id = uuid.uuid4().hex[:12]
        # Shards listed and not written yet, at most: enough to keep every
        # worker thread busy while an earlier shard is still running, and
        # no more than MAX_LISTED entries (the scheduler holds their specs).
        limit = max(2, min(max(8, 4 * sum(client.nthreads().values())), MAX_LISTED // self.shard_files))
        cwd = os.getcwd()

        listing = iter(self.listing)
        listed_all = False
        shards = 0
        #: outcome future -> shard number
        waiting: dict[Any, int] = {}
        #: shard number -> (the listing's own problems, the place of each
        #: file among the page's entries), while its task runs
        listed: dict[int, tuple[list[Placed], list[int]]] = {}
        #: the same and the outcome, of shards done until those before them
        #: are written
        done: dict[int, tuple[list[Placed], Outcome | None, list[int]]] = {}
        written = 0
        level0: list = []  # aggregate futures not grouped yet
        groups: set = set()  # merge futures, folded into the result as they finish

        def submit_group() -> None:
            self.tasks["merge"] += 1
            groups.add(client.submit(_merge, extras, *level0, key=f"fastindex-merge-{run_id}-{self.tasks['merge']}"))
            level0.clear()

        try:
            while True:
                # Keep the cluster busy, and no busier than `limit` shards.
                while not listed_all and shards - written < limit and not self.stop:
                    page = next(listing, None)
                    if page is None:
                        listed_all = True
                        break
                    number = shards
                    shards += 1
                    files: list = []  # the shard's items
                    where: list[int] = []
                    skipped: list[Placed] = []
                    for i, (path, display, reason, message) in enumerate(page):
                        if reason is None:
                            # An object as listed, or a file as a worker opens it.
                            files.append(path if isinstance(path, tuple) else (os.path.join(cwd, path), display))
                            where.append(i)
                        else:
                            skipped.append((i, display, reason, message or ""))
                    if not files:
                        done[number] = (skipped, None, where)
                        continue
                    listed[number] = (skipped, where)
                    key = f"{run_id}-{number}"
                    shard = client.submit(_index_shard, number, files, self.roots, options, self.records, key=f"fastindex-shard-{key}")
                    level0.append(client.submit(_aggregate, shard, key=f"fastindex-aggregate-{key}"))
                    waiting[client.submit(_outcome, shard, key=f"fastindex-outcome-{key}")] = number
                    self.tasks["shard"] += 1
                    self.tasks["take"] += 2
                    del shard  # its two takers hold it on the cluster
                    if len(level0) == FAN_IN:
                        submit_group()
                if listed_all and level0:
                    submit_group()
                # Write what is next in listing order.
                while written in done:
                    skipped, outcome, where = done.pop(written)
                    written += 1
                    yield from self._emit(skipped, outcome, where)
                if self.stop or (listed_all and not waiting and not groups and written == shards):
                    break
                try:
                    # A short wait, to see `stop` soon after it is set;
                    # `wait` asks for the thread's current client.
                    with client.as_current():
                        ready = list(distributed.wait(list(waiting) + list(groups), timeout=0.25, return_when="FIRST_COMPLETED").done)
                except TimeoutError:
                    continue
                # Raises the task's error (NotShared...) here.
                values = client.gather(ready)
                for fut, value in zip(ready, values):
                    if fut in groups:
                        groups.discard(fut)
                        self.aggregator.merge(_native.Aggregator.from_bytes(_native.Schema(extras), value))
                    else:
                        number = waiting.pop(fut)
                        skipped, where = listed.pop(number)
                        done[number] = (skipped, value, where)
                if self.options.progress:
                    self.summary.seconds = time.perf_counter() - started
                    self.options.progress(self.summary)
        finally:
            # Closed early, failed or done: nothing of this run stays queued.
            pending = list(waiting) + list(groups) + level0
            if pending:
                client.cancel(pending)
        if self.stop:
            return
        self.summary.duplicates = self.aggregator.duplicates
        self.summary.unresolved = self.aggregator.unresolved
        self.summary.seconds = time.perf_counter() - started

    def _emit(self, listed: list[Placed], outcome: Outcome | None, where: list[int]) -> Iterator[tuple[str, Any]]:
        """A shard's outcome, counted, with the problems of the listing's
        own entries in their places (`where`: the place of each of the
        shard's files among its entries)."""
        s = self.summary
        for _, _, reason, _ in listed:
            s.reasons[reason] += 1
        problems = listed
        if outcome is not None:
            s.indexed += outcome.indexed
            s.via_pydicom += outcome.via_pydicom
            s.warnings += outcome.warnings
            s.reasons.update(outcome.reasons)
            for f in outcome.fallback:
                yield "fallback", f
            if outcome.rows:
                yield "records", outcome.records()
            placed = [(where[i], display, reason, message) for i, display, reason, message in outcome.problems]
            problems = sorted(listed + placed, key=lambda p: p[0])
        for p in problems:
            yield "problem", p[1:]


def connect(client):
    """A distributed.Client: `client` itself, a new one for a scheduler
    address (the caller closes it), or the current default client when
    None."""
    distributed = need_distributed()
    if client is None:
        try:
            return distributed.default_client()
        except ValueError:
            raise ValueError("no Dask client: pass client= (a distributed.Client or a scheduler address such as tcp://host:8786)") from None
    if isinstance(client, str):
        return distributed.Client(client)
    return client


async def run(
    paths: Iterable,
    options: Options,
    *,
    client,
    on_records: Callable[[list[dict]], None] | None = None,
    on_problem: Callable[[str, str, str], None] | None = None,
    files: Sequence[tuple[str, str]] | None = None,
    on_fallback: Callable[[str, int], None] | None = None,
    shard_files: int = SHARD_FILES,
) -> tuple[Summary, _native.Aggregator]:
    """`pipeline.run` over a cluster: the same (Summary, Aggregator), the
    same callbacks (called from a thread of its own, in listing order).
    With `files` (path, display), those files are the shards' (--state:
    the new and changed files); `paths` are then only checked for on the
    workers."""
    import anyio.to_thread

    listing = None
    if files is not None:
        entries: list[Listed] = [(path, display, None, None) for path, display in files]
        listing = [entries[i : i + shard_files] for i in range(0, len(entries), shard_files)]
    job = Run(client, paths, options, records=on_records is not None, shard_files=shard_files, listing=listing)

    over = threading.Event()

    def drive() -> None:
        try:
            for kind, value in job.events():
                if kind == "records":
                    on_records(value)  # type: ignore[misc]
                elif kind == "fallback":
                    if on_fallback is not None:
                        on_fallback(*value)
                elif kind == "problem" and on_problem is not None:
                    on_problem(*value)
        finally:
            over.set()

    try:
        await anyio.to_thread.run_sync(drive, abandon_on_cancel=True)
    finally:
        # Cancelled: the thread stops at its next look (a quarter second),
        # and cancels the run's tasks; the caller closes the client only
        # once that is done (a client closed under it can hang the thread,
        # and the interpreter's exit with it).
        job.stop = True
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(over.wait, 30.0)
    return job.summary, job.aggregator


class _Connected:
    """`connect(client)` for the length of a call: a client made here for
    an address is closed after."""

    def __init__(self, client):
        self.given = client

    def __enter__(self):
        self.client = connect(self.given)
        return self.client

    def __exit__(self, *exc) -> None:
        if isinstance(self.given, str):
            self.client.close()


def _job(client, paths: Iterable, records: bool, *, jobs: int | None = None, relative_to: str | None = None, follow_symlinks: bool = False, tags: Iterable[str] | None = None, exclude: Iterable[str] | None = None, no_sign_request: bool = False, shard_files: int = SHARD_FILES) -> Run:
    from .tags import resolve

    options = Options(jobs=jobs, relative_to=relative_to, follow_symlinks=follow_symlinks, extras=resolve(tags or ()), exclude=list(exclude or ()), no_sign_request=no_sign_request)
    return Run(client, paths, options, records=records, shard_files=shard_files)


def index(paths: Iterable[str | os.PathLike], client=None, **options) -> Index:
    """`fastindex.index` on a Dask cluster: the same subseries records, with
    the run's `summary` and `problems` (in listing order).

    `client`: a distributed.Client, a scheduler address, or None for the
    current default client. `options`: those of `fastindex.index` (`jobs`:
    parse threads per task, default the worker's share of its cores;
    `relative_to`, `follow_symlinks`, `tags`, `no_sign_request`), `exclude`
    (the command's --exclude globs) and `shard_files` (entries per task).
    `paths` may hold object-store URLs: the client lists them, the workers
    read them, each with the credentials of its own environment."""
    problems: list[Problem] = []
    with _Connected(client) as c:
        job = _job(c, paths, False, **options)
        for kind, value in job.events():
            if kind == "problem":
                problems.append(Problem(*value))
    records: list[Any] = job.aggregator.dicts()
    out = Index(records)
    out.summary, out.problems = job.summary, problems
    return out


def iter_instances(paths: Iterable[str | os.PathLike], client=None, **options) -> Iterator[dict]:
    """`fastindex.iter_instances` on a Dask cluster: the same per-file
    records, in listing order; `client` and `options` as for `index`.
    Closing the iterator early cancels the run's tasks."""
    connected = _Connected(client)
    c = connected.__enter__()
    try:
        # A missing PATH raises here, not at the first next().
        job = _job(c, paths, True, **options)
    except BaseException:
        connected.__exit__()
        raise

    def records() -> Iterator[dict]:
        events = job.events()
        try:
            for kind, value in events:
                if kind == "records":
                    yield from value
        finally:
            # Closed now, not when collected: its tasks are cancelled here.
            events.close()
            connected.__exit__()

    return records()
