"""--state with object-store URLs, against moto's S3 server on 127.0.0.1
(tests/support/s3.py): an object's change key is its (ETag, size,
last-modified) from the listing, so a re-run reads nothing unchanged (no
GET of any object), and after objects are changed, added and deleted in
the bucket the output is a run's from scratch, byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from archive import make_archive
from corpora import VENDORED
from support.s3 import Proxy, Server

BUCKET = "stated"
LEVELS = ("subseries", "instance")
CT = VENDORED / "highdicom" / "ct_image.dcm"
OTHER = VENDORED / "dicom-parser-rs" / "CT1_UNC.explicit_little_endian.dcm"


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def bucket(server, tmp_path) -> str:
    """The known-answer archive uploaded to a bucket of this test's; its URL."""
    name = f"{BUCKET}-{tmp_path.name.lower().replace('_', '-')}"[:63].rstrip("-")
    make_archive(tmp_path / "src" / "archive")
    server.upload(name, tmp_path / "src", "data")
    return f"s3://{name}/data"


def fastindex(args: list, env: dict, cwd: Path, code: int = 0) -> tuple[bytes, bytes, dict]:
    """(stdout, --errors, --summary) of one run."""
    errors, summary = cwd / "errors.ndjson", cwd / "summary.json"
    for p in (errors, summary):
        p.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "fastindex", *map(str, args), "--errors", errors, "--summary", summary], cwd=cwd, env=env, capture_output=True, timeout=300)
    assert proc.returncode == code, proc.stderr.decode()
    return proc.stdout, errors.read_bytes(), json.loads(summary.read_text())


def runs(args: list, env: dict, cwd: Path, state: Path | None) -> dict[str, tuple[bytes, bytes, dict]]:
    """One run per level; with `state`, each from a copy of it (each sees
    the same start); without, plain runs (no state)."""
    out = {}
    for level in LEVELS:
        extra: list = ["--level", level]
        if state is not None:
            copy = cwd / f"{state.name}.{level}.copy"
            copy.unlink(missing_ok=True)
            if state.exists():
                shutil.copyfile(state, copy)
            extra += ["--state", copy]
        out[level] = fastindex([*args, *extra], env, cwd)
    return out


def same_as_from_scratch(got: dict, args: list, env: dict, cwd: Path, tag: str) -> None:
    """`got` (runs against a state) equals a fresh state's runs byte for
    byte, and a plain run's (at the instance level, a plain run's order is
    the listing's: compared sorted)."""
    fresh = runs(args, env, cwd, cwd / f"fresh-{tag}.db")
    plain = runs(args, env, cwd, None)
    for level in LEVELS:
        assert got[level][0] == fresh[level][0], level
        assert got[level][1] == fresh[level][1], level
        counts = ("seen", "indexed", "skipped", "not_dicom", "errors", "via_pydicom", "duplicates", "reasons")
        assert {k: got[level][2][k] for k in counts} == {k: plain[level][2][k] for k in counts}, level
        assert sorted(got[level][1].splitlines()) == sorted(plain[level][1].splitlines()), level
    assert got["subseries"][0] == plain["subseries"][0]
    assert sorted(got["instance"][0].splitlines()) == sorted(plain["instance"][0].splitlines())


def test_a_rerun_reads_no_object_and_changes_are_read_as_from_scratch(server, bucket, tmp_path):
    s3 = server.client()
    name = bucket.removeprefix("s3://").split("/")[0]
    proxy = Proxy(server.endpoint)
    try:
        env = server.env(proxy.endpoint)
        state = tmp_path / "state.db"
        first = fastindex([bucket, "--state", state], env, tmp_path)
        assert first[2]["state"]["read"] == first[2]["seen"] > 20
        assert first[2]["state"]["added"] == first[2]["seen"]
        # Unchanged: listed, nothing read, the same output at both levels.
        proxy.log.clear()
        again = runs([bucket], env, tmp_path, state)
        assert proxy.gets(f"/{name}/") == []
        assert [e for e in proxy.log if "list-type" in e.path]  # listed, though
        for level in LEVELS:
            assert again[level][2]["state"] == {"read": 0, "unchanged": first[2]["seen"], "added": 0, "changed": 0, "removed": 0}
        assert again["subseries"][0] == first[0]
        same_as_from_scratch(again, [bucket], env, tmp_path, "unchanged")

        # Changed (another file under a key), added, deleted.
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"] if o["Key"].endswith(".dcm"))
        assert len(keys) > 3
        s3.put_object(Bucket=name, Key=keys[0], Body=CT.read_bytes())
        s3.put_object(Bucket=name, Key="data/new/one.dcm", Body=OTHER.read_bytes())
        s3.delete_object(Bucket=name, Key=keys[1])
        proxy.log.clear()
        shutil.copyfile(state, tmp_path / "before.db")
        after = runs([bucket], env, tmp_path, state)
        assert sorted({g.path for g in proxy.gets(f"/{name}/")}) == sorted({f"/{name}/{keys[0]}", f"/{name}/data/new/one.dcm"})
        for level in LEVELS:
            assert after[level][2]["state"] == {"read": 2, "unchanged": first[2]["seen"] - 2, "added": 1, "changed": 1, "removed": 1}
        assert after["subseries"][0] != first[0]
        same_as_from_scratch(after, [bucket], env, tmp_path, "changed")

        # The same object again, with the same bytes: a new ETag or time
        # is a change (read again), the output the same.
        state_now = tmp_path / "now.db"
        shutil.copyfile(tmp_path / "before.db", state_now)
        fastindex([bucket, "--state", state_now], env, tmp_path)
        s3.put_object(Bucket=name, Key=keys[2], Body=s3.get_object(Bucket=name, Key=keys[2])["Body"].read())
        out, _, summary = fastindex([bucket, "--state", state_now], env, tmp_path)
        assert summary["state"]["read"] == 1 and summary["state"]["changed"] == 1
        assert out == after["subseries"][0]
    finally:
        proxy.close()


def test_local_paths_and_urls_in_one_state(server, bucket, tmp_path):
    env = server.env()
    local = tmp_path / "local"
    make_archive(local)
    args = ["local", bucket]
    state = tmp_path / "state.db"
    first = fastindex([*args, "--state", state], env, tmp_path)
    again = runs(args, env, tmp_path, state)
    for level in LEVELS:
        assert again[level][2]["state"]["read"] == 0 and again[level][2]["state"]["unchanged"] == first[2]["seen"]
    same_as_from_scratch(again, args, env, tmp_path, "mixed")
    # A local file and an object deleted, one of each added.
    s3 = server.client()
    name = bucket.removeprefix("s3://").split("/")[0]
    key = next(o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"] if o["Key"].endswith(".dcm"))
    s3.delete_object(Bucket=name, Key=key)
    s3.put_object(Bucket=name, Key="data/added.dcm", Body=CT.read_bytes())
    gone = next(p for p in sorted(local.rglob("*.dcm")))
    gone.unlink()
    shutil.copyfile(OTHER, local / "added.dcm")
    after = runs(args, env, tmp_path, state)
    for level in LEVELS:
        assert after[level][2]["state"] == {"read": 2, "unchanged": first[2]["seen"] - 2, "added": 2, "changed": 0, "removed": 2}
    same_as_from_scratch(after, args, env, tmp_path, "mixed-changed")
    # Without the URL, its objects leave the index (as files of a PATH no
    # longer given do).
    only_local = fastindex(["local", "--state", state], env, tmp_path)
    assert only_local[0] == fastindex(["local"], env, tmp_path)[0]
    assert b"s3://" not in only_local[0]


def test_a_url_that_cannot_be_listed_keeps_its_objects_and_says_so(server, bucket, tmp_path):
    name = bucket.removeprefix("s3://").split("/")[0]
    failing = {"on": False}

    def fault(method: str, path: str, attempt: int) -> str:
        return "error" if failing["on"] and "list-type" in path else "pass"

    proxy = Proxy(server.endpoint, fault)
    try:
        env = server.env(proxy.endpoint)
        state = tmp_path / "state.db"
        first_out, first_errors, first = fastindex([bucket, "--state", state, "--level", "instance"], env, tmp_path)
        failing["on"] = True
        out, errors, summary = fastindex([bucket, "--state", state, "--level", "instance", "--retries", "1"], env, tmp_path)
        # Nothing removed, nothing read: the records as they were, and the
        # URL listed unreadable with the server's word.
        assert summary["state"]["removed"] == 0 and summary["state"]["read"] == 0
        assert out == first_out
        problems = [json.loads(line) for line in errors.splitlines()]
        [url_row] = [p for p in problems if p["file_path"] == bucket]
        assert url_row["reason"] == "unreadable" and "injected by the test proxy" in url_row["message"]
        assert [p for p in problems if p["file_path"] != bucket] == [json.loads(line) for line in first_errors.splitlines()]
        assert summary["seen"] == first["seen"] + 1
        # Listed again: as before, the URL's row gone.
        failing["on"] = False
        out, errors, summary = fastindex([bucket, "--state", state, "--level", "instance"], env, tmp_path)
        assert (out, errors) == (first_out, first_errors) and summary["state"]["read"] == 0
    finally:
        proxy.close()
    # A URL that now names nothing is listed, empty: its objects leave.
    s3 = server.client()
    for o in s3.list_objects_v2(Bucket=name)["Contents"]:
        s3.delete_object(Bucket=name, Key=o["Key"])
    out, errors, summary = fastindex([bucket, "--state", state], server.env(), tmp_path)
    assert out == b"" and summary["state"]["removed"] == first["seen"]
    assert [json.loads(line)["file_path"] for line in errors.splitlines()] == [bucket]
    assert errors == fastindex([bucket], server.env(), tmp_path)[1]


def test_urls_refused_with_dask_and_state_together(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastindex", "s3://b/x", "--dask", "tcp://127.0.0.1:1", "--state", str(tmp_path / "s.db")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "object-store URLs do not go with --dask and --state together yet" in proc.stderr
    assert not (tmp_path / "s.db").exists()
