"""Files the fast path once read differently from pydicom, built byte by
byte: each must now give pydicom's record (engine="rust" as well as
"auto"), or be declined by the fast path and read by pydicom ("auto").

The rule: the fast path gives pydicom's record for a file, or declines /
reports an error; never a different record, and never loses a file
pydicom can read (tests/mutate.py looks for more such files at random).
"""

from __future__ import annotations

import fastindex
import pydicom
import pytest
from fastindex import NotIndexed
from hostile import UNDEF, W, _end, _hand, _start, part10
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian

CT = "1.2.840.10008.5.1.4.1.1.2"
DICOMDIR = "1.2.840.10008.1.3.10"


def outcome(path, engine: str):
    try:
        return fastindex.read_header(path, engine=engine)
    except NotIndexed as e:
        return e.reason


def write(tmp_path, data: bytes, name: str = "f.dcm"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def same_as_pydicom(path) -> dict | str:
    """The fast path alone gives pydicom's answer (and so does "auto")."""
    oracle = outcome(path, "pydicom")
    assert outcome(path, "rust") == oracle
    assert outcome(path, "auto") == oracle
    return oracle


def declined_to_pydicom(path) -> dict | str:
    """The fast path declines; "auto" gives pydicom's answer."""
    rust = outcome(path, "rust")
    assert rust in ("unsupported", "malformed"), rust
    oracle = outcome(path, "pydicom")
    assert outcome(path, "auto") == oracle
    return oracle


def meta(ts: str, sop_class: str | None) -> bytes:
    """Preamble and meta group, with or without MediaStorageSOPClassUID."""
    m = W()
    if sop_class is not None:
        m.el(0x0002_0002, b"UI", sop_class)
    m.el(0x0002_0003, b"UI", "1.2.826.0.1.3680043.9.7433.2.98").el(0x0002_0010, b"UI", ts)
    g = W().head(0x0002_0000, b"UL", 4).u32(len(m.buf))
    return b"\0" * 128 + b"DICM" + bytes(g.buf) + bytes(m.buf)


# --------------------------------------------------------------------------
# 1. Items in the encoding pydicom reads them in; truncated only when cut


def hologic(un_items_explicit: bool = True) -> bytes:
    """(0040,0260) with VR UN and undefined length whose item is written in
    explicit VR (against PS3.5 6.2.2, but real: Hologic mammography),
    after everything wanted, near the end of the file."""
    w = _end(_start(W()))
    w.head(0x0040_0260, b"UN", UNDEF).item()
    item = W(explicit=un_items_explicit)
    item.el(0x0008_0100, b"SH", "T1").el(0x0008_0102, b"SH", "99HOLOGIC").el(0x0008_0104, b"LO", "Code meaning")
    w.raw(bytes(item.buf)).item_end().seq_end()
    w.el(0x0040_0275, b"LO", "")  # something after it
    return part10(ExplicitVRLittleEndian, bytes(w.buf))


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit-items", "implicit-items"])
def test_un_sequence_items_in_either_vr(tmp_path, explicit):
    """Read as implicit VR, `SH 02 00` is a length of 149,587: the fast path
    said truncated ("file ends inside the header") of a whole file."""
    rec = same_as_pydicom(write(tmp_path, hologic(explicit)))
    assert rec["series"] == "1.2.826.0.1.3680043.9.7433.4.9"


def test_truncated_reports_where_the_bytes_stop(tmp_path):
    data = hologic()
    cut = data[: data.index(b"99HOLOGIC")]
    p = write(tmp_path, cut)
    with pytest.raises(NotIndexed) as e:
        fastindex.read_header(p, engine="rust")
    assert e.value.reason == "truncated"
    assert f"at byte {len(cut)}" in e.value.message


def test_item_longer_than_its_sequence_is_malformed_not_truncated(tmp_path):
    """A cut file keeps the lengths it has: an item claiming more than its
    sequence holds, past the end of the file, is damage, and pydicom gets
    to read it."""
    inner = bytes(W().el(0x0008_1155, b"UI", "9.8.7").buf)
    data = _hand(lambda w: w.head(0x0008_1140, b"SQ", len(inner) + 8).item(0xFFF0).raw(inner))
    declined_to_pydicom(write(tmp_path, data))


def test_wanted_value_far_too_long_past_the_end_is_malformed(tmp_path):
    w = _start(W()).el(0x0010_0020, b"LO", "P").el(0x0020_000D, b"UI", "1.2.3")
    w.head(0x0020_000E, b"UI", 0xFFF0).raw(b"1.2.3.4")
    data = part10(ExplicitVRLittleEndian, bytes(w.buf))
    declined_to_pydicom(write(tmp_path, data))
    # A UID of a plausible length cut short is a cut file.
    w = _start(W()).el(0x0010_0020, b"LO", "P").el(0x0020_000D, b"UI", "1.2.3")
    w.head(0x0020_000E, b"UI", 40).raw(b"1.2.3.4")
    assert outcome(write(tmp_path, part10(ExplicitVRLittleEndian, bytes(w.buf))), "rust") == "truncated"


def test_un_sequence_of_defined_length_with_explicit_items(tmp_path):
    item = bytes(W().el(0x0008_1150, b"UI", CT).el(0x0008_1155, b"UI", "9.8.7").buf)
    body = bytes(W().item(len(item)).buf) + item
    rec = same_as_pydicom(write(tmp_path, _hand(lambda w: w.head(0x0008_1140, b"UN", len(body)).raw(body))))
    assert rec["reference_ct"] == "9.8.7"


def test_implicit_items_in_an_explicit_file(tmp_path):
    item = W(explicit=False).el(0x0008_1150, b"UI", CT).el(0x0008_1155, b"UI", "9.8.7")
    data = _hand(lambda w: w.head(0x0008_1140, b"SQ", UNDEF).item().raw(bytes(item.buf)).item_end().seq_end())
    assert same_as_pydicom(write(tmp_path, data))["reference_ct"] == "9.8.7"


# --------------------------------------------------------------------------
# 2. A DICOMDIR named by SOPClassUID


def dicomdir(records_implicit: bool) -> bytes:
    """A DICOMDIR whose meta group lacks MediaStorageSOPClassUID and whose
    data set has SOPClassUID, records in implicit VR or not."""
    w = W()
    w.el(0x0004_1130, b"CS", "FILESET").head(0x0004_1200, b"UL", 4).u32(0)
    w.head(0x0004_1220, b"SQ", UNDEF).item()
    rec = W(explicit=not records_implicit)
    rec.head(0x0004_1400, b"UL", 4).u32(0).el(0x0004_1430, b"CS", "PATIENT").el(0x0010_0020, b"LO", "PAT")
    w.raw(bytes(rec.buf)).item_end().seq_end()
    w.el(0x0008_0016, b"UI", DICOMDIR).el(0x0008_0018, b"UI", "1.2.826.0.1.3680043.9.7433.2.98")
    return meta(ExplicitVRLittleEndian, None) + bytes(w.buf)


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit-records", "explicit-records"])
def test_dicomdir_named_by_sop_class(tmp_path, implicit):
    """Was malformed in the fast path (records in implicit VR) and
    no_series_uid in pydicom's: a DICOMDIR is skipped as one."""
    assert same_as_pydicom(write(tmp_path, dicomdir(implicit))) == "dicomdir"


def test_dicomdir_named_by_meta_group(tmp_path):
    data = meta(ExplicitVRLittleEndian, DICOMDIR) + bytes(W().el(0x0004_1130, b"CS", "FILESET").buf)
    assert same_as_pydicom(write(tmp_path, data)) == "dicomdir"


# --------------------------------------------------------------------------
# 3. Not DICOM is not an error


def test_raw_rle_stream_is_not_dicom(tmp_path):
    """An RLE frame starts with its segment count: `02 00 00 00`, group
    0002 to a reader looking for a meta group (it was malformed)."""
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small_RLE.dcm"))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame[:4] == b"\x02\x00\x00\x00"
    assert same_as_pydicom(write(tmp_path, frame)) == "not_dicom"


@pytest.mark.parametrize(
    "head",
    [b"\x02\x00\x00\x00\x40\x00\x00\x00", b"\x02\x00\x10\x00\x00\x00\x00\x00", b"\x02\x00"],
    ids=["rle", "implicit-group-2", "short"],
)
def test_group_two_without_explicit_vr_or_preamble_is_not_dicom(tmp_path, head):
    data = head + bytes(range(256)) * 8
    assert same_as_pydicom(write(tmp_path, data)) == "not_dicom"


def test_bare_meta_group_in_explicit_vr_is_still_dicom(tmp_path):
    """No preamble, but a meta group in explicit VR: read as before."""
    data = part10(ExplicitVRLittleEndian, bytes(_end(_start(W())).buf))[128 + 4 :]
    assert same_as_pydicom(write(tmp_path, data))["series"] == "1.2.826.0.1.3680043.9.7433.4.9"


def test_data_set_without_meta_starting_past_group_0010_is_not_dicom(tmp_path):
    """The fast path's plausible start (README): the pydicom path agrees."""
    data = bytes(W(explicit=False).el(0x0020_0052, b"UI", "1.2.3").buf) + b"plain text follows " * 10
    assert same_as_pydicom(write(tmp_path, data)) == "not_dicom"


# --------------------------------------------------------------------------
# 4. sop_class_uid from the meta group


def test_sop_class_from_meta_group_when_data_set_has_none(tmp_path):
    w = W().el(0x0008_0018, b"UI", "1.2.9").el(0x0008_0060, b"CS", "CT")
    _end(w)
    rec = same_as_pydicom(write(tmp_path, part10(ExplicitVRLittleEndian, bytes(w.buf), sop_class=CT)))
    assert rec["sop_class_uid"] == CT


def test_data_set_sop_class_wins_over_meta_group(tmp_path):
    w = _end(_start(W()))
    rec = same_as_pydicom(write(tmp_path, part10(ExplicitVRLittleEndian, bytes(w.buf), sop_class=CT)))
    assert rec["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.7"


# --------------------------------------------------------------------------
# 5. Classes found by the mutational differential run (tests/mutate.py)


@pytest.mark.parametrize("vr", [b"FL", b"SL", b"AT", b"US", b"FD", b"SQ"])
def test_wanted_value_with_a_binary_vr_is_declined(tmp_path, vr):
    """ASCII bytes under a binary VR: pydicom reads numbers or tags, the
    fast path read the text."""
    data = _hand(lambda w: w.el(0x0008_103E, vr, "12345678"))
    declined_to_pydicom(write(tmp_path, data))


def test_wanted_value_with_an_unknown_vr_is_declined(tmp_path):
    """pydicom cannot convert a VR it does not know: the modality is blank
    there, "OT" in the fast path's old reading."""
    w = W().el(0x0008_0016, b"UI", "1.2.840.10008.5.1.4.1.1.7").el(0x0008_0018, b"UI", "1.2.9").el(0x0008_0060, b"XY", "OT")
    _end(w)
    assert declined_to_pydicom(write(tmp_path, part10(ExplicitVRLittleEndian, bytes(w.buf))))["modality"] == ""


def test_wanted_value_with_un_is_read_as_its_dictionary_vr(tmp_path):
    data = _hand(lambda w: w.el(0x0008_103E, b"UN", "Series  "))
    assert same_as_pydicom(write(tmp_path, data))["series_description"] == "Series"


def test_tag_out_of_order_in_a_wanted_item(tmp_path):
    """A tag past the wanted ones, then the wanted one: the fast path
    stopped at the first and blanked reference_ct."""
    item = bytes(W().el(0x0008_1160, b"IS", "1").el(0x0008_1155, b"UI", "9.8.7").buf)
    data = _hand(lambda w: w.head(0x0008_1140, b"SQ", len(item) + 8).item(len(item)).raw(item))
    assert declined_to_pydicom(write(tmp_path, data))["reference_ct"] == "9.8.7"


def test_damage_in_a_later_item_of_a_wanted_sequence(tmp_path):
    """pydicom parses every item of a wanted sequence; one it cannot read
    blanks the field there (the fast path only read the first)."""
    first = bytes(W().el(0x0008_1155, b"UI", "9.8.7").buf)
    second = b"\x08\x00\x55\x11UI\xff\x00" + b"1.2"
    body = bytes(W().item(len(first)).buf) + first + bytes(W().item(len(second)).buf) + second
    data = _hand(lambda w: w.head(0x0008_1140, b"SQ", len(body)).raw(body))
    declined_to_pydicom(write(tmp_path, data))


@pytest.mark.parametrize(
    "tag, value",
    [
        (0x0020_000E, b"\t1.2.3"),  # UIDs: Python strips white space
        (0x0018_0080, b"\t2300"),  # DS: the same
        (0x0020_0012, b"12345678901234567890"),  # IS: pydicom makes a float of it
        (0x0020_0012, b"1_0"),  # IS: Python reads 10
    ],
)
def test_values_pydicom_reads_its_own_way_are_declined(tmp_path, tag, value):
    w = W().el(0x0008_0016, b"UI", "1.2.840.10008.5.1.4.1.1.4").el(0x0008_0018, b"UI", "1.2.9").el(0x0008_0060, b"CS", "MR")
    elements = [(0x0010_0020, b"LO", b"P"), (0x0020_000D, b"UI", b"1.2.3"), (0x0020_000E, b"UI", b"1.2.3.4")]
    elements = sorted([e for e in elements if e[0] != tag] + [(tag, {0x0018_0080: b"DS", 0x0020_0012: b"IS"}.get(tag, b"UI"), value)])
    for t, vr, v in elements:
        w.el(t, vr, v)
    declined_to_pydicom(write(tmp_path, part10(ExplicitVRLittleEndian, bytes(w.buf))))


def test_character_set_pydicom_cannot_read_is_declined(tmp_path):
    """A NUL inside a term: pydicom fails on the file; the fast path gave
    a record (its text was ASCII)."""
    w = _end(_start(W().el(0x0008_0005, b"CS", b"\0ISO_IR 100")))
    declined_to_pydicom(write(tmp_path, part10(ExplicitVRLittleEndian, bytes(w.buf))))
    # The same in an item pydicom reads: it fails on the file.
    item = bytes(W().el(0x0008_0005, b"CS", b"\0ISO_IR 100").el(0x0008_1155, b"UI", "9.8.7").buf)
    data = _hand(lambda w: w.head(0x0008_1140, b"SQ", UNDEF).item(len(item)).raw(item).seq_end())
    declined_to_pydicom(write(tmp_path, data))


def test_empty_transfer_syntax_is_reported_as_pydicom_reports_it(tmp_path):
    """An empty TransferSyntaxUID: pydicom reads the bytes as they look,
    and names explicit VR little endian."""
    body = bytes(_end(_start(W(explicit=False))).buf)
    rec = same_as_pydicom(write(tmp_path, part10("", body)))
    assert rec["transfer_syntax"] == ExplicitVRLittleEndian


def test_command_group_before_the_data_set(tmp_path):
    """pydicom reads a command group (0000,eeee) apart, in implicit VR."""
    command = bytes(W(explicit=False).head(0x0000_0000, b"UL", 4).u32(8).el(0x0000_0002, b"UI", "1.2").buf)
    body = command + bytes(_end(_start(W())).buf)
    assert same_as_pydicom(write(tmp_path, part10(ExplicitVRLittleEndian, body)))["modality"] == "OT"


def test_all_zeros_is_not_dicom(tmp_path):
    assert same_as_pydicom(write(tmp_path, b"\0" * 4096)) == "not_dicom"


def test_implicit_file_unchanged(tmp_path):
    data = _hand(lambda w: w.el(0x0008_103E, b"LO", "Axial"), explicit=False)
    assert data[132:134] == b"\x02\x00"  # an explicit VR meta group, then implicit VR
    assert same_as_pydicom(write(tmp_path, data))["series_description"] == "Axial"


@pytest.mark.parametrize("vr, value", [(b"UL", b"\x00\x00"), (b"QS", b"\x00\x00"), (b"US", b"\x00")], ids=["UL", "unknown", "odd"])
def test_pixel_representation_pydicom_cannot_convert_beside_a_wanted_sequence(tmp_path, vr, value):
    """pydicom converts PixelRepresentation when it first reads a sequence
    of the same data set (to type US-or-SS values in the items); where that
    fails it has no value for the sequence (reference_ct ""), where the
    fast path had one."""
    item = bytes(W().el(0x0008_1155, b"UI", "9.8.7").buf)
    w = _start(W()).head(0x0008_1140, b"SQ", len(item) + 8).item(len(item)).raw(item)
    _end(w).el(0x0028_0103, vr, value, pad=False)
    declined_to_pydicom(write(tmp_path, part10(ExplicitVRLittleEndian, bytes(w.buf))))
    # Without a wanted sequence beside it, pydicom never converts it.
    w = _end(_start(W())).el(0x0028_0103, vr, value, pad=False)
    assert same_as_pydicom(write(tmp_path, part10(ExplicitVRLittleEndian, bytes(w.buf)), "plain.dcm"))["series"]


def test_numbers_lose_nuls_on_both_ends_as_in_the_pydicom_path(tmp_path):
    w = _end(_start(W())).el(0x0020_0037, b"DS", b"1\\0\\0\\\x000\\1\\0")
    rec = same_as_pydicom(write(tmp_path, part10(ExplicitVRLittleEndian, bytes(w.buf))))
    assert rec["orientation"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_item_delimiter_ending_the_meta_group(tmp_path):
    """pydicom ends the meta group at an item delimiter and reads on from
    there (group 0002 included) as the data set; the fast path, which took
    the delimiter for the data set's first element, stopped at once."""
    m = W().el(0x0002_0002, b"UI", CT)
    g = W().head(0x0002_0000, b"UL", 4).u32(len(m.buf))
    rest = W().el(0x0002_0010, b"UI", ExplicitVRLittleEndian)
    data = b"\0" * 128 + b"DICM" + bytes(g.buf) + bytes(m.buf) + b"\xfe\xff\x0d\xe0UI\0\0" + bytes(rest.buf) + bytes(_end(_start(W())).buf)
    declined_to_pydicom(write(tmp_path, data))
