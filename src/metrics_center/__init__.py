"""Metrics Center: governed business metrics on Apache Airflow 3.3.

The package is layered (``docs/architecture.md``; ``make lint`` enforces it with import-linter). Top to
bottom — a layer imports only the layers below it:

- ``cli``, ``demo`` — entry points: the ``metrics-center`` command and the demo company;
- ``web`` — the app Airflow's api-server mounts: pages, JSON API, Slack endpoint;
- ``orchestration`` — everything that knows Airflow: DAGs, operators, pools, Celery, maintenance;
- ``tasks`` — the work of each stage (extract, transform, quality gate, publish…), no Airflow at import;
- ``notify`` — the outbox, messages and their delivery;
- ``approvals`` and ``checks`` — what counts as an approval; judgements over data (GX, anomalies, 对账);
- ``mart`` — the published numbers and their audit trail;
- ``definitions`` and ``observability`` — the YAML language; our own metrics and timings;
- ``settings`` and ``errors`` — where things live; the one exception family.

Importing this package is cheap on purpose: DAG files import it at parse time, so heavy
libraries (pandas, duckdb, great_expectations, sqlalchemy) are imported only inside tasks.
"""

__version__ = "0.1.0"
