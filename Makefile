# The one entry point for every developer task: the README, CI and you use the same targets.
# `make help` lists them.

PYTHON ?= python3
export CARGO_TARGET_DIR ?= $(HOME)/.cache/pilothouse/target
# Rust integration tests load ONNX Runtime from the onnxruntime wheel that `install` brings.
ORT_LIB = $$($(PYTHON) -c "from pilothouse._runtime import find_library; print(find_library()[0])")

.PHONY: help install postgres chromium demo test lint test-rust test-python bench fixtures fuzz schemathesis

help:
	@echo "make demo     install everything, then run the demo (train, convert, load, predict)"
	@echo "make test     install everything, then lint and run every test (cargo test, pytest)"
	@echo "make install  Python dependencies and the Rust extension (editable)"
	@echo "make postgres Debian's PostgreSQL, for the team-backend tests (apt-get, when missing)"
	@echo "make chromium Debian's Chromium, for the browser test (apt-get, when missing)"
	@echo "make lint     cargo fmt/clippy, ruff, mypy, stubtest"
	@echo "make bench    the benchmarks in benchmarks/, against the tools users would pick instead"
	@echo "make fixtures regenerate the ONNX files the Rust tests use"
	@echo "make fuzz     a long run of the decoder fuzz tests (FUZZ_CASES cases per property)"
	@echo "make schemathesis  the OpenAPI fuzzer against a real server (fuzz/README.md)"

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check "maturin>=1.9,<2"
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-build-isolation -e ".[dev]"

demo: install
	$(PYTHON) -m pilothouse.demo

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(PYTHON) -m ruff check python tests benchmarks
	$(PYTHON) -m ruff format --check python tests benchmarks
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy.stubtest pilothouse._core

test-rust:
	ORT_DYLIB_PATH=$(ORT_LIB) cargo test --workspace

test-python:
	$(PYTHON) -m pytest

# The registry tests run against a real PostgreSQL server (started by the tests themselves,
# on 127.0.0.1 in a temporary folder); this installs Debian's package when it is missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
		echo "installing PostgreSQL from Debian's packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# The report test renders a saved HTML report in a real browser: Debian's chromium.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Chromium from Debian's packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install postgres chromium lint test-rust test-python

bench: install
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(PYTHON) benchmarks/predict.py
	$(PYTHON) benchmarks/registry.py
	# Evidently needs pandas < 3: it gets its own virtualenv
	test -x $(HOME)/.cache/pilothouse/evidently-venv/bin/python || \
	  ( $(PYTHON) -m venv $(HOME)/.cache/pilothouse/evidently-venv && \
	    $(HOME)/.cache/pilothouse/evidently-venv/bin/pip install --quiet evidently "pandas<3" pyarrow scipy )
	$(PYTHON) benchmarks/drift.py
	# NannyML imports statsmodels without declaring it, and pins its own stack: its own virtualenv
	test -x $(HOME)/.cache/pilothouse/nannyml-venv/bin/python || \
	  ( $(PYTHON) -m venv $(HOME)/.cache/pilothouse/nannyml-venv && \
	    $(HOME)/.cache/pilothouse/nannyml-venv/bin/pip install --quiet nannyml statsmodels pyarrow )
	$(PYTHON) benchmarks/performance.py
	$(PYTHON) benchmarks/validation.py
	$(PYTHON) benchmarks/alerts.py
	# the serving benchmark: wrk from Debian's packages, BentoML in its own virtualenv
	command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	test -x $(HOME)/.cache/pilothouse/bentoml-venv/bin/python || \
	  ( $(PYTHON) -m venv $(HOME)/.cache/pilothouse/bentoml-venv && \
	    $(HOME)/.cache/pilothouse/bentoml-venv/bin/pip install --quiet bentoml onnxruntime numpy )
	$(PYTHON) benchmarks/serving.py
	$(PYTHON) benchmarks/keep_cost.py

# The property-based fuzz tests that `cargo test` runs briefly, run long (release build, so
# many more cases per minute). Every property counts as one line in the summary.
FUZZ_CASES ?= 200000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) cargo test --release -p pilothouse-server --test fuzz_decoders
	PROPTEST_CASES=$(FUZZ_CASES) cargo test --release -p pilothouse-drift --test fuzz_profile

schemathesis: install
	$(PYTHON) fuzz/run_schemathesis.py --max-examples 1000

fixtures:
	$(PYTHON) tests/models.py rust/runtime/tests/data
