"""Property tests: data sets built with pydicom from random subsets of the
dictionary's fields, random text, UIDs and numbers, random nesting of the
reference sequences, in a random transfer syntax, written, then read by
both engines. The Rust reader must give what pydicom gives, and both must
give back the values that went in (as the dictionary normalises them)."""

from __future__ import annotations

import io
import os
import tempfile
import warnings

import fastindex
import pydicom
from fastindex import INSTANCE_FIELDS, NotIndexed
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

#: examples per property; FASTINDEX_EXAMPLES=5000 for a long run
EXAMPLES = int(os.environ.get("FASTINDEX_EXAMPLES", "150"))

SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]

#: SpecificCharacterSet -> extra characters its text may hold beyond ASCII
CHARSETS = {
    None: "",
    "ISO_IR 100": "àéîõüßÆØÅñÇ¿¡°±µ",
    "ISO_IR 192": "àéü€漢字日本語한국어Ωπ😀",
    "ISO_IR 144": "АБВГДЕЖЗИЙКЛМНабвгдежзийклмн",
    "GB18030": "中文字符医学影像",
}

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "\\")

uid_parts = st.integers(0, 99999).map(str)
uids = st.lists(uid_parts, min_size=2, max_size=10).map(lambda p: "1.2." + ".".join(p)).filter(lambda u: len(u) <= 64)

DS_ODD = st.sampled_from(["1e3", "+.5", "-0", " 2.5 ", "1.5E-2", "007", "1.", "-.25"])
ds_values = st.one_of(st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.6g}"), st.integers(-9999, 9999).map(str), DS_ODD)


def texts(charset: str | None, max_size: int = 64):
    return st.text(alphabet=PRINTABLE + CHARSETS[charset], max_size=max_size)


def trim(s: str) -> str:
    return s.lstrip(" ").rstrip(" \0")


def maybe(strategy):
    return st.one_of(st.none(), strategy)


@st.composite
def items(draw, make, max_items: int = 3):
    """A sequence of 0..max_items items, the first made by `make`, the
    others random decoys, each perhaps holding an unwanted nested sequence."""
    n = draw(st.integers(0, max_items))
    out = []
    for i in range(n):
        item = draw(make) if i == 0 else Dataset()
        if i > 0 and draw(st.booleans()):
            item.ReferencedSOPInstanceUID = draw(uids)
        if draw(st.booleans()):
            # Unwanted nesting inside a wanted item.
            inner = Dataset()
            inner.ReferencedSOPInstanceUID = draw(uids)
            if draw(st.booleans()):
                inner.ReferencedImageSequence = Sequence([Dataset()])
            item.ReferencedInstanceSequence = Sequence([inner])
        out.append(item)
    return Sequence(out)


def _ref_sop():
    return st.builds(lambda u: _ds(ReferencedSOPInstanceUID=u) if u else Dataset(), maybe(uids))


def _ds(**kw) -> Dataset:
    d = Dataset()
    for k, v in kw.items():
        setattr(d, k, v)
    return d


@st.composite
def rt_chain(draw):
    """ReferencedFrameOfReferenceSequence > RTReferencedStudySequence >
    RTReferencedSeriesSequence > SeriesInstanceUID, cut at a random level."""
    series = st.builds(lambda u: _ds(SeriesInstanceUID=u) if u else Dataset(), maybe(uids))
    study = st.builds(lambda s: _ds(RTReferencedSeriesSequence=s), items(series))
    frame = st.builds(
        lambda s, f: _ds(RTReferencedStudySequence=s, **({"FrameOfReferenceUID": f} if f else {})),
        items(study),
        maybe(uids),
    )
    return draw(items(frame))


@st.composite
def datasets(draw):
    charset = draw(st.sampled_from(list(CHARSETS)))
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = draw(st.sampled_from(["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.481.3", "1.2.840.10008.5.1.4.1.1.66.4"]))
    optional = {
        "SOPInstanceUID": uids,
        "Modality": st.sampled_from(["CT", "MR", "RTSTRUCT", "SEG", "RTDOSE", "PT", "OT"]),
        "StudyDescription": texts(charset),
        "SeriesDescription": texts(charset),
        "PatientID": texts(charset),
        "StudyInstanceUID": uids,
        "AcquisitionNumber": st.integers(0, 99999),
        "FrameOfReferenceUID": uids,
        "ImageOrientationPatient": st.lists(ds_values, min_size=6, max_size=6),
        "AnatomicalOrientationType": st.sampled_from(["BIPED", "QUADRUPED"]),
        "RepetitionTime": ds_values,
        "EchoTime": ds_values,
        "ScanningSequence": st.lists(st.sampled_from(["SE", "IR", "GR", "EP", "RM"]), min_size=1, max_size=3),
        "MagneticFieldStrength": ds_values,
        "ImagedNucleus": st.sampled_from(["1H", "31P", "13C"]),
        "ReferencedImageSequence": items(_ref_sop()),
        "ReferencedSeriesSequence": items(st.builds(lambda u: _ds(SeriesInstanceUID=u) if u else Dataset(), maybe(uids))),
        "ReferencedStructureSetSequence": items(_ref_sop()),
        "ReferencedRTPlanSequence": items(_ref_sop()),
        "ReferencedFrameOfReferenceSequence": rt_chain(),
    }
    for keyword, strategy in optional.items():
        if draw(st.booleans()):
            setattr(ds, keyword, draw(strategy))
    # Nearly always an instance; sometimes not (both engines must skip it).
    series = draw(st.sampled_from(["uid"] * 8 + ["empty", "absent"]))
    if series == "uid":
        ds.SeriesInstanceUID = draw(uids)
    elif series == "empty":
        ds.SeriesInstanceUID = ""
    # Undefined lengths, at random, for every sequence and item.
    undefined = draw(st.booleans())
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = undefined
            for item in elem.value:
                item.is_undefined_length_sequence_item = undefined
    return ds


def write(ds: Dataset, syntax: str, part10: bool) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if part10:
            ds = ds.copy()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "1.2.3.4")
            meta.TransferSyntaxUID = syntax
            ds.file_meta = meta
            ds.save_as(buf, enforce_file_format=True)
        else:
            pydicom.dcmwrite(buf, ds, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=syntax != ExplicitVRBigEndian)
    return buf.getvalue()


def first(seq_name: str, ds: Dataset):
    seq = ds.get(seq_name)
    return seq[0] if seq else None


def expected(ds: Dataset, syntax: str, display: str) -> dict:
    """The per-file record the dictionary says `ds` has."""

    def text(d, keyword) -> str:
        if d is None or keyword not in d:
            return ""
        v = d[keyword].value
        if isinstance(v, (list, pydicom.multival.MultiValue)):
            return "\\".join(trim(str(x)) for x in v)
        return trim(str(v))

    def number(keyword):
        if keyword not in ds:
            return None
        return float(str(ds[keyword].value).strip())

    rt = first("ReferencedFrameOfReferenceSequence", ds)
    study = first("RTReferencedStudySequence", rt) if rt is not None else None
    series = first("RTReferencedSeriesSequence", study) if study is not None else None
    reference_ct = text(series, "SeriesInstanceUID") or text(first("ReferencedSeriesSequence", ds), "SeriesInstanceUID") or text(first("ReferencedImageSequence", ds), "ReferencedSOPInstanceUID")
    orientation = [float(str(v).strip()) for v in ds.ImageOrientationPatient] if "ImageOrientationPatient" in ds else None
    return {
        "patient_ID": text(ds, "PatientID"),
        "study": text(ds, "StudyInstanceUID"),
        "study_description": text(ds, "StudyDescription"),
        "series": text(ds, "SeriesInstanceUID"),
        "series_description": text(ds, "SeriesDescription"),
        "subseries": text(ds, "AcquisitionNumber") or "default",
        "modality": text(ds, "Modality"),
        "instance_uid": text(ds, "SOPInstanceUID"),
        "reference_ct": reference_ct,
        "reference_rs": text(first("ReferencedStructureSetSequence", ds), "ReferencedSOPInstanceUID"),
        "reference_pl": text(first("ReferencedRTPlanSequence", ds), "ReferencedSOPInstanceUID"),
        "reference_frame": text(ds, "FrameOfReferenceUID") or text(rt, "FrameOfReferenceUID"),
        "folder": os.path.dirname(display) or ".",
        "file_path": display,
        "orientation": orientation,
        "orientation_type": text(ds, "AnatomicalOrientationType"),
        "MR_repetition_time": number("RepetitionTime"),
        "MR_echo_time": number("EchoTime"),
        "MR_scan_sequence": text(ds, "ScanningSequence"),
        "MR_magnetic_field_strength": number("MagneticFieldStrength"),
        "MR_imaged_nucleus": text(ds, "ImagedNucleus"),
        "sop_class_uid": text(ds, "SOPClassUID"),
        "transfer_syntax": syntax,
    }


def read(path: str, engine: str):
    try:
        return fastindex.read_header(path, engine=engine), None
    except NotIndexed as e:
        return None, e.reason


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ds=datasets(), syntax=st.sampled_from(SYNTAXES), part10=st.booleans())
def test_rust_equals_pydicom_and_values_round_trip(ds, syntax, part10):
    if syntax == DeflatedExplicitVRLittleEndian:
        part10 = True  # deflate is only said in the meta group
    data = write(ds, syntax, part10)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f.dcm")
        with open(path, "wb") as f:
            f.write(data)
        rust, rust_reason = read(path, "rust")
        oracle, oracle_reason = read(path, "pydicom")
    assert (rust_reason, rust) == (oracle_reason, oracle)
    event(f"{syntax} part10={part10} charset={ds.get('SpecificCharacterSet')} -> {rust_reason or 'indexed'}")
    if not ds.get("SeriesInstanceUID"):
        assert rust_reason == "no_series_uid"
        return
    assert rust_reason is None, rust_reason
    assert tuple(rust) == INSTANCE_FIELDS
    want = expected(ds, syntax, path)
    want["file_path"], want["folder"] = rust["file_path"], rust["folder"]
    assert rust == want


@settings(max_examples=max(10, EXAMPLES // 4), deadline=None)
@given(ds=datasets(), syntax=st.sampled_from(SYNTAXES), cut=st.floats(0.3, 0.999))
def test_cut_files_never_give_a_record_in_rust(ds, syntax, cut):
    """A Part 10 file cut anywhere after its meta group is an error (never a
    partial record) in the fast path, or a whole record when the cut falls
    after every wanted tag."""
    ds.SeriesInstanceUID = "1.2.3.4.5"
    data = write(ds, syntax, True)
    data = data[: max(140, int(len(data) * cut))]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f.dcm")
        with open(path, "wb") as f:
            f.write(data)
        rust, reason = read(path, "rust")
    assert rust is None or rust["series"] == "1.2.3.4.5"
    assert reason in (None, "truncated", "malformed", "no_series_uid")
