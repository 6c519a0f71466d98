"""POST a body, read the JSON answer: how tests (and the bench) call sealroom's and the
homeserver's HTTP APIs, instead of each file opening its own aiohttp session."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from bridge.helpdesk.kinds.standard_webhooks import signed_headers

REQUEST_TIMEOUT = 30.0  # seconds; a local call that takes longer has hung


async def post_json(
    url: str,
    path: str,
    body: Mapping[str, Any] | bytes,
    *,
    headers: Mapping[str, str] | None = None,
    session: aiohttp.ClientSession | None = None,
) -> tuple[int, Any]:
    """POST `body` to `url` + `path`: (status, the answer's JSON).

    A mapping goes as JSON; bytes go as they are (a signed webhook's body must not be
    re-encoded). `session` reuses a caller's connection pool (the bench times the calls).
    """
    send: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with contextlib.AsyncExitStack() as stack:
        if session is None:
            session = await stack.enter_async_context(aiohttp.ClientSession())
        response = await stack.enter_async_context(
            session.post(url + path, headers=headers, timeout=timeout, **send)
        )
        return response.status, await response.json(content_type=None)


async def post_webhook(
    url: str,
    secret: str,
    payload: Mapping[str, Any] | bytes,
    *,
    integration: str = "test",
    webhook_id: str | None = None,
    timestamp: int | None = None,
    session: aiohttp.ClientSession | None = None,
) -> tuple[int, Any]:
    """Deliver `payload` to /hooks/`integration`, signed as a Standard Webhooks sender does."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = signed_headers(secret, body, webhook_id, timestamp)
    return await post_json(url, f"/hooks/{integration}", body, headers=headers, session=session)
