"""Everything that knows Airflow: metric DAGs and their operators, pools, Celery, the maintenance DAG.

``dag_builder`` turns the catalog into DAGs; ``operators`` are thin and delegate to ``tasks``;
``task_logs`` prefixes our log lines with the run; ``pools`` and ``celery_config`` size the work;
``maintenance`` is the maintenance DAG's task bodies; ``local_airflow`` runs a small Airflow for the
demo and the live tests. Imports Airflow inside functions (DAG files are parsed often) and may import
every layer below ``web``.
"""
