"""The session's clock in the room: the expiry warning (moved by !extend), the customer leaving."""

from __future__ import annotations

from datetime import timedelta

from bridge import notices
from bridge.jobs import Action
from store import Database, Job
from tests.support.domain import (
    AGENT_ID,
    CUSTOMER_ID,
    OTHER_AGENT,
    OTHER_AGENT_ID,
    World,
    build_world,
)

WARNING = timedelta(minutes=60)


async def _warnings(world: World) -> list[Job]:
    return [j for j in await world.jobs(Action.NOTICE) if j.params["kind"] == "expiry_warning"]


async def test_the_room_is_warned_before_expiry_and_an_extension_moves_the_warning(
    database: Database,
) -> None:
    world = build_world(database, expiry_warning=WARNING)
    opened, room_id = await world.open_room()
    session = await world.session(opened.session_id)
    [warning] = [
        j for j in await world.jobs(Action.NOTICE) if j.params["kind"] == "expiry_warning"
    ]
    assert warning.run_after == session.expires_at - WARNING

    # Not due yet: nothing is said.
    assert "notice" not in await world.run_due()
    # The agent extends; the first warning, once due, finds the deadline moved and stays silent.
    await world.room_events.agent_command(room_id, AGENT_ID, "!extend 2h", "$extend")
    await world.run_due()  # the "extended" notice
    world.clock.now = session.expires_at - WARNING + timedelta(seconds=1)
    await world.run_due()
    assert not [t for t in world.rooms.notices() if "will be closed and wiped" in t]

    extended = await world.session(opened.session_id)
    world.clock.now = extended.expires_at - WARNING + timedelta(seconds=1)
    await world.run_due()

    assert world.rooms.notices()[-1] == notices.expiry_warning(extended.expires_at)


async def test_no_warning_is_scheduled_when_it_is_turned_off(database: Database) -> None:
    world = build_world(database, expiry_warning=timedelta(0))
    await world.open_room()

    assert [
        j for j in await world.jobs(Action.NOTICE) if j.params["kind"] == "expiry_warning"
    ] == []


async def test_the_agent_is_told_when_the_customer_leaves_once_per_event(
    database: Database,
) -> None:
    world = build_world(database)
    opened, room_id = await world.open_room()

    await world.room_events.member_left(room_id, CUSTOMER_ID, "$left")
    await world.room_events.member_left(room_id, CUSTOMER_ID, "$left")  # replayed timeline
    await world.room_events.member_left(room_id, AGENT_ID, "$agent-left")
    await world.room_events.member_left(room_id, world.rooms.bot_user_id, "$bot-left")
    await world.run_due()

    assert world.rooms.notices() == [notices.customer_left(CUSTOMER_ID)]
    [left] = await world.audit("member.left")
    assert (left.session_id, left.actor) == (opened.session_id, CUSTOMER_ID)


async def test_handing_the_ticket_to_another_agent_invites_them_and_removes_the_first(
    database: Database,
) -> None:
    world = build_world(database)
    opened, room_id = await world.open_room()

    await world.open_ticket("T-1", OTHER_AGENT)  # re-opened (or reassigned) to another agent
    await world.run_due()

    assert world.rooms.called("invite")[-1] == (room_id, OTHER_AGENT_ID)
    [(kicked_room, kicked, _)] = world.rooms.called("kick")
    assert (kicked_room, kicked) == (room_id, AGENT_ID)
    assert (await world.session(opened.session_id)).agent_user_id == OTHER_AGENT_ID
    [removed] = await world.audit("member.removed")
    assert removed.detail["user_id"] == AGENT_ID


async def test_the_new_agent_gets_the_agent_power_level_and_the_old_one_loses_it(
    database: Database,
) -> None:
    world = build_world(database)
    _, room_id = await world.open_room()

    await world.open_ticket("T-1", OTHER_AGENT)  # reassigned
    await world.run_due()

    levels = world.rooms.called("set_power_level")
    assert (room_id, OTHER_AGENT_ID, 50) in levels
    assert (room_id, AGENT_ID, None) in levels
    assert world.rooms.power_levels[room_id] == {OTHER_AGENT_ID: 50}
    # The old agent is out of the room before their level is taken back.
    kicked_at = [n for n, (name, _) in enumerate(world.rooms.calls) if name == "kick"]
    demoted_at = [
        n
        for n, (name, args) in enumerate(world.rooms.calls)
        if name == "set_power_level" and args[2] is None
    ]
    assert kicked_at < demoted_at


async def test_an_integration_can_have_its_own_session_lifetime(database: Database) -> None:
    world = build_world(database, integration_lifetimes={"helpdesk": timedelta(hours=4)})

    opened = await world.open_ticket()

    session = await world.session(opened.session_id)
    assert session.expires_at == session.created_at + timedelta(hours=4)
    [expire] = await world.jobs(Action.EXPIRE)
    assert expire.run_after == session.expires_at
