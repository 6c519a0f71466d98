"""Queries on secure sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import LIVE_PREDICATE, SecureSession


async def get(
    db: AsyncSession, session_id: str, *, for_update: bool = False
) -> SecureSession | None:
    """`for_update` reads the row afresh and locks it until the transaction ends (PostgreSQL;
    on SQLite a transaction that has written holds the one writer's lock already)."""
    if for_update:
        return await db.get(
            SecureSession, session_id, with_for_update=True, populate_existing=True
        )
    return await db.get(SecureSession, session_id)


async def get_live_by_ticket(
    db: AsyncSession, integration: str, ticket_ref: str, *, for_update: bool = False
) -> SecureSession | None:
    """The ticket's live session; `for_update` locks its row until the transaction ends
    (PostgreSQL; SQLite has one writer at a time anyway)."""
    query = select(SecureSession).where(
        SecureSession.integration == integration,
        SecureSession.ticket_ref == ticket_ref,
        text(LIVE_PREDICATE),  # the partial unique index's own words: it is used
    )
    if for_update:
        query = query.with_for_update()
    result = await db.execute(query)
    return result.scalar_one_or_none()


async def page(
    db: AsyncSession,
    *,
    limit: int,
    states: tuple[str, ...] = (),
    integration: str | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[SecureSession]:
    """Sessions newest first (created_at, then id, both descending), at most `limit`, only
    those older than `before` (the last row of the previous page) when it is given."""
    query = select(SecureSession)
    if states:
        query = query.where(SecureSession.state.in_(states))
    if integration is not None:
        query = query.where(SecureSession.integration == integration)
    if before is not None:
        created_at, session_id = before
        query = query.where(
            or_(
                SecureSession.created_at < created_at,
                and_(SecureSession.created_at == created_at, SecureSession.id < session_id),
            )
        )
    query = query.order_by(SecureSession.created_at.desc(), SecureSession.id.desc()).limit(limit)
    return list((await db.execute(query)).scalars())


async def get_by_room(db: AsyncSession, room_id: str) -> SecureSession | None:
    result = await db.execute(select(SecureSession).where(SecureSession.room_id == room_id))
    return result.scalar_one_or_none()


async def set_state(
    db: AsyncSession,
    session_id: str,
    state: str,
    now: datetime,
    *,
    from_states: tuple[str, ...],
    close_reason: str | None = None,
) -> bool:
    """Move a session between states atomically; False when it was not in `from_states`."""
    values: dict[str, object] = {"state": state, "updated_at": now}
    if close_reason is not None:
        values["close_reason"] = close_reason
    if state in ("closed", "purged"):
        values["closed_at"] = now
    result = await db.execute(
        update(SecureSession)
        .where(SecureSession.id == session_id, SecureSession.state.in_(from_states))
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def note_activity(
    db: AsyncSession, room_id: str, now: datetime, *, unless_after: datetime
) -> bool:
    """Record a message in an open session's room, unless one was recorded after
    `unless_after` already (one cheap UPDATE, no read); False when nothing changed."""
    result = await db.execute(
        update(SecureSession)
        .where(
            SecureSession.room_id == room_id,
            SecureSession.state == "open",
            or_(
                SecureSession.last_activity_at.is_(None),
                SecureSession.last_activity_at <= unless_after,
            ),
        )
        .values(last_activity_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_purged(db: AsyncSession, session_id: str, now: datetime) -> None:
    await db.execute(
        update(SecureSession).where(SecureSession.id == session_id).values(purged_at=now)
    )
