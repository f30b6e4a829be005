"""The indexer as a Rust crate, without Python: `examples/index.rs` writes
the very bytes the command writes (subseries NDJSON: key order, floats,
escapes, paths that are not UTF-8), for archives the fast path reads
whole; what it declines (the command's pydicom fallback) it lists on
stderr, and the comparison leaves those files out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import hostile
import pytest
from archive import make_archive
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def example() -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("cargo is needed to build the example (make test builds with it)")
    # `cargo test` builds the examples already: this is usually a no-op.
    subprocess.run([cargo, "build", "--quiet", "--example", "index"], cwd=ROOT, check=True)
    return ROOT / "target" / "debug" / "examples" / "index"


def run(cmd: list, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=300)


def declined(stderr: bytes) -> list[bytes]:
    """The display paths the example says need the fallback."""
    marker = b" (needs the pydicom fallback"
    return [line.split(b": ")[0] for line in stderr.splitlines() if marker in line]


def same_bytes(example: Path, cwd: Path, *paths: str) -> bytes:
    """Run both on `paths` (after removing what the example declines) and
    hold their stdout equal; return it."""
    first = run([example, *paths], cwd)
    assert first.returncode in (0, 3), first.stderr
    for display in declined(first.stderr):
        os.unlink(cwd / os.fsdecode(display))
    ours = run([example, *paths], cwd)
    assert ours.returncode == 0, ours.stderr
    theirs = run([sys.executable, "-m", "fastindex", *paths], cwd)
    assert theirs.returncode == 0, theirs.stderr
    assert b"via pydicom 0," in theirs.stderr
    assert ours.stdout == theirs.stdout
    return ours.stdout


def test_the_known_answer_archive(example, tmp_path):
    make_archive(tmp_path / "archive")
    out = same_bytes(example, tmp_path, "archive")
    assert out.count(b"\n") >= 10


def test_the_vendored_real_files(example, tmp_path):
    shutil.copytree(DATA, tmp_path / "data")
    out = same_bytes(example, tmp_path, "data")
    assert out.count(b"\n") >= 5


def test_paths_as_given(example, tmp_path):
    make_archive(tmp_path / "archive")
    same_bytes(example, tmp_path, "./archive/", "archive/p2", str(tmp_path / "archive" / "p1"))


def test_strange_names_and_numbers(example, tmp_path):
    """Names that are not UTF-8 or hold quotes, backslashes, control
    characters and non-ASCII text; DS values whose floats each encoder
    writes its own way (1e-07 / 1e-7, 1e-05 / 0.00001)."""
    base = tmp_path / "archive"
    base.mkdir()
    names = [b"caf\xe9.dcm", "é \"q\" \\ x.dcm".encode(), b"new\nline\x01.dcm", "日本/😀.dcm".encode(), b"plain.dcm"]
    numbers = ["1e-7", "0.00001", "1.5e20", "123456789", "-0", "0.5"]
    for i, name in enumerate(names):
        ds = hostile._ct()
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.9.7433.4.{100 + i}"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7433.2.{100 + i}"
        ds.SeriesDescription = "tab\there \"quoted\" back\\slash"[: 10 + i * 3]
        ds.RepetitionTime = numbers[i % len(numbers)]
        ds.EchoTime = numbers[(i + 1) % len(numbers)]
        ds.MagneticFieldStrength = numbers[(i + 2) % len(numbers)]
        ds.ImageOrientationPatient = [numbers[(i + k) % len(numbers)] for k in range(6)]
        path = os.path.join(os.fsencode(base), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(hostile._save(ds, ExplicitVRLittleEndian if i % 2 else ImplicitVRLittleEndian))
    out = same_bytes(example, tmp_path, "archive")
    assert out.count(b"\n") == len(names)
    assert b"\\udce9" in out  # the path that is not UTF-8
    assert b"1e-7" in out and b"1e-07" in out  # orjson's and Python's json's
