"""Types of the Rust extension (rust/py.rs). Checked against the module by
mypy's stubtest in `make test`."""

from collections.abc import Sequence
from os import PathLike
from typing import Any, final

__all__ = ["Schema", "Pipeline", "Aggregator", "RunFailed", "read_file", "check_exclude", "roots", "FIELDS", "REASONS", "__version__"]
__version__: str

#: (name, kind, sources as tag paths, scope) per field of the table
FIELDS: list[tuple[str, str, list[list[int]], str]]

#: (name, category, falls back to pydicom, a limit of the fallback, meaning)
REASONS: list[tuple[str, str, bool, bool, str]]

#: (name, tag, vr, multi): an extra tag as `tags.resolve` makes it
_Extra = tuple[str, int, str, bool]
_Path = str | bytes | PathLike[str] | PathLike[bytes]
#: (path, display, reason, message) of an entry that gave no record
_Problem = tuple[str, str, str, str]

class RunFailed(RuntimeError):
    """A thread of the run failed: the index would be incomplete."""

@final
class Schema:
    def __new__(cls, extras: Sequence[_Extra] = ...) -> Schema: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class Aggregator:
    def __new__(cls, schema: Schema) -> Aggregator: ...
    def __len__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...
    def add_dict(self, record: dict[str, Any], path: _Path) -> None: ...
    def remove_dict(self, record: dict[str, Any], path: _Path) -> None: ...
    def offer_dict(self, record: dict[str, Any], path: _Path) -> None: ...
    def merge(self, other: Aggregator) -> None: ...
    def needs_representative(self) -> list[tuple[str, str, str, str]]: ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls, schema: Schema, data: bytes) -> Aggregator: ...
    def dicts(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def unresolved(self) -> int: ...

@final
class Pipeline:
    def __new__(
        cls,
        schema: Schema,
        roots: Sequence[tuple[_Path, _Path]],
        aggregator: Aggregator,
        *,
        records: bool = False,
        jobs: int = 1,
        batch_size: int = 256,
        concurrency: int = 0,
        follow_symlinks: bool = False,
        exclude: Sequence[str] = ...,
        own: Sequence[tuple[int, int]] = ...,
    ) -> Pipeline: ...
    def next_batch(self) -> tuple[list[dict[str, Any]] | None, list[_Problem], int, int] | None: ...
    def close(self) -> None: ...

def roots(paths: Sequence[_Path], base: _Path | None = None) -> list[tuple[str, str]]: ...
def check_exclude(patterns: Sequence[str]) -> None: ...
def read_file(schema: Schema, path: _Path, display: _Path) -> tuple[str, Any, int]: ...
