"""The command as a user runs it, on real files: accounting, output
purity, ordering, determinism, atomic output, exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from corpora import CHARSET_FILES, PYDICOM_FILES, VENDORED, copy_corpora, files_under
from fastindex import INSTANCE_FIELDS, SUBSERIES_FIELDS

SUMMARY = re.compile(
    r"fastindex: seen (\d+), indexed (\d+), skipped (\d+)(?: \([^)]*\))?, not DICOM (\d+), errors (\d+)"
)


def fastindex(*args, cwd, check=True):
    proc = subprocess.run([sys.executable, "-m", "fastindex", *map(str, args)], cwd=cwd, capture_output=True)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """pydicom's test files, charset files and the files vendored in
    tests/data, copied into one archive (cwd = its parent)."""
    root = tmp_path_factory.mktemp("cli")
    copy_corpora(root / "archive", pydicom=PYDICOM_FILES, charset=CHARSET_FILES, vendored=VENDORED)
    return root


def summary_counts(stderr: bytes) -> tuple[int, ...]:
    last = stderr.decode().strip().splitlines()[-1]
    m = SUMMARY.match(last)
    assert m, last
    return tuple(int(g) for g in m.groups())


def test_every_file_indexed_or_listed(tree, record_schema):
    proc = fastindex("--level", "instance", "--errors", "errors.ndjson", "archive", cwd=tree)
    records = lines(proc.stdout)
    errors = lines((tree / "errors.ndjson").read_bytes())
    on_disk = {str(p.relative_to(tree)) for p in files_under(tree / "archive")}
    indexed = {r["file_path"] for r in records}
    listed = {e["file_path"] for e in errors}
    assert not indexed & listed
    assert indexed | listed == on_disk
    assert len(records) == len(indexed) and len(errors) == len(listed)
    seen, n_indexed, skipped, not_dicom, n_errors = summary_counts(proc.stderr)
    assert seen == len(on_disk) == n_indexed + skipped + not_dicom + n_errors
    assert n_indexed == len(records)
    for r in records:
        assert tuple(r) == INSTANCE_FIELDS
        record_schema("instance").validate(r)
    for e in errors:
        assert set(e) == {"file_path", "reason", "message"} and e["message"]
    reasons = {e["reason"] for e in errors}
    assert reasons <= {"not_dicom", "no_series_uid", "dicomdir", "truncated", "malformed", "unsupported"}


def test_subseries_records_sorted_and_valid(tree, record_schema):
    proc = fastindex("archive", cwd=tree)
    records = lines(proc.stdout)
    assert len(records) > 20
    keys = [(r["patient_ID"], r["study"], r["series"], r["subseries"]) for r in records]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    for r in records:
        assert tuple(r) == SUBSERIES_FIELDS
        record_schema("subseries").validate(r)
    # The representative is the smallest path of its subseries.
    per_file = lines(fastindex("--level", "instance", "archive", cwd=tree).stdout)
    for r in records:
        members = [f["file_path"] for f in per_file if (f["patient_ID"], f["study"], f["series"], f["subseries"]) == (r["patient_ID"], r["study"], r["series"], r["subseries"])]
        assert r["file_path"] == min(members, key=lambda s: s.encode())
        assert r["instances"] == len({f["instance_uid"] for f in per_file if f["file_path"] in members})


def test_output_identical_whatever_the_parallelism(tree):
    # Several runs: hash-map order and thread timing change from run to
    # run, and a single pair of runs can agree by luck.
    runs = {fastindex(f"-j{j}", "archive", cwd=tree).stdout for j in (1, 4, 2, 4, 3, 1, 4)}
    assert len(runs) == 1 and runs.pop()


def test_stdout_is_only_ndjson_and_stderr_ends_with_summary(tree):
    proc = fastindex("archive/pydicom", cwd=tree)
    for line in proc.stdout.splitlines():
        assert isinstance(json.loads(line), dict)
    assert proc.stdout.endswith(b"\n")
    summary_counts(proc.stderr)


def test_output_file_is_complete_or_absent(tree):
    stdout = fastindex("archive/vendored", cwd=tree).stdout
    fastindex("archive/vendored", "-o", "out.ndjson", cwd=tree)
    assert (tree / "out.ndjson").read_bytes() == stdout
    proc = fastindex("archive/vendored", "-o", "missing/out.ndjson", cwd=tree, check=False)
    assert proc.returncode == 1 and not (tree / "missing").exists()
    assert not [p for p in tree.iterdir() if p.name.startswith(".fastindex-")]


def test_full_disk_fails_loudly(tree):
    proc = fastindex("archive/vendored", "-o", "/dev/full", cwd=tree, check=False)
    assert proc.returncode == 1
    assert b"No space left" in proc.stderr


def test_missing_path_is_fatal(tree):
    proc = fastindex("no/such/dir", cwd=tree, check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert b"no such file" in proc.stderr


def test_relative_to_changes_paths(tree):
    records = lines(fastindex("archive/vendored/highdicom", "--relative-to", "archive", cwd=tree).stdout)
    assert records and all(r["file_path"].startswith("vendored/highdicom/") for r in records)
    assert all(r["folder"] == "vendored/highdicom" for r in records)


def test_real_seg_references_real_ct(tmp_path):
    """highdicom's SEG segments pydicom's dicomdirtests CT2 series."""
    ct_dir = PYDICOM_FILES / "dicomdirtests" / "77654033" / "CT2"
    shutil.copytree(ct_dir, tmp_path / "archive" / "ct")
    (tmp_path / "archive" / "seg").mkdir()
    shutil.copy(VENDORED / "highdicom" / "seg_image_ct_binary.dcm", tmp_path / "archive" / "seg")
    records = lines(fastindex("archive", cwd=tmp_path).stdout)
    ct_series = pydicom.dcmread(next(ct_dir.iterdir())).SeriesInstanceUID
    [seg] = [r for r in records if r["modality"] == "SEG"]
    cts = [r for r in records if r["modality"] == "CT"]
    assert {ct["series"] for ct in cts} == {ct_series}
    assert seg["reference_ct"] == ct_series
    assert seg["folder"] == "archive/seg"
    # CT2 changes AcquisitionNumber mid-series: one record per subseries.
    assert len(cts) == len({pydicom.dcmread(p).AcquisitionNumber for p in ct_dir.iterdir()}) > 1
    assert sum(ct["instances"] for ct in cts) == len(os.listdir(ct_dir))
