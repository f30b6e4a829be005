"""fastindex.load reads every output format back into pandas, polars and
Arrow with the dictionary's types, where generic loaders guess: an ID
"00000012" stays a string, a description "2019" too, a column whose
first 150 rows are null is still a list of floats."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import fastindex
import orjson
import pytest
from archive import Raw, dataset
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")

TAGS = ["Rows", "ImageType", "PixelSpacing", "InstanceNumber"]
N, NULL_ORIENTATION = 200, 150
ROOT = "1.2.826.0.1.3680043.8.498.4242"
FORMATS = ["ndjson", "csv", "parquet"]
BACKENDS = ["pandas", "polars", "arrow"]


def _write(path, ds: Dataset) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dcmwrite(path, ds, enforce_file_format=True)


def _archive(root) -> None:
    """N one-file series of patient "00000012"; series sort by number, so
    the first NULL_ORIENTATION subseries records have no orientation."""
    root.mkdir()
    for i in range(N):
        later = i >= NULL_ORIENTATION
        ds = dataset(
            SOPClassUID=MRImageStorage,
            SOPInstanceUID=f"{ROOT}.{100 + i}.1",
            StudyDescription="2019",
            SeriesDescription="1e5",
            Modality="MR",
            PatientID="00000012",
            StudyInstanceUID=f"{ROOT}.1",
            SeriesInstanceUID=f"{ROOT}.{100 + i}",
            AcquisitionNumber=Raw("007"),
            InstanceNumber=i,
        )
        if later:
            ds.ImageType = ["ORIGINAL", "PRIMARY"]
            ds.EchoTime = "3.5"
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.Rows = 512
            ds.PixelSpacing = [0.5, 0.5]
        if i == N - 1:
            # A reference: a non-empty reference_series.
            ref = Dataset()
            ref.ReferencedSOPInstanceUID = f"{ROOT}.{100 + NULL_ORIENTATION}.1"
            ds.ReferencedImageSequence = [ref]
        _write(root / f"s{i:03}.dcm", ds)


def _cli(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "fastindex", *args], cwd=cwd, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """{(level, format): path}, written by the CLI; also a copy of each
    without extension, for sniffing."""
    root = tmp_path_factory.mktemp("load")
    _archive(root / "a")
    out = {}
    for level in ("subseries", "instance"):
        for fmt in FORMATS:
            name = f"{level}.{fmt}"
            _cli("--level", level, "--tags", ",".join(TAGS), "--format", fmt, "-o", name, "a", cwd=root)
            out[level, fmt] = root / name
            shutil.copyfile(root / name, root / f"{level}-{fmt}")
    return out


def _records(outputs, level) -> list[dict]:
    """The NDJSON records, as Python's json reads them: the truth."""
    lines = outputs[level, "ndjson"].read_bytes().splitlines()
    return sorted((json.loads(x) for x in lines), key=lambda r: r["file_path"])


def _plain(v):
    """A cell as a JSON value: NaN and NA are null, numpy scalars Python's."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item") and not isinstance(v, (list, str)):
        return v.item()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _rows(frame, backend) -> list[dict]:
    if backend == "arrow":
        rows = frame.to_pylist()
    elif backend == "polars":
        rows = frame.to_dicts()
    else:
        rows = [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]
    return sorted(rows, key=lambda r: r["file_path"])


def _check_types(frame, backend, level):
    if backend == "arrow":
        assert frame.schema == fastindex.schema(level, TAGS, backend="arrow")
        return
    if backend == "polars":
        assert dict(frame.schema) == fastindex.schema(level, TAGS, backend="polars")
        assert frame.schema["patient_ID"] == pl.Utf8
        assert frame.schema["orientation"] == pl.List(pl.Float64)
        return
    dtypes = fastindex.schema(level, TAGS, backend="pandas")
    assert list(frame.columns) == list(dtypes)
    for name, dtype in dtypes.items():
        got = frame[name].dtype
        if dtype is str:
            assert got == pd.Series(["x"], dtype=str).dtype, name
            assert all(isinstance(v, str) for v in frame[name]), name
        else:
            assert got == pd.api.types.pandas_dtype(dtype), (name, got, dtype)
    assert str(frame["Rows"].dtype) == "Int64"
    assert str(frame["InstanceNumber"].dtype) == "Int64"
    assert str(frame["MR_echo_time"].dtype) == "float64"
    if level == "subseries":
        assert str(frame["instances"].dtype) == "int64"


@pytest.mark.parametrize("level", ["subseries", "instance"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("named", [True, False], ids=["extension", "sniffed"])
def test_load_gives_the_records_with_their_types(outputs, level, fmt, backend, named):
    path = outputs[level, fmt] if named else outputs[level, fmt].with_name(f"{level}-{fmt}")
    frame = fastindex.load(path, backend=backend)
    _check_types(frame, backend, level)
    rows = _rows(frame, backend)
    expected = _records(outputs, level)
    assert len(rows) == N
    # Values and their JSON types (512 is not 512.0; "" is not null).
    assert [orjson.dumps(r) for r in rows] == [orjson.dumps(r) for r in expected]
    first, last = rows[0], rows[-1]
    assert first["patient_ID"] == "00000012"
    assert first["study_description"] == "2019"
    assert first["series_description"] == "1e5"
    assert first["subseries"] == "007"
    assert first["orientation"] is None and first["Rows"] is None and first["ImageType"] is None
    assert first["MR_echo_time"] is None and first["orientation_type"] == "" and first["MR_scan_sequence"] == ""
    assert last["orientation"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert last["Rows"] == 512 and last["ImageType"] == ["ORIGINAL", "PRIMARY"] and last["PixelSpacing"] == [0.5, 0.5]
    assert last["InstanceNumber"] == N - 1 and last["MR_echo_time"] == 3.5
    if level == "subseries":
        assert first["instances"] == 1 and first["reference_series"] == [] and first["reference_modality"] == []
        assert last["reference_series"] == [f"{ROOT}.{100 + NULL_ORIENTATION}"] and last["reference_modality"] == ["MR"]


def test_level_can_be_given_and_must_match(outputs):
    assert fastindex.load(outputs["instance", "csv"], level="instance", backend="arrow").num_rows == N
    with pytest.raises(ValueError, match="not fastindex subseries records"):
        fastindex.load(outputs["instance", "csv"], level="subseries")


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_outputs_load_with_their_columns(tmp_path, fmt):
    (tmp_path / "a").mkdir()
    _cli("--format", fmt, "-o", f"x.{fmt}", "a", cwd=tmp_path)
    table = fastindex.load(tmp_path / f"x.{fmt}", backend="arrow")
    assert table.num_rows == 0 and table.schema == fastindex.schema()
    assert fastindex.load(tmp_path / f"x.{fmt}", backend="polars").schema == fastindex.schema(backend="polars")


@pytest.mark.parametrize("fmt", FORMATS)
def test_paths_that_are_not_utf8(tmp_path, fmt):
    """Arrow and polars get the bytes, pandas a str with surrogate escapes:
    os.fsencode gives the bytes back either way."""
    import hostile

    name = b"x\xff\xe9 \\ \n.dcm"
    (tmp_path / "a").mkdir()
    with open(os.path.join(os.fsencode(tmp_path / "a"), name), "wb") as f:
        f.write(hostile.good_files()[b"good/mr_utf8.dcm"])
    _cli("--format", fmt, "-o", f"x.{fmt}", "a", cwd=tmp_path)
    path = tmp_path / f"x.{fmt}"
    assert fastindex.load(path, backend="arrow").column("file_path").to_pylist() == [b"a/" + name]
    assert fastindex.load(path, backend="polars")["folder"].to_list() == [b"a"]
    [p] = fastindex.load(path)["file_path"]
    assert os.fsencode(p) == b"a/" + name


def test_naive_loaders_lose_what_load_keeps(outputs):
    """Why load() exists: guessing types turns IDs into numbers."""
    df = pd.read_json(outputs["subseries", "ndjson"], lines=True)
    assert df["patient_ID"][0] == 12 and df["study_description"][0] == 2019
    df = pd.read_csv(outputs["subseries", "csv"])
    assert df["patient_ID"][0] == 12 and df["subseries"][0] == 7
    with pytest.raises(Exception):  # noqa: B017 (polars raises its own kinds) the first 100 rows make orientation null-typed
        pl.read_ndjson(outputs["subseries", "ndjson"])


DUCKDB_JSON = """
SELECT * FROM read_json('index.ndjson', columns = {
    patient_ID: 'VARCHAR', study: 'VARCHAR', study_description: 'VARCHAR',
    series: 'VARCHAR', series_description: 'VARCHAR', subseries: 'VARCHAR',
    modality: 'VARCHAR', instances: 'BIGINT', instance_uid: 'VARCHAR',
    reference_ct: 'VARCHAR', reference_rs: 'VARCHAR', reference_pl: 'VARCHAR',
    reference_frame: 'VARCHAR', folder: 'VARCHAR', file_path: 'VARCHAR',
    orientation: 'DOUBLE[]', orientation_type: 'VARCHAR',
    MR_repetition_time: 'DOUBLE', MR_echo_time: 'DOUBLE', MR_scan_sequence: 'VARCHAR',
    MR_magnetic_field_strength: 'DOUBLE', MR_imaged_nucleus: 'VARCHAR',
    reference_series: 'VARCHAR[]', reference_modality: 'VARCHAR[]',
    Rows: 'BIGINT', ImageType: 'VARCHAR[]', PixelSpacing: 'DOUBLE[]', InstanceNumber: 'BIGINT'
})
"""

DUCKDB_CSV = r"""
SELECT * REPLACE (
    instances::BIGINT AS instances,
    NULLIF(MR_repetition_time, '')::DOUBLE AS MR_repetition_time,
    NULLIF(MR_echo_time, '')::DOUBLE AS MR_echo_time,
    NULLIF(MR_magnetic_field_strength, '')::DOUBLE AS MR_magnetic_field_strength,
    string_split(NULLIF(orientation, ''), '\')::DOUBLE[] AS orientation,
    CASE reference_series WHEN '' THEN [] ELSE string_split(reference_series, '\') END AS reference_series,
    CASE reference_modality WHEN '' THEN [] ELSE string_split(reference_modality, '\') END AS reference_modality,
    NULLIF(Rows, '')::BIGINT AS Rows,
    string_split(NULLIF(ImageType, ''), '\') AS ImageType,
    string_split(NULLIF(PixelSpacing, ''), '\')::DOUBLE[] AS PixelSpacing,
    NULLIF(InstanceNumber, '')::BIGINT AS InstanceNumber
)
FROM (SELECT COALESCE(COLUMNS(*), '') FROM read_csv('index.csv', all_varchar = true))
"""


def test_readme_recipes(outputs, tmp_path, monkeypatch):
    """The README's ways to read each format from pandas, polars and
    DuckDB without losing types, run as written."""
    duckdb = pytest.importorskip("duckdb")
    for fmt in FORMATS:
        shutil.copyfile(outputs["subseries", fmt], tmp_path / f"index.{fmt}")
    monkeypatch.chdir(tmp_path)
    tags = TAGS
    truth = fastindex.load("index.ndjson", backend="arrow").to_pylist()

    # pandas
    # (dtype=False: no guessing, not even of dates in columns named *_time)
    df = pd.read_json("index.ndjson", lines=True, dtype=False).astype(fastindex.schema(tags=tags, backend="pandas"))
    assert _rows(df, "pandas") == truth
    _check_types(df, "pandas", "subseries")
    df = pd.read_csv("index.csv", dtype=str, keep_default_na=False)
    assert df["patient_ID"][0] == "00000012" and df["subseries"][0] == "007" and df["orientation"][0] == ""
    assert df["orientation"].iloc[-1] == "1.0\\0.0\\0.0\\0.0\\1.0\\0.0"
    df = pd.read_parquet("index.parquet", dtype_backend="numpy_nullable")
    assert df["patient_ID"][0] == "00000012" and str(df["Rows"].dtype) == "Int64" and df["Rows"].iloc[-1] == 512

    # polars
    df = pl.read_ndjson("index.ndjson", schema=fastindex.schema(tags=tags, backend="polars"))
    assert df.to_dicts() == truth
    df = pl.read_csv("index.csv", infer_schema=False).fill_null("")
    assert df.schema["instances"] == pl.Utf8 and df.row(0, named=True)["study_description"] == "2019"
    assert df.row(0, named=True)["orientation_type"] == ""
    assert pl.read_parquet("index.parquet").to_dicts() == truth

    # DuckDB
    for sql in (DUCKDB_JSON, DUCKDB_CSV, "SELECT * FROM read_parquet('index.parquet')"):
        rel = duckdb.sql(sql)
        rows = [dict(zip(rel.columns, row)) for row in rel.fetchall()]
        assert rows == truth, sql
