"""Archives in object stores, against a real S3 server: moto's, started on
127.0.0.1 by these tests (tests/support/s3.py), with the known-answer
archive and the real-file corpora uploaded to it. An object store must
give the records a local disk gives (all fields but file_path and folder,
which are URLs), reading headers by ranged GETs, through faults, with
every listed object indexed or listed with its reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest
from archive import make_archive
from corpora import CHARSET_FILES, PYDICOM_FILES, VENDORED, copy_corpora
from hostile import declined
from support import s3
from support.s3 import Proxy

BUCKET = "archive"
URL = f"s3://{BUCKET}/data"

server = s3.server  # the fixture


@pytest.fixture(scope="module")
def base(server, tmp_path_factory) -> Path:
    """The archive and the corpora on disk, and uploaded to s3://archive/data/."""
    base = tmp_path_factory.mktemp("objects")
    make_archive(base / "archive")
    copy_corpora(base / "corpus", pydicom=PYDICOM_FILES, charsets=CHARSET_FILES, vendored=VENDORED)
    # One the fast path declines: pydicom reads it, from a download.
    (base / "archive" / "declined.dcm").write_bytes(declined(lambda w: None))
    server.upload(BUCKET, base, "data")
    return base


def fastindex(args: list[str], env: dict, cwd: Path, tmp: Path, check: bool = True) -> tuple[list[dict], list[dict], dict, subprocess.CompletedProcess]:
    """Run the command: (records, --errors lines, --summary, process)."""
    errors, summary = tmp / "errors.ndjson", tmp / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastindex", *args, "--errors", str(errors), "--summary", str(summary)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    problems = [json.loads(line) for line in errors.read_text().splitlines()] if errors.exists() else []
    return records, problems, json.loads(summary.read_text()), proc


def local_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def relative(items: list[dict], prefix: str) -> list[dict]:
    """file_path and folder of records from `prefix...` made relative."""
    out = []
    for d in items:
        d = dict(d)
        for k in ("file_path", "folder"):
            if k in d:
                assert d[k].startswith(prefix), d[k]
                d[k] = d[k][len(prefix) :]
        out.append(d)
    return out


@pytest.fixture(scope="module")
def local(base, tmp_path_factory):
    """The same files indexed from the local disk, both levels."""
    tmp = tmp_path_factory.mktemp("local")
    sub = fastindex(["archive", "corpus"], local_env(), base, tmp)
    inst = fastindex(["archive", "corpus", "--level", "instance"], local_env(), base, tmp)
    return sub, inst


def by_path(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda d: d["file_path"])


def test_s3_gives_the_records_a_local_disk_gives(server, base, local, tmp_path):
    (records, problems, summary, _), (inst_local, *_) = local[0], local[1]
    s3_records, s3_problems, s3_summary, _ = fastindex([URL], server.env(), base, tmp_path)
    assert len(records) > 50
    assert relative(s3_records, URL + "/") == records
    # Every file that gave no record, with the same reason and message.
    assert sorted(relative(s3_problems, URL + "/"), key=str) == sorted(problems, key=str)
    for k in ("seen", "indexed", "skipped", "not_dicom", "errors", "via_pydicom", "duplicates", "reasons"):
        assert s3_summary[k] == summary[k], k
    # What the fast path declines reached pydicom, from a download.
    assert s3_summary["via_pydicom"] > 0
    s3_inst, *_ = fastindex([URL, "--level", "instance"], server.env(), base, tmp_path)
    assert by_path(relative(s3_inst, URL + "/")) == by_path(inst_local)
    assert all(d["folder"] == d["file_path"].rsplit("/", 1)[0] for d in s3_inst)


def big_files(root: Path, n: int = 4, pixels: int = 4 << 20) -> list[Path]:
    """`n` CT files of a few MiB each, most of it pixel data."""
    import pydicom

    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        ds = pydicom.dcmread(VENDORED / "highdicom" / "ct_image.dcm")
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1024, pixels // 2048, 16, 16, 15
        ds.PixelData = bytes(pixels)
        p = root / f"{i}.dcm"
        ds.save_as(p, enforce_file_format=True)
        out.append(p)
    return out


def test_headers_are_read_by_ranged_gets_not_whole_objects(server, base, tmp_path):
    big = big_files(tmp_path / "big")
    server.upload(BUCKET, tmp_path / "big", "big")
    want, *_ = fastindex(["big"], local_env(), tmp_path, tmp_path)
    proxy = Proxy(server.endpoint)
    try:
        env = server.env(proxy.endpoint)
        got, _, summary, _ = fastindex([f"s3://{BUCKET}/big"], env, tmp_path, tmp_path)
        assert relative(got, f"s3://{BUCKET}/") == want and summary["indexed"] == len(big)
        # One GET per object, of the first 64 KiB: never the pixel data.
        gets = proxy.gets(f"/{BUCKET}/big/")
        assert sorted(g.path for g in gets) == sorted(f"/{BUCKET}/big/{p.name}" for p in big)
        assert {g.range for g in gets} == {"bytes=0-65535"}
        assert sum(g.sent for g in gets) == 65536 * len(big) < sum(p.stat().st_size for p in big) / 50

        # A first range shorter than the header: more ranges, each going
        # on where the last stopped, and the same records.
        proxy.log.clear()
        got, *_ = fastindex([f"s3://{BUCKET}/big", "--first-bytes", "300"], env, tmp_path, tmp_path)
        assert relative(got, f"s3://{BUCKET}/") == want
        for p in big:
            ranges = [g.range for g in proxy.gets(f"/{BUCKET}/big/{p.name}")]
            spans = [tuple(map(int, r.removeprefix("bytes=").split("-"))) for r in ranges]
            assert len(spans) > 1 and spans[0] == (0, 299), ranges
            assert all(b[0] == a[1] + 1 for a, b in zip(spans, spans[1:])), ranges
            assert spans[-1][1] < 64 * 1024, ranges

        # The known-answer archive: small files, fetched in one GET each
        # (the declined file's download for pydicom asks for a range too).
        proxy.log.clear()
        _, _, summary, _ = fastindex([f"{URL}/archive"], env, base, tmp_path)
    finally:
        proxy.close()
    gets = proxy.gets(f"/{BUCKET}/data/archive/")
    files = [p for p in (base / "archive").rglob("*") if p.is_file()]
    assert len(files) == summary["seen"]
    # Every object but the empty ones (nothing to ask for) was asked for.
    objects = {g.path for g in gets}
    assert len(objects) == sum(p.stat().st_size > 0 for p in files) < len(files)
    assert all(g.range and g.range.startswith("bytes=") for g in gets), [g for g in gets if not g.range]
    assert (len(gets) - summary["via_pydicom"]) / len(objects) <= 1.1, (len(gets), len(objects))


def test_faults_are_retried_and_nothing_is_lost(server, base, local, tmp_path):
    """503 SlowDown, 500, reset connections and bodies cut short on the
    first try of each request: retried with backoff, the same records."""
    kinds = ("slowdown", "reset", "truncate", "error", "pass")

    def fault(method: str, path: str, attempt: int) -> str:
        if attempt > 1 or method != "GET":
            return "pass"
        if "list-type" in path:
            return "slowdown"
        return kinds[sum(path.encode()) % len(kinds)]

    proxy = Proxy(server.endpoint, fault)
    try:
        records, problems, summary, _ = fastindex([URL], server.env(proxy.endpoint), base, tmp_path)
    finally:
        proxy.close()
    (want, want_problems, want_summary, _) = local[0]
    got = relative(records, URL + "/")
    assert got == want
    assert sorted(relative(problems, URL + "/"), key=str) == sorted(want_problems, key=str)
    assert summary["seen"] == want_summary["seen"]
    injected = {e.fault for e in proxy.log}
    assert {"slowdown", "reset", "truncate", "error"} <= injected
    assert sum(e.fault != "pass" for e in proxy.log) > 100


def test_an_object_that_keeps_failing_is_listed_unreadable_with_the_servers_message(server, base, tmp_path):
    bad = f"/{BUCKET}/data/archive/"
    broken: list[str] = []

    def fault(method: str, path: str, attempt: int) -> str:
        # The first object asked for fails every time.
        if method == "GET" and "list-type" not in path and path.startswith(bad):
            if not broken:
                broken.append(path)
            return "error" if path == broken[0] else "pass"
        return "pass"

    proxy = Proxy(server.endpoint, fault)
    try:
        records, problems, summary, proc = fastindex([f"{URL}/archive", "--retries", "2", "--strict"], server.env(proxy.endpoint), base, tmp_path, check=False)
    finally:
        proxy.close()
    assert proc.returncode == 3, proc.stderr  # --strict: an error
    unreadable = [p for p in problems if p["reason"] == "unreadable"]
    assert len(unreadable) == 1, problems
    assert unreadable[0]["file_path"] == f"s3:/{urllib.parse.unquote(broken[0])}"
    assert "injected by the test proxy" in unreadable[0]["message"]
    assert sum(e.path == broken[0] for e in proxy.log) == 3  # 1 + 2 retries
    files = [p for p in (base / "archive").rglob("*") if p.is_file()]
    assert summary["seen"] == len(files)
    assert summary["seen"] == summary["indexed"] + summary["skipped"] + summary["not_dicom"] + summary["errors"]


def test_what_cannot_be_listed_is_listed_with_its_reason(server, base, tmp_path):
    env = {k: v for k, v in server.env().items() if not k.startswith("AZURE_")}
    records, problems, summary, proc = fastindex(
        ["s3://no-such-bucket/x", f"{URL}/nothing-here", "az://container/x", f"{URL}/archive/p1/ct"],
        env,
        base,
        tmp_path,
    )
    reasons = {p["file_path"]: (p["reason"], p["message"]) for p in problems}
    assert reasons["s3://no-such-bucket/x"][0] == "unreadable"
    assert "NoSuchBucket" in reasons["s3://no-such-bucket/x"][1] or "not exist" in reasons["s3://no-such-bucket/x"][1]
    assert reasons[f"{URL}/nothing-here"] == ("unreadable", "no object at or under this URL")
    # A store the environment does not configure (no Azure account): the
    # client's word, before any request.
    assert reasons["az://container/x"][0] == "unreadable" and "Account must be specified" in reasons["az://container/x"][1]
    assert records and all(r["file_path"].startswith(f"{URL}/archive/p1/ct/") for r in records)


def test_one_object_named_by_its_url_and_urls_beside_local_paths(server, base, local, monkeypatch):
    import fastindex as api

    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(base)
    inst = local[1][0]
    for one in (inst[0], next(r for r in inst if r["file_path"] == "archive/declined.dcm")):
        url = f"{URL}/{one['file_path']}"
        assert api.read_header(url) == {**one, "file_path": url, "folder": url.rsplit("/", 1)[0]}
    # A local folder and URLs in one call; a URL inside another is read once.
    mixed = list(api.iter_instances(["archive", f"{URL}/corpus", f"{URL}/corpus/vendored"]))
    from_s3 = [r for r in mixed if r["file_path"].startswith("s3://")]
    assert by_path(relative(from_s3, URL + "/")) == by_path([r for r in inst if r["file_path"].startswith("corpus/")])
    assert by_path([r for r in mixed if not r["file_path"].startswith("s3://")]) == by_path([r for r in inst if r["file_path"].startswith("archive/")])


def test_an_object_replaced_while_its_header_is_read_is_unreadable(server, base, tmp_path):
    """Each range after the first is pinned to the first one's ETag: a
    header is never made of two versions of an object."""
    s3 = server.client()
    s3.create_bucket(Bucket="swap")
    first, second = (VENDORED / "highdicom" / "ct_image.dcm"), (VENDORED / "dicom-parser-rs" / "CT1_UNC.explicit_little_endian.dcm")
    s3.put_object(Bucket="swap", Key="a.dcm", Body=first.read_bytes())

    def fault(method: str, path: str, attempt: int) -> str:
        if method == "GET" and path == "/swap/a.dcm" and attempt == 2:
            s3.put_object(Bucket="swap", Key="a.dcm", Body=second.read_bytes())
        return "pass"

    proxy = Proxy(server.endpoint, fault)
    try:
        _, problems, summary, _ = fastindex(["s3://swap", "--first-bytes", "256"], server.env(proxy.endpoint), tmp_path, tmp_path)
    finally:
        proxy.close()
    assert [(p["file_path"], p["reason"]) for p in problems] == [("s3://swap/a.dcm", "unreadable")]
    assert "changed while its header was read" in problems[0]["message"]
    assert [e.status for e in proxy.gets("/swap/")] == [206, 412]


def test_an_object_changed_since_the_listing_is_read_as_it_is_now(server, base, monkeypatch, tmp_path):
    from fastindex import _native
    from fastindex.pipeline import Options, run

    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    s3 = server.client()
    s3.create_bucket(Bucket="changes")
    first, second = (VENDORED / "dicom-parser-rs" / "CT1_UNC.explicit_little_endian.dcm"), (VENDORED / "highdicom" / "ct_image.dcm")
    s3.put_object(Bucket="changes", Key="x/a.dcm", Body=first.read_bytes())
    listed = list(_native.Stores().list("s3://changes/x"))
    [(url, size, etag, modified)] = listed
    assert (url, size) == ("s3://changes/x/a.dcm", first.stat().st_size)
    assert etag and modified
    s3.put_object(Bucket="changes", Key="x/a.dcm", Body=second.read_bytes())
    got: list[dict] = []
    summary, _ = anyio.run(lambda: run([], Options(), files=[], objects=listed, on_records=got.extend))
    import fastindex as api

    assert summary.indexed == 1
    assert got[0]["instance_uid"] == api.read_header(second, engine="rust")["instance_uid"]
    # The listing now gives the new key.
    [(_, size2, etag2, _)] = list(_native.Stores().list("s3://changes/x"))
    assert (size2 != size or etag2 != etag) and size2 == second.stat().st_size


def test_a_listing_of_several_pages_lists_every_object(server, tmp_path):
    s3 = server.client()
    s3.create_bucket(Bucket="many")
    n = 1005  # S3 lists 1000 keys a page
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket="many", Key=f"p/{i:05}", Body=b"not dicom"), range(n)))
    _, problems, summary, _ = fastindex(["s3://many/p"], server.env(), tmp_path, tmp_path)
    assert summary["seen"] == n and summary["not_dicom"] == n
    assert len({p["file_path"] for p in problems}) == n


def test_credentials_from_a_profile_and_unsigned_requests(server, base, tmp_path):
    """AWS_PROFILE picks keys and the endpoint from the shared files;
    --no-sign-request sends no signature at all."""
    proxy = Proxy(server.endpoint)
    try:
        creds, config = tmp_path / "credentials", tmp_path / "config"
        creds.write_text("[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = x\n[lab]\naws_access_key_id = LABKEY\naws_secret_access_key = y\n")
        config.write_text(f"[profile lab]\nregion = us-east-1\nendpoint_url = {proxy.endpoint}\n")
        env = local_env() | {"AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "lab"}
        records, _, _, _ = fastindex([f"{URL}/archive/p1/ct"], env, base, tmp_path)
        assert records
        signed = [e.authorization for e in proxy.log]
        assert signed and all(a and "Credential=LABKEY/" in a for a in signed), signed[:2]

        # Unsigned: a private bucket's objects are refused (listed with the
        # server's word), a public one's read.
        env = local_env() | {"AWS_ENDPOINT_URL": proxy.endpoint}
        _, refused, _, _ = fastindex([f"{URL}/archive/p1/ct", "--no-sign-request"], env, base, tmp_path)
        assert refused and all(p["reason"] == "unreadable" and "403" in p["message"] for p in refused)
        s3 = server.client()
        s3.create_bucket(Bucket="public")
        for key in ("a/1.dcm", "a/2.dcm", "top.dcm"):
            s3.copy_object(Bucket="public", Key=key, CopySource={"Bucket": BUCKET, "Key": records[0]["file_path"].removeprefix(f"s3://{BUCKET}/")})
        public = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": ["arn:aws:s3:::public", "arn:aws:s3:::public/*"]}]}
        s3.put_bucket_policy(Bucket="public", Policy=json.dumps(public))
        proxy.log.clear()
        unsigned, problems, _, _ = fastindex(["s3://public", "--no-sign-request", "--level", "instance"], env, base, tmp_path)
        assert problems == []
        # An object at the top of a bucket: its folder is the bucket's URL.
        assert sorted((r["file_path"], r["folder"]) for r in unsigned) == [("s3://public/a/1.dcm", "s3://public/a"), ("s3://public/a/2.dcm", "s3://public/a"), ("s3://public/top.dcm", "s3://public")]
        assert proxy.log and all(e.authorization is None for e in proxy.log)

        env = local_env() | {"AWS_PROFILE": "nope", "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(creds)}
        _, problems, _, _ = fastindex([f"{URL}/archive/p1/ct"], env, base, tmp_path)
        assert [(p["reason"], "nope" in p["message"]) for p in problems] == [("unreadable", True)]
    finally:
        proxy.close()


def test_an_interrupted_run_ends_at_once_whatever_is_in_flight(server, tmp_path):
    """SIGINT while ranges are requested ahead (one at a time, slow): the
    ranges no reader will take are dropped, not fetched first."""
    s3 = server.client()
    s3.create_bucket(Bucket="slow")
    body = (VENDORED / "highdicom" / "ct_image.dcm").read_bytes()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket="slow", Key=f"k/{i}.dcm", Body=body), range(600)))
    proxy = Proxy(server.endpoint, latency=0.2)
    out = tmp_path / "index.ndjson"
    try:
        for concurrency in ("1", "64"):
            proc = subprocess.Popen([sys.executable, "-m", "fastindex", "s3://slow/k", "--concurrency", concurrency, "-o", str(out)], env=server.env(proxy.endpoint), stderr=subprocess.PIPE, text=True)
            time.sleep(2)
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            try:
                proc.wait(30)
            finally:
                proc.kill()
            assert proc.returncode == 130, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() - started < 5
            assert not out.exists()
    finally:
        proxy.close()
