"""The Python face: three calls over the same pipeline the CLI runs."""

from __future__ import annotations

import os
import queue
import stat
import threading
from collections.abc import Iterable, Iterator
from typing import Literal

import anyio

from . import _native
from .objects import Copies, is_url
from .outcomes import FALLBACK_REASONS, NotIndexed
from .pipeline import Options, roots, run
from .tags import resolve


def _options(jobs, relative_to, follow_symlinks, tags, no_sign_request=False) -> Options:
    return Options(jobs=jobs, relative_to=relative_to, follow_symlinks=follow_symlinks, extras=resolve(tags or ()), no_sign_request=no_sign_request)


def index(
    paths: Iterable[str | os.PathLike],
    *,
    jobs: int | None = None,
    relative_to: str | None = None,
    follow_symlinks: bool = False,
    tags: Iterable[str] | None = None,
    no_sign_request: bool = False,
) -> list[dict]:
    """Subseries records of every DICOM file under `paths` (local paths,
    or object-store URLs: s3://bucket/prefix, gs://..., az://...), sorted.
    `no_sign_request`: unsigned requests to the stores (public buckets)."""
    options = _options(jobs, relative_to, follow_symlinks, tags, no_sign_request)
    _, aggregator = anyio.run(lambda: run(list(paths), options))
    return list(aggregator.dicts())


def iter_instances(
    paths: Iterable[str | os.PathLike],
    *,
    jobs: int | None = None,
    relative_to: str | None = None,
    follow_symlinks: bool = False,
    tags: Iterable[str] | None = None,
    no_sign_request: bool = False,
) -> Iterator[dict]:
    """Per-file records, as they are read (completion order). Closing the
    iterator (or dropping it) before the end stops the run: its threads
    and fallback processes end. `paths` as `index` takes them."""
    options = _options(jobs, relative_to, follow_symlinks, tags, no_sign_request)
    paths = list(paths)
    roots(paths, relative_to)  # raise FileNotFoundError here, not in a thread
    done = object()
    q: queue.Queue = queue.Queue(maxsize=64)
    failure: list[BaseException] = []
    stop = threading.Event()

    def put(records: list[dict]) -> None:
        while not stop.is_set():
            try:
                q.put(records, timeout=0.05)
                return
            except queue.Full:
                pass

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while not stop.is_set():
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await run(paths, options, on_records=put)
            tg.cancel_scope.cancel()

    def produce() -> None:
        try:
            anyio.run(main)
        except BaseException as e:  # handed to the consumer below
            failure.append(e)
        finally:
            put(done)  # type: ignore[arg-type]

    thread = threading.Thread(target=produce, name="fastindex", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            yield from item
    finally:
        # Closed early (or over): stop the run and wait for it to end.
        stop.set()
        thread.join()
    if failure:
        raise failure[0]


def read_header(
    path: str | os.PathLike,
    *,
    engine: Literal["auto", "rust", "pydicom"] = "auto",
    relative_to: str | None = None,
    tags: Iterable[str] | None = None,
    no_sign_request: bool = False,
) -> dict:
    """The per-file record of one file, or of one object (an s3://, gs://
    or az:// URL). Raises NotIndexed when it has none.

    engine="rust" uses only the fast path, "pydicom" only pydicom, "auto"
    the fast path with pydicom for what it declines (as the CLI does).
    """
    from .fallback_pool import read_one

    extras = resolve(tags or ())
    if is_url(os.fsdecode(os.fspath(path))):
        return _read_object(os.fsdecode(os.fspath(path)), engine, extras, no_sign_request)
    [(p, display)] = roots([path], relative_to)
    # As the walker does: FIFOs, sockets and devices are never read.
    if not stat.S_ISREG(os.stat(p).st_mode):
        raise NotIndexed("not_regular", "not a regular file (FIFO, socket or device)")
    if engine == "pydicom":
        return read_one(p, display, extras)[0]
    if engine not in ("rust", "auto"):
        raise ValueError(f"engine must be auto, rust or pydicom, not {engine!r}")
    status, payload, _ = _native.read_file(_native.Schema(list(extras)), p, display)
    if status == "indexed":
        return payload
    if engine == "auto" and status in FALLBACK_REASONS:
        return read_one(p, display, extras)[0]
    raise NotIndexed(status, payload)


def _read_object(url: str, engine: str, extras: list, no_sign_request: bool) -> dict:
    """`read_header` of an object: ranged GETs for the fast path, a bounded
    download for pydicom (as a run reads it)."""
    from .fallback_pool import read_one

    if engine not in ("rust", "auto", "pydicom"):
        raise ValueError(f"engine must be auto, rust or pydicom, not {engine!r}")
    stores = _native.Stores(anonymous=no_sign_request)
    if engine != "pydicom":
        status, payload, _ = _native.read_file(_native.Schema(list(extras)), url, url, stores)
        if status == "indexed":
            return payload
        if engine == "rust" or status not in FALLBACK_REASONS:
            raise NotIndexed(status, payload)
    copies = Copies(stores)
    try:
        copy = anyio.run(copies.fetch, url)
        return read_one(copy, url, extras)[0]
    finally:
        copies.close()
