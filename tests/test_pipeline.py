"""The native pipeline's lifecycle seen from Python: an abandoned run
leaves no thread behind, and a thread of the run that fails fails the run
(never a quietly partial index)."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import hostile
import pytest
from fastindex import _native

CT = hostile._hand(lambda w: None)


#: the process-wide threads every run shares (rust/pool.rs, prefetch.rs):
#: started once, kept; a run's own threads are all the others
SHARED = ("fastindex-read", "fastindex-pre")


def names() -> list[str]:
    out = []
    for t in os.listdir("/proc/self/task"):
        try:
            out.append(Path(f"/proc/self/task/{t}/comm").read_text().strip())
        except OSError:
            pass
    return out


def threads() -> int:
    """Threads of this process but the shared ones."""
    return sum(not n.startswith(SHARED) for n in names())


def settle(expected: int, timeout: float = 5.0) -> int:
    """The thread count, once it is back to `expected` (or the timeout)."""
    deadline = time.monotonic() + timeout
    while (n := threads()) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return n


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "archive"
    for d in range(20):
        folder = root / f"d{d}"
        folder.mkdir(parents=True)
        for i in range(50):
            (folder / f"{i}.dcm").write_bytes(CT)
    return root


def start(archive: Path, **kw) -> _native.Pipeline:
    schema = _native.Schema([])
    aggregator = _native.Aggregator(schema)
    options = dict(jobs=2, batch_size=4, concurrency=4) | kw
    return _native.Pipeline(schema, [(str(archive), "archive")], aggregator, **options)


@pytest.mark.parametrize("how", ["close", "drop"])
@pytest.mark.parametrize("records", [False, True])
def test_an_abandoned_run_leaves_no_thread(archive, how, records):
    before = threads()
    run = start(archive, records=records)
    first = run.next_batch()
    assert first is not None
    assert threads() > before  # the run's own threads
    if how == "close":
        run.close()
        assert run.next_batch() is None  # closed: over
        run.close()  # twice is harmless
    else:
        del run
        gc.collect()
    assert settle(before) == before


def test_a_run_read_to_the_end_leaves_no_thread(archive):
    before = threads()
    run = start(archive)
    indexed = 0
    while (batch := run.next_batch()) is not None:
        indexed += batch[2]
    assert indexed == 1000
    assert settle(before) == before


def cli(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastindex", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("stage", ["walk", "read"])
def test_a_failed_thread_fails_the_run(archive, tmp_path, stage):
    out = tmp_path / "index.ndjson"
    proc = cli(archive, "-o", out, cwd=tmp_path, env={"FASTINDEX_TEST_PANIC": stage})
    assert proc.returncode == 1, proc.stderr
    assert b"the run failed" in proc.stderr
    assert f"FASTINDEX_TEST_PANIC={stage}".encode() in proc.stderr
    assert not out.exists()  # no partial index
    assert b"Traceback" not in proc.stderr
    # The same archive without the hook: complete.
    proc = cli(archive, "-o", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [rec] = map(json.loads, out.read_bytes().splitlines())
    assert rec["instances"] == 1  # every copy holds the same instance


def test_the_api_raises_when_a_thread_fails(archive, monkeypatch):
    import fastindex

    monkeypatch.setenv("FASTINDEX_TEST_PANIC", "walk")
    with pytest.raises(_native.RunFailed, match="FASTINDEX_TEST_PANIC=walk"):
        fastindex.index([archive])
    # The run's own threads are gone, though its listing thread died; the
    # shared ones are no more than configured.
    assert native_threads() == 0
    threads, prefetchers = _native.configure()
    assert sum(n == "fastindex-read" for n in names()) <= threads
    assert sum(n.startswith("fastindex-pre") for n in names()) <= prefetchers


def native_threads() -> int:
    """Threads of this process that a native run started for itself."""
    return sum(n.startswith("fastindex-") and not n.startswith(SHARED) for n in names())


def test_an_abandoned_iter_instances_stops_the_run(archive, monkeypatch):
    import fastindex
    from fastindex import api

    # One file a batch: the run cannot be over (its queues full) when the
    # first record arrives.
    options = api._options
    monkeypatch.setattr(api, "_options", lambda *a: dataclasses.replace(options(*a), batch_size=1))
    assert native_threads() == 0
    it = fastindex.iter_instances([archive], jobs=2)
    first = next(it)
    assert first["file_path"].endswith(".dcm")
    assert native_threads() > 0
    it.close()
    assert native_threads() == 0
    # Read to the end, the same: every record, then nothing left running.
    assert sum(1 for _ in fastindex.iter_instances([archive], jobs=2)) == 1000
    assert native_threads() == 0


def test_a_list_of_files_is_read_and_nothing_else(archive):
    import anyio
    from fastindex.pipeline import Options, run

    chosen = sorted(archive.glob("d3/*.dcm"))[:7] + [archive / "d4" / "missing.dcm"]
    seen: list[str] = []
    problems: list[tuple[str, str]] = []
    summary, aggregator = anyio.run(
        lambda: run(
            [],
            Options(jobs=2),
            on_records=lambda ds: seen.extend(d["file_path"] for d in ds),
            on_problem=lambda display, reason, message: problems.append((display, reason)),
            files=[(str(p), f"x/{p.name}") for p in chosen],
        )
    )
    assert sorted(seen) == sorted(f"x/{p.name}" for p in chosen[:7])
    assert problems == [("x/missing.dcm", "unreadable")]
    assert summary.indexed == 7 and summary.seen == 8
    # The same bytes seven times: one instance, six duplicates.
    assert [r["instances"] for r in aggregator.dicts()] == [1]
    assert summary.duplicates == 6
