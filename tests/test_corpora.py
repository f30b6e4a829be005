"""The real files the tests loop over are there: a clone without them
fails here and at collection, instead of passing on fewer files."""

from __future__ import annotations

import pytest
from corpora import CHARSET_FILES, MINIMUM, PYDICOM_FILES, VENDORED, all_files, corpus, files_under


@pytest.mark.parametrize("root", [PYDICOM_FILES, CHARSET_FILES, VENDORED], ids=lambda p: p.name)
def test_corpus_present(root):
    assert len(files_under(root)) >= MINIMUM[root] >= 15


def test_vendored_files_are_dicom_with_their_license():
    # Real files, not Git LFS pointers or empty placeholders.
    dicom = [p for p in files_under(VENDORED) if p.read_bytes()[128:132] == b"DICM"]
    assert len(dicom) >= 30
    assert {p.parent.name for p in dicom} == {"highdicom", "dicom-parser-rs"}
    for folder in ("highdicom", "dicom-parser-rs"):
        assert "Permission is hereby granted, free of charge" in (VENDORED / folder / "LICENSE").read_text()
    assert "MIT" in (VENDORED / "README.md").read_text()


def test_missing_or_empty_corpus_raises(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="missing"):
        files_under(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="empty"):
        files_under(tmp_path)
    (tmp_path / "one.dcm").write_bytes(b"")
    monkeypatch.setitem(MINIMUM, tmp_path, 2)
    with pytest.raises(FileNotFoundError, match="at least 2"):
        corpus(tmp_path)
    monkeypatch.setitem(MINIMUM, VENDORED, 10**6)
    with pytest.raises(FileNotFoundError, match="at least"):
        all_files()
