"""Alembic environment for the mart; driven programmatically by :mod:`metrics_center.mart.migrate`."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table="mart_schema_version", render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
