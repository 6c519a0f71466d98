"""Request ids, one log line per request, security headers, and errors as clean answers."""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.errors import ApiTokenInvalid, PayloadTooLarge, SealroomError
from bridge.metrics import HTTP_REQUEST_DURATION, UNMATCHED_ROUTE
from bridge.web.errors import body_for, public_message, status_for
from bridge.web.keys import SETTINGS, WebSettings

log = structlog.stdlib.get_logger(__name__)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def csp_for(settings: WebSettings) -> str:
    """The page may talk to sealroom, and (for account creation) to the homeserver only."""
    if not settings.registration_enabled:
        return CSP
    parts = urlsplit(settings.homeserver_browser_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return CSP.replace("connect-src 'self'", f"connect-src 'self' {origin}")


SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def _error_response(err: SealroomError, request_id: str, request: web.Request) -> web.Response:
    status = status_for(err)
    if _wants_html(request):
        text = f"<!doctype html><title>{status}</title><p>{_escape(public_message(err))}</p>"
        response = web.Response(status=status, text=text, content_type="text/html")
    else:
        response = web.json_response(body_for(err, request_id), status=status)
    if isinstance(err, ApiTokenInvalid):
        response.headers["WWW-Authenticate"] = 'Bearer realm="sealroom"'
    return response


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(request: web.Request) -> str:
    """The matched route's template (`/hooks/{integration}`), for a metric label of few values."""
    resource = request.match_info.route.resource
    return UNMATCHED_ROUTE if resource is None else resource.canonical


def _method_label(method: str) -> str:
    return method if method in _METHODS else "other"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-ID", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.monotonic()
    errcode: str | None = None
    try:
        try:
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            errcode = PayloadTooLarge.errcode
            response = _error_response(PayloadTooLarge(), request_id, request)
        except SealroomError as err:
            # Expected: answered, and noted on the request's one log line below.
            errcode = err.errcode
            if public_message(err) != err.message:
                log.warning("http.failed_upstream", errcode=err.errcode, detail=err.message)
            response = _error_response(err, request_id, request)
        except web.HTTPException as http_err:
            response = web.json_response(
                {"errcode": "SEALROOM_HTTP", "error": http_err.reason, "request_id": request_id},
                status=http_err.status,
            )
        except Exception:
            log.exception("http.crashed")
            response = web.json_response(
                {
                    "errcode": "SEALROOM_INTERNAL",
                    "error": "Internal error. Quote this request id to the administrator.",
                    "request_id": request_id,
                },
                status=500,
            )
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = csp_for(request.app[SETTINGS])
        response.headers["X-Request-ID"] = request_id
        duration = time.monotonic() - started
        HTTP_REQUEST_DURATION.labels(
            _method_label(request.method), route_template(request), str(response.status)
        ).observe(duration)
        # The path never holds a token (tokens travel in the URL fragment and in POST bodies),
        # and the query string is left out all the same.
        log.info(
            "http.request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round(duration * 1000, 1),
            **({"errcode": errcode} if errcode else {}),
        )
        return response
    finally:
        structlog.contextvars.clear_contextvars()
