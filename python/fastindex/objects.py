"""Objects of object stores (s3://, gs://, az://) beside local paths.

The native side lists and reads them (rust/sources/objects/): ranged GETs
of the headers only, many in flight. What is left here: telling URLs from
paths, and giving the pydicom fallback the bytes of an object the fast
path declined. The fallback reads files; an object is downloaded for it
into a temporary file, at most as much as pydicom would read of a local
file (fallback.READ_LIMIT, and one byte more so that a header that runs
past it is `too_large` as it is locally), streamed to disk, and removed
once read. The fallback runs at most 2 x --fallback-jobs reads at a time,
so the disk holds at most that many such copies.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable

import anyio.to_thread

from . import _native

is_url = _native.is_url


def split(paths: Iterable) -> tuple[list, list[str]]:
    """(local paths, object URLs), each in the order given."""
    local, urls = [], []
    for p in paths:
        text = os.fsdecode(os.fspath(p))
        if is_url(text):
            urls.append(text)
        else:
            local.append(p)
    return local, urls


class Copies:
    """Local copies of objects for the fallback, in a folder of the run's."""

    def __init__(self, stores: _native.Stores):
        self.stores = stores
        self._dir: tempfile.TemporaryDirectory | None = None
        self._n = 0

    async def fetch(self, url: str) -> str:
        """A local file holding the object's first bytes (OSError if it
        cannot be had); remove it with `done`."""
        from .fallback import READ_LIMIT

        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="fastindex-objects-")
        self._n += 1
        dest = os.path.join(self._dir.name, str(self._n))
        await anyio.to_thread.run_sync(self.stores.download, url, dest, READ_LIMIT + 1)
        return dest

    @staticmethod
    def done(path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
