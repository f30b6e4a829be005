"""The pydicom path: reads what the fast path declines (ISO 2022 text,
files it cannot parse), and is the oracle the tests hold the fast path to.

It fills the same field table as the Rust reader, from pydicom's own
decoding of each value; only the dictionary's normalisation (trimming,
numbers, blanks) is applied on top.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import os
import stat
import threading
import zlib
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset, FileDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_partial, read_preamble
from pydicom.filereader import read_dataset as read_dataset_from
from pydicom.multival import MultiValue
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from . import _native
from .fields import FIELDS, Field
from .outcomes import NotIndexed

#: pydicom reads at most this much of a file: a header larger than this is
#: not one the fast path could not read, but damage (zeros, a sparse file)
#: that pydicom would walk for minutes.
READ_LIMIT = 64 * 1024 * 1024

MEDIA_STORAGE_DIRECTORY = _native.MEDIA_STORAGE_DIRECTORY

#: (name, tag, vr, multi) of an extra top-level tag
Extra = tuple[str, int, str, bool]



class _Capped:
    """What pydicom reads from: the file as if it ended at READ_LIMIT, and
    a read never asks for more than is left (a buffered read of a declared
    4 GB length allocates it all before finding that the file ends a few
    bytes later)."""

    def __init__(self, raw: io.FileIO, limit: int):
        self._f = io.BufferedReader(raw)
        self._size = os.fstat(raw.fileno()).st_size
        self._limit = limit
        self.name = getattr(raw, "name", "")

    #: whether something past the limit was asked for
    hit = False

    def read(self, n: int | None = -1) -> bytes:
        at = self._f.tell()
        left = max(0, min(self._size, self._limit) - at)
        if n is None or n < 0 or n > left:
            self.hit = self.hit or (self._size > self._limit and at + (n if n is not None and n >= 0 else self._size) > self._limit)
            n = left
        return self._f.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


# The dictionary's rules are the fast path's own, from the native module:
# trimming, the number grammar, folder, the default subseries.
_trim = _native.trim_values
folder_of = _native.folder_of


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, (MultiValue, list, tuple)):
        return _trim("\\".join(_text(v) for v in value))
    return _trim(str(value))


class _Reader:
    """Field values of one dataset, with a count of values that did not parse."""

    def __init__(self, ds: Dataset):
        self.ds = ds
        self.warnings = 0

    def element(self, path: tuple[int, ...]):
        ds: Any = self.ds
        if path[0] >> 16 == 0x0002:  # a meta group element, not the data set's
            ds = getattr(ds, "file_meta", None)
            if ds is None:
                return None
        for tag in path[:-1]:
            seq = ds.get(tag)
            if seq is None or seq.VR != "SQ" or not seq.value:
                return None
            ds = seq.value[0]
        return ds.get(path[-1])

    def value(self, path: tuple[int, ...]) -> Any:
        try:
            elem = self.element(path)
            return None if elem is None else elem.value
        except Exception:  # pydicom converts lazily; bad bytes raise here
            self.warnings += 1
            return None

    def first_text(self, f: Field) -> str:
        for path in f.sources:
            t = _text(self.value(path))
            if t:
                return t
        return ""

    def numbers(self, f: Field) -> list[float] | None:
        value = self.value(f.sources[0])
        text = _text(value)
        if not text:
            return None
        out = []
        for part in text.split("\\"):
            v = _native.parse_ds(part.strip(" \0"))
            if v is None:
                self.warnings += 1
                return None
            out.append(v)
        return out

    def extra(self, tag: int, vr: str, multi: bool) -> Any:
        """An extra tag, typed by its dictionary VR as the Rust reader does."""
        if vr in ("ST", "LT", "UT"):
            value = self.value((tag,))
            return "" if value is None else str(value).lstrip(" ").rstrip(" \0")
        if vr == "DS":
            return self._shape(self.numbers(Field("", "numbers", ((tag,),), "both")), multi)
        if vr == "IS":
            text = _text(self.value((tag,)))
            if not text:
                return self._shape(None, multi)
            values: list[Any] | None
            try:
                values = [int(p.strip(" \0")) for p in text.split("\\")]
            except ValueError:
                self.warnings += 1
                values = None
            return self._shape(values, multi)
        if vr in ("FD", "FL", "US", "SS", "UL", "SL"):
            value = self.value((tag,))
            if value is None or value == b"" or value == "":
                return self._shape(None, multi)
            items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
            cast: type[float] | type[int] = float if vr in ("FD", "FL") else int
            values = [cast(v) for v in items]
            if cast is float and any(v != v or v in (float("inf"), float("-inf")) for v in values):
                self.warnings += 1
                values = None
            return self._shape(values, multi)
        text = _text(self.value((tag,)))
        if multi:
            return text.split("\\") if text else None
        return text

    def _shape(self, values: list | None, multi: bool) -> Any:
        values = values or None
        if multi:
            return values
        if values is not None and len(values) != 1:
            self.warnings += 1
            return None
        return values[0] if values else None

    def field(self, f: Field, transfer_syntax: str) -> Any:
        if f.kind in ("text", "code", "uid"):
            return self.first_text(f)
        if f.kind == "subseries":
            return self.first_text(f) or _native.DEFAULT_SUBSERIES
        if f.kind == "numbers":
            return self.numbers(f)
        if f.kind == "number":
            v = self.numbers(f)
            if v is not None and len(v) != 1:
                self.warnings += 1
                return None
            return v[0] if v else None
        if f.kind == "transfer_syntax":
            return transfer_syntax
        raise AssertionError(f"field {f.name} of kind {f.kind} is computed elsewhere")


def _meta_text(ds: Dataset, keyword: str) -> str:
    meta = getattr(ds, "file_meta", None)
    return _text(meta.get(keyword)) if meta is not None else ""


def _transfer_syntax(ds: Dataset) -> str:
    ts = _meta_text(ds, "TransferSyntaxUID")
    if ts:
        return ts
    implicit, little = ds.original_encoding
    if implicit:
        return str(ImplicitVRLittleEndian)
    return str(ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _stop_after(last_wanted: int):
    """pydicom's stop condition, the fast path's: past the last wanted tag,
    at the pixel data, or at a second tag (0000,0000), which only damage
    writes (a flood of zeros then costs two elements, not 64 MiB of them).
    pydicom may ask twice about the first element."""
    zeros = 0

    def stop(tag, vr, length) -> bool:
        nonlocal zeros
        zeros += tag == 0
        return tag > last_wanted or tag == 0x7FE00010 or zeros > 1

    return stop


def _open(path) -> io.FileIO:
    """Open without blocking: a FIFO swapped in after the walk must not hang."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotIndexed("not_regular", "not a regular file (FIFO, socket or device)")
    return io.FileIO(fd, "rb")


def read_dataset(path: str | os.PathLike, last_wanted: int = 0xFFFFFFFF) -> Dataset:
    stop = _stop_after(last_wanted)
    with _open(path) as raw:
        capped = _Capped(raw, READ_LIMIT)
        fp: Any = capped  # file-like enough for pydicom
        preamble = read_preamble(fp, True)
        if preamble is None:
            fp.seek(0)
        meta = _read_file_meta_info(fp)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            fp.seek(0)
            ds = read_partial(fp, stop_when=stop, force=True)
            # A header cut at the cap would give a partial record: none.
            if capped.hit:
                raise _too_large()
            return ds
        # pydicom would inflate the whole rest of the file in one call, as
        # large as a hostile file makes it; inflate at most what the fast path inflates.
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        inflated = inflater.decompress(fp.read(), _native.MAX_INFLATED)
        if capped.hit or (len(inflated) == _native.MAX_INFLATED and inflater.unconsumed_tail):
            raise _too_large()
        inner = read_dataset_from(DicomBytesIO(inflated), False, True, stop_when=stop)  # type: ignore[arg-type]
        out = FileDataset(str(path), inner, preamble=preamble, file_meta=meta)
        out.set_original_encoding(False, True, inner._character_set)
        return out


def _too_large() -> NotIndexed:
    return NotIndexed("too_large", f"the header runs past {READ_LIMIT >> 20} MiB, more than the fallback reads")


def record(ds: Dataset, display: str, extras: Sequence[Extra] = ()) -> tuple[dict, int]:
    """The per-file record of a dataset, and how many values did not parse."""
    reader = _Reader(ds)
    ts = _transfer_syntax(ds)
    out: dict[str, Any] = {}
    for f in FIELDS:
        if f.scope == "subseries":
            continue
        if f.kind == "path":
            out[f.name] = display
        elif f.kind == "folder":
            out[f.name] = folder_of(display)
        else:
            out[f.name] = reader.field(f, ts)
    # A DICOMDIR, named by the meta group or by SOPClassUID (sop_class_uid
    # is SOPClassUID, or the meta group's when it is empty), is never an
    # instance; any other object without a series is not one either.
    if MEDIA_STORAGE_DIRECTORY in (_meta_text(ds, "MediaStorageSOPClassUID"), out["sop_class_uid"]):
        raise NotIndexed("dicomdir", "a DICOMDIR (media storage directory), not an instance")
    if not out["series"]:
        raise NotIndexed("no_series_uid", "DICOM object without SeriesInstanceUID")
    for name, tag, vr, multi in extras:
        out[name] = reader.extra(tag, vr, multi)
    return out, reader.warnings


#: top-level tags that make a bare data set (no preamble, no meta) DICOM
#: to the fast path too: the first tag of every source in the data set (not
#: the meta group's), and the charset
_WANTED = frozenset({p[0] for f in FIELDS for p in f.sources if p[0] >> 16 != 0x0002} | {0x00080005})

NOT_DICOM = "neither a DICOM Part 10 file nor a bare data set"


def _capitals(b: bytes) -> bool:
    return len(b) == 2 and all(0x41 <= c <= 0x5A for c in b)


def _part10(path) -> bool:
    """Does the file start as DICOM Part 10 (a preamble, or a meta group in
    explicit VR)? Raises not_dicom, as the fast path decides, for a file
    with neither that does not start as a data set either: a first group
    in 0000-0010 (even), and no first element in group 0002 that is not in
    explicit VR (a raw RLE stream starts `02 00 00 00`)."""
    with _open(path) as f:
        head = f.read(132)
    if head[128:132] == b"DICM":
        return True
    if head[:2] == b"\x02\x00" and len(head) >= 6:
        if _capitals(head[4:6]):
            return True
        raise NotIndexed("not_dicom", NOT_DICOM)
    if len(head) < 8:
        raise NotIndexed("not_dicom", NOT_DICOM)
    le, be = int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")
    small = lambda g: g <= 0x0010 and g % 2 == 0  # noqa: E731
    if not (small(le) or (small(be) and _capitals(head[4:6]))):
        raise NotIndexed("not_dicom", NOT_DICOM)
    return False


@functools.lru_cache(maxsize=64)
def _last_wanted(extras: tuple[Extra, ...]) -> int:
    """Where reading stops: the fast path's rule, from its own schema."""
    return _native.Schema(list(extras)).last_wanted


def read_record(path: str | os.PathLike, display: str, extras: Sequence[Extra] = ()) -> tuple[dict, int]:
    """Read one file with pydicom; raises NotIndexed when it gives no record."""
    last_wanted = _last_wanted(tuple(extras))
    try:
        part10 = _part10(path)
        ds = read_dataset(path, last_wanted)
    except (NotIndexed, MemoryError):
        raise
    except OSError as e:
        if e.errno is not None:  # the system's: the file could not be read
            raise NotIndexed("unreadable", str(e)) from None
        failure: Exception | None = e  # pydicom's, about the bytes
    except Exception as e:  # pydicom raises many kinds on damaged files
        failure = e
    else:
        failure = None
    if failure is not None:
        if not part10:
            raise NotIndexed("not_dicom", NOT_DICOM) from None
        raise NotIndexed("malformed", f"pydicom: {type(failure).__name__}: {failure}") from None
    # With force=True pydicom makes a data set of anything; one that holds
    # none of the wanted tags was never DICOM (the fast path's rule too).
    if not part10 and not any(t in ds for t in _WANTED):
        raise NotIndexed("not_dicom", NOT_DICOM)
    try:
        return record(ds, display, extras)
    except (NotIndexed, MemoryError):
        raise
    except Exception as e:
        raise NotIndexed("malformed", f"pydicom: {type(e).__name__}: {e}") from None


class _Capture(logging.Handler):
    """pydicom's warnings about the file this thread is reading. pydicom
    logs every warning it issues (`warn_and_log`), so a handler on its
    logger hears each one, per thread, with no global state to swap (the
    `warnings` module's filters are process-wide and not thread-safe)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        sink = getattr(self.local, "sink", None)
        if sink is not None:
            sink.append(" ".join(record.getMessage().split()))


_capture = _Capture()
logging.getLogger("pydicom").addHandler(_capture)


@dataclasses.dataclass
class Notes:
    """What went wrong in an indexed file: `count` warnings (values that
    did not parse and pydicom's own), described by `messages`."""

    count: int = 0
    messages: list[str] = dataclasses.field(default_factory=list)


def read_noted(path: str | os.PathLike, display: str, extras: Sequence[Extra] = ()) -> tuple[dict, Notes]:
    """`read_record`, with pydicom's warnings for this file caught."""
    sink: list[str] = []
    before = getattr(_capture.local, "sink", None)
    _capture.local.sink = sink
    try:
        rec, unparsed = read_record(path, display, extras)
    finally:
        _capture.local.sink = before
    notes = Notes(unparsed + len(sink), [f"pydicom: {m}" for m in sink])
    if unparsed:
        notes.messages.append(f"{unparsed} value(s) present but not parsable, written as null")
    return rec, notes
