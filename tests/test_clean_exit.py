"""The interpreter may exit while runs are in flight, however it exits,
without a crash: a thread still in native code as the interpreter
finalises would abort it (see rust/python.rs `Live`). Each try is a fresh
interpreter; 50 tries over four ways to leave."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hostile
import pytest

SCRIPTS = {
    # A daemon thread mid-iteration; the main thread returns.
    "normal": """
        def consume():
            for _ in fastindex.iter_instances([ROOT]):
                time.sleep(0.0001)
        threading.Thread(target=consume, daemon=True).start()
        wait_running()
    """,
    # An asyncio service mid-stream; Ctrl-C.
    "sigint": """
        async def main():
            async for _ in fastindex.aiter_instances([ROOT]):
                await asyncio.sleep(0.0001)
        print("go", flush=True)
        asyncio.run(main())
    """,
    # sys.exit in the main thread while another thread indexes.
    "sys.exit": """
        def loop():
            while True:
                fastindex.index([ROOT])
        threading.Thread(target=loop, daemon=True).start()
        wait_running()
        sys.exit(3)
    """,
    # A non-daemon thread streaming under trio; the main thread returns
    # and the run is stopped for the exit (RunFailed in that thread).
    "trio-thread": """
        import trio
        async def main():
            try:
                async for _ in fastindex.aiter_instances([ROOT]):
                    await trio.sleep(0.0001)
            except fastindex._native.RunFailed:
                pass
        threading.Thread(target=trio.run, args=(main,)).start()
        wait_running()
    """,
}

PRELUDE = """
import asyncio, os, sys, threading, time
import fastindex
ROOT = sys.argv[1]

def wait_running():
    # Until a run's own listing thread exists: a run is in flight.
    while not any(open(f"/proc/self/task/{t}/comm").read().startswith("fastindex-walk") for t in os.listdir("/proc/self/task")):
        time.sleep(0.001)
"""

EXPECTED = {"normal": 0, "sigint": -signal.SIGINT, "sys.exit": 3, "trio-thread": 0}
CRASH = ("Fatal Python error", "panicked", "Segmentation fault", "Aborted", "core dumped")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exit") / "archive"
    ct = hostile._hand(lambda w: None)
    for d in range(20):
        folder = root / f"d{d}"
        folder.mkdir(parents=True)
        for i in range(250):
            (folder / f"{i}.dcm").write_bytes(ct)
    return root


def one_try(how: str, root: Path) -> tuple[str, int, str]:
    code = PRELUDE + textwrap.dedent(SCRIPTS[how])
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if how == "sigint":
        assert proc.stdout is not None
        proc.stdout.readline()
        # Let the stream get going, then interrupt it.
        import time

        time.sleep(0.15)
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return how, -999, "hung: " + err
    return how, proc.returncode, err


def test_fifty_exits_in_flight_and_no_crash(root):
    ways = list(SCRIPTS) * 13  # 52 tries
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda how: one_try(how, root), ways[:50]))
    bad = [(how, rc, err[-300:]) for how, rc, err in results if rc != EXPECTED[how] or any(c in err for c in CRASH)]
    assert not bad, bad
