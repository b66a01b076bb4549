"""The local inbox: what each channel would have received, written to files instead of sent.

With ``METRICS_CENTER_INBOX`` set (``make demo`` sets it), a channel without a connection delivers into
``<inbox>/<channel>.jsonl`` — one JSON line per message: when, to which address, the title, the Markdown
a person would read, and ``wire``: the exact body the platform's API would have been sent (the Feishu
card, the DingTalk / WeCom robot message) — and appends the readable form to ``<inbox>/<channel>.md``.
``metrics-center notifications inbox`` prints it. The outbox treats it like any channel: written once per
group (a token already in the file counts as delivered after an interruption).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metrics_center.notify.blocks import Item
from metrics_center.notify.markdown import Rich, from_blocks
from metrics_center.notify.outcomes import Outcome, Posted
from metrics_center.notify.slack import render_group

_LOCK = threading.Lock()


@dataclass
class InboxChannel:
    """Stands in for channel ``name``; ``wire`` builds the body that channel would send."""

    name: str
    folder: Path
    wire: Callable[[Rich, str], Any] = field(default=lambda rich, token: None)
    interval: float = 0.0
    searchable: bool = True
    idempotent: bool = False

    def render(self, items: Sequence[Item], *, base_url: str | None, locale: str | None = None) -> Rich:
        return from_blocks(render_group(items, base_url=base_url, locale=locale), locale=locale)

    def post(self, *, address: str, message: Rich, token: str) -> Outcome:
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "channel": self.name,
            "address": address,
            "token": token,
            "title": message.title,
            "markdown": message.markdown,
            "links": [{"label": label, "url": url} for label, url in message.links],
            "wire": self.wire(message, token),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with _LOCK:
            with (self.folder / f"{self.name}.jsonl").open("a", encoding="utf-8") as out:
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            with (self.folder / f"{self.name}.md").open("a", encoding="utf-8") as out:
                out.write(readable(entry))
        return Posted(channel=address, ts=token)

    def edit(self, *, conversation: str, message_id: str, address: str, message: Rich) -> Outcome:
        return self.post(address=address, message=message, token=f"{message_id}+edit")

    def find(
        self, *, address: str, conversation: str | None, token: str, since: datetime | None
    ) -> Posted | None:
        path = self.folder / f"{self.name}.jsonl"
        if not path.is_file():
            return None
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and json.loads(line).get("token") == token:
                return Posted(channel=address, ts=token)
        return None


def readable(entry: dict[str, Any]) -> str:
    links = "".join(f"\n[{link['label']}]({link['url']})" for link in entry.get("links") or [])
    return (
        f"\n---\n**{entry['channel']} → {entry['address']}** · {entry['at']}\n\n"
        f"### {entry['title']}\n\n{entry['markdown']}{links}\n"
    )


def read_inbox(folder: Path, *, channel: str | None = None) -> list[dict[str, Any]]:
    """Every message in the inbox (of one channel), oldest first."""
    entries: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        if channel and path.stem != channel:
            continue
        entries += [
            json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    return sorted(entries, key=lambda e: e["at"])
