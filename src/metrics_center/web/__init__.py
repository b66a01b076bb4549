"""The Metrics Center app mounted in Airflow's api-server: the pages, their JSON API, the Slack endpoint.

Every route uses Airflow's own auth (the Slack endpoint: Slack's signature). May import every layer
below it; ``plugins/metrics_center_plugin.py`` registers ``web.app``.
"""
