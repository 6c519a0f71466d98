"""The idle timeout (`rooms.idle_hours`) on a clock the test moves: warned, then closed with the
wipe; a message moves the deadline; the last activity is written at most once a minute."""

from __future__ import annotations

from datetime import timedelta

from bridge import notices
from bridge.jobs import Action
from store import Database
from tests.support.domain import AGENT_ID, CUSTOMER_ID, START, World, build_world

IDLE = timedelta(hours=2)
WARNING = timedelta(minutes=30)


def _world(database: Database, **settings: object) -> World:
    return build_world(database, idle_timeout=IDLE, expiry_warning=WARNING, **settings)


async def test_a_quiet_room_is_warned_then_closed_and_wiped(database: Database) -> None:
    world = _world(database)
    opened, room_id = await world.open_room()
    [check] = await world.jobs(Action.IDLE_CHECK)
    assert check.run_after == START + IDLE - WARNING

    world.clock.now = START + IDLE - WARNING
    await world.run_due()
    assert world.rooms.notices(room_id) == [notices.idle_warning(START + IDLE)]
    assert (await world.session(opened.session_id)).state == "open"

    world.clock.now = START + IDLE
    ran = await world.run_due()

    session = await world.session(opened.session_id)
    assert (session.state, session.close_reason) == ("closed", "idle")
    assert "close_room" in ran
    assert world.rooms.called("leave") == [(room_id,)]
    assert [e.detail["reason"] for e in await world.audit("session.closing")] == ["idle"]


async def test_a_message_moves_the_deadline_and_silences_a_pending_warning(
    database: Database,
) -> None:
    world = _world(database)
    opened, room_id = await world.open_room()
    world.clock.now = START + IDLE - WARNING
    await world.run(Action.IDLE_CHECK)  # the warning is scheduled ...
    spoke_at = world.clock.advance(minutes=1)
    await world.room_events.message_seen(room_id, CUSTOMER_ID)  # ... then the customer speaks

    await world.run_due()
    world.clock.now = START + IDLE + timedelta(minutes=5)
    await world.run_due()

    assert world.rooms.notices(room_id) == []  # the warning found the room not idle any more
    session = await world.session(opened.session_id)
    assert (session.state, session.last_activity_at) == ("open", spoke_at)
    # The next look is when the warning for the new deadline is due.
    checks = [job.run_after for job in await world.jobs(Action.IDLE_CHECK)]
    assert checks == [spoke_at + IDLE - WARNING]

    world.clock.now = spoke_at + IDLE - WARNING
    await world.run_due()
    world.clock.now = spoke_at + IDLE
    await world.run_due()
    assert (await world.session(opened.session_id)).state == "closed"
    assert world.rooms.notices(room_id)[:2] == [
        notices.idle_warning(spoke_at + IDLE),
        notices.closing("idle"),
    ]


async def test_activity_is_written_at_most_once_a_minute_and_not_for_the_bot(
    database: Database,
) -> None:
    world = _world(database)
    opened, room_id = await world.open_room()

    first = world.clock.advance(minutes=10)
    await world.room_events.message_seen(room_id, AGENT_ID)
    world.clock.advance(seconds=30)
    await world.room_events.message_seen(room_id, CUSTOMER_ID)
    after_throttle = (await world.session(opened.session_id)).last_activity_at
    world.clock.advance(minutes=5)
    await world.room_events.message_seen(room_id, world.rooms.bot_user_id)
    after_bot = (await world.session(opened.session_id)).last_activity_at
    later = world.clock.advance(seconds=31)
    await world.room_events.message_seen(room_id, CUSTOMER_ID)

    assert after_throttle == first
    assert after_bot == first
    assert (await world.session(opened.session_id)).last_activity_at == later


async def test_a_second_service_process_does_not_write_more_than_once_a_minute(
    database: Database,
) -> None:
    """The in-memory throttle is per process; the UPDATE itself checks the minute too."""
    world = _world(database)
    opened, room_id = await world.open_room()
    other = _world(database)
    other.clock.now = world.clock.now

    first = world.clock.advance(minutes=10)
    other.clock.now = first
    await world.room_events.message_seen(room_id, AGENT_ID)
    other.clock.advance(seconds=20)
    await other.room_events.message_seen(room_id, CUSTOMER_ID)

    assert (await world.session(opened.session_id)).last_activity_at == first


async def test_without_an_idle_timeout_nothing_is_scheduled_or_written(
    database: Database,
) -> None:
    world = build_world(database, expiry_warning=WARNING)
    opened, room_id = await world.open_room()
    world.clock.advance(minutes=10)
    await world.room_events.message_seen(room_id, CUSTOMER_ID)

    assert await world.jobs(Action.IDLE_CHECK) == []
    assert (await world.session(opened.session_id)).last_activity_at == START


async def test_an_extension_does_not_stop_the_idle_timeout(database: Database) -> None:
    """!extend is about the session's lifetime; the idle timeout counts messages (the command
    itself is one, seen by the sync like any other)."""
    world = _world(database)
    opened, room_id = await world.open_room()
    await world.room_events.agent_command(room_id, AGENT_ID, "!extend 3d", "$extend")
    world.clock.now = START + IDLE
    await world.run_due()
    await world.run_due()

    session = await world.session(opened.session_id)
    assert (session.state, session.close_reason) == ("closed", "idle")
    assert session.expires_at > START + timedelta(days=3)
