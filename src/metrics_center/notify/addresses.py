"""Who is reached where: a department's or person's addresses per channel, from ``_teams.yaml``.

A recipient may have several (a Slack channel *and* a Feishu chat *and* a DingTalk robot); each message
kind goes to the channels its ``notify:`` entry names, else to every configured chat channel. E-mail is
the fallback for someone with no chat address at all (or when ``notify:`` names it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metrics_center.definitions.spec import Department, MetricSpec, Person, Teams

#: Chat channels in the order messages are written to the outbox (and shown in reports).
CHAT_CHANNELS = ("slack", "feishu", "dingtalk", "wecom")
EMAIL = "email"


@dataclass(frozen=True)
class Recipient:
    """Who is told: a department (its group chats) or a person (direct messages), by channel.

    ``addresses`` maps a channel to that channel's address; empty when ``_teams.yaml`` knows none (the
    row then waits, unaddressed, for one). ``routes``: the ``notify:`` entry, message kind → channels.
    """

    name: str
    addresses: Mapping[str, str] = field(default_factory=dict)
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The language they read (``locale:`` of the person, else of their department); None: English.
    locale: str | None = None

    @classmethod
    def at(
        cls, name: str, address: str | None, *, channel: str = "slack", locale: str | None = None
    ) -> Recipient:
        """A recipient with one address (or none) on one channel."""
        return cls(name=name, addresses={channel: address} if address else {}, locale=locale)

    def for_kind(self, kind: str) -> dict[str, str]:
        """The addresses a message of ``kind`` goes to."""
        route = self.routes.get("approval_request" if kind == "approval_update" else kind)
        if route is not None:
            return {c: a for c, a in self.addresses.items() if c in route}
        chats = {c: a for c, a in self.addresses.items() if c != EMAIL}
        if chats:
            return chats
        return {c: a for c, a in self.addresses.items() if c == EMAIL}


def department_recipient(teams: Teams | None, key: str) -> Recipient:
    """A department's group chats (and e-mail list)."""
    department = teams.departments.get(key) if teams else None
    if department is None:
        return Recipient(name=key)
    return Recipient(
        name=key,
        addresses=_department_addresses(department),
        routes=_routes(department),
        locale=department.locale,
    )


def metric_department_recipient(spec: MetricSpec, teams: Teams | None) -> Recipient:
    """The metric's department."""
    return department_recipient(teams, spec.department)


def person_recipient(
    teams: Teams | None, key: str, *, fallback_departments: tuple[str, ...] = ()
) -> Recipient:
    """A person's direct messages; without a chat id of their own, the group chats of the first of their
    department and ``fallback_departments`` that has one; without any chat, their e-mail. Always addressed
    *to the person*, so that a chat id added later reaches rows still waiting."""
    person = teams.people.get(key) if teams else None
    if person is None or teams is None:
        return Recipient(name=key)
    own = _person_addresses(person)
    home = teams.departments.get(person.department)
    locale = person.locale or (home.locale if home is not None else None)
    if _chats(own):
        return Recipient(name=key, addresses=own, routes=_routes(person), locale=locale)
    for department_key in (person.department, *fallback_departments):
        department = teams.departments.get(department_key)
        if department is not None and (chats := _chats(_department_addresses(department))):
            routes = _routes(person) or _routes(department)
            return Recipient(name=key, addresses=chats, routes=routes, locale=locale)
    return Recipient(name=key, addresses=own, routes=_routes(person), locale=locale)


def current_addresses(teams: Teams) -> dict[tuple[str, str], str]:
    """``(recipient, channel)`` → address for every person and department: to address rows written before
    ``_teams.yaml`` knew them."""
    found: dict[tuple[str, str], str] = {}
    for key, department in teams.departments.items():
        for channel, address in _department_addresses(department).items():
            found[(key, channel)] = address
    for key, person in teams.people.items():
        for channel, address in _person_addresses(person).items():
            found[(key, channel)] = address
    return found


def _department_addresses(department: Department) -> dict[str, str]:
    found = {
        "slack": department.slack_channel,
        "feishu": department.feishu_chat_id,
        "dingtalk": department.dingtalk_webhook,
        "wecom": department.wecom_webhook,
        EMAIL: department.email,
    }
    return {channel: address for channel, address in found.items() if address}


def _person_addresses(person: Person) -> dict[str, str]:
    found = {
        "slack": person.slack_user_id,
        "feishu": person.feishu_open_id or person.feishu_union_id,
        EMAIL: person.email,
    }
    return {channel: address for channel, address in found.items() if address}


def _chats(addresses: dict[str, str]) -> dict[str, str]:
    return {channel: address for channel, address in addresses.items() if channel != EMAIL}


def _routes(who: Department | Person) -> dict[str, tuple[str, ...]]:
    return {kind: tuple(channels) for kind, channels in who.notify.items()}
