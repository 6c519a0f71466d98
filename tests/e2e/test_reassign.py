"""A ticket handed to another agent, against the real Synapse: the new agent is invited with
the agent's power level, the old one is removed and loses it (the two jobs run at once: their
power-level changes must not undo each other)."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

from bridge.ids import RoomID, UserID
from tests.e2e.conftest import SealroomFactory
from tests.support.fixtures import MatrixUserFactory


async def _power_levels(synapse: Any, room_id: str) -> dict[str, int]:
    status, data = await synapse.admin_get(
        f"/_synapse/admin/v1/rooms/{quote(room_id, safe='')}/state"
    )
    assert status == 200, data
    [levels] = [e for e in data["state"] if e["type"] == "m.room.power_levels"]
    return dict(levels["content"].get("users", {}))


async def test_the_new_agent_gets_the_agent_power_level_and_the_old_one_loses_it(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse: Any
) -> None:
    first = await matrix_user("agent")
    second = await matrix_user("agent2")
    service = await sealroom(
        agents={"agent@example.com": first.user_id, "agent2@example.com": second.user_id}
    )
    await service.open_ticket("T-HAND-1")
    room_id = await first.wait_for_invite()
    await first.join(room_id)
    assert (await _power_levels(synapse, room_id)).get(first.user_id) == 50

    status, body = await service.webhook(
        {"event": "open", "ticket": {"id": "T-HAND-1"}, "agent": "agent2@example.com"}
    )
    assert status == 200, body
    await second.wait_for_invite(room_id)
    await second.join(room_id)

    deadline = time.monotonic() + 60
    levels = await _power_levels(synapse, room_id)
    while levels.get(second.user_id) != 50 or first.user_id in levels:
        assert time.monotonic() < deadline, levels
        await asyncio.sleep(0.3)
        levels = await _power_levels(synapse, room_id)
    room = await second.wait_for_room(room_id)
    await second.wait_until(
        lambda: first.user_id not in room.users or None, what="the first agent's removal"
    )

    # A removal retried after a crash kicks someone already gone: Synapse refuses ("The target
    # user is not in the room"), which is success for a job that only wants them out.
    await service.app.rooms.kick(RoomID(room_id), UserID(first.user_id), "handed over")
