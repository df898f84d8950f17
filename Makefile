# Quick start: `make demo` (set up, run the demo) and `make test` (set up, run the tests).
# Setup installs uv into .tools/ and the locked dependencies into .venv/ (uv.lock).
PYTHON ?= python3.11
UV := .tools/bin/uv
VENV := .venv
DAGSTER_HOME_DIR := $(CURDIR)/.dagster_home

.PHONY: setup demo test lint dev clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==0.13.8

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra dev --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced

$(DAGSTER_HOME_DIR)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME_DIR) && cp dagster.yaml $@

# Demo runs are recorded in the local Dagster instance, so `make dev` shows them.
demo: setup $(DAGSTER_HOME_DIR)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(VENV)/bin/crm-roi demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check .

# The Dagster UI on http://127.0.0.1:3000 with this repo's dagster.yaml (pools, run queue).
dev: setup $(DAGSTER_HOME_DIR)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(VENV)/bin/dagster dev

clean:
	rm -rf .tools $(VENV) .dagster_home crm_roi_demo.duckdb
