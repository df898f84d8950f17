# Quick start: `make demo` (set up, run the demo) and `make test` (set up, run the tests).
# Setup installs uv into .tools/ and the locked dependencies into .venv/ (uv.lock).
PYTHON ?= python3.11
UV := .tools/bin/uv
VENV := .venv
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup demo test lint dev clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==0.13.8

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra dev --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced

demo: setup
	$(VENV)/bin/crm-roi demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check .

# The Dagster UI on http://127.0.0.1:3000 with this repo's dagster.yaml (pools, run queue).
dev: setup
	mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev

clean:
	rm -rf .tools $(VENV) .dagster_home crm_roi_demo.duckdb
