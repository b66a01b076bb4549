"""Shared parts of the Slack tests — a stub Slack that also speaks the interactive methods, signed requests,
the app as Airflow's api-server serves it — and the tests of the approval messages themselves.

Importing this module points Airflow at the repo's ``plugins/`` (``plugins/metrics_center_plugin.py``, which
mounts the Metrics Center app with our ``router`` at ``/metrics-center``). Until that file exists, a
throwaway plugin in a temp folder mounts the router the same way, so the requests still go through
``airflow.api_fastapi.app.create_app()`` and Airflow's plugin mounting.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from slack_stub import TOKEN, Posted, SlackStub

REPO = Path(__file__).resolve().parents[1]
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5-test"
CONN = "AIRFLOW_CONN_METRICS_CENTER_SLACK"
URL = "/metrics-center/slack/interactions"
BASE_URL = "https://airflow.example.com"

_SHIM = '''
"""Test-only stand-in for plugins/metrics_center_plugin.py: mounts the Slack router like the real app."""
from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI

from metrics_center.web.slack_actions import router

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
app.include_router(router)


class MetricsCenterSlackShim(AirflowPlugin):
    name = "metrics_center_slack_test_shim"
    fastapi_apps = [{"app": app, "url_prefix": "/metrics-center", "name": "Metrics Center (test shim)"}]
'''


def _plugins_folder() -> Path:
    if (REPO / "plugins" / "metrics_center_plugin.py").is_file():
        return REPO / "plugins"
    folder = Path(tempfile.mkdtemp(prefix="mc-test-plugins-"))
    (folder / "metrics_center_slack_test_shim.py").write_text(_SHIM)
    return folder


def _use_plugins(folder: Path) -> None:
    """Before Airflow reads it, if possible; else patch the loaded setting and forget loaded plugins."""
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(folder)
    settings = sys.modules.get("airflow.settings")
    if settings is not None:
        settings.PLUGINS_FOLDER = str(folder)
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    manager = sys.modules.get("airflow.plugins_manager")
    if manager is not None:
        for value in vars(manager).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


PLUGINS = _plugins_folder()
THROUGH_REAL_PLUGIN = PLUGINS == REPO / "plugins"
_use_plugins(PLUGINS)


class InteractiveSlackStub(SlackStub):
    """The delivery stub, plus ``chat.update``, ``views.open``, ``chat.postEphemeral`` and response URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []
        self.ephemeral: list[dict[str, Any]] = []  # chat.postEphemeral and response_url posts alike

    def connection(self, *, token: str = TOKEN, secret: str | None = SIGNING_SECRET) -> str:
        extra = {"base_url": self.base_url, **({"signing_secret": secret} if secret else {})}
        return json.dumps({"conn_type": "slack", "password": token, "extra": extra})

    def response_url(self, name: str) -> str:
        host, port = urlsplit(self.base_url).netloc.split(":")
        return f"http://{host}:{port}/response/{name}"

    def messages_to(self, address: str) -> list[Posted]:
        channel = self.channel_id(address)
        return [p for p in self.posted if p.channel == channel]

    def said_to(self, user: str) -> list[str]:
        """What the app told ``user`` ephemerally, oldest first (response URLs are named after the user)."""
        return [e["text"] for e in self.ephemeral if e.get("user") == user or e.get("to") == user]

    def _handle(self, request: Any) -> None:
        path = urlsplit(request.path).path
        if not path.startswith("/response/"):
            super()._handle(request)
            return
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        data = json.loads(body or b"{}")
        with self._lock:
            self.ephemeral.append({**data, "to": path.removeprefix("/response/").split(".")[0]})
        request.send_response(200)
        request.send_header("Content-Type", "text/plain")
        request.send_header("Content-Length", "2")
        request.end_headers()
        request.wfile.write(b"ok")

    def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict, dict[str, str]]:
        if method == "chat.update":
            with self._lock:
                channel, ts = str(params.get("channel")), str(params.get("ts"))
                index = next(
                    (i for i, p in enumerate(self.posted) if p.channel == channel and p.ts == ts), None
                )
                if index is None:
                    return 200, {"ok": False, "error": "message_not_found"}, {}
                blocks = _decode(params.get("blocks")) or []
                self.posted[index] = replace(
                    self.posted[index], text=str(params.get("text", "")), blocks=blocks
                )
                self.updates.append(
                    {"channel": channel, "ts": ts, "text": params.get("text"), "blocks": blocks}
                )
            return 200, {"ok": True, "channel": channel, "ts": ts}, {}
        if method == "views.open":
            with self._lock:
                self.views.append(
                    {"trigger_id": params.get("trigger_id"), "view": _decode(params.get("view"))}
                )
            return 200, {"ok": True, "view": {"id": f"V{len(self.views):08d}"}}, {}
        if method == "chat.postEphemeral":
            with self._lock:
                self.ephemeral.append(dict(params))
            return 200, {"ok": True, "message_ts": f"{time.time():.6f}"}, {}
        return super()._answer(method, params)


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# --- requests as Slack sends them ------------------------------------------------------------------


def signed(body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends: ``v0=HMAC-SHA256(secret, "v0:{ts}:{body}")``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def button(message: Posted, action_id: str) -> dict[str, Any]:
    for block in message.blocks:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return element
    raise AssertionError(f"no button {action_id} in {message.blocks}")


def click(stub: InteractiveSlackStub, message: Posted, *, user: str, action_id: str) -> dict[str, Any]:
    """A ``block_actions`` payload: ``user`` clicked ``action_id`` on ``message``."""
    element = button(message, action_id)
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "team": {"id": "T0TEST"},
        "trigger_id": f"trigger-{user}-{time.monotonic_ns()}",
        "response_url": stub.response_url(f"{user}.{time.monotonic_ns()}"),
        "container": {"type": "message", "channel_id": message.channel, "message_ts": message.ts},
        "channel": {"id": message.channel},
        "message": {"ts": message.ts, "blocks": message.blocks},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "metrics_center_approval",
                "value": element.get("value"),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def submit_view(view: dict[str, Any], *, user: str, reason: str) -> dict[str, Any]:
    """A ``view_submission`` payload for the reason form ``view`` (as views.open received it)."""
    return {
        "type": "view_submission",
        "user": {"id": user},
        "view": {
            **view,
            "id": "V00000001",
            "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
        },
    }


def post(client: Any, payload: dict[str, Any], **signing: Any) -> Any:
    body = form(payload)
    return client.post(URL, content=body, headers=signed(body, **signing))


def include_without_other_chats(home: Path) -> Path:
    """The repo's ``include/`` copied to ``home``, its departments in Slack only (no Feishu group, no robots).

    For tests that deliver from a thread while ``dag.test()`` runs tasks in-process: looking up a connection
    that does not exist goes through the in-process task's channel to Airflow, which is not shared safely
    between threads (a real deliverer runs in a task process of its own and looks them up up front)."""
    import re
    import shutil

    shutil.copytree(REPO / "include", home)
    teams = home / "metrics" / "_teams.yaml"
    text = re.sub(
        r"\n    (feishu_chat_id|dingtalk_webhook|wecom_webhook|notify):[^\n]*", "", teams.read_text()
    )
    teams.write_text(text)
    return home


def app_client() -> Any:
    """Airflow's api-server app in-process, with the plugins of :data:`PLUGINS` mounted."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    return TestClient(create_app())


# --- the messages ----------------------------------------------------------------------------------

EVIDENCE = """**GMV** — period **2026-11-26 (day, UTC)** — stage **finance sign-off**

Total: **65,859.87 CNY** over 12 row(s); vs 2026-11-25: +1,234.00 (+1.9%)

| period | dimensions | value | previous | change |
|---|---|---|---|---|
| 2026-11-26 | region=east, channel=app | 18,200.00 CNY | 13,190.00 CNY | +5,010.00 (+38.0%) |
| 2026-11-26 | region=west, channel=web | 3,100.00 CNY | 3,000.00 CNY | +100.00 (+3.3%) |
| … | 10 more rows | | | |

**Rows extracted per source**

- `orders`: 1,024 rows from sales_db
- `refunds`: 12 rows from finance/refunds_2026-11-27.csv

**Anomalies** (1, vs this metric's published history)

- region=east, channel=app: ▲ 18,200.00 CNY, +38.0% vs expected 13,190.00 CNY ± 1,100.00 (zscore +4.2)

**Quality checks**: 3/4 passed

- ✅ `expect_column_values_to_not_be_null` {'column': 'value'}
- ⚠️ `reconcile:settled_cash` (warn, within 1%): ours 65,859.87 CNY vs theirs 62,100.00 CNY (+6.1%); 1 of 4 outside

**Earlier stages**: sales review: approved by bob at 2026-11-27 09:00 UTC

---
# GMV (`gmv_daily` v1)
"""


def request_payload(**overrides: Any) -> dict[str, Any]:
    payload = {
        "kind": "approval_request",
        "dag_id": "gmv_daily",
        "run_id": "scheduled__2026-11-27T00:00:00+00:00",
        "task_id": "approve_finance_sign_off",
        "try_number": 1,
        "metric_key": "gmv_daily",
        "metric_name": "GMV",
        "period": "2026-11-26",
        "stage": "finance sign-off",
        "stage_number": 2,
        "stages": 2,
        "version": 3,
        "change_note": "Refunds now net of fees.",
        "owner_name": "Alice Wang",
        "approvers": ["Carol Zhang", "Dave Chen"],
        "person": "carol",
        "person_name": "Carol Zhang",
        "slack_user_id": "U0CAROL01",
        "timeout_at": "2026-11-28T10:00:00+00:00",
        "on_timeout": "reject",
        "evidence": EVIDENCE,
        "page_url": f"{BASE_URL}/metrics-center/",
        "actions_url": f"{BASE_URL}/dags/gmv_daily/runs/x/tasks/approve_finance_sign_off/required_actions",
    }
    return {**payload, **overrides}
