"""Every metric under include/metrics/ as its own DAG (see metrics_center.orchestration.dag_builder).

Airflow's DAG discovery only reads files that mention both words "airflow" and "dag": this is one.
"""

from airflow.sdk import get_parsing_context

from metrics_center.orchestration.dag_builder import build_dags

for _dag_id, _dag in build_dags(only_dag_id=get_parsing_context().dag_id).items():
    globals()[_dag_id] = _dag
