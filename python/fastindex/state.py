"""The state database (`--state FILE`): one row per file of the last run,
with the stat key that tells whether it changed and its per-file record
or its reason, and the subseries aggregate of all of them. SQLite (WAL,
so that readers can query it while a run or a watcher writes), and a
queryable instance index in its own right: the tables are documented in
the README (The state database).

Consistency: what the next run relies on (the rows of `files` and the
aggregate) changes only in one transaction (`apply`), so a run killed at
any point leaves them as the last complete run left them; what a killed
run had read is kept in `pending` (committed a chunk at a time) and taken
up by the next run when the file has not changed since. One run at a
time: an exclusive lock on `FILE.lock`.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import re
import sqlite3
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import orjson

from . import _native
from .outcomes import WARNING, Summary
from .write import dumps

#: "FIdx": SQLite's application_id of a fastindex state (the header, offset 68)
APPLICATION_ID = 0x46496478
#: the layout of the tables; PRAGMA user_version and meta.schema_version
SCHEMA_VERSION = 2
#: what SQLite writes beside a database, and the lock file: never indexed
SIBLINGS = ("-wal", "-shm", "-journal", ".lock")

#: a file's stat key: (dev, ino, size, mtime_ns, ctime_ns)
Key = tuple[int, int, int, int, int]

_KEY_COLUMNS = "dev, ino, size, mtime_ns, ctime_ns"
#: columns of `files` and `pending`, in this order
_COLUMNS = (
    "file_path", "dev", "ino", "size", "mtime_ns", "ctime_ns", "status", "message", "warnings", "via_pydicom",
    "patient_ID", "study", "series", "subseries", "instance_uid", "modality", "sop_class_uid", "record", "read_at",
)
_ROW = ",\n    ".join(
    f"{c} {t}"
    for c, t in zip(
        _COLUMNS,
        ("TEXT PRIMARY KEY", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "TEXT NOT NULL", "TEXT", "INTEGER NOT NULL DEFAULT 0",
         "INTEGER NOT NULL DEFAULT 0", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT NOT NULL"),
    )
)
_TABLES = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (
    {_ROW}
);
CREATE INDEX files_subseries ON files (patient_ID, study, series, subseries);
CREATE INDEX files_instance_uid ON files (instance_uid);
CREATE INDEX files_read_at ON files (read_at);
CREATE INDEX files_other ON files (file_path) WHERE dev IS NULL;
CREATE TABLE pending (
    {_ROW}
);
CREATE TABLE removed (file_path TEXT NOT NULL, removed_at TEXT NOT NULL);
CREATE INDEX removed_at ON removed (removed_at);
CREATE TABLE aggregate (id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL);
CREATE TABLE scan_keys (id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL, counts TEXT NOT NULL);
CREATE TABLE runs (
    started_at TEXT NOT NULL, finished_at TEXT NOT NULL, kind TEXT NOT NULL,
    read INTEGER NOT NULL, unchanged INTEGER NOT NULL, added INTEGER NOT NULL,
    changed INTEGER NOT NULL, removed INTEGER NOT NULL
);
CREATE TABLE subseries_activity (
    patient_ID TEXT NOT NULL, study TEXT NOT NULL, series TEXT NOT NULL, subseries TEXT NOT NULL,
    last_instance_at TEXT NOT NULL, stable_at TEXT,
    PRIMARY KEY (patient_ID, study, series, subseries)
);
"""

#: migrations from older layouts: version -> SQL that brings it to the next
MIGRATIONS: dict[int, str] = {
    # 2: the stat keys of `files` packed in one blob (scan_keys), for the
    # walk to compare with, and the counts by status; built from `files`
    # by the next run
    1: """CREATE TABLE scan_keys (id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL, counts TEXT NOT NULL);
          CREATE INDEX files_other ON files (file_path) WHERE dev IS NULL""",
}

#: rows staged in `pending` per commit while files are read
CHUNK = 2000

_SQLITE_MAGIC = b"SQLite format 3\x00"
_WARNING_COUNT = re.compile(r"(\d+) value")


class StateError(Exception):
    """A state file that cannot be used: foreign, damaged, of another
    layout, made with other --tags, or in use by another run."""


def now() -> str:
    """ISO 8601 UTC to the microsecond: sorts as it reads."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def db_text(path: str) -> str | bytes:
    """A path as SQLite holds it: text, or the raw bytes of a path that is
    not UTF-8 (Python hands those over with surrogate escapes)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def py_path(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def loads(text: str) -> dict:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # \udcXX escapes of a path that is not UTF-8


def order(path: str) -> bytes:
    """The output's order of paths: byte-wise, as the aggregate's."""
    return os.fsencode(path)


@dataclass
class Row:
    """One file as the state holds it."""

    file_path: str
    key: Key | None
    status: str  # "indexed" or a reason
    message: str | None = None
    warnings: int = 0
    via_pydicom: bool = False
    record: dict | None = None
    read_at: str = ""
    #: the record as stored (JSON), once made: staged, then applied
    _json: str | None = field(default=None, repr=False, compare=False)

    def record_json(self) -> str | None:
        if self._json is None and self.record is not None:
            self._json = dumps(self.record).decode("utf-8").rstrip("\n")
        return self._json

    def values(self) -> tuple:
        r = self.record or {}
        key = self.key or (None,) * 5
        return (
            db_text(self.file_path), *key, self.status, self.message, self.warnings, int(self.via_pydicom),
            r.get("patient_ID"), r.get("study"), r.get("series"), r.get("subseries"), r.get("instance_uid"),
            r.get("modality"), r.get("sop_class_uid"),
            self.record_json(), self.read_at or now(),
        )

    @classmethod
    def of(cls, v: Sequence) -> Row:
        key = None if v[1] is None else tuple(v[1:6])
        return cls(py_path(v[0]), key, v[6], v[7], v[8], bool(v[9]), None if v[17] is None else loads(v[17]), v[18])


def warning_count(message: str) -> int:
    """The count in the fast path's warning ("N value(s) present but not
    parsable", rust/pipeline.rs)."""
    m = _WARNING_COUNT.match(message)
    return int(m[1]) if m else 1


def _refuse_foreign(path: str) -> None:
    """Refuse, before SQLite opens it, a file that is not a fastindex
    state: it is left as it is."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StateError(f"{path}: {e.strerror or e}") from None
    if not head:
        return  # empty: SQLite makes a database of it
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise StateError(f"{path}: not a fastindex state (not an SQLite database); left untouched")
    (app,) = struct.unpack(">I", head[68:72])
    if app != APPLICATION_ID:
        raise StateError(f"{path}: an SQLite database that is not a fastindex state (application_id {app:#x}); left untouched")


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Statements one by one, inside the caller's transaction
    (executescript would commit it first)."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


class State:
    """An open state, locked for this process until `close`."""

    def __init__(self, path: str, tags: Sequence[tuple[str, int, str, bool]] = ()):
        self.path = path
        self._lock_fd: int | None = None
        self._keys_stored = False
        _refuse_foreign(path)
        self._lock(wait=False)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._open(list(tags))
        except sqlite3.DatabaseError as e:
            self.close()
            raise StateError(f"{path}: damaged fastindex state ({e}); left untouched: remove it to start again") from None
        except BaseException:
            self.close()
            raise

    def _lock(self, wait: bool) -> None:
        lock = self.path + ".lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise StateError(f"{lock}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            by = f" (process {holder})" if holder else ""
            raise StateError(f"{self.path}: in use by another fastindex run{by}; try again when it is done") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _open(self, tags: list) -> None:
        db = self.db
        (app,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        wanted = json.dumps(tags)
        if app in (0, APPLICATION_ID) and version <= SCHEMA_VERSION:
            # WAL: readers query while a run or the watcher writes. NORMAL
            # in WAL: a power loss may lose the last transactions, never the
            # database's consistency (the next run redoes what is lost).
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        if app == 0 and version == 0 and not db.execute("SELECT 1 FROM sqlite_master").fetchone():
            db.execute("BEGIN IMMEDIATE")
            _script(db, _TABLES)
            meta = {"schema_version": str(SCHEMA_VERSION), "created_by": f"fastindex {_native.__version__}", "created_at": now(), "tags": wanted}
            db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
            return
        if app != APPLICATION_ID:
            raise StateError(f"{self.path}: an SQLite database that is not a fastindex state; left untouched")
        if version > SCHEMA_VERSION:
            raise StateError(f"{self.path}: made by a newer fastindex (state schema {version}, this one reads up to {SCHEMA_VERSION}); left untouched")
        while version < SCHEMA_VERSION:
            step = MIGRATIONS.get(version)
            if step is None:
                raise StateError(f"{self.path}: made by an older fastindex (state schema {version}) that this one cannot migrate; left untouched: remove it to start again")
            db.execute("BEGIN IMMEDIATE")
            _script(db, step)
            version += 1
            db.execute(f"PRAGMA user_version={version}")
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
            db.execute("COMMIT")
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise StateError(f"{self.path}: damaged fastindex state (schema version {meta.get('schema_version')!r} in meta, {version} in the header); left untouched")
        if meta.get("tags") != wanted:
            was = [t[0] for t in json.loads(meta.get("tags") or "[]")]
            raise StateError(f"{self.path}: made with --tags {','.join(was) or '(none)'}, not {','.join(t[0] for t in tags) or '(none)'}: use another state file")

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def own(self) -> list[tuple[int, int]]:
        """(device, inode) of the state and its siblings, for the walk to
        leave out (the state may live inside the archive)."""
        out = []
        for p in (self.path, *(self.path + s for s in SIBLINGS)):
            try:
                st = os.stat(p)
                out.append((st.st_dev, st.st_ino))
            except OSError:
                pass
        return out

    def is_own(self, path: str) -> bool:
        """Whether `path` is the state or one of its siblings (by name: a
        watcher hears of them before they exist as files to stat)."""
        real = os.path.realpath(path)
        base = os.path.realpath(self.path)
        return real == base or any(real == base + s for s in SIBLINGS)

    # ---------------------------------------------------------- reading ----

    def known(self) -> bytes:
        """The stat key of each file stat'ed by the last run, packed for
        `_native.scan_changes` (`_native.pack_keys`): stored as it is in
        `scan_keys`, or made from `files` (a migrated state, or after the
        watcher)."""
        v = self.db.execute("SELECT data FROM scan_keys WHERE id = 1").fetchone()
        if v is not None:
            self._keys_stored = True
            return v[0]
        self._keys_stored = False
        rows = self.db.execute(f"SELECT file_path, {_KEY_COLUMNS} FROM files WHERE dev IS NOT NULL").fetchall()
        return _native.pack_keys(b"", add=[(r[0], r[1:]) for r in rows])

    def object_keys(self) -> dict[str, Key]:
        """The key of each object-store URL the last run listed (see
        object_state.py)."""
        q = f"SELECT file_path, {_KEY_COLUMNS} FROM files WHERE dev IS NOT NULL AND (file_path LIKE 's3://%' OR file_path LIKE 'gs://%' OR file_path LIKE 'az://%')"
        return {py_path(r[0]): tuple(r[1:]) for r in self.db.execute(q)}

    def scan_changes(self, walked: list[tuple[str, str]], known: bytes, **options) -> tuple:
        """`_native.scan_changes` against `known` (from `known()`; this
        may run on another thread, SQLite is not touched); damaged keys
        are a damaged state."""
        try:
            return _native.scan_changes(walked, known, **options)
        except ValueError as e:
            if "stat keys" in str(e):
                raise StateError(f"{self.path}: damaged fastindex state ({e}); left untouched: remove it to start again") from None
            raise

    def _old_records(self, paths: Sequence[str]) -> dict[str, dict]:
        """The stored records of those of `paths` that were indexed."""
        out = {}
        for start in range(0, len(paths), 500):
            chunk = [db_text(p) for p in paths[start : start + 500]]
            q = f"SELECT file_path, record FROM files WHERE status = 'indexed' AND record IS NOT NULL AND file_path IN ({', '.join('?' * len(chunk))})"
            for p, rec in self.db.execute(q, chunk):
                out[py_path(p)] = loads(rec)
        return out

    def pending(self) -> dict[str, Row]:
        """What a run that did not finish had read."""
        rows = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM pending").fetchall()
        return {r.file_path: r for r in map(Row.of, rows)}

    def aggregator(self, schema: _native.Schema) -> _native.Aggregator:
        v = self.db.execute("SELECT data FROM aggregate WHERE id = 1").fetchone()
        if v is None:
            return _native.Aggregator(schema)
        try:
            return _native.Aggregator.from_bytes(schema, v[0])
        except ValueError as e:
            raise StateError(f"{self.path}: damaged fastindex state ({e}); remove it to start again") from None

    def records(self, chunk: int = 1024) -> Iterator[list[dict]]:
        """The per-file records, ordered by file_path (byte-wise), a chunk
        at a time."""
        rows = self.db.execute("SELECT file_path, record FROM files WHERE status = 'indexed'").fetchall()
        rows.sort(key=lambda r: order(py_path(r[0])))
        for start in range(0, len(rows), chunk):
            yield [loads(r[1]) for r in rows[start : start + chunk]]

    def problems(self) -> list[dict]:
        """What `--errors` lists, ordered by file_path: every file not
        indexed with its reason, and indexed files with warnings."""
        rows = self.db.execute("SELECT file_path, status, message FROM files WHERE status != 'indexed' OR message IS NOT NULL").fetchall()
        out = [{"file_path": py_path(p), "reason": WARNING if s == "indexed" else s, "message": m or ""} for p, s, m in rows]
        out.sort(key=lambda d: order(d["file_path"]))
        return out

    def summary(self) -> Summary:
        """The counts of a run from scratch over what the state holds (the
        caller adds duplicates, unresolved and the time)."""
        s = Summary()
        v = self.db.execute("SELECT counts FROM scan_keys WHERE id = 1").fetchone()
        for status, n, warnings, via in json.loads(v[0]) if v is not None else self._counts():
            if status == "indexed":
                s.indexed, s.warnings, s.via_pydicom = n, warnings, via
            else:
                s.reasons[status] += n
        return s

    def _counts(self) -> list:
        return self.db.execute("SELECT status, count(*), sum(warnings), sum(via_pydicom) FROM files GROUP BY status").fetchall()

    def subseries_files(self, key: tuple[str, str, str, str]) -> list[Row]:
        q = f"SELECT {', '.join(_COLUMNS)} FROM files WHERE patient_ID = ? AND study = ? AND series = ? AND subseries = ? AND status = 'indexed'"
        return [Row.of(v) for v in self.db.execute(q, key)]

    # ---------------------------------------------------------- writing ----

    def stage(self, rows: Iterable[Row]) -> None:
        """Keep what was read so far (a run killed later keeps it)."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(f"INSERT OR REPLACE INTO pending VALUES ({', '.join('?' * len(_COLUMNS))})", [r.values() for r in rows])
        self.db.execute("COMMIT")

    def apply(
        self,
        aggregator: _native.Aggregator,
        read: Sequence[Row],
        gone: Sequence[str],
        others: Sequence[Row] | None,
        *,
        kind: str,
        started_at: str,
        counts: dict[str, int],
        stamp: bool = False,
    ) -> None:
        """One transaction: files in `read` (new or changed) replace their
        rows, files in `gone` leave, `others` (entries the walk left out or
        could not look at) replace the previous run's (None: kept as they
        are); `aggregator` (the
        stored one) follows, and is stored. `stamp`: note each subseries
        that got an instance (the watcher's series_stable)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            when = now()
            changed = [r.file_path for r in read]
            for path, record in self._old_records([*gone, *changed]).items():
                aggregator.remove_dict(record, path)
            db.executemany("DELETE FROM files WHERE file_path = ?", [(db_text(p),) for p in gone])
            db.executemany("INSERT INTO removed VALUES (?, ?)", [(db_text(p), when) for p in gone])
            dropped = 0
            if others is not None:
                dropped = db.execute("DELETE FROM files WHERE dev IS NULL").rowcount
            fresh = [*read, *(others or ())]
            db.executemany(f"INSERT OR REPLACE INTO files VALUES ({', '.join('?' * len(_COLUMNS))})", [r.values() for r in fresh])
            for r in read:
                if r.status == "indexed" and r.record is not None:
                    aggregator.add_dict(r.record, r.file_path)
            for key in aggregator.needs_representative():
                members = self.subseries_files(key)
                if members:
                    smallest = min(members, key=lambda m: order(m.file_path))
                    aggregator.offer_dict(smallest.record, smallest.file_path)  # type: ignore[arg-type]
            if stamp:
                keys = {(r.record["patient_ID"], r.record["study"], r.record["series"], r.record["subseries"]) for r in read if r.status == "indexed" and r.record}
                db.executemany(
                    "INSERT INTO subseries_activity VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT DO UPDATE SET last_instance_at = excluded.last_instance_at, stable_at = NULL",
                    [(*k, when) for k in keys],
                )
            if read or gone or not self._has_aggregate():
                db.execute("INSERT OR REPLACE INTO aggregate VALUES (1, ?)", (aggregator.to_bytes(),))
            self._store_keys(read, gone, others, dropped > 0)
            # Taken up, or read again since: what a killed run left is done.
            db.execute("DELETE FROM pending")
            if kind != "watch":  # the watcher commits a little at a time
                db.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (started_at, when, kind, counts.get("read", 0), counts.get("unchanged", 0), counts.get("added", 0), counts.get("changed", 0), counts.get("removed", 0)),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _has_aggregate(self) -> bool:
        return self.db.execute("SELECT 1 FROM aggregate WHERE id = 1").fetchone() is not None

    def _store_keys(self, read: Sequence[Row], gone: Sequence[str], others: Sequence[Row] | None, dropped: bool) -> None:
        """`scan_keys` brought along with the rows of `files` just written
        (inside apply's transaction): unchanged when nothing was."""
        if self._keys_stored and not read and not gone and not others and not dropped:
            return
        if others is None:  # the watcher: keys as they were, wherever it left none
            others = ()
        fresh = [*read, *others]
        keys = _native.pack_keys(self.known(), [*gone, *(r.file_path for r in fresh)], [(r.file_path, r.key) for r in fresh if r.key is not None])
        self.db.execute("INSERT OR REPLACE INTO scan_keys VALUES (1, ?, ?)", (keys, json.dumps(self._counts())))
        self._keys_stored = True

    def quiet_subseries(self, before: str) -> list[tuple[str, str, str, str, str]]:
        """Subseries whose last instance came before `before` and that were
        not yet announced stable: (key..., last_instance_at)."""
        q = "SELECT patient_ID, study, series, subseries, last_instance_at FROM subseries_activity WHERE stable_at IS NULL AND last_instance_at <= ?"
        return self.db.execute(q, (before,)).fetchall()

    def next_quiet(self) -> str | None:
        """The earliest last_instance_at of a subseries not yet stable."""
        (v,) = self.db.execute("SELECT min(last_instance_at) FROM subseries_activity WHERE stable_at IS NULL").fetchone()
        return v

    def mark_stable(self, key: tuple[str, str, str, str], when: str) -> None:
        self.db.execute("UPDATE subseries_activity SET stable_at = ? WHERE patient_ID = ? AND study = ? AND series = ? AND subseries = ?", (when, *key))
