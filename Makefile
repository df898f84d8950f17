# Quick start: `make demo` (set up, run the demo) and `make test` (set up, run the tests).
# Setup installs uv into .tools/ and the locked dependencies into .venv/ (uv.lock).
PYTHON ?= python3.11
UV := .tools/bin/uv
VENV := .venv
# The repo is the Dagster home: its dagster.yaml configures the instance (pools, run queue), and
# Dagster keeps runs and schedules in history/ and schedules/ beside it (git ignores them).
DAGSTER_HOME_DIR := $(CURDIR)

.PHONY: setup demo test test-fast lint docs dev audit clean bench bench-smoke

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==0.13.8

# --compile-bytecode: every run would otherwise compile Dagster's modules again where .pyc files
# cannot be written (PYTHONDONTWRITEBYTECODE, read-only images), seconds of each run's start.
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra dev --python $(PYTHON) --compile-bytecode
	touch $@

setup: $(VENV)/.synced

# The benchmark's own environment: dev + the `bench` extra (pandas, dlt, matplotlib, py-spy), apart from
# .venv so crm-roi is measured without pandas (see bench/run.py).
BENCH_VENV := bench/.venv
$(BENCH_VENV)/.synced: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=$(BENCH_VENV) $(UV) sync --frozen --extra dev --extra bench --python $(PYTHON) --compile-bytecode
	touch $@

# Demo runs are recorded in the local Dagster instance, so `make dev` shows them.
demo: setup
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(VENV)/bin/crm-roi demo

# The full suite, as CI runs it.
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

# The edit loop: without the multiprocess, CLI-of-Dagster, wheel and kill-the-run tests.
test-fast: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -m "not slow and not reliability"

# Regenerate docs/configuration.md and docs/tables.md from the config models and the registry.
docs: setup
	$(VENV)/bin/python -m pipelines.reference

lint: setup
	$(VENV)/bin/ruff check .

# The Dagster UI on http://127.0.0.1:3000 with this repo's dagster.yaml (pools, run queue).
dev: setup
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/dg dev

# The benchmark: writes bench/RESULTS.md, bench/results.json and bench/scaling.png (see bench/run.py).
BENCH_ARGS ?= --sizes 100000,1000000,5000000 --repeat 3
bench: setup $(BENCH_VENV)/.synced
	$(BENCH_VENV)/bin/python -m bench.run --product-python $(VENV)/bin/python $(BENCH_ARGS)

# The harness end to end at 2,000 deals, into bench/.work/smoke (no timing claims; the CI test does the same).
bench-smoke: setup
	$(VENV)/bin/python -m bench.run --sizes 2000 --repeat 1 --variants bare_duckdb,crm_roi_full,crm_roi_incremental \
		--work bench/.work/smoke --out bench/.work/smoke --no-plot

# Known vulnerabilities in every locked package (all extras), by pip-audit against PyPI's advisory data.
# --strict: a package that cannot be looked up fails the audit instead of passing it unchecked.
audit: $(UV)
	$(UV) export --frozen --all-extras --no-hashes --no-emit-project --format requirements.txt \
		-o .tools/requirements-audit.txt --quiet
	$(UV) tool run --from pip-audit==2.10.1 pip-audit --strict --no-deps --disable-pip \
		-r .tools/requirements-audit.txt

clean:
	rm -rf .tools $(VENV) $(BENCH_VENV) history schedules storage logs .crm_roi_instance.lock crm_roi_demo.*
