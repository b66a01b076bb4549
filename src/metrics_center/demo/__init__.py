"""The demo company (``make demo``): three departments' data, their published past, and a local Airflow.

An entry point beside ``cli``: may import every layer except ``cli``.
"""
