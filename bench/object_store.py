#!/usr/bin/env python3
"""fastindex on an object store: the benchmark archive uploaded to a local
S3-compatible server (moto's, on 127.0.0.1), read through the tests'
proxy (tests/support/s3.py) with a latency added to every request, as a
remote store would have. Writes bench/RESULTS-object-store.md.

Measured:
- files/s at each --concurrency (ranged GETs in flight): the median of
  --repeat runs, wall clock around the whole command; concurrency 1 on
  the first --c1-files objects only (at 20 ms a request it would take
  minutes on the whole archive);
- requests per object (object GETs, listing pages apart) and bytes
  fetched per object, against the objects' mean size (what downloading
  them whole fetches), from the proxy's log; and the time to download
  them whole at the highest concurrency (boto3, as many threads);
- the same bytes on --big-files objects with 512x512 images (a CT
  slice's pixel data, 512 KiB), where the headers are a small part;
- peak RSS (GNU time) of the run at the highest concurrency.

    .venv/bin/python bench/object_store.py                 # 5000 files
    .venv/bin/python bench/object_store.py --files 2000 --repeat 1
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
from support.s3 import Proxy, Server  # noqa: E402


def _bench_run():
    """bench/run as a module: its corpus cache and peak-RSS measure."""
    loader = importlib.machinery.SourceFileLoader("bench_run", str(BENCH / "run"))
    spec = importlib.util.spec_from_loader("bench_run", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


run = _bench_run()


def log(msg: str) -> None:
    print(f"[object-store {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def upload(server: Server, corpus: Path, bucket: str, prefix: str, limit: int | None = None) -> list[tuple[str, int]]:
    """The corpus's files as objects (in parallel); (key, size) of each, sorted."""
    s3 = server.client()
    s3.create_bucket(Bucket=bucket)
    files = sorted(p for p in corpus.rglob("*") if p.is_file())[:limit]
    keys = [(f"{prefix}/{p.relative_to(corpus).as_posix()}", p) for p in files]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kp: s3.upload_file(str(kp[1]), bucket, kp[0]), keys))
    return sorted((k, p.stat().st_size) for k, p in keys)


def fastindex(url: str, env: dict, concurrency: int, extra: list[str] = ()) -> tuple[float, dict]:
    """Wall time and --summary of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "fastindex", url, "-o", "/dev/null", "--summary", str(summary), "--concurrency", str(concurrency), *extra]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
        return secs, json.loads(summary.read_text())


def traffic(proxy: Proxy, prefix: str, objects: int) -> dict:
    gets = proxy.gets(prefix)
    listing = [e for e in proxy.log if "list-type" in e.path]
    return {
        "requests_per_object": len(gets) / objects,
        "bytes_per_object": sum(g.sent for g in gets) / objects,
        "listing_pages": len(listing),
    }


def whole_downloads(server: Server, endpoint: str, bucket: str, keys: list[str], threads: int) -> float:
    """Seconds to GET every object whole, `threads` at a time (boto3)."""
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1", config=Config(max_pool_connections=threads))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: s3.get_object(Bucket=bucket, Key=k)["Body"].read(), keys))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=5000, help="benchmark archive size (bench/gen_corpus.py)")
    ap.add_argument("--c1-files", type=int, default=300, help="objects read at concurrency 1")
    ap.add_argument("--big-files", type=int, default=300, help="objects with 512x512 images for the bytes measure")
    ap.add_argument("--latency", type=float, default=0.02, help="seconds the proxy adds to each request")
    ap.add_argument("--concurrency", default="1,16,64,256")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus-dir", default="/tmp/fastindex-bench")
    ap.add_argument("--output", default=str(BENCH / "RESULTS-object-store.md"))
    a = ap.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    commands: list[str] = []
    corpus_args = argparse.Namespace(slices=100, matrix=64, seed=0, corpus_dir=a.corpus_dir)
    corpus, _ = run.ensure_corpus(corpus_args, a.files, commands)
    big_args = argparse.Namespace(slices=100, matrix=512, seed=0, corpus_dir=a.corpus_dir)
    big, _ = run.ensure_corpus(big_args, max(a.big_files, 1000), commands)

    server = Server()
    try:
        log("uploading")
        t0 = time.perf_counter()
        objects = upload(server, corpus, "bench", "archive")
        subset = upload(server, corpus, "bench", "c1", a.c1_files)
        big_objects = upload(server, big, "bench", "big", a.big_files)
        log(f"uploaded {len(objects) + len(subset) + len(big_objects)} objects in {time.perf_counter() - t0:.0f} s")
        proxy = Proxy(server.endpoint, latency=a.latency)
        env = server.env(proxy.endpoint)
        rows = []
        for c in levels:
            url, n, prefix = ("s3://bench/c1", len(subset), "/bench/c1/") if c == 1 else ("s3://bench/archive", len(objects), "/bench/archive/")
            times = []
            for _ in range(1 if c == 1 else a.repeat):
                proxy.log.clear()
                secs, summary = fastindex(url, env, c)
                assert summary["seen"] == n, (summary["seen"], n)
                times.append(secs)
                log(f"concurrency {c}: {n / secs:.0f} files/s")
            rows.append({"concurrency": c, "objects": n, "seconds": statistics.median(times), "runs": len(times), **traffic(proxy, prefix, n), "indexed": summary["indexed"]})
        top = max(levels)
        proxy.log.clear()
        secs_big, summary_big = fastindex("s3://bench/big", env, top)
        big_traffic = traffic(proxy, "/bench/big/", len(big_objects))
        whole = whole_downloads(server, proxy.endpoint, "bench", [k for k, _ in objects], top)
        rss_cmd = [sys.executable, "-m", "fastindex", "s3://bench/archive", "-o", "/dev/null", "--concurrency", str(top)]
        os.environ.update(env)
        rss = run.peak_rss(rss_cmd, BENCH.parent)
        proxy.close()
    finally:
        server.stop()

    mean_size = statistics.mean(s for _, s in objects)
    big_mean = statistics.mean(s for _, s in big_objects)
    lines = [
        "# fastindex on an object store",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this machine (2 cores, shared), by",
        "",
        "```",
        f"{sys.executable.replace(str(BENCH.parent) + '/', '')} bench/object_store.py --files {a.files} --c1-files {a.c1_files} --big-files {a.big_files} --latency {a.latency} --concurrency {a.concurrency} --repeat {a.repeat}",
        *commands,
        "```",
        "",
        f"The benchmark archive (`bench/gen_corpus.py`, {len(objects)} files, 64x64 images, private blocks of 5-60 KB: mean object {mean_size / 1024:.1f} KiB)",
        "uploaded to moto's S3 server on 127.0.0.1, read through the tests' proxy (`tests/support/s3.py`),",
        f"which adds {a.latency * 1000:.0f} ms to every request. Both are Python: past some concurrency they, not fastindex, are the limit.",
        "",
        "| concurrency | objects | files/s | seconds (median) | runs | requests per object | KiB fetched per object | listing pages |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['concurrency']} | {r['objects']} | {r['objects'] / r['seconds']:.0f} | {r['seconds']:.2f} | {r['runs']} | {r['requests_per_object']:.3f} | {r['bytes_per_object'] / 1024:.1f} | {r['listing_pages']} |")
    lines += [
        "",
        f"Downloading the same {len(objects)} objects whole, {top} at a time (boto3 through the same proxy): {whole:.1f} s, {len(objects) / whole:.0f} files/s, {mean_size / 1024:.1f} KiB per object.",
        "",
        f"With 512x512 images ({len(big_objects)} objects, mean {big_mean / 1024:.0f} KiB, concurrency {top}): {big_traffic['requests_per_object']:.3f} requests and "
        f"{big_traffic['bytes_per_object'] / 1024:.1f} KiB per object, {100 * big_traffic['bytes_per_object'] / big_mean:.1f}% of the bytes a whole download fetches; "
        f"{len(big_objects) / secs_big:.0f} files/s, {summary_big['indexed']} indexed.",
        "",
        f"Peak RSS of the run at concurrency {top} (GNU time): {rss / 2**20:.0f} MiB.",
        "",
    ]
    Path(a.output).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
