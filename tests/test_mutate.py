"""The mutational differential run (tests/mutate.py) on a few thousand
cases: no case may be a silent difference (the fast path giving an answer
pydicom does not give). `make fuzz-diff N=50000` runs it at length."""

from __future__ import annotations

import os

import mutate
import pytest

#: cases per test run; FASTINDEX_MUTATIONS=20000 for a longer one
CASES = int(os.environ.get("FASTINDEX_MUTATIONS", "4000"))
SEED = int(os.environ.get("FASTINDEX_MUTATION_SEED", "0"))


@pytest.fixture(scope="module")
def seeds():
    return mutate.seed_files()


def test_seeds_are_there(seeds):
    names = [n for n, _ in seeds]
    assert len(seeds) > 200
    assert any(n.startswith("hostile/good/") for n in names)
    assert any(n.startswith("charset/") for n in names)
    assert any(n.startswith("data/") for n in names)


def test_cases_are_reproducible(seeds):
    for i in (0, 1, 977):
        assert mutate.case(seeds, SEED, i) == mutate.case(seeds, SEED, i)
    assert mutate.case(seeds, SEED, 1)[2] != mutate.case(seeds, SEED, 2)[2]


def test_no_silent_differences():
    counts, silent = mutate.run(CASES, seed=SEED, jobs=1)
    assert not silent, "\n" + "\n".join(mutate.describe(r) for r in silent)
    assert sum(counts.values()) == CASES
    # Not a vacuous run: most cases are read, many of them alike.
    assert counts["agree"] > CASES // 4, counts
    assert counts["rust-declined"] > 0 and counts["both-fail"] > 0, counts
