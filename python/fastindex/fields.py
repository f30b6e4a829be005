"""The field table, read from the Rust extension: the one definition both
the fast path and the pydicom fallback fill."""

from __future__ import annotations

from dataclasses import dataclass

from . import _native

Tag = int


@dataclass(frozen=True)
class Field:
    name: str
    #: text, code, uid, number, numbers, subseries, count, folder, path,
    #: transfer_syntax
    kind: str
    #: tag paths tried in order; a path descends the first item of each
    #: sequence on the way
    sources: tuple[tuple[Tag, ...], ...]
    #: both, subseries (only in subseries records) or instance
    scope: str


FIELDS: tuple[Field, ...] = tuple(
    Field(name, kind, tuple(tuple(p) for p in sources), scope)
    for name, kind, sources, scope in _native.FIELDS
)

#: the dictionary's 22 fields in order, then the extensions
#: (reference_series, reference_modality)
SUBSERIES_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.scope != "instance")
#: the dictionary's own fields
DICTIONARY_FIELDS: tuple[str, ...] = SUBSERIES_FIELDS[:22]
#: what a per-file record holds
INSTANCE_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.scope != "subseries")
