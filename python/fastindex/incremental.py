"""A run against a state (`--state FILE`): walk and stat (natively:
`_native.scan_changes`), read only the files that are new or changed,
drop the vanished ones, and bring the stored aggregate along with
remove/add, so that the output is that of a run from scratch. See
state.py for what is stored and how a killed run is taken up again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from . import _native, object_state
from .objects import is_url, split
from .outcomes import WARNING, Summary
from .pipeline import Options, roots
from .pipeline import run as read_files
from .state import CHUNK, Key, Row, State, now, warning_count

#: how files are read: `pipeline.run`'s signature
Reader = Callable[..., Awaitable[Any]]


def same(new: Key, old: Key | None, moved: bool) -> bool:
    """The rule of rust/sources/scan.rs (`StatKey::same`), for the rows
    a killed run left in `pending`."""
    if old is None:
        return False
    return (new[2], new[3]) == (old[2], old[3]) if moved else tuple(new) == tuple(old)


class Reading:
    """Outcomes of the files being read, as rows; staged in the state a
    chunk at a time, so that a run killed later keeps them."""

    def __init__(self, state: State | None, keys: dict[str, Key]):
        self.state = state
        self.keys = keys
        self.rows: dict[str, Row] = {}
        self._staged: list[Row] = []
        self._fallback: dict[str, int] = {}

    def _stage(self) -> None:
        # Called before a new batch is taken in: the rows before it are
        # complete (a file's warning comes right after its record).
        if self.state is not None and len(self._staged) >= CHUNK:
            self.state.stage(self._staged)
            self._staged.clear()

    def _keep(self, row: Row) -> None:
        self.rows[row.file_path] = row
        self._staged.append(row)

    def on_records(self, dicts: list[dict]) -> None:
        self._stage()
        when = now()  # one time per batch: a batch is read at once
        for d in dicts:
            display = d["file_path"]
            warnings = self._fallback.pop(display, None)
            row = Row(display, self.keys.get(display), "indexed", record=d, read_at=when, via_pydicom=warnings is not None, warnings=warnings or 0)
            self._keep(row)

    def on_fallback(self, display: str, warnings: int) -> None:
        self._fallback[display] = warnings

    def on_problem(self, display: str, reason: str, message: str) -> None:
        if reason == WARNING:
            row = self.rows.get(display)
            if row is not None:
                row.message = message
                if not row.via_pydicom:
                    row.warnings = warning_count(message)
            return
        self._stage()
        self._keep(Row(display, self.keys.get(display), reason, message, read_at=now()))


async def read_rows(
    files: list[tuple[str, str]], keys: dict[str, Key], options: Options, state: State | None, reader: Reader = read_files, paths: Iterable = (), objects: list | None = None
) -> dict[str, Row]:
    """Read `files` (path, display) with `reader` (this machine's
    pipeline, or a cluster's: `dask.run`), and `objects` (as
    `Stores.list` gives them; the local reader only): a row per file,
    keyed by display."""
    reading = Reading(state, keys)
    more = {"objects": objects} if objects else {}
    if files or objects:
        await reader(paths, options, on_records=reading.on_records, on_problem=reading.on_problem, files=files, on_fallback=reading.on_fallback, **more)
    return reading.rows


def other_rows(problems: Iterable[_native.Problem]) -> list[Row]:
    """Entries the walk left out or could not look at."""
    when = now()
    return [Row(p.display, None, p.reason, p.message, read_at=when) for p in problems]


async def run(paths: Iterable, options: Options, state: State, *, moved: bool = False, reader: Reader = read_files) -> tuple[Summary, _native.Aggregator]:
    """Index `paths` against `state`, and leave the state as this run's
    (committed at the end, in one transaction). Returns the summary of the
    whole index (with `changes`: how many files were read, unchanged,
    added, changed, removed) and its aggregate. `reader` reads the new and
    changed files (`pipeline.run`; `dask.run` on a cluster, the state
    staying here)."""
    started = time.perf_counter()
    started_at = now()
    schema = _native.Schema(list(options.extras))
    local, urls = split(paths)
    walked = roots(local, options.relative_to)
    known = state.known()
    own = [*options.own, *state.own()]

    def scan():
        return state.scan_changes(walked, known, moved=moved, follow_symlinks=options.follow_symlinks, exclude=list(options.exclude), own=own)

    changed, others, vanished, unchanged = await anyio.to_thread.run_sync(scan, abandon_on_cancel=True)
    # Objects are object_state's: the walk knows local files only.
    vanished = [v for v in vanished if not is_url(v)]
    objects = await _list_objects(urls, options, state)
    vanished += objects.vanished
    unchanged += objects.unchanged
    pending = state.pending()
    taken: dict[str, Row] = {}
    to_read: list[tuple[str, str]] = []
    keys: dict[str, Key] = {}
    for path, display, key, _ in changed:
        left = pending.get(display)
        if left is not None and same(key, left.key, moved):
            taken[display] = left  # read by a run that did not finish
        else:
            to_read.append((path, display))
            keys[display] = key
    to_list: list = []
    for url, listed, _ in objects.changed:
        left = pending.get(url)
        object_key = object_state.key(listed)
        if left is not None and left.key is not None and tuple(left.key) == object_key:
            taken[url] = left
        else:
            to_list.append(listed)
            keys[url] = object_key
    rows = await read_rows(to_read, keys, options, state, reader, local, to_list)
    rows.update(taken)
    counts = {
        "read": len(to_read) + len(to_list),
        "unchanged": unchanged,
        "added": sum(1 for c in changed if not c[3]) + sum(1 for c in objects.changed if not c[2]),
        "changed": sum(1 for c in changed if c[3]) + sum(1 for c in objects.changed if c[2]),
        "removed": len(vanished),
    }
    aggregator = state.aggregator(schema)
    state.apply(aggregator, list(rows.values()), vanished, [*other_rows(others), *objects.failed], kind="run", started_at=started_at, counts=counts)
    summary = state.summary()
    summary.duplicates = aggregator.duplicates
    summary.unresolved = aggregator.unresolved
    summary.changes = counts
    summary.seconds = time.perf_counter() - started
    return summary, aggregator


@dataclass
class ObjectChanges:
    changed: list = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    unchanged: int = 0
    #: rows of the URLs that could not be listed, or named nothing
    failed: list[Row] = field(default_factory=list)


async def _list_objects(urls: list[str], options: Options, state: State) -> ObjectChanges:
    """The objects under `urls` against those the state holds (see
    object_state.py); nothing is listed without a URL, but objects stored
    by an earlier run with URLs are then all gone."""
    stored = state.object_keys()
    if not urls:
        return ObjectChanges(vanished=list(stored))
    stores = _native.Stores(anonymous=options.no_sign_request, first_bytes=options.first_bytes, retries=options.retries)
    listings = await anyio.to_thread.run_sync(object_state.list_urls, urls, stores, abandon_on_cancel=True)
    found = object_state.compare(listings, stored)
    when = now()
    failed = [Row(display, None, "unreadable", message, read_at=when) for display, message in listings.failed]
    return ObjectChanges(found.changed, found.vanished, found.unchanged, failed)
