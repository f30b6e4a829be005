#!/usr/bin/env python3
"""Peak RSS of fastindex on an archive of single-file series (CR/DX-like).

Writes N files, each its own study and series (4 studies per patient, 1,000
files per folder), from one template DICOM file whose UIDs and PatientID
are patched in place at fixed width, then reports the peak RSS of
`fastindex DIR -o /dev/null` at both levels (GNU `time -f %M`) and the
bytes per series above an empty run.

    .venv/bin/python bench/series_memory.py --files 500000
    .venv/bin/python bench/series_memory.py --files 500000 --dir /tmp/series --keep
    .venv/bin/python bench/series_memory.py --keep --fastindex-cmd "env PYTHONPATH=OTHER/python .venv/bin/python -m fastindex"

The archive is written to --dir (default /tmp/fastindex-series-N), kept with
--keep and then reused while --files and the template are the same. UIDs
are 60 characters, as real ones often are; paths look like
DIR/d0123/PAT0030861_0123456.dcm. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root; 26 characters
DIGITS = 60 - len(ROOT) - 2  # UIDs of 60 characters: ROOT + "k." + digits
PER_DIR = 1000
PER_PATIENT = 4


def uid(kind: int, n: int) -> str:
    return f"{ROOT}{kind}.1{n:0{DIGITS - 1}d}"  # no leading zero (a valid UID)


def patient(i: int) -> str:
    return f"PAT{i // PER_PATIENT:07d}"


def template() -> tuple[bytes, dict[str, int]]:
    """The file for series 0, and where each per-file value starts."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    ds.file_meta.MediaStorageSOPInstanceUID = uid(3, 0)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = uid(3, 0)
    ds.StudyDate, ds.Modality = "20240101", "CR"
    ds.StudyDescription = "CHEST 2 VIEWS"
    ds.SeriesDescription = "PA"
    ds.PatientName, ds.PatientID = "ANON^X", patient(0)
    ds.StudyInstanceUID = uid(1, 0)
    ds.SeriesInstanceUID = uid(2, 0)
    ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 1, 1, 1
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(32)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    spots: dict[str, int] = {}
    for name, text in (("study", uid(1, 0)), ("series", uid(2, 0)), ("patient", patient(0))):
        spots[name] = data.index(text.encode())
    first = data.index(uid(3, 0).encode())
    spots["sop_meta"], spots["sop"] = first, data.index(uid(3, 0).encode(), first + 1)
    return data, spots


def write_range(args: tuple[str, int, int]) -> int:
    out, start, stop = args
    data, spots = template()
    buf = bytearray(data)
    for i in range(start, stop):
        values = {"study": uid(1, i), "series": uid(2, i), "sop_meta": uid(3, i),
                  "sop": uid(3, i), "patient": patient(i)}
        for name, text in values.items():
            at = spots[name]
            buf[at:at + len(text)] = text.encode()
        folder = os.path.join(out, f"d{i // PER_DIR:04d}")
        if i % PER_DIR == 0 or i == start:
            os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{patient(i)}_{i:07d}.dcm"), "wb") as f:
            f.write(buf)
    return stop - start


def generate(out: Path, files: int) -> None:
    """Write the archive unless the one in `out` was made alike."""
    stamp = {"files": files, "template": hashlib.sha256(template()[0]).hexdigest()}
    marker = out / ".series_memory.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    step = 10_000
    work = [(str(out), s, min(files, s + step)) for s in range(0, files, step)]
    done = 0
    with Pool(os.cpu_count()) as pool:
        for n in pool.imap_unordered(write_range, work):
            done += n
            print(f"\r{done}/{files} files", end="", file=sys.stderr)
    print(f"\nwrote {files} files in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    marker.write_text(json.dumps(stamp))


def peak_rss_kib(cmd: list[str]) -> int:
    p = subprocess.run(["/usr/bin/time", "-f", "maxrss_kib=%M", *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    line = [x for x in p.stderr.splitlines() if x.startswith("maxrss_kib=")][-1]
    return int(line.split("=")[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=500_000)
    ap.add_argument("--dir", help="archive folder (default /tmp/fastindex-series-N)")
    ap.add_argument("--fastindex-cmd", default=str(Path(sys.executable).parent / "fastindex"),
                    help="fastindex command (default: the one next to this python)")
    ap.add_argument("--keep", action="store_true", help="keep the archive for the next run")
    a = ap.parse_args()
    out = Path(a.dir or f"/tmp/fastindex-series-{a.files}")
    generate(out, a.files)
    cmd = shlex.split(a.fastindex_cmd)
    with tempfile.TemporaryDirectory() as empty:
        base = peak_rss_kib([*cmd, empty, "-o", "/dev/null", "-q"])
    results = {"files": a.files, "empty_mib": round(base / 1024, 1)}
    for level in ("subseries", "instance"):
        t0 = time.perf_counter()
        kib = peak_rss_kib([*cmd, str(out), "-o", "/dev/null", "-q",
                            *(["--level", "instance"] if level == "instance" else [])])
        results[level] = {"peak_rss_mib": round(kib / 1024, 1),
                          "bytes_per_series": round((kib - base) * 1024 / a.files),
                          "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(results))
    if not a.keep:
        shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
