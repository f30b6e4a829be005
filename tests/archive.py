"""A small DICOM archive with known answers, for fastindex's tests.

`make_archive(root)` writes a few dozen files under `root` with pydicom and
returns an `Expected` that says, for every file written, what fastindex must
report: the per-file record for files that are indexed, the reason for files
that are not, and the subseries records of the default output.

Every expected value below is written out by hand from
docs/dictionary.md (the contract), not computed by a reader, so the
archive checks a reader instead of agreeing with one. The archive covers:

- a CT series split into two subseries (AcquisitionNumber 1 and 2), with one
  slice copied twice into the archive (same SOPInstanceUID);
- the RT chain RTSTRUCT -> CT series, RTPLAN -> RTSTRUCT, RTDOSE -> RTPLAN and
  RTSTRUCT, and a SEG -> CT series; the RTSTRUCT's frame of reference only
  exists inside ReferencedFrameOfReferenceSequence;
- MR series referencing a localizer (stored without file extension) through
  the first item of ReferencedImageSequence, multi-valued ScanningSequence,
  and DS values that do not parse;
- a PET series written as bare data sets (no preamble, no meta header);
- implicit/explicit VR little endian, explicit big endian, deflated, JPEG-LS;
- ISO_IR 100 and ISO_IR 192 text, values padded with spaces and NULs;
- junk: random bytes, a text file named .dcm, an empty file, a DICOMDIR and
  a DICOM object without SeriesInstanceUID.

Generation is deterministic: the same bytes every run, whatever the machine.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import config, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    RTDoseStorage,
    RTPlanStorage,
    RTStructureSetStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)
from support.rt import rtdose_refs, rtplan_refs, rtstruct_refs

# --------------------------------------------------------------------------
# The record layout (dictionary.md "Fields, in order" and interface.md)

FIELDS = [
    "patient_ID",
    "study",
    "study_description",
    "series",
    "series_description",
    "subseries",
    "modality",
    "instances",
    "instance_uid",
    "reference_ct",
    "reference_rs",
    "reference_pl",
    "reference_frame",
    "folder",
    "file_path",
    "orientation",
    "orientation_type",
    "MR_repetition_time",
    "MR_echo_time",
    "MR_scan_sequence",
    "MR_magnetic_field_strength",
    "MR_imaged_nucleus",
]
# Subseries records carry two extension fields after the dictionary's 22.
EXTENSION_FIELDS = ["reference_series", "reference_modality"]
SUBSERIES_FIELDS = FIELDS + EXTENSION_FIELDS
# Per-file records (--level instance): no `instances`, two fields at the end.
INSTANCE_FIELDS = [f for f in FIELDS if f != "instances"] + [
    "sop_class_uid",
    "transfer_syntax",
]
NUMBER_FIELDS = {
    "MR_repetition_time",
    "MR_echo_time",
    "MR_magnetic_field_strength",
}
# What each field holds when its source is absent.
BLANK = {f: "" for f in INSTANCE_FIELDS} | {f: None for f in NUMBER_FIELDS}
BLANK |= {"orientation": None, "subseries": "default"}

# Reasons a file is not indexed (interface.md, --errors).
SKIP_REASONS = {"no_series_uid", "dicomdir", "not_regular"}
NOT_DICOM_REASONS = {"not_dicom"}

# --------------------------------------------------------------------------
# UIDs. Fixed, so that tests can name them; some have an odd length so that
# pydicom pads them with a NUL byte, which readers must remove.

_ROOT = "1.2.826.0.1.3680043.8.498.7719"


def _uid(suffix: str) -> str:
    return f"{_ROOT}.{suffix}"


PATIENT_1 = "PAT001"
STUDY_1 = _uid("1")
CT_SERIES = _uid("1.1")
CT_FRAME = _uid("1.9")
CT_SOP = {n: _uid(f"1.1.{n}") for n in range(1, 6)}
RS_SERIES, RS_SOP = _uid("1.2"), _uid("1.2.1")
RP_SERIES, RP_SOP = _uid("1.3"), _uid("1.3.1")
RD_SERIES, RD_SOP = _uid("1.4"), _uid("1.4.1")
SEG_SERIES, SEG_SOP = _uid("1.5"), _uid("1.5.1")
# A PET/CT: the PET shares the CT's frame of reference, which is how its
# reference_series finds the CT (it references no instance).
PT_SERIES, PT_FRAME = _uid("1.6"), CT_FRAME
PT_SOP = {n: _uid(f"1.6.{n}") for n in (1, 2)}
NOSERIES_SOP = _uid("1.7.1")

PATIENT_2 = "PAT002"
STUDY_2 = _uid("2")
MR_FRAME = _uid("2.9")
LOC_SERIES = _uid("2.1")
LOC_SOP = {n: _uid(f"2.1.{n}") for n in (1, 2)}
MR1_SERIES = _uid("2.2")
MR1_SOP = {n: _uid(f"2.2.{n}") for n in (1, 2)}
MR2_SERIES, MR2_SOP = _uid("2.3"), _uid("2.3.1")

PATIENT_LATIN = "MÜLLER-01"
LATIN_STUDY, LATIN_SERIES, LATIN_SOP = _uid("3"), _uid("3.1"), _uid("3.1.1")
PATIENT_UTF8 = "UTF8-01"
UTF8_STUDY, UTF8_SERIES, UTF8_SOP = _uid("4"), _uid("4.1"), _uid("4.1.1")
LOOSE_STUDY, LOOSE_SERIES, LOOSE_SOP = _uid("5"), _uid("5.1"), _uid("5.1.1")

# Which series refers to which (the extension fields), with the modality of
# the series referred to: RTSTRUCT→CT (nested series UID), RTPLAN→RTSTRUCT
# and RTDOSE→RTPLAN+RTSTRUCT (SOP UIDs resolved), SEG→CT (series UID),
# PET→CT (same frame of reference, no reference of its own), MR→localizer
# (ReferencedImageSequence SOP UID).
LINKS = {
    RS_SERIES: {CT_SERIES: "CT"},
    RP_SERIES: {RS_SERIES: "RTSTRUCT"},
    RD_SERIES: {RP_SERIES: "RTPLAN", RS_SERIES: "RTSTRUCT"},
    SEG_SERIES: {CT_SERIES: "CT"},
    PT_SERIES: {CT_SERIES: "CT"},
    MR1_SERIES: {LOC_SERIES: "MR"},
}

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
OBLIQUE_TEXT = "0.99985\\-0.0174524\\0\\0.0174524\\0.99985\\0"
OBLIQUE = [0.99985, -0.0174524, 0.0, 0.0174524, 0.99985, 0.0]

# --------------------------------------------------------------------------
# What the caller gets back


@dataclass
class ArchiveFile:
    """One file written into the archive and what fastindex must say of it."""

    path: str  # relative to the archive root, '/' separators
    label: str  # short unique name tests use to pick the file
    record: dict | None  # expected per-file record, folder/file_path left blank
    reason: str | None = None  # why it is not indexed (record is None)
    warnings: int = 0  # number values that do not parse
    bare: bool = False  # written without preamble and meta header


@dataclass
class Expected:
    """Known answers for an archive written by `make_archive`.

    Paths in records are relative to `base` (by default the parent of the
    archive root, so they read "archive/..."); every method takes another
    base for `--relative-to`.
    """

    root: Path
    base: Path
    files: list[ArchiveFile] = field(default_factory=list, repr=False)

    def file_path(self, f: ArchiveFile, base: Path | None = None) -> str:
        rel = os.path.relpath(self.root / f.path, base or self.base)
        return rel.replace(os.sep, "/")

    def by_label(self, label: str) -> ArchiveFile:
        (found,) = [f for f in self.files if f.label == label]
        return found

    @property
    def indexed(self) -> list[ArchiveFile]:
        return [f for f in self.files if f.record is not None]

    @property
    def not_indexed(self) -> list[ArchiveFile]:
        return [f for f in self.files if f.record is None]

    def instance_record(self, f: ArchiveFile, base: Path | None = None) -> dict:
        path = self.file_path(f, base)
        folder = path.rpartition("/")[0] or "."
        return f.record | {"folder": folder, "file_path": path}

    def instance_records(self, base: Path | None = None) -> dict[str, dict]:
        """Per-file records of the indexed files, keyed by file_path."""
        records = (self.instance_record(f, base) for f in self.indexed)
        return {r["file_path"]: r for r in records}

    def reasons(self, base: Path | None = None) -> dict[str, str]:
        """file_path -> reason, for every file that is not indexed."""
        return {self.file_path(f, base): f.reason for f in self.not_indexed}

    def subseries_records(self, base: Path | None = None) -> list[dict]:
        """The default output: one record per subseries, sorted."""
        groups: dict[tuple, list[dict]] = {}
        for r in self.instance_records(base).values():
            key = (r["patient_ID"], r["study"], r["series"], r["subseries"])
            groups.setdefault(key, []).append(r)
        out = []
        for key in sorted(groups):
            members = groups[key]
            # The representative is the smallest file_path byte-wise.
            rep = min(members, key=lambda r: r["file_path"].encode())
            distinct = len({r["instance_uid"] for r in members})
            rec = {f: rep[f] for f in FIELDS if f != "instances"}
            rec["instances"] = distinct
            links = self.links(rep["series"])
            rec["reference_series"] = sorted(links)
            rec["reference_modality"] = [links[s] for s in sorted(links)]
            out.append({f: rec[f] for f in SUBSERIES_FIELDS})
        return out

    def links(self, series: str) -> dict[str, str]:
        """The series a series refers to, with their modalities: by hand,
        from how the archive was written (see LINKS)."""
        return LINKS.get(series, {})

    def count(self, reasons: set[str]) -> int:
        return sum(1 for f in self.not_indexed if f.reason in reasons)

    @property
    def warnings(self) -> int:
        """Files that must count a warning (a number that does not parse)."""
        return sum(1 for f in self.files if f.warnings)

    @property
    def duplicates(self) -> int:
        """Indexed files whose SOPInstanceUID another indexed file has too."""
        uids = [f.record["instance_uid"] for f in self.indexed]
        return len(uids) - len(set(uids))


# --------------------------------------------------------------------------
# Building data sets


class Raw(str):
    """A value written exactly as given, bypassing pydicom's normalisation.

    pydicom strips padding from UIDs and numbers and refuses a DS that does
    not parse; real archives have both, so some values must be planted as is.
    """


def dataset(**elements) -> Dataset:
    """A data set from keyword=value pairs; Raw values are written verbatim."""
    ds = Dataset()
    for keyword, value in elements.items():
        if isinstance(value, Raw):
            tag = tag_for_keyword(keyword)
            elem = DataElement(tag, dictionary_VR(tag), None)
            elem._value = str(value)  # skip conversion: the writer emits str as is
            ds[tag] = elem
        else:
            setattr(ds, keyword, value)
    return ds


def record(**values) -> dict:
    """An expected per-file record: blanks, then the given fields."""
    unknown = set(values) - set(INSTANCE_FIELDS)
    assert not unknown, unknown
    # pydicom's UID constants are str subclasses; records hold plain JSON types.
    plain = {k: str(v) if isinstance(v, str) else v for k, v in values.items()}
    return {f: plain.get(f, BLANK[f]) for f in INSTANCE_FIELDS}


@contextlib.contextmanager
def _lenient_pydicom():
    """Let pydicom write the invalid values real archives contain."""
    saved = (
        config.settings.reading_validation_mode,
        config.settings.writing_validation_mode,
    )
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    try:
        yield
    finally:
        (
            config.settings.reading_validation_mode,
            config.settings.writing_validation_mode,
        ) = saved


def _pixels(rows: int = 2, cols: int = 2) -> dict:
    """Native 16-bit pixel data, so that readers must get past (or stop at) it."""
    return dict(
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        Rows=rows,
        Columns=cols,
        BitsAllocated=16,
        BitsStored=12,
        HighBit=11,
        PixelRepresentation=0,
        PixelData=bytes(range(rows * cols * 2)),
    )


class _Writer:
    def __init__(self, expected: Expected):
        self.expected = expected
        self.root = expected.root

    def _add(self, path: str, **kw) -> None:
        self.expected.files.append(ArchiveFile(path=path, **kw))

    def dicom(
        self,
        path: str,
        label: str,
        ds: Dataset,
        syntax: str,
        expect: dict,
        *,
        bare: bool = False,
        warnings: int = 0,
    ) -> None:
        """Write `ds` as a Part 10 file, or as a bare data set if `bare`."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if bare:
            # No preamble, no 'DICM', no meta header: just the data set.
            assert syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian)
            implicit = syntax == ImplicitVRLittleEndian
            dcmwrite(target, ds, implicit_vr=implicit, little_endian=True)
        else:
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = syntax
            dcmwrite(target, ds, enforce_file_format=True)
        expect = expect | {"transfer_syntax": syntax}
        self._add(
            path, label=label, record=record(**expect), warnings=warnings, bare=bare
        )

    def copy(self, source: str, path: str, label: str) -> None:
        """A second copy of an indexed file (same SOPInstanceUID)."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / source, target)
        original = next(f for f in self.expected.files if f.path == source)
        self._add(path, label=label, record=dict(original.record))

    def other(self, path: str, label: str, data: bytes, reason: str) -> None:
        """A file that is not indexed, with the reason fastindex must give."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self._add(path, label=label, record=None, reason=reason)


# --------------------------------------------------------------------------
# The archive


def make_archive(root: Path, base: Path | None = None) -> Expected:
    """Write the archive under `root` (created) and return its known answers.

    Paths in the expected records are relative to `base`, by default
    `root.parent` (run fastindex from there on `root.name`).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    expected = Expected(root=root, base=Path(base) if base else root.parent)
    w = _Writer(expected)
    with _lenient_pydicom():
        _write_ct(w)
        _write_rt_and_seg(w)
        _write_pet(w)
        _write_mr(w)
        _write_charsets_and_loose(w)
        _write_not_indexed(w)
    return expected


# Patient 1 ---------------------------------------------------------------

_P1 = dict(PatientName="Doe^Jane", PatientID=PATIENT_1, StudyInstanceUID=STUDY_1)
_P1_EXPECT = dict(patient_ID=PATIENT_1, study=STUDY_1, study_description="Thorax CT")


def _write_ct(w: _Writer) -> None:
    """Two subseries of one CT series, every transfer syntax, one duplicate.

    File names sort byte-wise, not naturally: slice_10 comes before slice_2,
    so slice_10 is the representative of acquisition 1.
    """

    def ct(sop: int, acquisition: str, **extra) -> Dataset:
        return dataset(
            SOPClassUID=CTImageStorage,
            SOPInstanceUID=CT_SOP[sop],
            Modality="CT",
            # Leading/trailing spaces and a NUL that readers must trim.
            StudyDescription="  Thorax CT  ",
            SeriesDescription="Axial 2.5mm\x00",
            **_P1,
            SeriesInstanceUID=CT_SERIES,
            AcquisitionNumber=Raw(acquisition),
            InstanceNumber=sop,
            ImageOrientationPatient=["1", "0", "0", "0", "1", "0"],
            FrameOfReferenceUID=CT_FRAME,
            **extra,
        )

    def expect(sop: int, acquisition: str) -> dict:
        return dict(
            _P1_EXPECT,
            series=CT_SERIES,
            series_description="Axial 2.5mm",
            subseries=acquisition,
            modality="CT",
            instance_uid=CT_SOP[sop],
            reference_frame=CT_FRAME,
            orientation=AXIAL,
            sop_class_uid=CTImageStorage,
        )

    ct_files = [
        # name, sop, AcquisitionNumber as stored, expected text, syntax
        ("slice_10.dcm", 1, "1", "1", ImplicitVRLittleEndian),
        ("slice_2.dcm", 2, "1", "1", ExplicitVRLittleEndian),
        ("slice_3.dcm", 3, "1", "1", ExplicitVRBigEndian),
        ("slice_4.dcm", 4, " 2", "2", DeflatedExplicitVRLittleEndian),
    ]
    for name, sop, stored, text, syntax in ct_files:
        w.dicom(
            f"p1/ct/{name}",
            f"ct{sop}",
            ct(sop, stored, **_pixels()),
            syntax,
            expect(sop, text),
        )

    # JPEG-LS: encapsulated pixel data (fragments need not decode).
    frame = b"\xff\xd8\xff\xf7" + bytes(12) + b"\xff\xd9"
    jpeg = ct(5, "2", **(_pixels() | {"PixelData": encapsulate([frame])}))
    w.dicom("p1/ct/slice_5.dcm", "ct5", jpeg, JPEGLSLossless, expect(5, "2"))

    # The same instance stored twice: `instances` counts it once.
    w.copy("p1/ct/slice_2.dcm", "p1/ct_copy/slice_2.dcm", "ct2_copy")


def _write_rt_and_seg(w: _Writer) -> None:
    common = dict(StudyDescription="Thorax CT", **_P1)

    # RTSTRUCT: no top-level FrameOfReferenceUID; the frame and the CT series
    # only appear nested. A top-level ReferencedImageSequence points at a CT
    # slice: source 1 of reference_ct (the series) must win over it.
    def ct_image() -> Dataset:
        return dataset(
            ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=CT_SOP[1]
        )

    rtstruct = dataset(
        SOPClassUID=RTStructureSetStorage,
        SOPInstanceUID=RS_SOP,
        Modality="RTSTRUCT",
        SeriesDescription="Structures",
        **common,
        SeriesInstanceUID=RS_SERIES,
        ReferencedImageSequence=[ct_image()],
        StructureSetLabel="RS1",
        **rtstruct_refs(CT_FRAME, STUDY_1, CT_SERIES, contour_images=[ct_image()]),
        StructureSetROISequence=[
            dataset(
                ROINumber=1,
                ReferencedFrameOfReferenceUID=CT_FRAME,
                ROIName="GTV",
            )
        ],
        # After the reference: a reader must not stop or get lost here.
        ROIContourSequence=[
            dataset(
                ReferencedROINumber=1,
                ContourSequence=[
                    dataset(
                        ContourImageSequence=[ct_image()],
                        ContourGeometricType="CLOSED_PLANAR",
                        NumberOfContourPoints=3,
                        ContourData=["0", "0", "0", "1", "0", "0", "0", "1", "0"],
                    )
                ],
            )
        ],
    )
    w.dicom(
        "p1/rtstruct/RS.dcm",
        "rtstruct",
        rtstruct,
        ExplicitVRLittleEndian,
        dict(
            _P1_EXPECT,
            series=RS_SERIES,
            series_description="Structures",
            modality="RTSTRUCT",
            instance_uid=RS_SOP,
            reference_ct=CT_SERIES,
            reference_frame=CT_FRAME,
            sop_class_uid=RTStructureSetStorage,
        ),
    )

    rtplan = dataset(
        SOPClassUID=RTPlanStorage,
        SOPInstanceUID=RP_SOP,
        Modality="RTPLAN",
        SeriesDescription="Plan",
        **common,
        SeriesInstanceUID=RP_SERIES,
        FrameOfReferenceUID=CT_FRAME,
        RTPlanLabel="PLAN1",
        **rtplan_refs(RS_SOP),
    )
    w.dicom(
        "p1/rtplan/RP.dcm",
        "rtplan",
        rtplan,
        ImplicitVRLittleEndian,
        dict(
            _P1_EXPECT,
            series=RP_SERIES,
            series_description="Plan",
            modality="RTPLAN",
            instance_uid=RP_SOP,
            reference_rs=RS_SOP,
            reference_frame=CT_FRAME,
            sop_class_uid=RTPlanStorage,
        ),
    )

    rtdose = dataset(
        SOPClassUID=RTDoseStorage,
        SOPInstanceUID=RD_SOP,
        Modality="RTDOSE",
        SeriesDescription="Dose",
        **common,
        SeriesInstanceUID=RD_SERIES,
        ImageOrientationPatient=["1", "0", "0", "0", "1", "0"],
        FrameOfReferenceUID=CT_FRAME,
        DoseUnits="GY",
        DoseType="PHYSICAL",
        DoseSummationType="PLAN",
        **rtdose_refs(RP_SOP, RS_SOP),
    )
    w.dicom(
        "p1/rtdose/RD.dcm",
        "rtdose",
        rtdose,
        ExplicitVRLittleEndian,
        dict(
            _P1_EXPECT,
            series=RD_SERIES,
            series_description="Dose",
            modality="RTDOSE",
            instance_uid=RD_SOP,
            reference_rs=RS_SOP,
            reference_pl=RP_SOP,
            reference_frame=CT_FRAME,
            orientation=AXIAL,
            sop_class_uid=RTDoseStorage,
        ),
    )

    # SEG: the referenced series UID is padded with a space (then pydicom's
    # NUL for even length): "trailing NUL and spaces" must both go. Its
    # orientation lives only in a functional group: top-level `orientation`
    # is null.
    seg = dataset(
        SOPClassUID=SegmentationStorage,
        SOPInstanceUID=SEG_SOP,
        Modality="SEG",
        SeriesDescription="Segmentation",
        **common,
        SeriesInstanceUID=SEG_SERIES,
        FrameOfReferenceUID=CT_FRAME,
        ReferencedSeriesSequence=[
            dataset(
                SeriesInstanceUID=Raw(CT_SERIES + " "),
                ReferencedInstanceSequence=[ct_image()],
            )
        ],
        SharedFunctionalGroupsSequence=[
            dataset(
                PlaneOrientationSequence=[
                    dataset(ImageOrientationPatient=["0", "1", "0", "0", "0", "-1"])
                ]
            )
        ],
    )
    w.dicom(
        "p1/seg/SEG.dcm",
        "seg",
        seg,
        ExplicitVRLittleEndian,
        dict(
            _P1_EXPECT,
            series=SEG_SERIES,
            series_description="Segmentation",
            modality="SEG",
            instance_uid=SEG_SOP,
            reference_ct=CT_SERIES,
            reference_frame=CT_FRAME,
            sop_class_uid=SegmentationStorage,
        ),
    )


def _write_pet(w: _Writer) -> None:
    """Bare data sets (no preamble, no meta), no AcquisitionNumber.

    The first item of ReferencedImageSequence lacks ReferencedSOPInstanceUID
    and the second has one: `[0]` means the first item, so reference_ct is "".
    """
    for n, syntax in ((1, ImplicitVRLittleEndian), (2, ExplicitVRLittleEndian)):
        ds = dataset(
            SOPClassUID=PositronEmissionTomographyImageStorage,
            SOPInstanceUID=PT_SOP[n],
            Modality="PT",
            StudyDescription="Thorax CT",
            SeriesDescription="PET AC",
            **_P1,
            SeriesInstanceUID=PT_SERIES,
            ReferencedImageSequence=[
                dataset(ReferencedSOPClassUID=CTImageStorage),
                dataset(
                    ReferencedSOPClassUID=CTImageStorage,
                    ReferencedSOPInstanceUID=CT_SOP[1],
                ),
            ],
            InstanceNumber=n,
            ImageOrientationPatient=["1", "0", "0", "0", "1", "0"],
            FrameOfReferenceUID=PT_FRAME,
        )
        w.dicom(
            f"p1/pt/PT00{n}.dcm",
            f"pt{n}",
            ds,
            syntax,
            dict(
                _P1_EXPECT,
                series=PT_SERIES,
                series_description="PET AC",
                modality="PT",
                instance_uid=PT_SOP[n],
                reference_frame=PT_FRAME,
                orientation=AXIAL,
                sop_class_uid=PositronEmissionTomographyImageStorage,
            ),
            bare=True,
        )


# Patient 2 ---------------------------------------------------------------

_P2 = dict(
    PatientName="Roe^Richard",
    PatientID=PATIENT_2,
    StudyInstanceUID=STUDY_2,
    StudyDescription="Brain MR",
)
_P2_EXPECT = dict(patient_ID=PATIENT_2, study=STUDY_2, study_description="Brain MR")


def _mr(sop_class=MRImageStorage, **elements) -> Dataset:
    return dataset(
        SOPClassUID=sop_class,
        Modality="MR",
        **_P2,
        FrameOfReferenceUID=MR_FRAME,
        ImagedNucleus="1H",
        **elements,
    )


def _write_mr(w: _Writer) -> None:
    # Localizer: two files without extension, two orientations.
    for n, orientation, syntax in (
        (1, AXIAL, ImplicitVRLittleEndian),
        (2, SAGITTAL, ExplicitVRLittleEndian),
    ):
        ds = _mr(
            SOPInstanceUID=LOC_SOP[n],
            SeriesInstanceUID=LOC_SERIES,
            SeriesDescription="Localizer",
            AcquisitionNumber=1,
            ScanningSequence="GR",
            RepetitionTime="8.6",
            EchoTime="4",
            MagneticFieldStrength="1.5",
            ImageOrientationPatient=[str(v) for v in orientation],
        )
        w.dicom(
            f"p2/localizer/IM000{n}",
            f"loc{n}",
            ds,
            syntax,
            dict(
                _P2_EXPECT,
                series=LOC_SERIES,
                series_description="Localizer",
                subseries="1",
                modality="MR",
                instance_uid=LOC_SOP[n],
                reference_frame=MR_FRAME,
                orientation=orientation,
                MR_repetition_time=8.6,
                MR_echo_time=4.0,
                MR_scan_sequence="GR",
                MR_magnetic_field_strength=1.5,
                MR_imaged_nucleus="1H",
                sop_class_uid=MRImageStorage,
            ),
        )

    # T1: references the first localizer image through the *first* item of
    # ReferencedImageSequence; the second item (the other localizer) must not
    # be used. ReferencedStudySequence (0008,1110) comes earlier in the file
    # and holds a ReferencedSOPInstanceUID that must not be taken either.
    refs = [
        dataset(ReferencedSOPClassUID=MRImageStorage, ReferencedSOPInstanceUID=uid)
        for uid in (LOC_SOP[1], LOC_SOP[2])
    ]
    study_ref = dataset(
        ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1",
        ReferencedSOPInstanceUID=STUDY_2,
    )
    t1_common = dict(
        SeriesInstanceUID=MR1_SERIES,
        SeriesDescription="T1 IR",
        AcquisitionNumber=1,
        ScanningSequence=["SE", "IR"],
        ImageOrientationPatient=Raw(OBLIQUE_TEXT),
        AnatomicalOrientationType="BIPED",
        ReferencedStudySequence=[study_ref],
        ReferencedImageSequence=refs,
    )
    t1_expect = dict(
        _P2_EXPECT,
        series=MR1_SERIES,
        series_description="T1 IR",
        subseries="1",
        modality="MR",
        reference_ct=LOC_SOP[1],
        reference_frame=MR_FRAME,
        orientation=OBLIQUE,
        orientation_type="BIPED",
        MR_repetition_time=3000.0,
        MR_echo_time=12.5,
        MR_scan_sequence="SE\\IR",
        MR_imaged_nucleus="1H",
        sop_class_uid=MRImageStorage,
    )
    t1 = _mr(
        SOPInstanceUID=MR1_SOP[1],
        **t1_common,
        RepetitionTime="3000",
        EchoTime="12.5",
        MagneticFieldStrength="1.5",
        **_pixels(),
    )
    w.dicom(
        "p2/mr_t1/IM1.dcm",
        "mr1",
        t1,
        ExplicitVRLittleEndian,
        t1_expect | dict(instance_uid=MR1_SOP[1], MR_magnetic_field_strength=1.5),
    )
    # Big endian; a decimal comma does not parse (null, one warning), and a
    # leading space in a DS is allowed and ignored.
    t1b = _mr(
        SOPInstanceUID=MR1_SOP[2],
        **t1_common,
        RepetitionTime=Raw(" 3000"),
        EchoTime="12.5",
        MagneticFieldStrength=Raw("1,5"),
        **_pixels(),
    )
    w.dicom(
        "p2/mr_t1/IM2.dcm",
        "mr2",
        t1b,
        ExplicitVRBigEndian,
        t1_expect | dict(instance_uid=MR1_SOP[2], MR_magnetic_field_strength=None),
        warnings=1,
    )

    # T2: the representative (only file) has an EchoTime that does not parse.
    t2 = _mr(
        SOPInstanceUID=MR2_SOP,
        SeriesInstanceUID=MR2_SERIES,
        SeriesDescription="T2 SE",
        AcquisitionNumber=5,
        ScanningSequence="SE",
        RepetitionTime="4000",
        EchoTime=Raw("abc"),
        MagneticFieldStrength="3",
        ImageOrientationPatient=["1", "0", "0", "0", "1", "0"],
    )
    w.dicom(
        "p2/mr_t2/IM1.dcm",
        "mr_t2",
        t2,
        ImplicitVRLittleEndian,
        dict(
            _P2_EXPECT,
            series=MR2_SERIES,
            series_description="T2 SE",
            subseries="5",
            modality="MR",
            instance_uid=MR2_SOP,
            reference_frame=MR_FRAME,
            orientation=AXIAL,
            MR_repetition_time=4000.0,
            MR_echo_time=None,
            MR_scan_sequence="SE",
            MR_magnetic_field_strength=3.0,
            MR_imaged_nucleus="1H",
            sop_class_uid=MRImageStorage,
        ),
        warnings=1,
    )


# Character sets and a file at the archive root ----------------------------


def _write_charsets_and_loose(w: _Writer) -> None:
    # ISO_IR 100 (latin-1): the bytes on disk are latin-1, the output UTF-8.
    latin = dataset(
        SpecificCharacterSet="ISO_IR 100",
        SOPClassUID=CTImageStorage,
        SOPInstanceUID=LATIN_SOP,
        Modality="CT",
        StudyDescription="Étude crâne",
        SeriesDescription="Séquence pondérée ",
        PatientName="Müller^Jürgen",
        PatientID=PATIENT_LATIN,
        StudyInstanceUID=LATIN_STUDY,
        SeriesInstanceUID=LATIN_SERIES,
        AcquisitionNumber=3,
    )
    w.dicom(
        "p3/latin1.dcm",
        "latin1",
        latin,
        ExplicitVRLittleEndian,
        dict(
            patient_ID=PATIENT_LATIN,
            study=LATIN_STUDY,
            study_description="Étude crâne",
            series=LATIN_SERIES,
            series_description="Séquence pondérée",
            subseries="3",
            modality="CT",
            instance_uid=LATIN_SOP,
            sop_class_uid=CTImageStorage,
        ),
    )

    # ISO_IR 192 (UTF-8), in a folder whose name is not ASCII either.
    utf8 = dataset(
        SpecificCharacterSet="ISO_IR 192",
        SOPClassUID=MRImageStorage,
        SOPInstanceUID=UTF8_SOP,
        Modality="MR",
        StudyDescription="Tête – 頭部",
        SeriesDescription=" Série ✓ 序列 ",
        PatientName="Dupont^Zoé",
        PatientID=PATIENT_UTF8,
        StudyInstanceUID=UTF8_STUDY,
        SeriesInstanceUID=UTF8_SERIES,
    )
    w.dicom(
        "p4_café/utf8.dcm",
        "utf8",
        utf8,
        ImplicitVRLittleEndian,
        dict(
            patient_ID=PATIENT_UTF8,
            study=UTF8_STUDY,
            study_description="Tête – 頭部",
            series=UTF8_SERIES,
            series_description="Série ✓ 序列",
            modality="MR",
            instance_uid=UTF8_SOP,
            sop_class_uid=MRImageStorage,
        ),
    )

    # At the archive root, with an empty PatientID and no descriptions: its
    # folder is "." under --relative-to archive.
    loose = dataset(
        SOPClassUID=SecondaryCaptureImageStorage,
        SOPInstanceUID=LOOSE_SOP,
        Modality="OT",
        PatientID="",
        StudyInstanceUID=LOOSE_STUDY,
        SeriesInstanceUID=LOOSE_SERIES,
    )
    w.dicom(
        "loose.dcm",
        "loose",
        loose,
        ExplicitVRLittleEndian,
        dict(
            patient_ID="",
            study=LOOSE_STUDY,
            series=LOOSE_SERIES,
            modality="OT",
            instance_uid=LOOSE_SOP,
            sop_class_uid=SecondaryCaptureImageStorage,
        ),
    )


# Files that are not indexed -----------------------------------------------


def _random_bytes() -> bytes:
    data = random.Random(20240611).randbytes(4096)
    # Make sure the first tag does not look like a plausible bare data set
    # (group 0x0002 or 0x0008, either byte order) whatever the seed gives.
    return b"\x7f\x45" + data[2:]


def _write_not_indexed(w: _Writer) -> None:
    w.other("junk/random.bin", "random", _random_bytes(), "not_dicom")
    w.other("junk/x.dcm", "text", b"This is not a DICOM file.\n", "not_dicom")
    w.other("junk/empty", "empty", b"", "not_dicom")

    dicomdir = Path(get_testdata_file("DICOMDIR"))
    w.other("DICOMDIR", "dicomdir", dicomdir.read_bytes(), "dicomdir")

    # A valid Part 10 file that is not a series instance.
    noseries = dataset(
        SOPClassUID=CTImageStorage,
        SOPInstanceUID=NOSERIES_SOP,
        Modality="CT",
        **_P1,
    )
    noseries.file_meta = FileMetaDataset()
    noseries.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    dcmwrite(buffer, noseries, enforce_file_format=True)
    w.other("junk/noseries.dcm", "noseries", buffer.getvalue(), "no_series_uid")
