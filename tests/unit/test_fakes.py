"""The fakes in tests/support/fakes.py answer like the ports they stand in for.

The other unit tests trust them; these say what they promise.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.errors import HomeserverUnavailable, MatrixRequestFailed, MatrixServerUnreachable
from bridge.ids import RoomID, UserID
from bridge.ports import RoomSpec
from tests.support.fakes import (
    Clock,
    FakeAccounts,
    FakeRegistrationTokens,
    RecordingRooms,
    forbidden,
)

ALICE = UserID("@alice:example.org")
CAROL = UserID("@carol:example.net")


async def test_recording_rooms_keeps_members_and_records_every_call() -> None:
    rooms = RecordingRooms()
    spec = RoomSpec("sealroom-1", "name", "topic", "1", invite=(ALICE,), agent_user_id=ALICE)

    room_id = await rooms.create_secure_room(spec)
    assert await rooms.create_secure_room(spec) == room_id  # found again by its alias
    await rooms.invite(room_id, CAROL)
    await rooms.kick(room_id, ALICE, "bye")
    members = await rooms.members(room_id)
    await rooms.leave(room_id)

    assert members == [rooms.bot_user_id, CAROL]
    assert rooms.rooms[room_id] == [CAROL]
    assert [name for name, _ in rooms.calls] == [
        "create_secure_room",
        "create_secure_room",
        "invite",
        "kick",
        "members",
        "leave",
    ]


async def test_a_queued_failure_is_raised_once_in_order_and_changes_nothing() -> None:
    rooms = RecordingRooms()
    room_id = RoomID("!room:example.org")
    rooms.fail_next("invite", forbidden("no"), HomeserverUnavailable())

    with pytest.raises(MatrixRequestFailed) as refused:
        await rooms.invite(room_id, CAROL)
    with pytest.raises(HomeserverUnavailable):
        await rooms.invite(room_id, CAROL)
    await rooms.invite(room_id, CAROL)

    assert refused.value.matrix_errcode == "M_FORBIDDEN"
    assert rooms.called("invite") == [(room_id, CAROL)] * 3
    assert rooms.rooms[room_id] == [rooms.bot_user_id, CAROL]
    with pytest.raises(AttributeError):
        rooms.fail_next("invit", forbidden())


async def test_registration_tokens_are_single_use_expire_and_vanish_when_revoked() -> None:
    clock = Clock()
    tokens = FakeRegistrationTokens(clock)
    used = await tokens.mint(clock() + timedelta(minutes=30))
    revoked = await tokens.mint(clock() + timedelta(minutes=30))
    expiring = await tokens.mint(clock() + timedelta(minutes=1))

    tokens.register(used, "@new:example.org")
    await tokens.revoke(revoked)
    await tokens.revoke("never-minted")  # gone already is fine

    assert await tokens.list_valid() == [expiring]
    assert await tokens.completed(used) == 1
    assert await tokens.completed(revoked) is None
    assert await tokens.user_created_at("@new:example.org") == clock()
    with pytest.raises(MatrixRequestFailed):
        tokens.register(used, "@second:example.org")
    clock.advance(minutes=1)
    assert await tokens.list_valid() == []
    with pytest.raises(MatrixRequestFailed):
        tokens.register(expiring, "@late:example.org")


async def test_accounts_exist_when_listed_here_and_unless_missing_elsewhere() -> None:
    accounts = FakeAccounts(ALICE)
    accounts.fail_next("exists", HomeserverUnavailable())

    with pytest.raises(HomeserverUnavailable):
        await accounts.exists(ALICE)
    assert await accounts.exists(ALICE) is True
    assert await accounts.exists(UserID("@bob:example.org")) is False
    accounts.missing.add("@nobody:example.net")
    accounts.unreachable.add("down.example")
    assert await accounts.exists(UserID("@bob:example.net")) is True
    assert await accounts.exists(UserID("@nobody:example.net")) is False
    with pytest.raises(MatrixServerUnreachable):
        await accounts.exists(UserID("@bob:down.example"))


async def test_recording_rooms_pages_its_timeline_like_messages_and_redacts() -> None:
    rooms = RecordingRooms(page_size=2)
    room_id = RoomID("!room:example.org")
    ids = [rooms.post(room_id, ALICE, media=(f"mxc://example.org/{n}",)) for n in range(3)]

    first = await rooms.history(room_id, None)
    second = await rooms.history(room_id, first.next_token)
    await rooms.redact(room_id, ids[0], "wiped")
    await rooms.redact(room_id, "$gone", "wiped")  # not found: success
    after = await rooms.history(room_id, first.start, forward=False)
    forward = await rooms.history(room_id, first.start, forward=True)

    assert [e.event_id for e in first.events + second.events] == ids[::-1]
    assert (first.start, first.next_token, second.next_token) == ("t3", "t1", None)
    assert [e.redacted for e in after.events] == [False, False]
    [redacted] = (await rooms.history(room_id, "t1")).events
    assert (redacted.redacted, redacted.media) == (True, ())  # its file is no longer named
    assert [e.type for e in forward.events] == ["m.room.redaction"]
