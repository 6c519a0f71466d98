"""bridge.room_jobs: the durable steps on the homeserver, against a real store and the fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

import store.jobs
from bridge import notices
from bridge.errors import HomeserverUnavailable, MatrixRequestFailed, MatrixServerUnreachable
from bridge.ids import RoomID, UserID
from bridge.jobs import Action, JobContext
from bridge.ports import RoomSpec
from bridge.room_jobs import RoomNotReady
from store import Database, Invite
from tests.support.domain import (
    AGENT_ID,
    CUSTOMER_ID,
    OTHER_AGENT,
    OTHER_AGENT_ID,
    OpenRoom,
    OpenTicket,
    World,
    build_world,
)
from tests.support.fakes import forbidden, rate_limited


async def _invite_row(world: World) -> Invite:
    async with world.database.transaction() as db:
        [invite] = (await db.execute(select(Invite))).scalars()
    return invite  # the ticket's one link


def test_room_jobs_register_every_action_and_a_give_up_hook_for_invites() -> None:
    world = build_world(Database("sqlite+aiosqlite://"))  # registering touches no store

    ticket_actions = {Action.TICKET_NOTE.value, Action.TICKET_REPLY.value}  # bridge.ticket_notes
    assert set(world.registry.handlers) == {action.value for action in Action} - ticket_actions
    assert set(world.registry.on_give_up) == {Action.INVITE.value}


# -- create_room ----------------------------------------------------------------------------------


async def test_create_room_asks_for_the_secure_room_and_opens_the_session(
    ticket: OpenTicket,
) -> None:
    world, opened = ticket

    await world.run(Action.CREATE_ROOM)

    [(spec,)] = world.rooms.called("create_secure_room")
    assert spec == RoomSpec(
        alias_localpart=f"sealroom-{opened.session_id}",
        name="Ticket T-1: secure credentials",
        topic="Secure room for ticket T-1 (VPN access) via helpdesk",
        session_id=opened.session_id,
        invite=(UserID(AGENT_ID),),
        agent_user_id=UserID(AGENT_ID),
        room_version="11",
    )
    session = await world.session(opened.session_id)
    assert (session.state, session.room_id) == ("open", world.rooms.room_id_for(spec))
    assert session.room_alias == f"#sealroom-{opened.session_id}:example.org"
    [created] = await world.audit("room.created")
    assert created.detail == {"room_id": session.room_id}


async def test_create_room_makes_the_invitations_that_waited_for_it_due(
    ticket: OpenTicket,
) -> None:
    world, opened = ticket
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    waiting = await world.take(Action.INVITE)
    with pytest.raises(RoomNotReady):
        await world.room_jobs.invite(waiting)
    later = world.clock() + timedelta(minutes=5)
    async with world.database.transaction() as db:  # what the runner does with RoomNotReady
        await store.jobs.retry_later(db, waiting.job_id, world.clock(), later, "not ready")
    world.clock.advance(seconds=1)

    await world.run(Action.CREATE_ROOM)

    [invite] = await world.jobs(Action.INVITE)
    assert invite.run_after == world.clock()
    assert await world.run_due() == ["invite"]
    room_id = (await world.session(opened.session_id)).room_id
    assert world.rooms.called("invite") == [(room_id, CUSTOMER_ID)]


async def test_an_invitation_waits_for_the_room_without_failing_first(
    ticket: OpenTicket,
) -> None:
    world, opened = ticket
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    [waiting] = await world.jobs(Action.INVITE)
    assert waiting.run_after > world.clock()  # not due (to fail) before the room exists

    assert await world.run_due() == ["create_room", "invite"]

    room_id = (await world.session(opened.session_id)).room_id
    assert world.rooms.called("invite") == [(room_id, CUSTOMER_ID)]


async def test_create_room_does_nothing_when_the_room_exists_or_the_session_closes(
    room: OpenRoom,
) -> None:
    world, opened, _ = room
    other = await world.open_ticket("T-2")
    await world.sessions.close(other.session_id, "helpdesk", "helpdesk")

    await world.room_jobs.create_room(JobContext(0, opened.session_id, {}))  # T-1's, again
    await world.run(Action.CREATE_ROOM)  # T-2's, now closing

    assert world.rooms.called("create_secure_room") == []
    assert (await world.session(other.session_id)).room_id is None


async def test_a_room_created_while_its_session_closed_is_closed_too(
    ticket: OpenTicket, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, opened = ticket
    create = world.rooms.create_secure_room

    async def slow_create(spec: RoomSpec) -> RoomID:
        # The helpdesk closes the ticket while the homeserver is still creating the room: the
        # closing waits for the room (the runner retries it later).
        await world.sessions.close(spec.session_id, "helpdesk", "helpdesk")
        context = await world.take(Action.CLOSE_ROOM)
        with pytest.raises(RoomNotReady):
            await world.room_jobs.close_room(context)
        await world.retry_now(context)
        return await create(spec)

    monkeypatch.setattr(world.rooms, "create_secure_room", slow_create)

    await world.run(Action.CREATE_ROOM)
    await world.run_due()

    [(spec,)] = world.rooms.called("create_secure_room")
    assert (await world.session(opened.session_id)).state == "closed"
    assert world.rooms.rooms[world.rooms.room_id_for(spec)] == [], "the room outlives its session"


# -- invite ---------------------------------------------------------------------------------------


async def test_invite_has_the_bot_invite_the_account(room: OpenRoom) -> None:
    world, opened, room_id = room
    await world.invites.redeem(opened.token, CUSTOMER_ID)

    await world.run(Action.INVITE)

    assert world.rooms.called("invite") == [(room_id, CUSTOMER_ID)]
    [invited] = await world.audit("member.invited")
    assert (invited.actor, invited.detail) == (world.rooms.bot_user_id, {"user_id": CUSTOMER_ID})
    assert CUSTOMER_ID in world.rooms.rooms[RoomID(room_id)]


async def test_an_invite_refused_for_good_tells_the_agent_and_frees_the_link(
    room: OpenRoom,
) -> None:
    world, opened, room_id = room
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    world.rooms.fail_next("invite", forbidden("not allowed"))

    await world.run(Action.INVITE)  # done: retrying cannot help

    assert world.rooms.called("invite") == [(room_id, CUSTOMER_ID)]
    [failed] = await world.audit("member.invite_failed")
    assert failed.session_id == opened.session_id
    assert failed.detail["user_id"] == CUSTOMER_ID
    assert failed.detail["link_usable"] is True
    assert "not allowed" in failed.detail["error"]
    assert await world.notice_texts() == [notices.invite_failed(CUSTOMER_ID, True)]
    invite = await _invite_row(world)
    assert (invite.used_at, invite.used_by) == (None, None)
    assert (await world.session(opened.session_id)).customer_user_id is None
    await world.run(Action.NOTICE)
    assert world.rooms.notices() == [notices.invite_failed(CUSTOMER_ID, True)]

    view = await world.invites.view(opened.token)  # the same link works again
    redeemed = await world.invites.redeem(opened.token, "@typo-fixed:example.net")

    assert view.ticket_ref == "T-1"
    assert redeemed.user_id == "@typo-fixed:example.net"
    assert (await _invite_row(world)).used_by == "@typo-fixed:example.net"


async def test_redeeming_a_released_link_invites_the_new_account(room: OpenRoom) -> None:
    world, opened, room_id = room
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    world.rooms.fail_next("invite", forbidden())
    await world.run(Action.INVITE)

    await world.invites.redeem(opened.token, "@typo-fixed:example.net")

    assert "invite" in await world.run_due()
    assert world.rooms.called("invite")[-1] == (room_id, "@typo-fixed:example.net")


@pytest.mark.parametrize(
    "error",
    [rate_limited(), HomeserverUnavailable("the homeserver answered 502")],
    ids=["M_LIMIT_EXCEEDED", "unreachable"],
)
async def test_an_invite_refused_for_now_is_raised_for_the_runner_to_retry(
    room: OpenRoom, error: MatrixRequestFailed | HomeserverUnavailable
) -> None:
    world, opened, _ = room
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    world.rooms.fail_next("invite", error)
    context = await world.take(Action.INVITE)

    with pytest.raises(type(error)) as raised:
        await world.room_jobs.invite(context)

    assert raised.value is error
    assert await world.audit("member.invite_failed", "member.invited") == []
    assert (await _invite_row(world)).used_by == CUSTOMER_ID
    assert await world.notice_texts() == []


async def test_invite_waits_for_the_room(ticket: OpenTicket) -> None:
    world, opened = ticket
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    context = await world.take(Action.INVITE)

    with pytest.raises(RoomNotReady):
        await world.room_jobs.invite(context)

    assert world.rooms.calls == []


async def test_invite_into_a_session_that_is_no_longer_live_does_nothing(room: OpenRoom) -> None:
    world, opened, _ = room
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    await world.sessions.close(opened.session_id, "agent", AGENT_ID)

    await world.run(Action.INVITE)

    assert world.rooms.called("invite") == []


async def test_giving_up_on_an_agent_invite_tells_the_room_without_a_link_to_free(
    room: OpenRoom,
) -> None:
    world, opened, _ = room
    await world.open_ticket("T-1", OTHER_AGENT)  # re-opened naming another agent
    context = await world.take(Action.INVITE)
    assert context.params == {"user_id": OTHER_AGENT_ID, "agent": True}

    await world.registry.on_give_up[Action.INVITE.value](context, "gave up after 30 attempts")

    [failed] = await world.audit("member.invite_failed")
    assert failed.detail == {
        "user_id": OTHER_AGENT_ID,
        "error": "gave up after 30 attempts",
        "link_usable": False,
    }
    assert await world.notice_texts() == [notices.invite_failed(OTHER_AGENT_ID, False)]
    async with world.database.transaction() as db:
        invites = (await db.execute(select(Invite).order_by(Invite.id))).scalars().all()
    assert [(i.used_at, i.revoked_at is None) for i in invites] == [(None, False), (None, True)]


# -- notice ---------------------------------------------------------------------------------------


async def test_a_notice_is_posted_only_into_an_open_room(room: OpenRoom) -> None:
    world, opened, room_id = room
    await world.room_events.agent_command(room_id, AGENT_ID, "!help", "$help")
    await world.room_events.agent_command(room_id, AGENT_ID, "!help", "$help-again")

    await world.run(Action.NOTICE)
    await world.sessions.close(opened.session_id, "agent", AGENT_ID)
    await world.run(Action.NOTICE)

    assert world.rooms.notices() == [notices.agent_help()]


# -- close_room -----------------------------------------------------------------------------------


async def test_close_room_says_why_removes_everyone_but_the_bot_and_leaves(room: OpenRoom) -> None:
    world, opened, room_id = room
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    await world.run(Action.INVITE)
    await world.sessions.close(opened.session_id, "helpdesk", "helpdesk")
    world.rooms.calls.clear()

    await world.run(Action.CLOSE_ROOM)

    # The wipe (tests/unit/test_wipe.py) in a room with no message yet: the closing notice is
    # left readable until everyone is removed, then redacted too.
    [notice_id] = [event.event_id for event in world.rooms.timelines[RoomID(room_id)][:1]]
    reason = "The secure session is closed."
    assert world.rooms.calls == [
        ("joined_members", (room_id,)),  # the bot is still in the room: a full wipe
        ("history", (room_id, None, False)),  # where the timeline ends before the notice
        ("send_notice", (room_id, notices.closing("helpdesk"))),
        ("history", (room_id, "t0", False)),  # the history before it: none
        ("members", (room_id,)),
        ("kick", (room_id, AGENT_ID, reason)),
        ("kick", (room_id, CUSTOMER_ID, reason)),
        ("history", (room_id, "t0", True)),  # the notice and the two kicks
        ("redact", (room_id, notice_id, "Wiped: the secure session is closed.")),
        ("history", (room_id, "t3", True)),  # the notice's redaction
        ("history", (room_id, "t4", True)),
        ("leave", (room_id,)),
    ]
    assert world.rooms.rooms[RoomID(room_id)] == []
    assert world.purger is not None
    assert world.purger.calls == [("purge", (room_id,))]
    session = await world.session(opened.session_id)
    assert (session.state, session.close_reason) == ("closed", "helpdesk")
    assert session.closed_at == world.clock()
    [closed] = await world.audit("session.closed")
    assert closed.detail == {"reason": "helpdesk"}


async def test_close_room_goes_on_when_the_closing_notice_is_refused(room: OpenRoom) -> None:
    world, opened, room_id = room
    await world.sessions.close(opened.session_id, "agent", AGENT_ID)
    world.rooms.fail_next("send_notice", forbidden())

    await world.run(Action.CLOSE_ROOM)

    assert world.rooms.called("kick") == [(room_id, AGENT_ID, "The secure session is closed.")]
    assert world.rooms.called("leave") == [(room_id,)]
    assert (await world.session(opened.session_id)).state == "closed"


async def test_close_room_is_retried_when_the_homeserver_is_away(room: OpenRoom) -> None:
    world, opened, _ = room
    await world.sessions.close(opened.session_id, "agent", AGENT_ID)
    world.rooms.fail_next("members", HomeserverUnavailable())
    context = await world.take(Action.CLOSE_ROOM)

    with pytest.raises(HomeserverUnavailable):
        await world.room_jobs.close_room(context)
    assert (await world.session(opened.session_id)).state == "closing"
    await world.room_jobs.close_room(context)  # the runner's next attempt

    assert (await world.session(opened.session_id)).state == "closed"
    assert len(world.rooms.called("leave")) == 1


async def test_close_room_before_the_room_exists_just_closes_the_session(
    ticket: OpenTicket,
) -> None:
    world, opened = ticket
    await world.sessions.close(opened.session_id, "helpdesk", "helpdesk")

    await world.run(Action.CLOSE_ROOM)

    assert world.rooms.calls == []
    assert (await world.session(opened.session_id)).state == "closed"


async def test_close_room_for_a_session_that_is_not_closing_does_nothing(room: OpenRoom) -> None:
    world, opened, _ = room

    await world.room_jobs.close_room(JobContext(0, opened.session_id, {"reason": "agent"}))

    assert world.rooms.called("leave") == []
    assert (await world.session(opened.session_id)).state == "open"


# -- expire ---------------------------------------------------------------------------------------


async def test_expire_closes_the_session_only_once_it_is_due(room: OpenRoom) -> None:
    world, opened, _ = room
    deadline = (await world.session(opened.session_id)).expires_at
    context = await world.take(Action.EXPIRE)
    world.clock.now = deadline - timedelta(seconds=1)

    await world.room_jobs.expire(context)

    assert (await world.session(opened.session_id)).state == "open"
    assert await world.jobs(Action.CLOSE_ROOM) == []

    world.clock.now = deadline
    await world.room_jobs.expire(context)

    session = await world.session(opened.session_id)
    assert (session.state, session.close_reason) == ("closing", "expired")
    [close] = await world.jobs(Action.CLOSE_ROOM)
    assert close.params == {"reason": "expired"}


async def test_the_expiry_of_an_extended_session_waits_for_the_new_deadline(
    room: OpenRoom,
) -> None:
    world, opened, room_id = room
    first = (await world.session(opened.session_id)).expires_at
    await world.room_events.agent_command(room_id, AGENT_ID, "!extend 1d", "$extend")
    world.clock.now = first

    assert "expire" in await world.run_due()

    assert (await world.session(opened.session_id)).state == "open"
    world.clock.now = first + timedelta(days=1)
    assert await world.run_due() == ["expire", "close_room"]
    assert (await world.session(opened.session_id)).state == "closed"


async def test_expire_of_a_closed_session_does_nothing(room: OpenRoom) -> None:
    world, opened, _ = room
    await world.sessions.close(opened.session_id, "agent", AGENT_ID)
    await world.run(Action.CLOSE_ROOM)
    world.clock.advance(days=30)

    await world.run(Action.EXPIRE)

    assert (await world.session(opened.session_id)).close_reason == "agent"
    assert await world.jobs(Action.CLOSE_ROOM) == []


async def test_notices_are_written_in_the_integrations_language(database: Database) -> None:
    """`integrations.helpdesk.language: de`: the rules, !help and the closing notice in the
    room of a helpdesk ticket are German."""
    world = build_world(database, notice_languages={"helpdesk": "de"})
    opened, room_id = await world.open_room("T-DE")
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    await world.run_due()
    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$join")
    await world.room_events.agent_command(room_id, AGENT_ID, "!help", "$help")
    await world.run_due()
    await world.sessions.close(opened.session_id, "agent", AGENT_ID)
    await world.run_due()

    sent = [args[1] for name, args in world.rooms.calls if name == "send_notice"]
    assert any(text.startswith("Willkommen.") for text in sent)
    assert notices.agent_help(lang="de") in sent
    assert sent[-1] == notices.closing("agent", lang="de")
    assert not any(text.startswith(("Welcome.", "Commands:", "This secure room")) for text in sent)


async def test_an_invite_to_a_server_that_does_not_answer_is_retried_then_given_up(
    room: OpenRoom,
) -> None:
    """Their homeserver down for a while: retried (naming it, not ours); still down after the
    patience: the agent is told why and the link works again."""
    world, opened, room_id = room
    patience = world.sessions.settings.remote_invite_patience
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    world.rooms.fail_next(
        "invite",
        MatrixServerUnreachable("example.net", "inviting"),
        MatrixServerUnreachable("example.net", "inviting"),
    )

    context = await world.take(Action.INVITE)
    with pytest.raises(MatrixServerUnreachable) as raised:
        await world.room_jobs.invite(context)  # first failure: the runner retries
    assert "example.net" in raised.value.message
    assert await world.audit("member.invite_failed") == []
    await world.retry_now(context)

    world.clock.advance(seconds=patience.total_seconds())
    await world.run(Action.INVITE)  # still down after the patience: given up

    [failed] = await world.audit("member.invite_failed")
    assert "example.net" in failed.detail["error"]
    assert failed.detail["link_usable"] is True
    assert await world.notice_texts() == [notices.invite_failed(CUSTOMER_ID, True, "example.net")]
    assert "example.net did not answer" in notices.invite_failed(CUSTOMER_ID, True, "example.net")
    assert (await _invite_row(world)).used_at is None


async def test_a_server_back_within_the_patience_gets_the_invite(room: OpenRoom) -> None:
    world, opened, room_id = room
    await world.invites.redeem(opened.token, CUSTOMER_ID)
    world.rooms.fail_next("invite", MatrixServerUnreachable("example.net", "inviting"))
    context = await world.take(Action.INVITE)
    with pytest.raises(MatrixServerUnreachable):
        await world.room_jobs.invite(context)
    await world.retry_now(context)
    world.clock.advance(seconds=30)

    await world.run(Action.INVITE)

    assert world.rooms.called("invite") == [(room_id, CUSTOMER_ID)] * 2
    assert [e.action for e in await world.audit("member.invited", "member.invite_failed")] == [
        "member.invited"
    ]
