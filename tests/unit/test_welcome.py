"""bridge.welcome: the first notice to someone on another homeserver who just joined waits for
their client to know the bot's device (their first message), or for at most
`first_notice_wait`."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from bridge import notices
from bridge.ids import UserID, server_of
from bridge.jobs import Action, schedule
from tests.support.domain import AGENT_ID, CUSTOMER_ID, OpenRoom, World

WAIT = timedelta(seconds=3)
REMOTE_AGENT = "@someone-else:example.com"  # not the session's agent: gets the rules


def _waiting(world: World) -> None:
    world.sessions.settings = dataclasses.replace(world.sessions.settings, first_notice_wait=WAIT)


async def test_the_rules_wait_for_the_customers_client_at_most_the_configured_time(
    room: OpenRoom,
) -> None:
    world, opened, room_id = room
    _waiting(world)

    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$join")

    assert await world.run_due() == []  # not yet
    world.clock.advance(seconds=WAIT.total_seconds())
    assert await world.run_due() == ["notice"]
    session = await world.session(opened.session_id)
    assert world.rooms.notices() == [
        notices.rules(session.ticket_ref, session.expires_at, session.subject)
    ]


async def test_the_customers_first_message_lets_their_rules_go_at_once(room: OpenRoom) -> None:
    world, _, room_id = room
    _waiting(world)
    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$join")
    await world.room_events.member_joined(room_id, REMOTE_AGENT, "$agent-join")
    wakes = len(world.wakes)

    await world.room_events.member_spoke(room_id, CUSTOMER_ID)

    assert len(world.wakes) == wakes + 1
    assert await world.run_due() == ["notice"]  # the customer's; the agent's still waits
    [waiting] = await world.jobs(Action.NOTICE)
    assert waiting.params == {"kind": "rules", "user_id": REMOTE_AGENT}


async def test_a_message_releases_nothing_else(room: OpenRoom) -> None:
    """Other notices that wait on purpose (the expiry warning) keep waiting."""
    world, opened, room_id = room
    _waiting(world)
    now = world.clock()
    async with world.database.transaction() as db:
        await schedule(
            db,
            Action.NOTICE,
            now,
            session_id=opened.session_id,
            params={"kind": "expiry_warning", "expires_at": "later"},
            run_after=now + timedelta(hours=1),
        )
    before = {job.id: job.run_after for job in await world.jobs(Action.NOTICE)}
    assert len(before) == 1
    wakes = len(world.wakes)

    await world.room_events.member_spoke(room_id, CUSTOMER_ID)
    await world.room_events.member_spoke(room_id, world.rooms.bot_user_id)

    assert {job.id: job.run_after for job in await world.jobs(Action.NOTICE)} == before
    assert len(world.wakes) == wakes
    assert await world.run_due() == []


async def test_members_on_our_own_homeserver_do_not_wait(room: OpenRoom) -> None:
    world, _, room_id = room
    _waiting(world)
    assert server_of(UserID(AGENT_ID)) == world.sessions.settings.server_name
    assert server_of(UserID(CUSTOMER_ID)) != world.sessions.settings.server_name

    await world.room_events.member_joined(room_id, AGENT_ID, "$agent-join")

    assert await world.run_due() == ["notice"]


async def test_without_a_wait_the_rules_go_at_once(room: OpenRoom) -> None:
    world, _, room_id = room

    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$join")

    assert await world.run_due() == ["notice"]
