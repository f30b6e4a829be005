"""CSV and Parquet carry the same rows as NDJSON, readable without options."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from corpora import PYDICOM_FILES, VENDORED, copy_corpora

TAGS = "Rows,PixelSpacing,InstanceNumber,KVP,ImageType"


def run(args, cwd):
    proc = subprocess.run([sys.executable, "-m", "fastindex", *args], cwd=cwd, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    copy_corpora(root / "archive", pydicom=PYDICOM_FILES, vendored=VENDORED)
    return root


@pytest.fixture(scope="module", params=["subseries", "instance"])
def level(request):
    return request.param


@pytest.fixture(scope="module")
def records(tree, level):
    out = run(["--level", level, "--tags", TAGS, "archive"], tree)
    recs = [json.loads(line) for line in out.splitlines()]
    assert len(recs) > 20
    if level == "instance":
        recs.sort(key=lambda r: r["file_path"])
    return recs


def _same(cell, value) -> bool:
    """A table cell equals a record value (lists as lists, blanks as null)."""
    if value is None:
        return cell is None or (isinstance(cell, float) and math.isnan(cell))
    if isinstance(value, list):
        return list(cell) == value
    return cell == value


def test_parquet_round_trip(tree, level, records):
    run(["--level", level, "--tags", TAGS, "--format", "parquet", "-o", f"{level}.parquet", "archive"], tree)
    df = pd.read_parquet(tree / f"{level}.parquet")
    assert list(df.columns) == list(records[0])
    rows = df.to_dict("records")
    if level == "instance":
        rows.sort(key=lambda r: r["file_path"])
    assert len(rows) == len(records)
    for row, rec in zip(rows, records):
        for k, v in rec.items():
            assert _same(row[k], v), (k, row[k], v)
    assert str(df["instance_uid"].dtype) in ("object", "str", "string")
    assert df["Rows"].dtype.kind in "if"  # integer, or float where some are null


def test_csv_round_trip(tree, level, records):
    out = run(["--level", level, "--tags", TAGS, "--format", "csv", "archive"], tree)
    df = pd.read_csv(io.BytesIO(out), dtype=str, keep_default_na=False)
    assert list(df.columns) == list(records[0])
    rows = df.to_dict("records")
    if level == "instance":
        rows.sort(key=lambda r: r["file_path"])
    assert len(rows) == len(records)

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, list):
            return "\\".join(cell(x) for x in v)
        return v if isinstance(v, str) else repr(v)

    for row, rec in zip(rows, records):
        for k, v in rec.items():
            assert row[k] == cell(v), (k, row[k], v)


def test_csv_reads_without_options(tree):
    out = run(["--format", "csv", "archive"], tree)
    df = pd.read_csv(io.BytesIO(out))
    assert len(df) == len(run(["archive"], tree).splitlines())
    # Several values keep DICOM's backslash: one column, not several.
    assert df["orientation"].dropna().str.count(r"\\").eq(5).all()
