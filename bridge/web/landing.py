"""The customer's landing page. The invite token lives in the URL fragment and POST bodies only.

GET never spends an invite (link scanners open links); `POST /i/lookup` only looks,
`POST /i/redeem` spends it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import structlog
from aiohttp import web

from bridge import metrics
from bridge.errors import (
    InviteGone,
    MatrixIdInvalid,
    MatrixUserUnknown,
    PayloadInvalid,
    SealroomError,
)
from bridge.invites import Redeemed
from bridge.web.keys import SERVICES, SETTINGS, WebSettings

log = structlog.stdlib.get_logger(__name__)
routes = web.RouteTableDef()


@routes.get("/i")
@aiohttp_jinja2.template("landing.html")
async def landing_page(request: web.Request) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    return {
        "server_name": settings.server_name,
        "registration_enabled": settings.registration_enabled,
        "homeserver_url": settings.homeserver_browser_url,
        "password_min_length": settings.password_min_length,
    }


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
    view = await request.app[SERVICES].invites.view(data["token"])
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


def _redeemed_answer(request: web.Request, redeemed: Redeemed) -> web.Response:
    settings = request.app[SETTINGS]
    return web.json_response(
        {
            "user_id": redeemed.user_id,
            "room_alias": redeemed.room_alias,
            "room_id": redeemed.room_id,
            "homeserver": settings.homeserver_browser_url or settings.homeserver_url,
            **room_links(settings, redeemed.room_alias),
        }
    )


async def _counted(outcome: Awaitable[Redeemed]) -> Redeemed:
    try:
        redeemed = await outcome
    except (InviteGone, MatrixIdInvalid, MatrixUserUnknown) as err:
        metrics.REDEEMS.labels(err.errcode.lower()).inc()
        raise
    except SealroomError:
        metrics.REDEEMS.labels("error").inc()
        raise
    metrics.REDEEMS.labels("redeemed").inc()
    return redeemed


@routes.post("/i/redeem")
async def redeem_invite(request: web.Request) -> web.Response:
    data = await _json_body(request, "token", "user_id")
    redeemed = await _counted(request.app[SERVICES].invites.redeem(data["token"], data["user_id"]))
    return _redeemed_answer(request, redeemed)


@routes.post("/i/register/start")
async def start_registration(request: web.Request) -> web.Response:
    """Mint the single-use registration token; the invite is spent only by /finish."""
    data = await _json_body(request, "token")
    started = await request.app[SERVICES].registration.start(data["token"])
    settings = request.app[SETTINGS]
    return web.json_response(
        {
            "registration_token": started.registration_token,
            "expires_at": started.expires_at.isoformat(),
            "homeserver_url": settings.homeserver_browser_url,
            "server_name": settings.server_name,
        }
    )


@routes.post("/i/register/finish")
async def finish_registration(request: web.Request) -> web.Response:
    data = await _json_body(request, "token", "user_id", "registration_token")
    redeemed = await _counted(
        request.app[SERVICES].registration.finish(
            data["token"], data["user_id"], data["registration_token"]
        )
    )
    return _redeemed_answer(request, redeemed)


@routes.post("/i/register/abandon")
async def abandon_registration(request: web.Request) -> web.Response:
    """Sent by the page (navigator.sendBeacon) when it is left halfway."""
    data = await _json_body(request, "token", "registration_token")
    raw_user = (await request.json()).get("user_id")
    user_id = raw_user if isinstance(raw_user, str) and raw_user else None
    await request.app[SERVICES].registration.abandon(
        data["token"], data["registration_token"], user_id
    )
    return web.json_response({"status": "noted"})
