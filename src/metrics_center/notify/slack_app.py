"""The Slack app Metrics Center needs: the Web API methods it calls, their bot scopes, the interactivity URL.

One source of truth for ``docs/slack-app-manifest.yaml`` and README → Notifications (a test compares all three
and scans the code for Slack calls missing here). No imports: safe anywhere.
"""

from __future__ import annotations

#: Every Slack Web API method the code calls with the bot token → the bot scopes it needs, and why.
API_METHODS: dict[str, tuple[tuple[str, ...], str]] = {
    "chat.postMessage": (("chat:write",), "alerts, approval requests, reminders, change broadcasts"),
    "chat.update": (("chat:write",), "edit requests in place once a stage is answered"),
    "chat.postEphemeral": (("chat:write",), "a private reply to the clicker when response_url is unusable"),
    "conversations.open": (("im:write",), "direct messages to people with a slack_user_id"),
    "conversations.list": (
        ("channels:read", "groups:read"),
        "find a #channel by name for the duplicate check",
    ),
    "conversations.history": (
        ("channels:history", "groups:history", "im:history"),
        "the duplicate check after an interrupted delivery (public, private channels and DMs)",
    ),
    # trigger_id grants it: no scope
    "views.open": ((), "the Reject… reason form"),
}

#: The bot token scopes: exactly what :data:`API_METHODS` needs, sorted.
BOT_SCOPES: tuple[str, ...] = tuple(sorted({s for scopes, _why in API_METHODS.values() for s in scopes}))

#: Where Slack posts button clicks and the reason form: the plugin's mount + the Slack router's route.
INTERACTIONS_PATH = "/metrics-center/slack/interactions"
