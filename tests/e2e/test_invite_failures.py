"""A customer is never silently stuck: an invitation that fails is told to the agent, and the
customer's link works again (real Synapse, real agent client)."""

from __future__ import annotations

import asyncio
import time

from tests.e2e.conftest import SealroomFactory
from tests.support.fixtures import MatrixUserFactory
from tests.support.matrix_users import from_bot
from tests.support.rows import audit_actions


async def test_unknown_local_account_is_refused_before_the_link_is_spent(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    customer = await matrix_user("customer")
    service = await sealroom()
    await service.open_ticket("T-TYPO")
    token = service.tokens[-1]

    status, body = await service.redeem("@no-such-customer:localhost", token)

    assert status == 400, body
    assert body["errcode"] == "SEALROOM_MATRIX_USER_UNKNOWN"
    assert "no account with this Matrix ID" in str(body["error"])
    status, body = await service.redeem(customer.user_id, token)
    assert status == 200, body
    await customer.wait_for_invite()


async def test_a_refused_invitation_is_told_to_the_agent_and_the_link_works_again(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(
        agents={"agent@example.com": agent.user_id},
        jobs={"retry_initial_seconds": 0.2, "retry_max_seconds": 1.0, "max_attempts": 3},
    )
    bot_id = service.config.bot.user_id
    opened = await service.open_ticket("T-REFUSED")
    token = service.tokens[-1]
    room_id = await agent.wait_for_invite()
    await agent.join(room_id)

    # A server the homeserver will not talk to (a loopback address, refused by Synapse's
    # federation IP blacklist): the invitation cannot succeed.
    remote = "@customer:127.0.0.1:9"
    status, body = await service.redeem(remote, token)
    assert status == 200, body

    await agent.wait_for_message(
        room_id, from_bot(bot_id, f"invitation of {remote} failed"), timeout=90
    )
    database, session_id = service.app.database, opened["session_id"]
    deadline = time.monotonic() + 30
    while "member.invite_failed" not in await audit_actions(database, session_id):
        assert time.monotonic() < deadline, await audit_actions(database, session_id)
        await asyncio.sleep(0.2)
    status, body = await service.redeem(customer.user_id, token)
    assert status == 200, body
    assert await customer.wait_for_invite() == room_id
