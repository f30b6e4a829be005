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
from .outcomes import FALLBACK_REASONS, NotIndexed
from .pipeline import Options, roots, run
from .tags import resolve


def _options(jobs, relative_to, follow_symlinks, tags) -> Options:
    return Options(jobs=jobs, relative_to=relative_to, follow_symlinks=follow_symlinks, extras=resolve(tags or ()))


def index(
    paths: Iterable[str | os.PathLike],
    *,
    jobs: int | None = None,
    relative_to: str | None = None,
    follow_symlinks: bool = False,
    tags: Iterable[str] | None = None,
) -> list[dict]:
    """Subseries records of every DICOM file under `paths`, sorted."""
    options = _options(jobs, relative_to, follow_symlinks, tags)
    _, aggregator = anyio.run(lambda: run(list(paths), options))
    return list(aggregator.dicts())


def iter_instances(
    paths: Iterable[str | os.PathLike],
    *,
    jobs: int | None = None,
    relative_to: str | None = None,
    follow_symlinks: bool = False,
    tags: Iterable[str] | None = None,
) -> Iterator[dict]:
    """Per-file records, as they are read (completion order). Closing the
    iterator (or dropping it) before the end stops the run: its threads
    and fallback processes end."""
    options = _options(jobs, relative_to, follow_symlinks, tags)
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
) -> dict:
    """The per-file record of one file. Raises NotIndexed when it has none.

    engine="rust" uses only the fast path, "pydicom" only pydicom, "auto"
    the fast path with pydicom for what it declines (as the CLI does).
    """
    from .fallback_pool import read_one

    extras = resolve(tags or ())
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
