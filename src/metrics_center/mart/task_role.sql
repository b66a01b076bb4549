-- The role Airflow tasks use for the mart (the `metrics_mart` connection): rows only, no DDL.
-- The schema belongs to the migrating role, which runs `metrics-center mart upgrade` once per deploy.
-- Run as that owner after each upgrade; replace metrics_center_task by your task role's name.
GRANT USAGE ON SCHEMA metrics_mart TO metrics_center_task;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA metrics_mart TO metrics_center_task;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA metrics_mart TO metrics_center_task;
ALTER DEFAULT PRIVILEGES IN SCHEMA metrics_mart GRANT SELECT, INSERT, UPDATE ON TABLES TO metrics_center_task;
ALTER DEFAULT PRIVILEGES IN SCHEMA metrics_mart GRANT USAGE, SELECT ON SEQUENCES TO metrics_center_task;
-- Forgetting day-old Slack request signatures (the replay guard of the Slack endpoint).
GRANT DELETE ON metrics_mart.slack_request TO metrics_center_task;
-- Registering a new version builds the metric's storage and BI relations: the one piece of DDL tasks may start,
-- done by this function with the owner's rights (relations.sql).
GRANT EXECUTE ON FUNCTION metrics_mart.ensure_metric_relations(jsonb) TO metrics_center_task;
