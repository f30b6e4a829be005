"""What can become of a file, and how the summary counts it."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import NamedTuple

from . import _native

#: (name, category, falls back to pydicom, a limit of the fallback,
#: meaning) of every reason: the one table is rust/outcome.rs; the
#: README's table is tested against it
REASONS: tuple[tuple[str, str, bool, bool, str], ...] = tuple(_native.REASONS)

#: reason -> category ("skipped", "not DICOM", "errors", "warning")
CATEGORY = {name: category for name, category, *_ in REASONS}

#: not a reason a file gave no record: an indexed file with warnings (values
#: that did not parse, pydicom's warnings), listed beside the problems
WARNING = "warning"

#: reasons for which pydicom gets a try after the fast path gave up
FALLBACK_REASONS = frozenset(name for name, _, falls_back, _, _ in REASONS if falls_back)

#: reasons the fallback gives when a file hits one of its limits: these
#: stand whatever the fast path said (see fallback_pool)
LIMIT_REASONS = frozenset(name for name, _, _, limit, _ in REASONS if limit)


class Problem(NamedTuple):
    """A file that gave no record (`reason` one of CATEGORY's keys), or an
    indexed file with warnings (reason "warning"): what `--errors` lists.
    `path` is the path as records write it."""

    path: str
    reason: str
    message: str


class NotIndexed(Exception):
    """A file that gave no record; `reason` is one of CATEGORY's keys."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):
        # Picklable, for process pools: rebuilt from its two fields.
        return (type(self), (self.reason, self.message))


@dataclasses.dataclass
class Summary:
    """The counts of a run, as the command's summary line and `--summary`
    give them (`as_dict`)."""

    indexed: int = 0
    via_pydicom: int = 0
    warnings: int = 0
    duplicates: int = 0
    #: references (reference_ct/rs/pl) to instances or series not in the index
    unresolved: int = 0
    seconds: float = 0.0
    reasons: Counter = dataclasses.field(default_factory=Counter)
    #: with --state: files read, unchanged, added, changed, removed
    changes: dict[str, int] | None = None

    def count(self, category: str) -> int:
        return sum(n for r, n in self.reasons.items() if CATEGORY.get(r, "errors") == category)

    @property
    def seen(self) -> int:
        return self.indexed + sum(self.reasons.values())

    @property
    def errors(self) -> int:
        return self.count("errors")

    def _detail(self, category: str) -> str:
        parts = [f"{r} {n}" for r, n in sorted(self.reasons.items()) if CATEGORY.get(r, "errors") == category]
        return f" ({', '.join(parts)})" if parts else ""

    def as_dict(self) -> dict:
        """Every count of the summary line, per reason, and the time: what
        `--summary FILE` writes."""
        return {
            "seen": self.seen,
            "indexed": self.indexed,
            "skipped": self.count("skipped"),
            "not_dicom": self.count("not DICOM"),
            "errors": self.errors,
            "via_pydicom": self.via_pydicom,
            "duplicates": self.duplicates,
            "unresolved_references": self.unresolved,
            "warnings": self.warnings,
            "reasons": dict(sorted(self.reasons.items())),
            "seconds": round(self.seconds, 6),
            "files_per_second": round(self.seen / self.seconds, 1) if self.seconds > 0 else 0.0,
            **({"state": dict(self.changes)} if self.changes is not None else {}),
        }

    def line(self) -> str:
        rate = self.seen / self.seconds if self.seconds > 0 else 0.0
        return (
            f"fastindex: seen {self.seen}, indexed {self.indexed}, "
            f"skipped {self.count('skipped')}{self._detail('skipped')}, "
            f"not DICOM {self.count('not DICOM')}, "
            f"errors {self.errors}{self._detail('errors')}, "
            f"via pydicom {self.via_pydicom}, duplicates {self.duplicates}, "
            f"unresolved references {self.unresolved}, "
            f"warnings {self.warnings}, {self.seconds:.2f} s, {rate:.0f} files/s{self._changes()}"
        )

    def _changes(self) -> str:
        if self.changes is None:
            return ""
        return "; state: " + ", ".join(f"{k} {self.changes[k]}" for k in ("read", "unchanged", "added", "changed", "removed"))
