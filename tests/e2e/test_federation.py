"""The whole flow for a customer whose account is on another homeserver (federation).

sealroom and its bot run on `federation.home`; the customer's account is on `federation.remote`.
The customer uses matrix-js-sdk with its Rust crypto in strict mode (only messages from devices
cross-signed by their owner, Element's "exclude insecure devices"), as the hardest client to
please: it must decrypt the bot's first notice with no warning, every time.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest_asyncio

from bridge.devtools.localsynapse import LocalSynapse
from tests.e2e.conftest import SealroomFactory
from tests.support import federation as federation_support
from tests.support import jsclient
from tests.support.jsclient import JsClient

federation = federation_support.federation  # the fixture
js_client = jsclient.js_client  # the fixture

RUNS = 20


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def synapse(federation: federation_support.Federation) -> AsyncIterator[LocalSynapse]:
    """In this module sealroom (the `sealroom` fixture) runs on the federating home server."""
    yield federation.home


async def remote_customer(
    js_client: jsclient.JsClientFactory, remote: LocalSynapse, name: str = "customer"
) -> JsClient:
    """A strict, cross-signed js-sdk customer whose account is on the remote server."""
    password = secrets.token_urlsafe(16)
    user_id = await remote.register_user(f"{name}-{secrets.token_hex(4)}", password)
    client = await js_client(user_id=user_id, password=password, homeserver_url=remote.url)
    await client.bootstrap()  # Element-style first login: cross-signing and a recovery key
    await client.set_strict(True)
    return client


async def join_invited(client: JsClient, room_id: str, attempts: int = 20) -> None:
    """Join a room on another server once the invitation is complete there.

    The customer's server hears of an invitation while the inviting server is still making it
    (it asks the customer's server to co-sign the event first), so a client that joins within
    milliseconds of seeing it is told "not invited"; a person never is that fast.
    """
    for attempt in range(attempts):
        try:
            await client.join(room_id)
            return
        except jsclient.JsClientError as err:
            if "not invited" not in str(err) or attempt == attempts - 1:
                raise
        await asyncio.sleep(0.25)


async def first_bot_message(
    client: JsClient, room_id: str, bot_id: str, timeout: float = 60
) -> dict[str, Any]:
    """The bot's first event as the client sees it: decrypted (with its shield) or not.

    Returns ``{"decrypted": True, **message}`` or ``{"decrypted": False, **failure}``; a failure
    is reported as soon as the client has given up on the event (no waiting for a retry that
    the client never makes).
    """
    deadline = time.monotonic() + timeout
    while True:
        state = await client.messages(room_id)
        bot_messages = [m for m in state["messages"] if m["sender"] == bot_id]
        failures = [u for u in state["undecryptable"] if u["sender"] == bot_id]
        firsts = sorted(
            [{"decrypted": True, **m} for m in bot_messages]
            + [{"decrypted": False, **u} for u in failures],
            key=lambda item: item["ts"],
        )
        if firsts:
            return firsts[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no message from {bot_id} in {room_id} after {timeout} s")
        await asyncio.sleep(0.1)


async def wait_until_not_joined(
    server: LocalSynapse, user_id: str, room_id: str, timeout: float = 60
) -> None:
    """Until `server` (the user's own homeserver) no longer counts `user_id` in the room."""
    token = await server.admin_token()
    path = f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/joined_rooms"
    deadline = time.monotonic() + timeout
    while True:
        status, data = await server._request("GET", path, token=token)
        assert status == 200, data
        if room_id not in data["joined_rooms"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{user_id} still in {room_id} after {timeout} s")
        await asyncio.sleep(0.2)


async def test_a_strict_customer_on_another_server_reads_the_first_notice_every_time(
    sealroom: SealroomFactory,
    js_client: jsclient.JsClientFactory,
    federation: federation_support.Federation,
) -> None:
    agent = await js_client("agent")
    await agent.bootstrap()
    await agent.set_strict(True)
    customer = await remote_customer(js_client, federation.remote)
    service = await sealroom(agents={"agent@example.com": agent.user_id}, admin_token=True)
    bot_id = service.config.bot.user_id

    results: list[dict[str, Any]] = []
    for run in range(RUNS):
        await service.open_ticket(f"T-FED-{run}")
        room_id = await agent.wait_invite()
        await agent.join(room_id)
        status, answer = await service.redeem(customer.user_id)
        assert status == 200, answer
        assert await customer.wait_invite(room_id) == room_id
        await join_invited(customer, room_id)
        first = await first_bot_message(customer, room_id, bot_id)
        results.append(first)
        print(f"run {run}: decrypted={first['decrypted']} {first.get('shield') or first}")
        if run == RUNS - 1:
            # The agent reads the customer; closing removes the remote customer.
            await agent.wait_joined(room_id, customer.user_id)
            secret = f"remote-secret-{secrets.token_hex(4)}"
            await customer.send(room_id, secret)
            got = await agent.wait_message(room_id, sender=customer.user_id, contains=secret)
            assert got["shield"]["colour"] == "NONE", got
            status, body = await service.webhook(
                {"event": "close", "ticket": {"id": f"T-FED-{run}"}}
            )
            assert status == 202, body
            await wait_until_not_joined(federation.remote, customer.user_id, room_id)

    failed = [r for r in results if not r["decrypted"] or r["shield"]["colour"] != "NONE"]
    assert failed == [], f"{len(failed)} of {RUNS} first notices unreadable or shielded: {failed}"
    assert all("only to share credentials" in r["body"] for r in results)
