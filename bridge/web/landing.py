"""The customer's landing page. The invite token lives in the URL fragment and POST bodies only.

GET never spends an invite (link scanners open links); `POST /i/lookup` only looks,
`POST /i/redeem` spends it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import structlog
from aiohttp import web

from bridge import i18n, metrics
from bridge.errors import (
    InviteGone,
    MatrixIdInvalid,
    MatrixServerUnreachable,
    MatrixUserUnknown,
    PayloadInvalid,
    SealroomError,
)
from bridge.invites import Redeemed
from bridge.web.body import read_json_object
from bridge.web.keys import SERVICES, SETTINGS, WebSettings

log = structlog.stdlib.get_logger(__name__)
routes = web.RouteTableDef()

# Synapse's own rule for registration tokens (admin API): at most 64 of [A-Za-z0-9._~-].
_REGISTRATION_TOKEN = re.compile(r"[A-Za-z0-9._~-]{1,64}")


@routes.get("/i")
@aiohttp_jinja2.template("landing.html")
async def landing_page(request: web.Request) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    language = i18n.negotiate(
        request.headers.get("Accept-Language", ""), request.query.get("lang")
    )
    translations = i18n.translations(language)
    branding = settings.branding
    return {
        # jinja2.ext.i18n looks these up in the context: this request's language.
        "gettext": translations.gettext,
        "ngettext": translations.ngettext,
        "language": language,
        "languages": i18n.LANGUAGES,
        "browser_strings": i18n.browser_strings(language),
        "server_name": settings.server_name,
        "registration_enabled": settings.registration_enabled,
        "homeserver_url": settings.homeserver_browser_url,
        "password_min_length": settings.password_min_length,
        "organisation": branding.organisation,
        "logo": settings.logo is not None,
        "support_contact": branding.support_contact,
        "support_contact_url": branding.support_url,
        "footer_links": branding.footer_links,
    }


@routes.get("/branding/theme.css")
async def branding_theme(request: web.Request) -> web.Response:
    """The accent colour as a stylesheet: the page's CSP allows no inline style."""
    accent = request.app[SETTINGS].branding.accent_colour  # validated: #rrggbb
    return web.Response(text=f":root {{ --accent: {accent}; }}\n", content_type="text/css")


@routes.get("/branding/logo")
async def branding_logo(request: web.Request) -> web.Response:
    logo = request.app[SETTINGS].logo
    if logo is None:
        raise web.HTTPNotFound()
    data, media_type = logo
    return web.Response(body=data, content_type=media_type)


def _strings(data: dict[str, Any], *names: str) -> dict[str, str]:
    """The named string fields of a JSON body; anything else in it is ignored.

    A missing or non-string field, and a registration token Synapse could not have made, are
    refused here (400 naming the field). Invite tokens and Matrix IDs are judged by the domain:
    a malformed invite token is as gone as an unknown one.
    """
    missing = [f for f in names if data.get(f) is None]
    if missing:
        raise PayloadInvalid(f"Missing field: {', '.join(missing)}.", missing)
    wrong = [f for f in names if not isinstance(data[f], str)]
    if wrong:
        raise PayloadInvalid(f"Must be a string: {', '.join(wrong)}.", wrong)
    fields: dict[str, str] = {f: data[f] for f in names}
    registration_token = fields.get("registration_token")
    if registration_token is not None and not _REGISTRATION_TOKEN.fullmatch(registration_token):
        raise PayloadInvalid(
            "registration_token is not a registration token from this page; reload the page "
            "and start again.",
            ["registration_token"],
        )
    return fields


async def _fields(request: web.Request, *names: str) -> dict[str, str]:
    return _strings(await read_json_object(request), *names)


@routes.post("/i/lookup")
async def lookup_invite(request: web.Request) -> web.Response:
    data = await _fields(request, "token")
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
    except (InviteGone, MatrixIdInvalid, MatrixUserUnknown, MatrixServerUnreachable) as err:
        metrics.REDEEMS.labels(err.errcode.lower()).inc()
        raise
    except SealroomError:
        metrics.REDEEMS.labels("error").inc()
        raise
    metrics.REDEEMS.labels("redeemed").inc()
    return redeemed


@routes.post("/i/redeem")
async def redeem_invite(request: web.Request) -> web.Response:
    data = await _fields(request, "token", "user_id")
    redeemed = await _counted(request.app[SERVICES].invites.redeem(data["token"], data["user_id"]))
    return _redeemed_answer(request, redeemed)


@routes.post("/i/register/start")
async def start_registration(request: web.Request) -> web.Response:
    """Mint the single-use registration token; the invite is spent only by /finish."""
    data = await _fields(request, "token")
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
    data = await _fields(request, "token", "user_id", "registration_token")
    redeemed = await _counted(
        request.app[SERVICES].registration.finish(
            data["token"], data["user_id"], data["registration_token"]
        )
    )
    return _redeemed_answer(request, redeemed)


@routes.post("/i/register/abandon")
async def abandon_registration(request: web.Request) -> web.Response:
    """Sent by the page (navigator.sendBeacon) when it is left halfway."""
    data = await read_json_object(request)
    fields = _strings(data, "token", "registration_token")
    user_id = data.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise PayloadInvalid("Must be a string: user_id.", ["user_id"])
    await request.app[SERVICES].registration.abandon(
        fields["token"], fields["registration_token"], user_id or None
    )
    return web.json_response({"status": "noted"})
