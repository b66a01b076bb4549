"""The work of each stage of a metric's run: extract, transform, quality gate, impact preview, publish.

No Airflow import at module level (the operators in ``orchestration`` call these at run time) and
heavy libraries only inside functions. May import ``notify``, ``approvals``, ``checks``, ``mart``,
``definitions``, ``observability``, ``settings``, ``errors``.
"""
