"""`--tags`: extra top-level tags by keyword or (gggg,eeee), typed by the
VR pydicom's data dictionary gives them."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: VRs that are not scalar values: sequences, bulk binary, attribute tags
_NOT_VALUES = {"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN", "AT", "SV", "UV"}

_TAG = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)?")


def resolve(specs: Iterable[str]) -> list[tuple[str, int, str, bool]]:
    """(name, tag, vr, multi) for each keyword or tag; ValueError if unknown."""
    specs = [s for s in specs if s.strip()]
    if not specs:
        return []
    from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_for_tag, tag_for_keyword

    out: list[tuple[str, int, str, bool]] = []
    for spec in specs:
        spec = spec.strip()
        m = _TAG.fullmatch(spec)
        if m:
            tag = int(m.group(1) + m.group(2), 16)
            name = keyword_for_tag(tag) or f"({m.group(1).upper()},{m.group(2).upper()})"
        else:
            found = tag_for_keyword(spec)
            if found is None:
                raise ValueError(f"{spec}: not a DICOM keyword or (gggg,eeee) tag")
            tag = found
            name = spec
        try:
            vr, vm = dictionary_VR(tag), dictionary_VM(tag)
        except KeyError:
            vr, vm = "UN", "1"
        if vr in _NOT_VALUES:
            raise ValueError(f"{spec}: VR {vr} holds no value a record can carry (sequences, binary data, tags)")
        if tag >= 0x7FE00010 or tag >> 16 in (0x0002, 0xFFFE):
            raise ValueError(f"{spec}: only data set tags before the pixel data can be read")
        vr = vr.split(" or ")[0]
        if any(name == o[0] for o in out):
            continue
        out.append((name, tag, vr, vm != "1"))
    return out


def split(option: str | None) -> list[str]:
    """The keywords and tags of a --tags option: split on commas, but not
    inside "(gggg,eeee)"."""
    return re.findall(r"\([^)]*\)|[^,]+", option or "")
