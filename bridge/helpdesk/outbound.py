"""Calls into the helpdesks' APIs: Zendesk, Zammad, and a signed JSON callback.

Each adapter is a `bridge.ports.TicketSystem`. Every call goes through `GuardedHttp`, which
refuses (and logs) anything the YAML does not allow: a host outside the integration's
`allowed_hosts`, an address that is not public (loopback, private, link-local, ...) unless
`allow_private_addresses`, checked on the addresses the connection really uses (a resolver that
filters, so a name cannot resolve to one address for the check and another for the connect),
and every redirect (never followed). Errors carry status codes and host names, never a body,
token or link.

No duplicate posts after a retry: Zendesk's and Zammad's APIs have no idempotency key for
comments, so each post carries a marker `[<key>]` and a retry first looks for it among the
ticket's comments (a retry is the only way to see one: the job runner never runs one job twice
at once). The callback sends the key as its `webhook-id`, which a Standard Webhooks receiver
deduplicates on.

Zendesk: `PUT /api/v2/tickets/{id}.json` with `{"ticket": {"comment": {"body", "public"}}}`,
`GET /api/v2/tickets/{id}/comments.json` (Ticketing API, "Tickets" and "Ticket Comments"), basic
auth `<email>/token:<api token>`. Zammad: `GET /api/v1/tickets/search?query=number:<n>` for the
ticket's id, `GET /api/v1/ticket_articles/by_ticket/{id}`, `POST /api/v1/ticket_articles` with
`{"ticket_id", "body", "content_type", "type": "note", "internal"}` (REST API, "Ticket" and
"Ticket Article"), header `Authorization: Token token=<token>`.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from bridge.errors import TicketSystemRefused, TicketSystemUnavailable
from bridge.helpdesk.kinds.standard_webhooks import signed_headers
from bridge.helpdesk.outbound_options import OutboundOptions
from bridge.ports import TicketSystem

log = structlog.stdlib.get_logger(__name__)


class NotPublic(OSError):
    """A name resolved only to addresses this integration may not call."""


def _is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_global
    except ValueError:
        return False


class GuardedResolver(AbstractResolver):
    """Resolves with aiohttp's resolver and keeps only public addresses (unless allowed)."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if self._allow_private or _is_public(r["host"])]
        if not kept:
            raise NotPublic(f"{host} resolves only to non-public addresses")
        return kept

    async def close(self) -> None:
        await self._inner.close()


class GuardedHttp:
    """JSON over HTTP to one integration's allowed hosts."""

    def __init__(self, integration: str, options: OutboundOptions) -> None:
        self.integration = integration
        self.hosts = options.hosts
        self.allow_private = options.allow_private_addresses
        self.timeout = aiohttp.ClientTimeout(total=options.timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _refuse(self, host: str, reason: str) -> TicketSystemRefused:
        log.warning("outbound.refused", integration=self.integration, host=host, reason=reason)
        return TicketSystemRefused(f"Refused to call {host}: {reason}.")

    def _check(self, url: str) -> None:
        host = (urlsplit(url).hostname or "").lower()
        if host not in self.hosts:
            raise self._refuse(host, "not in this integration's allowed_hosts")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return
        if not self.allow_private and not literal.is_global:
            raise self._refuse(host, "not a public address (allow_private_addresses is false)")

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: aiohttp.BasicAuth | None = None,
    ) -> Any:
        """The answer's JSON (None when empty).

        Raises:
            TicketSystemRefused: not allowed (host, address, redirect) or refused (4xx).
            TicketSystemUnavailable: unreachable, timed out, 429 or 5xx.
        """
        self._check(url)
        host = urlsplit(url).hostname or ""
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allow_private))
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        try:
            async with self._session.request(
                method,
                url,
                data=body,
                headers={"Content-Type": "application/json", **(headers or {})},
                auth=auth,
                allow_redirects=False,
            ) as response:
                status = response.status
                text = await response.text()
                location = response.headers.get("Location", "")
        except aiohttp.ClientConnectorError as err:
            if isinstance(err.os_error, NotPublic):
                raise self._refuse(host, "it resolves only to non-public addresses") from None
            raise TicketSystemUnavailable(f"{host} is not reachable.") from None
        except (aiohttp.ClientError, TimeoutError):
            raise TicketSystemUnavailable(f"{host} did not answer.") from None
        if 300 <= status < 400:
            target = urlsplit(location).hostname or host
            raise self._refuse(host, f"it redirects (to {target}); redirects are not followed")
        if status == 429 or status >= 500:
            raise TicketSystemUnavailable(f"{host} answered {status}.")
        if status >= 400:
            raise TicketSystemRefused(f"{host} refused the request ({status}).")
        try:
            return json.loads(text) if text.strip() else None
        except ValueError:
            raise TicketSystemRefused(f"{host} answered something that is not JSON.") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _marked(text: str, key: str) -> str:
    return f"{text}\n\n[{key}]"


def _has_marker(items: Any, key: str, fields: tuple[str, ...]) -> bool:
    marker = f"[{key}]"
    if not isinstance(items, list):
        return False
    return any(
        isinstance(item, dict) and any(marker in str(item.get(f) or "") for f in fields)
        for item in items
    )


class ZendeskTickets:
    def __init__(self, integration: str, options: OutboundOptions) -> None:
        self.base = options.url
        self.http = GuardedHttp(integration, options)
        self.auth = aiohttp.BasicAuth(f"{options.email}/token", options.token_value())

    async def post(
        self, ticket_ref: str, text: str, *, public: bool, key: str, event: str
    ) -> None:
        ticket = quote(ticket_ref, safe="")
        seen = await self.http.request(
            "GET",
            f"{self.base}/api/v2/tickets/{ticket}/comments.json?sort_order=desc",
            auth=self.auth,
        )
        comments = seen.get("comments") if isinstance(seen, dict) else None
        if _has_marker(comments, key, ("body", "plain_body", "html_body")):
            return
        body = {"ticket": {"comment": {"body": _marked(text, key), "public": public}}}
        await self.http.request(
            "PUT",
            f"{self.base}/api/v2/tickets/{ticket}.json",
            body=json.dumps(body).encode(),
            auth=self.auth,
        )

    async def close(self) -> None:
        await self.http.close()


class ZammadTickets:
    def __init__(self, integration: str, options: OutboundOptions) -> None:
        self.base = options.url
        self.http = GuardedHttp(integration, options)
        self.headers = {"Authorization": f"Token token={options.token_value()}"}

    async def _ticket_id(self, number: str) -> int:
        found = await self.http.request(
            "GET",
            f"{self.base}/api/v1/tickets/search?query={quote('number:' + number)}&limit=1",
            headers=self.headers,
        )
        ids = found.get("tickets") if isinstance(found, dict) else None
        if not ids or not isinstance(ids[0], int):
            raise TicketSystemRefused(f"Zammad has no ticket with number {number[:40]!r}.")
        return int(ids[0])

    async def post(
        self, ticket_ref: str, text: str, *, public: bool, key: str, event: str
    ) -> None:
        ticket_id = await self._ticket_id(ticket_ref)
        by_ticket = f"{self.base}/api/v1/ticket_articles/by_ticket/{ticket_id}"
        articles = await self.http.request("GET", by_ticket, headers=self.headers)
        if _has_marker(articles, key, ("body",)):
            return
        body = {
            "ticket_id": ticket_id,
            "body": _marked(text, key),
            "content_type": "text/plain",
            "type": "note",
            "internal": not public,
        }
        await self.http.request(
            "POST",
            f"{self.base}/api/v1/ticket_articles",
            body=json.dumps(body).encode(),
            headers=self.headers,
        )

    async def close(self) -> None:
        await self.http.close()


class SignedCallback:
    """A Standard-Webhooks-signed JSON POST; `webhook-id` is the idempotency key."""

    def __init__(self, integration: str, options: OutboundOptions) -> None:
        self.url = options.url
        self.integration = integration
        self.secret = options.secret_value()
        self.http = GuardedHttp(integration, options)

    async def post(
        self, ticket_ref: str, text: str, *, public: bool, key: str, event: str
    ) -> None:
        payload = {
            "type": f"sealroom.{event}",
            "integration": self.integration,
            "ticket_ref": ticket_ref,
            "public": public,
            "text": text,
        }
        body = json.dumps(payload).encode()
        headers = signed_headers(self.secret, body, webhook_id=key)
        await self.http.request("POST", self.url, body=body, headers=headers)

    async def close(self) -> None:
        await self.http.close()


Adapter = ZendeskTickets | ZammadTickets | SignedCallback


def build(integration: str, options: OutboundOptions) -> Adapter:
    if options.kind == "zendesk":
        return ZendeskTickets(integration, options)
    if options.kind == "zammad":
        return ZammadTickets(integration, options)
    return SignedCallback(integration, options)


def _is_ticket_system(adapter: Adapter) -> TicketSystem:
    return adapter  # each adapter satisfies the port (checked by mypy here)
