"""The backbone: for every real file, the Rust path and the pydicom path
give the same per-file record, or the same reason for giving none."""

from __future__ import annotations

import subprocess
import sys

import fastindex
import orjson
import pydicom
import pytest
from corpora import CHARSET_FILES, PYDICOM_FILES, all_files
from fastindex import NotIndexed
from pydicom.uid import generate_uid

FILES = all_files()


#: extra tags of many VRs: DS, IS, US, US or SS, FD, CS, PN, DA, AS, LT,
#: LO; single and multi-valued
EXTRA_TAGS = [
    "PixelSpacing", "Rows", "SliceThickness", "ImageType", "KVP", "InstanceNumber",
    "PatientName", "StudyDate", "SmallestImagePixelValue", "ImagePositionPatient",
    "WindowCenter", "PatientAge", "ImageComments", "DiffusionBValue", "NumberOfFrames",
    "Manufacturer", "OtherPatientNames", "(0028,0101)",
]


def _read(path, engine, tags=None):
    try:
        return fastindex.read_header(path, engine=engine, tags=tags), None
    except NotIndexed as e:
        return None, e.reason


def test_corpora_are_there():
    # A missing corpus would make every parametrized test below vacuous.
    assert len(FILES) > 150
    assert any(p.name == "CT_small.dcm" for p in FILES)
    assert any("highdicom" in p.parts for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_rust_and_pydicom_agree(path, record_schema):
    rust, rust_reason = _read(path, "rust")
    oracle, oracle_reason = _read(path, "pydicom")
    if rust is not None:
        assert oracle_reason is None, f"pydicom gives no record ({oracle_reason}) where Rust does"
        for key in oracle:
            assert rust[key] == oracle[key], key
        assert list(rust) == list(oracle)
        record_schema("instance").validate(rust)
    elif rust_reason in ("no_series_uid", "dicomdir"):
        assert oracle_reason == rust_reason
    elif rust_reason == "not_dicom":
        # pydicom with force=True "reads" anything; it must at least not
        # find an instance where the fast path found no DICOM.
        assert oracle is None
    elif rust_reason == "unsupported":
        # Declined on purpose: the default engine reads it with pydicom.
        assert fastindex.read_header(path) == oracle
    else:
        # Damaged files: the fast path must say why; listed, not dropped.
        assert rust_reason in ("truncated", "malformed"), rust_reason


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_extra_tags_agree(path):
    rust, _ = _read(path, "rust", EXTRA_TAGS)
    if rust is None:
        return  # covered by test_rust_and_pydicom_agree
    oracle, reason = _read(path, "pydicom", EXTRA_TAGS)
    assert reason is None
    for key in oracle:
        assert rust[key] == oracle[key], key
        # 512 == 512.0 and [512] == [512.0]: the JSON tells them apart.
        assert orjson.dumps(rust[key]) == orjson.dumps(oracle[key]), key
    assert list(rust) == list(oracle)


def test_extra_tags_have_their_types():
    """Typed by VR: numbers as numbers, several values as lists."""
    ct = fastindex.read_header(PYDICOM_FILES / "CT_small.dcm", tags=EXTRA_TAGS)
    assert isinstance(ct["Rows"], int) and ct["Rows"] > 0
    assert isinstance(ct["InstanceNumber"], int)
    assert isinstance(ct["KVP"], float)
    assert isinstance(ct["PixelSpacing"], list) and all(isinstance(v, float) for v in ct["PixelSpacing"])
    # Several values allowed (VM 2-n): a list of strings, as numbers are.
    assert ct["ImageType"][0] == "ORIGINAL" and all(isinstance(v, str) for v in ct["ImageType"])
    assert isinstance(ct["PatientName"], str) and ct["PatientName"]
    assert isinstance(ct["BitsStored"], int)
    assert list(ct)[-len(EXTRA_TAGS):] == [t if not t.startswith("(") else "BitsStored" for t in EXTRA_TAGS]


def test_fast_path_reads_nearly_everything():
    """The fallback is for the exotic: on these corpora the Rust reader
    itself must index every file pydicom indexes, but for a handful."""
    declined = []
    for path in FILES:
        rust, reason = _read(path, "rust")
        if rust is None and reason in ("unsupported", "malformed", "truncated"):
            declined.append((path.name, reason))
    assert len(declined) <= 10, declined


def _with_text_fields(src, dst):
    """The charset file with its (non-ASCII) PatientName copied into the
    text fields the record reads, encoded by pydicom in the file's own
    character set, and a series UID so that it is an instance."""
    ds = pydicom.dcmread(src)
    name = str(ds.get("PatientName", "")) or "none"
    ds.PatientID = name[:64]
    ds.StudyDescription = name[:64]
    ds.SeriesDescription = name[:64]
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[src.name])
    ds.save_as(dst)
    return name


CHARSET_DCM = sorted(p for p in CHARSET_FILES.iterdir() if p.suffix == ".dcm")


def test_charset_corpus_is_there():
    assert len(CHARSET_DCM) >= 15


@pytest.mark.parametrize("src", CHARSET_DCM, ids=lambda p: p.name)
def test_text_decodes_like_pydicom(src, tmp_path):
    dst = tmp_path / src.name
    _with_text_fields(src, dst)
    oracle = fastindex.read_header(dst, engine="pydicom")
    assert fastindex.read_header(dst) == oracle
    rust, reason = _read(dst, "rust")
    if rust is not None:
        assert rust == oracle
    else:
        # Only what encoding_rs cannot do exactly is handed to pydicom.
        assert reason == "unsupported"
        charset = pydicom.dcmread(dst).SpecificCharacterSet
        assert "2022" in str(charset), charset


def test_most_charsets_take_the_fast_path(tmp_path):
    fast = 0
    for src in CHARSET_DCM:
        _with_text_fields(src, tmp_path / src.name)
        fast += _read(tmp_path / src.name, "rust")[0] is not None
    assert fast >= len(CHARSET_DCM) // 2, fast


def test_extras_keep_their_types_through_the_fallback(tmp_path):
    """A file only pydicom reads (ISO 2022 text) is the representative of
    its subseries: its extras are typed as the fast path types them (Rows
    an integer, not 512.0; ImageType a list) in the subseries record."""
    src = next(p for p in CHARSET_DCM if "2022" in str(pydicom.dcmread(p).SpecificCharacterSet))
    archive = tmp_path / "a"
    archive.mkdir()
    _with_text_fields(src, archive / "x.dcm")
    ds = pydicom.dcmread(archive / "x.dcm")
    ds.Rows, ds.ImageType, ds.PixelSpacing = 512, ["ORIGINAL", "PRIMARY", "AXIAL"], [0.5, 0.5]
    ds.save_as(archive / "x.dcm")
    assert _read(archive / "x.dcm", "rust")[1] == "unsupported"
    tags = "Rows,ImageType,PixelSpacing,SmallestImagePixelValue"
    proc = subprocess.run([sys.executable, "-m", "fastindex", "--tags", tags, "a"], cwd=tmp_path, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"via pydicom 1," in proc.stderr
    [line] = proc.stdout.splitlines()
    assert line.endswith(b',"Rows":512,"ImageType":["ORIGINAL","PRIMARY","AXIAL"],"PixelSpacing":[0.5,0.5],"SmallestImagePixelValue":null}')
