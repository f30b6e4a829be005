"""fastindex: index DICOM archives into one record per series/subseries.

    >>> import fastindex
    >>> records = fastindex.index(["archive"])            # subseries records
    >>> for r in fastindex.iter_instances(["archive"]):   # per-file records
    ...     pass
    >>> fastindex.read_header("archive/ct/1.dcm")          # one file
    >>> df = fastindex.load("index.ndjson")                # an output, typed

Fields and their meaning: the metadata dictionary, docs/dictionary.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._native import __version__
    from .api import index, iter_instances, read_header
    from .fields import FIELDS, INSTANCE_FIELDS, SUBSERIES_FIELDS
    from .loader import load, schema
    from .outcomes import NotIndexed
    from .watch import watch

#: public name -> module that defines it. Imported on first use: the
#: command installs its signal handlers before anything heavy is imported
#: (the native module, anyio, orjson), and `import fastindex` stays cheap.
_WHERE = {
    "__version__": "._native",
    "index": ".api",
    "iter_instances": ".api",
    "read_header": ".api",
    "FIELDS": ".fields",
    "INSTANCE_FIELDS": ".fields",
    "SUBSERIES_FIELDS": ".fields",
    "NotIndexed": ".outcomes",
    "load": ".loader",
    "schema": ".loader",
    "watch": ".watch",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'fastindex' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
