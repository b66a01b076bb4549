# Two commands matter: `make demo` (see it work) and `make test` (prove it works).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv

.PHONY: demo test lint format venv schema benchmark clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --upgrade >/dev/null
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.9.30
	$(UV) pip install --quiet --compile-bytecode -p $(PY) -r requirements-dev.txt
	$(UV) pip install --quiet -p $(PY) --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv  ## Airflow + the demo company, every demo metric waiting for approval. Ctrl-C stops it.
	$(PY) -m metrics_center.demo.run

test: venv  ## The whole suite: real Airflow, Postgres (127.0.0.1:5432), DuckDB, Great Expectations.
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff format --check src tests dags plugins benchmarks
	$(VENV)/bin/ruff check src tests dags plugins benchmarks

format: venv
	$(VENV)/bin/ruff format src tests dags plugins benchmarks
	$(VENV)/bin/ruff check --fix src tests dags plugins benchmarks

schema: venv  ## Regenerate the committed JSON Schemas for editors.
	$(VENV)/bin/metrics-center schema --write schemas

benchmark: venv
	$(UV) pip install --quiet --compile-bytecode -p $(PY) -r requirements-bench.txt
	$(PY) benchmarks/parse_dags.py
	$(PY) benchmarks/publish.py
	$(PY) benchmarks/anomaly.py
	$(PY) benchmarks/quality_check.py
	$(PY) benchmarks/outbox.py

clean:
	rm -rf .airflow demo_data
