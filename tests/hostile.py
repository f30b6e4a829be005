"""A hostile archive: damaged DICOM, hand-built pathologies and file system
traps, for the accounting tests (tests/test_hostile.py) and as fuzz seeds
(fuzz/run).

    python tests/hostile.py DIR      # write the tree under DIR

Layout of the tree (names are bytes: some are not valid UTF-8):

    good/       undamaged files, one per syntax and object kind; every other
                good file in the tree is a copy of one of these (its twin)
    trunc/      good files cut in the preamble, the meta group, mid-element,
                mid-element-header and mid-sequence
    random/     good files with random bytes over part of the header
    lengths/    lengths of ~4 GB, odd lengths, items past their sequence
    items/      zero-length and undefined-length items in bulk
    nesting/    sequences nested past stream::MAX_DEPTH (32), up to 5000
    zeros/      empty, all zeros, zeros after a header
    deflate/    corrupt deflate streams, a small deflate bomb
    text/       character sets and numbers that are wrong
    special/    a FIFO, a socket, symlink loops, a dangling link, links
                to a file, a directory and a device
    sparse/     a 12 GB sparse file: a valid header and 12 GB of pixel data
    deep/       a directory tree 200 levels deep
    many/       one directory with 3000 entries
    names/      names that are not UTF-8, or hold a newline, quote, backslash

`build()` returns a `Tree` that says, for every entry, what it may become.
"""

from __future__ import annotations

import io
import os
import random
import socket
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from fastindex import _native
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from support.rt import RTDOSE_CLASS, RTSTRUCT_CLASS, rtdose_refs, rtstruct_refs

SPARSE_SIZE = 12 * 2**30
DEEP = 200
MANY = 3000

#: reasons a damaged regular file may get, besides being indexed (the
#: pydicom fallback reads some damaged files, and that is allowed)
DAMAGE = frozenset({"truncated", "malformed", "not_dicom", "no_series_uid", "unsupported"})

UNDEF = _native.UNDEF


# --------------------------------------------------------------------------
# Data sets built with pydicom: the good files


def _meta(sop_class: str, sop_instance: str, ts: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.7433.1.1"
    return meta


def _item(**kw) -> Dataset:
    d = Dataset()
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def _ct() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7433.2.1"
    ds.Modality = "CT"
    ds.StudyDescription = "Thorax Übersicht"
    ds.SeriesDescription = "Axial 3mm "
    ds.ReferencedImageSequence = Sequence(
        [
            _item(ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.2", ReferencedSOPInstanceUID="1.2.826.0.1.3680043.9.7433.9.1"),
            _item(ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.2", ReferencedSOPInstanceUID="1.2.826.0.1.3680043.9.7433.9.2"),
        ]
    )
    ds.PatientName = "Müller^Jörg"
    ds.PatientID = "HOSTILE-1"
    ds.SliceThickness = "3.0"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.3.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7433.4.1"
    ds.AcquisitionNumber = "2"
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.9.7433.5.1"
    ds.Rows = 4
    ds.Columns = 4
    ds.BitsAllocated = 16
    ds.PixelData = b"\x01\x00" * 16
    return ds


def _mr() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7433.2.2"
    ds.Modality = "MR"
    ds.StudyDescription = "Gehirn – T1 ü"
    ds.SeriesDescription = "脳 sagittal"
    ds.PatientID = "HOSTILE-2"
    ds.ScanningSequence = ["SE", "IR"]
    ds.RepetitionTime = "2300.5"
    ds.EchoTime = "2.98"
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = "3"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.3.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7433.4.2"
    ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
    ds.AnatomicalOrientationType = "BIPED"
    return ds


def _rtstruct() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = RTSTRUCT_CLASS
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7433.2.3"
    ds.Modality = "RTSTRUCT"
    ds.PatientID = "HOSTILE-1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.3.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7433.4.3"
    ds.update(rtstruct_refs("1.2.826.0.1.3680043.9.7433.5.1", "1.2.826.0.1.3680043.9.7433.3.1", "1.2.826.0.1.3680043.9.7433.4.1", sop_classes=False))
    return ds


def _rtdose() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = RTDOSE_CLASS
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7433.2.4"
    ds.Modality = "RTDOSE"
    ds.PatientID = "HOSTILE-1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.3.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7433.4.4"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.9.7433.5.1"
    ds.update(rtdose_refs("1.2.826.0.1.3680043.9.7433.2.6", "1.2.826.0.1.3680043.9.7433.2.3", sop_classes=False))
    return ds


def _seg() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7433.2.5"
    ds.Modality = "SEG"
    ds.ReferencedSeriesSequence = Sequence([_item(SeriesInstanceUID="1.2.826.0.1.3680043.9.7433.4.1")])
    ds.PatientID = "HOSTILE-1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.3.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7433.4.5"
    return ds


def _save(ds: Dataset, ts: str | None, *, part10: bool = True) -> bytes:
    buf = io.BytesIO()
    if part10:
        ds = ds.copy()
        ds.file_meta = _meta(ds.SOPClassUID, ds.SOPInstanceUID, ts)
        ds.save_as(buf, enforce_file_format=True)
    else:
        implicit = ts == ImplicitVRLittleEndian
        little = ts != ExplicitVRBigEndian
        pydicom.dcmwrite(buf, ds, implicit_vr=implicit, little_endian=little)
    return buf.getvalue()


# --------------------------------------------------------------------------
# Hand-built bytes


#: the raw element writer shared with rust/tests.rs and bench/gen_corpus.py
#: (rust/testbytes.rs): W(explicit=True, little=True), chained .el(tag, vr,
#: value, pad=True), .head, .item, .item_end, .seq_end, .raw, .u16, .u32;
#: .buf is the bytes so far. Long explicit headers follow the reader's rule.
W = _native.DataSetWriter


def part10(ts: str, body: bytes, sop_class: str = "1.2.840.10008.5.1.4.1.1.7") -> bytes:
    return _native.part10(ts, body, sop_class, "1.2.826.0.1.3680043.9.7433.2.99")


def _start(w: W) -> W:
    """The wanted top-level elements a hand-built file opens with."""
    return w.el(0x0008_0016, b"UI", "1.2.840.10008.5.1.4.1.1.7").el(0x0008_0018, b"UI", "1.2.826.0.1.3680043.9.7433.2.9").el(0x0008_0060, b"CS", "OT")


def _end(w: W, series: str = "1.2.826.0.1.3680043.9.7433.4.9") -> W:
    return w.el(0x0010_0020, b"LO", "HAND").el(0x0020_000D, b"UI", "1.2.826.0.1.3680043.9.7433.3.9").el(0x0020_000E, b"UI", series)


def _hand(middle, *, explicit: bool = True, little: bool = True, series: str = "1.2.826.0.1.3680043.9.7433.4.9") -> bytes:
    """A Part 10 file whose data set is _start, `middle(w)`, _end."""
    w = _start(W(explicit, little))
    middle(w)
    _end(w, series)
    ts = ImplicitVRLittleEndian if not explicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return part10(ts, bytes(w.buf))


def declined(middle) -> bytes:
    """A valid Part 10 file the fast path declines (ISO 2022 text in a
    wanted field), so that pydicom reads it; `middle(w)` writes private
    elements into it (the fallback's tests and bench/fallback_bombs.py)."""
    w = W()
    w.el(0x0008_0005, b"CS", "ISO 2022 IR 87")
    _start(w)
    w.el(0x0008_1030, b"LO", b"\x1b$B;3ED\x1b(B")
    w.el(0x0009_0010, b"LO", "BOMB")
    middle(w)
    _end(w)
    return part10(ExplicitVRLittleEndian, bytes(w.buf))


def _nested(levels: int, *, defined: bool, wanted: bool) -> bytes:
    """Sequences nested `levels` deep, in (0008,1140) (wanted: the stream
    descends its first item) or a private tag (skipped: walked only when
    undefined)."""
    tag = 0x0008_1140 if wanted else 0x0009_1010
    if defined:
        inner = bytes(W().el(0x0008_1155, b"UI", "1.2.3").buf)
        for _ in range(levels):
            w = W().head(tag if wanted else 0x0009_1010, b"SQ", len(inner) + 8).item(len(inner)).raw(inner)
            inner = bytes(w.buf)
        body = inner
    else:
        w = W()
        for _ in range(levels):
            w.head(tag if wanted else 0x0009_1010, b"SQ", UNDEF).item(UNDEF)
        w.el(0x0008_1155, b"UI", "1.2.3")
        for _ in range(levels):
            w.item_end().seq_end()
        body = bytes(w.buf)
    w = W().el(0x0008_0016, b"UI", "1.2.840.10008.5.1.4.1.1.7").el(0x0008_0018, b"UI", "1.2.9").el(0x0008_0060, b"CS", "OT")
    w.raw(body)
    _end(w)
    return part10(ExplicitVRLittleEndian, bytes(w.buf))


def _deflate(raw: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(raw) + c.flush()


def _meta_end(data: bytes) -> int:
    """Offset of the first byte after the meta group of a Part 10 file."""
    pos = 132
    while data[pos : pos + 2] == b"\x02\x00":
        vr = data[pos + 4 : pos + 6]
        if _native.long_length(vr):
            pos += 12 + struct.unpack("<I", data[pos + 8 : pos + 12])[0]
        else:
            pos += 8 + struct.unpack("<H", data[pos + 6 : pos + 8])[0]
    return pos


def _cut(data: bytes, marker: bytes, back: int = 0) -> bytes:
    """`data` cut in the middle of `marker` (or `back` bytes before it)."""
    at = data.index(marker)
    return data[: at - back] if back else data[: at + len(marker) // 2]


# --------------------------------------------------------------------------
# The tree


@dataclass
class Tree:
    root: Path
    #: relative path (bytes) -> twin in good/ (bytes) for every undamaged
    #: regular file: its record must be the twin's, path fields aside
    twins: dict[bytes, bytes] = field(default_factory=dict)
    #: relative path -> reasons allowed (None: indexed or any damage reason)
    expect: dict[bytes, frozenset | None] = field(default_factory=dict)
    #: non-regular entries and links: relative path -> (reason without
    #: --follow-symlinks, reason with it); "" means: walked as a directory
    #: (no entry of its own); "file" means: followed to a regular file
    special: dict[bytes, tuple[str, str]] = field(default_factory=dict)
    #: the sparse file, if made
    sparse: bytes | None = None


def good_files() -> dict[bytes, bytes]:
    ct = _ct()
    bare = _ct()
    del bare.PixelData
    out = {
        b"good/ct_explicit.dcm": _save(ct, ExplicitVRLittleEndian),
        b"good/ct_implicit.dcm": _save(ct, ImplicitVRLittleEndian),
        b"good/ct_big.dcm": _save(ct, ExplicitVRBigEndian),
        b"good/ct_deflated.dcm": _save(ct, DeflatedExplicitVRLittleEndian),
        b"good/ct_jpeg_syntax.dcm": _save(_mr(), JPEGBaseline8Bit),
        b"good/ct_bare_implicit": _save(bare, ImplicitVRLittleEndian, part10=False),
        b"good/ct_bare_explicit": _save(bare, ExplicitVRLittleEndian, part10=False),
        b"good/mr_utf8.dcm": _save(_mr(), ExplicitVRLittleEndian),
        b"good/rtstruct.dcm": _save(_rtstruct(), ImplicitVRLittleEndian),
        b"good/rtdose.dcm": _save(_rtdose(), ExplicitVRBigEndian),
        b"good/seg.dcm": _save(_seg(), ExplicitVRLittleEndian),
    }
    # Odd lengths: values of odd length are against the standard but read
    # by everyone.
    out[b"good/odd_lengths.dcm"] = _hand(lambda w: w.el(0x0008_1030, b"LO", "odd study", pad=False).el(0x0008_103E, b"LO", "ODD", pad=False))
    # Zero-length and undefined-length items, in wanted and unwanted
    # sequences, 10,000 of them.
    def items(w: W) -> None:
        w.head(0x0008_1140, b"SQ", UNDEF).item(0).item(UNDEF).item_end()
        for _ in range(10_000):
            w.item(0)
        w.seq_end()
        w.head(0x0009_0010, b"LO", 4).raw(b"PRIV")
        w.head(0x0009_1010, b"SQ", UNDEF)
        for _ in range(10_000):
            w.item(UNDEF).item_end().item(0)
        w.seq_end()
    out[b"good/items.dcm"] = _hand(items)
    # A wanted sequence of undefined length whose first item is empty.
    out[b"good/empty_first_item.dcm"] = _hand(lambda w: w.head(0x0008_1140, b"SQ", UNDEF).item(UNDEF).item_end().item(UNDEF).el(0x0008_1155, b"UI", "1.2.3").item_end().seq_end())
    # Nested just within the bound (unwanted, undefined lengths).
    out[b"good/nested_31.dcm"] = _nested(31, defined=False, wanted=False)
    return out


def damaged_files(good: dict[bytes, bytes], rng: random.Random) -> dict[bytes, tuple[bytes, frozenset | None]]:
    """Relative path -> (bytes, reasons allowed; None: indexed or any)."""
    out: dict[bytes, tuple[bytes, frozenset | None]] = {}
    truncated = frozenset({"truncated"})

    def add(name: bytes, data: bytes, allowed: frozenset | None = None) -> None:
        out[name] = (data, allowed)

    series = b"1.2.826.0.1.3680043.9.7433.4.1"
    refs = b"1.2.826.0.1.3680043.9.7433.9.1"
    for key in (b"ct_explicit", b"ct_implicit", b"ct_big"):
        data = good[b"good/" + key + b".dcm"]
        add(b"trunc/" + key + b".preamble", data[:64], frozenset({"not_dicom"}))
        add(b"trunc/" + key + b".dicm", data[:130], frozenset({"not_dicom"}))
        add(b"trunc/" + key + b".meta", _cut(data, b"1.2.840.10008.1.2"), truncated)
        add(b"trunc/" + key + b".meta_header", data[:150], truncated)
        add(b"trunc/" + key + b".element", _cut(data, series), truncated)
        add(b"trunc/" + key + b".element_header", _cut(data, series, back=5), truncated)
        add(b"trunc/" + key + b".sequence", _cut(data, refs), truncated)
        add(b"trunc/" + key + b".item_header", _cut(data, refs, back=14), truncated)
        add(b"trunc/" + key + b".last", data[: data.index(b"1.2.826.0.1.3680043.9.7433.5.1") + 20], truncated)
    for key in (b"ct_bare_implicit", b"ct_bare_explicit"):
        data = good[b"good/" + key]
        add(b"trunc/" + key + b".element", _cut(data, series), truncated)
        add(b"trunc/" + key + b".sequence", _cut(data, refs), truncated)
        add(b"trunc/" + key + b".tiny", data[:5], frozenset({"not_dicom"}))
    rt = good[b"good/rtstruct.dcm"]
    add(b"trunc/rtstruct.deep_sequence", _cut(rt, series), truncated)
    dfl = good[b"good/ct_deflated.dcm"]
    body_at = _meta_end(dfl)
    for frac in (1, 3, 5, 7):
        cut = body_at + (len(dfl) - body_at) * frac // 8
        add(b"trunc/ct_deflated.%d" % frac, dfl[:cut], frozenset({"truncated", "malformed"}))

    # Random bytes over the header, in every syntax.
    for i in range(48):
        key = rng.choice(sorted(k for k in good if b"items" not in k))
        data = bytearray(good[key])
        at = rng.randrange(0, min(len(data), 1200))
        n = rng.choice([1, 2, 4, 8, 64, 512])
        data[at : at + n] = rng.randbytes(n)
        add(b"random/%02d-%s" % (i, key.split(b"/")[1]), bytes(data))

    # Lengths.
    add(b"lengths/wanted_4gb_implicit", part10(ImplicitVRLittleEndian, bytes(_start(W(False)).head(0x0020_000E, b"UI", 0xFFFF_FFF0).raw(b"1.2.3\0").buf)))
    add(b"lengths/wanted_4gb_explicit_un", _hand(lambda w: w.head(0x0008_103E, b"UN", 0xFFFF_FFF0).raw(b"desc")))
    add(b"lengths/unwanted_4gb", _hand(lambda w: w.head(0x0009_1010, b"OB", 0xFFFF_FFF0).raw(b"\1" * 64)), truncated)
    add(b"lengths/sequence_4gb", _hand(lambda w: w.head(0x0008_1140, b"SQ", 0xFFFF_FFF0).item(UNDEF).el(0x0008_1155, b"UI", "1.2").item_end()), frozenset({"truncated", "malformed"}))
    add(b"lengths/item_4gb", _hand(lambda w: w.head(0x0008_1140, b"SQ", UNDEF).item(0xFFFF_FFF0).el(0x0008_1155, b"UI", "1.2")), truncated)
    # pydicom reads every item of a sequence of undefined length, so the
    # fast path walks this one too: zeros repeating (0000,0000) are damage
    # found before the end (malformed), or the item is cut (truncated).
    unwanted_item = _hand(lambda w: w.head(0x0009_1010, b"SQ", UNDEF).item(0xFFFF_FFF0).raw(b"\0" * 32))
    add(b"lengths/unwanted_item_4gb", unwanted_item, frozenset({"truncated", "malformed"}))
    meta_huge = bytearray(part10(ExplicitVRLittleEndian, bytes(_end(_start(W())).buf)))
    meta_huge[144:144] = bytes(W().head(0x0002_0001, b"OB", 0xFFFF_FFF0).raw(b"\0\1").buf)
    add(b"lengths/meta_4gb", bytes(meta_huge), frozenset({"truncated", "malformed"}))
    add(b"lengths/meta_undefined", b"\0" * 128 + b"DICM" + bytes(W().head(0x0002_0001, b"OB", UNDEF).raw(b"\0\1" * 8).buf), frozenset({"malformed", "truncated"}))
    # No LO is 65535 bytes long: a wanted value that claims so and runs past
    # the end has a damaged length (malformed), it was not cut; pydicom
    # then reads the rest of the file into it and finds no series.
    add(b"lengths/short_ffff", _hand(lambda w: w.head(0x0008_103E, b"LO", 0xFFFF).raw(b"x" * 100)), frozenset({"malformed", "no_series_uid"}))
    add(b"lengths/odd_item", _hand(lambda w: w.head(0x0008_1140, b"SQ", 25).item(7).el(0x0008_1155, b"UI", "1.2.3.4.5.6.7")))
    add(b"lengths/odd_sequence", _hand(lambda w: w.head(0x0008_1140, b"SQ", 21).item(UNDEF).el(0x0008_1155, b"UI", "1.2").item_end()))
    add(b"lengths/item_past_sequence", _hand(lambda w: w.head(0x0008_1140, b"SQ", 8).item(16).el(0x0008_1155, b"UI", "1.2.3.4")))
    add(b"lengths/odd_unwanted", _hand(lambda w: w.head(0x0009_1010, b"OB", 3).raw(b"abc")))

    # Items: delimiters where they do not belong.
    add(b"items/stray_item_end", _hand(lambda w: w.item_end()))
    add(b"items/stray_seq_end", _hand(lambda w: w.seq_end()))
    add(b"items/no_item_in_sequence", _hand(lambda w: w.head(0x0008_1140, b"SQ", UNDEF).el(0x0008_1155, b"UI", "1.2").seq_end()))
    add(b"items/unterminated", _hand(lambda w: w.head(0x0009_1010, b"SQ", UNDEF).item(UNDEF).el(0x0008_1155, b"UI", "1.2")))
    add(b"items/zero_items_forever", part10(ExplicitVRLittleEndian, bytes(_start(W()).head(0x0009_1010, b"SQ", UNDEF).raw(bytes(W().item(0).buf) * 50_000).buf)), truncated)

    # Nesting past the bound.
    for levels in (33, 40, 5000):
        add(b"nesting/undefined_%d" % levels, _nested(levels, defined=False, wanted=False))
        add(b"nesting/wanted_undefined_%d" % levels, _nested(levels, defined=False, wanted=True))
        add(b"nesting/defined_%d" % levels, _nested(levels, defined=True, wanted=True))

    # Zeros.
    ct = good[b"good/ct_explicit.dcm"]
    add(b"zeros/empty", b"", frozenset({"not_dicom"}))
    add(b"zeros/all_zeros", b"\0" * (256 * 1024), frozenset({"not_dicom"}))
    add(b"zeros/preamble_only", b"\0" * 128 + b"DICM" + b"\0" * 4096)
    add(b"zeros/after_meta", ct[: _meta_end(ct)] + b"\0" * (256 * 1024))
    add(b"zeros/after_header", ct[: ct.index(series) - 8] + b"\0" * (256 * 1024))

    # Deflate.
    add(b"deflate/corrupt", dfl[:body_at] + rng.randbytes(2048))
    add(b"deflate/flipped", dfl[: body_at + 20] + bytes(b ^ 0x55 for b in dfl[body_at + 20 : body_at + 40]) + dfl[body_at + 40 :])
    add(b"deflate/bomb", part10(DeflatedExplicitVRLittleEndian, _deflate(b"\0" * (1 << 20))))
    add(b"deflate/bomb_unwanted", part10(DeflatedExplicitVRLittleEndian, _deflate(bytes(_end(_start(W()).head(0x0009_1010, b"OB", 1 << 24).raw(b"\0" * (1 << 24))).buf))))
    add(b"deflate/empty", part10(DeflatedExplicitVRLittleEndian, b""))

    # Text and numbers that are wrong (a record or an error, not a crash).
    add(b"text/bad_utf8", _hand(lambda w: w.el(0x0008_0005, b"CS", "ISO_IR 192").el(0x0008_103E, b"LO", b"\xff\xfe\xc3")), None)
    add(b"text/unknown_charset", _hand(lambda w: w.el(0x0008_0005, b"CS", "ISO_IR 999").el(0x0008_103E, b"LO", b"caf\xe9")), None)
    add(b"text/iso2022", _hand(lambda w: w.el(0x0008_0005, b"CS", "\\ISO 2022 IR 87").el(0x0008_103E, b"LO", b"\x1b$B;3ED\x1b(B")), None)
    add(b"text/bad_numbers", part10(ExplicitVRLittleEndian, bytes(_start(W()).el(0x0018_0080, b"DS", "nan").el(0x0018_0081, b"DS", "1e999").el(0x0018_0087, b"DS", "1.5.5").el(0x0020_000E, b"UI", "1.2").el(0x0020_0037, b"DS", "1\\x\\0").buf)), None)
    add(b"text/binary_vr", _hand(lambda w: w.el(0x0008_103E, b"OB", b"\x00\x01\x02\x03")), None)
    return out


def _mkfifo(p: Path) -> None:
    os.mkfifo(p)


def _mksock(p: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(os.fsencode(p))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _write(root: Path, rel: bytes, data: bytes) -> None:
    p = Path(os.fsdecode(os.path.join(os.fsencode(root), rel)))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def build(root: Path, *, sparse: bool = True, deep: int = DEEP, many: int = MANY, seed: int = 7433) -> Tree:
    """Write the hostile tree under `root` (which must not exist yet)."""
    root = Path(root)
    root.mkdir(parents=True)
    rng = random.Random(seed)
    tree = Tree(root)
    good = good_files()
    for rel, data in good.items():
        _write(root, rel, data)
        tree.twins[rel] = rel
    for rel, (data, allowed) in damaged_files(good, rng).items():
        _write(root, rel, data)
        tree.expect[rel] = allowed

    # Names.
    ct = good[b"good/ct_explicit.dcm"]
    for rel in (b"names/\xff\xfe-latin1-\xe9.dcm", b"names/line\nbreak.dcm", b'names/quote".dcm', b"names/back\\slash.dcm", b"names/ tab\t.dcm", b"names/" + b"L" * 250 + b".dcm"):
        _write(root, rel, ct)
        tree.twins[rel] = b"good/ct_explicit.dcm"
    _write(root, b"names/bad-\x80.txt", b"not DICOM at all\n")
    tree.expect[b"names/bad-\x80.txt"] = frozenset({"not_dicom"})
    _write(root, b"names/trunc-\xe9\xff", _cut(ct, b"1.2.826.0.1.3680043.9.7433.4.1"))
    tree.expect[b"names/trunc-\xe9\xff"] = frozenset({"truncated"})

    # Deep.
    rel = b"deep/" + b"d/" * deep
    _write(root, rel + b"leaf.dcm", good[b"good/mr_utf8.dcm"])
    tree.twins[rel + b"leaf.dcm"] = b"good/mr_utf8.dcm"
    _write(root, rel + b"cut.dcm", good[b"good/mr_utf8.dcm"][:400])
    tree.expect[rel + b"cut.dcm"] = frozenset({"truncated"})

    # Many entries in one directory.
    seg = good[b"good/seg.dcm"]
    for i in range(many):
        if i % 3 == 0:
            _write(root, b"many/junk-%05d.txt" % i, b"%d\n" % i)
            tree.expect[b"many/junk-%05d.txt" % i] = frozenset({"not_dicom"})
        else:
            _write(root, b"many/seg-%05d.dcm" % i, seg)
            tree.twins[b"many/seg-%05d.dcm" % i] = b"good/seg.dcm"

    # Special entries.
    sp = root / "special"
    sp.mkdir()
    _mkfifo(sp / "fifo")
    tree.special[b"special/fifo"] = ("not_regular", "not_regular")
    if _mksock(sp / "socket"):
        tree.special[b"special/socket"] = ("not_regular", "not_regular")
    os.symlink("..", sp / "loop_up")
    tree.special[b"special/loop_up"] = ("symlink", "symlink_loop")
    os.symlink(".", sp / "loop_here")
    tree.special[b"special/loop_here"] = ("symlink", "symlink_loop")
    os.symlink("self", sp / "self")
    tree.special[b"special/self"] = ("symlink", "unreadable")
    os.symlink("nowhere/at/all", sp / "dangling")
    tree.special[b"special/dangling"] = ("symlink", "unreadable")
    os.symlink("../good/seg.dcm", sp / "to_file")
    tree.special[b"special/to_file"] = ("symlink", "file")
    tree.twins[b"special/to_file"] = b"good/seg.dcm"
    os.symlink("/dev/zero", sp / "to_device")
    tree.special[b"special/to_device"] = ("symlink", "not_regular")
    os.symlink("../trunc", sp / "to_dir")
    tree.special[b"special/to_dir"] = ("symlink", "")
    (sp / "a" / "b").mkdir(parents=True)
    os.symlink("../../a", sp / "a" / "b" / "back_to_a")
    tree.special[b"special/a/b/back_to_a"] = ("symlink", "symlink_loop")

    # A 12 GB sparse file: a valid header, then pixel data that is never read.
    if sparse:
        body = bytes(_end(_start(W())).head(0x7FE0_0010, b"OW", 0xFFFF_FFF0).buf)
        head = part10(ExplicitVRLittleEndian, body)
        p = root / "sparse" / "12GB.dcm"
        p.parent.mkdir()
        with open(p, "wb") as f:
            f.write(head)
            f.truncate(SPARSE_SIZE)
        tree.sparse = b"sparse/12GB.dcm"
        tree.twins[b"sparse/12GB.dcm"] = b"sparse/12GB.dcm"
    return tree


def seed_blobs() -> Iterator[bytes]:
    """The content of every regular file of the tree (fuzz seeds)."""
    good = good_files()
    yield from good.values()
    for data, _ in damaged_files(good, random.Random(7433)).values():
        yield data


def zero_tail_sparse(path: Path, size: int = SPARSE_SIZE) -> None:
    """A sparse file that starts like DICOM and goes on in zeros: a header
    cut before its SeriesInstanceUID. Both readers must give up quickly."""
    ct = good_files()[b"good/ct_explicit.dcm"]
    with open(path, "wb") as f:
        f.write(ct[: ct.index(b"1.2.826.0.1.3680043.9.7433.4.1") - 8])
        f.truncate(size)


if __name__ == "__main__":
    t = build(Path(sys.argv[1]))
    print(f"{len(t.twins)} good, {len(t.expect)} damaged, {len(t.special)} special under {t.root}")
