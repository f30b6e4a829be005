"""The API as an ingest service embeds it: async calls under asyncio and
trio that give what the command gives (records, summary, problems), runs
that stop when cancelled, closed or dropped and leave nothing behind, sync
calls that work inside a running loop, one file's bytes read as the file,
and the threads every run shares."""

from __future__ import annotations

import gc
import io
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import anyio
import anyio.to_thread
import corpora
import fastindex
import orjson
import pytest
from archive import make_archive
from fastindex import _native
from fastindex.outcomes import FALLBACK_REASONS

BACKENDS = ["asyncio", "trio"]
SHARED = ("fastindex-read", "fastindex-pre")


def names() -> list[str]:
    out = []
    for t in os.listdir("/proc/self/task"):
        try:
            out.append(Path(f"/proc/self/task/{t}/comm").read_text().strip())
        except OSError:
            pass
    return out


def own_threads() -> int:
    """Threads of this process but the shared parse and prefetch threads."""
    return sum(not n.startswith(SHARED) for n in names())


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(measure, expected: int, timeout: float = 10.0) -> int:
    """`measure()`, once it is back to `expected` or below (or the
    timeout): threads that were told to end take a moment to be gone from
    /proc, and idle threads of earlier tests (anyio's workers) may end too."""
    deadline = time.monotonic() + timeout
    while (n := measure()) > expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return n


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """The known-answer archive and what the command makes of it."""
    base = tmp_path_factory.mktemp("api")
    expected = make_archive(base / "archive")
    out, errors, summary = base / "index.ndjson", base / "errors.ndjson", base / "summary.json"
    subprocess.run(
        [sys.executable, "-m", "fastindex", "archive", "-o", out, "--errors", errors, "--summary", summary],
        cwd=base,
        check=True,
        capture_output=True,
    )
    instances = base / "instances.ndjson"
    subprocess.run([sys.executable, "-m", "fastindex", "archive", "--level", "instance", "-o", instances], cwd=base, check=True, capture_output=True)
    return {
        "base": base,
        "root": expected.root,
        "lines": out.read_bytes().splitlines(),
        "instances": sorted(instances.read_bytes().splitlines()),
        "errors": sorted((e["file_path"], e["reason"], e["message"]) for e in map(json.loads, errors.read_bytes().splitlines())),
        "summary": json.loads(summary.read_text()),
    }


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """Enough files that a run is still going when it is cancelled."""
    import hostile

    root = tmp_path_factory.mktemp("big") / "archive"
    ct = hostile._hand(lambda w: None)
    for d in range(40):
        folder = root / f"d{d}"
        folder.mkdir(parents=True)
        for i in range(250):
            (folder / f"{i}.dcm").write_bytes(ct)
    return root


def counts(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("seconds", "files_per_second", "exit_code")}


def check_like_the_command(result, known) -> None:
    assert [orjson.dumps(r) for r in result] == known["lines"]
    assert counts(result.summary.as_dict()) == counts(known["summary"])
    assert sorted(result.problems) == known["errors"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_aindex_gives_what_the_command_gives(known, backend):
    async def main():
        return await fastindex.aindex([known["root"]], relative_to=known["base"])

    result = anyio.run(main, backend=backend)
    assert isinstance(result, list)
    check_like_the_command(result, known)


def test_index_gives_what_the_command_gives(known):
    check_like_the_command(fastindex.index([known["root"]], relative_to=known["base"]), known)


@pytest.mark.parametrize("backend", BACKENDS)
def test_aiter_instances_gives_every_file_once_with_summary_and_problems(known, backend):
    async def main():
        async with fastindex.aiter_instances([known["root"]], relative_to=known["base"]) as it:
            got = [r async for r in it]
        return got, it

    got, it = anyio.run(main, backend=backend)
    assert sorted(orjson.dumps(r) for r in got) == known["instances"]
    assert counts(it.summary.as_dict()) | {"duplicates": 0, "unresolved_references": 0} == counts(known["summary"]) | {"duplicates": 0, "unresolved_references": 0}
    assert sorted(it.problems) == known["errors"]


def test_iter_instances_gives_every_file_once(known):
    it = fastindex.iter_instances([known["root"]], relative_to=known["base"])
    assert sorted(orjson.dumps(r) for r in it) == known["instances"]
    assert sorted(it.problems) == known["errors"]
    assert it.summary.indexed == len(known["instances"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_works_inside_a_running_loop(known, backend):
    async def main():
        # A sync call from a coroutine (a notebook cell, a sync helper):
        # runs on a loop of its own.
        return fastindex.index([known["root"]], relative_to=known["base"])

    check_like_the_command(anyio.run(main, backend=backend), known)


def test_a_missing_path_raises_at_the_call(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastindex.aiter_instances([tmp_path / "missing"])
    with pytest.raises(FileNotFoundError):
        fastindex.iter_instances([tmp_path / "missing"])
    with pytest.raises(FileNotFoundError):
        anyio.run(fastindex.aindex, [tmp_path / "missing"])


def native_runs_over() -> bool:
    """No run's own native thread is left (listing threads)."""
    return not any(n == "fastindex-walk" for n in names())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["aclose", "break", "cancel"])
def test_leaving_an_async_iteration_early_stops_the_run(big, backend, how):
    before_threads, before_fds = own_threads(), fds()

    async def main():
        seen = 0
        if how == "cancel":
            # Cancelled while waiting for the next batch.
            with anyio.CancelScope() as scope:
                async for _ in fastindex.aiter_instances([big]):
                    seen += 1
                    if seen == 300:
                        scope.cancel()
        elif how == "break":
            async with fastindex.aiter_instances([big]) as it:
                async for _ in it:
                    seen += 1
                    if seen == 300:
                        break
        else:
            it = fastindex.aiter_instances([big])
            await it.__anext__()
            await it.aclose()
            seen = 1
            with pytest.raises(StopAsyncIteration):
                await it.__anext__()
        return seen

    started = time.monotonic()
    seen = anyio.run(main, backend=backend)
    assert 0 < seen < 10_000
    assert time.monotonic() - started < 30
    gc.collect()
    assert native_runs_over()
    # anyio's worker threads end with their loop; nothing else stays.
    assert settle(own_threads, before_threads) <= before_threads
    assert settle(fds, before_fds) <= before_fds


async def cancel_once_running(call) -> tuple[bool, float]:
    """Run `call()` in a task, cancel it as soon as its native run has
    started; (whether it was cancelled, seconds from cancel to return)."""
    async with anyio.create_task_group() as tg:
        done = anyio.Event()
        result = {}

        async def target():
            with anyio.CancelScope() as scope:
                result["scope"] = scope
                await call()
            result["returned"] = time.monotonic()
            done.set()

        tg.start_soon(target)
        while native_runs_over() and not done.is_set():
            await anyio.sleep(0.0005)
        cancelled_at = time.monotonic()
        result["scope"].cancel()
        await done.wait()
    return result["scope"].cancelled_caught, result["returned"] - cancelled_at


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancelling_aindex_stops_its_run(big, backend):
    async def main():
        return await cancel_once_running(lambda: fastindex.aindex([big]))

    cancelled, took = anyio.run(main, backend=backend)
    assert cancelled
    assert took < 5
    assert native_runs_over()


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancelling_an_offloaded_index_stops_its_run(big, backend):
    # `await to_thread.run_sync(index, ...)`: the thread sees its task
    # cancelled, and the run stops with it.
    async def main():
        return await cancel_once_running(lambda: anyio.to_thread.run_sync(lambda: fastindex.index([big])))

    cancelled, took = anyio.run(main, backend=backend)
    assert cancelled
    assert took < 5
    assert native_runs_over()


@pytest.mark.parametrize("how", ["close", "with", "drop"])
def test_a_sync_iterator_left_early_leaves_nothing(big, how):
    before_threads, before_fds = own_threads(), fds()
    it = fastindex.iter_instances([big])
    next(it)
    if how == "close":
        it.close()
        assert next(it, None) is None
    elif how == "with":
        with it:
            next(it)
    else:
        del it
        gc.collect()
    assert native_runs_over()
    assert settle(own_threads, before_threads) <= before_threads
    assert settle(fds, before_fds) <= before_fds


def test_many_abandoned_iterators_cost_what_one_does(big):
    def abandon(n: int) -> None:
        for _ in range(n):
            it = fastindex.iter_instances([big])
            next(it)
            del it
        gc.collect()

    abandon(1)
    threads_after_one = settle(own_threads, own_threads())
    abandon(20)
    assert settle(own_threads, threads_after_one) <= threads_after_one
    threads, prefetchers = _native.configure()
    assert sum(n == "fastindex-read" for n in names()) <= threads


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_runs_share_the_process_threads(known, backend):
    async def main():
        results = []

        async def one():
            results.append(await fastindex.aindex([known["root"]], relative_to=known["base"]))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(one)
        return results

    previous = fastindex.configure()
    try:
        fastindex.configure(threads=2)
        results = anyio.run(main, backend=backend)
        assert settle(lambda: sum(n == "fastindex-read" for n in names()), 2) <= 2
    finally:
        fastindex.configure(threads=previous["threads"])
    for r in results:
        check_like_the_command(r, known)


def test_configure_checks_and_reports():
    now = fastindex.configure()
    assert now["threads"] >= 1 and now["prefetchers"] >= 1
    with pytest.raises(ValueError):
        fastindex.configure(threads=0)
    assert fastindex.configure(prefetchers=now["prefetchers"]) == now


# ---------------------------------------------------------------------------
# bytes in


def test_read_bytes_gives_the_files_record_for_every_test_file():
    files = corpora.all_files()
    assert len(files) > 50
    compared = 0
    for f in files:
        display = f.name
        try:
            want = fastindex.read_header(f, engine="rust", relative_to=str(f.parent))
        except fastindex.NotIndexed as e:
            with pytest.raises(fastindex.NotIndexed) as got:
                fastindex.read_bytes(f.read_bytes(), path=display, engine="rust")
            assert got.value.reason == e.reason, f
            continue
        data = f.read_bytes()
        assert fastindex.read_bytes(data, path=display, engine="rust") == want, f
        assert fastindex.read_bytes(io.BytesIO(data), path=display, engine="rust") == want, f
        compared += 1
    assert compared > 50


def test_read_bytes_goes_to_pydicom_for_what_the_fast_path_declines(tmp_path):
    # Files the fast path declines: the bytes take the same way as the
    # file (pydicom) and give the same record, or the same reason.
    import hostile

    cases = {
        "iso2022.dcm": hostile.declined(lambda w: None),
        # a private sequence pydicom cannot read either
        "bad.dcm": hostile.declined(lambda w: w.head(0x0009_1010, b"SQ", 0xFFFFFFFF).raw(b"\x00" * 9)),
    }
    for name, data in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        status, _, _ = _native.read_file(_native.Schema([]), str(f), name)
        assert status in FALLBACK_REASONS, name
        try:
            want = fastindex.read_header(f, relative_to=str(tmp_path))
        except fastindex.NotIndexed as e:
            with pytest.raises(fastindex.NotIndexed) as got:
                fastindex.read_bytes(data, path=name)
            assert got.value.reason == e.reason
        else:
            assert want["study_description"]  # pydicom read the ISO 2022 text
            assert fastindex.read_bytes(data, path=name) == want
            assert fastindex.read_bytes(io.BytesIO(data), path=name, engine="pydicom") == want
            with pytest.raises(fastindex.NotIndexed):
                fastindex.read_bytes(data, path=name, engine="rust")


def test_read_bytes_of_junk_is_not_indexed():
    with pytest.raises(fastindex.NotIndexed) as e:
        fastindex.read_bytes(b"hello, not DICOM" * 10, path="x.dcm")
    assert e.value.reason == "not_dicom"
    with pytest.raises(TypeError):
        fastindex.read_bytes("text", path="x")  # type: ignore[arg-type]


def test_outcomes_travel_through_pickle(known):
    e = fastindex.NotIndexed("not_dicom", "why")
    back = pickle.loads(pickle.dumps(e))
    assert (back.reason, back.message) == ("not_dicom", "why")
    result = fastindex.index([known["root"]], relative_to=known["base"])
    assert pickle.loads(pickle.dumps(result.problems)) == result.problems
    assert pickle.loads(pickle.dumps(result.summary)) == result.summary


# ---------------------------------------------------------------------------
# types


def test_record_types_match_the_field_table():
    from fastindex.write import columns

    python_type = {"str": "str", "int": "int", "float": "float | None", "floats": "list[float] | None", "strings": "list[str]"}
    for typed, level in ((fastindex.SubseriesRecord, "subseries"), (fastindex.InstanceRecord, "instance")):
        # Written as strings (`from __future__ import annotations`).
        hints = {k: getattr(v, "__forward_arg__", v) for k, v in typed.__annotations__.items()}
        want = {name: python_type[t] for name, t in columns(level, ())}
        assert hints == want, level


def test_a_user_script_type_checks_strictly():
    script = Path(__file__).parent / "typing" / "user.py"
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
