"""Judgements over data: Great Expectations rules, anomalies against history, reconciliation (对账), impact.

Pure functions of the values they are given (and, for anomalies, the published history read from the
mart): staging, DuckDB over staged sources and Airflow belong to ``tasks``. May import ``mart``,
``definitions``, ``settings``, ``errors``.
"""
