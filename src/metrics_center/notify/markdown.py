"""A Block Kit message read as Markdown: what the channels other than Slack show.

Every message is rendered once, as Block Kit (:mod:`metrics_center.notify.slack`); Feishu cards, DingTalk and
WeCom robots, e-mail and the local inbox read it through :func:`from_blocks`: a title, a Markdown body, the
links, and — for an approval request still waiting — the reference its Approve / Reject buttons carry.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from metrics_center.notify.approval_messages import APPROVE_ACTION
from metrics_center.notify.blocks import Message

_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]+))?>")
_BOLD = re.compile(r"(?<![\w*\\])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")


@dataclass(frozen=True)
class Rich:
    """One message in channel-neutral terms."""

    title: str
    markdown: str  #: the body, without the title
    text: str  #: the plain fallback
    links: list[tuple[str, str]] = field(default_factory=list)  #: (label, url) of the link buttons
    approval_ref: str | None = None  #: the encoded ``ActionRef`` of a waiting request's buttons
    locale: str | None = None  #: the language it was rendered in (labels added later follow it)


def from_blocks(message: Message, *, locale: str | None = None) -> Rich:
    """Title (the first header), Markdown body, links and approval reference of a Block Kit message."""
    title = ""
    parts: list[str] = []
    links: list[tuple[str, str]] = []
    approval_ref: str | None = None
    for block in message.blocks:
        kind = block.get("type")
        if kind == "header":
            text = str((block.get("text") or {}).get("text") or "")
            if not title:
                title = text
            else:
                parts.append(f"**{text}**")
        elif kind == "section":
            text = (block.get("text") or {}).get("text")
            if text:
                parts.append(markdown_of(str(text)))
            for f in block.get("fields") or []:
                parts.append(markdown_of(str(f.get("text") or "")))
        elif kind == "context":
            notes = [
                markdown_of(str(e.get("text") or "")) for e in block.get("elements") or [] if e.get("text")
            ]
            if notes:
                parts.append(" · ".join(notes))
        elif kind == "divider":
            parts.append("---")
        elif kind == "actions":
            for element in block.get("elements") or []:
                label = str((element.get("text") or {}).get("text") or "")
                if element.get("url"):
                    links.append((label, str(element["url"])))
                elif element.get("action_id") == APPROVE_ACTION and element.get("value"):
                    approval_ref = str(element["value"])
    if not title:
        title = plain_of(message.text.split("\n", 1)[0])[:120] or "Metrics Center"
    return Rich(
        title=title,
        markdown="\n\n".join(p for p in parts if p),
        text=plain_of(message.text),
        links=links,
        approval_ref=approval_ref,
        locale=locale,
    )


def markdown_of(mrkdwn: str) -> str:
    """Slack ``mrkdwn`` → CommonMark: links, bold, strike; Slack's HTML escapes undone."""
    text = _LINK.sub(lambda m: f"[{m.group(2) or m.group(1)}]({m.group(1)})", mrkdwn)
    text = _BOLD.sub(r"**\1**", text)
    text = _STRIKE.sub(r"~~\1~~", text)
    return html.unescape(text)


def plain_of(mrkdwn: str) -> str:
    """Slack ``mrkdwn`` → plain text (links as ``label (url)``)."""
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2) else m.group(1), mrkdwn)
    text = _BOLD.sub(r"\1", text)
    return html.unescape(text)


def html_of(rich: Rich) -> str:
    """A small HTML e-mail body: the title, the body's paragraphs (bold, code and links kept), the links."""
    paragraphs = []
    for block in rich.markdown.split("\n\n"):
        if block.strip() == "---":
            paragraphs.append("<hr>")
            continue
        lines = [_inline_html(line) for line in block.split("\n")]
        paragraphs.append(f"<p>{'<br>'.join(lines)}</p>")
    links = "".join(
        f'<p><a href="{html.escape(url, quote=True)}">{html.escape(label)}</a></p>'
        for label, url in rich.links
    )
    return (
        '<!doctype html><html><body style="font-family:sans-serif">'
        f"<h2>{html.escape(rich.title)}</h2>{''.join(paragraphs)}{links}</body></html>"
    )


_MD_LINK = re.compile(r"\[([^\]]+)\]\(((?:https?|mailto):[^)\s]+)\)")
_MD_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_MD_CODE = re.compile(r"`([^`]+)`")


def _inline_html(line: str) -> str:
    # Escape first, then turn the three Markdown forms we emit into tags (their parts are escaped already).
    text = html.escape(line, quote=False)
    text = _MD_LINK.sub(
        lambda m: f'<a href="{html.escape(html.unescape(m.group(2)), quote=True)}">{m.group(1)}</a>', text
    )
    text = _MD_BOLD.sub(r"<b>\1</b>", text)
    return _MD_CODE.sub(r"<code>\1</code>", text)
