"""Slow clients: request headers and bodies arrive in bounded time (http.client_timeout_seconds).

Real sockets against the real runner (`bridge.web.server.make_runner`) on 127.0.0.1, with a
short configured timeout. No assertion measures time: a dropped connection is one the server
closed (EOF) while the client was still waiting; every wait is bounded so a regression fails
instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import ValidationError

from bridge.config import HttpConfig
from bridge.web.body import read_body
from bridge.web.keys import SETTINGS, WebSettings
from bridge.web.middleware import request_context
from bridge.web.server import make_runner

TIMEOUT = 0.5
WAIT = 30.0  # the most any read below may take before the test fails instead of hanging


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def _echo_length(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await read_body(request))))


@pytest_asyncio.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application(middlewares=[request_context])
    app[SETTINGS] = WebSettings(
        public_base_url="https://sealroom.example.org",
        homeserver_url="https://matrix.example.org",
        server_name="example.org",
        web_client_template=None,
    )
    app.router.add_get("/", _hello)
    app.router.add_post("/echo", _echo_length)
    runner = make_runner(app, client_timeout=TIMEOUT, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        await runner.cleanup()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _response(reader: asyncio.StreamReader) -> bytes:
    """One response's head and body (the test endpoints send a Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await asyncio.wait_for(reader.readexactly(length), WAIT)


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing; fails (not hangs) if it never closes."""
    return await asyncio.wait_for(reader.read(), WAIT)


async def test_half_a_request_line_is_dropped(port: int) -> None:
    reader, writer = await _connect(port)
    writer.write(b"GET / HT")
    await writer.drain()

    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_headers_that_never_end_are_dropped(port: int) -> None:
    reader, writer = await _connect(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
    await writer.drain()

    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_a_connection_that_sends_nothing_is_dropped(port: int) -> None:
    reader, writer = await _connect(port)

    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_twenty_stalled_connections_are_all_dropped(port: int) -> None:
    connections = [await _connect(port) for _ in range(20)]
    for _, writer in connections:
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Le")
        await writer.drain()

    leftovers = await asyncio.gather(*(_closed_by_server(r) for r, _ in connections))

    assert leftovers == [b""] * 20
    for _, writer in connections:
        writer.close()


async def test_a_slow_but_complete_request_is_answered(port: int) -> None:
    reader, writer = await _connect(port)
    for piece in (b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(TIMEOUT / 5)

    answer = await _response(reader)

    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"hello")
    writer.close()


async def test_an_idle_kept_alive_connection_is_not_cut_by_the_header_deadline(port: int) -> None:
    """Reverse proxies reuse idle connections: only a started request has a deadline."""
    reader, writer = await _connect(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await _response(reader)).startswith(b"HTTP/1.1 200")

    await asyncio.sleep(TIMEOUT * 4)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    assert (await _response(reader)).startswith(b"HTTP/1.1 200")
    writer.close()


async def test_half_a_second_request_on_a_kept_alive_connection_is_dropped(port: int) -> None:
    reader, writer = await _connect(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await _response(reader)).startswith(b"HTTP/1.1 200")

    writer.write(b"GET / HT")
    await writer.drain()

    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_a_body_that_stops_halfway_is_408(port: int) -> None:
    reader, writer = await _connect(port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    await writer.drain()

    answer = await _response(reader)

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"SEALROOM_REQUEST_TIMEOUT" in answer
    writer.close()


async def test_a_slow_but_complete_body_is_read(port: int) -> None:
    reader, writer = await _connect(port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
    for _ in range(4):
        writer.write(b"x" * 5)
        await writer.drain()
        await asyncio.sleep(TIMEOUT / 10)

    answer = await _response(reader)

    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"20")
    writer.close()


@pytest.mark.parametrize("value", [0, -1, 301, "soon"])
def test_the_option_is_validated_with_its_key_path(value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        HttpConfig(client_timeout_seconds=value)
    assert info.value.errors()[0]["loc"] == ("client_timeout_seconds",)
