"""The Aggregator through its Python class, on real files: the known-answer
archive (tests/archive.py), pydicom's test files and tests/data.

Per-file records come from `iter_instances` (the fast path and the
pydicom fallback), are folded in with `add_dict`, and must give what one
run gives: after a remove and an add of any file, after random splits
merged in any order and tree shape, through bytes and pickles, and in
other processes.
"""

from __future__ import annotations

import multiprocessing
import pickle
import random
from concurrent.futures import ProcessPoolExecutor

import pytest
from archive import make_archive
from corpora import PYDICOM_FILES, VENDORED, copy_corpora

TAGS = ["ImageType", "InstanceNumber"]


@pytest.fixture(scope="module")
def native():
    pytest.importorskip("fastindex._native")
    from fastindex import _native

    return _native


@pytest.fixture(scope="module")
def schema(native):
    from fastindex.tags import resolve

    return native.Schema(resolve(TAGS))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    """A real archive: the known-answer archive plus pydicom's test files
    and tests/data, copied side by side."""
    base = tmp_path_factory.mktemp("agg")
    make_archive(base / "archive")
    copy_corpora(base / "archive", pydicom=PYDICOM_FILES, vendored=VENDORED)
    return str(base / "archive")


@pytest.fixture(scope="module")
def records(root, native) -> list[dict]:
    """Its per-file records."""
    import fastindex

    recs = list(fastindex.iter_instances([root], tags=TAGS, jobs=2))
    assert len(recs) > 150
    return recs


def fold(native, schema, recs):
    a = native.Aggregator(schema)
    for r in recs:
        a.add_dict(r, r["file_path"])
    return a


def state(a) -> tuple:
    """All the aggregate says: records, duplicates, unresolved, bytes."""
    return a.dicts(), a.duplicates, a.unresolved, a.to_bytes()


def test_one_aggregate_is_the_pipelines_answer(root, records, schema, native):
    """add_dict of every per-file record gives the index the CLI writes
    (run over the same files, with the same tags)."""
    import fastindex

    a = fold(native, schema, records)
    want = fastindex.index([root], tags=TAGS, jobs=2)
    assert a.dicts() == want
    assert a.duplicates >= 2  # the known archive's copy, pydicom's and tests/data's
    assert len(a) == len(want)


def test_merge_in_any_split_order_and_shape(records, schema, native):
    one = state(fold(native, schema, records))
    rng = random.Random(20240601)
    for _ in range(12):
        k = rng.randint(1, 7)
        parts = [native.Aggregator(schema) for _ in range(k)]
        shuffled = records[:]
        rng.shuffle(shuffled)
        for r in shuffled:
            rng.choice(parts).add_dict(r, r["file_path"])
        # Some parts travel as bytes or pickles, as from other machines.
        for i, p in enumerate(parts):
            how = rng.randrange(3)
            if how == 1:
                parts[i] = native.Aggregator.from_bytes(schema, p.to_bytes())
            elif how == 2:
                parts[i] = pickle.loads(pickle.dumps(p))
        while len(parts) > 1:
            rng.shuffle(parts)
            b = parts.pop()
            parts[-1].merge(b)
        assert state(parts[0]) == one


def test_remove_then_add_equals_fresh(records, schema, native):
    """For every file, the representative too: remove it, and the counts
    are those of a run without it (the representative, once offered);
    add it back, and everything is as fresh."""
    fresh = fold(native, schema, records)
    fresh_state = state(fresh)
    rng = random.Random(5)

    def key(r: dict) -> tuple:
        return r["patient_ID"], r["study"], r["series"], r["subseries"]

    opened = 0
    picked = rng.sample(range(len(records)), 60) + [
        i for i, r in enumerate(records) if "/archive/p1/ct/" in r["file_path"]
    ]
    for i in picked:
        r = records[i]
        rest = records[:i] + records[i + 1:]
        never = fold(native, schema, rest)
        a = pickle.loads(pickle.dumps(fresh))
        a.remove_dict(r, r["file_path"])
        assert a.duplicates == never.duplicates and len(a) == len(never)
        if a.needs_representative():
            opened += 1
            assert a.needs_representative() == [key(r)]
            with pytest.raises(RuntimeError, match="representative"):
                a.dicts()
            with pytest.raises(RuntimeError):
                _ = a.unresolved
            offered = pickle.loads(pickle.dumps(a))
            smallest = min((m for m in rest if key(m) == key(r)), key=lambda m: m["file_path"].encode())
            offered.offer_dict(smallest, smallest["file_path"])
            assert state(offered) == state(never)
        else:
            assert state(a) == state(never)
        a.add_dict(r, r["file_path"])
        assert state(a) == fresh_state
    assert opened >= 3


def test_remove_refuses_what_is_not_there(records, schema, native):
    a = fold(native, schema, records[:20])
    stranger = dict(records[0], instance_uid="9.9.9.9")
    with pytest.raises(KeyError):
        a.remove_dict(stranger, stranger["file_path"])
    with pytest.raises(KeyError):
        a.offer_dict(stranger, stranger["file_path"])
    elsewhere = dict(records[0], series="9.9.9.9")
    with pytest.raises(KeyError):
        a.remove_dict(elsewhere, elsewhere["file_path"])
    assert state(a) == state(fold(native, schema, records[:20]))


def _partial(args):
    """In a worker process: an Aggregator of some records, sent back
    pickled (the way a Dask cluster moves it)."""
    from fastindex import _native
    from fastindex.tags import resolve

    a = _native.Aggregator(_native.Schema(resolve(TAGS)))
    for r in args:
        a.add_dict(r, r["file_path"])
    return a


def test_partials_from_other_processes_merge(records, schema, native):
    chunks = [records[i::3] for i in range(3)]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_partial, chunks))
    total = native.Aggregator(schema)
    for p in parts:
        total.merge(p)
    assert state(total) == state(fold(native, schema, records))


def test_bytes_are_checked(records, schema, native):
    a = fold(native, schema, records[:30])
    data = a.to_bytes()
    assert native.Aggregator.from_bytes(schema, data).to_bytes() == data
    for bad in (b"", b"not an aggregate", data[:-1], data[:40], data[:-9] + bytes([data[-9] ^ 1]) + data[-8:]):
        with pytest.raises(ValueError):
            native.Aggregator.from_bytes(schema, bad)
    rng = random.Random(3)
    for _ in range(200):
        d = bytearray(data)
        d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
        with pytest.raises(ValueError):
            native.Aggregator.from_bytes(schema, bytes(d))
    other = native.Schema([])
    with pytest.raises(ValueError, match="extra tags"):
        native.Aggregator.from_bytes(other, data)
    with pytest.raises(ValueError, match="extra tags"):
        native.Aggregator(other).merge(a)
    # Merging into itself counts every file twice.
    twice = native.Aggregator.from_bytes(schema, data)
    twice.merge(twice)
    assert twice.duplicates == a.duplicates + sum(
        1 for r in records[:30] if r["instance_uid"]
    )
    assert [d["instances"] for d in twice.dicts()] == [d["instances"] for d in a.dicts()]


def test_schema_pickles(schema, native):
    back = pickle.loads(pickle.dumps(schema))
    assert native.Aggregator(back).to_bytes() == native.Aggregator(schema).to_bytes()
