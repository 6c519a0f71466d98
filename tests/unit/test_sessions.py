"""bridge.sessions: the session's states and the moves between them, open or reuse."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bridge.errors import AgentUnknown, SessionClosed
from bridge.jobs import Action
from bridge.sessions import TRANSITIONS, OpenRequest, SessionState
from store import SecureSession
from tests.support.domain import (
    AGENT,
    AGENT_ID,
    OTHER_AGENT,
    OTHER_AGENT_ID,
    SESSION_LIFETIME,
    World,
)

S = SessionState
# The life of a session, written out: anything else is refused.
ALLOWED = {(S.PENDING, S.OPEN), (S.PENDING, S.CLOSING), (S.OPEN, S.CLOSING), (S.CLOSING, S.CLOSED)}


async def _add_sessions(world: World, *states: SessionState) -> list[SecureSession]:
    """One session per state (each of its own ticket), recorded in one transaction."""
    now = world.clock()
    sessions = []
    for number, state in enumerate(states):
        session_id = str(uuid.uuid4())
        sessions.append(
            SecureSession(
                id=session_id,
                integration="helpdesk",
                ticket_ref=f"T-{number}",
                subject="VPN access",
                agent_ref=AGENT,
                agent_user_id=AGENT_ID,
                room_alias=f"#sealroom-{session_id}:example.org",
                state=state.value,
                created_at=now,
                updated_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
    async with world.database.transaction() as db:
        db.add_all(sessions)
    return sessions


async def _stored_states(world: World, sessions: list[SecureSession]) -> list[str]:
    """The state the store holds for each session, in order."""
    async with world.database.transaction() as db:
        rows = {row.id: row.state for row in (await db.execute(select(SecureSession))).scalars()}
    return [rows[session.id] for session in sessions]


async def _open(world: World, ticket: str = "T-1", agent: str = AGENT) -> tuple[str, bool]:
    async with world.database.transaction() as db:
        session, reused = await world.sessions.open_or_reuse(
            db, "helpdesk", OpenRequest(ticket, "VPN access", agent), world.clock()
        )
    return session.id, reused


async def _count_sessions(world: World) -> int:
    async with world.database.transaction() as db:
        query = select(func.count()).select_from(SecureSession)
        return int((await db.execute(query)).scalar_one())


# -- the transition table -----------------------------------------------------------------------


def test_the_transition_table_is_the_documented_life_of_a_session() -> None:
    table = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}

    assert table == ALLOWED
    assert set(TRANSITIONS) == set(SessionState)


async def test_a_move_happens_only_when_the_table_allows_it(world: World) -> None:
    pairs = list(itertools.product(SessionState, SessionState))
    sessions = await _add_sessions(world, *(source for source, _ in pairs))
    world.clock.advance(minutes=1)
    now = world.clock()

    async with world.database.transaction() as db:
        moved = [
            await world.sessions._move(db, session, target, now, close_reason="x")
            for session, (_, target) in zip(sessions, pairs, strict=True)
        ]

    async with world.database.transaction() as db:
        rows = {row.id: row for row in (await db.execute(select(SecureSession))).scalars()}
    wrong = []
    for (source, target), session, did_move in zip(pairs, sessions, moved, strict=True):
        allowed = (source, target) in ALLOWED
        row = rows[session.id]
        seen = (
            did_move,
            row.state,
            session.state,
            row.updated_at == now,
            row.closed_at is not None,
        )
        expected = (
            allowed,
            target if allowed else source,
            target if allowed else source,  # the loaded object is kept in step
            allowed,
            allowed and target == S.CLOSED,
        )
        if seen != expected:
            wrong.append(f"{source} -> {target}: {seen} instead of {expected}")
    assert wrong == []


async def test_opened_moves_only_a_pending_session(world: World) -> None:
    sessions = await _add_sessions(world, *SessionState)

    async with world.database.transaction() as db:
        for session in sessions:
            await world.sessions.opened(db, session, world.clock())

    # pending, open, closing, closed ->
    assert await _stored_states(world, sessions) == ["open", "open", "closing", "closed"]


async def test_begin_close_moves_only_a_live_session_and_schedules_close_room_once(
    world: World,
) -> None:
    sessions = await _add_sessions(world, *SessionState)

    async with world.database.transaction() as db:
        began = [
            await world.sessions.begin_close(db, session, "agent", AGENT_ID, world.clock())
            for session in sessions
        ]

    assert began == [True, True, False, False]
    assert await _stored_states(world, sessions) == ["closing", "closing", "closing", "closed"]
    assert [session.close_reason for session in sessions] == ["agent", "agent", None, None]
    closing = [job.session_id for job in await world.jobs(Action.CLOSE_ROOM)]
    assert closing == [sessions[0].id, sessions[1].id]
    assert [e.session_id for e in await world.audit("session.closing")] == closing


async def test_closed_moves_only_a_closing_session(world: World) -> None:
    sessions = await _add_sessions(world, *SessionState)

    async with world.database.transaction() as db:
        for session in sessions:
            await world.sessions.closed(db, session, world.clock())

    assert await _stored_states(world, sessions) == ["pending", "open", "closed", "closed"]


async def test_closing_a_session_that_is_not_live_raises_session_closed(world: World) -> None:
    sessions = await _add_sessions(world, S.CLOSING, S.CLOSED)

    for session_id in [session.id for session in sessions] + ["no-such-session"]:
        with pytest.raises(SessionClosed):
            await world.sessions.close(session_id, "agent", AGENT_ID)

    assert await world.jobs(Action.CLOSE_ROOM) == []


async def test_loading_a_session_that_is_gone_raises_lookup_error(world: World) -> None:
    with pytest.raises(LookupError, match="gone"):
        await world.sessions.load("no-such-session")
    with pytest.raises(LookupError):
        await world.sessions.load(None)


# -- open_or_reuse ------------------------------------------------------------------------------


async def test_open_records_a_pending_session_with_its_room_and_expiry_jobs(world: World) -> None:
    session_id, reused = await _open(world)

    assert reused is False
    session = await world.session(session_id)
    assert (session.state, session.ticket_ref, session.integration) == (
        "pending",
        "T-1",
        "helpdesk",
    )
    assert (session.agent_ref, session.agent_user_id) == (AGENT, AGENT_ID)
    assert session.room_alias == f"#sealroom-{session_id}:example.org"
    assert session.expires_at == world.clock() + SESSION_LIFETIME
    jobs = await world.jobs(None)
    assert [(job.action, job.session_id, job.run_after) for job in jobs] == [
        ("create_room", session_id, world.clock()),
        ("expire", session_id, session.expires_at),
    ]
    [opened] = await world.audit("session.opened")
    assert (opened.session_id, opened.actor) == (session_id, AGENT)


async def test_open_reuses_the_live_session_of_the_ticket(world: World) -> None:
    first, _ = await _open(world, "T-1")
    world.clock.advance(hours=1)

    again, reused = await _open(world, "T-1")
    other, other_reused = await _open(world, "T-2")

    assert (again, reused) == (first, True)
    assert other_reused is False
    assert other != first
    assert len(await world.jobs(Action.CREATE_ROOM)) == 2
    assert len(await world.audit("session.opened")) == 2


async def test_open_while_the_ticket_closes_raises_session_closed_and_records_nothing(
    world: World,
) -> None:
    session_id, _ = await _open(world, "T-7")
    await world.sessions.close(session_id, "helpdesk", "helpdesk")
    jobs_before = [job.id for job in await world.jobs(None)]

    with pytest.raises(SessionClosed, match="T-7"):
        await _open(world, "T-7")

    assert await _count_sessions(world) == 1
    assert [job.id for job in await world.jobs(None)] == jobs_before


async def test_open_after_the_ticket_closed_starts_a_new_session(world: World) -> None:
    session_id, _ = await _open(world)
    await world.sessions.close(session_id, "helpdesk", "helpdesk")
    await world.run(Action.CLOSE_ROOM)

    again, reused = await _open(world)

    assert reused is False
    assert again != session_id


async def test_an_unknown_agent_raises_agent_unknown_naming_the_field(world: World) -> None:
    with pytest.raises(AgentUnknown) as raised:
        await _open(world, agent="mallory@example.com")

    assert raised.value.fields == ["agent"]
    assert "mallory@example.com" in raised.value.message
    assert "agents:" in raised.value.message
    assert await _count_sessions(world) == 0
    assert await world.jobs(None) == []


async def test_the_agent_is_found_whatever_the_case_and_spaces(world: World) -> None:
    session_id, _ = await _open(world, agent="  Alice@Example.COM ")

    assert (await world.session(session_id)).agent_user_id == AGENT_ID


async def test_reopening_with_another_mapped_agent_hands_the_session_over(world: World) -> None:
    session_id, _ = await _open(world, agent=AGENT)

    again, reused = await _open(world, agent=OTHER_AGENT)
    await _open(world, agent=OTHER_AGENT)  # the same hand-over again

    assert (again, reused) == (session_id, True)
    session = await world.session(session_id)
    assert (session.agent_ref, session.agent_user_id) == (OTHER_AGENT, OTHER_AGENT_ID)
    [invite] = await world.jobs(Action.INVITE)
    assert (invite.session_id, invite.params) == (
        session_id,
        {"user_id": OTHER_AGENT_ID, "agent": True},
    )
    [changed] = await world.audit("session.agent_changed")
    assert (changed.actor, changed.detail) == (OTHER_AGENT, {"user_id": OTHER_AGENT_ID})


async def test_reopening_with_an_unknown_agent_leaves_the_session_alone(world: World) -> None:
    session_id, _ = await _open(world, agent=AGENT)

    with pytest.raises(AgentUnknown):
        await _open(world, agent="mallory@example.com")

    assert (await world.session(session_id)).agent_user_id == AGENT_ID
    assert await world.jobs(Action.INVITE) == []


async def test_an_extension_schedules_one_expiry_per_deadline(world: World) -> None:
    session_id, _ = await _open(world)
    session = await world.session(session_id)
    deadline = session.expires_at

    async with world.database.transaction() as db:
        await world.sessions.extend(db, session, 1.5, AGENT_ID, world.clock())
        await world.sessions.schedule_expiry(db, session, world.clock())  # same deadline

    assert session.expires_at == deadline + timedelta(hours=1.5)
    assert [job.run_after for job in await world.jobs(Action.EXPIRE)] == [
        deadline,
        session.expires_at,
    ]
