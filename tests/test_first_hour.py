"""What a new user meets first: outputs that never destroy anything, paths
as given, links and overlapping PATHs, --exclude, fastindex's own files,
library warnings, -q and --summary, pipes closed early."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import hostile
import pytest

CT = hostile._hand(lambda w: None)
#: a file the fast path declines (an unknown VR) whose AcquisitionNumber
#: makes pydicom warn as the fallback reads it
WARNS = hostile._hand(
    lambda w: w.el(0x0009_0010, b"ZZ", "abcd").el(0x0020_0012, b"IS", "1A"), series="1.2.826.0.1.3680043.9.7433.4.77"
)


def cli(*args, cwd, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastindex", *map(str, args)], cwd=cwd, capture_output=True, timeout=timeout, **kw)


def ndjson(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def counts(stderr: bytes) -> dict[str, int]:
    line = stderr.decode().strip().splitlines()[-1]
    return {k.replace(" ", "_"): int(v) for v, k in ((m[2], m[1]) for m in re.finditer(r"(seen|indexed|skipped|not DICOM|errors|warnings) (\d+)", line))}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """tmp/archive/{a/1.dcm, a/sub/2.dcm, junk.txt}; cwd for the runs is tmp."""
    a = tmp_path / "archive"
    (a / "a" / "sub").mkdir(parents=True)
    (a / "a" / "1.dcm").write_bytes(CT)
    (a / "a" / "sub" / "2.dcm").write_bytes(CT)
    (a / "junk.txt").write_bytes(b"not dicom")
    return a


# --------------------------------------------------------------------------
# Outputs never destroy anything


def test_output_through_a_link_writes_its_target(archive):
    tmp = archive.parent
    (tmp / "real.ndjson").write_bytes(b"old\n")
    (tmp / "link.ndjson").symlink_to("real.ndjson")
    (tmp / "errlink").symlink_to("errors.real")
    proc = cli("archive", "-o", "link.ndjson", "--errors", "errlink", cwd=tmp)
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp / "link.ndjson").is_symlink() and (tmp / "errlink").is_symlink()
    assert ndjson((tmp / "real.ndjson").read_bytes())[0]["file_path"] == "archive/a/1.dcm"
    assert ndjson((tmp / "errors.real").read_bytes())[0]["reason"] == "not_dicom"


def test_errors_to_dev_stdout_writes_the_descriptor(archive):
    """As root, --errors /dev/stdout once replaced the system's link."""
    proc = cli("archive", "-o", "out.ndjson", "--errors", "/dev/stdout", cwd=archive.parent)
    assert proc.returncode == 0, proc.stderr.decode()
    assert os.path.islink("/dev/stdout")
    assert [e["file_path"] for e in ndjson(proc.stdout)] == ["archive/junk.txt"]


def test_output_to_a_device_through_a_link_is_written_in_place(archive):
    tmp = archive.parent
    (tmp / "null").symlink_to("/dev/null")
    proc = cli("archive", "-o", "null", cwd=tmp)
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and (tmp / "null").is_symlink()


def test_output_to_a_fifo_streams_to_its_reader(archive):
    tmp = archive.parent
    os.mkfifo(tmp / "fifo")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append((tmp / "fifo").read_bytes()))
    reader.start()
    proc = cli("archive", "-o", "fifo", cwd=tmp)
    reader.join(10)
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_ISFIFO(os.lstat(tmp / "fifo").st_mode)
    assert len(ndjson(got[0])) == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_fifo_without_reader_does_not_hold_the_run(archive, signum):
    tmp = archive.parent
    os.mkfifo(tmp / "fifo")
    proc = subprocess.Popen([sys.executable, "-m", "fastindex", "archive", "-o", "fifo"], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    assert proc.poll() is None  # waiting for a reader, as it should
    proc.send_signal(signum)
    proc.wait(timeout=5)
    assert proc.returncode == 128 + signum
    assert b"Traceback" not in proc.stderr.read()
    assert stat.S_ISFIFO(os.lstat(tmp / "fifo").st_mode)


def test_replaced_output_keeps_mode_and_owner(archive):
    tmp = archive.parent
    out = tmp / "index.ndjson"
    out.write_bytes(b"old\n")
    os.chmod(out, 0o600)
    if os.geteuid() == 0:
        os.chown(out, 4321, 4322)
    proc = cli("archive", "-o", "index.ndjson", cwd=tmp)
    assert proc.returncode == 0, proc.stderr.decode()
    st = os.stat(out)
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (4321, 4322)
    assert out.read_bytes() != b"old\n"


@pytest.mark.parametrize("errors", ["out.ndjson", "./out.ndjson", "link"])
def test_same_file_for_output_and_errors_is_refused(archive, errors):
    tmp = archive.parent
    (tmp / "out.ndjson").write_bytes(b"keep\n")
    (tmp / "link").symlink_to("out.ndjson")
    proc = cli("archive", "-o", "out.ndjson", "--errors", errors, cwd=tmp)
    assert proc.returncode == 2
    assert b"same output" in proc.stderr
    assert (tmp / "out.ndjson").read_bytes() == b"keep\n"


def test_dash_is_stdout(archive):
    proc = cli("archive", "-o", "-", cwd=archive.parent)
    assert proc.returncode == 0
    assert len(ndjson(proc.stdout)) == 1
    assert not (archive.parent / "-").exists()


def test_messages_name_the_users_path_and_nothing_is_left(archive):
    tmp = archive.parent
    proc = cli("archive", "-o", "missing/out.ndjson", cwd=tmp)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "missing/out.ndjson" in err and ".part" not in err and "fastindex-" not in err
    assert sorted(p.name for p in tmp.iterdir()) == ["archive"]


def test_own_outputs_are_never_indexed(archive):
    """`fastindex -o index.ndjson` inside the archive, twice; a stale
    temporary file of a killed run is there too."""
    (archive / ".fastindex-stale123.part").write_bytes(b"left by a SIGKILL")
    for _ in range(2):
        proc = cli(".", "-o", "index.ndjson", "--errors", "errors.ndjson", "--level", "instance", cwd=archive)
        assert proc.returncode == 0, proc.stderr.decode()
        c = counts(proc.stderr)
        assert (c["seen"], c["indexed"], c["not_DICOM"]) == (3, 2, 1)
    assert [e["file_path"] for e in ndjson((archive / "errors.ndjson").read_bytes())] == ["junk.txt"]
    # stdout redirected into the archive: that file is ours too
    (archive / "index.ndjson").unlink()
    (archive / "errors.ndjson").unlink()
    with open(archive / "redirected.ndjson", "wb") as f:
        proc = subprocess.run([sys.executable, "-m", "fastindex", "."], cwd=archive, stdout=f, stderr=subprocess.PIPE)
    assert counts(proc.stderr)["seen"] == 3


# --------------------------------------------------------------------------
# Conventions: pipes, paths, links, overlaps, --exclude


def test_pipe_closed_early_exits_0_quietly(tmp_path):
    """`fastindex ARCHIVE | head -1` under `set -o pipefail`."""
    many = tmp_path / "many"
    many.mkdir()
    for i in range(3000):
        (many / f"{i}.dcm").write_bytes(CT)
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", f"{sys.executable} -m fastindex --level instance many | head -1"], cwd=tmp_path, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stderr == b""


def _paths(proc) -> list[str]:
    assert proc.returncode == 0, proc.stderr.decode()
    return sorted(r["file_path"] for r in ndjson(proc.stdout))


def test_paths_are_written_as_given(archive):
    tmp = archive.parent
    assert _paths(cli("--level", "instance", "archive", cwd=tmp)) == ["archive/a/1.dcm", "archive/a/sub/2.dcm"]
    assert _paths(cli("--level", "instance", "./archive/", cwd=tmp)) == ["archive/a/1.dcm", "archive/a/sub/2.dcm"]
    assert _paths(cli("--level", "instance", ".", cwd=archive)) == ["a/1.dcm", "a/sub/2.dcm"]
    assert _paths(cli("--level", "instance", "../../a", cwd=archive / "a" / "sub")) == ["../../a/1.dcm", "../../a/sub/2.dcm"]
    absolute = [str(archive / "a" / "1.dcm"), str(archive / "a" / "sub" / "2.dcm")]
    # An absolute PATH gives the same output whatever the working directory.
    assert _paths(cli("--level", "instance", archive, cwd=tmp)) == absolute
    assert _paths(cli("--level", "instance", archive, cwd="/")) == absolute
    assert _paths(cli("--level", "instance", "--relative-to", "archive", "archive/a", cwd=tmp)) == ["a/1.dcm", "a/sub/2.dcm"]
    assert _paths(cli("--level", "instance", "--relative-to", tmp / "archive/a", "archive/a/sub", cwd=tmp)) == ["sub/2.dcm"]
    records = ndjson(cli("--level", "instance", "archive", cwd=tmp).stdout)
    assert {r["folder"] for r in records} == {"archive/a", "archive/a/sub"}


@pytest.mark.parametrize("base", ["/nonexistent", "archive/junk.txt"])
def test_relative_to_must_be_a_directory(archive, base):
    proc = cli("archive", "--relative-to", base, cwd=archive.parent)
    assert proc.returncode == 2
    assert base.encode() in proc.stderr and proc.stdout == b""


def test_links_named_as_paths_are_followed_and_each_file_counted_once(archive):
    tmp = archive.parent
    (tmp / "filelink").symlink_to("archive/a/1.dcm")
    (tmp / "dirlink").symlink_to("archive/a")
    proc = cli("--level", "instance", "--errors", "-", "-o", "out.ndjson", "filelink", cwd=tmp)
    assert proc.stdout == b"" and counts(proc.stderr)["indexed"] == 1
    assert [r["file_path"] for r in ndjson((tmp / "out.ndjson").read_bytes())] == ["filelink"]
    proc = cli("--level", "instance", "dirlink", cwd=tmp)
    assert _paths(proc) == ["dirlink/1.dcm", "dirlink/sub/2.dcm"]
    assert counts(proc.stderr)["seen"] == 2  # the link itself is not an entry


@pytest.mark.parametrize(
    "paths, expect",
    [
        (["archive", "archive"], ["archive/a/1.dcm", "archive/a/sub/2.dcm"]),
        (["archive", "archive/a/sub"], ["archive/a/1.dcm", "archive/a/sub/2.dcm"]),
        (["archive/a/sub", "archive"], ["archive/a/1.dcm", "archive/a/sub/2.dcm"]),
        (["archive/a/1.dcm", "archive/a", "dirlink"], ["archive/a/1.dcm", "archive/a/sub/2.dcm"]),
    ],
)
def test_overlapping_paths_count_each_file_once(archive, paths, expect):
    (archive.parent / "dirlink").symlink_to("archive/a")
    proc = cli("--level", "instance", *paths, cwd=archive.parent)
    assert _paths(proc) == expect
    assert counts(proc.stderr)["seen"] == len(expect) + ("archive" in paths)


def test_exclude_leaves_out_snapshot_folders_and_counts_them(archive):
    tmp = archive.parent
    snap = archive / "a" / ".snapshot" / "hourly.0"
    snap.mkdir(parents=True)
    (snap / "1.dcm").write_bytes(CT)
    (archive / "a" / "scratch.tmp").write_bytes(CT)
    proc = cli("--level", "instance", "archive", "--exclude", ".snapshot", "--exclude", "*.tmp", "--errors", "-", "-o", "out.ndjson", cwd=tmp)
    assert proc.returncode == 0, proc.stderr.decode()
    listed = {e["file_path"]: e["reason"] for e in ndjson(proc.stdout)}
    assert listed == {"archive/a/.snapshot": "excluded", "archive/a/scratch.tmp": "excluded", "archive/junk.txt": "not_dicom"}
    assert sorted(r["file_path"] for r in ndjson((tmp / "out.ndjson").read_bytes())) == ["archive/a/1.dcm", "archive/a/sub/2.dcm"]
    c = counts(proc.stderr)
    assert (c["seen"], c["skipped"]) == (5, 2)
    assert "excluded 2" in proc.stderr.decode()
    # A pattern with a slash matches the path below the PATH.
    proc = cli("--level", "instance", "archive", "--exclude", "a/sub", cwd=tmp)
    assert _paths(proc) == ["archive/a/.snapshot/hourly.0/1.dcm", "archive/a/1.dcm", "archive/a/scratch.tmp"]
    # Without --exclude, the snapshot is indexed (a duplicate).
    assert len(_paths(cli("--level", "instance", "archive", cwd=tmp))) == 4


def test_bad_exclude_pattern_is_a_usage_error(archive):
    proc = cli("archive", "--exclude", "a[", cwd=archive.parent)
    assert proc.returncode == 2 and b"--exclude" in proc.stderr


# --------------------------------------------------------------------------
# Talk: library warnings, -q, --summary


def test_pydicom_warnings_are_caught_counted_and_listed(archive):
    tmp = archive.parent
    (archive / "warns.dcm").write_bytes(WARNS)
    proc = cli("archive", "--errors", "errors.ndjson", cwd=tmp)
    assert proc.returncode == 0
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "UserWarning" not in err, err  # the summary line alone
    assert "via pydicom 1" in err
    assert counts(proc.stderr)["warnings"] >= 1
    warned = [e for e in ndjson((tmp / "errors.ndjson").read_bytes()) if e["reason"] == "warning"]
    assert [e["file_path"] for e in warned] == ["archive/warns.dcm"]
    assert "1A" in warned[0]["message"]
    subseries = {r["series"]: r["subseries"] for r in ndjson(proc.stdout)}
    assert subseries["1.2.826.0.1.3680043.9.7433.4.77"] == "1A"


def test_quiet_prints_nothing_and_summary_file_has_every_count(archive):
    tmp = archive.parent
    (archive / "warns.dcm").write_bytes(WARNS)
    (archive / "DICOMDIR").write_bytes(b"x" * 10)
    loud = cli("archive", "--summary", "summary.json", cwd=tmp)
    quiet = cli("archive", "-q", cwd=tmp)
    assert quiet.returncode == 0 and quiet.stderr == b"" and quiet.stdout == loud.stdout
    s = json.loads((tmp / "summary.json").read_bytes())
    c = counts(loud.stderr)
    assert (s["seen"], s["indexed"], s["skipped"], s["not_dicom"], s["errors"], s["warnings"]) == (
        c["seen"], c["indexed"], c["skipped"], c["not_DICOM"], c["errors"], c["warnings"]
    )
    assert s["seen"] == s["indexed"] + s["skipped"] + s["not_dicom"] + s["errors"]
    assert s["reasons"] == {"not_dicom": 2} and s["via_pydicom"] == 1 and s["exit_code"] == 0
    assert s["seconds"] > 0 and {"duplicates", "unresolved_references", "files_per_second"} <= set(s)
    # A fatal error is still said under -q.
    proc = cli("archive", "-q", "-o", "missing/out", cwd=tmp)
    assert proc.returncode == 1 and b"missing/out" in proc.stderr


def test_summary_file_of_a_strict_run_says_its_exit_code(archive):
    (archive / "cut.dcm").write_bytes(CT[:200])
    proc = cli("archive", "--strict", "--summary", "s.json", cwd=archive.parent)
    s = json.loads((archive.parent / "s.json").read_bytes())
    assert proc.returncode == s["exit_code"] == 3 and s["errors"] == 1


def test_progress_line_shows_elapsed_time_and_errors(capsys):
    from fastindex.cli import _progress
    from fastindex.outcomes import Summary

    s = Summary(indexed=90, seconds=12.34)
    s.reasons.update({"truncated": 3, "not_dicom": 7})
    _progress(s)
    line = capsys.readouterr().err
    assert line.startswith("\r\x1b[K") and "\n" not in line
    assert "seen 100, indexed 90, errors 3, 12.3 s, 8 files/s" in line


def test_parquet_without_pyarrow_fails_cleanly_and_leaves_nothing(archive):
    tmp = archive.parent
    code = "import sys; sys.modules['pyarrow'] = None; from fastindex.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "archive", "--format", "parquet", "-o", "x.parquet", "--errors", "e.ndjson"], cwd=tmp, capture_output=True)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == "fastindex: --format parquet needs pyarrow: pip install 'fastindex-dicom[parquet]'"
    assert sorted(p.name for p in tmp.iterdir()) == ["archive"]
