# Metrics Center on the official Airflow image.
#   docker build -t metrics-center:local .      (or: docker compose build)
FROM apache/airflow:3.3.2-python3.11

# The official image expects extra packages to be installed as the airflow user
# (https://airflow.apache.org/docs/docker-stack/build.html).
USER airflow

ENV METRICS_CENTER_HOME=/opt/airflow/include \
    GX_ANALYTICS_ENABLED=false

# Dependencies first so that code changes don't invalidate this (slow) layer.
# Re-stating apache-airflow==${AIRFLOW_VERSION} stops pip from ever moving the
# base image's Airflow, as the image docs recommend.
COPY --chown=airflow:0 requirements.txt /tmp/metrics-center/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/metrics-center/requirements.txt

# The package itself; its dependencies are all pinned in requirements.txt above.
COPY --chown=airflow:0 pyproject.toml /tmp/metrics-center/pyproject.toml
COPY --chown=airflow:0 src/ /tmp/metrics-center/src/
RUN pip install --no-cache-dir --no-deps /tmp/metrics-center \
    && rm -rf /tmp/metrics-center

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/

# Created here so named volumes mounted on them start out owned by airflow:0 and group-writable,
# which keeps them usable when the container runs with another UID (always with GID 0).
RUN mkdir -p /opt/airflow/staging /opt/airflow/logs /opt/airflow/demo_data \
    && chmod g+rwx /opt/airflow/staging /opt/airflow/logs /opt/airflow/demo_data
