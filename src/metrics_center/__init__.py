"""Metrics Center: governed business metrics on Apache Airflow 3.3.

Importing this package is cheap on purpose: DAG files import it at parse time, so heavy
libraries (pandas, duckdb, great_expectations, sqlalchemy) are imported only inside tasks.
"""

__version__ = "0.1.0"
