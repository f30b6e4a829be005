"""What a new user meets first: the name to install, the Python it needs,
the license, the dictionary, and a checkout that needs nothing beside it."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import fastindex
from fastindex import SUBSERIES_FIELDS

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
DISTRIBUTION = "fastindex-dicom"


def lower_bound(requires_python: str) -> tuple[int, int]:
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires_python.strip())
    assert m, requires_python
    return int(m[1]), int(m[2])


def test_distribution_name_is_not_the_taken_one():
    # `fastindex` on PyPI is an unrelated project: `pip install fastindex`
    # must not be what the project tells anyone to type.
    assert PROJECT["name"] == DISTRIBUTION
    assert importlib.metadata.version(DISTRIBUTION) == fastindex.__version__ == PROJECT["version"]


def test_requires_python_is_what_the_dependencies_need():
    ours = lower_bound(PROJECT["requires-python"])
    assert ours >= lower_bound(importlib.metadata.metadata("pydicom")["Requires-Python"])
    # The extension's stable ABI floor is the same version.
    cargo = (ROOT / "Cargo.toml").read_text()
    assert re.findall(r'"abi3-py3(\d+)"', cargo) == [str(ours[1])]


def test_license_is_mit_and_shipped():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]


def test_dictionary_lists_the_fields_in_order():
    text = (ROOT / "docs" / "dictionary.md").read_text()
    table = text.split("## Fields, in order", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| *\d+ *\| *`([^`]+)` *\|", table, flags=re.M)
    assert names == list(SUBSERIES_FIELDS[:22])


#: what is never part of the project: built, installed, generated
UNTRACKED = {
    ".git", ".venv", "target", ".sample", "__pycache__", ".pytest_cache",
    "corpus", "seeds", "artifacts", ".build", "PKG-INFO",
}


def project_files() -> list[Path]:
    """The tracked files (git ls-files), or every file under the project
    root less UNTRACKED where git or the repository is not there."""
    try:
        proc = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    except FileNotFoundError:
        proc = None
    if proc is not None and proc.returncode == 0:
        return [ROOT / p for p in proc.stdout.decode().split("\0") if p]
    out = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in UNTRACKED]
        out += [Path(folder) / n for n in names if n not in UNTRACKED]
    return out


# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile(rb"\.\./" + rb"shared|shared/" + rb"corpus|\"" + rb"shared\"")


def referring_outside(exclude: set[str]) -> list[str]:
    found = []
    for p in project_files():
        rel = p.relative_to(ROOT).as_posix()
        if rel.split("/")[0] in exclude or rel in exclude or not p.is_file():
            continue
        if OUTSIDE.search(p.read_bytes()):
            found.append(rel)
    return found


def test_nothing_refers_to_files_outside_the_checkout():
    assert len(project_files()) > 50
    assert referring_outside({"docs"}) == []


def test_parquet_hint_names_the_distribution(tmp_path):
    # pyarrow missing: the hint says what to install, by the name on PyPI.
    code = "import sys; sys.modules['pyarrow'] = None; from fastindex.cli import main; sys.exit(main())"
    (tmp_path / "a").mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", code, "--format", "parquet", "-o", "x.parquet", "a"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert f"pip install '{DISTRIBUTION}[parquet]'" in proc.stderr
