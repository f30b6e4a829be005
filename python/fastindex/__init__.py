"""fastindex: index DICOM archives into one record per series/subseries.

    >>> import fastindex
    >>> records = fastindex.index(["archive"])            # subseries records
    >>> for r in fastindex.iter_instances(["archive"]):   # per-file records
    ...     pass
    >>> fastindex.read_header("archive/ct/1.dcm")          # one file
    >>> df = fastindex.load("index.ndjson")                # an output, typed

Fields and their meaning: the metadata dictionary (README).
"""

from __future__ import annotations

from ._native import __version__
from .api import index, iter_instances, read_header
from .fields import FIELDS, INSTANCE_FIELDS, SUBSERIES_FIELDS
from .load import load, schema
from .outcomes import NotIndexed

__all__ = [
    "FIELDS",
    "INSTANCE_FIELDS",
    "SUBSERIES_FIELDS",
    "NotIndexed",
    "__version__",
    "index",
    "iter_instances",
    "load",
    "read_header",
    "schema",
]
