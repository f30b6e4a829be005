"""fastindex: index DICOM archives into one record per series/subseries.

    >>> import fastindex
    >>> records = fastindex.index(["archive"])            # subseries records
    >>> records.summary.indexed, records.problems          # the run's counts, its problems
    >>> for r in fastindex.iter_instances(["archive"]):   # per-file records
    ...     pass
    >>> records = await fastindex.aindex(["archive"])     # async (asyncio, trio)
    >>> async with fastindex.aiter_instances(["archive"]) as it:
    ...     async for r in it: ...
    >>> fastindex.read_header("archive/ct/1.dcm")          # one file
    >>> fastindex.read_bytes(upload, path="ct/1.dcm")      # one file's bytes
    >>> df = fastindex.load("index.ndjson")                # an output, typed

Fields and their meaning: the metadata dictionary, docs/dictionary.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # "X as X": re-exported, for type checkers (the names load lazily)
    from ._native import __version__ as __version__
    from .api import AsyncInstances as AsyncInstances
    from .api import Index as Index
    from .api import Instances as Instances
    from .api import aindex as aindex
    from .api import aiter_instances as aiter_instances
    from .api import configure as configure
    from .api import index as index
    from .api import iter_instances as iter_instances
    from .api import read_bytes as read_bytes
    from .api import read_header as read_header
    from .fields import FIELDS as FIELDS
    from .fields import INSTANCE_FIELDS as INSTANCE_FIELDS
    from .fields import SUBSERIES_FIELDS as SUBSERIES_FIELDS
    from .loader import load as load
    from .loader import schema as schema
    from .outcomes import NotIndexed as NotIndexed
    from .outcomes import Problem as Problem
    from .outcomes import Summary as Summary
    from .records import InstanceRecord as InstanceRecord
    from .records import SubseriesRecord as SubseriesRecord
    from .watch import watch as watch

#: public name -> module that defines it. Imported on first use: the
#: command installs its signal handlers before anything heavy is imported
#: (the native module, anyio, orjson), and `import fastindex` stays cheap.
_WHERE = {
    "__version__": "._native",
    "index": ".api",
    "iter_instances": ".api",
    "read_header": ".api",
    "aindex": ".api",
    "aiter_instances": ".api",
    "read_bytes": ".api",
    "configure": ".api",
    "Index": ".api",
    "Instances": ".api",
    "AsyncInstances": ".api",
    "Problem": ".outcomes",
    "Summary": ".outcomes",
    "SubseriesRecord": ".records",
    "InstanceRecord": ".records",
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
