"""The README's service examples, run as written: a FastAPI app (through
its test client) and a trio program, on the known-answer archive."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import fastindex
import orjson
import pytest
from archive import make_archive

README = Path(__file__).parent.parent / "README.md"


def example(name: str) -> str:
    text = README.read_text()
    found = re.search(rf"<!-- example: {name} .*?-->\n```python\n(.*?)```", text, re.S)
    assert found, f"the README has no {name} example"
    return found.group(1)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme") / "archive"
    make_archive(root)
    return root


def test_the_fastapi_example(archive):
    from fastapi.testclient import TestClient

    namespace: dict = {}
    exec(compile(example("fastapi"), "README fastapi", "exec"), namespace)
    want = anyio.run(fastindex.aindex, [archive])
    with TestClient(namespace["app"]) as client:
        got = client.get("/index", params={"path": str(archive)}).json()
        assert got["records"] == orjson.loads(orjson.dumps(list(want)))
        assert got["summary"]["indexed"] == want.summary.indexed > 0
        assert {p["path"] for p in got["problems"]} == {p.path for p in want.problems}
        streamed = client.get("/instances", params={"path": str(archive)})
        lines = [orjson.loads(line) for line in streamed.content.splitlines()]
    assert len(lines) == want.summary.indexed
    assert {r["file_path"] for r in lines} == {r["file_path"] for r in fastindex.iter_instances([archive])}


def test_the_trio_example(archive, capsys):
    import trio

    namespace: dict = {}
    exec(compile(example("trio"), "README trio", "exec"), namespace)
    trio.run(namespace["main"], [str(archive), str(archive)])
    want = fastindex.index([archive])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{archive} {len(want)} subseries, {want.summary.errors} errors"] * 2
