"""The session API for admins and helpdesk apps, and the OpenAPI document of every endpoint.

`GET /api/v1/sessions`, `GET /api/v1/sessions/{session_id}`,
`POST /api/v1/sessions/{session_id}/close` and `POST /api/v1/sessions/{session_id}/wipe` need
`Authorization: Bearer <api.token>`, compared in constant time; without a token configured
they answer 403 (`SEALROOM_API_DISABLED`), with a wrong or missing one 401. They hand out
metadata only (`bridge.session_queries`).
`GET /api/v1/openapi.json` needs no token: it describes the service, not its data.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from bridge.errors import ApiDisabled, ApiTokenInvalid, PayloadInvalid
from bridge.session_queries import LIMIT_DEFAULT, LIMIT_MAX, SessionQueries
from bridge.web import openapi
from bridge.web.keys import SESSION_API, SessionApi

routes = web.RouteTableDef()

# Who the audit trail names for a close through the API.
API_ACTOR = "api"


def token_digest(token: str) -> bytes:
    """What `SessionApi` keeps of the configured token, and what a request's token is hashed to:
    equal-length digests, compared with `hmac.compare_digest`, leak neither content nor length."""
    return hashlib.sha256(token.encode()).digest()


def session_api(queries: SessionQueries, token: str | None) -> SessionApi:
    """What `make_app` takes to serve the session API (`token` None: it answers 403)."""
    return SessionApi(queries, token_digest(token) if token is not None else None)


def _authorized(request: web.Request) -> SessionQueries:
    """The session API's service, once the request's bearer token is the configured one.

    Raises:
        ApiDisabled: no token is configured.
        ApiTokenInvalid: the Authorization header is missing, not Bearer, or the wrong token.
    """
    api = request.app.get(SESSION_API)
    if api is None or api.token_sha256 is None:
        raise ApiDisabled()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiTokenInvalid()
    if not hmac.compare_digest(token_digest(token.strip()), api.token_sha256):
        raise ApiTokenInvalid("The bearer token is not the one configured in api.token.")
    return api.queries


def _limit(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None:
        return LIMIT_DEFAULT
    if not text.isascii() or not text.isdigit():
        raise PayloadInvalid("limit must be a whole number.", ["limit"])
    if len(text) > 6:  # int() of thousands of digits is slow, then refused
        raise PayloadInvalid(f"limit must be between 1 and {LIMIT_MAX}.", ["limit"])
    return int(text)


@routes.get("/api/v1/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    queries = _authorized(request)
    page = await queries.list(
        state=request.query.get("state"),
        integration=request.query.get("integration"),
        limit=_limit(request),
        cursor=request.query.get("cursor"),
    )
    return web.json_response(page.as_json())


@routes.get("/api/v1/sessions/{session_id}")
async def show_session(request: web.Request) -> web.Response:
    queries = _authorized(request)
    detail = await queries.show(request.match_info["session_id"])
    return web.json_response(detail.as_json())


@routes.post("/api/v1/sessions/{session_id}/close")
async def close_session(request: web.Request) -> web.Response:
    """202: the close is recorded; the job runner removes everyone and closes the room."""
    queries = _authorized(request)
    detail = await queries.close(request.match_info["session_id"], API_ACTOR)
    return web.json_response(detail.as_json(), status=202)


@routes.post("/api/v1/sessions/{session_id}/wipe")
async def wipe_session(request: web.Request) -> web.Response:
    """202: the running service wipes the room now (a close, or a purge of a room closed
    earlier); 200: nothing is left to wipe. Asking again does no harm."""
    queries = _authorized(request)
    wiped = await queries.wipe(request.match_info["session_id"], API_ACTOR)
    return web.json_response(wiped.as_json(), status=202 if wiped.under_way else 200)


@routes.get("/api/v1/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=openapi.document_bytes(), content_type="application/json")
