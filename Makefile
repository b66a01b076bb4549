# Two commands matter: `make demo` (see it work) and `make test` (prove it works).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv

.PHONY: demo test test-fast lint format architecture venv schema benchmark clean browser-deps superset superset-venv messages mc

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --upgrade >/dev/null
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.9.30
	$(UV) pip install --quiet --compile-bytecode -p $(PY) -r requirements-dev.txt
	$(UV) pip install --quiet -p $(PY) --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# Apache Superset in a venv of its own (its pins clash with Airflow's): `make superset` and tests/bi.
SUPERSET_VENV := .superset/venv
$(SUPERSET_VENV)/.installed: requirements-superset.txt $(VENV)/.installed
	test -x $(SUPERSET_VENV)/bin/python || $(PYTHON) -m venv $(SUPERSET_VENV)
	$(UV) pip install --quiet -p $(SUPERSET_VENV)/bin/python -r requirements-superset.txt
	touch $@

superset-venv: $(SUPERSET_VENV)/.installed

# The demo's mart (SQLite, read-only) unless SUPERSET_MART_URI names another, e.g. a grant-reader role's URI.
SUPERSET_MART_URI ?= sqlite:///file:$(CURDIR)/.airflow/metrics_mart.db?mode=ro&uri=true
superset: venv superset-venv  ## Apache Superset 6.1 on http://127.0.0.1:8088 with the Metrics Center bundle (admin/admin).
	$(PY) -m metrics_center.demo.superset --mart-uri "$(SUPERSET_MART_URI)"

demo: venv  ## Airflow + the demo company, every demo metric waiting for approval. Ctrl-C stops it.
	$(PY) -m metrics_center.demo.run

test: venv browser-deps superset-venv  ## The whole suite: real Airflow, Postgres (127.0.0.1:5432), DuckDB, Great Expectations, chromium.
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

# The translatable strings (_("…"), n_("…", "…", n)) into the zh-CN catalogue: new ones arrive untranslated
# (tests/i18n fails until they are translated), removed ones are dropped.
ZH_PO := src/metrics_center/i18n/locale/zh_CN/LC_MESSAGES/messages.po
messages: venv
	$(VENV)/bin/pybabel extract -F babel.cfg -k _ -k n_:1,2 -k N_ --no-location --sort-output --omit-header --no-wrap -o .messages.pot .
	$(VENV)/bin/pybabel update -i .messages.pot -o $(ZH_PO) -l zh_CN --no-wrap --no-fuzzy-matching --ignore-obsolete
	rm -f .messages.pot

format: venv
	$(VENV)/bin/ruff format src tests dags plugins benchmarks tools
	$(VENV)/bin/ruff check --fix src tests dags plugins benchmarks tools

architecture: venv  ## Redraw the import diagram in docs/architecture.md from the code.
	$(PY) tools/architecture.py

schema: venv  ## Regenerate the committed JSON Schemas for editors.
	$(VENV)/bin/metrics-center schema --write schemas
	$(VENV)/bin/metrics-center test --schema > schemas/metric_test.schema.json

# metrics-center in the demo's environment (its data, the sales_db connection, .airflow/'s mart), e.g.
#   make mc ARGS="run gmv_daily --period 2026-11-26"      make mc ARGS="test"      make mc ARGS="validate"
mc: venv
	@$(PY) -m metrics_center.demo.with_env $(ARGS)

benchmark: venv
	$(UV) pip install --quiet --compile-bytecode -p $(PY) -r requirements-bench.txt
	$(PY) benchmarks/parse_dags.py
	$(PY) benchmarks/publish.py
	$(PY) benchmarks/bi_query.py
	$(PY) benchmarks/extract_memory.py
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
	rm -rf .airflow demo_data .superset/home
