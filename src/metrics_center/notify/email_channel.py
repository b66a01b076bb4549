"""E-mail as a :class:`~metrics_center.notify.channels.Channel`, through Airflow's SMTP provider.

For people and departments with no chat address (or whose ``notify:`` names ``email``): the same evidence
as the chat message, as HTML, with the links. The connection is ``metrics_center_smtp`` (host, port,
login, password; extra ``from_email``); its ``retry_limit`` is forced to 0, since a retried ``sendmail``
after the server took the message would send it twice — the outbox retries instead.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from metrics_center import settings
from metrics_center.notify.blocks import Item
from metrics_center.notify.markdown import Rich, from_blocks, html_of
from metrics_center.notify.outcomes import Failed, Outcome, Posted
from metrics_center.notify.slack import render_group


@dataclass
class EmailChannel:
    #: The SMTP connection, looked up by the caller (one thread); the sending threads only read it.
    connection: Any
    interval: float = 0.2
    name: str = "email"
    searchable: bool = False
    idempotent: bool = False

    def render(self, items: Sequence[Item], *, base_url: str | None, locale: str | None = None) -> Rich:
        return from_blocks(render_group(items, base_url=base_url, locale=locale), locale=locale)

    def post(self, *, address: str, message: Rich, token: str) -> Outcome:
        try:
            with _once_hook(self.connection)(smtp_conn_id=self.connection.conn_id) as hook:
                hook.send_email_smtp(
                    to=address,
                    subject=f"[Metrics Center] {message.title}",
                    html_content=html_of(message),
                    custom_headers={"X-Metrics-Center-Ref": token},
                )
        except smtplib.SMTPRecipientsRefused as exc:
            return Failed(error=f"the mail server refused {address}: {exc}", certain=True)
        except (smtplib.SMTPConnectError, ConnectionRefusedError) as exc:
            return Failed(error=f"cannot reach the mail server ({type(exc).__name__})", certain=True)
        except Exception as exc:  # a dropped connection after DATA: it may have been sent
            return Failed(
                error=f"e-mail not confirmed ({type(exc).__name__}: {str(exc)[:200]})", certain=False
            )
        return Posted(channel=address, ts=token)

    def edit(self, *, conversation: str, message_id: str, address: str, message: Rich) -> Outcome:
        return self.post(address=address, message=message, token=message_id)

    def find(
        self, *, address: str, conversation: str | None, token: str, since: datetime | None
    ) -> Posted | None:
        return None


def _once_hook(connection: Any) -> type:
    """Airflow's ``SmtpHook`` on ``connection`` (no look-up in the sending thread), never retrying
    ``sendmail`` itself."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    class OnceSmtpHook(SmtpHook):
        @property
        def smtp_retry_limit(self) -> int:
            return 0

        @classmethod
        def get_connection(cls, conn_id: str) -> Any:
            return connection

    return OnceSmtpHook


def smtp_connection(conn_id: str = settings.SMTP_CONN_ID) -> Any | None:
    """The SMTP connection, or None when there is none."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
