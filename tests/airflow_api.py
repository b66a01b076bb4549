"""Logging in to Airflow's REST API as a test user (passwords ``<user>-pw``, see conftest)."""

from __future__ import annotations

PREFIX = "/metrics-center"  # the plugin app's mount point


def token(client, user: str) -> str:
    response = client.post("/auth/token", json={"username": user, "password": f"{user}-pw"})
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def bearer(client, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(client, user)}"}
