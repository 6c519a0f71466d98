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

import pytest
import pytest_asyncio

import store.audit
from bridge.devtools.localsynapse import LocalSynapse, free_port
from tests.e2e.conftest import Sealroom, SealroomFactory
from tests.support import federation as federation_support
from tests.support import jsclient
from tests.support.fixtures import MatrixUserFactory
from tests.support.jsclient import JsClient
from tests.support.matrix_users import from_bot
from tests.support.rows import audit_actions

federation = federation_support.federation  # the fixture
js_client = jsclient.js_client  # the fixture

RUNS = 20
OUTAGE_SECONDS = 20  # the customer's homeserver is down this long while they are invited


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
    path = f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/joined_rooms"
    deadline = time.monotonic() + timeout
    while True:
        status, data = await server.admin_get(path)
        assert status == 200, data
        if room_id not in data["joined_rooms"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{user_id} still in {room_id} after {timeout} s")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(900)  # 20 runs of about 15 s each on a busy two-core machine
async def test_a_strict_customer_on_another_server_reads_the_first_notice_every_time(
    sealroom: SealroomFactory,
    js_client: jsclient.JsClientFactory,
    federation: federation_support.Federation,
) -> None:
    """Each run a new customer whose client has never seen the bot's device, as in real life;
    each room is closed at the end of its run, which removes the remote customer."""
    agent = await js_client("agent")
    await agent.bootstrap()
    await agent.set_strict(True)
    service = await sealroom(agents={"agent@example.com": agent.user_id}, admin_token=True)
    bot_id = service.config.bot.user_id

    results: list[dict[str, Any]] = []
    # The next customer logs in and sets up cross-signing while this run goes on.
    upcoming = asyncio.create_task(remote_customer(js_client, federation.remote, "customer0"))
    for run in range(RUNS):
        customer = await upcoming
        if run + 1 < RUNS:
            upcoming = asyncio.create_task(
                remote_customer(js_client, federation.remote, f"customer{run + 1}")
            )
        await service.open_ticket(f"T-FED-{run}")
        room_id = await agent.wait_invite()
        await agent.join(room_id)
        status, answer = await service.redeem(customer.user_id)
        assert status == 200, answer
        assert await customer.wait_invite(room_id) == room_id
        await join_invited(customer, room_id)
        results.append(await first_bot_message(customer, room_id, bot_id))

        if run == RUNS - 1:  # the agent decrypts what the remote customer says
            await agent.wait_joined(room_id, customer.user_id)
            secret = f"remote-secret-{secrets.token_hex(4)}"
            await customer.send(room_id, secret)
            got = await agent.wait_message(room_id, sender=customer.user_id, contains=secret)
            assert got["body"] == secret
        status, body = await service.webhook({"event": "close", "ticket": {"id": f"T-FED-{run}"}})
        assert status == 202, body
        await wait_until_not_joined(federation.remote, customer.user_id, room_id)
        await customer.stop()

    unreadable = [r for r in results if not r["decrypted"] or r["shield"]["colour"] != "NONE"]
    assert unreadable == [], f"{len(unreadable)} of {RUNS} first notices unreadable: {unreadable}"
    assert all("only to share credentials" in r["body"] for r in results)


def hold_jobs(service: Sealroom) -> asyncio.Event:
    """Hold the service's jobs back until the returned event is set (then wake the runner)."""
    gate = asyncio.Event()
    runner = service.app.jobs
    runner.pause_until(*runner._gates, gate)
    return gate


async def wait_for_audit(service: Sealroom, session_id: str, action: str) -> None:
    deadline = time.monotonic() + 60
    while action not in await audit_actions(service.app.database, session_id):
        assert time.monotonic() < deadline, await audit_actions(service.app.database, session_id)
        await asyncio.sleep(0.2)


async def test_no_such_remote_user_or_a_server_that_does_not_answer_leaves_the_link_unspent(
    sealroom: SealroomFactory,
    js_client: jsclient.JsClientFactory,
    federation: federation_support.Federation,
) -> None:
    service = await sealroom()
    await service.open_ticket("T-FED-LOOKUP")
    token = service.tokens[-1]
    remote = federation.remote.server_name

    status, body = await service.redeem(f"@no-such-customer:{remote}", token)
    assert status == 400, body
    assert body["errcode"] == "SEALROOM_MATRIX_USER_UNKNOWN"

    silent = f"localhost:{free_port()}"  # nothing listens there
    status, body = await service.redeem(f"@customer:{silent}", token)
    assert status == 502, body
    assert body["errcode"] == "SEALROOM_MATRIX_SERVER_UNREACHABLE"
    assert silent in body["error"]
    assert "link still works" in body["error"]
    assert "SEALROOM_HOMESERVER_UNAVAILABLE" not in service.log_path.read_text(encoding="utf-8")

    customer = await remote_customer(js_client, federation.remote)
    status, body = await service.redeem(customer.user_id, token)  # the same link
    assert status == 200, body
    assert await customer.wait_invite() is not None


async def test_an_invite_failing_after_the_link_was_spent_tells_the_agent_and_frees_the_link(
    sealroom: SealroomFactory,
    matrix_user: MatrixUserFactory,
    js_client: jsclient.JsClientFactory,
    federation: federation_support.Federation,
) -> None:
    """The customer's server answers the lookup, then goes down before the invitation: with
    no patience left, the agent is told in the room (naming that server) and the link works."""
    agent = await matrix_user("agent")
    service = await sealroom(
        agents={"agent@example.com": agent.user_id},
        invites={"remote_server_patience_minutes": 0},
    )
    bot_id = service.config.bot.user_id
    opened = await service.open_ticket("T-FED-GONE")
    token = service.tokens[-1]
    room_id = await agent.wait_for_invite()
    await agent.join(room_id)
    customer = await remote_customer(js_client, federation.remote)

    gate = hold_jobs(service)
    status, body = await service.redeem(customer.user_id, token)
    assert status == 200, body
    await federation.remote.stop()
    try:
        gate.set()
        service.app.jobs.wake()
        remote = federation.remote.server_name
        await agent.wait_for_message(
            room_id, from_bot(bot_id, f"their Matrix server {remote} did not answer"), timeout=60
        )
        await wait_for_audit(service, opened["session_id"], "member.invite_failed")
    finally:
        await federation.remote.start()
    async with service.app.database.transaction() as db:
        trail = await store.audit.for_session(db, opened["session_id"])
    [failed] = [event for event in trail if event.action == "member.invite_failed"]
    assert f"the homeserver {remote} did not answer" in failed.detail["error"]
    assert failed.detail["link_usable"] is True
    log = service.log_path.read_text(encoding="utf-8")
    assert f'"unreachable_server": "{remote}"' in log
    assert "SEALROOM_HOMESERVER_UNAVAILABLE" not in log

    status, body = await service.redeem(customer.user_id, token)  # the link works again
    assert status == 200, body
    assert await customer.wait_invite(room_id, timeout=60) == room_id


async def test_the_customers_server_down_during_the_invite_still_lets_them_in(
    sealroom: SealroomFactory,
    matrix_user: MatrixUserFactory,
    js_client: jsclient.JsClientFactory,
    federation: federation_support.Federation,
) -> None:
    agent = await matrix_user("agent")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    bot_id = service.config.bot.user_id
    opened = await service.open_ticket("T-FED-OUTAGE")
    room_id = await agent.wait_for_invite()
    await agent.join(room_id)
    customer = await remote_customer(js_client, federation.remote)

    gate = hold_jobs(service)
    status, body = await service.redeem(customer.user_id)
    assert status == 200, body
    await federation.remote.stop()
    try:
        gate.set()
        service.app.jobs.wake()
        await asyncio.sleep(OUTAGE_SECONDS)  # the invitation is tried, and fails, meanwhile
    finally:
        await federation.remote.start()
    trail = await audit_actions(service.app.database, opened["session_id"])
    assert "member.invited" not in trail, trail  # it really was down during the invite

    assert await customer.wait_invite(room_id, timeout=60) == room_id
    await join_invited(customer, room_id)
    first = await first_bot_message(customer, room_id, bot_id)
    assert first["decrypted"], first
    assert "only to share credentials" in first["body"]
    assert "member.invite_failed" not in await audit_actions(
        service.app.database, opened["session_id"]
    )


async def test_a_customer_who_speaks_first_gets_the_rules_at_once_and_reads_them(
    sealroom: SealroomFactory,
    matrix_user: MatrixUserFactory,
    js_client: jsclient.JsClientFactory,
    federation: federation_support.Federation,
) -> None:
    """Their message shows their client knows the bot's device: the rules, set to wait up to a
    minute for that, go out then (long before the minute is up) and are readable."""
    agent = await matrix_user("agent")
    service = await sealroom(
        agents={"agent@example.com": agent.user_id}, rooms={"first_notice_wait_seconds": 60}
    )
    bot_id = service.config.bot.user_id
    await service.open_ticket("T-FED-FIRST-WORD")
    room_id = await agent.wait_for_invite()
    await agent.join(room_id)
    customer = await remote_customer(js_client, federation.remote)
    status, body = await service.redeem(customer.user_id)
    assert status == 200, body
    assert await customer.wait_invite(room_id) == room_id
    await join_invited(customer, room_id)

    await customer.send(room_id, "hello, here is the customer")
    rules = await customer.wait_message(
        room_id, sender=bot_id, contains="only to share credentials", timeout=30
    )

    assert rules["shield"]["colour"] == "NONE", rules
    assert rules["undecryptable"] == 0, rules
