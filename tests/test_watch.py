"""The watcher, for real: a writer drops files in pieces (a cut inside the
header first, then the rest; some written under a temporary name and
renamed into place) while `fastindex.watch` runs in this process, or
`fastindex watch` in another; every file gets exactly one `instance`
event, a restart emits nothing twice and catches up, and the state ends
as a batch run's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from archive import make_archive

FAST = dict(quiet=1.0, settle=0.3, broken_wait=4.0)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    """Files of the known-answer archive that give a record."""
    import fastindex

    base = tmp_path_factory.mktemp("watch-src")
    make_archive(base / "archive")
    return sorted(Path(r["file_path"]) for r in fastindex.iter_instances([base / "archive"]))


def drop(sources: list[Path], folder: Path, prefix: str = "") -> list[str]:
    """Write each source into `folder` in pieces: a cut inside the header,
    a pause longer than the settle time, then the rest; every third under
    a temporary name renamed into place. Returns the final paths."""
    out = []
    for i, src in enumerate(sources):
        data = src.read_bytes()
        final = folder / f"{prefix}{i:03d}-{src.name}"
        target = final.with_suffix(".tmp") if i % 3 == 0 else final
        with open(target, "wb") as f:
            f.write(data[:200])
            f.flush()
            if i % 4 == 0:
                time.sleep(FAST["settle"] * 2)  # read while cut: truncated, and retried
            f.write(data[200:])
        if target != final:
            os.rename(target, final)
        out.append(str(final))
    return out


async def collect(folder: Path, state: Path, until, events: list[dict], timeout: float = 60) -> None:
    import fastindex

    stop = anyio.Event()
    with anyio.fail_after(timeout):
        async for e in fastindex.watch([folder], state=str(state), stop=stop, **FAST):
            events.append(e)
            if until(events):
                stop.set()


def table(db: Path) -> tuple[list, bytes]:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT file_path, dev, ino, size, mtime_ns, status, record FROM files ORDER BY file_path").fetchall()
    agg = con.execute("SELECT data FROM aggregate").fetchone()[0]
    con.close()
    return rows, agg


def test_drop_folder_restart_and_batch_equality(tmp_path, sources):
    folder = tmp_path / "drop"
    folder.mkdir()
    state = tmp_path / "w.db"
    events: list[dict] = []
    first, later = sources[: len(sources) // 2], sources[len(sources) // 2 :]
    written: list[str] = []

    def instances(evs):
        return [e["record"]["file_path"] for e in evs if e["event"] == "instance"]

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, folder, state, lambda evs: len(instances(evs)) >= len(first) and any(e["event"] == "series_stable" for e in evs), events)
            await anyio.sleep(0.5)
            written.extend(await anyio.to_thread.run_sync(drop, first, folder))

    anyio.run(main)
    got = instances(events)
    assert sorted(got) == sorted(written)  # each file once, never its .tmp name
    assert not [e for e in events if e["event"] == "not_indexed"]
    assert all(e["time"].endswith("Z") for e in events)
    # While down: more files come, one goes.
    gone = written[0]
    os.unlink(gone)
    written2 = drop(later, folder, prefix="b")
    events2: list[dict] = []
    anyio.run(collect, folder, state, lambda evs: len(instances(evs)) >= len(later) and any(e["event"] == "removed" for e in evs), events2)
    assert sorted(instances(events2)) == sorted(written2)  # nothing emitted twice
    assert [e["file_path"] for e in events2 if e["event"] == "removed"] == [gone]
    # The watcher's state is a batch run's.
    batch = tmp_path / "batch.db"
    r = subprocess.run([sys.executable, "-m", "fastindex", str(folder), "--state", str(batch), "-q"], capture_output=True)
    assert r.returncode == 0, r.stderr
    w_rows, w_agg = table(state)
    b_rows, b_agg = table(batch)
    assert w_rows == b_rows and w_agg == b_agg


def test_a_file_that_stays_broken_is_reported_once(tmp_path, sources):
    folder = tmp_path / "drop"
    folder.mkdir()
    ct = next(s for s in sources if s.name.startswith("slice"))
    (folder / "cut.dcm").write_bytes(ct.read_bytes()[:300])
    events: list[dict] = []
    anyio.run(collect, folder, tmp_path / "w.db", lambda evs: any(e["event"] == "not_indexed" for e in evs), events)
    bad = [e for e in events if e["event"] == "not_indexed"]
    assert [(e["file_path"], e["reason"]) for e in bad] == [(str(folder / "cut.dcm"), "truncated")]
    assert not [e for e in events if e["event"] == "instance"]


def test_the_command_writes_ndjson_events_and_stops_on_sigterm(tmp_path, sources):
    folder = tmp_path / "drop"
    folder.mkdir()
    shutil.copyfile(sources[0], folder / "before.dcm")  # there before the watcher: caught up
    p = subprocess.Popen(
        [sys.executable, "-m", "fastindex", "watch", str(folder), "--state", str(tmp_path / "c.db"), "--settle", "0.3", "--quiet-period", "1", "--poll"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)
        shutil.copyfile(sources[1], folder / "after.dcm")
        lines: list[dict] = []
        deadline = time.time() + 30
        while time.time() < deadline and not any(e["event"] == "series_stable" for e in lines[1:]) and len([e for e in lines if e["event"] == "instance"]) < 2:
            line = p.stdout.readline()  # type: ignore[union-attr]
            if line:
                lines.append(json.loads(line))
        while time.time() < deadline and len([e for e in lines if e["event"] == "instance"]) < 2:
            lines.append(json.loads(p.stdout.readline()))  # type: ignore[union-attr]
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    paths = sorted(e["record"]["file_path"] for e in lines if e["event"] == "instance")
    assert paths == [str(folder / "after.dcm"), str(folder / "before.dcm")]
