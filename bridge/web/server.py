"""The HTTP server's runner: aiohttp's, with a deadline for request headers.

aiohttp's server has no header-read timeout: a client that opens a connection and sends half a
request line (or dribbles headers, "slowloris") holds the connection as long as it likes, and
enough of them exhaust the server. Here every connection gets a deadline when it opens, and
again when the first bytes of a next request arrive on a kept-alive connection; it is met when
the request's headers are complete (aiohttp then builds the request). A connection that misses
it is closed. Bodies have their own bound in `bridge.web.body`. An idle kept-alive connection
(no bytes since the last response) is left to aiohttp's keep-alive timeout, which must outlast a
reverse proxy's. Malformed HTTP gets aiohttp's 400 and one short log line, not a traceback.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from bridge.web.body import CLIENT_TIMEOUT

log = structlog.stdlib.get_logger(__name__)


class _HeaderDeadlineHandler(web.RequestHandler):
    """aiohttp's protocol for one connection, closing it if request headers come too slowly."""

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if data and self._deadline is None and not self._in_request:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def headers_received(self) -> None:
        """A request's headers are complete: the deadline is met."""
        self._in_request = True
        self._disarm()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._in_request = False

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """Malformed HTTP is the client's mistake: one short line, not aiohttp's traceback.

        Anyone can send it, so a traceback per request would be a log flood. Only the first
        line of the parser's message is kept: the rest echoes the offending bytes, which may
        hold a header's secret.
        """
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            reason = (exc.message or type(exc).__name__).strip().splitlines()[0][:120]
            log.info("http.malformed", status=exc.code, reason=reason)
            return
        super().log_exception(*args, **kw)

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._in_request or self.transport is None:
            return
        log.info("http.header_timeout", client_timeout_seconds=self._header_timeout)
        self.force_close()


class _HeaderDeadlineServer(web.Server):
    """aiohttp's protocol factory, making `_HeaderDeadlineHandler`s."""

    def __init__(self, template: web.Server, header_timeout: float) -> None:
        factory = template.request_factory

        def make_request(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: web.RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            # Called once per request, as soon as its headers are parsed.
            if isinstance(protocol, _HeaderDeadlineHandler):
                protocol.headers_received()
            return factory(message, payload, protocol, writer, task)

        super().__init__(
            template.request_handler,
            request_factory=make_request,
            handler_cancellation=template.handler_cancellation,
            loop=template._loop,
            **template._kwargs,
        )
        self._header_timeout = header_timeout

    def __call__(self) -> web.RequestHandler:
        return _HeaderDeadlineHandler(
            self, loop=self._loop, header_timeout=self._header_timeout, **self._kwargs
        )


class _Runner(web.AppRunner):
    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        return _HeaderDeadlineServer(await super()._make_server(), self._header_timeout)


def make_runner(app: web.Application, *, client_timeout: float, **kwargs: Any) -> web.AppRunner:
    """An AppRunner whose connections must send request headers (and bodies) in time.

    `client_timeout` is `http.client_timeout_seconds`; `kwargs` go to `web.AppRunner`.
    """
    app[CLIENT_TIMEOUT] = client_timeout
    return _Runner(app, header_timeout=client_timeout, **kwargs)


class WebServer:
    """sealroom's HTTP server on `bind`:`port` (0: any free port, then `port` is the real one)."""

    def __init__(self, app: web.Application, bind: str, port: int, client_timeout: float) -> None:
        self.bind = bind
        self.port = port
        self._runner = make_runner(
            app, client_timeout=client_timeout, access_log=None, handle_signals=False
        )
        self._started = False

    async def start(self) -> None:
        await self._runner.setup()
        self._started = True
        site = web.TCPSite(self._runner, self.bind, self.port)
        await site.start()
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                self.port = int(address[1])
                break

    async def stop(self) -> None:
        if self._started:
            await self._runner.cleanup()
            self._started = False
