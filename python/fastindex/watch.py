"""`fastindex watch DIR... --state FILE` and `fastindex.watch(...)`: a drop
folder indexed as files arrive, as NDJSON events.

The file system only says *when* to look (inotify through watchfiles, or
its polling where inotify does not see other machines' writes: NFS, SMB,
FUSE); *what* changed always comes from the native walk and stat
compared with the state (`_native.scan_changes`), as for `--state`. So
the watcher and a batch run agree on every rule (excludes, links, own
files, displays), and a restart catches up on what came while it was
down, and emits nothing twice: a file is an event once its row is
committed, and only files whose stat key differs from their row are read.

A file is read once it has settled: its stat key unchanged since the
last look and no write for `settle` seconds. A file that gives no record
(truncated, not DICOM yet...) is read again while it keeps changing, and
is reported (`not_indexed`) only once it has not changed for
`broken_wait` seconds. A subseries is `series_stable` once it had no new
instance for `quiet` seconds (kept in the state: a restart goes on).
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

import anyio

from . import _native
from .incremental import other_rows, read_rows
from .pipeline import Options, roots
from .state import Key, Row, State, now
from .tags import resolve

#: file system types whose changes inotify does not see (other machines'
#: writes), from /proc/self/mountinfo: the watcher polls there
POLLED_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse", "afs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs")

#: seconds without a change before a file is read; ms of watchfiles'
#: debounce; seconds between looks while files wait to settle
SETTLE, DEBOUNCE_MS, TICK = 1.0, 300, 0.25


def needs_polling(path: str) -> bool:
    """Whether `path` lies on a file system where inotify misses changes."""
    real = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                point = left.split()[4].replace("\\040", " ")
                fs = right.split()[0] if right else ""
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fs
    except OSError:
        return False
    return kind.split(".")[0] in POLLED_FILESYSTEMS


def stamp(wall: float | None = None) -> str:
    """An event's time: ISO 8601 UTC, as the state writes times."""
    if wall is None:
        return now()
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Waiting:
    """A new or changed file, not read yet."""

    path: str
    key: Key
    #: wall time the key was last seen to change
    changed_at: float
    #: not before this wall time (a failed read waits for a change)
    retry_at: float = 0.0

    def quiet_for(self, wall: float) -> float:
        return wall - max(self.key[3] / 1e9, self.changed_at)


def _stat_key(path: str) -> Key | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


async def watch(
    paths: Iterable,
    *,
    state: str,
    quiet: float = 60.0,
    settle: float = SETTLE,
    broken_wait: float = 30.0,
    poll: bool | None = None,
    poll_interval: float = 1.0,
    jobs: int | None = None,
    relative_to: str | None = None,
    tags: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    follow_symlinks: bool = False,
    stop: anyio.Event | None = None,
) -> AsyncIterator[dict]:
    """Index `paths` against the state file `state` and keep it up to
    date, yielding an event dict per change, until `stop` is set or the
    iteration is closed or cancelled. `poll`: None decides by file system
    (see `needs_polling`)."""
    import watchfiles

    paths = [os.fsdecode(os.fspath(p)) for p in paths]
    extras = resolve(tags or [])
    options = Options(jobs=jobs, relative_to=relative_to, follow_symlinks=follow_symlinks, extras=extras, exclude=exclude)
    walked = roots(paths, relative_to)
    schema = _native.Schema(list(extras))
    if poll is None:
        poll = any(needs_polling(p) for p in paths)
    stop = stop or anyio.Event()
    with State(state, extras) as st:
        aggregator = st.aggregator(schema)
        waiting: dict[str, Waiting] = {}
        own = st.own()

        def rescan() -> tuple[list[str], list[Row]]:
            """Compare the tree with the state: new and changed files wait,
            vanished ones are gone."""
            known = st.known()
            changed, others, vanished, _ = st.scan_changes(walked, known, follow_symlinks=follow_symlinks, exclude=list(exclude), own=own)
            wall = time.time()
            seen = set()
            for path, display, key, _known in changed:
                seen.add(display)
                w = waiting.get(display)
                if w is None or w.key != key:
                    waiting[display] = Waiting(path, key, wall if w is not None else min(wall, key[3] / 1e9))
            for display in [d for d in waiting if d not in seen]:
                del waiting[display]  # gone before it was read, or back as it was
            return vanished, other_rows(others)

        async def settled() -> tuple[list[Row], list[dict]]:
            """Read the files that settled; rows to commit."""
            wall = time.time()
            ready: dict[str, Waiting] = {}
            for display, w in list(waiting.items()):
                key = _stat_key(w.path)
                if key is None:
                    continue  # the next rescan says where it went
                if key != w.key:
                    waiting[display] = Waiting(w.path, key, wall)
                elif w.quiet_for(wall) >= settle and wall >= w.retry_at:
                    ready[display] = w
            if not ready:
                return [], []
            rows = await read_rows([(w.path, d) for d, w in ready.items()], {d: w.key for d, w in ready.items()}, options, None)
            wall = time.time()
            keep = []
            for display, w in ready.items():
                row = rows.get(display)
                if row is None or _stat_key(w.path) != w.key:
                    continue  # changed while read: read again once settled
                if row.status != "indexed" and w.quiet_for(wall) < broken_wait:
                    w.retry_at = wall + settle  # still being written, perhaps
                    continue
                del waiting[display]
                keep.append(row)
            return keep, []

        def commit(read: list[Row], gone: Sequence[str], others: list[Row] | None) -> list[dict]:
            if not read and not gone and others is None:
                return []
            started = now()
            counts = {"read": len(read), "removed": len(gone)}
            st.apply(aggregator, read, gone, others, kind="watch", started_at=started, counts=counts, stamp=True)
            events: list[dict] = [{"event": "removed", "time": stamp(), "file_path": g} for g in gone]
            for r in sorted(read, key=lambda r: os.fsencode(r.file_path)):
                if r.status == "indexed":
                    events.append({"event": "instance", "time": r.read_at, "record": r.record})
                else:
                    events.append({"event": "not_indexed", "time": r.read_at, "file_path": r.file_path, "reason": r.status, "message": r.message or ""})
            return events

        def stable() -> list[dict]:
            before = stamp(time.time() - quiet)
            events = []
            for *key, last in st.quiet_subseries(before):
                files, instances = st.db.execute(
                    "SELECT count(*), count(DISTINCT nullif(instance_uid, '')) + sum(coalesce(instance_uid, '') = '') FROM files "
                    "WHERE patient_ID = ? AND study = ? AND series = ? AND subseries = ? AND status = 'indexed'",
                    key,
                ).fetchone()
                when = now()
                st.mark_stable(tuple(key), when)  # type: ignore[arg-type]
                if files:
                    events.append({"event": "series_stable", "time": when, "patient_ID": key[0], "study": key[1], "series": key[2], "subseries": key[3], "files": files, "instances": instances, "last_instance_at": last})
            return events

        gone, others = rescan()
        for e in commit([], gone, others):
            yield e
        tick_ms = int(min(TICK, settle / 2 if settle > 0 else TICK, max(quiet / 4, 0.05)) * 1000) or 50
        changes_of = watchfiles.awatch(
            *paths,
            watch_filter=None,
            debounce=DEBOUNCE_MS,
            step=50,
            stop_event=stop,
            rust_timeout=tick_ms,
            yield_on_timeout=True,
            force_polling=poll,
            poll_delay_ms=int(poll_interval * 1000),
            ignore_permission_denied=True,
        )
        try:
            # The first pass settles what the catch-up found; then each
            # change or timeout is a look.
            changes: set = set()
            while not stop.is_set():
                if any(not st.is_own(p) for _, p in changes):
                    gone, others_now = rescan()
                    for e in commit([], gone, others_now):
                        yield e
                read, _ = await settled()
                for e in commit(read, [], None):
                    yield e
                for e in stable():
                    yield e
                try:
                    changes = await changes_of.__anext__()
                except StopAsyncIteration:
                    break
        finally:
            await changes_of.aclose()
