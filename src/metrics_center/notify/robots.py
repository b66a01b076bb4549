"""DingTalk and WeCom (企业微信) group robots: webhook messages, signed where the platform signs.

Both are :class:`~metrics_center.notify.channels.Channel` s whose address is the *Airflow connection id*
of one group's robot (``dingtalk_webhook`` / ``wecom_webhook`` in ``_teams.yaml``); the secrets live in
the connection:

- DingTalk: ``password`` = the robot's ``access_token``; extra ``secret`` = its ``SEC…`` signing secret
  (the "加签" security setting: ``sign = base64(HmacSHA256(secret, timestamp + "\\n" + secret))``); extra
  ``keyword`` when the robot's "自定义关键词" setting needs one (added to messages that lack it);
  ``host`` only to point elsewhere than ``https://oapi.dingtalk.com``.
- WeCom: ``password`` = the webhook ``key``; ``host`` as above (``https://qyapi.weixin.qq.com``).

Robots cannot edit a message or be asked what they received: an approval decided is posted as a new
message, and an unknown outcome is sent again (see :mod:`metrics_center.notify.channels`). Approval
requests carry a link straight to the stage on the Metrics Center page (robots have no callbacks).

``apache-airflow-providers-dingding`` is not used: it predates signed robots and Airflow 3.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from metrics_center.notify.blocks import Item
from metrics_center.notify.markdown import Rich, from_blocks
from metrics_center.notify.outcomes import Failed, Outcome, Posted, RateLimited
from metrics_center.notify.slack import render_group

#: Seconds the platforms get to answer.
HTTP_TIMEOUT = 20
#: Both robots allow 20 messages a minute per group: one every 3 s, with a little room.
ROBOT_INTERVAL = 3.2
#: DingTalk's markdown text and WeCom's content are limited (4,096 bytes for WeCom): cut before.
MAX_TEXT_BYTES = 3900


@dataclass(frozen=True)
class RobotTarget:
    """One robot's webhook, read from its Airflow connection."""

    url: str
    secret: str | None = None
    keyword: str | None = None


def robot_target(conn_id: str, *, default_host: str, path: str, token_param: str) -> RobotTarget:
    """The webhook of the robot in connection ``conn_id``; ``LookupError`` naming the fix when unusable."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException as exc:
        raise LookupError(
            f"the Airflow connection {conn_id!r} named in _teams.yaml does not exist: add it (password = the "
            "robot's token or key)"
        ) from exc
    if not conn.password:
        raise LookupError(f"the Airflow connection {conn_id!r} has no password: set the robot's token or key")
    host = (conn.host or default_host).rstrip("/")
    if "://" not in host:
        host = f"https://{host}" + (f":{conn.port}" if conn.port else "")
    extra = conn.extra_dejson
    url = f"{host}{path}?{urllib.parse.urlencode({token_param: conn.password})}"
    return RobotTarget(url=url, secret=extra.get("secret") or None, keyword=extra.get("keyword") or None)


def dingtalk_sign(secret: str, *, timestamp_ms: int) -> str:
    """DingTalk's robot signature: ``base64(HmacSHA256(secret, f"{timestamp}\\n{secret}"))``."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def robot_markdown(rich: Rich, *, keyword: str | None = None, ref: str | None = None) -> str:
    """The Markdown body both robots show: title, body, links, and the delivery reference."""
    lines = [f"#### {rich.title}", rich.markdown]
    lines += [f"[{label}]({url})" for label, url in rich.links]
    if ref:
        lines.append(f"<font color='comment'>ref {ref[:12]}</font>")
    text = "\n\n".join(line for line in lines if line)
    if keyword and keyword not in text:
        text += f"\n\n{keyword}"
    return cut_bytes(text, MAX_TEXT_BYTES)


def cut_bytes(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 20].decode(errors="ignore") + "\n\n… (cut)"


class _Robot(abc.ABC):
    """What the two robots share: rendering, posting JSON, classifying the answer."""

    name: ClassVar[str]
    platform: ClassVar[str]
    #: Error codes that mean "too fast", with the seconds to wait.
    rate_limit_codes: ClassVar[dict[int, float]]
    #: What to fix for the other error codes we know.
    fixes: ClassVar[dict[int, str]]
    searchable = False
    idempotent = False

    def __init__(self, *, interval: float = ROBOT_INTERVAL) -> None:
        self.interval = interval
        # Connections are looked up once per delivery call, in the calling thread: a task's channel to
        # Airflow (which answers connection look-ups) is not safe to share between the sending threads.
        self._targets: dict[str, RobotTarget | LookupError] = {}
        self._lock = threading.Lock()

    def resolved(self, conn_id: str) -> RobotTarget:
        """The robot of ``conn_id`` (looked up once); ``LookupError`` naming the fix when unusable."""
        with self._lock:
            found = self._targets.get(conn_id)
            if found is None:
                try:
                    found = self.target(conn_id)
                except LookupError as exc:
                    found = exc
                self._targets[conn_id] = found
        if isinstance(found, LookupError):
            raise found
        return found

    def render(self, items: Sequence[Item], *, base_url: str | None, locale: str | None = None) -> Rich:
        return from_blocks(render_group(items, base_url=base_url, locale=locale), locale=locale)

    def edit(self, *, conversation: str, message_id: str, address: str, message: Rich) -> Outcome:
        return self.post(address=address, message=message, token=message_id)

    def find(
        self, *, address: str, conversation: str | None, token: str, since: datetime | None
    ) -> Posted | None:
        return None

    def post(self, *, address: str, message: Rich, token: str) -> Outcome:
        try:
            target = self.resolved(address)
        except LookupError as exc:
            return Failed(error=f"{self.platform}: {exc}", certain=True)
        url, body = self.request(target, message, token=token)
        return self.send(url, body, address=address, token=token)

    @abc.abstractmethod
    def target(self, conn_id: str) -> RobotTarget:
        """The robot of connection ``conn_id``; ``LookupError`` naming the fix when unusable."""

    @abc.abstractmethod
    def request(self, target: RobotTarget, message: Rich, *, token: str) -> tuple[str, dict[str, Any]]:
        """The URL (signed where the platform signs) and the JSON body of one message."""

    @abc.abstractmethod
    def body(self, message: Rich, *, token: str, keyword: str | None = None) -> dict[str, Any]:
        """The JSON body of one message (also what the local inbox shows)."""

    def unready(self, conn_id: str) -> str | None:
        """Why messages to this robot wait (its connection is missing or empty), or None to send them."""
        try:
            self.resolved(conn_id)
        except LookupError as exc:
            return f"{self.platform} messages to {conn_id!r} stay pending: {exc}"
        return None

    def configured(self, conn_id: str) -> bool:
        try:
            self.resolved(conn_id)
        except LookupError:
            return False
        return True

    def send(self, url: str, body: dict[str, Any], *, address: str, token: str) -> Outcome:
        import requests

        try:
            response = requests.post(url, json=body, timeout=HTTP_TIMEOUT)
        except requests.ConnectionError as exc:
            refused = isinstance(getattr(exc, "__context__", None), ConnectionRefusedError) or (
                "Connection refused" in str(exc)
            )
            return Failed(error=f"cannot reach {self.platform} ({type(exc).__name__})", certain=refused)
        except requests.RequestException as exc:  # timeouts: the robot may have posted it
            return Failed(
                error=f"no answer from {self.platform} ({type(exc).__name__}); it may have posted the message",
                certain=False,
            )
        if response.status_code == 429:
            return RateLimited(retry_after=_retry_after(response.headers), reason="HTTP 429")
        if response.status_code >= 500:
            return Failed(
                error=f"{self.platform} answered HTTP {response.status_code}; it may have posted the message",
                certain=False,
            )
        try:
            data = response.json()
        except ValueError:
            return Failed(
                error=f"{self.platform} answered HTTP {response.status_code} without JSON: check the connection's host",
                certain=True,
            )
        return self.outcome(data, address=address, token=token)

    def outcome(self, data: dict[str, Any], *, address: str, token: str) -> Outcome:
        code = int(data.get("errcode", -1))
        if code == 0:
            return Posted(channel=address, ts=token)
        wait = self.rate_limit_codes.get(code)
        if wait is not None:
            return RateLimited(retry_after=wait, reason=f"errcode {code}")
        fix = self.fixes.get(code, "see the robot's documentation for this error code")
        return Failed(
            error=f"{self.platform} refused the message to {address}: {code} {str(data.get('errmsg'))[:200]} — {fix}",
            certain=True,
        )


class DingTalkRobot(_Robot):
    name = "dingtalk"
    platform = "DingTalk"
    # 130101: more than 20 a minute; 410100: limited for 10 minutes after a burst.
    rate_limit_codes: ClassVar[dict[int, float]] = {130101: 60.0, 410100: 600.0}
    fixes: ClassVar[dict[int, str]] = {
        310000: "the robot's security settings refused it: check the connection's secret (加签), the "
        "keyword extra (自定义关键词) or the IP allow-list",
        300001: "the access_token is wrong: copy the robot's webhook token into the connection's password",
        400102: "the robot is disabled: enable it in the group's settings",
        400105: "this kind of message is not allowed for the robot",
    }

    def target(self, conn_id: str) -> RobotTarget:
        return robot_target(
            conn_id, default_host="https://oapi.dingtalk.com", path="/robot/send", token_param="access_token"
        )

    def request(self, target: RobotTarget, message: Rich, *, token: str) -> tuple[str, dict[str, Any]]:
        url = target.url
        if target.secret:
            stamp = int(time.time() * 1000)
            signed = {"timestamp": stamp, "sign": dingtalk_sign(target.secret, timestamp_ms=stamp)}
            url += "&" + urllib.parse.urlencode(signed)
        return url, self.body(message, token=token, keyword=target.keyword)

    def body(self, message: Rich, *, token: str, keyword: str | None = None) -> dict[str, Any]:
        """The robot message: an ``actionCard`` with a button per link, else ``markdown``."""
        text = robot_markdown(message, keyword=keyword, ref=token)
        if message.links:
            buttons = [{"title": label, "actionURL": url} for label, url in message.links]
            card = {"title": message.title, "text": text, "btnOrientation": "1", "btns": buttons}
            return {"msgtype": "actionCard", "actionCard": card}
        return {"msgtype": "markdown", "markdown": {"title": message.title, "text": text}}


class WeComRobot(_Robot):
    name = "wecom"
    platform = "WeCom"
    # 45009: api freq out of limit (20 a minute per robot).
    rate_limit_codes: ClassVar[dict[int, float]] = {45009: 60.0}
    fixes: ClassVar[dict[int, str]] = {
        93000: "the webhook key is wrong or the robot was removed: copy the key into the connection's password",
        40058: "the message is malformed: report it with the notification ids",
        44004: "the message is empty: report it with the notification ids",
    }

    def target(self, conn_id: str) -> RobotTarget:
        return robot_target(
            conn_id,
            default_host="https://qyapi.weixin.qq.com",
            path="/cgi-bin/webhook/send",
            token_param="key",
        )

    def request(self, target: RobotTarget, message: Rich, *, token: str) -> tuple[str, dict[str, Any]]:
        return target.url, self.body(message, token=token)

    def body(self, message: Rich, *, token: str, keyword: str | None = None) -> dict[str, Any]:
        """The robot message: ``markdown`` (WeCom's robots show links inside it)."""
        content = robot_markdown(message, keyword=keyword, ref=token)
        return {"msgtype": "markdown", "markdown": {"content": content}}


def _retry_after(headers: Any) -> float:
    try:
        return max(float(headers.get("Retry-After", 60)), 1.0)
    except (TypeError, ValueError):
        return 60.0


class RobotOrInbox:
    """A robot whose connection is missing writes to the local inbox instead (demo, first try-out)."""

    def __init__(self, robot: _Robot, inbox: Any) -> None:
        self.robot, self.inbox = robot, inbox
        self.name, self.interval = robot.name, robot.interval
        self.searchable, self.idempotent = False, False

    def render(self, items: Sequence[Item], *, base_url: str | None, locale: str | None = None) -> Rich:
        return self.robot.render(items, base_url=base_url, locale=locale)

    def unready(self, address: str) -> str | None:
        self.robot.configured(address)  # looked up now, in the calling thread
        return None

    def post(self, *, address: str, message: Rich, token: str) -> Outcome:
        target = self.robot if self.robot.configured(address) else self.inbox
        return target.post(address=address, message=message, token=token)

    def edit(self, *, conversation: str, message_id: str, address: str, message: Rich) -> Outcome:
        return self.post(address=address, message=message, token=message_id)

    def find(
        self, *, address: str, conversation: str | None, token: str, since: datetime | None
    ) -> Posted | None:
        return None
