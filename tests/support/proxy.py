"""FaultProxy: a reverse proxy in front of the test Synapse that can go down or fail on cue.

sealroom must survive a homeserver that is unreachable or answers errors on chosen endpoints
(the approach of matrix-org/complement-crypto); a real Synapse cannot be told to do that, so
tests point clients at this proxy instead.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from bridge.devtools.localsynapse import free_port

# RFC 9110 7.6.1 hop-by-hop headers, plus those aiohttp recomputes for the new message.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_DROP_REQUEST = _HOP_BY_HOP | {"host", "content-length"}
_DROP_RESPONSE = _HOP_BY_HOP | {"content-length", "content-encoding"}


def _forwardable(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """Request headers minus Host, Content-Length and hop-by-hop ones."""
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _DROP_REQUEST)


@dataclass
class CapturedRequest:
    """A request a fault answered instead of Synapse, kept so a test can replay it later."""

    method: str
    raw_path: str  # path and query, still percent-encoded
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class Fault:
    """Answer requests whose path matches ``pattern`` with ``status`` ``remaining`` times."""

    pattern: re.Pattern[str]
    status: int
    remaining: int
    body: dict[str, Any]
    method: str | None = None
    hits: list[tuple[str, str]] = field(default_factory=list)
    captured: list[CapturedRequest] = field(default_factory=list)

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method.upper() == method)
            and self.pattern.search(path) is not None
        )


class FaultProxy:
    """Forwards everything to ``target_url`` unless told to be down or to fail."""

    def __init__(self, target_url: str, port: int | None = None) -> None:
        self.target = URL(target_url.rstrip("/"))
        self.port = port or free_port()
        self.requests: list[tuple[str, str]] = []
        self.responses: list[tuple[str, str, int]] = []  # (method, path, status) answered
        self.faults: list[Fault] = []
        # (pattern, callback): awaited after the upstream answered and before the client gets
        # the answer, as complement-crypto does to kill a client at a chosen moment.
        self.response_hooks: list[
            tuple[re.Pattern[str], Callable[[str, int], Awaitable[None]]]
        ] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._down = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def down(self) -> bool:
        return self._down

    @classmethod
    async def start(cls, target_url: str, port: int | None = None) -> FaultProxy:
        proxy = cls(target_url, port)
        # No total timeout: clients long-poll /sync for up to 35 s through us.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=120)
        proxy._session = aiohttp.ClientSession(
            timeout=timeout, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar()
        )
        await proxy._listen()
        return proxy

    async def _listen(self) -> None:
        """A fresh app and runner each time: a cleaned-up runner cannot be started again."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # shutdown_timeout=0 would mean "wait forever" for in-flight requests such as /sync.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.05
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def _unlisten(self) -> None:
        """Close the listening socket and every open connection, in-flight requests included."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def on_response(self, path_regex: str, hook: Callable[[str, int], Awaitable[None]]) -> None:
        """Call ``hook(path, status)`` when the upstream has answered a matching request."""
        self.response_hooks.append((re.compile(path_regex), hook))

    async def set_down(self, down: bool) -> None:
        """Down: connections are refused. Up: listen again on the same port."""
        if down == self._down:
            return
        self._down = down
        if down:
            await self._unlisten()
        else:
            await self._listen()

    def fail(
        self,
        path_regex: str,
        status: int,
        times: int = 1,
        body: dict[str, Any] | None = None,
        method: str | None = None,
    ) -> Fault:
        """Answer the next ``times`` requests whose path matches with ``status`` and ``body``.

        The request never reaches Synapse; ``Fault.captured`` keeps it, so ``status=200,
        body={}`` turns into "delivered late" once the test calls ``replay``.
        """
        if body is None:
            body = {"errcode": "M_UNKNOWN", "error": f"FaultProxy injected {status}"}
        fault = Fault(re.compile(path_regex), status, times, body, method)
        self.faults.append(fault)
        return fault

    async def replay(self, captured: CapturedRequest) -> int:
        """Send a request a fault swallowed to Synapse now; returns Synapse's status."""
        assert self._session is not None
        url = URL(str(self.target) + captured.raw_path, encoded=True)
        async with self._session.request(
            captured.method, url, headers=captured.headers, data=captured.body or None
        ) as resp:
            await resp.read()
            return resp.status

    def clear_faults(self) -> None:
        self.faults.clear()

    def paths(self, method: str | None = None) -> list[str]:
        """Paths seen so far, optionally for one method."""
        return [p for m, p in self.requests if method is None or m == method.upper()]

    async def stop(self) -> None:
        await self._unlisten()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> FaultProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        self.requests.append((method, path))
        for fault in self.faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                fault.hits.append((method, path))
                fault.captured.append(
                    CapturedRequest(
                        method,
                        request.raw_path,
                        _forwardable(request.headers),
                        await request.read(),
                    )
                )
                self.responses.append((method, path, fault.status))
                return web.json_response(fault.body, status=fault.status)

        assert self._session is not None
        headers = _forwardable(request.headers)
        body = await request.read() if request.body_exists else None
        url = URL(str(self.target) + request.raw_path, encoded=True)
        try:
            async with self._session.request(
                method, url, headers=headers, data=body, allow_redirects=False
            ) as upstream:
                data = await upstream.read()
                self.responses.append((method, path, upstream.status))
                for pattern, hook in list(self.response_hooks):
                    if pattern.search(path):
                        await hook(path, upstream.status)
                out_headers = CIMultiDict(
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in _DROP_RESPONSE
                )
                return web.Response(
                    status=upstream.status,
                    reason=upstream.reason,
                    headers=out_headers,
                    body=data,
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.responses.append((method, path, 502))
            return web.json_response(
                {"errcode": "M_UNKNOWN", "error": f"FaultProxy: upstream failed: {exc!r}"},
                status=502,
            )
