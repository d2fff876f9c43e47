# embedfleet: every entry point a user or CI needs. `make setup` is idempotent
# and every other target runs it first, so a fresh clone needs no other step.
# Build caches live outside the clone (EMBEDFLEET_HOME) so fresh clones and CI
# reuse them.

EMBEDFLEET_HOME ?= $(HOME)/.cache/embedfleet
VENV            ?= $(EMBEDFLEET_HOME)/venv
export CARGO_TARGET_DIR ?= $(EMBEDFLEET_HOME)/target
PY              := $(VENV)/bin/python
WORKER_BIN      := $(CARGO_TARGET_DIR)/release/embedfleet-worker
ONNX_DIR        ?= models/onnx/minilm
DATA            ?= data
ARGS            ?=
export PYTHONUNBUFFERED := 1
export HF_HUB_OFFLINE := 1

.PHONY: setup setup-python setup-rust run test test-all test-rest test-python test-rust manager cluster worker-rust \
        export-onnx bench bench-smoke sample-data lint fault dist-worker clean

setup:
	@bash deploy/setup.sh all

setup-python:
	@bash deploy/setup.sh python

setup-rust:
	@bash deploy/setup.sh rust

## The main job on one machine: embedded Redis, sample corpus, manager, one
## Python and one Rust worker, clustering, summary.
run: setup
	$(PY) -m manager run --data $(DATA) --worker-bin $(WORKER_BIN) --onnx-dir $(ONNX_DIR) $(ARGS)

## The fast path: unit and integration tests of Python and Rust against a
## real redis-server; no image builds, cross builds, real-model runs or fault
## harness (those are `make test-rest`; `make test-all` runs both).
FAST := not fault and not slow and not docker

test: setup test-python test-rust

test-python:
	$(PY) -m pytest -q -m "$(FAST)" $(ARGS)

## Everything `make test` leaves out: the fault harness, real-model and
## release-build runs, the Docker Compose stack.
test-rest: setup
	$(PY) -m pytest -q -m "not ($(FAST))" $(ARGS)

test-all: test test-rest

test-rust:
	cargo test --release --manifest-path rust/Cargo.toml --workspace -q

## Fault-injection harness alone.
fault: setup
	$(PY) -m pytest -q -m fault $(ARGS)

## The manager on the storage host: scan, enqueue, coordinate, serve status.
manager: setup
	$(PY) -m manager serve $(ARGS)

## HDBSCAN over all embeddings, with a report.
cluster: setup
	$(PY) -m clusterer $(if $(REMOTE),--remote) $(ARGS)

worker-rust: setup-rust

export-onnx: setup-python
	$(PY) -m models.export_onnx --output $(ONNX_DIR)

sample-data: setup-python
	$(PY) -m corpus --output $(DATA) $(ARGS)

bench: setup
	$(PY) -m bench $(ARGS)

bench-smoke: setup
	$(PY) -m bench --smoke $(ARGS)

dist-worker: setup
	bash deploy/dist-worker.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cargo fmt --manifest-path rust/Cargo.toml --all -- --check
	cargo clippy --manifest-path rust/Cargo.toml --workspace --all-targets -q -- -D warnings

clean:
	rm -rf manager/_core*.so $(ONNX_DIR) .pytest_cache .mypy_cache .ruff_cache
