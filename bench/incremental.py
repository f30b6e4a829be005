#!/usr/bin/env python3
"""--state and watch against their floors; writes bench/RESULTS-incremental.md.

  .venv/bin/python bench/incremental.py [--corpus DIR] [--repeat N] [--watch-files N]

- unchanged, warm: `fastindex CORPUS --state S` (second run) against
  bench/statfloor.c (walk + stat every file, open none); DICOM files the
  second run opens, counted with `strace -f -e trace=openat`;
- cold (file pages evicted with posix_fadvise DONTNEED, as bench/run):
  the unchanged --state run against a full run without --state;
- 1% changed, 1% added, 1% deleted (on a hard-linked copy; a changed file
  is rewritten through a new inode): files read, and the output against a
  fresh run's;
- watch: a writer copies N files of the corpus into a drop folder (in two
  writes each, every other one renamed into place); events per file and
  the delay from a file's last write to its `instance` event.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FI = str(Path(sys.executable).parent / "fastindex")


def timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, r.stdout + r.stderr


def evict(root: Path) -> None:
    os.sync()
    for dirpath, _, names in os.walk(root):
        for n in names:
            fd = os.open(os.path.join(dirpath, n), os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="/tmp/fastindex-bench/files36000-s100-m64-seed0")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--watch-files", type=int, default=2000)
    a = ap.parse_args()
    corpus = Path(a.corpus)
    tmp = Path(tempfile.mkdtemp(prefix="fi-incr-"))
    floor = BENCH / ".build" / "statfloor"
    floor.parent.mkdir(exist_ok=True)
    subprocess.run(["gcc", "-O2", "-o", str(floor), str(BENCH / "statfloor.c")], check=True)
    lines = [f"# --state and watch\n\ncorpus `{corpus}`; median of {a.repeat}; command: `.venv/bin/python bench/incremental.py {' '.join(sys.argv[1:])}`\n"]
    state = tmp / "s.db"
    t_first, _ = timed([FI, str(corpus), "--state", str(state), "-o", str(tmp / "first.ndjson")])
    floor_t = statistics.median(float(timed([str(floor), str(corpus)])[1].split("seconds=")[1]) for _ in range(a.repeat))
    walls, inners = [], []
    for _ in range(a.repeat):
        walls.append(timed([FI, str(corpus), "--state", str(state), "-o", str(tmp / "again.ndjson"), "--summary", str(tmp / "sum.json")])[0])
        inners.append(json.loads((tmp / "sum.json").read_text())["seconds"])
    wall, inner = statistics.median(walls), statistics.median(inners)
    same = (tmp / "first.ndjson").read_bytes() == (tmp / "again.ndjson").read_bytes()
    subprocess.run(["strace", "-f", "-e", "trace=openat", "-o", str(tmp / "trace"), FI, str(corpus), "--state", str(state), "-q", "-o", str(tmp / "t.ndjson")], capture_output=True)
    opened = [ln for ln in (tmp / "trace").read_text().splitlines() if str(corpus) in ln and "O_DIRECTORY" not in ln]
    lines += [
        "## Unchanged, warm\n",
        "| run | median s |", "|---|---:|",
        f"| first run with --state (reads all) | {t_first:.2f} (one run) |",
        f"| statfloor (walk + stat, C) | {floor_t:.3f} |",
        f"| fastindex --state, unchanged, wall (with Python start-up) | {wall:.3f} |",
        f"| the same, its own timer (summary seconds) | {inner:.3f} |",
        "",
        f"- ratio wall / floor: {wall / floor_t:.2f}x; own timer / floor: {inner / floor_t:.2f}x (target <= 1.5x)",
        f"- output equal to the first run's: {same}",
        f"- files under the corpus opened other than as directories (strace -f -e trace=openat): {len(opened)}",
        "",
    ]
    cold_state, cold_full = [], []
    for _ in range(max(1, a.repeat // 2)):
        evict(corpus)
        cold_state.append(timed([FI, str(corpus), "--state", str(state), "-q", "-o", str(tmp / "c.ndjson")])[0])
        evict(corpus)
        cold_full.append(timed([FI, str(corpus), "-q", "-o", str(tmp / "c2.ndjson")])[0])
    cs, cf = statistics.median(cold_state), statistics.median(cold_full)
    lines += ["## Cold (pages evicted)\n", "| run | median s |", "|---|---:|", f"| fastindex --state, unchanged | {cs:.3f} |", f"| fastindex, full run, no state | {cf:.3f} |", "", f"- speed-up {cf / cs:.1f}x (target >= 10x); directory entries and inodes stay cached\n"]
    # 1% changed, added, deleted on a hard-linked copy
    copy = tmp / "copy"
    subprocess.run(["cp", "-al", str(corpus), str(copy)], check=True)
    st2 = tmp / "c.db"
    timed([FI, str(copy), "--state", str(st2), "-q", "-o", str(tmp / "x.ndjson")])
    files = sorted(p for p in copy.rglob("*") if p.is_file())
    rng = random.Random(0)
    rng.shuffle(files)
    k = len(files) // 100
    for p in files[:k]:  # changed: rewritten through a new inode (the link to the corpus kept)
        data = p.read_bytes()
        p.unlink()
        p.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    for p in files[k : 2 * k]:
        p.unlink()
    for i, p in enumerate(files[2 * k : 3 * k]):
        shutil.copyfile(p, p.with_name(f"added-{i}"))
    t_inc, err = timed([FI, str(copy), "--state", str(st2), "-o", str(tmp / "inc.ndjson"), "--summary", str(tmp / "inc.json")])
    s = json.loads((tmp / "inc.json").read_text())["state"]
    t_fresh, _ = timed([FI, str(copy), "-o", str(tmp / "fresh.ndjson")])
    eq = (tmp / "inc.ndjson").read_bytes() == (tmp / "fresh.ndjson").read_bytes()
    lines += ["## 1% changed, 1% added, 1% deleted\n", f"- state counts: {s}", f"- read {s['read']} files = {k} changed + {k} added: {s['read'] == 2 * k}", f"- output equal to a fresh run's: {eq}", f"- times: incremental {t_inc:.2f} s, fresh run {t_fresh:.2f} s\n"]
    # watch
    dropdir = tmp / "drop"
    dropdir.mkdir()
    src = sorted(p for p in corpus.rglob("*") if p.is_file())[: a.watch_files]
    w = subprocess.Popen([FI, "watch", str(dropdir), "--state", str(tmp / "w.db"), "-q"], stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    last_write = {}
    for i, p in enumerate(src):
        data = p.read_bytes()
        final = dropdir / f"{i:05d}.dcm"
        target = dropdir / f".{i:05d}.tmp" if i % 2 else final
        with open(target, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            f.write(data[len(data) // 2 :])
        if target != final:
            os.rename(target, final)
        last_write[str(final)] = time.time()
    events = []
    deadline = time.time() + 120
    while time.time() < deadline and len(events) < len(src):
        line = w.stdout.readline()
        e = json.loads(line)
        if e["event"] == "instance":
            e["_at"] = time.time()
            events.append(e)
    w.terminate()
    w.wait()
    from datetime import datetime
    delays = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() - last_write[e["record"]["file_path"]] for e in events]
    paths = [e["record"]["file_path"] for e in events]
    timed([FI, str(dropdir), "--state", str(tmp / "wb.db"), "-q", "-o", str(tmp / "wb.ndjson")])
    import sqlite3
    q = "SELECT file_path, status, record FROM files ORDER BY file_path"
    eq_state = sqlite3.connect(tmp / "w.db").execute(q).fetchall() == sqlite3.connect(tmp / "wb.db").execute(q).fetchall()
    lines += ["## Watch\n", f"- {len(src)} files written (two writes each, every other one renamed into place); instance events {len(events)}, distinct files {len(set(paths))}", f"- delay from last write to the event (event time): median {statistics.median(delays):.2f} s, max {max(delays):.2f} s (target median < 2 s)", f"- final state's files table equal to a batch run's: {eq_state}\n"]
    out = "\n".join(lines)
    (BENCH / "RESULTS-incremental.md").write_text(out)
    print(out)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
