"""Our own metrics (through Airflow's StatsD/OpenTelemetry client) and, on request, where a task's time goes.

Imports nothing of ours: any layer may report through it, and a metric lost never fails a caller.
"""
