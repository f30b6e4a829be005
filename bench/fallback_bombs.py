"""The pydicom fallback under fire: valid files the fast path declines
(ISO 2022 text) that make pydicom build huge data sets, indexed at -j 1 and
-j 4; wall time and the peak RSS of the whole run (the command and its
fallback worker processes, summed, sampled every 10 ms).

    .venv/bin/python bench/fallback_bombs.py [--out DIR] [--markdown FILE]

Bombs (as issue 9 describes them):
- items: 7.5 M empty items in a private undefined-length sequence (60 MB)
- elements: 6 M tiny private elements (60 MB)
- big: one 70 MB private element (past the fallback's 64 MiB read cap)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import hostile  # noqa: E402  (the tests' raw element writer)
from pydicom.uid import ExplicitVRLittleEndian  # noqa: E402

declined = hostile.declined

def items(w, n: int = 7_500_000) -> None:
    w.head(0x0009_1010, b"SQ", hostile.UNDEF)
    w.raw(b"\xfe\xff\x00\xe0\x00\x00\x00\x00" * n)
    w.seq_end()


def big(w, size: int = 70 * 1024 * 1024) -> None:
    w.head(0x0009_1012, b"OB", size)
    w.raw(bytes(size))


def elements_file(n: int = 6_000_000) -> bytes:
    """6 M tiny private elements, in private groups after the ones the
    record needs (0021, 0023, ...), so both readers walk all of them."""
    w = hostile.W()
    w.el(0x0008_0005, b"CS", "ISO 2022 IR 87")
    hostile._start(w)
    w.el(0x0008_1030, b"LO", b"\x1b$B;3ED\x1b(B")
    hostile._end(w)
    body = bytearray(w.buf)
    group, element, left = 0x0021, 0x1000, n
    chunk = bytearray()
    while left:
        chunk += group.to_bytes(2, "little") + element.to_bytes(2, "little") + b"SH\x02\x00ab"
        left -= 1
        element += 1
        if element > 0xFFFF:
            group, element = group + 2, 0x1000
    return hostile.part10(ExplicitVRLittleEndian, bytes(body + chunk))


def tree_rss_kib(root: int) -> int:
    """RSS of `root` and all its descendants, in KiB."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(d)
        parent[pid] = int(fields[1])
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
    total = 0
    for pid in rss:
        p = pid
        while p > 1:
            if p == root:
                total += rss[pid]
                break
            p = parent.get(p, 0)
    return total


def measure(args: list[str]) -> tuple[float, int, str]:
    start = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.01)
    seconds = time.monotonic() - start
    summary = proc.stderr.read().decode().strip().splitlines()[-1]
    return seconds, peak, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/fastindex-bombs")
    ap.add_argument("--markdown", help="append a results table here")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"items": lambda: declined(items), "elements": elements_file, "big": lambda: declined(big)}
    for name, make in files.items():
        for i in range(4):  # four of each, so that -j 4 has four at once
            p = out / name / f"{i}.dcm"
            if not p.exists():
                p.parent.mkdir(exist_ok=True)
                p.write_bytes(make())
    exe = [sys.executable, "-m", "fastindex"]
    rows = []
    for name in files:
        for jobs in (1, 4):
            seconds, peak, summary = measure([*exe, "-j", str(jobs), str(out / name)])
            errors = summary.split("errors ", 1)[1].split(", via")[0]
            rows.append(f"| {name} ×4 | {jobs} | {seconds:.1f} | {peak / 1024:.0f} | {errors} |")
            print(rows[-1], flush=True)
    table = "\n".join(
        [
            "| bomb | -j | wall s | peak RSS MiB (run + workers) | errors |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    if a.markdown:
        with open(a.markdown, "a") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
