"""Reading a request body: bounded in size (aiohttp's client_max_size) and in time, never a 500.

Every POST endpoint reads its body here; `bridge.untrusted.loads_object` is the one JSON parser.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from bridge.config import DEFAULT_CLIENT_TIMEOUT_SECONDS
from bridge.errors import PayloadInvalid
from bridge.untrusted import loads_object
from bridge.web.errors import RequestTimeout

# Seconds a client has to send a request's body once its headers arrived (set by make_runner).
CLIENT_TIMEOUT = web.AppKey("client_timeout", float)


async def read_body(request: web.Request) -> bytes:
    """The raw body.

    Raises:
        RequestTimeout: the body did not arrive in time (a slow or stalled client).
        PayloadInvalid: the client broke the transfer (bad chunked encoding, hung up).
        web.HTTPRequestEntityTooLarge: over client_max_size (the middleware answers 413).
    """
    timeout = request.app.get(CLIENT_TIMEOUT, DEFAULT_CLIENT_TIMEOUT_SECONDS)
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout() from None
    except (web.RequestPayloadError, ConnectionError) as err:
        reason = type(err).__name__
        raise PayloadInvalid(f"The request body could not be read ({reason}).") from None


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, sent as application/json.

    JSON only: a cross-site form cannot send it without a CORS preflight we never allow.
    """
    if request.content_type != "application/json":
        raise PayloadInvalid("Send the request as application/json.")
    return loads_object(await read_body(request))
