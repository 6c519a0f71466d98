"""GET /healthz (alive), /readyz (database, homeserver, sync), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.metrics import REGISTRY
from bridge.web.keys import READINESS

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[READINESS]
    checks = {**readiness.checks, **readiness.notes}
    names = list(checks)
    results = await asyncio.gather(
        *(asyncio.wait_for(checks[name](), 5) for name in names), return_exceptions=True
    )
    report: dict[str, str] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            report[name] = f"failed: {type(result).__name__}"
        else:
            report[name] = result or "ok"
    ready = all(report[name] == "ok" for name in readiness.checks)
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": report},
        status=200 if ready else 503,
    )


# On the public app, or (metrics.port set) on the metrics listener alone.
metrics_routes = web.RouteTableDef()


@metrics_routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(REGISTRY))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
