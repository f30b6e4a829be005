"""NDJSON out: whole lines only, and `-o FILE` appears complete or not at all."""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from typing import BinaryIO, Iterable

import orjson


def dumps(record: dict) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        # A path that is not valid UTF-8 reaches us with surrogate escapes,
        # which orjson refuses; the standard encoder writes them as \udcXX,
        # which json.loads and os.fsencode turn back into the same bytes.
        return json.dumps(record, separators=(",", ":")).encode("ascii") + b"\n"


class NdjsonWriter:
    """Lines to stdout, or to FILE through a temporary file renamed at the end.

    A target that exists and is not a regular file (a device, a FIFO) is
    written in place: there is nothing to rename over.
    """

    def __init__(self, path: str | None):
        self.path = path
        self._tmp: str | None = None
        if path is None:
            self._f: BinaryIO = sys.stdout.buffer
            return
        try:
            special = not stat.S_ISREG(os.stat(path).st_mode)
        except FileNotFoundError:
            special = False
        if special:
            self._f = open(path, "wb")
            return
        folder = os.path.dirname(os.path.abspath(path))
        fd, self._tmp = tempfile.mkstemp(prefix=".fastindex-", suffix=".part", dir=folder)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        self._f = os.fdopen(fd, "wb")

    def write(self, records: Iterable[dict]) -> None:
        self._f.write(b"".join(map(dumps, records)))

    def commit(self) -> None:
        self._f.flush()
        if self.path is None:
            return
        self._f.close()
        if self._tmp is not None:
            os.replace(self._tmp, self.path)
            self._tmp = None

    def abort(self) -> None:
        if self.path is None:
            try:
                self._f.flush()
            except OSError:
                pass
            return
        try:
            self._f.close()
        except OSError:
            pass
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None
