"""Concurrent webhooks for one ticket on both backends: exactly one invite link stays live.

PostgreSQL runs READ COMMITTED, where a transaction that revokes "the unused links" cannot see
the link a concurrent twin is adding; the session row lock makes re-opens take turns.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bridge.deliveries import Delivery, DeliveryService, OutcomeKind
from bridge.invites import InviteService
from bridge.sessions import OpenRequest, SessionService
from store import Database, Invite, SecureSession
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
