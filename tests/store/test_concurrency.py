"""Concurrent webhooks for one ticket on both backends: exactly one invite link stays live.

PostgreSQL runs READ COMMITTED, where a transaction that revokes "the unused links" cannot see
the link a concurrent twin is adding; the session row lock makes re-opens take turns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

from sqlalchemy import Connection, Executable, func, select

from bridge.deliveries import Delivery, DeliveryService, OutcomeKind, WebhookOutcome
from bridge.errors import AgentUnknown
from bridge.invites import InviteService
from bridge.sessions import OpenRequest, SessionService
from store import Database, Invite, SecureSession, batch
from tests.support.databases import migrated_database
from tests.support.domain import AGENT, make_settings

ROUNDS = 10
CONCURRENT = 20


def _deliveries(database: Database) -> DeliveryService:
    sessions = SessionService(database, make_settings())
    return DeliveryService(database, sessions, InviteService(database, sessions))


async def _live_links(database: Database, ticket_ref: str) -> int:
    async with database.transaction() as tx:
        query = (
            select(func.count())
            .select_from(Invite)
            .join(SecureSession, SecureSession.id == Invite.session_id)
            .where(
                SecureSession.ticket_ref == ticket_ref,
                Invite.used_at.is_(None),
                Invite.revoked_at.is_(None),
            )
        )
        return int((await tx.execute(query)).scalar_one())


async def _open_many(
    deliveries: DeliveryService, ticket_ref: str, prefix: str, count: int
) -> list[OutcomeKind]:
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(
                deliveries.open(
                    Delivery("helpdesk", f"{prefix}-{i}"),
                    OpenRequest(ticket_ref, "VPN", AGENT),
                )
                for i in range(count)
            )
        ),
        timeout=60,
    )
    return [outcome.kind for outcome in outcomes]


async def test_concurrent_reopens_leave_exactly_one_live_link(db: Database) -> None:
    deliveries = _deliveries(db)
    for round_ in range(ROUNDS):
        ticket = f"T-{round_}"
        first = await _open_many(deliveries, ticket, f"first-{round_}", 1)
        again = await _open_many(deliveries, ticket, f"again-{round_}", CONCURRENT)

        assert first == [OutcomeKind.CREATED]
        assert again == [OutcomeKind.REUSED] * CONCURRENT
        assert await _live_links(db, ticket) == 1, f"round {round_}"


async def test_concurrent_first_opens_make_one_session_and_one_live_link(db: Database) -> None:
    deliveries = _deliveries(db)
    for round_ in range(ROUNDS):
        ticket = f"T-new-{round_}"
        kinds = await _open_many(deliveries, ticket, f"new-{round_}", CONCURRENT)

        assert kinds.count(OutcomeKind.CREATED) == 1, kinds
        async with db.transaction() as tx:
            query = select(func.count()).where(SecureSession.ticket_ref == ticket)
            assert (await tx.execute(query)).scalar_one() == 1
        assert await _live_links(db, ticket) == 1, f"round {round_}"


async def test_concurrent_replays_of_one_delivery_get_the_first_answer(db: Database) -> None:
    deliveries = _deliveries(db)
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(
                deliveries.open(Delivery("helpdesk", "once"), OpenRequest("T-once", "VPN", AGENT))
                for _ in range(CONCURRENT)
            )
        ),
        timeout=60,
    )

    first = [outcome for outcome in outcomes if not outcome.replayed]
    assert len(first) == 1
    assert first[0].kind == OutcomeKind.CREATED
    assert first[0].invite_token is not None
    for outcome in outcomes:
        assert outcome.kind == OutcomeKind.CREATED
        assert outcome.body == first[0].body
        assert outcome.replayed or outcome is first[0]
        assert outcome.invite_token is None or outcome is first[0]
    assert await _live_links(db, "T-once") == 1


async def test_a_refused_webhook_costs_the_others_in_its_batch_nothing(db: Database) -> None:
    deliveries = _deliveries(db)

    def open_(n: int, agent: str) -> Awaitable[object]:
        return deliveries.open(
            Delivery("helpdesk", f"mix-{n}"), OpenRequest(f"T-mix-{n}", "", agent)
        )

    results = await asyncio.wait_for(
        asyncio.gather(
            *(open_(n, "mallory@example.com" if n == 3 else AGENT) for n in range(8)),
            return_exceptions=True,
        ),
        timeout=60,
    )

    assert isinstance(results[3], AgentUnknown)
    for n, result in enumerate(results):
        if n != 3:
            assert isinstance(result, WebhookOutcome)
            assert result.kind == OutcomeKind.CREATED
    async with db.transaction() as tx:
        opened = (await tx.execute(select(func.count()).select_from(SecureSession))).scalar_one()
    assert opened == 7


async def _sqlite_plan(tmp_path: Path, statement: Executable, params: tuple[str, ...]) -> str:
    """SQLite's EXPLAIN QUERY PLAN of one of the webhook path's statements, on a migrated file."""
    async with migrated_database("sqlite", tmp_path) as database:

        def plan(conn: Connection) -> str:
            compiled = statement.compile(dialect=conn.dialect)
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
            return " ".join(str(row[-1]) for row in rows)

        return await database.run_sync(plan)


async def test_the_live_ticket_lookup_uses_the_partial_unique_index(tmp_path: Path) -> None:
    """`state IN (?, ?, ?)` would make SQLite scan every session ever opened, per webhook."""
    plan = await _sqlite_plan(tmp_path, batch._FIND_LIVE, ("helpdesk", "T-1"))
    assert "USING INDEX uq_secure_sessions_live_ticket" in plan


async def test_revoking_a_sessions_invites_uses_the_index_on_session(tmp_path: Path) -> None:
    """Each re-opened ticket revokes its session's unused invites: not a scan of all of them."""
    plan = await _sqlite_plan(tmp_path, batch._REVOKE_UNUSED, ("2026-01-01", "S-1"))
    assert "USING INDEX ix_invites_session_id" in plan
