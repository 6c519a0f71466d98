"""Zero-knowledge mode (`rooms.bot_stays: false`): the bot leaves once the agent and the
customer are in and its notices are out; afterwards it says and does nothing in the room, and
the wipe purges the room through the admin API without being a member."""

from __future__ import annotations

import pytest

from bridge import notices
from bridge.errors import SessionClosed
from bridge.ids import RoomID, UserID
from bridge.jobs import Action, RetryLater
from bridge.room_jobs import BOT_GONE
from bridge.wipe import BOT_LEFT, BOT_NOT_IN_ROOM, FILES_UNKNOWN, NOT_WIPED
from store import Database
from tests.support.domain import AGENT_ID, CUSTOMER_ID, OTHER_AGENT, World, build_world
from tests.support.fakes import forbidden


async def _both_join(world: World, room_id: str) -> None:
    """The agent joins (and is welcomed), then the customer (invited through their link)."""
    world.rooms.join(room_id, AGENT_ID)
    await world.room_events.member_joined(room_id, AGENT_ID, "$agent-joined")
    await world.run_due()
    await world.rooms.invite(RoomID(room_id), UserID(CUSTOMER_ID))
    world.rooms.join(room_id, CUSTOMER_ID)
    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$customer-joined")


async def _departed(database: Database, **settings: object) -> tuple[World, str, str]:
    world = build_world(database, bot_stays=False, **settings)
    opened, room_id = await world.open_room()
    await _both_join(world, room_id)
    await world.run_due()
    return world, opened.session_id, room_id


async def test_the_bot_leaves_after_its_notices_once_agent_and_customer_are_in(
    database: Database,
) -> None:
    world = build_world(database, bot_stays=False)
    opened, room_id = await world.open_room()
    world.rooms.join(room_id, AGENT_ID)
    await world.room_events.member_joined(room_id, AGENT_ID, "$agent-joined")
    await world.run_due()
    assert world.rooms.called("leave") == []  # the customer is not there yet
    await world.rooms.invite(RoomID(room_id), UserID(CUSTOMER_ID))
    world.rooms.join(room_id, CUSTOMER_ID)
    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$customer-joined")

    # Before the rules notice is out, the bot does not leave (the runner retries).
    early = await world.take(Action.DEPART)
    with pytest.raises(RetryLater):
        await world.registry.handlers[Action.DEPART.value](early)
    await world.retry_now(early)
    await world.run_due()

    methods = [name for name, _ in world.rooms.calls if name in ("send_notice", "leave")]
    assert methods == ["send_notice", "send_notice", "leave"]  # welcome, rules, then gone
    assert all(notices.bot_leaving() in text for text in world.rooms.notices(room_id))
    session = await world.session(opened.session_id)
    assert session.bot_left_at == world.clock()
    assert session.state == "open"
    [left] = await world.audit("room.bot_left")
    assert left.detail == {"reason": "rooms.bot_stays: false (zero-knowledge mode)", "members": 2}


async def test_once_gone_the_bot_posts_nothing_invites_nobody_and_kicks_nobody(
    database: Database,
) -> None:
    world, session_id, room_id = await _departed(database)
    calls = len(world.rooms.calls)

    await world.open_ticket("T-1", OTHER_AGENT)  # handed to another agent
    await world.room_events.agent_command(room_id, AGENT_ID, "!status", "$status")  # unseen
    await world.run_due()

    assert world.rooms.calls[calls:] == []
    [failed] = await world.audit("member.invite_failed")
    assert failed.detail["error"] == BOT_GONE


async def test_closing_a_room_the_bot_left_purges_it_without_redacting_or_removing(
    database: Database,
) -> None:
    world, session_id, room_id = await _departed(database)
    calls = len(world.rooms.calls)

    await world.sessions.close(session_id, "helpdesk", "helpdesk")
    await world.run_due()

    assert world.rooms.calls[calls:] == []  # not a member: nothing asked of the room
    assert world.purger is not None
    assert world.purger.purged == [RoomID(room_id)]
    session = await world.session(session_id)
    assert session.state == "closed"
    assert session.purged_at == world.clock()
    trail = [(e.action, e.detail) for e in await world.audit()]
    steps = [a for a, _ in trail if a.startswith(("room.", "media.", "session.closed"))]
    assert steps == [
        "room.created",
        "room.bot_left",
        "room.wipe_started",
        "room.purged",
        "media.delete_skipped",
        "session.closed",
    ]
    started = dict(trail)["room.wipe_started"]
    assert started["purge_only"] is True
    assert started["reason"].startswith(BOT_LEFT)
    assert dict(trail)["media.delete_skipped"] == {"reason": FILES_UNKNOWN}
    with pytest.raises(SessionClosed):
        await world.sessions.close(session_id, "agent", AGENT_ID)


async def test_without_an_admin_token_the_trail_says_nothing_could_be_wiped_and_it_ends(
    database: Database,
) -> None:
    """Start-up refuses this configuration; a token removed later must not loop for ever."""
    world, session_id, _ = await _departed(database, admin_token=False)

    await world.sessions.close(session_id, "helpdesk", "helpdesk")
    await world.run_due()

    assert (await world.session(session_id)).state == "closed"
    [skipped] = await world.audit("room.purge_skipped")
    assert skipped.detail == {"reason": NOT_WIPED}
    assert await world.audit("job.failed") == []


async def test_a_wipe_that_finds_the_bot_out_of_the_room_purges_instead_of_retrying(
    database: Database,
) -> None:
    world = build_world(database)  # the bot should stay, but it is not in the room any more
    opened, room_id = await world.open_room()
    world.rooms.fail_next("joined_members", forbidden("You are not in the room"))

    await world.sessions.close(opened.session_id, "agent", AGENT_ID)
    await world.run_due()

    assert world.purger is not None
    assert world.purger.purged == [RoomID(room_id)]
    assert world.rooms.called("redact") == []
    [started] = await world.audit("room.wipe_started")
    assert started.detail["purge_only"] is True
    assert started.detail["reason"].startswith(BOT_NOT_IN_ROOM)
    assert (await world.session(opened.session_id)).state == "closed"


async def test_when_the_bot_stays_it_never_leaves_before_the_wipe(database: Database) -> None:
    world = build_world(database)
    opened, room_id = await world.open_room()
    await _both_join(world, room_id)
    await world.run_due()

    assert await world.jobs(Action.DEPART, "done") == []
    assert world.rooms.called("leave") == []
    assert (await world.session(opened.session_id)).bot_left_at is None


async def test_a_departure_whose_record_was_lost_in_a_crash_is_recorded_on_the_retry(
    database: Database,
) -> None:
    world = build_world(database, bot_stays=False)
    opened, room_id = await world.open_room()
    await _both_join(world, room_id)
    await world.run(Action.NOTICE)  # the rules
    await world.rooms.leave(RoomID(room_id))  # it left, then the process died
    world.rooms.fail_next("joined_members", forbidden("You are not in the room"))

    await world.run(Action.DEPART)

    assert world.rooms.called("leave") == [(RoomID(room_id),)]
    assert (await world.session(opened.session_id)).bot_left_at is not None
    assert len(await world.audit("room.bot_left")) == 1


async def test_a_join_the_homeserver_knows_before_the_bot_saw_it_does_not_make_it_leave_early(
    database: Database,
) -> None:
    """The race the real Synapse showed: a departure finds the customer joined (the homeserver
    says so) before the bot's sync saw the join and scheduled the rules."""
    world = build_world(database, bot_stays=False)
    _, room_id = await world.open_room()
    world.rooms.join(room_id, AGENT_ID)
    await world.room_events.member_joined(room_id, AGENT_ID, "$agent-joined")
    await world.run(Action.NOTICE)  # the agent's welcome
    await world.rooms.invite(RoomID(room_id), UserID(CUSTOMER_ID))
    world.rooms.join(room_id, CUSTOMER_ID)  # joined; the bot's sync has not told it yet

    await world.run(Action.DEPART)  # the one the agent's join asked for
    assert world.rooms.called("leave") == []

    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$customer-joined")
    await world.run_due()
    names = [name for name, _ in world.rooms.calls if name in ("send_notice", "leave")]
    assert names == ["send_notice", "send_notice", "leave"]  # the rules went out first
