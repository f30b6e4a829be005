"""Mutational differential testing: valid DICOM files, damaged one way or
another, read by the Rust reader and by pydicom; the Rust reader must give
pydicom's answer or decline.

    python tests/mutate.py N [--seed S] [--jobs J]     # N cases, a summary
    python tests/mutate.py --seed S --case I [-o F]    # one case, explained
    make fuzz-diff N=50000                             # the same, from make

Seeds: pydicom's test and charset files, the files vendored in tests/data
and the good files of tests/hostile.py (files over 256 KiB are cut a little
after their pixel data element starts: neither reader goes further). Case
I of seed S is made from `random.Random(S * 2**32 + I)` alone, so any case
is reproduced from (S, I): the summary prints them for every difference.

Mutations (one, sometimes two or three): bit flips and random bytes in the
header, cuts, lengths set to neighbouring and extreme values, VRs replaced
(known, unknown, binary VRs over text values; with the header re-encoded
or not), tags changed (neighbours, wanted tags, item and delimiter tags,
swapped with the next element), elements removed, repeated or swapped,
bytes inserted or removed, the transfer syntax and the character set
swapped, wanted values replaced by odd text. Enclosing defined lengths
are kept consistent where the mutation means to (a swap, a new value) and
not where it does not (a raw length).

Each case is read with `read_header(engine="rust")` and
`read_header(engine="pydicom")` (pydicom in the fallback's worker process,
as the CLI runs it) and put in one class:

    agree          the same record (compared as JSON bytes: 512 and 512.0
                   differ, and so do key orders), or the same reason for
                   none among no_series_uid, dicomdir, not_dicom
    rust-declined  Rust says malformed or unsupported, pydicom gives a
                   record: the default engine hands the file to pydicom
    rust-truncated Rust says truncated, pydicom gives a record: the file
                   was cut inside its header; pydicom returns the part
                   before the cut, the fast path reports the damage
    both-fail      neither gives a record
    silent         Rust gives an answer (a record, or a reason that skips
                   the file: no_series_uid, dicomdir, not_dicom) and
                   pydicom gives a different one: a record that differs,
                   no record (whatever its reason), or another skip
                   reason. These must never happen.

A Rust error other than those (unreadable) where pydicom reads the file is
counted as silent too: nothing hands such a file to pydicom.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import struct
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpora  # noqa: E402
import hostile  # noqa: E402
from fastindex import _native  # noqa: E402

KNOWN_VRS = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF", b"OL",
    b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US",
    b"UT", b"UV",
]
UNDEF = _native.UNDEF
#: the VRs with a 4-byte length in explicit VR: the reader's own rule
LONG_VRS = frozenset(vr for vr in KNOWN_VRS if _native.long_length(vr))
#: a cut seed keeps this much of its pixel data
PIXEL_TAIL = 1024
BIG_SEED = 256 * 1024

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG = "1.2.840.10008.1.2.2"
SYNTAXES = [IMPLICIT, EXPLICIT, DEFLATED, BIG, "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5", "", "1.2.3", IMPLICIT + " ", " " + EXPLICIT, EXPLICIT + "\0", BIG + "\\" + EXPLICIT]
CHARSETS = [
    "", "ISO_IR 100", "ISO_IR 192", "ISO_IR 144", "ISO_IR 101", "ISO_IR 126", "ISO_IR 148", "ISO_IR 13", "GB18030", "GBK",
    "ISO 2022 IR 87", "\\ISO 2022 IR 87", "ISO 2022 IR 6\\ISO 2022 IR 100", "ISO_IR 999", "ISO-IR 100", "ISO_IR 192\0", " ISO_IR 100",
    "ISO_IR 100\\ISO_IR 192", "latin1", "utf8",
]
ODD_TEXT = [
    b"", b" ", b"\0", b"A\\B", b"\\", b"caf\xe9", b"\xc3\xa9t\xc3\xa9", b"\xff\xfe", b"\x1b$B;3\x1b(B", b"1.5", b"2.5", b"1e3",
    b"nan", b"inf", b"1e999", b"-0", b"+7", b"\t3", b"3\t", b"\xa07", b"0x10", b"1_0", b"007", b" 12 ", b"1\\2", b"1.2.3\0",
    b"1.2.3 ", b" 1.2.3", b"\x00\x01\x02\x03", b"x" * 70, b"\x85", b"1.5\0\0", b"12345678901234567890",
]

#: wanted tags (from the field table), the character set, and a few others
try:
    from fastindex.fields import FIELDS

    WANTED_TAGS = sorted({t for f in FIELDS for p in f.sources for t in p} | {0x00080005})
except Exception:  # the harness still runs without the extension built
    WANTED_TAGS = [0x00080005, 0x00080016, 0x00080018, 0x00080060, 0x0020000E]


def _dictionary_vr(tag: int) -> str | None:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


# --------------------------------------------------------------------------
# Where the elements are


@dataclasses.dataclass
class El:
    region: str  # "prefix" (preamble and meta) or "body" (the data set)
    start: int  # offset of the tag
    tag: int
    vr: bytes | None  # explicit VR as written; None in implicit VR and for items
    len_off: int
    len_size: int
    length: int
    value: int  # offset of the value
    little: bool
    depth: int
    #: (len_off, len_size, little) of each enclosing defined length
    #: (sequences, items, the meta group length)
    parents: tuple = ()

    @property
    def end(self) -> int:
        return self.value + (0 if self.length == UNDEF else self.length)

    @property
    def item(self) -> bool:
        return self.tag >> 16 == 0xFFFE


@dataclasses.dataclass
class Doc:
    prefix: bytearray  # preamble and meta group
    body: bytearray  # the data set (inflated when deflated)
    deflated: bool
    els: list[El]
    #: offset in body where the reading stops (top-level pixel data), or len
    header_end: int
    little: bool = True
    explicit: bool = True

    def bytes(self) -> bytes:
        body = bytes(self.body)
        if self.deflated:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            body = c.compress(body) + c.flush()
        return bytes(self.prefix) + body

    def buf(self, region: str) -> bytearray:
        return self.prefix if region == "prefix" else self.body


def _u(b: bytes, little: bool) -> int:
    return int.from_bytes(b, "little" if little else "big")


def _p(v: int, size: int, little: bool) -> bytes:
    return (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little" if little else "big")


class _Walker:
    def __init__(self, buf: bytes, region: str, limit: int = 20000):
        self.buf, self.region, self.out, self.limit = buf, region, [], limit

    def dataset(self, pos: int, end: int | None, explicit: bool, little: bool, depth: int, parents: tuple, top: bool) -> int:
        """Walk elements from pos to end (None: to a delimiter or the end of
        the buffer); return where the data set ended."""
        buf = self.buf
        stop = len(buf) if end is None else min(end, len(buf))
        while pos + 8 <= stop and len(self.out) < self.limit:
            tag = _u(buf[pos : pos + 2], little) << 16 | _u(buf[pos + 2 : pos + 4], little)
            if tag == 0xFFFEE00D:
                self.out.append(El(self.region, pos, tag, None, pos + 4, 4, _u(buf[pos + 4 : pos + 8], little), pos + 8, little, depth, parents))
                return pos + 8
            vr = None
            if explicit and tag >> 16 != 0xFFFE:
                vr = bytes(buf[pos + 4 : pos + 6])
                if vr in LONG_VRS:
                    len_off, len_size = pos + 8, 4
                else:
                    len_off, len_size = pos + 6, 2
            else:
                len_off, len_size = pos + 4, 4
            if len_off + len_size > len(buf):
                return len(buf)
            length = _u(buf[len_off : len_off + len_size], little)
            value = len_off + len_size
            el = El(self.region, pos, tag, vr, len_off, len_size, length, value, little, depth, parents)
            self.out.append(el)
            if top and tag == 0x7FE00010:
                self.header_end = value
                return value
            is_sq = vr == b"SQ" or (vr == b"UN" and length == UNDEF)
            if vr is None and tag >> 16 != 0xFFFE:
                is_sq = (length == UNDEF and buf[value : value + 4] == _p(0xFFFE, 2, little) + _p(0xE000, 2, little)) or (
                    length != UNDEF and _dictionary_vr(tag) == "SQ"
                )
            if is_sq:
                inner = parents + ((len_off, len_size, little),) if length != UNDEF else parents
                pos = self.sequence(value, None if length == UNDEF else value + length, explicit, little, depth + 1, inner)
            elif length == UNDEF:
                # Encapsulated data: items of fragments up to a delimiter.
                pos = value
                while pos + 8 <= len(buf):
                    t = _u(buf[pos : pos + 2], little) << 16 | _u(buf[pos + 2 : pos + 4], little)
                    ln = _u(buf[pos + 4 : pos + 8], little)
                    if t == 0xFFFEE0DD:
                        pos += 8
                        break
                    if t != 0xFFFEE000 or ln == UNDEF:
                        return len(buf)
                    pos += 8 + ln
            else:
                pos = value + length
        return pos

    def sequence(self, pos: int, end: int | None, explicit: bool, little: bool, depth: int, parents: tuple) -> int:
        buf = self.buf
        while pos + 8 <= len(buf) and (end is None or pos < end) and len(self.out) < self.limit:
            tag = _u(buf[pos : pos + 2], little) << 16 | _u(buf[pos + 2 : pos + 4], little)
            length = _u(buf[pos + 4 : pos + 8], little)
            self.out.append(El(self.region, pos, tag, None, pos + 4, 4, length, pos + 8, little, depth, parents))
            pos += 8
            if tag == 0xFFFEE0DD:
                return pos
            if tag != 0xFFFEE000:
                return len(buf)
            item_explicit = explicit
            if explicit:  # pydicom's rule: the first element of each item says
                v = buf[pos + 4 : pos + 6]
                item_explicit = len(v) < 2 or (0x40 < v[0] < 0x5B and 0x40 < v[1] < 0x5B)
            if length == UNDEF:
                pos = self.dataset(pos, None, item_explicit, little, depth, parents, False)
            else:
                self.dataset(pos, pos + length, item_explicit, little, depth, parents + ((pos - 4, 4, little),), False)
                pos += length
        return pos


def _meta_end(data: bytes, start: int) -> int:
    pos = start
    while data[pos : pos + 2] == b"\x02\x00" and pos + 12 <= len(data):
        vr = data[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            pos += 12 + struct.unpack("<I", data[pos + 8 : pos + 12])[0]
        else:
            pos += 8 + struct.unpack("<H", data[pos + 6 : pos + 8])[0]
    return min(pos, len(data))


def parse(data: bytes) -> Doc:
    """The layout of a file, as far as it can be made out."""
    start = 132 if data[128:132] == b"DICM" else 0
    meta_end = _meta_end(data, start)
    meta = _Walker(data[:meta_end], "prefix")
    group_len = ()
    if data[start : start + 4] == b"\x02\x00\x00\x00" and data[start + 4 : start + 6] == b"UL":
        group_len = ((start + 8, 4, True),)
    meta.dataset(start, meta_end, True, True, 0, group_len, False)
    for el in meta.out:  # the group length counts the elements after it
        if el.tag == 0x00020000:
            el.parents = ()
    ts = ""
    for el in meta.out:
        if el.tag == 0x00020010:
            ts = data[el.value : el.end].decode("latin-1").rstrip("\0 ")
    deflated = ts == DEFLATED
    body = data[meta_end:]
    if deflated:
        try:
            body = zlib.decompressobj(-15).decompress(body, 8 << 20)
        except zlib.error:
            deflated, body = False, data[meta_end:]
    little = ts != BIG
    if ts in (IMPLICIT,) or (not ts and not (body[4:6].isalpha() and body[4:6].isupper())):
        explicit = False
    else:
        explicit = True
    if not ts and explicit and len(body) > 2 and struct.unpack("<H", body[:2])[0] >= 1024:
        little = False
    if deflated:
        explicit = True
    if explicit and len(body) >= 6 and not (0x40 < body[4] < 0x5B and 0x40 < body[5] < 0x5B):
        explicit = False
    w = _Walker(bytes(body), "body")
    w.header_end = len(body)
    w.dataset(0, None, explicit, little, 0, (), True)
    return Doc(bytearray(data[:meta_end]), bytearray(body), deflated, meta.out + w.out, w.header_end, little, explicit)


# --------------------------------------------------------------------------
# Seeds


def _cut_big(data: bytes) -> bytes:
    if len(data) <= BIG_SEED:
        return data
    doc = parse(data)
    if doc.deflated or doc.header_end >= len(doc.body):
        return data
    return bytes(doc.prefix) + bytes(doc.body[: doc.header_end + PIXEL_TAIL])


def seed_files() -> list[tuple[str, bytes]]:
    """(name, bytes) of every seed, sorted by name: the same list on every
    machine with the same pydicom."""
    out = {}
    for root, label in ((corpora.PYDICOM_FILES, "pydicom"), (corpora.CHARSET_FILES, "charset"), (corpora.VENDORED, "data")):
        for p in corpora.corpus(root):
            data = p.read_bytes()
            if len(data) < 16:
                continue
            out[f"{label}/{p.relative_to(root)}"] = _cut_big(data)
    for name, data in hostile.good_files().items():
        out["hostile/" + name.decode()] = data
    return sorted(out.items())


# --------------------------------------------------------------------------
# Mutations: each takes (rng, doc) and returns a description, or None when
# it does not apply to this file


def _replace(doc: Doc, region: str, start: int, end: int, new: bytes, parents: tuple) -> None:
    """Replace buf[start:end] by `new`, growing or shrinking each enclosing
    defined length by the difference."""
    buf = doc.buf(region)
    delta = len(new) - (end - start)
    buf[start:end] = new
    for len_off, size, little in parents:
        if len_off >= start:
            continue
        old = _u(buf[len_off : len_off + size], little)
        if old != UNDEF:
            buf[len_off : len_off + size] = _p(old + delta, size, little)


def _header_region(doc: Doc, rng: random.Random) -> tuple[str, int, int]:
    if doc.prefix and rng.random() < 0.15:
        return "prefix", 0, len(doc.prefix)
    return "body", 0, max(1, min(len(doc.body), doc.header_end + 12))


def _pick(rng: random.Random, doc: Doc, pred: Callable[[El], bool] = lambda e: True) -> El | None:
    els = [e for e in doc.els if pred(e)]
    if not els:
        return None
    # Favour wanted tags and what surrounds them: that is where differences are.
    wanted = [e for e in els if e.tag in WANTED_TAGS]
    if wanted and rng.random() < 0.5:
        return rng.choice(wanted)
    return rng.choice(els)


def m_flip(rng, doc):
    region, lo, hi = _header_region(doc, rng)
    buf = doc.buf(region)
    if hi <= lo or not buf:
        return None
    at = []
    for _ in range(rng.choice([1, 1, 2, 3, 4])):
        i = rng.randrange(lo, min(hi, len(buf)))
        buf[i] ^= 1 << rng.randrange(8)
        at.append(i)
    return f"flip {region} {at}"


def m_bytes(rng, doc):
    region, lo, hi = _header_region(doc, rng)
    buf = doc.buf(region)
    if hi <= lo or not buf:
        return None
    i = rng.randrange(lo, min(hi, len(buf)))
    n = rng.choice([1, 2, 4, 8])
    v = bytes(rng.choice([0, 0xFF, 0x20, 0x5C, rng.randrange(256)]) for _ in range(n))
    buf[i : i + n] = v
    return f"bytes {region} {i} {v.hex()}"


def m_cut(rng, doc):
    el = _pick(rng, doc)
    if el is None or rng.random() < 0.3:
        region, lo, hi = _header_region(doc, rng)
        at = rng.randrange(lo, max(lo + 1, hi))
    else:
        region = el.region
        at = rng.choice([el.start, el.value, el.len_off, el.end if el.length != UNDEF else el.value, el.start + rng.randrange(1, 8)])
    buf = doc.buf(region)
    at = min(at, len(buf))
    del buf[at:]
    if region == "prefix":
        doc.body.clear()
    return f"cut {region} {at}"


def m_length(rng, doc):
    el = _pick(rng, doc)
    if el is None:
        return None
    size = el.len_size
    top = (1 << (8 * size)) - 1
    L = el.length
    v = rng.choice([0, L + 1, L - 1, L + 2, L - 2, L + 8, L - 8, L * 2, L // 2, top, top - 1, 0xFFFF, 0x7FFF, rng.randrange(top + 1), rng.randrange(64)])
    v &= top
    buf = doc.buf(el.region)
    buf[el.len_off : el.len_off + size] = _p(v, size, el.little)
    return f"length {el.region} ({el.tag >> 16:04X},{el.tag & 0xFFFF:04X}) at {el.start}: {L} -> {v}"


def m_vr(rng, doc):
    el = _pick(rng, doc, lambda e: e.vr is not None)
    if el is None:
        return None
    new = rng.choice(KNOWN_VRS + [b"QQ", b"XY", b"ZZ", b"AA", b"A[", b"un", b"  ", b"\0\0", b"OB", b"UN", b"UT", b"OW", b"SQ"])
    buf = doc.buf(el.region)
    if rng.random() < 0.5 or el.length == UNDEF:
        buf[el.start + 4 : el.start + 6] = new
        return f"vr-raw {el.region} ({el.tag >> 16:04X},{el.tag & 0xFFFF:04X}) at {el.start}: {el.vr!r} -> {new!r}"
    # Re-encode the header so that the element stays whole.
    if new in LONG_VRS:
        head = new + b"\0\0" + _p(el.length, 4, el.little)
    else:
        if el.length > 0xFFFF:
            return None
        head = new + _p(el.length, 2, el.little)
    _replace(doc, el.region, el.start + 4, el.value, head, el.parents)
    return f"vr {el.region} ({el.tag >> 16:04X},{el.tag & 0xFFFF:04X}) at {el.start}: {el.vr!r} -> {new!r}"


def m_tag(rng, doc):
    el = _pick(rng, doc)
    if el is None:
        return None
    nxt = [e for e in doc.els if e.region == el.region and e.start > el.start and e.depth == el.depth]
    choices = [
        el.tag + 1, el.tag - 1, el.tag ^ 0x10000, rng.choice(WANTED_TAGS), 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD, 0x00000000,
        0x00020002, 0x7FE00010, rng.randrange(1 << 32), (el.tag & 0xFFFF0000) | 0x0010,
    ]
    if nxt:
        choices.append(nxt[0].tag)
    new = rng.choice(choices) & 0xFFFFFFFF
    buf = doc.buf(el.region)
    buf[el.start : el.start + 4] = _p(new >> 16, 2, el.little) + _p(new & 0xFFFF, 2, el.little)
    return f"tag {el.region} at {el.start}: ({el.tag >> 16:04X},{el.tag & 0xFFFF:04X}) -> ({new >> 16:04X},{new & 0xFFFF:04X})"


def _whole(el: El) -> tuple[int, int] | None:
    """Offsets of a whole element of defined length."""
    if el.length == UNDEF or el.item:
        return None
    return el.start, el.end


def m_swap(rng, doc):
    el = _pick(rng, doc, lambda e: _whole(e) is not None)
    if el is None:
        return None
    nxt = [e for e in doc.els if e.region == el.region and e.start == el.end and e.depth == el.depth and _whole(e)]
    if not nxt:
        return None
    b = doc.buf(el.region)
    n = nxt[0]
    b[el.start : n.end] = b[n.start : n.end] + b[el.start : el.end]
    return f"swap {el.region} at {el.start}: ({el.tag >> 16:04X},{el.tag & 0xFFFF:04X}) <-> ({n.tag >> 16:04X},{n.tag & 0xFFFF:04X})"


def m_remove(rng, doc):
    el = _pick(rng, doc, lambda e: _whole(e) is not None)
    if el is None:
        return None
    keep = rng.random() < 0.7
    _replace(doc, el.region, el.start, el.end, b"", el.parents if keep else ())
    return f"remove {el.region} ({el.tag >> 16:04X},{el.tag & 0xFFFF:04X}) at {el.start}{'' if keep else ' (lengths not fixed)'}"


def m_repeat(rng, doc):
    el = _pick(rng, doc, lambda e: _whole(e) is not None)
    if el is None:
        return None
    b = doc.buf(el.region)
    whole = bytes(b[el.start : el.end])
    _replace(doc, el.region, el.end, el.end, whole, el.parents)
    return f"repeat {el.region} ({el.tag >> 16:04X},{el.tag & 0xFFFF:04X}) at {el.start}"


def m_insert(rng, doc):
    region, lo, hi = _header_region(doc, rng)
    buf = doc.buf(region)
    i = rng.randrange(lo, max(lo + 1, min(hi, len(buf) + 1)))
    if rng.random() < 0.5:
        n = rng.choice([1, 2, 3, 4, 8])
        buf[i : i + n] = b""
        return f"delete {region} {i} {n}"
    v = rng.randbytes(rng.choice([1, 2, 4, 8]))
    buf[i:i] = v
    return f"insert {region} {i} {v.hex()}"


def _set_value(doc: Doc, el: El, value: bytes) -> None:
    """Give an element a new value, its header and enclosing lengths fixed."""
    if el.vr is not None and el.vr not in LONG_VRS and len(value) > 0xFFFF:
        value = value[:0xFFFF]
    size = el.len_size
    head = bytes(doc.buf(el.region)[el.start : el.len_off]) + _p(len(value), size, el.little)
    _replace(doc, el.region, el.start, el.end, head + value, el.parents)


def m_value(rng, doc):
    el = _pick(rng, doc, lambda e: e.tag in WANTED_TAGS and e.length != UNDEF and (e.vr is None or e.vr != b"SQ"))
    if el is None:
        return None
    v = rng.choice(ODD_TEXT)
    if rng.random() < 0.3:  # a wanted value's own bytes, changed a little
        v = bytes(doc.buf(el.region)[el.value : el.end]) + rng.choice([b" ", b"\0", b"\\", b"\t", b"\xe9", b""])
    _set_value(doc, el, v)
    return f"value {el.region} ({el.tag >> 16:04X},{el.tag & 0xFFFF:04X}) -> {v!r}"


def m_syntax(rng, doc):
    ts = [e for e in doc.els if e.tag == 0x00020010 and e.region == "prefix"]
    new = rng.choice(SYNTAXES).encode("latin-1")
    if len(new) % 2:
        new += b"\0"
    if not ts:
        return None
    _set_value(doc, ts[0], new)
    # The body stays as it was: a deflated body stays deflated unless the
    # syntax says otherwise now (and the other way round).
    if rng.random() < 0.5:
        doc.deflated = new.rstrip(b"\0") == DEFLATED.encode()
    return f"syntax -> {new!r} (body {'deflated' if doc.deflated else 'as is'})"


def m_charset(rng, doc):
    new = rng.choice(CHARSETS).encode("latin-1")
    if len(new) % 2:
        new += b" "
    cs = [e for e in doc.els if e.tag == 0x00080005 and e.region == "body"]
    if cs:
        _set_value(doc, cs[0], new)
        return f"charset -> {new!r}"
    # None yet: add one before the first top-level element after it.
    top = [e for e in doc.els if e.region == "body" and e.depth == 0]
    if not top:
        return None
    after = next((e for e in top if e.tag > 0x00080005), top[-1])
    if doc.explicit:
        head = _p(0x0008, 2, doc.little) + _p(0x0005, 2, doc.little) + b"CS" + _p(len(new), 2, doc.little)
    else:
        head = _p(0x0008, 2, doc.little) + _p(0x0005, 2, doc.little) + _p(len(new), 4, doc.little)
    doc.body[after.start : after.start] = head + new
    return f"charset added -> {new!r}"


MUTATIONS: list[tuple[Callable, int]] = [
    (m_flip, 10), (m_bytes, 6), (m_cut, 6), (m_length, 14), (m_vr, 14), (m_tag, 10), (m_swap, 6), (m_remove, 4),
    (m_repeat, 3), (m_insert, 5), (m_value, 10), (m_syntax, 5), (m_charset, 7),
]


def case(seeds: list[tuple[str, bytes]], seed: int, index: int) -> tuple[str, list[str], bytes]:
    """Case `index` of run `seed`: (seed file, what was done, the bytes)."""
    rng = random.Random(seed * 2**32 + index)
    name, data = seeds[rng.randrange(len(seeds))]
    doc = parse(data)
    done = []
    for _ in range(rng.choice([1, 1, 1, 1, 2, 2, 3])):
        for _attempt in range(5):
            m = rng.choices([m for m, _ in MUTATIONS], [w for _, w in MUTATIONS])[0]
            what = m(rng, doc)
            if what is not None:
                done.append(what)
                break
        # Later mutations see the layout as it is now (best effort).
        out = doc.bytes()
        doc = parse(out)
    return name, done, doc.bytes()


# --------------------------------------------------------------------------
# Comparing


VERDICTS = frozenset({"no_series_uid", "dicomdir", "not_dicom"})
DECLINED = frozenset({"malformed", "unsupported"})


def _outcome(path: str, engine: str) -> tuple[str, str]:
    """("record", JSON), ("skip", reason) or ("error", reason: message)."""
    import fastindex

    try:
        r = fastindex.read_header(path, engine=engine)
    except fastindex.NotIndexed as e:
        kind = "skip" if e.reason in VERDICTS else "error"
        return kind, e.reason if kind == "skip" else f"{e.reason}: {e.message}"
    return "record", json.dumps(r, ensure_ascii=False)


def classify(path: str) -> tuple[str, tuple, tuple]:
    rust = _outcome(path, "rust")
    oracle = _outcome(path, "pydicom")
    if rust[0] == "error":
        reason = rust[1].split(":")[0]
        if oracle[0] != "record":
            return "both-fail", rust, oracle
        if reason in DECLINED:
            return "rust-declined", rust, oracle
        if reason == "truncated":
            return "rust-truncated", rust, oracle
        return "silent", rust, oracle
    if rust == oracle:
        return "agree", rust, oracle
    return "silent", rust, oracle


CLASSES = ("agree", "rust-declined", "rust-truncated", "both-fail", "silent")


@dataclasses.dataclass
class Result:
    seed: int
    index: int
    cls: str
    seed_file: str
    done: list
    rust: tuple
    oracle: tuple


def run_cases(seed: int, indices: Iterator[int], scratch: str, seeds=None) -> Iterator[Result]:
    seeds = seeds or seed_files()
    path = os.path.join(scratch, f"case-{os.getpid()}.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in indices:
            name, done, data = case(seeds, seed, i)
            with open(path, "wb") as f:
                f.write(data)
            cls, rust, oracle = classify(path)
            yield Result(seed, i, cls, name, done, rust, oracle)


def _scratch() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def _worker(args) -> list[Result]:
    seed, start, stop, step = args
    with tempfile.TemporaryDirectory(dir=_scratch()) as d:
        return list(run_cases(seed, range(start, stop, step), d))


def run(n: int, seed: int = 0, jobs: int = 1, start: int = 0) -> tuple[Counter, list[Result]]:
    """Cases start..start+n of run `seed`: counts per class and every silent difference."""
    counts: Counter = Counter()
    silent: list[Result] = []
    if jobs <= 1:
        results = _worker((seed, start, start + n, 1))
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs) as pool:
            parts = pool.map(_worker, [(seed, start + j, start + n, jobs) for j in range(jobs)])
        results = sorted((r for part in parts for r in part), key=lambda r: r.index)
    for r in results:
        counts[r.cls] += 1
        if r.cls == "silent":
            silent.append(r)
    return counts, silent


def _show(outcome: tuple, other: tuple) -> str:
    """An outcome; of two records, only the fields that differ."""
    kind, what = outcome
    if kind == "record" and other[0] == "record":
        mine, theirs = json.loads(what), json.loads(other[1])
        what = json.dumps({k: v for k, v in mine.items() if theirs.get(k, ...) != v or type(theirs.get(k)) is not type(v)}, ensure_ascii=False)
        if list(mine) != list(theirs):
            what += " (keys in another order)"
    return f"{kind} {what[:600]}"


def describe(r: Result) -> str:
    return (
        f"seed {r.seed} case {r.index}: {r.seed_file}: {'; '.join(r.done)}\n"
        f"    rust:    {_show(r.rust, r.oracle)}\n    pydicom: {_show(r.oracle, r.rust)}\n"
        f"    reproduce: python tests/mutate.py --seed {r.seed} --case {r.index} -o case.dcm"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=2000, help="number of cases (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--case", type=int, help="run one case and explain it")
    ap.add_argument("-o", "--output", help="with --case: write the case's bytes here")
    a = ap.parse_args(argv)
    if a.case is not None:
        name, done, data = case(seed_files(), a.seed, a.case)
        if a.output:
            Path(a.output).write_bytes(data)
        with tempfile.TemporaryDirectory(dir=_scratch()) as d:
            [r] = list(run_cases(a.seed, [a.case], d))
        print(describe(r).replace("    reproduce", f"    class:   {r.cls}\n    reproduce"))
        return 0
    t0 = time.monotonic()
    counts, silent = run(a.n, a.seed, a.jobs, a.start)
    seconds = time.monotonic() - t0
    for r in silent:
        print(describe(r))
    print(
        f"mutate: seed {a.seed}, cases {a.start}..{a.start + a.n - 1}: {a.n} cases, "
        + ", ".join(f"{c} {counts[c]}" for c in CLASSES)
        + f"; {seconds:.0f} s ({a.n / max(seconds, 1e-9):.0f} cases/s, {a.jobs} jobs)"
    )
    return 1 if silent else 0


if __name__ == "__main__":
    sys.exit(main())
