"""The Metrics Center web app mounted in Airflow's api-server: the page, its JSON API, the Slack endpoint."""
