"""The index from a real Dask cluster (a LocalCluster of worker processes,
its scheduler on TCP on 127.0.0.1) against a local run of the same PATHs:
the known-answer archive and the real-file corpus, every format and both
levels, whatever the shard split, the order shards finish in, and a worker
killed mid-run.

What "the same" means (README, Dask): subseries outputs, the summary's
counts are equal byte for byte; per-file records and the --errors list
come out of a local run in completion order and out of the cluster in
listing order, so their lines are compared sorted, and the cluster's order
is held to be the same whatever the split and the completion order."""

from __future__ import annotations

import gc
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fastindex.dask as fdask
import pyarrow.parquet as pq
import pytest
from archive import make_archive
from corpora import CHARSET_FILES, PYDICOM_FILES, VENDORED, copy_corpora
from distributed import Client, LocalCluster
from fastindex.pipeline import Options
from fastindex.write import dumps
from hostile import declined

EXCLUDE = ["*.md"]
TAGS = "Rows,ImageType"
#: the known answers of each `tree`
EXPECTED: dict = {}


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    """The folder the workers' test hook reads (see dask._test_hook); set
    before the workers start, so that every worker process, a restarted
    one too, has it."""
    folder = tmp_path_factory.mktemp("control")
    old = os.environ.get("FASTINDEX_TEST_DASK")
    os.environ["FASTINDEX_TEST_DASK"] = str(folder)
    yield folder
    if old is None:
        del os.environ["FASTINDEX_TEST_DASK"]
    else:
        os.environ["FASTINDEX_TEST_DASK"] = old


@pytest.fixture(scope="module")
def client(control):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as c:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        yield c


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """cwd for the runs: `archive/` holds the known-answer archive, the
    real-file corpus (pydicom's files, its charset files, tests/data),
    files only the pydicom fallback reads, and what the walk skips: a link not
    followed, a FIFO, excluded files."""
    base = tmp_path_factory.mktemp("dask")
    expected = make_archive(base / "archive" / "known")
    copy_corpora(base / "archive", pydicom=PYDICOM_FILES, charset=CHARSET_FILES, vendored=VENDORED)
    os.symlink("known", base / "archive" / "link")
    os.mkfifo(base / "archive" / "known" / "fifo")
    (base / "archive" / "skip.md").write_text("excluded\n")
    (base / "archive" / "declined").mkdir()
    for i in range(3):
        (base / "archive" / "declined" / f"{i}.dcm").write_bytes(declined(lambda w: None))
    EXPECTED[base] = expected
    return base


def cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastindex", *map(str, args)], cwd=cwd, capture_output=True)


def no_times(summary: bytes) -> dict:
    s = json.loads(summary)
    for k in ("seconds", "files_per_second"):
        s.pop(k)
    return s


@pytest.mark.parametrize("level", ["subseries", "instance"])
def test_cli_every_format_matches_a_local_run(client, tree, level):
    address = client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    common = ["archive", "--level", level, "--exclude", EXCLUDE[0], "--tags", TAGS, "-q"]
    for fmt in ("ndjson", "csv", "parquet"):
        out = {}
        for how, extra in (("local", []), ("dask", ["--dask", address, "--shard-files", 17])):
            files = [f"{how}.{fmt}", f"{how}.errors", f"{how}.summary"]
            proc = cli(*common, "--format", fmt, "-o", files[0], "--errors", files[1], "--summary", files[2], *extra, cwd=tree)
            assert proc.returncode == 0, proc.stderr.decode()
            out[how] = [(tree / f).read_bytes() for f in files]
            for f in files:
                (tree / f).unlink()
        (mine, errors, summary), (theirs, errors_dask, summary_dask) = out["local"], out["dask"]
        assert no_times(summary) == no_times(summary_dask)
        s = no_times(summary)
        assert s["reasons"]["symlink"] == 1 and s["reasons"]["not_regular"] == 1 and s["reasons"]["excluded"] == len(list((tree / "archive").rglob("*.md")))
        assert s["via_pydicom"] > 0 and s["duplicates"] > 0 and s["warnings"] > 0
        assert sorted(errors.splitlines()) == sorted(errors_dask.splitlines())
        if level == "subseries":
            assert mine == theirs, fmt
        elif fmt == "parquet":
            a, b = pq.read_table(io.BytesIO(mine)), pq.read_table(io.BytesIO(theirs))
            assert a.schema == b.schema
            assert a.sort_by("file_path").equals(b.sort_by("file_path"))
        else:
            header = 1 if fmt == "csv" else 0
            mine_lines, their_lines = mine.splitlines(), theirs.splitlines()
            assert mine_lines[:header] == their_lines[:header]
            assert sorted(mine_lines[header:]) == sorted(their_lines[header:])
            assert len(mine_lines) - header == s["indexed"]


def events(job: fdask.Run) -> tuple[list[bytes], list[tuple]]:
    """A run's per-file records (as written) and problems, in its order."""
    records, problems = [], []
    for kind, value in job.events():
        if kind == "records":
            records += [dumps(r) for r in value]
        elif kind == "problem":
            problems.append(value)
    return records, problems


def run(client, level: str, shard_files: int, paths=("archive",)) -> tuple[fdask.Run, list[bytes], list[tuple]]:
    """A cluster run: (the run, its output lines in its order, its problems)."""
    job = fdask.Run(client, list(paths), Options(exclude=EXCLUDE), records=level == "instance", shard_files=shard_files)
    records, problems = events(job)
    if level == "subseries":
        records = [dumps(r) for r in job.aggregator.dicts()]
    return job, records, problems


def local_run(level: str):
    """A local run's (summary, output lines, problems) over the same PATH."""
    import anyio
    from fastindex.pipeline import run as run_local

    records, problems = [], []
    summary, aggregator = anyio.run(
        lambda: run_local(["archive"], Options(exclude=EXCLUDE), on_records=(lambda ds: records.extend(map(dumps, ds))) if level == "instance" else None, on_problem=lambda *p: problems.append(p))
    )
    if level == "subseries":
        records = [dumps(r) for r in aggregator.dicts()]
    return summary, records, problems


def counts(summary) -> dict:
    d = summary.as_dict()
    d.pop("seconds"), d.pop("files_per_second")
    return d


@pytest.mark.parametrize("shard_files", [1, 5, 64, 100_000])
def test_any_split_gives_the_local_index(client, tree, shard_files, monkeypatch):
    """shard_files=1 puts every file in a shard of its own: the copies of a
    CT slice (duplicates) and each end of every RT reference are in
    different tasks, merged on different workers."""
    monkeypatch.chdir(tree)
    summary, records, problems = local_run("subseries")
    job, mine, my_problems = run(client, "subseries", shard_files)
    assert mine == records
    assert counts(job.summary) == counts(summary)
    assert sorted(my_problems) == sorted(problems)
    expected = EXPECTED[tree]
    known = [json.loads(r) for r in mine if json.loads(r)["file_path"].startswith("archive/known/")]
    assert known == expected.subseries_records(base=tree)
    listed = sum(1 for _ in Path("archive").rglob("*"))
    # Coarse shards: a task per shard_files entries, never one per file.
    assert job.tasks["shard"] <= math.ceil(listed / shard_files)
    assert job.tasks["merge"] == math.ceil(job.tasks["shard"] / fdask.FAN_IN)


def test_instances_and_problems_come_in_listing_order(client, tree, monkeypatch):
    """Per-file records: the same records as a local run (its order is the
    order files complete in); the cluster's order is the listing's, the
    same for every split."""
    monkeypatch.chdir(tree)
    summary, records, problems = local_run("instance")
    outputs = []
    for shard_files in (3, 50):
        job, mine, my_problems = run(client, "instance", shard_files)
        assert sorted(mine) == sorted(records)
        assert sorted(my_problems) == sorted(problems)
        assert counts(job.summary) == counts(summary)
        outputs.append((mine, my_problems))
    assert outputs[0] == outputs[1]
    listing = [display for page in fdask.pages(["archive"], Options(exclude=EXCLUDE), 1000) for _, display, _, _ in page]
    order = {d: i for i, d in enumerate(listing)}
    assert [order[json.loads(r)["file_path"]] for r in outputs[0][0]] == sorted(order[json.loads(r)["file_path"]] for r in outputs[0][0])
    assert [order[p[0]] for p in outputs[0][1]] == sorted(order[p[0]] for p in outputs[0][1])


def test_shards_finishing_out_of_order(client, tree, control, monkeypatch):
    monkeypatch.chdir(tree)
    _, plain, plain_problems = run(client, "instance", 9)
    (control / "shuffle").write_text("7")
    finished: list[int] = []
    try:
        job = fdask.Run(client, ["archive"], Options(exclude=EXCLUDE), records=True, shard_files=9)
        records, problems = events(job)
        finished = [int(n) for n in (control / "finished").read_text().split()]
    finally:
        (control / "shuffle").unlink()
        (control / "finished").unlink(missing_ok=True)
    assert sorted(finished) == list(range(len(finished))) and finished != sorted(finished)
    assert (records, problems) == (plain, plain_problems)
    _, subseries, _ = run(client, "subseries", 9)
    assert [dumps(r) for r in job.aggregator.dicts()] == subseries


def test_a_worker_killed_mid_run_changes_nothing(client, tree, control, monkeypatch):
    monkeypatch.chdir(tree)
    _, plain, plain_problems = run(client, "instance", 20)
    (control / "hold").write_text("3")
    got: list = []
    thread = threading.Thread(target=lambda: got.append(run(client, "instance", 20)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not (control / "held").exists() or not (control / "held").read_text():
            assert time.monotonic() < deadline, "the held shard never started"
            time.sleep(0.05)
        pid = int((control / "held").read_text())
        assert pid in client.run(os.getpid).values() and pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        thread.join(120)
        assert not thread.is_alive()
    finally:
        (control / "hold").unlink()
        (control / "held").unlink(missing_ok=True)
    job, records, problems = got[0]
    assert (records, problems) == (plain, plain_problems)
    client.wait_for_workers(2, timeout=60)
    assert pid not in client.run(os.getpid).values()


def test_a_path_no_worker_sees_fails_the_run(client, tmp_path):
    """The listing (here an explicit page, as an object-store listing or
    the state would give) names files under a folder that is gone by the
    time the workers look: NotShared, not a run of unreadable files."""
    folder = tmp_path / "private"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(b"x")
    job = fdask.Run(client, [folder], Options(), records=False, listing=[[(str(folder / "a.dcm"), "private/a.dcm", None, None)]])
    shutil.rmtree(folder)
    with pytest.raises(fdask.NotShared, match="cannot see .*private.*file system every worker"):
        for _ in job.events():
            pass


def test_cli_usage_and_an_unreachable_scheduler(tree):
    proc = cli("archive", "--shard-files", "10", cwd=tree)
    assert proc.returncode == 2 and b"--shard-files" in proc.stderr
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s")
    proc = subprocess.run([sys.executable, "-m", "fastindex", "--dask", "tcp://127.0.0.1:9", "archive", "-o", "out.ndjson"], cwd=tree, capture_output=True, env=env)
    assert proc.returncode == 1 and proc.stderr.startswith(b"fastindex: --dask tcp://127.0.0.1:9: "), proc.stderr
    assert not (tree / "out.ndjson").exists()


def test_the_api(client, tree, monkeypatch):
    """fastindex.dask.index and iter_instances give fastindex.index's and
    iter_instances' records; an address makes a client of its own; closing
    the iterator early leaves no task of the run on the cluster."""
    import fastindex

    monkeypatch.chdir(tree)
    tags = TAGS.split(",")
    mine_index = fdask.index(["archive"], client, tags=tags, shard_files=40)
    local = fastindex.index(["archive"], tags=tags)
    assert mine_index == local
    # The same summary (but its time) and the same problems (sorted: the
    # local run's come in the order files complete).
    assert {**mine_index.summary.as_dict(), "seconds": 0, "files_per_second": 0} == {**local.summary.as_dict(), "seconds": 0, "files_per_second": 0}
    assert sorted(mine_index.problems) == sorted(local.problems) and local.problems
    key = lambda r: r["file_path"]  # noqa: E731
    mine = list(fdask.iter_instances(["archive"], client.scheduler.address, relative_to="archive", shard_files=40))
    assert sorted(mine, key=key) == sorted(fastindex.iter_instances(["archive"], relative_to="archive"), key=key)
    with pytest.raises(FileNotFoundError):
        fdask.iter_instances(["missing"], client)
    it = fdask.iter_instances(["archive"], client, shard_files=5)
    next(it)
    it.close()

    def ours(dask_scheduler) -> list:
        return [(k, ts.state, [str(w) for w in ts.who_wants]) for k, ts in dask_scheduler.tasks.items() if str(k).startswith("fastindex-")]

    # Cancelled tasks leave the scheduler once it has heard back from the
    # workers: quickly, but a loaded machine can take a while.
    deadline = time.monotonic() + 90
    gc.collect()  # distributed's futures can sit in reference cycles until collected
    while client.run_on_scheduler(ours):
        assert time.monotonic() < deadline, client.run_on_scheduler(ours)
        time.sleep(0.1)


def test_cli_terminated_mid_run_leaves_no_output(client, tree, control):
    """SIGTERM while a shard runs: exit 143 at once, no output committed."""
    (control / "hold").write_text("0")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "fastindex", "--dask", client.scheduler.address, "archive", "-o", "out.ndjson", "-q"], cwd=tree, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not (control / "held").exists() or not (control / "held").read_text():
            assert time.monotonic() < deadline, "the held shard never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143, proc.stderr.read()
        assert not (tree / "out.ndjson").exists() and not list(tree.glob(".fastindex-*"))
    finally:
        (control / "hold").unlink()
        held = control / "held"
        if held.exists() and held.read_text():
            os.kill(int(held.read_text()), signal.SIGKILL)  # the worker still sleeping in the held shard
        held.unlink(missing_ok=True)
        client.wait_for_workers(2, timeout=60)


def test_state_stays_on_the_client(client, tree, tmp_path):
    """--dask with --state: the workers read only the new and changed files,
    the client keeps the state; the outputs are a local --state run's, at
    both levels, before and after the archive changes."""
    work = tmp_path / "work"
    shutil.copytree(tree / "archive", work / "archive", symlinks=True, ignore=shutil.ignore_patterns("fifo"))
    address = client.scheduler.address

    def both(level: str) -> tuple[bytes, bytes, dict]:
        out = {}
        for how, extra in (("local", []), ("dask", ["--dask", address, "--shard-files", 7])):
            proc = cli("archive", "--level", level, "--state", f"{how}.state", "-o", f"{how}.out", "--errors", f"{how}.err", "--summary", f"{how}.sum", "-q", *extra, cwd=work)
            assert proc.returncode == 0, proc.stderr.decode()
            out[how] = [(work / f"{how}.{x}").read_bytes() for x in ("out", "err", "sum")]
        (a, ea, sa), (b, eb, sb) = out["local"], out["dask"]
        assert a == b and ea == eb, level
        sa_, sb_ = no_times(sa), no_times(sb)
        assert sa_ == sb_
        return a, b, sb_

    first = both("subseries")[2]
    # Everything read the first time, but the link the walk does not follow.
    assert first["state"]["read"] == first["seen"] - first["reasons"]["symlink"]
    # Change the archive: one file changed, one removed, one added.
    files = sorted(p for p in (work / "archive" / "known").rglob("*") if p.is_file() and not p.is_symlink())
    files[0].write_bytes(files[0].read_bytes() + b"\0\0")
    files[1].unlink()
    shutil.copy(files[2], work / "archive" / "known" / "added.dcm")
    second = both("instance")[2]
    assert second["state"] == {"read": 2, "unchanged": first["state"]["read"] - 2, "added": 1, "changed": 1, "removed": 1}
