"""Zero-knowledge mode (`rooms.bot_stays: false`) against the real Synapse: the bot leaves
before the customer speaks, never receives the room key of what the customer sends afterwards
(its nio crypto store has no inbound group session for it, while the agent's client has), and
closing the ticket still wipes the room (the admin API finds no room)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any
from urllib.parse import quote

import store.audit
from store import Database
from tests.e2e.conftest import Sealroom, SealroomFactory
from tests.support.fixtures import MatrixUserFactory


async def _trail(database: Database, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with database.transaction() as db:
        return [(e.action, dict(e.detail)) for e in await store.audit.for_session(db, session_id)]


async def _until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def _bot_synced_twice(service: Sealroom) -> None:
    """Two more syncs of the bot: any to-device key meant for it would have arrived by now."""
    for _ in range(2):
        before = service.app.bot.last_sync_monotonic

        async def moved(before: float | None = before) -> bool:
            return service.app.bot.last_sync_monotonic != before

        await _until(moved, "a sync of the bot")


async def test_the_bot_leaves_before_the_customer_speaks_cannot_read_it_and_close_still_wipes(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse: Any
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(
        agents={"agent@example.com": agent.user_id},
        admin_token=True,
        rooms={"bot_stays": False},
    )
    bot_id = service.config.bot.user_id
    opened, room_id = await service.open_room("T-ZK-1", agent, customer)
    session_id = str(opened["session_id"])

    # The rules reach the customer, saying the bot is about to leave; then it is gone.
    await customer.wait_for_message(
        room_id, lambda sender, body: sender == bot_id and "Zero-knowledge mode" in body
    )
    room = await customer.wait_for_room(room_id)
    await customer.wait_until(
        lambda: bot_id not in room.users or None, what="the bot leaving the room"
    )

    async def recorded() -> bool:
        return (await service.session_row(session_id)).bot_left_at is not None

    await _until(recorded, "the departure in the session's row")

    canary = f"canary-password-{secrets.token_hex(8)}"
    event_id = await customer.send_text(room_id, canary)
    await agent.wait_for_message(room_id, lambda sender, body: body == canary)
    await _bot_synced_twice(service)

    # The Megolm session of that message: the agent's client has it, sealroom's store has not.
    status, data = await synapse.admin_get(
        f"/_synapse/admin/v1/rooms/{quote(room_id, safe='')}/messages?dir=b&limit=100"
    )
    assert status == 200, data
    [event] = [e for e in data["chunk"] if e["event_id"] == event_id]
    assert event["type"] == "m.room.encrypted"
    megolm_id, sender_key = event["content"]["session_id"], event["content"]["sender_key"]
    assert agent.client.olm is not None
    assert agent.client.olm.inbound_group_store.get(room_id, sender_key, megolm_id) is not None
    bot = service.app.bot.require_client()
    assert bot.olm is not None
    assert bot.olm.inbound_group_store.get(room_id, sender_key, megolm_id) is None
    in_memory = {group_session.id for group_session in bot.olm.inbound_group_store}
    persisted = {group_session.id for group_session in bot.store.load_inbound_group_sessions()}
    assert megolm_id not in in_memory | persisted
    for path, content in service.secret_haystack():
        assert canary.encode() not in content, path

    # Closing the ticket still wipes the room: purged through the admin API.
    status, body = await service.webhook({"event": "close", "ticket": {"id": "T-ZK-1"}})
    assert status == 202, body

    async def closed() -> bool:
        return (await service.session_row(session_id)).state == "closed"

    await _until(closed, "the session to close", timeout=120)
    status, data = await synapse.admin_get(f"/_synapse/admin/v1/rooms/{quote(room_id, safe='')}")
    assert status == 404, data
    trail = await _trail(service.app.database, session_id)
    steps = ["room.bot_left", "room.wipe_started", "room.purged", "session.closed"]
    assert [action for action, _ in trail if action in steps] == steps
    assert dict(trail)["room.wipe_started"]["purge_only"] is True
    assert "room.redacted" not in dict(trail)
    assert "job.failed" not in dict(trail)
