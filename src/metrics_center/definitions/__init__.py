"""The metric definition language: the YAML files, their validation and what they mean.

``spec`` (pydantic models), ``loader`` (files → validated catalog, every problem as ``path:line: key:
what — fix``), ``rule_checks``/``gx_rules`` (quality rules judged against GX), ``meaning`` (the meaning
hash, the stored document), ``changes``/``review`` (what changed, breaking or not), ``lineage``
(metrics built from metrics), ``periods``/``run_periods`` (which periods a run computes),
``dimensions``, ``templates`` (Jinja in a sandbox), ``task_ids`` (the names of a metric's tasks),
``catalog_cache``.

The bottom layer: imports only ``settings`` and ``errors``, no Airflow, no database.
"""
