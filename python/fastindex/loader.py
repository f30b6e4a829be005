"""Read what fastindex writes (NDJSON, CSV, Parquet) back with the types
of the dictionary, into pandas, polars or Arrow.

Generic readers guess types from values: `"patient_ID": "00000012"`
becomes the number 12, a StudyDescription "2019" a number, and a column
whose first rows are null (orientation) confuses them. `load()` reads
every column as the record schema types it; `schema()` gives that schema
to other readers.

    >>> df = fastindex.load("index.ndjson")                    # pandas
    >>> df = fastindex.load("index.csv", backend="polars")
    >>> table = fastindex.load("index.parquet", backend="arrow")
    >>> pl.read_ndjson("index.ndjson", schema=fastindex.schema(backend="polars"))

Types, from `write.columns()` (the one definition, also the Parquet
writer's): text, UIDs and paths are strings ("" when blank, never null);
`instances` an integer; numbers floats (null when absent); `orientation` a
list of floats (or null); `reference_series` and `reference_modality`
lists of strings; `--tags` columns by their VR (integers, floats, text;
lists of them when the tag may hold several values).

- arrow: a `pyarrow.Table` with the Parquet writer's schema.
- polars: pl.Utf8, pl.Int64, pl.Float64, pl.List(...).
- pandas: strings in pandas' default string dtype (object before pandas
  3, `str` since), int64 (`instances`) or nullable Int64 (`--tags`
  integers, which may be absent), float64 (NaN when absent), lists as
  Python lists in object columns.

Paths that are not valid UTF-8 (rare; they come from the file system):
Parquet stores file_path and folder as bytes then, and so do arrow and
polars here; pandas gets them as str with surrogate escapes
(`os.fsencode` gives the bytes back), as `fastindex.index()` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal

from .tags import resolve
from .write import _PATHS, arrow_schema, columns, need_pyarrow, paths_as_bytes, paths_utf8

Backend = Literal["pandas", "polars", "arrow"]
Level = Literal["subseries", "instance"]

_EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv", ".parquet": "parquet"}


def schema(level: Level = "subseries", tags: Iterable[str] | None = None, backend: Backend = "arrow"):
    """The column types of `level` records with extra `tags`: a pyarrow
    schema, a polars schema dict, or a pandas dtype dict (for `read_json`,
    `read_csv`, `astype`; list columns are object)."""
    if level not in ("subseries", "instance"):
        raise ValueError(f"level must be subseries or instance, not {level!r}")
    return _typed(columns(level, resolve(tags or ())), level, backend)


def load(path: str | os.PathLike, *, backend: Backend = "pandas", level: Level | None = None):
    """A fastindex output (NDJSON, CSV or Parquet, told by the extension,
    else by the first bytes) as a pandas DataFrame, polars DataFrame or
    pyarrow Table, every column typed as the record schema says. The
    level (subseries or instance) is told by the columns unless given;
    `--tags` columns are typed by their VR."""
    if backend not in ("pandas", "polars", "arrow"):
        raise ValueError(f"backend must be pandas, polars or arrow, not {backend!r}")
    need_pyarrow("fastindex.load")
    path = os.fspath(path)
    fmt = _format(path)
    found, cols = _columns(path, _names(path, fmt), level)
    table = {"parquet": _parquet, "ndjson": _ndjson, "csv": _csv}[fmt](path, found, cols)
    if backend == "arrow":
        return table
    if backend == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return _pandas(table, _typed(cols, found, "pandas"))


# --------------------------------------------------------------------------
# Types


def _nullable(level: str, cols: list[tuple[str, str]]) -> list[bool]:
    """Whether each column may hold null: numbers and orientation may;
    `instances` and the reference lists may not; strings never do; a
    --tags number or list may (the tag may be absent)."""
    fixed = len(columns(level, []))
    return [t in ("float", "floats") or (i >= fixed and t != "str") for i, (_, t) in enumerate(cols)]


def _typed(cols: list[tuple[str, str]], level: str, backend: str) -> Any:
    if backend == "arrow":
        return arrow_schema(cols)
    if backend == "polars":
        import polars as pl

        types = {"str": pl.Utf8, "int": pl.Int64, "float": pl.Float64, "floats": pl.List(pl.Float64), "ints": pl.List(pl.Int64), "strings": pl.List(pl.Utf8)}
        return {n: types[t] for n, t in cols}
    if backend == "pandas":
        types = {"str": str, "float": "float64"}
        return {n: ("Int64" if null else "int64") if t == "int" else types.get(t, "object") for (n, t), null in zip(cols, _nullable(level, cols))}
    raise ValueError(f"backend must be arrow, polars or pandas, not {backend!r}")


# --------------------------------------------------------------------------
# Which file, which columns


def _format(path: str) -> str:
    fmt = _EXTENSIONS.get(os.path.splitext(path)[1].lower())
    if fmt:
        return fmt
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PAR1"):
        return "parquet"
    return "ndjson" if head.lstrip().startswith(b"{") else "csv"


def _names(path: str, fmt: str) -> list[str]:
    """The column names, from the file's schema, first record or header."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    with open(path, "rb") as f:
        first = next((line for line in f if line.strip()), b"")
    if not first:
        return []
    if fmt == "ndjson":
        import json

        return list(json.loads(first))
    import csv

    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return next(csv.reader(f))


def _columns(path: str, names: list[str], level: str | None) -> tuple[str, list[tuple[str, str]]]:
    """The level, and (name, type) of each column: its fields, then --tags."""
    if level is None:
        level = "instance" if "transfer_syntax" in names else "subseries"
    elif level not in ("subseries", "instance"):
        raise ValueError(f"level must be subseries or instance, not {level!r}")
    if not names:
        return level, columns(level, [])
    own = [n for n, _ in columns(level, [])]
    if names[: len(own)] != own:
        raise ValueError(f"{path}: not fastindex {level} records (columns {names[:len(own)]})")
    try:
        cols = columns(level, resolve(names[len(own) :]))
    except ValueError as e:
        raise ValueError(f"{path}: a column is neither a record field nor a --tags tag: {e}") from None
    if [n for n, _ in cols] != names:
        raise ValueError(f"{path}: columns {names} are not those of fastindex {level} records")
    return level, cols


# --------------------------------------------------------------------------
# Readers: each gives the Parquet writer's table (binary paths if needed)


def _parquet(path: str, level: str, cols):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    binary = pa.types.is_binary(table.schema.field("file_path").type) if "file_path" in table.schema.names else False
    return table.cast(arrow_schema(cols, binary))


def _ndjson(path: str, level: str, cols):
    import mmap

    import pyarrow as pa
    import pyarrow.json as pj

    if os.path.getsize(path) == 0:
        return arrow_schema(cols).empty_table()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        escaped = m.find(b"\\ud") >= 0 or m.find(b"\\uD") >= 0
    if escaped:
        # A path that is not UTF-8 is written with surrogate escapes, which
        # Arrow's JSON reader refuses: Python's reads them.
        import json

        with open(path, "rb") as f:
            records = [json.loads(line) for line in f if line.strip()]
        binary = not paths_utf8(records)
        if binary:
            records = paths_as_bytes(records)
        return pa.Table.from_pylist(records, schema=arrow_schema(cols, binary))
    schema = arrow_schema(cols)
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    return pj.read_json(path, parse_options=options).select(schema.names)


def _csv(path: str, level: str, cols):
    """CSV cells are text: "" is a blank string, or null for a number or
    list; lists are joined by backslashes."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    if os.path.getsize(path) == 0:
        return arrow_schema(cols).empty_table()
    text = {n: pa.binary() if n in _PATHS else pa.string() for n, _ in cols}
    table = pcsv.read_csv(
        path,
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types=text, strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    binary = False
    try:
        paths = {n: table.column(n).cast(pa.string()) for n in _PATHS if n in table.schema.names}
    except pa.ArrowInvalid:  # not UTF-8: keep the bytes
        binary, paths = True, {}
    schema = arrow_schema(cols, binary)
    out = []
    for (name, t), null in zip(cols, _nullable(level, cols)):
        col = paths.get(name, table.column(name))
        if t != "str":
            blank = pc.equal(col, "")
            many = t in ("floats", "ints", "strings")
            if many:
                col = pc.split_pattern(col, "\\")
            col = pc.if_else(blank, pa.scalar([] if many and not null else None, col.type), col)
        out.append(col.cast(schema.field(name).type))
    return pa.Table.from_arrays(out, schema=schema)


# --------------------------------------------------------------------------
# pandas


def _pandas(table, dtypes: dict):
    import pandas as pd
    import pyarrow as pa

    df = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for name, dtype in dtypes.items():
        col = table.column(name)
        if pa.types.is_binary(col.type):
            df[name] = pd.Series([os.fsdecode(v) for v in col.to_pylist()], index=df.index, dtype=object)
        elif dtype == "object":
            # Lists as Python lists, not numpy arrays.
            df[name] = pd.Series(col.to_pylist(), index=df.index, dtype=object)
        else:
            df[name] = df[name].astype(dtype)
    return df
