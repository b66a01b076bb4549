"""Checks on a run's result beyond its expectations: anomalies against history, reconciliation across departments."""
