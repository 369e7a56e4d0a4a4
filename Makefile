# orderwatch: every target creates the virtualenv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create the virtualenv and install orderwatch with dev tools

lint: $(STAMP) ## ruff (format + lint), mypy --strict, import-linter contracts
	$(BIN)/ruff format --check src agents tests bench
	$(BIN)/ruff check src agents tests bench
	$(BIN)/mypy src agents bench
	$(BIN)/lint-imports

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format src agents tests bench
	$(BIN)/ruff check --fix src agents tests bench

# Integration tests mostly wait (on the broker's group joins, on worker start-ups): make test runs
# them in this many processes (each with its own broker), then the latency-sensitive ones
# (marker "serial") alone. A bare `pytest` still runs everything in one process.
TEST_PROCESSES ?= 3

test: lint ## lint, then the whole test suite (unit, agents, integration on the embedded broker)
	$(BIN)/pytest --ignore=tests/integration -m "not serial"
	$(BIN)/pytest tests/integration -m "not serial" -n $(TEST_PROCESSES) --dist loadgroup
	$(BIN)/pytest -m serial

unit: $(STAMP) ## the unit tests only (no broker)
	$(BIN)/pytest tests/unit

fuzz: $(STAMP) ## the decoder's structural fuzz at 100,000 examples (make test runs a few hundred)
	ORDERWATCH_FUZZ_EXAMPLES=$${ORDERWATCH_FUZZ_EXAMPLES:-100000} $(BIN)/pytest tests/unit/test_codec_fuzz.py -q -p no:cacheprovider --hypothesis-show-statistics -k structurally

schemas: $(STAMP) ## regenerate schemas/ from the models
	$(BIN)/orderwatch schemas --out schemas

demo: $(STAMP) ## embedded broker + worker + traffic; Ctrl-C or DEMO_SECONDS=N to stop
	$(BIN)/python -m orderwatch.demo

bench-engine: $(STAMP) ## decode + engine throughput and memory over a simulated day (>= 1M events)
	$(BIN)/python bench/bench_engine.py $(BENCH_ARGS)

bench-pipeline: $(STAMP) ## throughput (aiokafka / bare Faust / worker) and detection latency on Tansu
	$(BIN)/python bench/bench_pipeline.py $(BENCH_ARGS)

bench-console: $(STAMP) ## console: queue page with 100,000 open exceptions, click -> new state round trip
	$(BIN)/python bench/bench_console.py $(BENCH_ARGS)

bench-state: $(STAMP) ## state at size: sweep vs open orders; the RocksDB worker with 100k and 1M open orders; 10k-order quick check (~25 min)
	$(BIN)/python bench/bench_state.py --large 1000000 --store-orders 100000,1000000 --quick-orders 10000 $(BENCH_ARGS)

bench-actions: $(STAMP) ## the action partition: step and commit cost, state size as 100k actions accumulate (~15 s)
	$(BIN)/python bench/bench_actions.py $(BENCH_ARGS)

bench: $(STAMP) ## every benchmark (engine, pipeline, sweep, memory, restart) and one table (~6 min)
	$(BIN)/python bench/bench_all.py $(BENCH_ARGS)

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .orderwatch-data

.PHONY: help venv lint fmt test unit fuzz schemas demo bench-engine bench-pipeline bench-console bench-state bench-actions bench clean
