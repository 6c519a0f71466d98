"""bridge.wipe: the wipe at close, step by step, against a real store and the fakes.

The fake room pages its timeline 10 events at a time, so a history of a few dozen events takes
several pages, as a real one takes several `/messages` calls.
"""

from __future__ import annotations

from typing import Any

import pytest

from bridge import wipe
from bridge.errors import HomeserverUnavailable, MatrixRequestFailed
from bridge.ids import RoomID
from bridge.jobs import Action, JobContext
from bridge.ports import RoomEvent
from store import Database
from tests.support.domain import AGENT_ID, CUSTOMER_ID, OpenRoom, World, build_world
from tests.support.fakes import FakeEvent, rate_limited
from tests.support.logs import captured

SCREENSHOT = "mxc://example.org/screenshot"
THUMBNAIL = "mxc://example.org/screenshot-thumb"
SECRET_FILE = "mxc://example.org/encrypted-keyfile"
REMOTE_FILE = "mxc://elsewhere.net/their-file"
WIPE_STEPS = [
    "room.wipe_started",
    "room.redacted",
    "room.members_removed",
    "room.redacted",  # the closing notice and anything sent meanwhile
    "room.purged",
    "media.deleted",
    "session.closed",
]


def _history(world: World, room_id: str, messages: int = 30) -> list[str]:
    """A room's life: state the room needs, words in its name, every kind of message of both
    members, files (plain and inside encrypted events), one the bot could not decrypt."""
    rooms, room = world.rooms, RoomID(room_id)
    bot = rooms.bot_user_id
    for kind in ("m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.name"):
        rooms.post(room, bot, kind, state_key="")
    rooms.post(room, bot, "m.room.member", state_key=bot)
    rooms.post(room, AGENT_ID, "m.room.member", state_key=AGENT_ID)
    rooms.post(room, CUSTOMER_ID, "m.room.member", state_key=CUSTOMER_ID)
    rooms.post(room, bot, "m.room.encrypted")  # the rules notice
    rooms.post(room, CUSTOMER_ID, "m.room.message", media=(SCREENSHOT, THUMBNAIL))
    rooms.post(room, CUSTOMER_ID, "m.room.encrypted", media=(SECRET_FILE,))
    rooms.post(room, AGENT_ID, "m.reaction")
    rooms.post(room, AGENT_ID, "m.sticker", media=(REMOTE_FILE,))
    rooms.post(room, CUSTOMER_ID, "m.room.encrypted", undecryptable=True)
    for n in range(messages):
        rooms.post(room, CUSTOMER_ID if n % 2 else AGENT_ID, "m.room.encrypted")
    return [e.event_id for e in rooms.timelines[room] if wipe.wipeable(e.seen())]


def _events(world: World, room_id: str) -> list[FakeEvent]:
    return world.rooms.timelines[RoomID(room_id)]


async def _close(world: World, session_id: str, reason: str = "helpdesk") -> None:
    await world.sessions.close(session_id, reason, reason)
    world.rooms.calls.clear()


async def test_the_wipe_redacts_everything_then_removes_leaves_purges_and_deletes_files(
    room: OpenRoom,
) -> None:
    world, opened, room_id = room
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    await world.run(Action.INVITE)
    wanted = _history(world, room_id)
    closing_notice = len(_events(world, room_id))  # where it will be in the timeline
    await _close(world, opened.session_id)

    await world.run(Action.CLOSE_ROOM)

    events = {e.event_id: e for e in _events(world, room_id)}
    # Every message of every sender, exactly once; the state the room needs is kept.
    assert all(e.redactions <= 1 for e in events.values())
    assert {e.event_id for e in events.values() if e.redactions} == {
        *wanted,
        _events(world, room_id)[closing_notice].event_id,
    }
    kept = {e.type for e in events.values() if not e.redactions}
    assert kept == {
        "m.room.create",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.member",
        "m.room.redaction",
    }
    # The whole history was read, page after page, backwards from the live end.
    backwards = [token for _, token, forward in world.rooms.called("history") if not forward]
    assert backwards == [None, "t43", "t33", "t23", "t13", "t3"]  # None: where it ends
    # In order: the notice, the redactions, the removals, the closing notice redacted last
    # (the members could read it until they were removed), then the bot leaves.
    names = [name for name, _ in world.rooms.calls]
    assert names[:3] == ["joined_members", "history", "send_notice"]
    first_kick = names.index("kick")
    assert names[:first_kick].count("redact") == len(wanted)
    assert names[first_kick:].count("redact") == 1
    assert world.rooms.called("redact")[-1][1] == _events(world, room_id)[closing_notice].event_id
    assert names[-1] == "leave"
    assert world.rooms.rooms[RoomID(room_id)] == []
    # Purged, and the room's files deleted (another server's cannot be).
    assert world.purger is not None
    assert world.purger.purged == [RoomID(room_id)]
    assert sorted(world.purger.deleted) == sorted([SCREENSHOT, THUMBNAIL, SECRET_FILE])
    assert ("delete_media", (REMOTE_FILE,)) in world.purger.calls
    # Each step is in the audit trail, in order.
    trail = await world.audit(*WIPE_STEPS)
    assert [event.action for event in trail] == WIPE_STEPS
    detail = {event.action: event.detail for event in trail}
    assert trail[1].detail == {"count": len(wanted), "media": 4, "undecryptable": 1}
    assert trail[3].detail == {"count": 1, "late": True}
    assert detail["room.members_removed"] == {"count": 2}
    [unknown] = [e.event_id for e in events.values() if e.undecryptable]
    assert detail["media.deleted"] == {
        "count": 3,
        "other_servers": 1,
        "undecryptable": 1,  # the bot had no key for it: its files (if any) are unknown
        "undecryptable_events": [unknown],
    }
    assert (await world.session(opened.session_id)).state == "closed"


async def test_the_files_stay_out_of_the_audit_trail_and_the_logs(room: OpenRoom) -> None:
    world, opened, room_id = room
    _history(world, room_id, messages=2)
    await _close(world, opened.session_id)

    with captured() as logged:
        await world.run(Action.CLOSE_ROOM)

    assert '"event": "media.deleted"' in logged.getvalue()
    assert "mxc://" not in logged.getvalue()
    for event in await world.audit():
        assert "mxc://" not in str(event.detail)


class Killed(Exception):
    """The process died here (the checkpoint was not saved)."""


async def _killed_after(world: World, context: JobContext, saves: int) -> None:
    """Run the job until it has saved `saves` checkpoints, and die at the next one."""
    done = 0

    async def save(job_id: int, checkpoint: dict[str, Any]) -> None:
        nonlocal done
        if done == saves:
            raise Killed()
        done += 1
        await world.save_checkpoint(job_id, checkpoint)

    context._save = save
    with pytest.raises(Killed):
        await world.room_jobs.close_room(context)


# Killed at the n-th checkpoint: 0, the first page's files noted; 5 and 12, redactions on two
# pages; 10, a page done; 45, the last redaction of the history; 47, the closing notice
# redacted; 52 to 54, the late pass done, left, purged; 56, a file deleted.
@pytest.mark.parametrize("saves", [0, 5, 10, 12, 45, 47, 52, 53, 54, 56])
async def test_a_wipe_killed_midway_resumes_from_its_checkpoint_without_redacting_twice(
    room: OpenRoom, saves: int
) -> None:
    world, opened, room_id = room
    wanted = _history(world, room_id)
    await _close(world, opened.session_id)
    await _killed_after(world, await world.take(Action.CLOSE_ROOM), saves)
    assert (await world.session(opened.session_id)).state == "closing"
    redacted_before = len(world.rooms.called("redact"))

    # The runner re-runs the job after the restart, from what was saved.
    await world.retry_now(await _job(world))
    context = await world.take(Action.CLOSE_ROOM)
    await world.room_jobs.close_room(context)

    events = {e.event_id: e for e in _events(world, room_id)}
    assert all(events[event_id].redactions == 1 for event_id in wanted)
    assert all(e.redactions <= 1 for e in events.values())
    assert len(world.rooms.called("send_notice")) == 1
    assert len(world.rooms.called("redact")) >= redacted_before
    assert world.purger is not None
    assert sorted(world.purger.deleted) == sorted([SCREENSHOT, THUMBNAIL, SECRET_FILE])
    assert (await world.session(opened.session_id)).state == "closed"
    # A redaction whose checkpoint was lost shows as "already redacted" on the re-run: counted
    # once at most.
    redacted, *late = await world.audit("room.redacted")
    assert len(wanted) - 1 <= redacted.detail["count"] <= len(wanted)
    assert [event.detail for event in late] in ([{"count": 1, "late": True}], [])


async def _job(world: World) -> JobContext:
    [job] = await world.jobs(Action.CLOSE_ROOM, state="running")
    return JobContext(job.id, job.session_id, dict(job.params), dict(job.checkpoint or {}))


async def test_an_outage_midway_resumes_where_the_redaction_stopped(room: OpenRoom) -> None:
    world, opened, room_id = room
    wanted = _history(world, room_id)
    await _close(world, opened.session_id)
    context = await world.take(Action.CLOSE_ROOM)
    redact = world.rooms.redact
    count = 0

    async def flaky(room: RoomID, event_id: str, reason: str) -> None:
        nonlocal count
        count += 1
        if count == 15:
            raise HomeserverUnavailable("the homeserver went away")
        await redact(room, event_id, reason)

    world.rooms.redact = flaky  # type: ignore[method-assign]
    with pytest.raises(HomeserverUnavailable):
        await world.room_jobs.close_room(context)
    checkpoint = (await _job(world)).checkpoint
    assert checkpoint["step"] == "redact"
    assert checkpoint["redacted"] == 14

    await world.retry_now(await _job(world))
    await world.room_jobs.close_room(await world.take(Action.CLOSE_ROOM))

    events = {e.event_id: e for e in _events(world, room_id)}
    assert all(events[event_id].redactions == 1 for event_id in wanted)
    redacted, _ = await world.audit("room.redacted")
    assert redacted.detail["count"] == len(wanted)
    # The pages already done were not read again.
    backwards = [token for _, token, forward in world.rooms.called("history") if not forward]
    assert len(backwards) == len(set(backwards)) + 1  # only the interrupted page, twice


async def test_rate_limits_are_waited_out_as_the_homeserver_asks(room: OpenRoom) -> None:
    world, opened, room_id = room
    wanted = _history(world, room_id, messages=3)
    await _close(world, opened.session_id)
    world.rooms.fail_next(
        "redact", rate_limited(retry_after_ms=1500), rate_limited(retry_after_ms=250)
    )
    world.rooms.fail_next("history", rate_limited())  # no delay given: a second

    await world.run(Action.CLOSE_ROOM)

    assert world.sleeps == [1.0, 1.5, 0.25]
    events = {e.event_id: e for e in _events(world, room_id)}
    assert all(events[event_id].redactions == 1 for event_id in wanted)
    assert (await world.session(opened.session_id)).state == "closed"


async def test_rate_limit_waits_are_bounded_then_the_job_backs_off_and_resumes(
    room: OpenRoom,
) -> None:
    world, opened, room_id = room
    wanted = _history(world, room_id, messages=3)
    await _close(world, opened.session_id)
    endless = [rate_limited(retry_after_ms=3_600_000)] * (wipe.RATE_LIMIT_WAITS + 1)
    world.rooms.fail_next("redact", *endless)
    context = await world.take(Action.CLOSE_ROOM)

    with pytest.raises(MatrixRequestFailed) as failed:
        await world.room_jobs.close_room(context)

    assert failed.value.matrix_errcode == "M_LIMIT_EXCEEDED"
    assert world.sleeps == [wipe.RATE_LIMIT_MAX_SECONDS] * wipe.RATE_LIMIT_WAITS
    await world.retry_now(await _job(world))
    await world.room_jobs.close_room(await world.take(Action.CLOSE_ROOM))
    events = {e.event_id: e for e in _events(world, room_id)}
    assert all(events[event_id].redactions == 1 for event_id in wanted)
    assert (await world.session(opened.session_id)).state == "closed"


async def test_messages_sent_during_the_wipe_are_redacted_too(room: OpenRoom) -> None:
    world, opened, room_id = room
    _history(world, room_id, messages=5)
    await _close(world, opened.session_id)
    redact = world.rooms.redact
    late: list[str] = []

    async def customer_types_meanwhile(room: RoomID, event_id: str, reason: str) -> None:
        if not late:
            late.append(world.rooms.post(room, CUSTOMER_ID, media=("mxc://example.org/late",)))
        await redact(room, event_id, reason)

    world.rooms.redact = customer_types_meanwhile  # type: ignore[method-assign]

    await world.run(Action.CLOSE_ROOM)

    assert world.rooms.event(late[0]).redactions == 1
    late = [e.detail for e in await world.audit("room.redacted")][1]
    assert late == {"count": 2, "late": True}  # the closing notice and the customer's
    assert world.purger is not None
    assert "mxc://example.org/late" in world.purger.deleted


async def test_already_redacted_or_vanished_events_are_success(room: OpenRoom) -> None:
    world, opened, room_id = room
    gone = world.rooms.post(room_id, CUSTOMER_ID)
    world.rooms.event(gone).redactions = 1  # redacted by the customer already
    await _close(world, opened.session_id)

    await world.run(Action.CLOSE_ROOM)

    assert world.rooms.event(gone).redactions == 1
    assert gone not in world.rooms.redacted()
    await world.rooms.redact(RoomID(room_id), "$never-existed", "x")  # M_NOT_FOUND: success


async def test_without_an_admin_token_the_purge_is_skipped_and_the_trail_says_so(
    database: Database,
) -> None:
    world = build_world(database, admin_token=False)
    opened, room_id = await world.open_room()
    wanted = _history(world, room_id, messages=3)
    await _close(world, opened.session_id)

    await world.run(Action.CLOSE_ROOM)

    events = {e.event_id: e for e in _events(world, room_id)}
    assert all(events[event_id].redactions == 1 for event_id in wanted)  # still redacted
    trail = await world.audit()
    actions = [event.action for event in trail]
    assert "room.purged" not in actions
    assert "media.deleted" not in actions
    [skipped] = [event for event in trail if event.action == "room.purge_skipped"]
    assert "admin_token" in skipped.detail["reason"]
    assert "keeps the redacted events" in skipped.detail["reason"]
    [media] = [event for event in trail if event.action == "media.delete_skipped"]
    assert media.detail["count"] == 4
    assert actions.index("room.members_removed") < actions.index("room.purge_skipped")
    assert (await world.session(opened.session_id)).state == "closed"


def test_an_event_the_bot_cannot_decrypt_is_still_redacted() -> None:
    """A redaction needs no key: what the bot could not read is wiped like the rest (#9)."""
    unreadable = RoomEvent("$x", "m.room.encrypted", CUSTOMER_ID, undecryptable=True)

    assert wipe.wipeable(unreadable)
    assert not wipe.wipeable(RoomEvent("$y", "m.room.encrypted", CUSTOMER_ID, redacted=True))
