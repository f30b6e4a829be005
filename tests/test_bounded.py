"""Never unbounded: the pydicom fallback limited in memory, time and
number; a file over a limit is an error with its own reason, never a
partial record; signals end a run cleanly whenever they come, and the
outputs are committed as a pair."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import fastindex
import hostile
import pytest
from fastindex.write import _host

CT = hostile._hand(lambda w: None)


declined = hostile.declined

def empty_items(n: int):
    def write(w):
        w.head(0x0009_1010, b"SQ", hostile.UNDEF)
        w.raw(b"\xfe\xff\x00\xe0\x00\x00\x00\x00" * n)
        w.seq_end()

    return write


def cli(*args, cwd, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastindex", *map(str, args)], cwd=cwd, capture_output=True, timeout=timeout, env=ENV)


def listed(data: bytes) -> dict[str, tuple[str, str]]:
    return {e["file_path"]: (e["reason"], e["message"]) for e in map(json.loads, data.splitlines())}


#: marks the processes of this module's runs (workers inherit it), so that
#: runs of other test suites on the same machine do not count
TAG = f"FASTINDEX_TEST_RUN={os.getpid()}"
ENV = {**os.environ, "FASTINDEX_TEST_RUN": str(os.getpid())}


def fallback_workers() -> set[int]:
    """Fallback worker processes started by this module's runs."""
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
            env = Path(f"/proc/{d}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fallback_pool import serve" in cmd and TAG.encode() in env:
            out.add(int(d))
    return out


def test_the_fallback_reads_a_declined_file(tmp_path):
    (tmp_path / "plain.dcm").write_bytes(declined(lambda w: None))
    proc = cli("--level", "instance", "plain.dcm", cwd=tmp_path)
    assert proc.returncode == 0
    assert b"via pydicom 1" in proc.stderr
    [rec] = map(json.loads, proc.stdout.splitlines())
    assert rec["patient_ID"] == "HAND"


def test_a_file_past_the_memory_limit_is_too_large(tmp_path):
    """Empty items by the hundred thousand: pydicom makes a Dataset of each
    (before: 7.5 M of them took 92 s and 5.1 GB in the run itself)."""
    (tmp_path / "items.dcm").write_bytes(declined(empty_items(400_000)))
    (tmp_path / "ok.dcm").write_bytes(CT)
    start = time.monotonic()
    proc = cli("--level", "instance", "--errors", "-", "-o", "out.ndjson", "--fallback-memory", "24", ".", cwd=tmp_path)
    assert time.monotonic() - start < 30
    assert proc.returncode == 0, proc.stderr.decode()
    reason, message = listed(proc.stdout)["items.dcm"]
    assert reason == "too_large" and "24 MiB" in message
    assert "errors 1 (too_large 1)" in proc.stderr.decode()
    assert [r["file_path"] for r in map(json.loads, (tmp_path / "out.ndjson").read_bytes().splitlines())] == ["ok.dcm"]


def test_a_file_past_the_time_limit_is_a_timeout(tmp_path):
    (tmp_path / "items.dcm").write_bytes(declined(empty_items(600_000)))
    start = time.monotonic()
    proc = cli("--errors", "-", "-o", "out.ndjson", "--fallback-memory", "0", "--fallback-timeout", "0.5", ".", cwd=tmp_path)
    assert time.monotonic() - start < 20
    assert listed(proc.stdout)["items.dcm"][0] == "timeout"
    assert not fallback_workers()


def test_a_header_past_the_read_cap_is_too_large_not_a_partial_record(tmp_path):
    """A 70 MB private element before the wanted tags: pydicom's 64 MiB
    read cap once cut the header silently and gave a record with blanks."""
    def big(w):
        w.head(0x0009_1012, b"OB", 70 * 1024 * 1024)
        w.raw(bytes(70 * 1024 * 1024))

    (tmp_path / "big.dcm").write_bytes(declined(big))
    proc = cli("--level", "instance", "--errors", "-", "-o", "out.ndjson", "--fallback-memory", "0", ".", cwd=tmp_path)
    assert listed(proc.stdout)["big.dcm"][0] == "too_large"
    assert (tmp_path / "out.ndjson").read_bytes() == b""


@pytest.mark.parametrize(
    "raised, reason",
    [
        (OSError("No tag to read at file position 1C4"), "malformed"),  # pydicom's words about the bytes
        (OSError(5, "Input/output error"), "unreadable"),  # the system's
    ],
)
def test_pydicom_parse_failure_is_malformed_not_unreadable(tmp_path, monkeypatch, raised, reason):
    """pydicom raises OSError without an errno for bytes it cannot parse
    (`read_sequence_item`): that is damage, not an I/O failure."""
    from fastindex import fallback

    (tmp_path / "a.dcm").write_bytes(CT)

    def fail(*args, **kw):
        raise raised

    monkeypatch.setattr(fallback, "read_dataset", fail)
    with pytest.raises(fastindex.NotIndexed) as caught:
        fallback.read_record(tmp_path / "a.dcm", "a.dcm")
    assert caught.value.reason == reason


def test_sigint_during_a_fallback_ends_the_run_within_a_second(tmp_path):
    (tmp_path / "items.dcm").write_bytes(declined(empty_items(1_500_000)))
    before = fallback_workers()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastindex", "-o", "out.ndjson", "--fallback-memory", "0", "--fallback-timeout", "0", "."],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )
    deadline = time.monotonic() + 10
    while not (fallback_workers() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fallback_workers() - before, "the fallback never started"
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert time.monotonic() - sent < 1.0
    assert proc.returncode == 130
    assert b"Traceback" not in proc.stderr.read()
    time.sleep(0.2)
    assert not (fallback_workers() - before), "a worker outlived its run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.dcm"]


def test_not_indexed_survives_pickling():
    import pickle

    e = pickle.loads(pickle.dumps(fastindex.NotIndexed("truncated", "cut at 12")))
    assert (e.reason, e.message, str(e)) == ("truncated", "cut at 12", "truncated: cut at 12")


def test_a_path_behind_a_folder_without_search_permission_says_so(tmp_path):
    """As root, drop the capabilities that bypass permissions."""
    locked = tmp_path / "locked"
    (locked / "sub").mkdir(parents=True)
    (locked / "sub" / "1.dcm").write_bytes(CT)
    locked.chmod(0)
    try:
        setpriv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps=-all"] if os.geteuid() == 0 else []
        proc = subprocess.run([*setpriv, sys.executable, "-m", "fastindex", "locked/sub/1.dcm"], cwd=tmp_path, capture_output=True)
        assert proc.returncode == 1
        assert proc.stderr.decode().strip() == "fastindex: locked/sub/1.dcm: permission denied"
        code = "import fastindex\ntry:\n    fastindex.index(['locked/sub/1.dcm'])\nexcept PermissionError as e:\n    print(e.strerror)"
        proc = subprocess.run([*setpriv, sys.executable, "-c", code], cwd=tmp_path, capture_output=True)
        assert proc.stdout.decode().strip() == "locked/sub/1.dcm: permission denied", proc.stderr.decode()
    finally:
        locked.chmod(0o755)


# --------------------------------------------------------------------------
# Signals and the commit of outputs


@pytest.fixture
def small(tmp_path) -> Path:
    a = tmp_path / "archive"
    a.mkdir()
    for i in range(300):
        (a / f"{i}.dcm").write_bytes(CT)
    (a / "junk.txt").write_bytes(b"junk")
    return tmp_path


def test_a_signal_at_any_moment_leaves_both_outputs_new_or_both_old(small):
    """SIGINT/SIGTERM at random moments, from interpreter start to the
    commit: exit 0 with both outputs new, or 130/143 with both untouched;
    never a traceback, a crash, or a .part file left."""
    rng = random.Random(7433)
    outcomes = set()
    for _ in range(24):
        (small / "out.ndjson").write_bytes(b"old out\n")
        (small / "err.ndjson").write_bytes(b"old err\n")
        signum = rng.choice([signal.SIGINT, signal.SIGTERM])
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastindex", "-j1", "archive", "-o", "out.ndjson", "--errors", "err.ndjson"],
            cwd=small, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0, 0.7))
        proc.send_signal(signum)
        proc.wait(timeout=30)
        err = proc.stderr.read().decode()
        out, errs = (small / "out.ndjson").read_bytes(), (small / "err.ndjson").read_bytes()
        assert "Traceback" not in err, err
        if proc.returncode == 0:
            assert out != b"old out\n" and errs != b"old err\n"
        else:
            # Before the handlers are in place (the interpreter's first
            # milliseconds) the default action may still end it (-2, -15).
            assert proc.returncode in (128 + signum, -signum), (proc.returncode, err)
            assert (out, errs) == (b"old out\n", b"old err\n")
        assert not [p for p in small.iterdir() if p.name.endswith(".part")]
        outcomes.add(proc.returncode)
    assert outcomes & {130, 143}, outcomes


def test_an_ignored_sigint_stays_ignored(small):
    """A background job in a script inherits SIGINT ignored: respect it."""
    os.mkfifo(small / "fifo")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastindex", "archive", "-o", "fifo"],
        cwd=small, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting for the FIFO's reader
    data = (small / "fifo").read_bytes()
    proc.wait(timeout=30)
    assert proc.returncode == 0 and len(data.splitlines()) == 1


def test_stale_part_files_of_dead_runs_are_removed(small):
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = small / "out"
    out.mkdir()
    host = _host()
    stale = out / f".fastindex-{host}-{dead.pid}-abcd1234.part"
    running = out / f".fastindex-{host}-{os.getpid()}-abcd1234.part"
    elsewhere = out / f".fastindex-otherhost-{dead.pid}-abcd1234.part"
    for p in (stale, running, elsewhere):
        p.write_bytes(b"partial")
    proc = cli("archive", "-o", "out/index.ndjson", cwd=small)
    assert proc.returncode == 0
    assert not stale.exists() and running.exists() and elsewhere.exists()
    # and the walker never indexes such files
    proc = cli("--level", "instance", "out", cwd=small)
    assert re.search(rb"seen 1, indexed 0", proc.stderr), proc.stderr
