"""Records out, as NDJSON (orjson), CSV or Parquet: whole lines only, and
`-o FILE` appears complete or not at all."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import BinaryIO

import orjson

from . import _native
from .fields import FIELDS


def dumps(record: dict) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        import json

        # A path that is not valid UTF-8 reaches us with surrogate escapes,
        # which orjson refuses; the standard encoder writes them as \udcXX,
        # which json.loads and os.fsencode turn back into the same bytes.
        return json.dumps(record, separators=(",", ":")).encode("ascii") + b"\n"


#: paths that name one of this process's open descriptors
_DESCRIPTOR = re.compile(r"/dev/(?:(stdout)|(stderr)|fd/(\d+))|/proc/self/fd/(\d+)")


class Interrupted(Exception):
    """A signal came while an output was being opened (a FIFO with no reader)."""


def _descriptor(path: str | None) -> int | None:
    """The descriptor an output path names: stdout for None and "-"."""
    if path is None or path == "-":
        return 1
    m = _DESCRIPTOR.fullmatch(path)
    if m is None:
        return None
    return 1 if m[1] else 2 if m[2] else int(m[3] or m[4])


def identity(path: str | None) -> tuple:
    """What an output path writes to, to tell two outputs that are one: a
    regular file by (device, inode) whatever the path to it, else the
    descriptor or the resolved path."""
    fd = _descriptor(path)
    try:
        st = os.fstat(fd) if fd is not None else os.stat(str(path))
        if stat.S_ISREG(st.st_mode):
            return ("file", st.st_dev, st.st_ino)
    except OSError:
        pass
    return ("fd", fd) if fd is not None else ("path", os.path.realpath(str(path)))


class Output:
    """Where one output goes, committed whole or not at all:

    - None or "-": stdout; `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`: that
      descriptor, as the shell set it up;
    - a FIFO or a device (also behind links): written in place; a FIFO is
      opened without blocking, waiting for a reader while `interrupted()`
      says no signal has come;
    - otherwise a regular file, through links to their target: written to
      a temporary file beside the target (`.fastindex-*.part`, which the
      walker never indexes) and renamed over it on commit, with the mode
      and owner of the file it replaces. (A rename cannot keep hard links:
      other links keep the old content.)

    Errors name `path`, never the temporary file.
    """

    def __init__(self, path: str | None, interrupted: Callable[[], bool] = lambda: False):
        self.path = path
        self._tmp: str | None = None
        self._target: str | None = None
        self._prepared = False
        fd = _descriptor(path)
        try:
            if fd == 1 and (path is None or path == "-"):
                self.file: BinaryIO = sys.stdout.buffer
            elif fd is not None:
                self.file = os.fdopen(os.dup(fd), "wb")
            else:
                self.file = self._open(path, interrupted)  # type: ignore[arg-type]
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from None

    def _open(self, path: str, interrupted: Callable[[], bool]) -> BinaryIO:
        target = os.path.realpath(path)
        try:
            st: os.stat_result | None = os.stat(target)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISFIFO(st.st_mode):
            return os.fdopen(_open_fifo(target, interrupted), "wb")
        if st is not None and not stat.S_ISREG(st.st_mode):
            return open(target, "wb")
        import tempfile  # a few milliseconds of start-up, only when needed

        folder = os.path.dirname(target)
        _remove_stale_parts(folder)
        fd, self._tmp = tempfile.mkstemp(prefix=f"{_PART_PREFIX}{_host()}-{os.getpid()}-", suffix=".part", dir=folder)
        self._target = target
        if st is None:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        else:
            # An index of patient IDs kept private stays private.
            try:
                os.fchown(fd, st.st_uid, st.st_gid)
            except PermissionError:
                pass
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
        return os.fdopen(fd, "wb")

    def prepare(self) -> None:
        """Everything written and on disk, ready for `commit`. Writers call
        this when they finish; the caller commits their outputs together."""
        if self._prepared:
            return
        self._prepared = True
        try:
            self.file.flush()
            if self._tmp is not None:
                os.fsync(self.file.fileno())
            if self.file is not sys.stdout.buffer:
                self.file.close()
        except OSError as e:
            raise OSError(e.errno, e.strerror, self.path) from None

    def commit(self) -> None:
        self.prepare()
        if self._tmp is not None:
            try:
                os.replace(self._tmp, self._target)  # type: ignore[arg-type]
            except OSError as e:
                raise OSError(e.errno, e.strerror, self.path) from None
            self._tmp = None

    def abort(self) -> None:
        try:
            self.file.flush() if self.file is sys.stdout.buffer else self.file.close()
        except OSError:
            pass
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None


#: temporary files are `.fastindex-HOST-PID-XXXXXXXX.part`: the walker never
#: indexes them, and a later run on the same host removes those whose
#: process is gone (killed before it could clean up)
_PART_PREFIX = ".fastindex-"
_PART = re.compile(r"\.fastindex-(.*)-(\d+)-[A-Za-z0-9_]+\.part")


def _host() -> str:
    import socket

    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())


def _remove_stale_parts(folder: str) -> None:
    try:
        entries = [e.name for e in os.scandir(folder) if e.name.startswith(_PART_PREFIX)]
    except OSError:
        return
    host = _host()
    for name in entries:
        m = _PART.fullmatch(name)
        if m is None or m[1] != host:
            continue  # not ours, or another machine's (a shared folder)
        try:
            os.kill(int(m[2]), 0)
            continue  # that run is still going
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, ValueError):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def _open_fifo(path: str, interrupted: Callable[[], bool]) -> int:
    """Open a FIFO for writing once a reader has it open; a signal (seen
    through `interrupted`) ends the wait."""
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        else:
            os.set_blocking(fd, True)
            return fd
        if interrupted():
            raise Interrupted()
        time.sleep(0.05)


# Column types, by field kind and by the VR of extra tags.
_KIND_TYPE = {"count": "int", "number": "float", "numbers": "floats", "reference_series": "strings", "reference_modality": "strings"}


def arrow_schema(cols: Sequence[tuple[str, str]], binary_paths: bool = False):
    """The pyarrow schema of `columns()`: what Parquet files hold; with
    `binary_paths`, file_path and folder are bytes (paths not UTF-8)."""
    import pyarrow as pa

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "floats": pa.list_(pa.float64()), "ints": pa.list_(pa.int64()), "strings": pa.list_(pa.string())}
    return pa.schema([(n, pa.binary() if binary_paths and n in _PATHS else types[t]) for n, t in cols])


def columns(level: str, extras: Sequence[tuple[str, int, str, bool]]) -> list[tuple[str, str]]:
    """(name, type) of every column: str, int, float, floats, ints, strings."""
    out = [(f.name, _KIND_TYPE.get(f.kind, "str")) for f in FIELDS if f.scope in ("both", level)]
    # An extra tag's type: the reader's own rule (rust Value::extra_blank).
    out += [(name, _native.extra_type(vr, multi)) for name, _, vr, multi in extras]
    return out


def write_all(f: BinaryIO, data: bytes) -> None:
    """Write every byte: a write a signal interrupts may take only part."""
    view = memoryview(data)
    while view:
        view = view[f.write(view) or 0 :]


class NdjsonWriter:
    def __init__(self, out: Output, cols: list[tuple[str, str]] | None = None):
        self.out = out

    def write(self, records: Iterable[dict]) -> None:
        write_all(self.out.file, b"".join(map(dumps, records)))

    def finish(self) -> None:
        self.out.prepare()


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        # As DICOM writes several values: joined by backslashes.
        return "\\".join(_cell(x) for x in v)
    return v if isinstance(v, str) else repr(v)


class CsvWriter:
    """A header row, then one row per record; arrays joined by `\\`."""

    def __init__(self, out: Output, cols: list[tuple[str, str]]):
        import csv

        self.out = out
        self.names = [n for n, _ in cols]
        self._text = io.TextIOWrapper(out.file, encoding="utf-8", errors="surrogateescape", newline="", write_through=True)
        self._csv = csv.writer(self._text, lineterminator="\n")
        self._csv.writerow(self.names)

    def write(self, records: Iterable[dict]) -> None:
        self._csv.writerows([_cell(r.get(n)) for n in self.names] for r in records)

    def finish(self) -> None:
        self._text.flush()
        self._text.detach()
        self.out.prepare()


class ParquetWriter:
    """Records typed from the field table, written a row group at a time:
    each write() becomes Arrow columns at once, and a row group goes out
    once ROWS rows are waiting, so memory does not grow with the archive.

    Parquet strings are UTF-8. Should a path not be, the path columns of
    the whole file hold the exact bytes (binary) rather than an
    approximation. As that may be known only after row groups were
    written, they go to a spool file first, copied to the output at the
    end; the first path that is not UTF-8 has them rewritten to the
    output, a row group at a time, with binary path columns.
    """

    ROWS = 4096

    def __init__(self, out: Output, cols: list[tuple[str, str]]):
        self.check()
        self.out = out
        self.cols = cols
        #: the path columns hold bytes
        self.binary = False
        self.schema = arrow_schema(cols)
        #: tables not written yet, and their rows
        self.pending: list = []
        self.held = 0
        self._writer = None
        self._spool: BinaryIO | None = None

    @staticmethod
    def check() -> None:
        """ImportError unless pyarrow can be imported: call it before
        creating the output."""
        need_pyarrow("--format parquet")

    def write(self, records: Iterable[dict]) -> None:
        import pyarrow as pa

        records = list(records)
        for start in range(0, len(records), self.ROWS):
            rows = records[start : start + self.ROWS]
            if not self.binary and not paths_utf8(rows):
                self._to_binary()
            if self.binary:
                rows = paths_as_bytes(rows)
            self.pending.append(pa.Table.from_pylist(rows, schema=self.schema))
            self.held += len(rows)
            if self.held >= self.ROWS:
                self._write_pending()

    def finish(self) -> None:
        self._write_pending()
        self._open().close()
        if self._spool is not None:
            import shutil

            self._spool.seek(0)
            shutil.copyfileobj(self._spool, self.out.file, 1 << 20)
            self._spool.close()
        self.out.prepare()

    def _open(self):
        """The Parquet writer: to the spool while every path is UTF-8."""
        if self._writer is None:
            import pyarrow.parquet as pq

            if not self.binary:
                import tempfile

                self._spool = tempfile.TemporaryFile(prefix="fastindex-")
            self._writer = pq.ParquetWriter(self._spool or self.out.file, self.schema)
        return self._writer

    def _write_pending(self) -> None:
        import pyarrow as pa

        if self.pending:
            self._open().write_table(pa.concat_tables(self.pending))
        self.pending, self.held = [], 0

    def _to_binary(self) -> None:
        """Paths are bytes from now on, also in what is waiting or spooled."""
        import pyarrow.parquet as pq

        self.binary = True
        self.schema = arrow_schema(self.cols, True)
        self.pending = [t.cast(self.schema) for t in self.pending]
        if self._writer is None:
            return
        self._writer.close()
        self._writer = pq.ParquetWriter(self.out.file, self.schema)
        self._spool.seek(0)
        spooled = pq.ParquetFile(self._spool)
        for i in range(spooled.num_row_groups):
            self._writer.write_table(spooled.read_row_group(i).cast(self.schema))
        self._spool.close()
        self._spool = None


def need_pyarrow(what: str):
    """pyarrow, or an ImportError that says how to install it."""
    try:
        import pyarrow
    except ImportError:
        raise ImportError(f"{what} needs pyarrow: pip install 'fastindex-dicom[parquet]'", name="pyarrow") from None
    return pyarrow


_PATHS = ("file_path", "folder")


def paths_utf8(records: list[dict]) -> bool:
    """Whether every file_path and folder is valid UTF-8."""
    return all(_utf8(r[k]) for r in records for k in _PATHS)


def paths_as_bytes(records: list[dict]) -> list[dict]:
    """The records with file_path and folder as the exact bytes."""
    return [r | {k: os.fsencode(r[k]) for k in _PATHS} for r in records]


def _utf8(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


FORMATS = {"ndjson": NdjsonWriter, "csv": CsvWriter, "parquet": ParquetWriter}
