# Two commands matter: `make demo` (see it work) and `make test` (prove it works).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv

.PHONY: demo test test-fast lint format architecture venv schema benchmark clean browser-deps

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

test: venv browser-deps  ## The whole suite: real Airflow, Postgres (127.0.0.1:5432), DuckDB, Great Expectations, chromium.
	$(PY) -m pytest -n 2 --dist loadfile

test-fast: venv  ## The tests that start no Airflow and no process (-m "not slow"): well under a minute.
	$(PY) -m pytest -m "not slow" -n 2 --durations=5

# Debian's chromium for tests/web/test_browser.py (Playwright's own browser download is not used), and a CJK
# font so screenshots show 成交额. Does nothing when both are installed; installs as root (or via sudo).
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	fi

lint: venv  ## Style, and the package's layers (import-linter, docs/architecture.md's diagram)
	$(VENV)/bin/ruff format --check src tests dags plugins benchmarks tools
	$(VENV)/bin/ruff check src tests dags plugins benchmarks tools
	$(VENV)/bin/lint-imports
	$(PY) tools/architecture.py --check

format: venv
	$(VENV)/bin/ruff format src tests dags plugins benchmarks tools
	$(VENV)/bin/ruff check --fix src tests dags plugins benchmarks tools

architecture: venv  ## Redraw the import diagram in docs/architecture.md from the code.
	$(PY) tools/architecture.py

schema: venv  ## Regenerate the committed JSON Schemas for editors.
	$(VENV)/bin/metrics-center schema --write schemas

benchmark: venv
	$(UV) pip install --quiet --compile-bytecode -p $(PY) -r requirements-bench.txt
	$(PY) benchmarks/parse_dags.py
	$(PY) benchmarks/publish.py
	$(PY) benchmarks/anomaly.py
	$(PY) benchmarks/quality_check.py
	$(PY) benchmarks/outbox.py
	$(PY) benchmarks/slack_ack.py
	$(PY) benchmarks/approvals.py
	$(PY) benchmarks/impact_preview.py
	$(PY) benchmarks/validate_against.py
	$(PY) benchmarks/staging_s3.py
	$(PY) benchmarks/scale_dags.py

clean:
	rm -rf .airflow demo_data
