"""Object-store URLs with --dask (issue 14): the client lists them, the
workers (processes of a LocalCluster on 127.0.0.1) read them by ranged GETs
from moto's S3 server (tests/support/s3.py), against a local run of the
same PATHs: subseries outputs and summary counts equal byte for byte,
per-file records and --errors equal once sorted (README, Dask).

The workers reach the server as a real cluster's would: through the
environment they were started with (AWS_* with dummy keys and the server's
endpoint), set before the cluster starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fastindex
import fastindex.dask as fdask
import pytest
from archive import make_archive
from distributed import Client, LocalCluster
from hostile import declined
from support import s3

BUCKET = "archive"
URL = f"s3://{BUCKET}/data"

server = s3.server  # the fixture
#: a prefix with no object: listed as `unreadable`, with its message
MISSING = f"s3://{BUCKET}/nothing-here"
#: a URL inside another one given: listed once, as part of it
INSIDE = f"{URL}/known"


@pytest.fixture(scope="module")
def environment(server):
    """os.environ reaching the server, for this process, the commands it
    starts and the cluster's workers; restored after."""
    old = dict(os.environ)
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[k]
    os.environ.update(server.env())
    yield
    os.environ.clear()
    os.environ.update(old)


@pytest.fixture(scope="module")
def client(environment):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as c:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        yield c


@pytest.fixture(scope="module")
def tree(server, tmp_path_factory) -> Path:
    """cwd for the runs: the known-answer archive, with a file only the
    pydicom fallback reads (a worker downloads it for pydicom), uploaded to
    s3://archive/data/; `local/` a second copy on disk, for mixed runs."""
    base = tmp_path_factory.mktemp("dask-objects")
    make_archive(base / "up" / "known")
    (base / "up" / "declined.dcm").write_bytes(declined(lambda w: None))
    server.upload(BUCKET, base / "up", "data")
    make_archive(base / "local")
    return base


def cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastindex", *map(str, args)], cwd=cwd, capture_output=True, timeout=300)


def no_times(summary: bytes) -> dict:
    s = json.loads(summary)
    for k in ("seconds", "files_per_second"):
        s.pop(k)
    return s


def outputs(paths: list[str], extra: list, level: str, cwd: Path) -> tuple[bytes, bytes, bytes]:
    """(output, --errors, --summary) of one run of the command."""
    files = [cwd / "out.ndjson", cwd / "errors.ndjson", cwd / "summary.json"]
    proc = cli(*paths, "--level", level, "-o", files[0], "--errors", files[1], "--summary", files[2], "-q", *extra, cwd=cwd)
    assert proc.returncode == 0, proc.stderr.decode()
    out = tuple(f.read_bytes() for f in files)
    for f in files:
        f.unlink()
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("paths", [[URL], ["local", INSIDE, URL, MISSING]], ids=["url", "mixed"])
@pytest.mark.parametrize("level", ["subseries", "instance"])
def test_cli_urls_on_a_cluster_match_a_local_run(client, tree, paths, level):
    address = client.scheduler.address
    mine, errors, summary = outputs(paths, [], level, tree)
    # Shards of 7 entries: objects, files and the unlistable URL share shards.
    theirs, errors_dask, summary_dask = outputs(paths, ["--dask", address, "--shard-files", 7], level, tree)
    s = no_times(summary)
    assert s == no_times(summary_dask)
    assert s["indexed"] > 10 and s["via_pydicom"] == 1
    records = [json.loads(line) for line in theirs.splitlines()]
    assert any(r["file_path"].startswith(URL + "/") for r in records)
    if "local" in paths:
        assert any(r["file_path"].startswith("local/") for r in records)
        assert s["reasons"]["unreadable"] == 1
        problems = [json.loads(line) for line in errors_dask.splitlines()]
        assert [(p["reason"], p["message"]) for p in problems if p["file_path"] == MISSING] == [("unreadable", "no object at or under this URL")]
    assert sorted(errors.splitlines()) == sorted(errors_dask.splitlines())
    if level == "subseries":
        assert mine == theirs
    else:
        assert sorted(mine.splitlines()) == sorted(theirs.splitlines())
        # INSIDE is read once, as part of URL.
        assert len({r["file_path"] for r in records}) == len(records)
        assert len(mine.splitlines()) == s["indexed"]


def test_api_takes_urls_beside_local_paths(client, tree, monkeypatch):
    monkeypatch.chdir(tree)
    paths = ["local", URL, MISSING]
    local = fastindex.index(paths)
    mine = fdask.index(paths, client=client, shard_files=5)
    assert list(mine) == list(local)
    assert mine.summary.indexed == local.summary.indexed and mine.summary.reasons == local.summary.reasons
    assert sorted(mine.problems) == sorted(local.problems)
    # Per-file records in listing order: the local walk, then the objects.
    instances = list(fdask.iter_instances(paths, client=client, shard_files=5))
    assert sorted(instances, key=lambda r: r["file_path"]) == sorted(fastindex.iter_instances(paths), key=lambda r: r["file_path"])
    where = [r["file_path"].startswith(URL + "/") for r in instances]
    assert where == sorted(where) and any(where) and not all(where)
