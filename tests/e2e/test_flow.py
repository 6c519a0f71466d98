"""The main flow end to end: real Synapse, real bot, real E2EE clients, real browser."""

from __future__ import annotations

import asyncio
import os
import secrets
import time

import pytest
import pytest_asyncio

from tests.e2e.conftest import SealroomFactory
from tests.support.cross_signing import sign_device_of
from tests.support.fixtures import MatrixUserFactory
from tests.support.matrix_users import MatrixUser, from_bot


async def test_full_flow_existing_account(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, page
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    bot_id = service.config.bot.user_id

    started = time.monotonic()
    opened = await service.open_ticket("T-100")
    invite_url = opened["invite_url"]
    assert invite_url.startswith(f"{service.url}/i#")

    room_id = await agent.wait_for_invite()
    await agent.join(room_id)
    assert room_id == await service.wait_for_room(opened["session_id"])

    # The customer opens the link in a real browser and gives their Matrix ID.
    await page.goto(invite_url)
    await page.wait_for_selector("#invite:not([hidden])")
    assert "Admin login for T-100" in await page.text_content("#subject")
    await page.fill("#user-id", customer.user_id)
    await page.click("#redeem")
    await page.wait_for_selector("#done:not([hidden])")
    assert await page.text_content("#invited-as") == customer.user_id
    matrix_to = await page.get_attribute("#matrix-to", "href")
    assert matrix_to.startswith("https://matrix.to/#/%23sealroom-")

    assert await customer.wait_for_invite(room_id) == room_id
    await customer.join(room_id)
    await customer.wait_for_message(room_id, from_bot(bot_id, "only to share credentials"))
    flow_seconds = time.monotonic() - started
    print(f"\nwebhook -> customer decrypted the rules notice: {flow_seconds:.2f} s")

    canary = f"canary-password-{secrets.token_hex(12)}"
    await agent.wait_for_join(room_id, customer.user_id)
    await customer.wait_for_join(room_id, agent.user_id)
    await customer.send_text(room_id, canary)
    sender, body = await agent.wait_for_message(room_id, lambda s, b: b == canary)
    assert sender == customer.user_id
    await agent.wait_for_message(room_id, from_bot(bot_id, "only to share credentials"))

    assert customer.undecryptable(room_id) == []
    assert agent.undecryptable(room_id) == []

    # Give the bot a moment to receive (and decrypt) the canary too, then look everywhere.
    await asyncio.sleep(1.5)
    await service.app.stop()
    token = service.tokens[0]
    for path, data in service.secret_haystack():
        assert canary.encode() not in data, f"canary found in {path}"
        assert token.encode() not in data, f"invite token found in {path}"


async def test_restart_keeps_device_and_notices_stay_readable(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    bot_id = service.config.bot.user_id
    opened, room_id = await service.open_room("T-200", agent, customer)
    await customer.wait_for_message(room_id, from_bot(bot_id, "only to share credentials"))

    device_before = service.app.bot.device_id
    await service.restart()
    assert service.app.bot.device_id == device_before

    # A notice after the restart (the agent asks for help) is still decryptable.
    await agent.send_text(room_id, "!help")
    await customer.wait_for_message(room_id, from_bot(bot_id, "Commands: !close"))
    assert customer.undecryptable(room_id) == []
    # The replayed timeline after the restart did not welcome anyone twice.
    rules = [m for m in customer.messages(room_id) if "only to share credentials" in m[1]]
    assert len(rules) == 1
    assert (await service.session_row(opened["session_id"])).state == "open"


async def test_homeserver_down_when_webhook_arrives(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, fault_proxy
) -> None:
    agent = await matrix_user("agent")
    service = await sealroom(
        agents={"agent@example.com": agent.user_id}, homeserver_url=fault_proxy.url
    )
    await service.app.bot.wait_until_synced(60)
    await fault_proxy.set_down(True)
    opened = await service.open_ticket("T-300")  # still 201: recorded durably
    await asyncio.sleep(2)
    assert (await service.session_row(opened["session_id"])).room_id is None
    await fault_proxy.set_down(False)
    room_id = await service.wait_for_room(opened["session_id"], timeout=90)
    assert await agent.wait_for_invite(room_id) == room_id


async def test_replayed_delivery_creates_one_room(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    payload = {
        "event": "open",
        "ticket": {"id": "T-400", "subject": "x"},
        "agent": "agent@example.com",
    }
    first = await service.webhook(payload, webhook_id="msg_replay_1")
    second = await service.webhook(payload, webhook_id="msg_replay_1")
    assert first[0] == 201
    assert second[0] == 201
    assert second[1]["replayed"] is True
    assert "invite_url" not in second[1]
    room_id = await service.wait_for_room(first[1]["session_id"])
    await agent.wait_for_invite(room_id)
    await asyncio.sleep(1.5)
    # The bot is in exactly one room, and the agent was invited to exactly one.
    assert set(service.app.bot.client.rooms) == {room_id}
    assert set(agent.client.invited_rooms) | set(agent.client.rooms) == {room_id}


async def test_close_removes_everyone(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    bot_id = service.config.bot.user_id
    opened, room_id = await service.open_room("T-500", agent, customer)
    status, body = await service.webhook({"event": "close", "ticket": {"id": "T-500"}})
    assert status == 202, body
    await customer.wait_for_message(room_id, from_bot(bot_id, "being closed"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (await service.session_row(opened["session_id"])).state == "closed":
            break
        await asyncio.sleep(0.2)
    assert (await service.session_row(opened["session_id"])).state == "closed"
    assert await _joined_members(synapse, room_id) == []
    assert customer.undecryptable(room_id) == []


async def _joined_members(synapse, room_id: str) -> list[str]:
    """Ask the homeserver itself (admin API), not a client's cache."""
    status, data = await synapse.admin_get(f"/_synapse/admin/v1/rooms/{room_id}/members")
    assert status == 200, data
    return list(data["members"])


async def test_members_new_device_gets_the_room_key_on_request(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse, tmp_path
) -> None:
    """A customer who logs in a second device later can still read the bot's notice."""
    customer = await matrix_user("customer")
    service = await sealroom()
    bot_id = service.config.bot.user_id
    await service.open_ticket("T-700")
    status, data = await service.redeem(customer.user_id)
    assert status == 200, data
    room_id = await customer.wait_for_invite()
    await customer.join(room_id)
    await customer.wait_for_message(room_id, from_bot(bot_id, "only to share credentials"))

    localpart = customer.user_id[1:].split(":", 1)[0]
    second = await MatrixUser.create(
        synapse.url, synapse, localpart, tmp_path / "second", password=customer.password
    )
    # nio, like matrix-rust-sdk since 2022, accepts forwarded keys only from its own user's
    # verified devices. Older clients (libolm-era Element) also took them from the session's
    # creator; this device plays such a client, so that the bot's answer itself is checked:
    # a forwarded key, Olm-encrypted to the asking device, that really decrypts the notice.
    olm = second.client.olm
    original_accept = olm._should_accept_forward

    def accept_from_session_creator(sender, sender_key, event):
        if sender == bot_id and event.session_id in olm.outgoing_key_requests:
            return True
        return original_accept(sender, sender_key, event)

    olm._should_accept_forward = accept_from_session_creator
    try:
        await second.start()
        # The customer verifies the new session (strict trust: unverified devices get nothing).
        await second.wait_until(lambda: second.client.olm.account.shared, what="keys uploaded")
        await sign_device_of(second, customer.cross_signing, second.device_id)
        pending = await second.wait_until(
            lambda: dict(second._undecryptable.get(room_id, {})) or None,
            what="the earlier notice, still undecryptable",
        )
        # Like Element, ask the sender's devices (nio itself only asks its own user's).
        for event in pending.values():
            await second.client.to_device(event.as_key_request(bot_id, second.device_id))
        sender, body = await second.wait_for_message(
            room_id, from_bot(bot_id, "only to share credentials"), timeout=30
        )
        assert second.undecryptable(room_id) == []
    finally:
        await second.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def postgres_url():
    """A throwaway database on the local PostgreSQL, dropped afterwards."""
    import asyncpg

    admin_dsn = os.environ.get(
        "SEALROOM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
    )
    name = f"sealroom_e2e_{secrets.token_hex(4)}"
    try:
        conn = await asyncpg.connect(admin_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as err:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at 127.0.0.1:5432: {err}")
        pytest.skip(f"PostgreSQL is not reachable: {err}")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def test_flow_and_restart_on_postgresql(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, postgres_url: str
) -> None:
    """The same service code on PostgreSQL: open, replay, redeem, notice, restart."""
    customer = await matrix_user("customer")
    service = await sealroom(database_url=postgres_url)
    bot_id = service.config.bot.user_id
    payload = {
        "event": "open",
        "ticket": {"id": "T-PG", "subject": "pg"},
        "agent": "agent@example.com",
    }
    status, opened = await service.webhook(payload, webhook_id="msg_pg_1")
    assert status == 201
    replay_status, replay = await service.webhook(payload, webhook_id="msg_pg_1")
    assert replay_status == 201
    assert replay["replayed"] is True
    status, data = await service.redeem(customer.user_id, service.tokens[0])
    assert status == 200, data
    room_id = await customer.wait_for_invite()
    await customer.join(room_id)
    await customer.wait_for_message(room_id, from_bot(bot_id, "only to share credentials"))
    await service.restart()
    row = await service.session_row(opened["session_id"])
    assert row.room_id == room_id
    assert row.state == "open"
    assert customer.undecryptable(room_id) == []
