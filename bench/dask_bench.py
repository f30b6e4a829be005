#!/usr/bin/env python3
"""`fastindex --dask` on a 2-worker LocalCluster against the single-process
command, on the benchmark archive: wall, CPU, peak RSS (client, each
worker), tasks, and the per-shard figures the 100 M-file estimate in
bench/README.md is made from. Writes bench/RESULTS-dask.md.

    .venv/bin/python bench/dask_bench.py                    # 36k-file corpus, 3 repeats
    .venv/bin/python bench/dask_bench.py --files 3000 --repeat 1

The cluster: `distributed.LocalCluster(n_workers=2, threads_per_worker=1,
processes=True)`, scheduler on TCP on 127.0.0.1, in this process; the
command runs as its own process (`fastindex --dask ADDRESS CORPUS -o
/dev/null`), as a user would run it. Both on the same 2-core machine: the
figures say what the sharding costs, not what 2 machines gain.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import pickle
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def _bench_run():
    """bench/run as a module (its corpus cache)."""
    loader = importlib.machinery.SourceFileLoader("bench_run", str(BENCH / "run"))
    spec = importlib.util.spec_from_loader("bench_run", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def measured(cmd: list[str], cwd: Path) -> dict:
    """Wall, CPU (user+sys) and peak RSS of one child process (GNU time:
    see bench/run's peak_rss for why not wait4)."""
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    if gnu_time is None:
        sys.exit("bench: needs GNU time (apt-get install time)")
    t0 = time.perf_counter()
    p = subprocess.run([gnu_time, "-f", "maxrss_kib=%M user=%U sys=%S", *cmd], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench: {shlex.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    m = re.search(r"maxrss_kib=(\d+) user=([\d.]+) sys=([\d.]+)", p.stderr)
    return {"wall": wall, "cpu": float(m[2]) + float(m[3]), "rss": int(m[1]) * 1024}


# Run on the workers (through client.run): their CPU and peak RSS.


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _reset_peak() -> None:
    # "5": reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read())[1]) * 1024


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=36000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus-dir", default="/tmp/fastindex-bench")
    ap.add_argument("--shard-files", type=int, default=None, help="passed as --shard-files (default: the command's)")
    ap.add_argument("--output", default=str(BENCH / "RESULTS-dask.md"))
    a = ap.parse_args()

    import fastindex.dask as fdask
    from distributed import Client, LocalCluster, get_task_stream
    from fastindex import _native
    from fastindex.pipeline import Options

    run_module = _bench_run()
    corpus_args = argparse.Namespace(slices=100, matrix=64, seed=0, corpus_dir=a.corpus_dir)
    commands: list[str] = []
    corpus, files = run_module.ensure_corpus(corpus_args, a.files, commands)
    fastindex = str(Path(sys.executable).parent / "fastindex")
    shard_files = a.shard_files or fdask.SHARD_FILES
    local_cmd = [fastindex, corpus.name, "-o", "/dev/null", "-q"]

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        address = cluster.scheduler_address
        dask_cmd = [fastindex, "--dask", address, corpus.name, "-o", "/dev/null", "-q", "--shard-files", str(shard_files)]
        # Warm: the page cache, the workers' imports.
        measured(local_cmd, corpus.parent)
        measured(dask_cmd, corpus.parent)
        local, dask = [], []
        for _ in range(a.repeat):
            local.append(measured(local_cmd, corpus.parent))
            client.run(_reset_peak)
            cpu0 = client.run(_cpu)
            sched0 = _cpu()
            one = measured(dask_cmd, corpus.parent)
            cpu1 = client.run(_cpu)
            one["scheduler_cpu"] = _cpu() - sched0  # this process: scheduler and nannies
            one["workers_cpu"] = {w: cpu1[w] - cpu0[w] for w in cpu1}
            one["workers_rss"] = client.run(_peak)
            dask.append(one)

        # The tasks of one run and the time each kind took, on the cluster.
        os.chdir(corpus.parent)
        with get_task_stream(client=client) as stream:
            job = fdask.Run(client, [corpus.name], Options(), records=False, shard_files=shard_files)
            for _ in job.events():
                pass
        spans: dict[str, list[float]] = {}
        for t in stream.data:
            kind = t["key"].split("-")[1] if isinstance(t["key"], str) else "?"
            for s in t["startstops"]:
                if s["action"] == "compute":
                    spans.setdefault(kind, []).append(s["stop"] - s["start"])
        final = job.aggregator.to_bytes()

        # The client's listing alone (the walk, in pages), in this process.
        t0 = time.perf_counter()
        listed = sum(len(p) for p in fdask.pages([corpus.name], Options(), shard_files))
        listing_seconds = time.perf_counter() - t0

        # One shard's partial, and one merge, in this process.
        page = next(fdask.pages([corpus.name], Options(), shard_files))
        shard = [(os.path.abspath(p), d) for p, d, r, _ in page if r is None]
        t0 = time.perf_counter()
        partial = fdask._index_shard(0, shard, [os.path.abspath(corpus.name)], Options(jobs=1), False)
        shard_seconds = time.perf_counter() - t0
        outcome_bytes = len(pickle.dumps(partial[1]))
        instance_bytes = len(pickle.dumps(fdask._index_shard(0, shard, [os.path.abspath(corpus.name)], Options(jobs=1), True)[1]))
        schema = _native.Schema([])
        t0 = time.perf_counter()
        merged = _native.Aggregator(schema)
        for _ in range(fdask.FAN_IN):
            merged.merge(_native.Aggregator.from_bytes(schema, partial[0]))
        merge_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        _native.Aggregator.from_bytes(schema, final)
        final_load_seconds = time.perf_counter() - t0
        shard_args_bytes = len(pickle.dumps((0, shard, [os.path.abspath(corpus.name)], Options(), False)))

    med = lambda xs: statistics.median(xs)  # noqa: E731
    rows = {
        "local": {"wall": med([r["wall"] for r in local]), "cpu": med([r["cpu"] for r in local]), "rss": med([r["rss"] for r in local])},
        "dask": {"wall": med([r["wall"] for r in dask]), "cpu": med([r["cpu"] for r in dask]), "rss": med([r["rss"] for r in dask])},
    }
    workers = sorted(dask[0]["workers_rss"])
    worker_rss = {w: med([r["workers_rss"][w] for r in dask]) for w in workers}
    worker_cpu = {w: med([r["workers_cpu"][w] for r in dask]) for w in workers}
    sched_cpu = med([r["scheduler_cpu"] for r in dask])
    total_dask_cpu = rows["dask"]["cpu"] + sum(worker_cpu.values()) + sched_cpu
    figures = {
        "files": files,
        "shard_files": shard_files,
        "tasks": dict(job.tasks),
        "task_seconds_median": {k: med(v) for k, v in spans.items()},
        "task_seconds_total": {k: sum(v) for k, v in spans.items()},
        "listing_entries": listed,
        "listing_seconds": listing_seconds,
        "shard_seconds_one_thread": shard_seconds,
        "shard_args_bytes": shard_args_bytes,
        "outcome_bytes_subseries": outcome_bytes,
        "outcome_bytes_instance": instance_bytes,
        "partial_aggregate_bytes": len(partial[0]),
        "merge_fan_in_seconds": merge_seconds,
        "final_aggregate_bytes": len(final),
        "final_aggregate_load_seconds": final_load_seconds,
    }
    lines = [
        "# fastindex --dask: a 2-worker LocalCluster against one process",
        "",
        f"Generated by `bench/dask_bench.py` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"corpus `{corpus.name}` ({files} files, page cache warm), median of {a.repeat} runs after one warm-up each.",
        "",
        "```",
        shlex.join([".venv/bin/python", "bench/dask_bench.py", "--files", str(a.files), "--repeat", str(a.repeat), "--corpus-dir", a.corpus_dir]),
        *commands,
        shlex.join(local_cmd).replace(fastindex, "fastindex"),
        shlex.join(dask_cmd).replace(fastindex, "fastindex").replace(address, "tcp://127.0.0.1:PORT"),
        "```",
        "",
        "| run | wall | CPU (user+sys) | peak RSS |",
        "|---|---|---|---|",
        f"| single process `fastindex` | {rows['local']['wall']:.2f} s | {rows['local']['cpu']:.2f} s | {mib(rows['local']['rss'])} |",
        f"| `fastindex --dask` (the client) | {rows['dask']['wall']:.2f} s | {rows['dask']['cpu']:.2f} s | {mib(rows['dask']['rss'])} |",
        *[f"| worker {i} (1 thread) | | {worker_cpu[w]:.2f} s | {mib(worker_rss[w])} |" for i, w in enumerate(workers)],
        f"| scheduler and nannies (the bench process) | | {sched_cpu:.2f} s | |",
        f"| **dask, all processes** | {rows['dask']['wall']:.2f} s | {total_dask_cpu:.2f} s | |",
        "",
        f"Tasks of one run: {figures['tasks']} (`shard`: index {shard_files} listing entries; `take`: the two small "
        f"tasks that take a partial apart, its aggregate and its outcome; `merge`: {fdask.FAN_IN} aggregates into one).",
        "",
        "Per-shard figures (for the estimate in bench/README.md):",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {json.dumps(v) if isinstance(v, dict) else (f'{v:.4f}' if isinstance(v, float) else v)} |" for k, v in figures.items()],
        "",
    ]
    text = "\n".join(lines)
    Path(a.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
