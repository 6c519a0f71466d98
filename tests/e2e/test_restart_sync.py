"""After a restart with nothing new on the homeserver, the bot still knows every room.

nio ignores a sync response whose `next_batch` equals the token it already has; the saved token
is therefore given to the first sync as `since` only (bridge/matrix/client.py).
"""

from __future__ import annotations

import asyncio
import time

from tests.e2e.conftest import SealroomFactory
from tests.support.fixtures import MatrixUserFactory
from tests.support.service_config import AGENT


async def test_first_sync_after_a_restart_knows_every_room(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    service = await sealroom(agents={AGENT: agent.user_id})
    opened = await service.open_ticket("T-RESTART-1")
    room_id = await service.wait_for_room(opened["session_id"])
    await agent.wait_for_invite(room_id)
    deadline = time.monotonic() + 60
    while room_id not in service.app.bot.require_client().rooms:
        assert time.monotonic() < deadline, "the bot never saw its own room in a sync"
        await asyncio.sleep(0.1)

    await service.restart()

    # Ready means synced once: the first sync after the restart told the bot its rooms.
    assert room_id in service.app.bot.require_client().rooms
