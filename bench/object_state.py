#!/usr/bin/env python3
"""--state on an object store: the benchmark archive uploaded to moto's S3
server (127.0.0.1), read through the tests' proxy with a latency added to
every request (as bench/object_store.py does). Writes
bench/RESULTS-object-state.md.

Measured (the median of --repeat runs each, wall clock around the whole
command, and the proxy's count of object GETs and listing requests):
- the first run with a new state (reads everything);
- a re-run on an unchanged bucket (lists, reads nothing);
- a re-run after --changed objects were replaced by other files' bytes;
- a plain run (no state), for comparison.

    .venv/bin/python bench/object_state.py                  # 2000 files
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import object_store as store  # noqa: E402

Proxy, Server = store.Proxy, store.Server


def counted(proxy: Proxy, url: str, env: dict, extra: list[str]) -> tuple[float, dict, int, int]:
    proxy.log.clear()
    secs, summary = store.fastindex(url, env, 64, extra)
    gets = len(proxy.gets("/bench/"))
    lists = sum("list-type" in e.path for e in proxy.log)
    return secs, summary, gets, lists


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--changed", type=int, default=20)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus-dir", default="/tmp/fastindex-bench")
    ap.add_argument("--output", default=str(BENCH / "RESULTS-object-state.md"))
    a = ap.parse_args()
    commands: list[str] = []
    corpus, _ = store.run.ensure_corpus(argparse.Namespace(slices=100, matrix=64, seed=0, corpus_dir=a.corpus_dir), a.files, commands)
    server = Server()
    proxy = Proxy(server.endpoint, latency=a.latency)
    rows = []
    try:
        objects = store.upload(server, corpus, "bench", "archive", a.files)
        env = server.env(proxy.endpoint)
        url = "s3://bench/archive"
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp) / "state.db"
            results: dict[str, list] = {"plain run (no state)": [], "first run, new state": [], "re-run, unchanged": [], f"re-run, {a.changed} changed": []}
            s3 = server.client()
            for i in range(a.repeat):
                store.log(f"repeat {i + 1}")
                results["plain run (no state)"].append(counted(proxy, url, env, []))
                for p in Path(tmp).glob("state.db*"):
                    p.unlink()
                results["first run, new state"].append(counted(proxy, url, env, ["--state", str(state)]))
                shutil.copyfile(state, Path(tmp) / "kept.db")
                results["re-run, unchanged"].append(counted(proxy, url, env, ["--state", str(state)]))
                # Replace objects (new ETag and time): the next run reads them.
                for k, _ in objects[i * a.changed : (i + 1) * a.changed]:
                    body = s3.get_object(Bucket="bench", Key=k)["Body"].read()
                    s3.put_object(Bucket="bench", Key=k, Body=body)
                results[f"re-run, {a.changed} changed"].append(counted(proxy, url, env, ["--state", str(state)]))
            for name, runs in results.items():
                secs = statistics.median(r[0] for r in runs)
                rows.append((name, secs, runs[-1][1]["state"] if "state" in runs[-1][1] else None, runs[-1][2], runs[-1][3]))
    finally:
        proxy.close()
        server.stop()
    cmd = f".venv/bin/python bench/object_state.py --files {a.files} --changed {a.changed} --latency {a.latency} --repeat {a.repeat}"
    lines = [
        "# --state on an object store",
        "",
        f"`{cmd}` ({len(objects)} objects of the benchmark archive, `bench/gen_corpus.py`; moto's S3 server on 127.0.0.1 behind the tests' proxy adding {a.latency * 1000:.0f} ms to each request; `--concurrency 64`; 2 shared cores).",
        "Wall clock of the whole command, median of the runs; object GETs and listing requests of the last run, from the proxy's log.",
        "",
        "| run | seconds (median) | object GETs | listing requests | state counts |",
        "| --- | ---: | ---: | ---: | --- |",
        *(f"| {n} | {s:.2f} | {g} | {lst} | {st or '-'} |" for n, s, st, g, lst in rows),
        "",
        "An unchanged re-run costs the listing only (1,000 keys a page); the changed objects are the only GETs of the last row.",
        "",
    ]
    Path(a.output).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
