"""The FastAPI app the plugin mounts at ``/metrics-center``: pages, their JSON API and the chat callbacks.

Airflow imports every plugin in every component — also in each task's process — so importing this
module costs nothing: :func:`lazy_app` builds the real app (FastAPI, Airflow's auth, templates) on the
api-server's first request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Where the plugin mounts the app (its pages link relative to the mount, whatever it is).
URL_PREFIX = "/metrics-center"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def create_app() -> FastAPI:
    """The app, without its own OpenAPI schema or docs (they would be served without auth)."""
    from fastapi import FastAPI

    from metrics_center.web import api, feishu_actions, pages, slack_actions

    app = FastAPI(title="Metrics Center", openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(api.router, prefix="/api")
    app.include_router(pages.router)
    app.include_router(slack_actions.router)
    app.include_router(feishu_actions.router)
    pages.install_error_pages(app)

    @app.middleware("http")
    async def security_headers(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            if name == "cache-control" and request.url.path.startswith(_static_prefix(request)):
                continue
            response.headers.setdefault(name, value)
        return response

    return app


def _static_prefix(request: Any) -> str:
    return f"{request.scope.get('root_path', '')}/static/"


class LazyApp:
    """An ASGI app that builds the real one on its first request (a mount needs only an ASGI callable)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            self._app = self._factory()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def lazy_app() -> LazyApp:
    return LazyApp(create_app)
