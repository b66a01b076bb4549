"""The metrics mart: the published, approved numbers that BI tools read, and the audit trail of every run.

SQLAlchemy Core tables and Alembic migrations (``tables``, ``migrations/``), the engine and its locks,
definitions and runs registered, values published history-preserving, quality results and answers.
May import ``definitions``, ``settings``, ``errors``; knows nothing of Airflow, Slack or the web.
"""
