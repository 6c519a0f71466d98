"""bridge.room_events: the agent's commands, joins and trust findings, against a real store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bridge import notices
from bridge.errors import InviteGone
from bridge.ids import UserID
from bridge.jobs import Action
from bridge.room_events import (
    DEFAULT_EXTEND_HOURS,
    Close,
    Command,
    ExcludedDevice,
    Extend,
    Help,
    IdentityChange,
    Trust,
    TrustFindings,
    Usage,
    parse_command,
)
from store import HandledKey, Job, PinnedIdentity
from tests.support.domain import AGENT_ID, CUSTOMER_ID, OpenRoom, World

# -- parse_command --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "command"),
    [
        ("!close", Close()),
        ("!close now please", Close()),
        ("  !close  ", Close()),
        ("!CLOSE", Close()),
        ("!help", Help()),
        ("!Help me", Help()),
        ("!extend", Extend(DEFAULT_EXTEND_HOURS)),
        ("!extend 2h", Extend(2.0)),
        ("!extend 3d", Extend(72.0)),
        ("!extend 12", Extend(12.0)),
        ("!extend 1.5h", Extend(1.5)),
        ("!extend 2 h", Extend(2.0)),
        ("!EXTEND 2H", Extend(2.0)),
        ("!extend 3D", Extend(72.0)),
        ("!extend 30d", Extend(720.0)),
        ("!trust @bob:example.org", Trust(UserID("@bob:example.org"))),
        ("!TRUST @Bob:example.org", Trust(UserID("@Bob:example.org"))),
    ],
)
def test_a_command_is_parsed_into_its_typed_call(body: str, command: Command) -> None:
    assert parse_command(body) == command


@pytest.mark.parametrize(
    "body",
    [
        "!extend nan",
        "!extend inf",
        "!extend -3",
        "!extend 0",
        "!extend 0h",
        "!extend 31d",
        "!extend 721",
        "!extend 2h 3d",
        "!extend 2x",
        "!extend h",
        "!extend 1e3",
        "!extend two hours",
    ],
)
def test_extend_with_a_bad_duration_is_answered_with_its_usage(body: str) -> None:
    command = parse_command(body)

    assert isinstance(command, Usage)
    assert "!extend" in command.problem


@pytest.mark.parametrize(
    "body",
    [
        "!trust",
        "!trust bob",
        "!trust bob@example.org",
        "!trust @bob",
        "!trust @bob:example.org @carol:example.org",
    ],
)
def test_trust_without_exactly_one_valid_matrix_id_is_answered_with_its_usage(body: str) -> None:
    command = parse_command(body)

    assert isinstance(command, Usage)
    assert "!trust" in command.problem
    assert "Matrix ID" in command.problem


@pytest.mark.parametrize(
    "body", ["!foo", "!closed", "close", "hello !close", "", "   ", "!", "! close"]
)
def test_anything_that_is_not_one_of_our_commands_is_none(body: str) -> None:
    assert parse_command(body) is None


@pytest.mark.parametrize("body", ["!extend 0.01", "!extend 0.001h"])
def test_extend_below_a_minute_is_refused_as_its_usage_text_says(body: str) -> None:
    assert isinstance(parse_command(body), Usage)


# -- agent_command ------------------------------------------------------------------------------


async def _ledger_size(world: World) -> int:
    async with world.database.transaction() as db:
        return int((await db.execute(select(func.count()).select_from(HandledKey))).scalar_one())


async def test_close_from_the_agent_begins_closing_and_schedules_close_room(
    room: OpenRoom,
) -> None:
    world, opened, room_id = room

    await world.room_events.agent_command(room_id, AGENT_ID, "!close", "$close")

    session = await world.session(opened.session_id)
    assert (session.state, session.close_reason) == ("closing", "agent")
    [close] = await world.jobs(Action.CLOSE_ROOM)
    assert (close.session_id, close.params) == (opened.session_id, {"reason": "agent"})
    [closing] = await world.audit("session.closing")
    assert (closing.actor, closing.detail) == (AGENT_ID, {"reason": "agent"})
    assert world.wakes, "the runner was not woken for the new job"
    assert world.rooms.called("send_notice") == []  # the closing notice is the job's


async def test_extend_from_the_agent_moves_the_deadline_schedules_expiry_and_a_notice(
    room: OpenRoom,
) -> None:
    world, opened, room_id = room
    before = (await world.session(opened.session_id)).expires_at

    await world.room_events.agent_command(room_id, AGENT_ID, "!extend 2h", "$extend")

    after = (await world.session(opened.session_id)).expires_at
    assert after == before + timedelta(hours=2)
    expiries = [job.run_after for job in await world.jobs(Action.EXPIRE)]
    assert expiries == [before, after]  # the earlier one will find the session not yet due
    assert await world.notice_texts() == [notices.extended(after)]
    [extended] = await world.audit("session.extended")
    assert extended.detail == {"expires_at": after.isoformat()}


async def test_extend_after_the_deadline_counts_from_now(room: OpenRoom) -> None:
    world, opened, room_id = room
    world.clock.now = (await world.session(opened.session_id)).expires_at + timedelta(hours=1)

    await world.room_events.agent_command(room_id, AGENT_ID, "!extend", "$extend")

    after = (await world.session(opened.session_id)).expires_at
    assert after == world.clock.now + timedelta(hours=DEFAULT_EXTEND_HOURS)


@pytest.mark.parametrize("body", ["!extend nan", "!trust bob", "!help"])
async def test_usage_and_help_are_answered_with_a_notice_and_change_nothing(
    room: OpenRoom, body: str
) -> None:
    world, opened, room_id = room
    before = await world.session(opened.session_id)
    command = parse_command(body)
    text = notices.command_usage(command.problem) if isinstance(command, Usage) else None

    await world.room_events.agent_command(room_id, AGENT_ID, body, "$cmd")

    after = await world.session(opened.session_id)
    assert (after.state, after.expires_at) == (before.state, before.expires_at)
    assert await world.notice_texts() == [text or notices.agent_help()]
    assert await world.jobs(Action.CLOSE_ROOM) == []
    assert len(await world.jobs(Action.EXPIRE)) == 1


async def test_commands_from_anyone_but_the_agent_are_refused_with_a_notice(
    room: OpenRoom,
) -> None:
    world, opened, room_id = room
    jobs_before = await world.jobs(None)

    for sender in (CUSTOMER_ID, "@mallory:example.org"):
        await world.room_events.agent_command(room_id, sender, "!close", f"$from-{sender}")

    assert (await world.session(opened.session_id)).state == "open"
    assert await world.jobs(Action.CLOSE_ROOM) == []
    assert await world.notice_texts() == [notices.command_not_yours("!close")] * 2
    refused = await world.audit("command.refused")
    assert [row.actor for row in refused] == [CUSTOMER_ID, "@mallory:example.org"]
    assert len(await world.jobs(None)) == len(jobs_before) + 2


async def test_plain_messages_and_the_bots_own_commands_are_ignored(room: OpenRoom) -> None:
    world, opened, room_id = room
    jobs_before = await world.jobs(None)
    ledger_before = await _ledger_size(world)

    await world.room_events.agent_command(room_id, world.rooms.bot_user_id, "!close", "$bot")
    await world.room_events.agent_command(room_id, AGENT_ID, "here is the password", "$msg")

    assert (await world.session(opened.session_id)).state == "open"
    assert [job.id for job in await world.jobs(None)] == [job.id for job in jobs_before]
    assert await _ledger_size(world) == ledger_before


async def test_a_command_from_an_untrusted_device_is_refused_with_a_notice(room: OpenRoom) -> None:
    world, opened, room_id = room

    async def untrusted() -> bool:
        return False

    await world.room_events.agent_command(
        room_id, AGENT_ID, "!close", "$untrusted", device_trusted=untrusted
    )

    session = await world.session(opened.session_id)
    assert session.state == "open"
    assert await world.jobs(Action.CLOSE_ROOM) == []
    assert await world.notice_texts() == [notices.command_untrusted_device()]
    [refused] = await world.audit("command.refused")
    assert (refused.session_id, refused.actor) == (opened.session_id, AGENT_ID)


async def test_the_same_command_event_twice_is_acted_on_once(room: OpenRoom) -> None:
    world, opened, room_id = room
    before = (await world.session(opened.session_id)).expires_at

    for _ in range(2):  # a restart replays the timeline
        await world.room_events.agent_command(room_id, AGENT_ID, "!extend 2h", "$same")

    after = (await world.session(opened.session_id)).expires_at
    assert after == before + timedelta(hours=2)
    assert len(await world.notice_texts()) == 1
    assert len(await world.audit("session.extended")) == 1

    await world.room_events.agent_command(room_id, AGENT_ID, "!extend 2h", "$another")

    assert (await world.session(opened.session_id)).expires_at == after + timedelta(hours=2)


async def test_commands_are_ignored_when_the_room_is_unknown_or_the_session_not_open(
    room: OpenRoom,
) -> None:
    world, opened, room_id = room
    await world.room_events.agent_command("!unknown:example.org", AGENT_ID, "!close", "$1")
    await world.room_events.agent_command(room_id, AGENT_ID, "!close", "$2")
    jobs_before = [job.id for job in await world.jobs(None)]

    await world.room_events.agent_command(room_id, AGENT_ID, "!extend 2h", "$3")
    await world.room_events.agent_command(room_id, AGENT_ID, "!help", "$4")

    assert (await world.session(opened.session_id)).state == "closing"
    assert [job.id for job in await world.jobs(None)] == jobs_before
    assert len(await world.audit("session.closing")) == 1


async def test_trust_adopts_a_changed_identity_and_says_so(room: OpenRoom) -> None:
    world, opened, room_id = room
    await world.room_events.trust_report(TrustFindings(room_id, new_pins={CUSTOMER_ID: "old"}))
    await world.room_events.trust_report(
        TrustFindings(room_id, identity_changes=[IdentityChange(CUSTOMER_ID, "old", "new")])
    )

    await world.room_events.agent_command(room_id, AGENT_ID, f"!trust {CUSTOMER_ID}", "$trust")

    async with world.database.transaction() as db:
        pin = await db.get(PinnedIdentity, CUSTOMER_ID)
    assert pin is not None
    assert (pin.master_key, pin.pending_master_key) == ("new", None)
    assert notices.identity_accepted(CUSTOMER_ID) in await world.notice_texts()
    [accepted] = await world.audit("identity.accepted")
    assert (accepted.session_id, accepted.actor) == (opened.session_id, AGENT_ID)


async def test_trust_without_a_pending_identity_change_does_nothing(room: OpenRoom) -> None:
    world, _, room_id = room
    await world.room_events.trust_report(TrustFindings(room_id, new_pins={CUSTOMER_ID: "key"}))

    await world.room_events.agent_command(room_id, AGENT_ID, f"!trust {CUSTOMER_ID}", "$trust")

    assert await world.notice_texts() == []
    assert await world.audit("identity.accepted") == []


# -- member_joined ------------------------------------------------------------------------------


async def test_a_joining_customer_gets_the_rules_once_per_join_event(room: OpenRoom) -> None:
    world, opened, room_id = room

    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$join")
    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$join")  # replayed

    [rules] = await world.jobs(Action.NOTICE)
    assert rules.params == {"kind": "rules", "user_id": CUSTOMER_ID}
    [joined] = await world.audit("member.joined")
    assert (joined.session_id, joined.actor) == (opened.session_id, CUSTOMER_ID)

    await world.run(Action.NOTICE)

    session = await world.session(opened.session_id)
    assert world.rooms.notices() == [
        notices.rules(session.ticket_ref, session.expires_at, session.subject)
    ]

    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$join-again")  # left, came back

    assert len(await world.jobs(Action.NOTICE)) == 1


async def test_the_agent_joining_gets_no_rules_but_what_to_do_next(room: OpenRoom) -> None:
    world, opened, room_id = room

    await world.room_events.member_joined(room_id, AGENT_ID, "$agent-join")

    [welcome] = await world.jobs(Action.NOTICE)
    assert welcome.params == {"kind": "agent_welcome", "user_id": AGENT_ID}
    assert [event.actor for event in await world.audit("member.joined")] == [AGENT_ID]
    await world.run(Action.NOTICE)
    session = await world.session(opened.session_id)
    [text] = world.rooms.notices()
    assert text == notices.agent_welcome(session.ticket_ref, session.subject, session.expires_at)
    assert session.subject in text


async def test_the_bot_joining_is_not_even_recorded(room: OpenRoom) -> None:
    world, _, room_id = room
    ledger_before = await _ledger_size(world)

    await world.room_events.member_joined(room_id, world.rooms.bot_user_id, "$bot-join")

    assert await world.jobs(Action.NOTICE) == []
    assert await world.audit("member.joined") == []
    assert await _ledger_size(world) == ledger_before


async def test_a_join_in_an_unknown_room_or_a_closing_session_is_ignored(room: OpenRoom) -> None:
    world, _, room_id = room
    await world.room_events.member_joined("!elsewhere:example.org", CUSTOMER_ID, "$a")
    await world.room_events.agent_command(room_id, AGENT_ID, "!close", "$close")

    await world.room_events.member_joined(room_id, CUSTOMER_ID, "$b")

    assert await world.jobs(Action.NOTICE) == []
    assert await world.audit("member.joined") == []


# -- trust_report -------------------------------------------------------------------------------


async def _pins(world: World) -> dict[str, tuple[str, str | None]]:
    async with world.database.transaction() as db:
        rows = (await db.execute(select(PinnedIdentity))).scalars()
        return {row.user_id: (row.master_key, row.pending_master_key) for row in rows}


async def test_first_seen_identities_are_pinned_and_never_overwritten(room: OpenRoom) -> None:
    world, _, room_id = room

    await world.room_events.trust_report(
        TrustFindings(room_id, new_pins={CUSTOMER_ID: "m1", AGENT_ID: "m2"})
    )
    await world.room_events.trust_report(TrustFindings(room_id, new_pins={CUSTOMER_ID: "other"}))

    assert await _pins(world) == {CUSTOMER_ID: ("m1", None), AGENT_ID: ("m2", None)}
    pinned = await world.audit("identity.pinned")
    assert sorted((e.detail["user_id"], e.detail["master_key"]) for e in pinned) == [
        (AGENT_ID, "m2"),
        (CUSTOMER_ID, "m1"),
    ]
    assert await world.notice_texts() == []
    assert await world.room_events.pinned_identities([CUSTOMER_ID, "@nobody:example.org"]) == {
        CUSTOMER_ID: "m1"
    }


async def test_each_excluded_device_is_told_once(room: OpenRoom) -> None:
    world, opened, room_id = room
    findings = TrustFindings(
        room_id,
        excluded=[
            ExcludedDevice(CUSTOMER_ID, "PHONE", "device_not_cross_signed"),
            ExcludedDevice(CUSTOMER_ID, "LAPTOP", "device_not_cross_signed"),
            ExcludedDevice(AGENT_ID, "OLD", "no_cross_signing"),
        ],
    )

    await world.room_events.trust_report(findings)
    await world.room_events.trust_report(findings)  # the next send finds the same

    assert await world.notice_texts() == [
        notices.device_excluded(CUSTOMER_ID, "PHONE", "device_not_cross_signed"),
        notices.device_excluded(CUSTOMER_ID, "LAPTOP", "device_not_cross_signed"),
        notices.device_excluded(AGENT_ID, "OLD", "no_cross_signing"),
    ]
    excluded = await world.audit("device.excluded")
    assert [(e.session_id, e.detail["device_id"]) for e in excluded] == [
        (opened.session_id, "PHONE"),
        (opened.session_id, "LAPTOP"),
        (opened.session_id, "OLD"),
    ]


async def test_an_identity_change_is_told_once_and_replaces_its_device_warnings(
    room: OpenRoom,
) -> None:
    world, _, room_id = room
    await world.room_events.trust_report(TrustFindings(room_id, new_pins={CUSTOMER_ID: "old"}))
    changed = TrustFindings(
        room_id,
        excluded=[ExcludedDevice(CUSTOMER_ID, "PHONE", "identity_changed")],
        identity_changes=[IdentityChange(CUSTOMER_ID, "old", "new")],
    )

    for _ in range(3):
        await world.room_events.trust_report(changed)

    assert await world.notice_texts() == [notices.identity_changed(CUSTOMER_ID)]
    assert len(await world.audit("identity.changed")) == 1
    assert await world.audit("device.excluded") == []
    assert await _pins(world) == {CUSTOMER_ID: ("old", "new")}  # adopted only by !trust

    await world.room_events.trust_report(
        TrustFindings(room_id, identity_changes=[IdentityChange(CUSTOMER_ID, "old", "newer")])
    )

    assert len(await world.notice_texts()) == 2  # another new identity is news again


async def test_findings_for_a_room_without_an_open_session_only_pin(world: World) -> None:
    await world.room_events.trust_report(
        TrustFindings(
            "!gone:example.org",
            new_pins={CUSTOMER_ID: "m1"},
            excluded=[ExcludedDevice(CUSTOMER_ID, "PHONE", "device_not_cross_signed")],
            identity_changes=[IdentityChange(AGENT_ID, "a", "b")],
        )
    )

    assert await _pins(world) == {CUSTOMER_ID: ("m1", None)}
    assert await world.jobs(Action.NOTICE) == []
    assert await world.audit("device.excluded", "identity.changed") == []


async def test_status_reports_who_is_in_the_room_and_until_when(room: OpenRoom) -> None:
    world, opened, room_id = room

    await world.room_events.agent_command(room_id, AGENT_ID, "!status", "$status")
    await world.run(Action.NOTICE)

    session = await world.session(opened.session_id)
    members = [m for m in await world.rooms.members(room_id) if m != world.rooms.bot_user_id]
    assert world.rooms.notices() == [notices.status("open", members, session.expires_at)]


async def test_link_hands_the_agent_a_fresh_link_and_revokes_the_old_one(room: OpenRoom) -> None:
    world, opened, room_id = room

    await world.room_events.agent_command(room_id, AGENT_ID, "!link", "$link")
    [job] = await world.jobs(Action.NOTICE)
    assert job.params == {"kind": "link"}  # the link is made when sent, never stored
    await world.run(Action.NOTICE)

    [text] = world.rooms.notices()
    token = text.split("/i#", 1)[1].split()[0]
    session = await world.session(opened.session_id)
    assert (await world.invites.view(token)).ticket_ref == session.ticket_ref
    with pytest.raises(InviteGone):
        await world.invites.view(opened.token)
    async with world.database.transaction() as db:
        rows = (await db.execute(select(Job.params))).scalars().all()
    assert all(token not in str(params) for params in rows)
