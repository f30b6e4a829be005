"""Hostile input and faults: every regular file is indexed or listed with
a reason (never both, never neither), whatever the damage; traps in the
file system do not hang or crash; interruptions leave no partial output.

The tree is made by tests/hostile.py; see its docstring for the layout.
"""

from __future__ import annotations

import array
import fcntl
import json
import os
import re
import signal
import stat
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import fastindex
import hostile
import pytest
from fastindex import INSTANCE_FIELDS, NotIndexed

SUMMARY = re.compile(r"fastindex: seen (\d+), indexed (\d+), skipped (\d+)(?: \([^)]*\))?, not DICOM (\d+), errors (\d+)")
#: what a regular file may be listed with, whatever the damage
FILE_REASONS = {"not_dicom", "no_series_uid", "dicomdir", "truncated", "malformed", "unreadable", "unsupported"}
TWIN = "twin"
PATH_FIELDS = ("file_path", "folder")



def cli(*args, cwd, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastindex", *map(os.fspath, args)], cwd=cwd, capture_output=True, timeout=timeout, **kw)


def ndjson(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def raw(path: str) -> bytes:
    """A path as written in the output, back to the bytes on disk."""
    return os.fsencode(path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> hostile.Tree:
    return hostile.build(tmp_path_factory.mktemp("hostile") / "tree")


@pytest.fixture(scope="module")
def twin_records(tree, tmp_path_factory) -> dict[bytes, dict]:
    """Records of the undamaged files, read alone in a clean tree."""
    clean = tmp_path_factory.mktemp("clean")
    for rel in set(tree.twins.values()):
        src = os.path.join(os.fsencode(tree.root), rel)
        dst = os.path.join(os.fsencode(clean), b"tree", rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read(64 * 1024) if rel == tree.sparse else f.read())  # the sparse file: its header is enough
    proc = cli("--level", "instance", "tree", cwd=clean)
    assert proc.returncode == 0, proc.stderr.decode()
    out = {raw(r["file_path"])[len(b"tree/") :]: r for r in ndjson(proc.stdout)}
    assert set(out) == set(tree.twins.values())
    return out


def expected(tree: hostile.Tree, follow: bool) -> dict[bytes, object]:
    """Every entry the run must account for: relative path -> TWIN (indexed,
    with its twin's record), a set of reasons it must be listed with, or
    None (indexed, or listed with any reason for a damaged file)."""
    out: dict[bytes, object] = {rel: TWIN for rel in tree.twins if rel not in tree.special}
    out.update(tree.expect)
    for rel, (unfollowed, followed) in tree.special.items():
        reason = followed if follow else unfollowed
        if reason == "":  # a link to a directory: walked under the link's name
            target = os.path.normpath(os.path.join(os.path.dirname(rel), os.readlink(os.path.join(os.fsencode(tree.root), rel))))
            for k, v in list(out.items()):
                if k.startswith(target + b"/"):
                    out[rel + k[len(target) :]] = v
        elif reason == "file":
            out[rel] = TWIN
        else:
            out[rel] = frozenset({reason})
    return out


def twin_of(tree: hostile.Tree, rel: bytes) -> bytes:
    if rel in tree.twins:
        return tree.twins[rel]
    for link, (_, followed) in tree.special.items():
        if followed == "" and rel.startswith(link + b"/"):
            target = os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(os.path.join(os.fsencode(tree.root), link))))
            return tree.twins[target + rel[len(link) :]]
    raise KeyError(rel)


def test_tree_is_as_described(tree):
    on_disk = set()
    for folder, dirs, names in os.walk(os.fsencode(tree.root)):
        for n in names + dirs:
            p = os.path.join(folder, n)
            st = os.lstat(p)
            if not stat.S_ISDIR(st.st_mode):
                on_disk.add(os.path.relpath(p, os.fsencode(tree.root)))
    assert on_disk == set(tree.twins) | set(tree.expect) | set(tree.special)
    assert len(tree.expect) > 150 and len(tree.twins) > 100
    st = os.stat(tree.root / "sparse" / "12GB.dcm")
    assert st.st_size == hostile.SPARSE_SIZE and st.st_blocks * 512 < 1 << 20, "the 12 GB file must be sparse"
    assert stat.S_ISFIFO(os.lstat(tree.root / "special" / "fifo").st_mode)


@pytest.fixture(scope="module", params=[False, True], ids=["no-follow", "follow"])
def run(request, tree):
    follow = request.param
    args = ["--level", "instance", "--errors", "errors.ndjson", "tree"] + (["--follow-symlinks"] if follow else [])
    start = time.monotonic()
    proc = cli(*args, cwd=tree.root.parent)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    # Files with warnings are indexed, and listed apart with reason "warning".
    errors = [e for e in ndjson((tree.root.parent / "errors.ndjson").read_bytes()) if e["reason"] != "warning"]
    return follow, proc, ndjson(proc.stdout), errors, seconds


def test_every_entry_indexed_or_listed_never_both(tree, run):
    follow, proc, records, errors, seconds = run
    want = expected(tree, follow)
    indexed = [raw(r["file_path"]) for r in records]
    listed = [raw(e["file_path"]) for e in errors]
    assert all(p.startswith(b"tree/") for p in indexed + listed)
    indexed = [p[5:] for p in indexed]
    listed = [p[5:] for p in listed]
    assert len(set(indexed)) == len(indexed), "a file indexed twice"
    assert len(set(listed)) == len(listed), "a file listed twice"
    assert not set(indexed) & set(listed), "indexed and listed"
    assert sorted(set(indexed) | set(listed)) == sorted(want), "neither indexed nor listed, or unknown"
    seen, n_indexed, skipped, not_dicom, n_errors = map(int, SUMMARY.match(proc.stderr.decode().strip().splitlines()[-1]).groups())
    assert (seen, n_indexed) == (len(want), len(indexed))
    assert seen == n_indexed + skipped + not_dicom + n_errors
    reason = {p: e["reason"] for p, e in zip(listed, errors)}
    for rel, w in want.items():
        if w == TWIN:
            assert rel in indexed, (rel, reason.get(rel))
        elif w is None:
            assert rel in indexed or reason[rel] in FILE_REASONS, (rel, reason.get(rel))
        else:
            assert reason.get(rel) in w, (rel, reason.get(rel), "indexed" if rel in indexed else "")
    for e in errors:
        assert set(e) == {"file_path", "reason", "message"} and e["message"], e
    warned = [e for e in ndjson((tree.root.parent / "errors.ndjson").read_bytes()) if e["reason"] == "warning"]
    assert {raw(e["file_path"])[5:] for e in warned} <= set(indexed)
    n_warnings = int(re.search(r"warnings (\d+)", proc.stderr.decode()).group(1))
    assert (n_warnings > 0) == bool(warned) and len(warned) <= n_warnings
    assert "Traceback" not in proc.stderr.decode()
    # Nothing here is slow: 12 GB sparse, 5000 levels, 3000 entries.
    assert seconds < 30


def test_undamaged_records_unchanged(tree, run, twin_records):
    _, _, records, _, _ = run
    for r in records:
        rel = raw(r["file_path"])[5:]
        try:
            twin = twin_records[twin_of(tree, rel)]
        except KeyError:
            continue  # a damaged file that pydicom could read
        assert tuple(r) == INSTANCE_FIELDS
        got = {k: v for k, v in r.items() if k not in PATH_FIELDS}
        assert got == {k: v for k, v in twin.items() if k not in PATH_FIELDS}, rel
        assert raw(r["folder"]) == os.path.dirname(raw(r["file_path"]))


def test_good_files_agree_with_pydicom(tree):
    for rel in sorted(set(tree.twins.values())):
        if rel == tree.sparse:
            continue  # pydicom is not asked to read 12 GB
        p = os.fsdecode(os.path.join(os.fsencode(tree.root), rel))
        assert fastindex.read_header(p, engine="rust") == fastindex.read_header(p, engine="pydicom"), rel


def test_non_utf8_paths_are_reported_faithfully(tree, run):
    _, _, records, errors, _ = run
    indexed = {raw(r["file_path"]) for r in records}
    listed = {raw(e["file_path"]): e["reason"] for e in errors}
    assert b"tree/names/\xff\xfe-latin1-\xe9.dcm" in indexed
    assert b"tree/names/line\nbreak.dcm" in indexed
    assert b"tree/names/back\\slash.dcm" in indexed
    assert listed[b"tree/names/bad-\x80.txt"] == "not_dicom"
    assert listed[b"tree/names/trunc-\xe9\xff"] == "truncated"
    for p in indexed | set(listed):
        assert os.path.lexists(os.path.join(os.fsencode(tree.root.parent), p)), p


def test_subseries_level_survives_the_tree(tree):
    """The default level aggregates, sorts and writes the same tree."""
    proc = cli("tree", "-o", "index.ndjson", cwd=tree.root.parent)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    records = ndjson((tree.root.parent / "index.ndjson").read_bytes())
    keys = [(r["patient_ID"], r["study"], r["series"], r["subseries"]) for r in records]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


# --------------------------------------------------------------------------
# Files that cost nothing however large they claim to be


def rchar() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar")).split()[1])


def test_sparse_file_is_not_read_whole(tree):
    p = tree.root / "sparse" / "12GB.dcm"
    before = rchar()
    r = fastindex.read_header(p, engine="rust")
    assert rchar() - before < 1 << 20
    assert r["series"] and r["modality"] == "OT"


def test_zero_tail_sparse_file_fails_fast_in_rust(tmp_path):
    p = tmp_path / "zeros.dcm"
    hostile.zero_tail_sparse(p)
    before = rchar()
    with pytest.raises(NotIndexed) as e:
        fastindex.read_header(p, engine="rust")
    assert e.value.reason in ("malformed", "truncated")
    assert rchar() - before < 1 << 20


@pytest.mark.parametrize("kind", ["zero_tail_sparse", "deflate_bomb"])
def test_damaged_large_files_cost_little_time(tmp_path, kind):
    """The whole pipeline, pydicom fallback included, must give up on these
    quickly: 12 GB of zeros after a header (sparse), or 64 KB that inflate
    to 64 MiB of zeros. The Rust reader takes milliseconds."""
    (tmp_path / "a").mkdir()
    if kind == "zero_tail_sparse":
        hostile.zero_tail_sparse(tmp_path / "a" / "f.dcm")
    else:
        (tmp_path / "a" / "f.dcm").write_bytes(hostile.part10(hostile.DeflatedExplicitVRLittleEndian, hostile._deflate(b"\0" * (64 << 20))))
    start = time.monotonic()
    try:
        proc = cli("--level", "instance", "--errors", "errors.ndjson", "a", cwd=tmp_path, timeout=6)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kind}: still reading after 6 s (the Rust reader gives up in milliseconds)")
    assert proc.returncode == 0
    [e] = ndjson((tmp_path / "errors.ndjson").read_bytes())
    assert e["reason"] in ("malformed", "truncated")
    assert time.monotonic() - start < 6


# --------------------------------------------------------------------------
# Non-regular files through the Python API


@pytest.mark.parametrize("engine", ["rust", "auto", "pydicom"])
def test_fifo_is_refused_without_blocking(tmp_path, engine):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = f"import fastindex\ntry:\n    fastindex.read_header({str(fifo)!r}, engine={engine!r})\nexcept fastindex.NotIndexed as e:\n    print(e.reason)\n"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"read_header(fifo, engine={engine!r}) blocks on open()")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() in ("not_regular", "unreadable")


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_devices_give_an_answer(device):
    with pytest.raises(NotIndexed):
        fastindex.read_header(device, engine="rust")


# --------------------------------------------------------------------------
# Files that change while read


def test_file_changing_while_read(tmp_path):
    good = hostile.good_files()
    versions = [good[b"good/ct_explicit.dcm"], good[b"good/ct_deflated.dcm"], good[b"good/items.dcm"], b"", b"\0" * 100_000]
    target = tmp_path / "moving.dcm"
    target.write_bytes(versions[0])
    stop = threading.Event()
    changes = [0]

    def mutate() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            data = versions[i % len(versions)]
            how = i % 4
            if how == 0:  # replaced by rename
                tmp = tmp_path / f".new{i % 2}"
                tmp.write_bytes(data)
                os.replace(tmp, target)
            elif how == 1:  # shrinks
                with open(target, "r+b") as f:
                    f.truncate(max(0, os.fstat(f.fileno()).st_size // 3))
            elif how == 2:  # grows
                with open(target, "ab") as f:
                    f.write(data[:4096] or b"\0" * 4096)
            else:  # rewritten in place
                with open(target, "r+b") as f:
                    f.write(data[: len(data) // 2])
            changes[0] += 1

    t = threading.Thread(target=mutate, daemon=True)
    t.start()
    outcomes = {"indexed": 0}
    deadline = time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            for engine in ("rust", "auto"):
                try:
                    r = fastindex.read_header(target, engine=engine)
                except NotIndexed as e:
                    assert e.reason in FILE_REASONS, e
                    outcomes[e.reason] = outcomes.get(e.reason, 0) + 1
                except FileNotFoundError:
                    pass  # between unlink and rename: os.replace is atomic, but be lenient
                else:
                    assert tuple(r) == INSTANCE_FIELDS
                    outcomes["indexed"] += 1
    finally:
        stop.set()
        t.join()
    assert changes[0] > 100 and sum(outcomes.values()) > 50, (changes, outcomes)


def test_cli_on_files_changing_while_read(tmp_path):
    """The same in the pipeline: every file is still accounted for."""
    good = hostile.good_files()[b"good/ct_explicit.dcm"]
    d = tmp_path / "moving"
    d.mkdir()
    names = [d / f"f{i:03}.dcm" for i in range(200)]
    for p in names:
        p.write_bytes(good)
    stop = threading.Event()

    def mutate() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            p = names[i % len(names)]
            if i % 3 == 0:
                p.write_bytes(good[: i % len(good)])
            elif i % 3 == 1:
                with open(p, "ab") as f:
                    f.write(b"\0" * 1000)
            else:
                p.write_bytes(good)

    t = threading.Thread(target=mutate, daemon=True)
    t.start()
    try:
        for _ in range(3):
            proc = cli("--level", "instance", "--errors", "errors.ndjson", "-j2", "moving", cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr.decode()
            indexed = [r["file_path"] for r in ndjson(proc.stdout)]
            listed = [e["file_path"] for e in ndjson((tmp_path / "errors.ndjson").read_bytes())]
            assert sorted(indexed + listed) == sorted(f"moving/{p.name}" for p in names)
    finally:
        stop.set()
        t.join()


# --------------------------------------------------------------------------
# Interruptions and full disks


@pytest.fixture(scope="module")
def slow_tree(tmp_path_factory) -> Path:
    """Good files mixed with damaged ones pydicom takes a while over: a run
    of several seconds that writes records from the start."""
    base = tmp_path_factory.mktemp("slow")
    good = hostile.good_files()[b"good/ct_explicit.dcm"]
    slow = good[: good.index(b"1.2.826.0.1.3680043.9.7433.4.1") - 8] + b"\0" * (128 << 10)
    d = base / "tree"
    d.mkdir()
    for i in range(600):
        (d / f"{i:04}-{'a' if i % 2 else 'b'}.dcm").write_bytes(slow if i % 2 else good)
    return base


def interrupt(cwd: Path, args: list, signum: int, ready, delay: float = 0.2) -> tuple[subprocess.Popen, bytes, bytes]:
    """Start fastindex, wait until `ready(proc)` and `delay` more, send `signum`."""
    proc = subprocess.Popen([sys.executable, "-m", "fastindex", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not ready(proc):
            assert proc.poll() is None and time.monotonic() < deadline, "finished before it could be interrupted"
            time.sleep(0.01)
        time.sleep(delay)
        assert proc.poll() is None, "finished before it could be interrupted"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, out, err


def pipe_full(proc) -> bool:
    """Ready once stdout's pipe is full: fastindex is blocked in a write."""
    n = array.array("i", [0])
    fcntl.ioctl(proc.stdout.fileno(), termios.FIONREAD, n)
    return n[0] >= 60_000


def part_file_in(folder: Path):
    return lambda proc: any(p.name.startswith(".fastindex-") for p in folder.iterdir())


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupted_output_file_is_untouched(slow_tree, signum, code):
    out = slow_tree / "out.ndjson"
    errs = slow_tree / "errors.ndjson"
    out.write_bytes(b"before\n")
    errs.write_bytes(b"errors before\n")
    proc, _, err = interrupt(slow_tree, ["-j1", "tree", "-o", "out.ndjson", "--errors", "errors.ndjson"], signum, part_file_in(slow_tree))
    assert proc.returncode == code, err.decode()[-2000:]
    assert out.read_bytes() == b"before\n"
    assert errs.read_bytes() == b"errors before\n"
    assert not [p for p in slow_tree.iterdir() if p.name.startswith(".fastindex-")]
    assert b"Traceback" not in err


def test_interrupted_stdout_has_no_torn_line(slow_tree):
    """Interrupted while blocked writing to a full pipe: the lines written
    are whole (a short write must be finished, not dropped). Three tries:
    the signal does not always land inside the write."""
    for _ in range(3):
        proc, out, err = interrupt(slow_tree, ["-j1", "--level", "instance", "tree"], signal.SIGINT, pipe_full)
        assert proc.returncode == 130, err.decode()[-2000:]
        assert out.endswith(b"\n"), f"torn line at byte {len(out)}: {out[-200:]!r}"
        records = ndjson(out)
        assert 0 < len(records) < 600
        assert all(tuple(r) == INSTANCE_FIELDS for r in records)
        assert b"Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "/dev/full"],
        ["--level", "instance", "-o", "/dev/full"],
        ["--errors", "/dev/full"],
        ["--level", "instance", "--errors", "/dev/full"],
    ],
    ids=["subseries", "instance", "errors", "instance-errors"],
)
def test_full_disk_fails_clearly(tree, args):
    proc = cli("tree/good", "tree/trunc", *args, cwd=tree.root.parent)
    assert proc.returncode == 1, proc.stderr.decode()
    assert b"No space left on device" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_stdout_on_a_full_disk_fails_clearly(tree):
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "fastindex", "tree/good"], cwd=tree.root.parent, stdout=full, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 1, proc.stderr.decode()
    assert b"No space left on device" in proc.stderr
    assert b"Traceback" not in proc.stderr and b"Exception ignored" not in proc.stderr


def test_interrupted_at_start_leaves_nothing(slow_tree):
    """SIGINT as soon as the temporary output file exists (before the run
    proper): still exit 130, output untouched, no temporary file left."""
    out = slow_tree / "early.ndjson"
    out.write_bytes(b"before\n")
    proc, _, err = interrupt(slow_tree, ["-j1", "tree", "-o", "early.ndjson"], signal.SIGINT, part_file_in(slow_tree), delay=0)
    leftovers = [p.name for p in slow_tree.iterdir() if p.name.startswith(".fastindex-")]
    for name in leftovers:
        os.unlink(slow_tree / name)
    assert out.read_bytes() == b"before\n"
    assert proc.returncode == 130, err.decode()[-2000:]
    assert not leftovers
    assert b"Traceback" not in err


def test_closed_stdout_is_not_a_crash(tree):
    """`fastindex ... | head -c 100`: the reader goes away; no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "fastindex", "--level", "instance", "tree/many"], cwd=tree.root.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    # As ripgrep does: the reader has what it wanted, `set -o pipefail`
    # scripts go on; nothing on stderr.
    assert proc.returncode == 0
    assert err == b"", err.decode()[-2000:]




@pytest.mark.parametrize("fmt", ["ndjson", "csv", "parquet"])
def test_non_utf8_paths_at_subseries_level_in_every_format(tmp_path, fmt):
    """The representative's path, not valid UTF-8, comes back byte for byte."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    name = b"x\xff\xe9 \\ \n.dcm"
    d = tmp_path / "a"
    d.mkdir()
    with open(os.path.join(os.fsencode(d), name), "wb") as f:
        f.write(hostile.good_files()[b"good/mr_utf8.dcm"])
    with open(os.path.join(os.fsencode(d), b"bad\xfe.txt"), "wb") as f:
        f.write(b"junk")
    proc = cli("a", "--format", fmt, "-o", f"out.{fmt}", "--errors", "errors.ndjson", cwd=tmp_path)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr.decode()[-2000:]
    [e] = ndjson((tmp_path / "errors.ndjson").read_bytes())
    assert raw(e["file_path"]) == b"a/bad\xfe.txt"
    out = tmp_path / f"out.{fmt}"
    if fmt == "ndjson":
        [r] = ndjson(out.read_bytes())
        paths = [raw(r["file_path"])]
    elif fmt == "csv":
        import csv

        with open(out, newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = list(csv.DictReader(f))
        paths = [raw(r["file_path"]) for r in rows]
    else:
        import pyarrow.parquet as pq

        paths = [p if isinstance(p, bytes) else raw(p) for p in pq.read_table(out).column("file_path").to_pylist()]
    assert paths == [b"a/" + name]


@pytest.mark.parametrize("follow", [False, True], ids=["no-follow", "follow"])
def test_fifo_is_never_opened(tmp_path, follow):
    """A writer blocked opening a FIFO is released by any reader's open():
    it must still be blocked after the run (and through a followed link)."""
    d = tmp_path / "a"
    d.mkdir()
    fifo = d / "fifo"
    os.mkfifo(fifo)
    os.symlink("fifo", d / "link")
    (d / "good.dcm").write_bytes(hostile.good_files()[b"good/seg.dcm"])
    opened = threading.Event()

    def writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # blocks until a reader opens it
        opened.set()
        os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        args = ["--level", "instance", "--errors", "errors.ndjson", "a"] + (["--follow-symlinks"] if follow else [])
        proc = cli(*args, cwd=tmp_path, timeout=30)
        assert proc.returncode == 0, proc.stderr.decode()
        assert not opened.is_set(), "the FIFO was opened"
        listed = {e["file_path"]: e["reason"] for e in ndjson((tmp_path / "errors.ndjson").read_bytes())}
        assert listed["a/fifo"] == "not_regular"
        assert listed["a/link"] == ("not_regular" if follow else "symlink")
        assert [r["file_path"] for r in ndjson(proc.stdout)] == ["a/good.dcm"]
    finally:
        # Release the writer.
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        t.join(5)
        os.close(fd)
