"""Every real DICOM file the tests can reach: pydicom's test files and the
files vendored under tests/data/ (see tests/data/README.md).

A missing or emptied corpus raises instead of giving a shorter list: a
test that loops over nothing passes without testing anything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pydicom.data

PYDICOM_DATA = Path(pydicom.data.__file__).parent
PYDICOM_FILES = PYDICOM_DATA / "test_files"
CHARSET_FILES = PYDICOM_DATA / "charset_files"
VENDORED = Path(__file__).resolve().parent / "data"

#: the fewest files each corpus may hold (today: 176, 18, 37)
MINIMUM = {PYDICOM_FILES: 100, CHARSET_FILES: 15, VENDORED: 30}


def files_under(root: Path) -> list[Path]:
    """The regular files under `root`, sorted; raises when there are none."""
    if not root.is_dir():
        raise FileNotFoundError(f"test corpus missing: {root}")
    out = []
    for folder, _, names in os.walk(root):
        for n in names:
            p = Path(folder) / n
            if p.is_file() and not p.is_symlink():
                out.append(p)
    if not out:
        raise FileNotFoundError(f"test corpus empty: {root}")
    return sorted(out)


def corpus(root: Path) -> list[Path]:
    """The files of one of the corpora above, at least MINIMUM[root]."""
    files = files_under(root)
    if len(files) < MINIMUM[root]:
        raise FileNotFoundError(f"test corpus {root} holds {len(files)} files, expected at least {MINIMUM[root]}")
    return files


def all_files() -> list[Path]:
    return [p for root in MINIMUM for p in corpus(root)]


def copy_corpora(dest: Path, **named: Path) -> None:
    """Copy corpora into `dest/NAME`, each checked as `corpus` does."""
    for name, root in named.items():
        corpus(root)
        shutil.copytree(root, dest / name)
