"""Every real DICOM file the tests can reach: pydicom's test files and the
shared corpus beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom.data

PYDICOM_DATA = Path(pydicom.data.__file__).parent
PYDICOM_FILES = PYDICOM_DATA / "test_files"
CHARSET_FILES = PYDICOM_DATA / "charset_files"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def files_under(root: Path) -> list[Path]:
    out = []
    for folder, _, names in os.walk(root):
        for n in names:
            p = Path(folder) / n
            if p.is_file() and not p.is_symlink():
                out.append(p)
    return sorted(out)


def all_files() -> list[Path]:
    shared = files_under(SHARED) if SHARED.is_dir() else []
    return files_under(PYDICOM_FILES) + files_under(CHARSET_FILES) + shared
