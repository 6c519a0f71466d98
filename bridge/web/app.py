"""make_app(): the aiohttp application with its routes, middlewares and typed state."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.helpdesk.integration import Integration
from bridge.web import health, hooks, landing
from bridge.web.keys import (
    INTEGRATIONS,
    READINESS,
    SERVICES,
    SETTINGS,
    Readiness,
    Services,
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
) -> web.Application:
    app = web.Application(middlewares=[request_context], client_max_size=max_body_bytes)
    app[SERVICES] = services
    app[INTEGRATIONS] = integrations
    app[SETTINGS] = settings
    app[READINESS] = readiness
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app[aiohttp_jinja2.static_root_key] = "/static"
    app.add_routes(hooks.routes)
    app.add_routes(landing.routes)
    app.add_routes(health.routes)
    app.router.add_static("/static/", HERE / "static")
    return app
