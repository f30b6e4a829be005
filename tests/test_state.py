"""--state: a later run reads only what changed and writes what a run from
scratch writes (byte for byte, both levels, every format); a killed run,
two runs at once, and state files that are not fastindex's.

Archives are real files: the known-answer archive (tests/archive.py:
duplicates, the RT reference chain, files not indexed) with pydicom's and
tests/data's files beside it, mutated between runs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from archive import make_archive
from corpora import PYDICOM_FILES, VENDORED, copy_corpora

FASTINDEX = [sys.executable, "-m", "fastindex"]
FORMATS = ("ndjson", "csv", "parquet")
TAGS = "ImageType,InstanceNumber"


def fastindex(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*FASTINDEX, *args], cwd=cwd, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("state-src")
    make_archive(base / "archive")
    copy_corpora(base / "archive", pydicom=PYDICOM_FILES, vendored=VENDORED)
    return base / "archive"


@pytest.fixture
def work(tmp_path, pristine) -> Path:
    shutil.copytree(pristine, tmp_path / "archive", symlinks=True)
    return tmp_path


def outputs(work: Path, state: str, *extra: str) -> dict[tuple[str, str], bytes]:
    """Every output of one run per (level, format), each with the state
    `state` (a copy of it per run, so that each sees the same start)."""
    out = {}
    for level in ("subseries", "instance"):
        for fmt in FORMATS:
            st = work / f"{state}.{level}.{fmt}.db"
            if (work / state).exists():
                shutil.copyfile(work / state, st)
            target = work / f"out.{level}.{fmt}"
            r = fastindex("archive", "--state", str(st), "--level", level, "--format", fmt, "--tags", TAGS, "-o", str(target), "--errors", str(work / "errors.ndjson"), "--summary", str(work / "summary.json"), *extra, cwd=work)
            assert r.returncode == 0, r.stderr.decode()
            out[level, fmt] = target.read_bytes()
            out[level, "errors"] = (work / "errors.ndjson").read_bytes()
            out[level, "summary"] = json.loads((work / "summary.json").read_text())
    return out


def run(work: Path, state: str, *extra: str) -> dict:
    r = fastindex("archive", "--state", state, "--tags", TAGS, "-o", "out.ndjson", "--summary", "summary.json", *extra, cwd=work)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads((work / "summary.json").read_text())


def mutate(archive: Path, rng: random.Random) -> dict[str, int]:
    """Change, add, delete and rename files; returns how many of each."""
    files = sorted(p for p in archive.rglob("*") if p.is_file())
    rng.shuffle(files)
    changed, deleted, renamed, sources = files[:4], files[4:8], files[8:11], files[11:15]
    for dst, src in zip(changed, sources):
        shutil.copyfile(src, dst)  # another file's content: a real change
        os.utime(dst, ns=(time.time_ns(), time.time_ns()))
    for p in deleted:
        p.unlink()
    for p in renamed:
        p.rename(p.with_name("renamed-" + p.name))
    for i, src in enumerate(sources):
        shutil.copyfile(src, archive / f"added-{i}.dcm")  # duplicates of existing instances
    return {"changed": 4, "removed": 4 + 3, "added": 3 + 4}


def test_unchanged_rerun_reads_nothing_and_writes_the_same(work):
    plain = fastindex("archive", "--tags", TAGS, "--errors", "plain.errors", cwd=work)
    first = run(work, "s.db", "--errors", "state.errors")
    first_out = (work / "out.ndjson").read_bytes()
    assert first_out == plain.stdout  # subseries: the same bytes as without --state
    # The same problems and warnings, in file_path order rather than as read.
    listed = (work / "state.errors").read_bytes().splitlines()
    assert listed == sorted(listed, key=lambda line: json.loads(line)["file_path"].encode())
    assert sorted(listed) == sorted((work / "plain.errors").read_bytes().splitlines())
    assert any(b'"warning"' in line for line in listed)
    assert 150 < first["state"]["read"] <= first["seen"]
    again = run(work, "s.db")
    assert (work / "out.ndjson").read_bytes() == first_out
    assert again["state"] == {"read": 0, "unchanged": first["state"]["read"], "added": 0, "changed": 0, "removed": 0}
    assert {k: v for k, v in again.items() if k not in ("seconds", "files_per_second", "state")} == {k: v for k, v in first.items() if k not in ("seconds", "files_per_second", "state")}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_after_changes_every_output_equals_a_fresh_runs(work, seed):
    first = run(work, "s.db")
    counts = mutate(work / "archive", random.Random(seed))
    later = outputs(work, "s.db")
    fresh = outputs(work, "none.db")  # no such file: each run starts from nothing
    for key in later:
        if key[1] == "summary":
            assert later[key]["state"]["read"] == counts["changed"] + counts["added"]
            assert later[key]["state"]["removed"] == counts["removed"]
            assert later[key]["state"]["unchanged"] == first["state"]["read"] - counts["changed"] - counts["removed"]
            assert {k: v for k, v in later[key].items() if k not in ("seconds", "files_per_second", "state")} == {k: v for k, v in fresh[key].items() if k not in ("seconds", "files_per_second", "state")}
        else:
            assert later[key] == fresh[key], key
    # Subseries level: also what a run without --state writes.
    plain = fastindex("archive", "--tags", TAGS, "--format", "csv", cwd=work)
    assert plain.stdout == later["subseries", "csv"]


def test_removing_representatives_and_the_whole_rt_chain(work):
    """The smallest path of each subseries goes (the representative), and
    a referenced series with it: the next representative and the
    references are those of a fresh run."""
    run(work, "s.db")
    records = [json.loads(line) for line in (work / "out.ndjson").read_bytes().splitlines()]
    for r in records:
        path = work / r["file_path"]
        if path.exists():
            path.unlink()
    later = outputs(work, "s.db")
    fresh = outputs(work, "none.db")
    assert later[("subseries", "ndjson")] == fresh[("subseries", "ndjson")]
    assert later[("instance", "ndjson")] == fresh[("instance", "ndjson")]


def test_moved_archive_is_unchanged_with_moved(work):
    run(work, "s.db")
    before = (work / "out.ndjson").read_bytes()
    # A restore: new inodes and ctimes, same sizes and mtimes.
    shutil.copytree(work / "archive", work / "restored", copy_function=shutil.copy2)
    shutil.rmtree(work / "archive")
    (work / "restored").rename(work / "archive")
    assert run(work, "s.db", "--moved")["state"]["read"] == 0
    assert (work / "out.ndjson").read_bytes() == before
    shutil.copytree(work / "archive", work / "again", copy_function=shutil.copy2)
    shutil.rmtree(work / "archive")
    (work / "again").rename(work / "archive")
    assert run(work, "s.db")["state"]["unchanged"] == 0  # without --moved: all read again


def test_the_state_inside_the_archive_is_not_indexed(work):
    inside = work / "archive" / "state.db"
    a = run(work, str(inside))
    b = run(work, str(inside))
    assert b["state"]["read"] == 0 and a["seen"] == b["seen"]
    db = sqlite3.connect(inside)
    assert not db.execute("SELECT count(*) FROM files WHERE file_path LIKE '%state.db%'").fetchone()[0]


def test_the_state_answers_queries(work):
    run(work, "s.db")
    db = sqlite3.connect(work / "s.db")
    (uid, path) = db.execute("SELECT instance_uid, file_path FROM files WHERE status = 'indexed' AND modality = 'CT' ORDER BY file_path LIMIT 1").fetchone()
    assert (work / path).is_file()
    rec = json.loads(db.execute("SELECT record FROM files WHERE file_path = ?", (path,)).fetchone()[0])
    assert rec["instance_uid"] == uid and rec["file_path"] == path
    # Which files make up a subseries: as many distinct instances as the subseries record says.
    subs = [json.loads(line) for line in (work / "out.ndjson").read_bytes().splitlines()]
    for s in subs:
        n = db.execute(
            "SELECT count(DISTINCT nullif(instance_uid, '')) + sum(coalesce(instance_uid, '') = '') FROM files WHERE status = 'indexed' AND patient_ID = ? AND study = ? AND series = ? AND subseries = ?",
            (s["patient_ID"], s["study"], s["series"], s["subseries"]),
        ).fetchone()[0]
        assert n == s["instances"]
    assert db.execute("PRAGMA application_id").fetchone()[0] == 0x46496478
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(db.execute("PRAGMA user_version").fetchone()[0])


def _bigger(work: Path, copies: int) -> None:
    """Many files, to kill a run in the middle."""
    src = sorted(p for p in (work / "archive").rglob("*.dcm") if p.is_file())[:40]
    for i in range(copies):
        d = work / "archive" / f"copy{i}"
        d.mkdir()
        for j, p in enumerate(src):
            shutil.copyfile(p, d / f"{j}.dcm")


def test_killed_runs_leave_a_state_the_next_run_finishes(work):
    _bigger(work, 60)
    fresh = outputs(work, "none.db")
    rng = random.Random(7)
    state = work / "k.db"
    for attempt in range(6):
        if attempt == 3:
            mutate(work / "archive", rng)
            fresh = outputs(work, "none.db")
        p = subprocess.Popen([*FASTINDEX, "archive", "--state", str(state), "--tags", TAGS, "-o", "k.ndjson", "-j", "1"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
        db = sqlite3.connect(state) if state.exists() else None
        if db is not None:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            db.close()
    later = outputs(work, "k.db")
    for key in later:
        if key[1] != "summary":
            assert later[key] == fresh[key], key


def test_a_second_run_on_the_same_state_is_refused(work):
    from fastindex.state import State
    from fastindex.tags import resolve

    run(work, "s.db")
    before = (work / "s.db").read_bytes()
    with State(str(work / "s.db"), resolve(TAGS.split(","))):
        r = fastindex("archive", "--state", "s.db", cwd=work)
        assert r.returncode == 1
        assert b"in use by another fastindex run" in r.stderr
        assert r.stdout == b""
    assert (work / "s.db").read_bytes() == before
    # Two at once for real: one of them is refused, the state stays whole.
    procs = [subprocess.Popen([*FASTINDEX, "archive", "--state", "t.db", "--tags", TAGS, "-o", f"t{i}.ndjson"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    codes = sorted(p.wait() for p in procs)
    assert codes[0] == 0
    assert run(work, "t.db")["state"]["read"] == 0


def test_a_state_that_is_not_fastindexs_is_refused_untouched(work):
    cases = {}
    (work / "text.db").write_text("hello, not a database\n" * 20)
    cases["text.db"] = b"not a fastindex state"
    other = sqlite3.connect(work / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.execute("INSERT INTO t VALUES (1)")
    other.commit()
    other.close()
    cases["other.db"] = b"not a fastindex state"
    run(work, "newer.db")
    db = sqlite3.connect(work / "newer.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    cases["newer.db"] = b"newer fastindex"
    run(work, "older.db")
    db = sqlite3.connect(work / "older.db")
    db.execute("PRAGMA user_version = 0")
    db.close()
    cases["older.db"] = b"older fastindex"
    run(work, "damaged.db")
    data = (work / "damaged.db").read_bytes()
    (work / "damaged.db").write_bytes(data[:4096] + bytes(len(data) - 4096))
    cases["damaged.db"] = b"damaged"
    run(work, "keys.db")
    db = sqlite3.connect(work / "keys.db")
    db.execute("UPDATE scan_keys SET data = substr(data, 1, length(data) - 1)")
    db.commit()
    db.close()
    cases["keys.db"] = b"damaged"
    run(work, "tags.db")
    cases["tags.db"] = b"made with --tags"
    for name, message in cases.items():
        before = (work / name).read_bytes()
        args = ["archive", "--state", name, "-o", "x.ndjson"] + (["--tags", "Rows"] if name == "tags.db" else ["--tags", TAGS])
        r = fastindex(*args, cwd=work)
        assert r.returncode == 1, (name, r.stderr)
        assert message in r.stderr, (name, r.stderr)
        assert not (work / "x.ndjson").exists()
        assert (work / name).read_bytes() == before, name


def test_a_state_of_layout_1_is_migrated_and_reads_nothing_again(work):
    """Layout 1 had no scan_keys: the next run makes them from `files`."""
    first = run(work, "s.db")
    want = (work / "out.ndjson").read_bytes()
    db = sqlite3.connect(work / "s.db")
    db.execute("DROP TABLE scan_keys")
    db.execute("DROP INDEX files_other")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    again = run(work, "s.db")
    assert again["state"]["read"] == 0 and again["state"]["unchanged"] == first["state"]["added"]
    assert (work / "out.ndjson").read_bytes() == want
    db = sqlite3.connect(work / "s.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM scan_keys").fetchone()[0] == 1


def test_state_and_output_on_one_file_is_a_usage_error(work):
    r = fastindex("archive", "--state", "same", "-o", "same", cwd=work)
    assert r.returncode == 2 and b"--state" in r.stderr
    r = fastindex("archive", "--moved", cwd=work)
    assert r.returncode == 2 and b"--moved needs --state" in r.stderr
