"""Feishu / Lark interactive cards (card JSON 2.0) from a channel-neutral message.

A waiting approval request becomes a card with the evidence, a reason field and **Approve** / **Reject**
buttons that submit the form to the card-action callback (``card.action.trigger``, handled by
:mod:`metrics_center.web.feishu_actions`); their ``value`` carries the same reference as Slack's buttons.
Every other message is a card with the Markdown body and its links as buttons.
"""

from __future__ import annotations

from typing import Any

from metrics_center.i18n.translate import _, using
from metrics_center.notify.markdown import Rich

APPROVE = "approve"
REJECT = "reject"
#: The name of the reason field inside the answer form (read back from ``form_value``).
REASON_FIELD = "reason"
#: Feishu refuses cards over 30 KB; the body is cut well before.
MAX_MARKDOWN = 12_000


def card(rich: Rich, *, token: str | None = None) -> dict[str, Any]:
    """The card for ``rich`` (its labels in ``rich.locale``); ``token`` (the delivery token) is shown small at
    the bottom for support."""
    with using(rich.locale):
        return _card(rich, token=token)


def _card(rich: Rich, *, token: str | None) -> dict[str, Any]:
    body = (
        rich.markdown if len(rich.markdown) <= MAX_MARKDOWN else rich.markdown[:MAX_MARKDOWN] + "\n\n… (cut)"
    )
    elements: list[dict[str, Any]] = [{"tag": "markdown", "content": body or rich.text}]
    if rich.approval_ref:
        elements.append(answer_form(rich.approval_ref))
    for label, url in rich.links:
        elements.append(
            {
                "tag": "button",
                "text": {"tag": "plain_text", "content": label},
                "type": "default",
                "behaviors": [{"type": "open_url", "default_url": url}],
            }
        )
    if token:
        elements.append(
            {
                "tag": "markdown",
                "content": f"<font color='grey'>ref {token[:12]}</font>",
                "text_size": "notation",
            }
        )
    return {
        "schema": "2.0",
        # Every recipient sees the same card, so an update after the decision reaches all of them.
        "config": {"update_multi": True, "width_mode": "fill"},
        "header": {
            "title": {"tag": "plain_text", "content": rich.title[:100]},
            "template": "orange" if rich.approval_ref else "blue",
        },
        "body": {"elements": elements},
    }


def answer_form(ref: str) -> dict[str, Any]:
    """The reason field and the two submit buttons of a waiting request."""
    return {
        "tag": "form",
        "name": "answer",
        "elements": [
            {
                "tag": "input",
                "name": REASON_FIELD,
                "placeholder": {"tag": "plain_text", "content": _("Reason (required to reject)")},
                "max_length": 1000,
            },
            {
                "tag": "column_set",
                "columns": [
                    {
                        "tag": "column",
                        "width": "auto",
                        "elements": [_submit(_("Approve"), APPROVE, ref, "primary")],
                    },
                    {
                        "tag": "column",
                        "width": "auto",
                        "elements": [_submit(_("Reject"), REJECT, ref, "danger")],
                    },
                ],
            },
        ],
    }


def _submit(label: str, action: str, ref: str, style: str) -> dict[str, Any]:
    return {
        "tag": "button",
        "name": action,
        "text": {"tag": "plain_text", "content": label},
        "type": style,
        "form_action_type": "submit",
        "behaviors": [{"type": "callback", "value": {"action": action, "ref": ref}}],
    }


def notice_card(title: str, markdown: str, *, template: str = "blue") -> dict[str, Any]:
    """A small card telling one person something (a refused click, a recorded answer)."""
    return {
        "schema": "2.0",
        "header": {"title": {"tag": "plain_text", "content": title[:100]}, "template": template},
        "body": {"elements": [{"tag": "markdown", "content": markdown}]},
    }
