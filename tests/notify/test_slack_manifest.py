"""The Slack app manifest asks for exactly the scopes the code needs and points Slack at the plugin's route."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from metrics_center.notify.slack_app import API_METHODS, BOT_SCOPES, INTERACTIONS_PATH

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "docs" / "slack-app-manifest.yaml"
# `client.chat_postMessage(`, `env.client.views_open(` … — slack-sdk's WebClient method names
SLACK_CALL = re.compile(
    r"\.((?:chat|conversations|views|users|reactions|files|pins|bookmarks|team)_[A-Za-z]+)\("
)


def _manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def _readme_scopes() -> set[str]:
    """Every `scope:name` in backticks in README → Notifications."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Notifications", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([a-z]+:[a-z.]+)`", section))


def test_manifest_scopes_equal_what_the_code_needs_and_the_readme_lists():
    scopes = _manifest()["oauth_config"]["scopes"]
    assert scopes["bot"] == list(BOT_SCOPES)  # sorted, no duplicates
    assert "user" not in scopes  # no user token: every call is made as the bot
    assert _readme_scopes() == set(BOT_SCOPES)
    assert set(BOT_SCOPES) == {
        "chat:write",
        "im:write",
        "channels:history",
        "groups:history",
        "im:history",
        "channels:read",
        "groups:read",
    }


def test_every_slack_call_in_the_code_is_declared_with_its_scopes():
    """A new Web API call fails here until slack_app.API_METHODS (and so the manifest) says what it needs."""
    called: dict[str, set[str]] = {}
    for path in (REPO / "src" / "metrics_center").rglob("*.py"):
        for name in SLACK_CALL.findall(path.read_text(encoding="utf-8")):
            family, method = name.split("_", 1)
            called.setdefault(f"{family}.{method}", set()).add(str(path.relative_to(REPO)))
    undeclared = {method: sorted(paths) for method, paths in called.items() if method not in API_METHODS}
    assert not undeclared, (
        f"Slack methods called but not in metrics_center.notify.slack_app.API_METHODS: {undeclared}"
    )
    assert set(API_METHODS) == set(called), "API_METHODS lists methods the code no longer calls"


def test_interactivity_points_at_the_plugin_route_without_socket_mode():
    from fastapi.routing import APIRoute

    from metrics_center.web.app import URL_PREFIX
    from metrics_center.web.slack_actions import router

    settings = _manifest()["settings"]
    interactivity = settings["interactivity"]
    url = urlsplit(interactivity["request_url"])
    assert interactivity["is_enabled"] is True
    assert url.scheme == "https"  # Slack only posts to HTTPS
    assert url.path == INTERACTIONS_PATH
    assert settings["socket_mode_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    posts = [r.path for r in router.routes if isinstance(r, APIRoute) and "POST" in r.methods]
    assert INTERACTIONS_PATH in {URL_PREFIX + path for path in posts}


def test_the_plugin_mounts_the_app_at_the_prefix_the_manifest_uses():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "mc_plugin_for_test", REPO / "plugins" / "metrics_center_plugin.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prefixes = {app["url_prefix"] for app in module.MetricsCenterPlugin.fastapi_apps}
    assert any(INTERACTIONS_PATH.startswith(prefix + "/") for prefix in prefixes)


def test_display_information_fits_slacks_limits():
    manifest = _manifest()
    info = manifest["display_information"]
    assert manifest["_metadata"]["major_version"] == 1
    assert 1 <= len(info["name"]) <= 35
    assert len(info["description"]) <= 140
    assert 174 <= len(info["long_description"]) <= 4000  # Slack refuses a shorter long description
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", info["background_color"])
    assert len(manifest["features"]["bot_user"]["display_name"]) <= 80
