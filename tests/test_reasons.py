"""One table of reasons (rust/outcome.rs): the README's table is it, the
summary counts by it, and every reason a run can give is in it."""

from __future__ import annotations

import re
from pathlib import Path

from fastindex.outcomes import CATEGORY, FALLBACK_REASONS, LIMIT_REASONS, REASONS

README = Path(__file__).resolve().parents[1] / "README.md"


def table_rows(name: str, category: str, meaning: str) -> str:
    """A README row as the table writes it."""
    meaning = re.sub(r"(--[a-z-]+)", r"`\1`", meaning)
    return f"| `{name}` | {category} | {meaning} |"


def readme_table() -> list[str]:
    text = README.read_text()
    section = text.split("### Reasons a file is not indexed", 1)[1].split("\n#", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def test_the_readme_table_is_the_reason_table():
    assert readme_table() == [table_rows(n, c, m) for n, c, _, _, m in REASONS]


def test_categories_and_fallback_come_from_the_table():
    assert set(CATEGORY) == {r[0] for r in REASONS}
    assert FALLBACK_REASONS == {"unsupported", "malformed"}
    assert LIMIT_REASONS == {"too_large", "timeout"}
    assert CATEGORY["warning"] == "warning" and CATEGORY["excluded"] == "skipped"
