"""make_app(): the aiohttp application with its routes, middlewares and typed state."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.helpdesk.integration import Integration
from bridge.web import api, health, hooks, landing
from bridge.web.keys import (
    INTEGRATIONS,
    READINESS,
    SERVICES,
    SESSION_API,
    SETTINGS,
    Readiness,
    Services,
    SessionApi,
    WebSettings,
)
from bridge.web.middleware import request_context

HERE = Path(__file__).resolve().parent


def make_app(
    services: Services,
    integrations: dict[str, Integration],
    settings: WebSettings,
    readiness: Readiness,
    max_body_bytes: int = 65536,
    session_api: SessionApi | None = None,
    serve_metrics: bool = True,
) -> web.Application:
    """Without `session_api` (or with no token in it) the session API answers 403.

    `serve_metrics=False` (metrics.port set): /metrics is on `make_metrics_app` only.
    """
    app = web.Application(middlewares=[request_context], client_max_size=max_body_bytes)
    app[SERVICES] = services
    app[INTEGRATIONS] = integrations
    app[SETTINGS] = settings
    app[READINESS] = readiness
    if session_api is not None:
        app[SESSION_API] = session_api
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
    )
    # Each request brings its own gettext (bridge.web.landing); whitespace in {% trans %} blocks
    # is normalised the same way when the catalogues are extracted (babel.cfg).
    aiohttp_jinja2.get_env(app).policies["ext.i18n.trimmed"] = True
    app[aiohttp_jinja2.static_root_key] = "/static"
    app.add_routes(hooks.routes)
    app.add_routes(landing.routes)
    app.add_routes(health.routes)
    if serve_metrics:
        app.add_routes(health.metrics_routes)
    app.add_routes(api.routes)
    app.router.add_static("/static/", HERE / "static")
    return app


def make_metrics_app() -> web.Application:
    """/metrics alone, for the listener on metrics.bind:metrics.port (kept off the internet)."""
    app = web.Application()
    app.add_routes(health.metrics_routes)
    return app
