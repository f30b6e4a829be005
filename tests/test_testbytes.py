"""The raw DICOM writer the tests and benchmarks share (rust/testbytes.rs,
as fastindex._native.DataSetWriter / part10 / long_length), checked
against pydicom."""

from __future__ import annotations

import io

import pydicom
from fastindex import _native
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR


def test_long_length_is_pydicoms_rule():
    for vr in VR:
        if len(vr.value) == 2:
            assert _native.long_length(vr.value) == (vr in EXPLICIT_VR_LENGTH_32), vr


def test_elements_in_each_encoding_read_back_with_pydicom():
    for explicit, little in [(True, True), (False, True), (True, False)]:
        w = _native.DataSetWriter(explicit, little)
        w.el(0x0008_0018, b"UI", "1.2.3").el(0x0008_0060, "CS", "CT").el(0x0010_0010, b"PN", "M\xfcller")
        w.head(0x0008_1140, b"SQ", _native.UNDEF).item().el(0x0008_1155, b"UI", "9.8").item_end().seq_end()
        w.el(0x0011_1010, b"UC", b"x" * 70_000).el(0x0020_0013, b"IS", "7", pad=False)
        w.head(0x0028_0010, b"US", 2).u16(512)
        ts = "1.2.840.10008.1.2" if not explicit else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
        ds = pydicom.dcmread(io.BytesIO(_native.part10(ts, w.buf, "1.2.840.10008.5.1.4.1.1.2", "1.2.3")))
        assert ds.file_meta.MediaStorageSOPInstanceUID == "1.2.3"
        assert ds.file_meta.TransferSyntaxUID == ts
        assert ds.SOPInstanceUID == "1.2.3" and ds.Modality == "CT"
        assert ds[0x0010_0010].value in ("M\xfcller", "M\xfcller ")
        assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == "9.8"
        assert len(ds[0x0011_1010].value) == 70_000
        assert ds.InstanceNumber == 7 and ds.Rows == 512
        assert len(w) == len(w.buf)


def test_padding_and_group_length():
    assert _native.DataSetWriter().el(0x0008_0018, b"UI", "1.2").buf[-4:] == b"1.2\0"
    assert _native.DataSetWriter().el(0x0008_0060, b"CS", "MRI").buf[-4:] == b"MRI "
    assert _native.DataSetWriter().el(0x0008_0060, b"CS", "MRI", pad=False).buf[-3:] == b"MRI"
    f = _native.part10("1.2.840.10008.1.2.1", b"", "1.2.840.10008.5.1.4.1.1.7")
    assert f[:132] == b"\0" * 128 + b"DICM"
    assert int.from_bytes(f[140:144], "little") == len(f) - 144
