"""Where things live. Read from the environment when asked, never at import time."""

from __future__ import annotations

import os
from pathlib import Path

#: Airflow connection ids other tools rely on.
MART_CONN_ID = "metrics_mart"
SLACK_CONN_ID = "metrics_center_slack"
#: Feishu / Lark app: login = App ID, password = App Secret, host = feishu, lark or a base URL; extras
#: ``verification_token`` and ``encrypt_key`` (the card callback's).
FEISHU_CONN_ID = "metrics_center_feishu"
#: Airflow's SMTP provider connection for e-mail notifications (``from_email`` extra for the sender).
SMTP_CONN_ID = "metrics_center_smtp"

_REPO_INCLUDE = Path(__file__).resolve().parents[2] / "include"


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))


def metrics_center_home() -> Path:
    """The folder holding ``metrics/`` and ``sql/`` (``METRICS_CENTER_HOME``, default the repo's include/)."""
    return Path(os.environ.get("METRICS_CENTER_HOME", _REPO_INCLUDE)).resolve()


def metrics_dir() -> Path:
    return metrics_center_home() / "metrics"


def sql_dir() -> Path:
    return metrics_center_home() / "sql"


def data_root() -> Path:
    """Root for relative file-source paths (``METRICS_CENTER_DATA_ROOT``)."""
    default = metrics_center_home().parent / "demo_data"
    return Path(os.environ.get("METRICS_CENTER_DATA_ROOT", default)).resolve()


def staging_root() -> str:
    """Staging root as an ObjectStoragePath URL (``METRICS_CENTER_STAGING``); local under $AIRFLOW_HOME."""
    default = (airflow_home() / "metrics_center_staging").resolve().as_uri()
    return os.environ.get("METRICS_CENTER_STAGING", default)


def staging_conn_id() -> str | None:
    """The Airflow connection holding the staging store's credentials (``METRICS_CENTER_STAGING_CONN``).

    Default ``aws_default`` for ``s3://`` staging (and ``google_cloud_default`` for ``gs://``, ``wasb_default``
    for ``abfs://``); none for local folders. ``METRICS_CENTER_STAGING_CONN=`` (empty) uses the store's own
    credential chain (instance role, environment) instead.
    """
    if "METRICS_CENTER_STAGING_CONN" in os.environ:
        return os.environ["METRICS_CENTER_STAGING_CONN"] or None
    scheme = staging_root().split("://", 1)[0] if "://" in staging_root() else "file"
    return {"s3": "aws_default", "gs": "google_cloud_default", "abfs": "wasb_default"}.get(scheme)


def staging_path():  # -> ObjectStoragePath (airflow.sdk is imported only when staging is used)
    """The staging root as an ``ObjectStoragePath`` with its connection: every task reads and writes through it."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(staging_root(), conn_id=staging_conn_id())


def business_timezone() -> str:
    """IANA zone in which a day/week/month closes (``METRICS_CENTER_TIMEZONE``, default UTC)."""
    return os.environ.get("METRICS_CENTER_TIMEZONE", "UTC")


def inbox_dir() -> Path | None:
    """``METRICS_CENTER_INBOX``: a folder where messages for channels without a connection are written
    (one file per channel) instead of waiting — what ``make demo`` shows a newcomer. Unset: none."""
    value = os.environ.get("METRICS_CENTER_INBOX")
    return Path(value).resolve() if value else None


def signoff_poll_seconds() -> float:
    """``METRICS_CENTER_SIGNOFF_POLL``: how often a ``publish`` waiting for a definition's sign-off looks
    again (seconds, default 300); the task holds no worker slot in between (Airflow reschedules it)."""
    return float(os.environ.get("METRICS_CENTER_SIGNOFF_POLL", "300"))


#: POSIX locale variables, strongest first (LC_ALL overrides LC_MESSAGES overrides LANG).
_POSIX_LOCALE = ("LC_ALL", "LC_MESSAGES", "LANG")


def cli_locale() -> str | None:
    """The language ``metrics-center`` speaks to the person at the terminal, as written in the environment:
    ``METRICS_CENTER_LOCALE`` (``en`` or ``zh-CN``), else the first set of ``LC_ALL``, ``LC_MESSAGES`` and
    ``LANG`` (``zh_CN.UTF-8``…). None: nothing set. :func:`metrics_center.i18n.translate.normalize` maps it to
    a locale with a catalogue (``C``, ``POSIX`` and anything else → English)."""
    chosen = os.environ.get("METRICS_CENTER_LOCALE", "").strip()
    if chosen:
        return chosen
    for name in _POSIX_LOCALE:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None
