# `make run` indexes ARCHIVE (a sample archive it makes when none is given);
# `make test` runs every test. Both set up .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAMPLE := .sample/archive
ARCHIVE ?=
OUT ?= index.ndjson

.PHONY: run test dev lint rust-test py-test bench fuzz-diff clean

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.9.3,<2" "pytest>=8" "jsonschema>=4" "hypothesis>=6" "numpy" "pandas" "pyarrow" "polars" "duckdb" "anyio>=4" "orjson>=3.9" "dask[distributed]>=2024.8" "watchfiles>=1.0,<2" "pydicom>=3,<4" "tomli>=2; python_version < '3.11'" "ruff>=0.6" "mypy>=1.11" "trio>=0.25" "fastapi>=0.110" "httpx>=0.27" "moto[server]==5.2.5" "boto3>=1.34"
	touch $@

# Rebuild the extension whenever a Rust or Python source changed.
$(VENV)/.built: $(VENV)/.deps Cargo.toml pyproject.toml $(wildcard rust/*.rs rust/*/*.rs rust/*/*/*.rs examples/*.rs) $(wildcard python/fastindex/*.py)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release -q
	touch $@

dev: $(VENV)/.built

$(SAMPLE): | $(VENV)/.built
	$(PY) bench/gen_corpus.py --out $(SAMPLE) --files 2000

run: $(VENV)/.built $(if $(ARCHIVE),,$(SAMPLE))
	$(VENV)/bin/fastindex $(if $(ARCHIVE),$(ARCHIVE),$(SAMPLE)) -o $(OUT) --errors $(OUT:.ndjson=.errors.ndjson)
	@echo "wrote $(OUT) ($$(wc -l < $(OUT)) records)"

# Quality gates: formatting, lints, types, and the extension's stub checked
# against the built module.
lint: $(VENV)/.built
	cargo fmt --check
	cargo clippy --quiet --features python --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest fastindex._native

rust-test:
	cargo test --quiet

py-test: $(VENV)/.built
	$(PY) -m pytest -q

test: lint rust-test py-test

bench: $(VENV)/.built
	$(PY) bench/run

# The mutational differential run: N damaged copies of the test files, the
# Rust reader against pydicom; prints a summary and every silent difference
# with its reproducer (seed, case). `make fuzz-diff N=50000 SEED=1`.
N ?= 50000
SEED ?= 0
fuzz-diff: $(VENV)/.built
	$(PY) tests/mutate.py $(N) --seed $(SEED)

clean:
	rm -rf $(VENV) target .sample
