"""Slack interactions: ``POST /metrics-center/slack/interactions`` (Approve / Reject buttons, the reason modal)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
