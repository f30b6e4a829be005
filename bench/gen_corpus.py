#!/usr/bin/env python3
"""Generate a synthetic, TCIA-shaped DICOM archive for benchmarking fastindex.

Layout (as TCIA downloads look):

    OUT/<PatientID>/<MM-DD-YYYY>-NA-<StudyDescription>-<5 digits>/
        <SeriesNumber>.000000-<SeriesDescription>-<5 digits>/1-001.dcm

Each patient has an RT planning study (two CT localizers written without a
file extension, a planning CT, RTSTRUCT -> CT, RTPLAN -> RTSTRUCT,
RTDOSE -> RTPLAN, SEG -> CT); most also have an MR study (T1 SE and a
T2 FLAIR with ScanningSequence SE\\IR) and/or a PET/CT study.  Image series
carry a vendor private block of 5-60 KB (Siemens CSA in group 0029; GE
groups 0009/0019/0021/0043, written implicit VR as GE does; Philips private
sequences in group 2005) and end with a small real PixelData element.

Speed: every image series is built once with pydicom and serialised; the
instances are copies of those bytes with the per-instance values patched in
place at fixed width (SOPInstanceUID, InstanceNumber, ImagePositionPatient,
SliceLocation, pixels).  Patching never changes a length, so every file stays
valid DICOM.  Patients are spread over processes.  Output is a pure function
of the parameters and --seed.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import struct
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import Pool

import numpy as np
from fastindex._native import DataSetWriter  # the tests' raw element writer
from pydicom._private_dict import private_dictionaries
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
from support.rt import RTDOSE_CLASS, RTPLAN_CLASS, RTSTRUCT_CLASS, rtdose_refs, rtplan_refs, rtstruct_refs  # noqa: E402

UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root; fine for synthetic data
IMPL_UID = UID_ROOT + "1.1"

SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "RTSTRUCT": RTSTRUCT_CLASS,
    "RTPLAN": RTPLAN_CLASS,
    "RTDOSE": RTDOSE_CLASS,
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
}

VENDORS = ("SIEMENS", "GE MEDICAL SYSTEMS", "Philips")
MODEL = {"SIEMENS": "SOMATOM Definition AS", "GE MEDICAL SYSTEMS": "LightSpeed16",
         "Philips": "Brilliance Big Bore"}
MR_MODEL = {"SIEMENS": "Skyra", "GE MEDICAL SYSTEMS": "SIGNA HDxt", "Philips": "Ingenia"}
PRIVATE_MIN, PRIVATE_MAX = 5 * 1024, 60 * 1024

# Per-instance values are patched at a fixed width; the suffix of instance
# UIDs is 1000001 + index, so a 7-digit suffix of nines can never be real.
UID_SUFFIX_MARKER = "9999999"


# ---------------------------------------------------------------- plan ----

@dataclass(frozen=True)
class PatientPlan:
    """Everything random about a patient that decides its file count."""
    index: int
    has_mr: bool
    has_pet: bool
    two_acquisitions: bool

    @property
    def patient_id(self) -> str:
        return f"FI-{self.index + 1:05d}"

    def file_count(self, slices: int) -> int:
        n = 2 + slices + 4  # localizers, planning CT, RTSTRUCT/RTPLAN/RTDOSE/SEG
        if self.has_mr:
            n += 2 * slices
        if self.has_pet:
            n += 2 * slices
        return n


def plan_patient(seed: int, index: int) -> PatientPlan:
    rng = random.Random(f"plan-{seed}-{index}")
    return PatientPlan(index=index, has_mr=rng.random() < 0.6,
                       has_pet=rng.random() < 0.5,
                       two_acquisitions=rng.random() < 0.35)


def plan_corpus(seed: int, slices: int, patients: int | None, files: int | None):
    """Patients in order until --patients are reached or --files exceeded."""
    plans, total = [], 0
    while (patients is not None and len(plans) < patients) or \
            (patients is None and total < files):
        p = plan_patient(seed, len(plans))
        plans.append(p)
        total += p.file_count(slices)
    return plans, total


# ------------------------------------------------------------- helpers ----

def new_uid(rng: random.Random, bits: int = 96) -> str:
    # varying length on purpose: odd lengths get the NUL pad byte
    return UID_ROOT + str(rng.getrandbits(bits))


def instance_uid(base: str, i: int) -> str:
    return f"{base}.{1000001 + i}"


def ds_fixed(v: float) -> str:
    """Fixed-width DS text so positions can be patched in place."""
    return f"{v:+010.3f}"


def pad(vr: str, text: str) -> bytes:
    b = text.encode("ascii")
    return b + (b"\0" if vr == "UI" else b" ") * (len(b) % 2)


def ex(tag: int, vr: str, value: bytes) -> bytes:
    """One explicit-VR little-endian element (value already padded), by the
    raw writer the tests share (rust/testbytes.rs)."""
    return DataSetWriter().el(tag, vr, value, pad=False).buf


def ex_item(body: bytes) -> bytes:
    return DataSetWriter().item(len(body)).raw(body).buf


def raw_sq(tag: int, items: list[bytes]) -> RawDataElement:
    """A sequence encoded by hand: building thousands of small items with
    pydicom costs more than writing all the image files of a patient."""
    data = b"".join(ex_item(i) for i in items)
    return RawDataElement(Tag(tag), "SQ", len(data), data, 0, False, True)


def item(**kw) -> Dataset:
    d = Dataset()
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def ref(sop_class: str, sop_uid: str) -> Dataset:
    return item(ReferencedSOPClassUID=sop_class, ReferencedSOPInstanceUID=sop_uid)


def ascii_name(text: str) -> str:
    keep = "".join(c if c.isascii() and (c.isalnum() or c in " _.-") else " " for c in text)
    return " ".join(keep.split())[:40]


def to_bytes(ds: Dataset) -> bytes:
    # Claiming the dataset was read in the encoding we write skips pydicom's
    # ambiguous-VR pass over every item (none of our VRs are ambiguous).
    ds.set_original_encoding(ds.file_meta.TransferSyntaxUID.is_implicit_VR, True,
                             ds._character_set)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_file(path: str, data) -> int:
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


# ------------------------------------------------------- vendor blocks ----

CSA_NAMES = ["EchoLinePosition", "EchoColumnPosition", "EchoPartitionPosition",
             "UsedChannelMask", "Actual3DImaPartNumber", "ICE_Dims", "B_value",
             "Filter1", "Filter2", "ProtocolSliceNumber", "RealDwellTime",
             "PixelFile", "PixelFileName", "SliceMeasurementDuration",
             "SequenceMask", "AcquisitionMatrixText", "MeasuredFourierLines",
             "FlowEncodingDirection", "FlowVenc", "PhaseEncodingDirectionPositive",
             "NumberOfImagesInMosaic", "DiffusionGradientDirection",
             "ImaCoilString", "ImaAbsTablePosition", "ImaRelTablePosition",
             "SliceNormalVector", "SliceResolution", "BandwidthPerPixelPhaseEncode",
             "MosaicRefAcqTimes", "AutoInlineImageFilterEnabled", "QCData",
             "ImaPATModeText", "GSWDDataType", "MultistepIndex", "ImaFlags"]
ASCCONV_KEYS = ["sKSpace.lBaseResolution", "sKSpace.lPhaseEncodingLines",
                "sSliceArray.asSlice[{i}].dThickness", "sSliceArray.asSlice[{i}].sPosition.dTra",
                "sRXSPEC.alDwellTime[{i}]", "sTXSPEC.asNucleusInfo[{i}].lFrequency",
                "sCoilSelectMeas.aRxCoilSelectData[0].asList[{i}].lRxChannelConnected",
                "sAdjData.uiAdjFreMode", "alTR[{i}]", "alTE[{i}]", "sGRADSPEC.asGPAData[0].lOffsetX"]


def csa2(rng: random.Random, size: int, ascconv: bool) -> bytes:
    """A Siemens CSA2 header ("SV10"), padded with entries up to ~size bytes."""
    entries, total = [], 16
    if ascconv:  # the series header's MrPhoenixProtocol is what makes CSA big
        lines, n = ["### ASCCONV BEGIN ###"], 0
        while n < size - 2000:
            key = rng.choice(ASCCONV_KEYS).format(i=rng.randrange(64))
            line = f"{key}\t = \t{rng.randrange(100000)}"
            lines.append(line)
            n += len(line) + 1
        lines.append("### ASCCONV END ###")
        entries.append(("MrPhoenixProtocol", "UN", ["\n".join(lines)]))
        total += 84 + 16 + n + 64
    while total < size:
        name = rng.choice(CSA_NAMES)
        vals = [f"{rng.uniform(-500, 500):.8f}" for _ in range(rng.randrange(1, 7))]
        entries.append((name, rng.choice(["DS", "IS", "LO", "SH", "FD"]), vals))
        total += 84 + sum(16 + len(v) + 4 for v in vals)
    out = [b"SV10\x04\x03\x02\x01", struct.pack("<II", len(entries), 77)]
    for name, vr, vals in entries:
        out.append(name.encode().ljust(64, b"\0"))
        out.append(struct.pack("<i4siii", len(vals), vr.encode().ljust(4, b"\0"),
                               rng.randrange(1, 10), len(vals), 77))
        for v in vals:
            data = v.encode() + b"\0"
            out.append(struct.pack("<4i", len(data), 77, len(data), 77))
            out.append(data + b"\0" * (-len(data) % 4))
    return b"".join(out)


def add_siemens(ds: Dataset, rng: random.Random, size: int) -> None:
    blk = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    image_part = min(size // 3, 12000)
    blk.add_new(0x08, "CS", "IMAGE NUM 4")
    blk.add_new(0x09, "LO", "20231012")
    blk.add_new(0x10, "OB", csa2(rng, image_part, ascconv=False))
    blk.add_new(0x18, "CS", "MR")
    blk.add_new(0x19, "LO", "20231012")
    blk.add_new(0x20, "OB", csa2(rng, size - image_part, ascconv=True))
    blk2 = ds.private_block(0x0029, "SIEMENS MEDCOM HEADER2", create=True)
    blk2.add_new(0x60, "LO", "com")


def dict_value(vr: str, vm: str, rng: random.Random):
    """A plausible value for a private element, typed as pydicom's private
    dictionary expects: GE data is implicit VR, so readers look VRs up."""
    count = int(vm) if vm.isdigit() else 2
    one = {"SS": lambda: rng.randrange(-1000, 1000), "US": lambda: rng.randrange(65536),
           "SL": lambda: rng.randrange(-10**6, 10**6), "UL": lambda: rng.randrange(10**6),
           "FL": lambda: rng.uniform(-100, 100), "FD": lambda: rng.uniform(-100, 100),
           "DS": lambda: f"{rng.uniform(-100, 100):.4f}", "IS": lambda: str(rng.randrange(1000)),
           }.get(vr)
    if one is not None:
        vals = [one() for _ in range(count)]
        return vals[0] if count == 1 else vals
    if vr in ("OB", "UN"):
        return rng.randbytes(16)
    if vr == "UI":
        return new_uid(rng)
    if vr == "DT":
        return "20200101120000"
    return "GE PRIVATE"  # LO, SH, CS, LT, ST, UT


def add_dict_elements(ds: Dataset, group: int, creator: str, rng: random.Random,
                      skip=(), limit=64) -> None:
    blk = ds.private_block(group, creator, create=True)
    entries = sorted(private_dictionaries[creator].items())
    for key, (vr, vm, *_rest) in entries[:limit]:
        if key[:4] != f"{group:04X}" or key[4:6] != "xx" or "x" in key[6:]:
            continue  # keys look like 0043xx1A
        off = int(key[6:], 16)
        if off in skip or vr == "SQ":
            continue
        blk.add_new(off, vr, dict_value(vr, vm, rng))


def add_ge(ds: Dataset, rng: random.Random, size: int) -> None:
    add_dict_elements(ds, 0x0009, "GEMS_IDEN_01", rng)
    add_dict_elements(ds, 0x0019, "GEMS_ACQU_01", rng)
    add_dict_elements(ds, 0x0021, "GEMS_RELA_01", rng)
    add_dict_elements(ds, 0x0043, "GEMS_PARM_01", rng, skip=(0x28, 0x29, 0x2A))
    parm = ds.private_block(0x0043, "GEMS_PARM_01")
    parm.add_new(0x28, "OB", rng.randbytes(80))  # unique image iden
    hist = size // 2 & ~1
    parm.add_new(0x29, "OB", rng.randbytes(hist))  # histogram tables
    parm.add_new(0x2A, "OB", rng.randbytes((size - hist - 2000) & ~1))  # user data


def philips_item(rng: random.Random) -> Dataset:
    it = Dataset()
    it.is_undefined_length_sequence_item = True  # Philips writes them so
    # standard tags nested in a private item: an indexer must not take them
    # for the top-level ones (AcquisitionNumber above all)
    it.ImageType = ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"]
    it.AcquisitionNumber = rng.randrange(1, 99)
    it.RepetitionTime = f"{rng.uniform(5, 5000):.3f}"
    it.WindowCenter = str(rng.randrange(50, 900))
    it.WindowWidth = str(rng.randrange(100, 1800))
    sub = it.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
    for off in range(0x01, 0x21):
        sub.add_new(off, "FL", rng.uniform(-100, 100))
    sub.add_new(0x30, "OB", rng.randbytes(400))
    return it


def encoded_size(ds: Dataset) -> int:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    return write_dataset(fp, ds) + 16  # item header and delimiter


def add_philips(ds: Dataset, rng: random.Random, size: int) -> None:
    img = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
    img.add_new(0x03, "FL", rng.uniform(0, 1000))
    img.add_new(0x0B, "CS", "TRANSVERSAL")
    ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(0x00, "FL", 1.0)
    blk = ds.private_block(0x2005, "Philips MR Imaging DD 005", create=True)
    items = [philips_item(rng)]
    count = max(1, round(size / encoded_size(items[0])))  # all items are one size
    items += [philips_item(rng) for _ in range(count - 1)]
    blk.add_new(0x0F, "SQ", Sequence(items))
    blk[0x0F].is_undefined_length = True


def add_vendor_block(ds: Dataset, vendor: str, rng: random.Random) -> None:
    size = rng.randint(PRIVATE_MIN, PRIVATE_MAX)
    {"SIEMENS": add_siemens, "GE MEDICAL SYSTEMS": add_ge, "Philips": add_philips}[vendor](
        ds, rng, size)


def transfer_syntax(vendor: str) -> str:
    # GE scanners famously export implicit VR; keeps the corpus mixed
    return ImplicitVRLittleEndian if vendor.startswith("GE") else ExplicitVRLittleEndian


# ------------------------------------------------------------ template ----

class Template:
    """A dataset serialised once; per-instance values are patched in place.

    Each slot is found by its element header followed by the marker value,
    so an equal byte string inside a private blob cannot be mistaken for it.
    Pixel data is the last element: its value is the tail of the buffer.
    """

    def __init__(self, ds: Dataset, slots: dict[int, tuple[str, str]], pixel_len: int):
        self.buf = to_bytes(ds)
        self.pixel_len = pixel_len
        self.slots: dict[int, tuple[str, int, int]] = {}  # tag -> vr, offset, width
        for tag, (vr, marker) in slots.items():
            value = pad(vr, marker)
            g, e = tag >> 16, tag & 0xFFFF
            headers = [struct.pack("<HH2sH", g, e, vr.encode(), len(value)),
                       struct.pack("<HHI", g, e, len(value))]
            hits = [i + len(h) for h in headers for i in find_all(self.buf, h + value)]
            if len(hits) != 1:
                raise RuntimeError(f"slot ({g:04X},{e:04X}) found {len(hits)} times")
            self.slots[tag] = (vr, hits[0], len(value))

    def render(self, values: dict[int, str], pixels: bytes) -> bytearray:
        out = bytearray(self.buf)
        for tag, text in values.items():
            vr, off, width = self.slots[tag]
            b = pad(vr, text)
            if len(b) != width:
                raise ValueError(f"value {text!r} does not fit width {width}")
            out[off:off + width] = b
        assert len(pixels) == self.pixel_len
        out[len(out) - self.pixel_len:] = pixels
        return out


def find_all(buf: bytes, needle: bytes) -> list[int]:
    hits, i = [], buf.find(needle)
    while i >= 0:
        hits.append(i)
        i = buf.find(needle, i + 1)
    return hits


# ------------------------------------------------------ patient context ----

@dataclass
class Config:
    out: str
    seed: int
    slices: int
    matrix: int


@dataclass
class Series:
    """What other objects need to know about a written image series."""
    uid: str
    number: int
    description: str
    frame_uid: str
    instance_base: str
    sop_class: str
    positions: list = field(default_factory=list)  # per-instance (x, y, z)

    def instance(self, i: int) -> str:
        return instance_uid(self.instance_base, i)


@dataclass
class Study:
    uid: str
    date: str
    description: str
    folder: str
    accession: str


CHARSETS = [  # (SpecificCharacterSet, patient name); most archives have none
    (None, "ANON^PATIENT"), (None, "DOE^JOHN"), (None, "SMITH^JANE"),
    ("ISO_IR 100", "Müller^Jürgen"), ("ISO_IR 192", "Ødegård^Åse"),
]
SITES = [("HEAD NECK", "RT HEAD NECK PLANNING"), ("LUNG", "RT THORAX PLANNING"),
         ("PELVIS", "RT PROSTATE PLANNING"), ("BRAIN", "RT BRAIN PLANNING")]


class PatientWriter:
    """Writes all studies of one patient; holds the patient's random state."""

    def __init__(self, cfg: Config, plan: PatientPlan):
        self.cfg, self.plan = cfg, plan
        self.rng = random.Random(f"patient-{cfg.seed}-{plan.index}")
        self.np = np.random.default_rng([cfg.seed, plan.index])
        self.charset, self.name = self.rng.choice(CHARSETS)
        self.site, self.rt_description = self.rng.choice(SITES)
        self.quadruped = plan.index % 25 == 7  # veterinary archives exist too
        self.dir = os.path.join(cfg.out, plan.patient_id)
        self.files = self.bytes = 0
        self.birth = f"19{self.rng.randrange(30, 90)}0{self.rng.randrange(1, 10)}15"

    # -- common modules --

    def new_study(self, description: str) -> Study:
        uid = new_uid(self.rng)
        y, m, d = 2005 + self.rng.randrange(15), self.rng.randrange(1, 13), self.rng.randrange(1, 29)
        folder = f"{m:02d}-{d:02d}-{y}-NA-{ascii_name(description)}-{uid[-5:]}"
        return Study(uid, f"{y}{m:02d}{d:02d}", description,
                     os.path.join(self.dir, folder), str(self.rng.randrange(10**6, 10**7)))

    def new_series(self, number, description, sop_class, frame_uid=None) -> Series:
        return Series(new_uid(self.rng), number, description,
                      frame_uid or new_uid(self.rng), UID_ROOT + str(self.rng.getrandbits(60)),
                      sop_class)

    def series_dir(self, study: Study, s: Series) -> str:
        d = os.path.join(study.folder, f"{s.number}.000000-{ascii_name(s.description)}-{s.uid[-5:]}")
        os.makedirs(d, exist_ok=True)
        return d

    def base(self, study: Study, s: Series, modality: str, vendor: str, ts: str) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = s.sop_class
        ds.file_meta.TransferSyntaxUID = ts
        ds.file_meta.ImplementationClassUID = IMPL_UID
        ds.file_meta.ImplementationVersionName = "FI_BENCH_GEN"
        if self.charset:
            ds.SpecificCharacterSet = self.charset
        ds.SOPClassUID = s.sop_class
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500.000000"
        ds.AccessionNumber = study.accession
        ds.Modality = modality
        ds.Manufacturer = vendor
        ds.InstitutionName = "Synthetic Hospital"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = study.description
        ds.SeriesDescription = s.description
        ds.ManufacturerModelName = (MR_MODEL if modality == "MR" else MODEL).get(vendor, "X")
        ds.PatientName = self.name
        ds.PatientID = self.plan.patient_id
        ds.PatientBirthDate = self.birth
        ds.PatientSex = "MF"[self.plan.index % 2]
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "Synthetic corpus for fastindex benchmark"
        ds.SoftwareVersions = "VB20"
        ds.StudyInstanceUID = study.uid
        ds.SeriesInstanceUID = s.uid
        ds.StudyID = "1"
        ds.SeriesNumber = s.number
        return ds

    def image_module(self, ds: Dataset, rows: int, bits: int = 16) -> None:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = rows
        ds.BitsAllocated = bits
        ds.BitsStored = bits if bits != 16 else 12
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 0

    # -- image series --

    def write_image_series(self, study: Study, s: Series, modality: str, vendor: str,
                           n: int, orientation, extra, acquisitions=(1,), ext=".dcm") -> Series:
        """Build one template per acquisition number, then write n instances.

        `orientation` is (row, col) direction cosines; slice i sits at
        i * thickness along their normal.  `extra(ds)` adds modality fields.
        """
        m, thick = self.cfg.matrix, 2.5
        row, col = orientation
        normal = np.cross(row, col)
        origin = np.array([-250.0, -250.0, -400.0 + self.rng.randrange(200)])
        s.positions = [tuple(origin + normal * thick * i) for i in range(n)]
        ts = transfer_syntax(vendor)
        sop_marker = f"{s.instance_base}.{UID_SUFFIX_MARKER}"
        width = max(2, len(str(n)) + len(str(n)) % 2)
        slots = {0x00020003: ("UI", sop_marker), 0x00080018: ("UI", sop_marker),
                 0x00200013: ("IS", "9" * width),
                 0x00200032: ("DS", "\\".join([ds_fixed(-999.999)] * 3)),
                 0x00201041: ("DS", ds_fixed(-999.999))}
        templates = {}
        for acq in acquisitions:
            ds = self.base(study, s, modality, vendor, ts)
            ds.file_meta.MediaStorageSOPInstanceUID = sop_marker
            for tag, (vr, marker) in slots.items():
                if tag >> 16 != 0x0002:
                    ds.add_new(tag, vr, marker)
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.AcquisitionNumber = acq
            ds.FrameOfReferenceUID = s.frame_uid
            ds.PositionReferenceIndicator = ""
            ds.ImageOrientationPatient = [*row, *col]
            ds.SliceThickness = thick
            ds.PixelSpacing = [500.0 / m, 500.0 / m]
            if self.quadruped:
                ds.AnatomicalOrientationType = "QUADRUPED"
            self.image_module(ds, m)
            extra(ds)
            # seeded by the series so both acquisitions get the same block
            add_vendor_block(ds, vendor, random.Random(f"{s.uid}-{vendor}"))
            ds.add_new(0x7FE00010, "OW", bytes(m * m * 2))  # PixelData
            templates[acq] = Template(ds, slots, m * m * 2)
        d = self.series_dir(study, s)
        digits = max(3, len(str(n)))
        phantom = Phantom(self.np, m)
        for i in range(n):
            acq = acquisitions[i * len(acquisitions) // n]  # second half: next acquisition
            x, y, z = s.positions[i]
            along = float(np.dot(s.positions[i], normal))
            values = {0x00020003: s.instance(i), 0x00080018: s.instance(i),
                      0x00200013: str(i + 1).ljust(width),
                      0x00200032: "\\".join(ds_fixed(v) for v in (x, y, z)),
                      0x00201041: ds_fixed(along)}
            data = templates[acq].render(values, phantom.slice(i / max(1, n - 1)))
            self.bytes += write_file(os.path.join(d, f"1-{i + 1:0{digits}d}{ext}"), data)
            self.files += 1
        return s

    # -- studies --

    def write_rt_study(self) -> None:
        vendor = self.rng.choice(VENDORS)
        study = self.new_study(self.rt_description)
        frame = new_uid(self.rng)
        loc = self.new_series(1, "Topogram 0.6 T20f", SOP_CLASS["CT"], frame)
        ct = self.new_series(2, f"{self.site} 2.5mm", SOP_CLASS["CT"], frame)
        self.write_image_series(study, loc, "CT", vendor, 2, CORONAL, localizer_fields,
                                ext="")  # real archives hold extensionless files
        acquisitions = (1, 2) if self.plan.two_acquisitions else (1,)
        self.write_image_series(study, ct, "CT", vendor, self.cfg.slices, AXIAL,
                                lambda ds: ct_fields(ds, loc), acquisitions)
        rs_uid = self.write_rtstruct(study, ct, vendor)
        plan_uid = self.write_rtplan(study, ct, vendor, rs_uid)
        self.write_rtdose(study, ct, vendor, plan_uid)
        self.write_seg(study, ct)

    def write_mr_study(self) -> None:
        vendor = self.rng.choice(VENDORS)
        study = self.new_study(f"MRI {self.site} W WO CONTRAST")
        field_strength = self.rng.choice([1.5, 3.0])
        frame = new_uid(self.rng)
        t1 = self.new_series(3, "T1 SE AX", SOP_CLASS["MR"], frame)
        self.write_image_series(study, t1, "MR", vendor, self.cfg.slices, AXIAL,
                                lambda ds: mr_fields(ds, field_strength, "SE", "SP",
                                                     self.rng.uniform(450, 700),
                                                     self.rng.uniform(8, 20)))
        flair = self.new_series(5, "T2 FLAIR SAG", SOP_CLASS["MR"], frame)
        self.write_image_series(study, flair, "MR", vendor, self.cfg.slices, SAGITTAL,
                                lambda ds: mr_fields(ds, field_strength, ["SE", "IR"],
                                                     ["SK", "SP", "MP"], 9000.0,
                                                     self.rng.uniform(80, 125), 2500.0))

    def write_pet_study(self) -> None:
        vendor = self.rng.choice(VENDORS)
        study = self.new_study("PET CT WHOLE BODY")
        frame = new_uid(self.rng)
        ct = self.new_series(2, "CT AC 3.75mm", SOP_CLASS["CT"], frame)
        self.write_image_series(study, ct, "CT", vendor, self.cfg.slices, AXIAL,
                                lambda ds: ct_fields(ds, None))
        pt = self.new_series(4, "PET AC", SOP_CLASS["PT"], frame)
        self.write_image_series(study, pt, "PT", vendor, self.cfg.slices, AXIAL, pt_fields)

    # -- RT and SEG objects: one file each, built directly --

    def single(self, study, number, description, kind, vendor, frame_uid) -> tuple:
        s = self.new_series(number, description, SOP_CLASS[kind], frame_uid)
        ds = self.base(study, s, kind, vendor, ExplicitVRLittleEndian)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = s.instance(0)
        ds.InstanceNumber = 1
        return s, ds

    def save_single(self, study, s: Series, ds: Dataset) -> str:
        self.bytes += write_file(os.path.join(self.series_dir(study, s), "1-1.dcm"), to_bytes(ds))
        self.files += 1
        return ds.SOPInstanceUID

    def write_rtstruct(self, study, ct: Series, vendor) -> str:
        s, ds = self.single(study, 3, "RTstruct", "RTSTRUCT", vendor, ct.frame_uid)
        ds.StructureSetLabel = "RTSTRUCT"
        ds.StructureSetName = self.site
        ds.StructureSetDate, ds.StructureSetTime = study.date, "120000"
        n = len(ct.positions)
        images = [ref(SOP_CLASS["CT"], ct.instance(i)) for i in range(n)]
        # the chain that reference_ct follows: FoR > study > series > UID
        ds.update(rtstruct_refs(ct.frame_uid, study.uid, ct.uid, contour_images=images))
        names = ROI_NAMES
        ds.StructureSetROISequence = [item(ROINumber=k + 1, ReferencedFrameOfReferenceUID=ct.frame_uid,
                                           ROIName=name, ROIGenerationAlgorithm="MANUAL")
                                      for k, name in enumerate(names)]
        ds.ROIContourSequence = [self.roi_contour(k + 1, name, ct) for k, name in enumerate(names)]
        ds.RTROIObservationsSequence = [
            item(ObservationNumber=k + 1, ReferencedROINumber=k + 1, RTROIInterpretedType=
                 "EXTERNAL" if name == "BODY" else "ORGAN", ROIInterpreter="")
            for k, name in enumerate(names)]
        return self.save_single(study, s, ds)

    def roi_contour(self, number: int, name: str, ct: Series) -> Dataset:
        n = len(ct.positions)
        if name == "BODY":
            first, last, points, radius = 0, n, 128, 180.0
        else:
            span = max(1, int(n * self.rng.uniform(0.2, 0.6)))
            first = self.rng.randrange(0, n - span + 1)
            last, points, radius = first + span, self.rng.randrange(32, 97), self.rng.uniform(10, 60)
        cx, cy = self.rng.uniform(-50, 50), self.rng.uniform(-50, 50)
        contours = []
        angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
        for i in range(first, last):
            z = ct.positions[i][2]
            r = radius * (0.8 + 0.2 * math.sin(math.pi * (i - first + 0.5) / (last - first)))
            xyz = np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles),
                                   np.full(points, z)]).ravel()
            image = ex(0x00081150, "UI", pad("UI", SOP_CLASS["CT"])) + \
                ex(0x00081155, "UI", pad("UI", ct.instance(i)))
            contours.append(  # tags in ascending order, as DICOM requires
                ex(0x30060016, "SQ", ex_item(image))  # ContourImageSequence
                + ex(0x30060042, "CS", b"CLOSED_PLANAR ")
                + ex(0x30060046, "IS", pad("IS", str(points)))
                + ex(0x30060048, "IS", pad("IS", str(i - first + 1)))
                + ex(0x30060050, "DS", pad("DS", "\\".join(f"{v:.2f}" for v in xyz))))
        roi = Dataset()
        roi.ROIDisplayColor = [self.rng.randrange(256) for _ in range(3)]
        roi[0x30060040] = raw_sq(0x30060040, contours)  # ContourSequence
        roi.ReferencedROINumber = number
        roi.set_original_encoding(False, True, roi._character_set)  # write raw as is
        return roi

    def write_rtplan(self, study, ct: Series, vendor, rs_uid: str) -> str:
        s, ds = self.single(study, 4, "RTPLAN", "RTPLAN", vendor, ct.frame_uid)
        ds.FrameOfReferenceUID = ct.frame_uid
        ds.RTPlanLabel, ds.RTPlanName, ds.RTPlanGeometry = "PLAN1", self.site, "PATIENT"
        ds.RTPlanDate, ds.RTPlanTime = study.date, "130000"
        ds.update(rtplan_refs(rs_uid))
        beams = self.rng.randrange(5, 10)
        ds.FractionGroupSequence = [item(
            FractionGroupNumber=1, NumberOfFractionsPlanned=self.rng.choice([5, 25, 35]),
            NumberOfBeams=beams, NumberOfBrachyApplicationSetups=0,
            ReferencedBeamSequence=[item(ReferencedBeamNumber=b + 1, BeamMeterset=
                                         f"{self.rng.uniform(20, 200):.4f}")
                                    for b in range(beams)])]
        ds.BeamSequence = [self.beam(b + 1, beams) for b in range(beams)]
        ds.PatientSetupSequence = [item(PatientPosition="HFS", PatientSetupNumber=1)]
        ds.ApprovalStatus = "UNAPPROVED"
        return self.save_single(study, s, ds)

    def beam(self, number: int, beams: int) -> Dataset:
        angle = 360.0 * (number - 1) / beams
        points = [item(ControlPointIndex=k, CumulativeMetersetWeight=float(k),
                       GantryAngle=angle, NominalBeamEnergy=6.0,
                       BeamLimitingDevicePositionSequence=[item(
                           RTBeamLimitingDeviceType="MLCX",
                           LeafJawPositions=[f"{self.rng.uniform(-50, 50):.1f}"
                                             for _ in range(120)])])
                  for k in range(2)]
        return item(BeamNumber=number, BeamName=f"B{number}", BeamType="STATIC",
                    RadiationType="PHOTON", TreatmentMachineName="LINAC1",
                    PrimaryDosimeterUnit="MU", SourceAxisDistance=1000.0,
                    NumberOfWedges=0, NumberOfCompensators=0, NumberOfBoli=0,
                    NumberOfBlocks=0, FinalCumulativeMetersetWeight=1.0,
                    NumberOfControlPoints=2, ControlPointSequence=points)

    def write_rtdose(self, study, ct: Series, vendor, plan_uid: str) -> None:
        s, ds = self.single(study, 5, "RTDOSE", "RTDOSE", vendor, ct.frame_uid)
        m, frames = max(8, self.cfg.matrix // 2), max(2, len(ct.positions) // 4)
        ds.FrameOfReferenceUID = ct.frame_uid
        ds.update(rtdose_refs(plan_uid))
        ds.ImagePositionPatient = list(ct.positions[0])
        ds.ImageOrientationPatient = [*AXIAL[0], *AXIAL[1]]
        ds.PixelSpacing = [500.0 / m, 500.0 / m]
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x3004000C
        ds.GridFrameOffsetVector = [10.0 * k for k in range(frames)]
        ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
        ds.DoseGridScaling = 1e-5
        self.image_module(ds, m, bits=32)
        ds.add_new(0x7FE00010, "OW",  # PixelData
                   self.np.integers(0, 7_000_000, (frames, m, m), dtype="<u4").tobytes())
        self.save_single(study, s, ds)

    def write_seg(self, study, ct: Series) -> None:
        s, ds = self.single(study, 6, "Segmentation", "SEG", "Synthetic", ct.frame_uid)
        n, m = len(ct.positions), self.cfg.matrix
        frames = list(range(n // 4, max(n // 4 + 1, 3 * n // 4)))
        ds.FrameOfReferenceUID = ct.frame_uid
        ds.ImageType = ["DERIVED", "PRIMARY"]
        ds.ContentLabel, ds.SegmentationType = "ORGANS", "BINARY"
        ds.ReferencedSeriesSequence = [item(
            SeriesInstanceUID=ct.uid,
            ReferencedInstanceSequence=[ref(SOP_CLASS["CT"], ct.instance(i)) for i in range(n)])]
        ds.SegmentSequence = [item(SegmentNumber=1, SegmentLabel="Liver",
                                   SegmentAlgorithmType="AUTOMATIC", SegmentAlgorithmName="bench",
                                   SegmentedPropertyCategoryCodeSequence=[item(
                                       CodeValue="123037004", CodingSchemeDesignator="SCT",
                                       CodeMeaning="Anatomical Structure")])]
        ds.SharedFunctionalGroupsSequence = [item(PixelMeasuresSequence=[item(
            PixelSpacing=[500.0 / m, 500.0 / m], SliceThickness=2.5)])]
        ds.PerFrameFunctionalGroupsSequence = [item(
            DerivationImageSequence=[item(SourceImageSequence=[ref(SOP_CLASS["CT"], ct.instance(i))])],
            FrameContentSequence=[item(DimensionIndexValues=[1, k + 1])],
            PlanePositionSequence=[item(ImagePositionPatient=list(ct.positions[i]))],
            SegmentIdentificationSequence=[item(ReferencedSegmentNumber=1)])
            for k, i in enumerate(frames)]
        ds.NumberOfFrames = len(frames)
        self.image_module(ds, m, bits=1)
        ds.BitsStored, ds.HighBit = 1, 0
        mask = np.zeros((len(frames), m, m), dtype=bool)
        mask[:, m // 4: 3 * m // 4, m // 3: 2 * m // 3] = True
        packed = np.packbits(mask.ravel(), bitorder="little").tobytes()
        ds.add_new(0x7FE00010, "OB", packed + b"\0" * (len(packed) % 2))  # PixelData
        self.save_single(study, s, ds)

    def write_all(self) -> tuple[int, int]:
        self.write_rt_study()
        if self.plan.has_mr:
            self.write_mr_study()
        if self.plan.has_pet:
            self.write_pet_study()
        return self.files, self.bytes


# ------------------------------------------------- modality field sets ----

AXIAL = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
CORONAL = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0))
SAGITTAL = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0))
ROI_NAMES = ["BODY", "PTV", "CTV", "GTV", "SpinalCord", "Parotid_L", "Parotid_R", "Brainstem"]


def ct_fields(ds: Dataset, localizer: Series | None) -> None:
    ds.KVP, ds.XRayTubeCurrent, ds.ConvolutionKernel = 120, 300, "B31f"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PatientPosition = "HFS"
    if localizer is not None:  # reference_ct falls back to ReferencedImageSequence
        ds.ReferencedImageSequence = [ref(SOP_CLASS["CT"], localizer.instance(0))]


def localizer_fields(ds: Dataset) -> None:
    ct_fields(ds, None)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]


def mr_fields(ds, field_strength, scanning, variant, tr, te, ti=None) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ScanningSequence = scanning  # a list is written multi-valued: SE\IR
    ds.SequenceVariant = variant
    ds.ScanOptions = "SAT1"
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = f"{tr:.2f}"
    ds.EchoTime = f"{te:.3f}"
    if ti is not None:
        ds.InversionTime = ti
    ds.MagneticFieldStrength = field_strength
    ds.ImagedNucleus = "1H"
    ds.ImagingFrequency = 42.577 * field_strength
    ds.EchoTrainLength = 16
    ds.SpacingBetweenSlices = 2.5
    ds.PatientPosition = "HFS"


def pt_fields(ds: Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.Units, ds.CountsSource, ds.DecayCorrection = "BQML", "EMISSION", "START"
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
    ds.RescaleIntercept, ds.RescaleSlope = 0, "0.123456"
    ds.ActualFrameDuration = 180000
    ds.PatientPosition = "FFS"
    ds.RadiopharmaceuticalInformationSequence = [item(
        Radiopharmaceutical="Fluorodeoxyglucose", RadiopharmaceuticalStartTime="093000",
        RadionuclideTotalDose=370000000.0, RadionuclideHalfLife=6586.2,
        RadionuclidePositronFraction=0.97,
        RadionuclideCodeSequence=[item(CodeValue="C-111A1", CodingSchemeDesignator="SRT",
                                       CodeMeaning="^18^Fluorine")])]


class Phantom:
    """A noisy disc whose radius varies along the series: cheap, real pixels."""

    def __init__(self, rng: np.random.Generator, m: int):
        yy, xx = np.mgrid[0:m, 0:m]
        self.r2 = ((xx - m / 2) ** 2 + (yy - m / 2) ** 2) / (m / 2) ** 2
        self.texture = (1000 + rng.integers(0, 200, (m, m))).astype("<u2")

    def slice(self, t: float) -> bytes:
        radius = 0.5 + 0.4 * math.sin(math.pi * t)
        return np.where(self.r2 < radius * radius, self.texture, 0).astype("<u2").tobytes()


# ---------------------------------------------------------------- main ----

def generate_patient(args: tuple[Config, PatientPlan]) -> tuple[int, int]:
    return PatientWriter(*args).write_all()


def generate(cfg: Config, plans: list[PatientPlan], jobs: int) -> tuple[int, int]:
    files = size = 0
    work = [(cfg, p) for p in plans]
    with Pool(jobs) as pool:
        for k, (f, b) in enumerate(pool.imap_unordered(generate_patient, work), 1):
            files, size = files + f, size + b
            if k % 20 == 0 or k == len(work):
                print(f"\r{k}/{len(work)} patients, {files} files", end="", file=sys.stderr)
    print(file=sys.stderr)
    return files, size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory to create")
    ap.add_argument("--patients", type=int, help="number of patients (overrides --files)")
    ap.add_argument("--files", type=int, default=36000,
                    help="add patients until about this many files (default 36000)")
    ap.add_argument("--slices", type=int, default=100, help="slices per image series")
    ap.add_argument("--matrix", type=int, default=64, help="rows = columns of images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count())
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    ap.add_argument("--manifest", help="write a JSON summary here when done")
    a = ap.parse_args(argv)
    if a.slices < 4 or a.matrix < 8:
        ap.error("--slices must be >= 4 and --matrix >= 8")
    if os.path.exists(a.out):
        if not a.force:
            ap.error(f"{a.out} exists (use --force to replace it)")
        shutil.rmtree(a.out)
    plans, expected = plan_corpus(a.seed, a.slices, a.patients, None if a.patients else a.files)
    cfg = Config(a.out, a.seed, a.slices, a.matrix)
    t0 = time.perf_counter()
    files, size = generate(cfg, plans, a.jobs)
    secs = time.perf_counter() - t0
    assert files == expected, (files, expected)
    summary = {"out": a.out, "patients": len(plans), "files": files, "bytes": size,
               "slices": a.slices, "matrix": a.matrix, "seed": a.seed,
               "seconds": round(secs, 2), "files_per_s": round(files / secs)}
    print(json.dumps(summary), file=sys.stderr)
    if a.manifest:
        with open(a.manifest, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
