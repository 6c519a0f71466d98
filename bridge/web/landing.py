"""The customer's landing page. The invite token lives in the URL fragment and POST bodies only.

GET never spends an invite (link scanners open links); `POST /i/lookup` only looks,
`POST /i/redeem` spends it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import structlog
from aiohttp import web

from bridge import metrics
from bridge.errors import InviteGone, MatrixIdInvalid, PayloadInvalid, SealroomError
from bridge.web.keys import SESSIONS, SETTINGS, WebSettings

log = structlog.stdlib.get_logger(__name__)
routes = web.RouteTableDef()


@routes.get("/i")
@aiohttp_jinja2.template("landing.html")
async def landing_page(request: web.Request) -> dict[str, Any]:
    return {"server_name": request.app[SETTINGS].server_name}


async def _json_body(request: web.Request, *fields: str) -> dict[str, str]:
    """JSON only: a cross-site form cannot send it without a CORS preflight we never allow."""
    if request.content_type != "application/json":
        raise PayloadInvalid("Send the request as application/json.")
    try:
        data = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PayloadInvalid("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise PayloadInvalid("The body must be a JSON object.")
    missing = [f for f in fields if not isinstance(data.get(f), str)]
    if missing:
        raise PayloadInvalid(f"Missing field: {', '.join(missing)}.", missing)
    return {f: data[f] for f in fields}


@routes.post("/i/lookup")
async def lookup_invite(request: web.Request) -> web.Response:
    data = await _json_body(request, "token")
    view = await request.app[SESSIONS].view_invite(data["token"])
    return web.json_response(
        {
            "ticket_ref": view.ticket_ref,
            "subject": view.subject,
            "expires_at": view.expires_at.isoformat(),
        }
    )


def room_links(settings: WebSettings, room_alias: str) -> dict[str, str | None]:
    encoded = quote(room_alias, safe="")
    web_client = None
    if settings.web_client_template:
        web_client = settings.web_client_template.replace("{room}", encoded)
    return {"matrix_to_url": f"https://matrix.to/#/{encoded}", "web_client_url": web_client}


@routes.post("/i/redeem")
async def redeem_invite(request: web.Request) -> web.Response:
    data = await _json_body(request, "token", "user_id")
    try:
        redeemed = await request.app[SESSIONS].redeem(data["token"], data["user_id"])
    except (InviteGone, MatrixIdInvalid) as err:
        metrics.REDEEMS.labels(err.errcode.lower()).inc()
        raise
    except SealroomError:
        metrics.REDEEMS.labels("error").inc()
        raise
    metrics.REDEEMS.labels("redeemed").inc()
    settings = request.app[SETTINGS]
    return web.json_response(
        {
            "user_id": redeemed.user_id,
            "room_alias": redeemed.room_alias,
            "room_id": redeemed.room_id,
            "homeserver": settings.homeserver_url,
            **room_links(settings, redeemed.room_alias),
        }
    )
