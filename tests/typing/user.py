"""A user's script that calls every public function of fastindex: it must
pass `mypy --strict` (tests/test_async_api.py), so the package's types
(py.typed, the _native stub, the records' TypedDicts) hold up for users."""

from __future__ import annotations

import io

import anyio
import fastindex
from fastindex import Index, InstanceRecord, NotIndexed, Problem, SubseriesRecord, Summary


def use_sync(paths: list[str]) -> int:
    records: Index = fastindex.index(paths, jobs=2, relative_to=".", tags=["PatientName"], exclude=["*.tmp"])
    first: SubseriesRecord = records[0]
    count: int = first["instances"]
    summary: Summary = records.summary
    problems: list[Problem] = records.problems
    reasons = {p.reason for p in problems}
    with fastindex.iter_instances(paths) as it:
        for record in it:
            uid: str = record["instance_uid"]
            print(uid)
    try:
        one: InstanceRecord = fastindex.read_header(paths[0], engine="auto")
        same: InstanceRecord = fastindex.read_bytes(io.BytesIO(b"..."), path="x.dcm")
        print(one["file_path"], same["transfer_syntax"])
    except NotIndexed as e:
        print(e.reason, e.message)
    settings: dict[str, int] = fastindex.configure(threads=4, prefetchers=8)
    print(settings, reasons, fastindex.FIELDS, fastindex.__version__)
    return count + summary.indexed + summary.errors


async def use_async(paths: list[str]) -> float | None:
    records: Index = await fastindex.aindex(paths)
    async with fastindex.aiter_instances(paths, follow_symlinks=True) as it:
        async for record in it:
            echo: float | None = record["MR_echo_time"]
            print(echo)
    print(it.summary.as_dict(), it.problems)
    return records[0]["MR_repetition_time"] if records else None


if __name__ == "__main__":
    print(use_sync(["."]))
    print(anyio.run(use_async, ["."]))
