"""fastindex end to end on an archive with known answers (tests/archive.py).

The first tests check the generator itself against pydicom, so they run
before fastindex is built. The others run the CLI (`python -m fastindex`,
cwd = the directory holding `archive/`) and the Python API, and compare
every record field by field with the known answers; a failure lists each
wrong field as `file: field: expected ..., got ...`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from archive import (
    CT_FRAME,
    CT_SERIES,
    INSTANCE_FIELDS,
    LOC_SOP,
    NOT_DICOM_REASONS,
    NUMBER_FIELDS,
    RP_SOP,
    RS_SOP,
    SKIP_REASONS,
    SUBSERIES_FIELDS,
    Expected,
    make_archive,
)
from pydicom.datadict import tag_for_keyword
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

CLI_TIMEOUT = 300  # seconds; the archive is tiny, this only stops a hang

# --------------------------------------------------------------------------
# Helpers


def same(got, expected) -> bool:
    """Equal and of the same JSON type: 3000 is not 3000.0, "" is not null."""
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(same(g, e) for g, e in zip(got, expected))
        )
    return type(got) is type(expected) and got == expected


def key_problem(got: list[str], expected: list[str]) -> str | None:
    """Say briefly how a record's keys differ from the expected keys."""
    if got == expected:
        return None
    extra = [k for k in got if k not in expected]
    missing = [k for k in expected if k not in got]
    if extra or missing:
        return f"extra keys {extra}, missing keys {missing}"
    return f"keys out of order: {got}"


def mismatches(label: str, expected: dict, got: dict) -> list[str]:
    """One line per wrong field (and one for wrong keys or key order)."""
    out = []
    problem = key_problem(list(got), list(expected))
    if problem:
        out.append(f"{label}: {problem}")
    for name, value in expected.items():
        if name not in got:
            out.append(f"{label}: {name}: missing (expected {value!r})")
        elif not same(got[name], value):
            out.append(f"{label}: {name}: expected {value!r}, got {got[name]!r}")
    return out


def assert_no_problems(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def parse_ndjson(data: bytes) -> list[dict]:
    """Parse strictly: UTF-8, one JSON object per line, newline-terminated."""
    text = data.decode("utf-8")
    if not text:
        return []
    assert text.endswith("\n"), "output does not end with a newline"
    records = []
    for n, line in enumerate(text[:-1].split("\n"), 1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            pytest.fail(f"line {n} is not JSON ({exc}): {line[:200]!r}")
        assert isinstance(value, dict), f"line {n} is not a JSON object: {line!r}"
        records.append(value)
    return records


def run_cli(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "fastindex", *args],
        cwd=cwd,
        capture_output=True,
        timeout=CLI_TIMEOUT,
    )
    if check:
        assert proc.returncode == 0, (
            f"fastindex {' '.join(args)} exited {proc.returncode}\n"
            + proc.stderr.decode(errors="replace")
        )
    return proc


# The counters interface.md puts on the summary line, as (label, key).
SUMMARY_COUNTERS = [
    ("seen", "seen"),
    ("indexed", "indexed"),
    ("skipped", "skipped"),
    ("not DICOM", "not_dicom"),
    ("errors", "errors"),
    ("via pydicom", "via_pydicom"),
    ("duplicates", "duplicates"),
    ("warnings", "warnings"),
]


def parse_summary(stderr: bytes) -> dict:
    """The counts on the last stderr line, by key of SUMMARY_COUNTERS.

    `fastindex: seen N, indexed N, skipped N (...), ..., X.XX s, N files/s`.
    Counters are found by label, so one added later does not break this.
    """
    line = stderr.decode("utf-8", errors="replace").rstrip("\n").split("\n")[-1]
    assert line.startswith("fastindex: "), f"last stderr line: {line!r}"
    body = re.sub(r" \([^)]*\)", "", line.removeprefix("fastindex: "))
    found = {}
    for item in body.split(", "):
        match = re.fullmatch(r"(.+?) (\d+)", item)
        if match:
            found[match[1]] = int(match[2])
    assert re.search(r", [\d.]+ s, [\d.]+ files/s$", line), f"no timing: {line!r}"
    missing = [label for label, _ in SUMMARY_COUNTERS if label not in found]
    assert not missing, f"summary lacks {missing}: {line!r}"
    return {key: found[label] for label, key in SUMMARY_COUNTERS}


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> Expected:
    """The archive at <base>/archive; records' paths read "archive/..."."""
    base = tmp_path_factory.mktemp("run")
    return make_archive(base / "archive")


@pytest.fixture(scope="module")
def fastindex():
    """The installed package; tests that need it skip until `make dev`."""
    module = pytest.importorskip("fastindex")
    pytest.importorskip("fastindex._native")
    return module


@pytest.fixture(scope="module")
def default_run(expected, fastindex) -> subprocess.CompletedProcess:
    return run_cli(expected.base, "archive")


@pytest.fixture(scope="module")
def instance_run(expected, fastindex):
    """`--level instance --errors`: (process, records, error lines)."""
    proc = run_cli(
        expected.base, "archive", "--level", "instance", "--errors", "errs.ndjson"
    )
    # Files with warnings are indexed, and listed apart with reason "warning".
    errors = [e for e in parse_ndjson((expected.base / "errs.ndjson").read_bytes()) if e["reason"] != "warning"]
    return proc, parse_ndjson(proc.stdout), errors


# --------------------------------------------------------------------------
# The generator, checked against pydicom (no fastindex needed)


def _clean(text: str) -> str:
    """The dictionary's trimming: leading/trailing spaces, trailing NULs."""
    return text.rstrip("\x00 ").lstrip(" ")


def _ascii(ds, keyword: str) -> str | None:
    """The stored text of an ASCII-only element (UI, CS, IS, DS), untouched."""
    elem = ds.get_item(tag_for_keyword(keyword))
    if elem is None:
        return None
    if isinstance(elem.value, bytes):
        return elem.value.decode("ascii")
    value = elem.value
    return "\\".join(map(str, value)) if isinstance(value, list) else str(value)


def _text(ds, keyword: str) -> str:
    """Text decoded with the file's character set (pydicom does that)."""
    if keyword not in ds:
        return ""
    value = ds[keyword].value
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        value = "\\".join(map(str, value))
    return _clean(str(value or ""))


def _numbers(ds, keyword: str) -> list[float | None] | None:
    text = _ascii(ds, keyword)
    if text is None:
        return None
    values = []
    for part in _clean(text).split("\\"):
        try:
            values.append(float(part.strip()))
        except ValueError:
            values.append(None)
    return values


def _number(ds, keyword: str) -> float | None:
    values = _numbers(ds, keyword)
    return values[0] if values else None


def _nested(ds, *path: str) -> str:
    """First item of each sequence in `path`, then the last keyword's UID."""
    *sequences, keyword = path
    for name in sequences:
        items = ds.get(name)
        if not items:
            return ""
        ds = items[0]
    return _clean(_ascii(ds, keyword) or "")


def pydicom_record(path: Path, file_path: str) -> dict:
    """What the dictionary says about one file, read with pydicom."""
    ds = pydicom.dcmread(path, force=True)
    syntax = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta else None
    if not syntax:  # bare data set: the encoding pydicom detected
        implicit, little = ds.original_encoding
        assert little
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    orientation = _numbers(ds, "ImageOrientationPatient")
    if orientation is not None and None in orientation:
        orientation = None
    acquisition = _ascii(ds, "AcquisitionNumber")
    reference_ct = (
        _nested(
            ds,
            "ReferencedFrameOfReferenceSequence",
            "RTReferencedStudySequence",
            "RTReferencedSeriesSequence",
            "SeriesInstanceUID",
        )
        or _nested(ds, "ReferencedSeriesSequence", "SeriesInstanceUID")
        or _nested(ds, "ReferencedImageSequence", "ReferencedSOPInstanceUID")
    )
    frame = _clean(_ascii(ds, "FrameOfReferenceUID") or "") or _nested(
        ds, "ReferencedFrameOfReferenceSequence", "FrameOfReferenceUID"
    )
    rec = {
        "patient_ID": _text(ds, "PatientID"),
        "study": _clean(_ascii(ds, "StudyInstanceUID")),
        "study_description": _text(ds, "StudyDescription"),
        "series": _clean(_ascii(ds, "SeriesInstanceUID")),
        "series_description": _text(ds, "SeriesDescription"),
        "subseries": _clean(acquisition) if acquisition is not None else "default",
        "modality": _text(ds, "Modality"),
        "instance_uid": _clean(_ascii(ds, "SOPInstanceUID")),
        "reference_ct": reference_ct,
        "reference_rs": _nested(
            ds, "ReferencedStructureSetSequence", "ReferencedSOPInstanceUID"
        ),
        "reference_pl": _nested(
            ds, "ReferencedRTPlanSequence", "ReferencedSOPInstanceUID"
        ),
        "reference_frame": frame,
        "folder": file_path.rpartition("/")[0] or ".",
        "file_path": file_path,
        "orientation": orientation,
        "orientation_type": _text(ds, "AnatomicalOrientationType"),
        "MR_repetition_time": _number(ds, "RepetitionTime"),
        "MR_echo_time": _number(ds, "EchoTime"),
        "MR_scan_sequence": _text(ds, "ScanningSequence"),
        "MR_magnetic_field_strength": _number(ds, "MagneticFieldStrength"),
        "MR_imaged_nucleus": _text(ds, "ImagedNucleus"),
        "sop_class_uid": _clean(_ascii(ds, "SOPClassUID")),
        "transfer_syntax": str(syntax),
    }
    return {f: rec[f] for f in INSTANCE_FIELDS}


def pydicom_reason(path: Path) -> str:
    """Why pydicom would not index the file, or "indexed"."""
    try:
        ds = pydicom.dcmread(path)  # no force: Part 10 files only
    except (InvalidDicomError, EOFError):
        return "not_dicom"
    if ds.file_meta.get("MediaStorageSOPClassUID") == "1.2.840.10008.1.3.10":
        return "dicomdir"
    if "SeriesInstanceUID" not in ds:
        return "no_series_uid"
    return "indexed"


def test_generator_answers_agree_with_pydicom(expected):
    problems = []
    for f in expected.indexed:
        path = expected.root / f.path
        want = expected.instance_record(f)
        got = pydicom_record(path, want["file_path"])
        problems += mismatches(f.path, want, got)
        is_bare = path.read_bytes()[128:132] != b"DICM"
        if is_bare != f.bare:
            problems.append(f"{f.path}: bare={is_bare}, expected {f.bare}")
    for f in expected.not_indexed:
        got = pydicom_reason(expected.root / f.path)
        if got != f.reason:
            problems.append(f"{f.path}: reason expected {f.reason}, pydicom {got}")
    assert_no_problems(problems)


def test_generator_is_deterministic_and_fast(tmp_path):
    def contents(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    start = time.perf_counter()
    first = make_archive(tmp_path / "a" / "archive")
    elapsed = time.perf_counter() - start
    make_archive(tmp_path / "b" / "archive")
    a, b = contents(tmp_path / "a" / "archive"), contents(tmp_path / "b" / "archive")
    assert a == b
    assert sorted(a) == sorted(f.path for f in first.files), "unlisted files"
    assert elapsed < 5, f"generation took {elapsed:.1f} s"


def test_generator_covers_the_issue(expected):
    """The archive holds what the tests rely on (guards later edits)."""
    syntaxes = {f.record["transfer_syntax"] for f in expected.indexed}
    assert {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.80",
    } <= syntaxes
    assert {f.record["transfer_syntax"] for f in expected.indexed if f.bare} == {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
    }
    reasons = {f.reason for f in expected.not_indexed}
    assert reasons == {"not_dicom", "dicomdir", "no_series_uid"}
    assert expected.duplicates == 1
    assert any("." not in f.path.rsplit("/", 1)[-1] for f in expected.indexed)


# --------------------------------------------------------------------------
# Default mode: one record per subseries


def test_default_stdout_is_only_ndjson(default_run):
    records = parse_ndjson(default_run.stdout)
    assert records, "no records on stdout"


def test_default_records_have_dictionary_keys_in_order(default_run):
    problems = {key_problem(list(r), SUBSERIES_FIELDS) for r in parse_ndjson(default_run.stdout)}
    assert_no_problems(sorted(problems - {None}))


def test_default_records_are_sorted(default_run):
    keys = [
        (r["patient_ID"], r["study"], r["series"], r["subseries"])
        for r in parse_ndjson(default_run.stdout)
    ]
    assert keys == sorted(keys)
    assert len(keys) == len(set(keys)), "a subseries appears twice"


def test_default_records_match_expected(expected, default_run):
    got = parse_ndjson(default_run.stdout)
    want = expected.subseries_records()

    def key(r: dict) -> tuple:
        return (r["patient_ID"], r["study"], r["series"], r["subseries"])

    got_by_key = {key(r): r for r in got}
    problems = []
    for w in want:
        g = got_by_key.pop(key(w), None)
        if g is None:
            problems.append(f"missing subseries {key(w)} ({w['file_path']})")
        else:
            problems += mismatches(w["file_path"], w, g)
    problems += [f"unexpected subseries {k}" for k in got_by_key]
    assert_no_problems(problems)


def test_duplicate_file_counts_one_instance(expected, default_run):
    """Four CT files of acquisition 1, one a copy: three instances."""
    (ct1,) = [
        r
        for r in parse_ndjson(default_run.stdout)
        if r["series"] == CT_SERIES and r["subseries"] == "1"
    ]
    assert ct1["instances"] == 3
    # slice_10 sorts before slice_2 byte-wise: it is the representative.
    assert ct1["file_path"] == "archive/p1/ct/slice_10.dcm"


def test_every_field_has_one_type(default_run, instance_run):
    """Strings never null, numbers never "", arrays of numbers or null."""
    _, instances, _ = instance_run
    problems = []
    for r in parse_ndjson(default_run.stdout) + instances:
        where = r.get("file_path")
        for name, value in r.items():
            if name not in INSTANCE_FIELDS and name != "instances":
                continue  # not a dictionary field: the key tests report it
            if name == "instances":
                ok = type(value) is int
            elif name == "orientation":
                ok = value is None or (
                    isinstance(value, list)
                    and all(type(v) in (int, float) for v in value)
                )
            elif name in NUMBER_FIELDS:
                ok = value is None or type(value) in (int, float)
            else:
                ok = isinstance(value, str)
            if not ok:
                problems.append(f"{where}: {name}: wrong type {value!r}")
    assert_no_problems(problems)


# --------------------------------------------------------------------------
# --level instance --errors


def test_instance_stdout_is_only_ndjson_with_instance_keys(instance_run):
    _, records, _ = instance_run
    assert records
    problems = {key_problem(list(r), INSTANCE_FIELDS) for r in records}
    assert_no_problems(sorted(problems - {None}))


def test_instance_records_match_expected(expected, instance_run):
    _, records, _ = instance_run
    want = expected.instance_records()
    problems = []
    seen = set()
    for r in records:
        path = r.get("file_path")
        if path in seen:
            problems.append(f"{path}: reported twice")
        seen.add(path)
        if path not in want:
            problems.append(f"{path}: indexed but not expected to be")
        else:
            problems += mismatches(path, want[path], r)
    problems += [f"{p}: expected a record, got none" for p in want.keys() - seen]
    assert_no_problems(problems)


def test_errors_file_lists_every_file_not_indexed(expected, instance_run):
    _, _, errors = instance_run
    want = expected.reasons()
    problems = []
    got = {}
    for e in errors:
        if list(e) != ["file_path", "reason", "message"]:
            problems.append(f"error line keys {list(e)}: {e}")
        if not isinstance(e.get("message"), str):
            problems.append(f"{e.get('file_path')}: message is not a string")
        got[e.get("file_path")] = e.get("reason")
    for path, reason in want.items():
        if path not in got:
            problems.append(f"{path}: not in errors file (expected {reason})")
        elif got[path] != reason:
            problems.append(f"{path}: reason: expected {reason!r}, got {got[path]!r}")
    problems += [f"{p}: in errors but expected indexed" for p in got.keys() - want]
    assert_no_problems(problems)


def test_no_file_is_both_indexed_and_in_errors(instance_run):
    _, records, errors = instance_run
    both = {r["file_path"] for r in records} & {e["file_path"] for e in errors}
    assert not both


def test_summary_line_counts_every_file(expected, instance_run):
    proc, _, _ = instance_run
    s = parse_summary(proc.stderr)
    skipped = expected.count(SKIP_REASONS)
    not_dicom = expected.count(NOT_DICOM_REASONS)
    want = {
        "seen": len(expected.files),
        "indexed": len(expected.indexed),
        "skipped": skipped,
        "not_dicom": not_dicom,
        "errors": 0,
    }
    problems = [
        f"summary {k}: expected {v}, got {s[k]}" for k, v in want.items() if s[k] != v
    ]
    total = s["indexed"] + s["skipped"] + s["not_dicom"] + s["errors"]
    if s["seen"] != total:
        problems.append(f"seen {s['seen']} != indexed+skipped+not DICOM+errors {total}")
    # Each file with a number that does not parse counts a warning; nothing
    # in the dictionary forbids other warnings, so this is a lower bound.
    if s["warnings"] < expected.warnings:
        problems.append(
            f"warnings: expected >= {expected.warnings}, got {s['warnings']}"
        )
    assert_no_problems(problems)


def test_default_mode_prints_the_same_summary(expected, default_run):
    s = parse_summary(default_run.stderr)
    assert s["seen"] == len(expected.files)
    assert s["indexed"] == len(expected.indexed)


@pytest.mark.parametrize("level", ["default", "instance"])
def test_summary_reports_the_duplicate(expected, default_run, instance_run, level):
    """One CT slice is stored twice; whatever the level, the summary says so."""
    proc = default_run if level == "default" else instance_run[0]
    got, want = parse_summary(proc.stderr)["duplicates"], expected.duplicates
    assert got == want, f"--level {level}: duplicates: expected {want}, got {got}"


# Points of the issue, named one by one (the full comparison above covers
# them too; these say which rule broke).
NAMED_CHECKS = [
    ("rtstruct", "reference_ct", CT_SERIES),  # nested series wins over images
    ("rtstruct", "reference_frame", CT_FRAME),  # only in the nested sequence
    ("seg", "reference_ct", CT_SERIES),  # space-padded UID, trimmed
    ("seg", "orientation", None),  # only in a functional group
    ("rtplan", "reference_rs", RS_SOP),
    ("rtdose", "reference_pl", RP_SOP),
    ("rtdose", "reference_rs", RS_SOP),
    ("mr1", "reference_ct", LOC_SOP[1]),  # first item, not the second
    ("mr1", "MR_scan_sequence", "SE\\IR"),
    ("mr1", "MR_repetition_time", 3000.0),
    ("mr2", "MR_repetition_time", 3000.0),  # " 3000", big endian
    ("mr2", "MR_magnetic_field_strength", None),  # "1,5"
    ("mr_t2", "MR_echo_time", None),  # "abc"
    ("pt1", "reference_ct", ""),  # first item lacks the UID
    ("pt1", "subseries", "default"),
    ("pt2", "transfer_syntax", "1.2.840.10008.1.2.1"),  # bare explicit LE
    ("ct4", "subseries", "2"),  # " 2", deflated
    ("ct1", "study_description", "Thorax CT"),
    ("ct1", "series_description", "Axial 2.5mm"),  # trailing NUL
    ("latin1", "patient_ID", "MÜLLER-01"),
    ("latin1", "series_description", "Séquence pondérée"),
    ("utf8", "study_description", "Tête – 頭部"),
    ("loc1", "file_path", "archive/p2/localizer/IM0001"),
    ("loose", "folder", "archive"),
]


@pytest.mark.parametrize(
    "label, name, value",
    NAMED_CHECKS,
    ids=[f"{label}-{name}" for label, name, _ in NAMED_CHECKS],
)
def test_named_rule(expected, instance_run, label, name, value):
    _, records, _ = instance_run
    path = expected.file_path(expected.by_label(label))
    assert expected.instance_records()[path][name] == value  # the answer key
    (got,) = [r for r in records if r["file_path"] == path] or [None]
    assert got is not None, f"{path} not indexed"
    assert same(got[name], value), (
        f"{path}: {name}: expected {value!r}, got {got[name]!r}"
    )


# --------------------------------------------------------------------------
# Options


def test_parallelism_does_not_change_output(expected, default_run):
    one = run_cli(expected.base, "archive", "-j1")
    four = run_cli(expected.base, "archive", "-j4")
    assert one.stdout == four.stdout, "-j1 and -j4 differ"
    assert one.stdout == default_run.stdout, "-j1 and default -j differ"


def test_parallelism_same_instances(expected, fastindex):
    """Instance lines come in completion order: compare them as sets."""
    runs = [
        run_cli(expected.base, "archive", "--level", "instance", j).stdout
        for j in ("-j1", "-j4")
    ]
    one, four = (sorted(out.decode().splitlines()) for out in runs)
    assert one == four


def test_output_file_has_the_stdout_bytes(expected, default_run):
    out = expected.base / "out.ndjson"
    run_cli(expected.base, "archive", "-o", "out.ndjson")
    assert out.read_bytes() == default_run.stdout


def test_output_into_missing_directory_fails_cleanly(expected, fastindex):
    before = sorted(expected.base.rglob("*"))
    proc = run_cli(
        expected.base, "archive", "-o", "missing/dir/out.ndjson", check=False
    )
    assert proc.returncode == 1, (
        f"exit {proc.returncode} (interface: 1 = output not writable)\n"
        + proc.stderr.decode(errors="replace")
    )
    assert not (expected.base / "missing").exists()
    assert sorted(expected.base.rglob("*")) == before, "files left behind"


@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
def test_relative_to_rebases_paths(expected, fastindex, absolute):
    """Paths relative to the archive itself; the root file's folder is "."."""
    root = str(expected.root) if absolute else "archive"
    got = parse_ndjson(run_cli(expected.base, root, "--relative-to", root).stdout)
    want = expected.subseries_records(base=expected.root)
    assert len(got) == len(want)
    problems = []
    for w, g in zip(want, got):
        problems += mismatches(w["file_path"], w, g)
    assert_no_problems(problems)
    assert any(g["folder"] == "." and g["file_path"] == "loose.dcm" for g in got)


# --------------------------------------------------------------------------
# Python API


def test_python_index_equals_cli(expected, default_run, fastindex, monkeypatch):
    monkeypatch.chdir(expected.base)
    cli = parse_ndjson(default_run.stdout)
    api = fastindex.index(["archive"])
    assert len(api) == len(cli)
    problems = []
    for c, a in zip(cli, api):
        problems += mismatches(c["file_path"], c, a)
    assert_no_problems(problems)


def test_python_iter_instances_equals_cli(
    expected, instance_run, fastindex, monkeypatch
):
    monkeypatch.chdir(expected.base)
    _, cli, _ = instance_run
    api = {r["file_path"]: r for r in fastindex.iter_instances(["archive"])}
    assert sorted(api) == sorted(r["file_path"] for r in cli)
    problems = []
    for c in cli:
        problems += mismatches(c["file_path"], c, api[c["file_path"]])
    assert_no_problems(problems)


def test_read_header_engines_agree(expected, fastindex, monkeypatch):
    """Rust and pydicom engines give the same record, the expected one."""
    monkeypatch.chdir(expected.base)
    problems = []
    for f in expected.indexed:
        path = expected.file_path(f)
        rust = fastindex.read_header(path, engine="rust")
        py = fastindex.read_header(path, engine="pydicom")
        problems += mismatches(f"{path} (rust vs pydicom engine)", py, rust)
        want = expected.instance_record(f)
        problems += mismatches(f"{path} (rust engine)", want, rust)
    assert_no_problems(problems)


@pytest.mark.parametrize("engine", ["rust", "pydicom"])
def test_read_header_not_indexed_reason(expected, fastindex, monkeypatch, engine):
    monkeypatch.chdir(expected.base)
    problems = []
    for f in expected.not_indexed:
        path = expected.file_path(f)
        try:
            fastindex.read_header(path, engine=engine)
        except fastindex.NotIndexed as exc:
            if exc.reason != f.reason:
                problems.append(
                    f"{path}: reason: expected {f.reason!r}, got {exc.reason!r}"
                )
        else:
            problems.append(f"{path}: no NotIndexed (expected {f.reason!r})")
    assert_no_problems(problems)
