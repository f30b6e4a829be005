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


def _instance_records(n: int, odd: set[int] = frozenset()) -> list[dict]:
    """n per-file records; those in `odd` have a path that is not UTF-8."""
    import fastindex

    base = fastindex.read_header(PYDICOM_FILES / "CT_small.dcm", tags=["ImageType", "Rows"])
    out = []
    for i in range(n):
        folder = f"d{i % 7}" + ("\udcff" if i in odd else "")
        out.append(base | {"instance_uid": f"1.2.{i}", "folder": folder, "file_path": f"{folder}/{i:05}.dcm"})
    return out


def _write_parquet(path, records, rows_per_group, monkeypatch, chunk=37):
    from fastindex import write

    monkeypatch.setattr(write.ParquetWriter, "ROWS", rows_per_group)
    sink = write.Output(str(path))
    w = write.ParquetWriter(sink, write.columns("instance", [("ImageType", 0x00080008, "CS", True), ("Rows", 0x00280010, "US", False)]))
    held = 0
    for start in range(0, len(records), chunk):
        w.write(records[start : start + chunk])
        held = max(held, w.held)
    w.finish()
    assert not path.exists()  # written, not committed: the caller commits the outputs together
    sink.commit()
    return held


def test_parquet_is_written_a_row_group_at_a_time(tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    records = _instance_records(350)
    held = _write_parquet(tmp_path / "x.parquet", records, 100, monkeypatch)
    assert held < 100
    f = pq.ParquetFile(tmp_path / "x.parquet")
    assert f.metadata.num_row_groups == 4
    assert f.read().to_pylist() == records


@pytest.mark.parametrize("odd", [{0}, {230}, {349}], ids=["first", "third-group", "last"])
def test_parquet_path_not_utf8_after_row_groups_were_written(tmp_path, monkeypatch, odd):
    """Parquet strings are UTF-8: once a path is not, the path columns of
    the whole file hold bytes, also those of row groups already written."""
    import os

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    records = _instance_records(350, odd)
    _write_parquet(tmp_path / "x.parquet", records, 100, monkeypatch)
    table = pq.read_table(tmp_path / "x.parquet")
    assert table.schema.field("file_path").type == pa.binary()
    assert table.schema.field("folder").type == pa.binary()
    assert table.schema.field("instance_uid").type == pa.string()
    expected = [r | {"folder": os.fsencode(r["folder"]), "file_path": os.fsencode(r["file_path"])} for r in records]
    assert table.to_pylist() == expected


def test_parquet_without_pyarrow_is_an_import_error(tmp_path, monkeypatch):
    from fastindex import write

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    message = r"--format parquet needs pyarrow: pip install 'fastindex-dicom\[parquet\]'"
    with pytest.raises(ImportError, match=message):
        write.ParquetWriter.check()
    with pytest.raises(ImportError, match=message):
        write.ParquetWriter(write.Output(str(tmp_path / "x.parquet")), write.columns("subseries", []))


def test_parquet_of_no_records_has_the_columns(tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    from fastindex import write

    _write_parquet(tmp_path / "x.parquet", [], 100, monkeypatch)
    table = pq.read_table(tmp_path / "x.parquet")
    assert table.num_rows == 0
    assert table.schema.names == [n for n, _ in write.columns("instance", [])] + ["ImageType", "Rows"]
