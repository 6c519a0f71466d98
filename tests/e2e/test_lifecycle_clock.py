"""The session's clock against the real Synapse, on a clock the test moves (no sleeping for
hours): the expiry warning, `!extend`, expiry closing with the wipe, the idle timeout; and the
agent told in the room when the customer leaves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

import store.audit
from store import Job
from tests.e2e.conftest import Sealroom, SealroomFactory
from tests.support.fixtures import MatrixUserFactory
from tests.support.matrix_users import MatrixUser


@dataclass
class MovableClock:
    """Real time plus an offset the test adds to (jobs compare due times with it)."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, service: Sealroom, **delta: float) -> None:
        self.offset += timedelta(**delta)
        service.app.jobs.wake()


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def _from_bot(service: Sealroom, needle: str) -> Callable[[str, str], bool]:
    bot_id = service.config.bot.user_id
    return lambda sender, body: sender == bot_id and needle in body


async def _jobs_done(service: Sealroom, session_id: str, action: str) -> list[Job]:
    async with service.app.database.transaction() as db:
        query = select(Job).where(
            Job.session_id == session_id, Job.action == action, Job.state == "done"
        )
        return list((await db.execute(query)).scalars())


async def _actions(service: Sealroom, session_id: str) -> list[str]:
    async with service.app.database.transaction() as db:
        return [e.action for e in await store.audit.for_session(db, session_id)]


async def _ready_room(
    service: Sealroom, ticket: str, agent: MatrixUser, customer: MatrixUser
) -> tuple[str, str]:
    opened, room_id = await service.open_room(ticket, agent, customer)
    await customer.wait_for_message(room_id, _from_bot(service, "only to share credentials"))
    await customer.wait_for_join(room_id, agent.user_id)
    return str(opened["session_id"]), room_id


async def test_expiry_warns_the_agent_extend_moves_it_and_expiry_then_wipes(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    clock = MovableClock()
    service = await sealroom(
        agents={"agent@example.com": agent.user_id},
        clock=clock,
        rooms={"lifetime_hours": 2, "expiry_warning_minutes": 30},
    )
    session_id, room_id = await _ready_room(service, "T-CLOCK-1", agent, customer)
    first_expiry = (await service.session_row(session_id)).expires_at

    clock.advance(service, hours=1, minutes=31)
    await agent.wait_for_message(room_id, _from_bot(service, "will be closed and wiped on"))

    await agent.send_text(room_id, "!extend 2h")
    await agent.wait_for_message(room_id, _from_bot(service, "now stays open until"))
    extended = (await service.session_row(session_id)).expires_at
    assert extended == first_expiry + timedelta(hours=2)

    # The first deadline passes: its expiry job runs, finds the session extended, and it stays.
    clock.advance(service, minutes=40)

    async def first_expiry_ran() -> bool:
        return len(await _jobs_done(service, session_id, "expire")) == 1

    await _until(first_expiry_ran, "the first expiry job")
    assert (await service.session_row(session_id)).state == "open"

    # The extended deadline passes: the session closes, and its room is wiped.
    clock.offset = extended - datetime.now(UTC) + timedelta(minutes=1)
    service.app.jobs.wake()

    async def closed() -> bool:
        return (await service.session_row(session_id)).state == "closed"

    await _until(closed, "the expiry to close the session", timeout=120)
    row = await service.session_row(session_id)
    assert row.close_reason == "expired"
    actions = await _actions(service, session_id)
    assert [a for a in actions if a in ("session.extended", "session.closing")] == [
        "session.extended",
        "session.closing",
    ]
    assert "room.redacted" in actions
    assert "room.members_removed" in actions


async def test_a_quiet_room_is_warned_then_closed_and_a_message_moves_the_deadline(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    clock = MovableClock()
    service = await sealroom(
        agents={"agent@example.com": agent.user_id},
        clock=clock,
        rooms={"idle_hours": 1, "expiry_warning_minutes": 10},
    )
    session_id, room_id = await _ready_room(service, "T-IDLE-1", agent, customer)
    opened_at = (await service.session_row(session_id)).last_activity_at
    assert opened_at is not None

    # Half an hour later the customer writes: the bot's sync sees it, the deadline moves.
    clock.advance(service, minutes=30)
    await customer.send_text(room_id, "Here is the login you asked for")

    async def activity_seen() -> bool:
        seen = (await service.session_row(session_id)).last_activity_at
        return seen is not None and seen > opened_at

    await _until(activity_seen, "the message to count as activity")
    spoke_at = (await service.session_row(session_id)).last_activity_at
    assert spoke_at is not None

    # The first deadline's warning time passes: nothing is said, the room is not idle.
    clock.advance(service, minutes=21)

    async def first_check_ran() -> bool:
        return len(await _jobs_done(service, session_id, "idle_check")) >= 1

    await _until(first_check_ran, "the first idle check")
    assert (await service.session_row(session_id)).state == "open"

    # Ten minutes before the new deadline the agent is warned; at the deadline the room closes.
    clock.offset = spoke_at + timedelta(minutes=50, seconds=5) - datetime.now(UTC)
    service.app.jobs.wake()
    await agent.wait_for_message(room_id, _from_bot(service, "Nothing has been said here"))
    assert not [b for _, b in agent.messages(room_id) if "nothing was said in it" in b]
    clock.offset = spoke_at + timedelta(hours=1, seconds=5) - datetime.now(UTC)
    service.app.jobs.wake()

    async def closed() -> bool:
        return (await service.session_row(session_id)).state == "closed"

    await _until(closed, "the idle timeout to close the session", timeout=120)
    assert (await service.session_row(session_id)).close_reason == "idle"
    assert "room.redacted" in await _actions(service, session_id)


async def test_the_agent_is_told_in_the_room_when_the_customer_leaves(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    session_id, room_id = await _ready_room(service, "T-LEFT-1", agent, customer)

    left: Any = await customer.client.room_leave(room_id)
    assert type(left).__name__ == "RoomLeaveResponse", left

    _, body = await agent.wait_for_message(room_id, _from_bot(service, "left the secure room"))
    assert customer.user_id in body
    assert "!link" in body
    assert "member.left" in await _actions(service, session_id)
