"""The idempotency ledger: record a key once; a second record of the same key does nothing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import HandledKey


async def record(
    db: AsyncSession, key: str, now: datetime, *, session_id: str | None = None
) -> bool:
    """True the first time `key` is recorded, False ever after (also under concurrency).

    INSERT ... ON CONFLICT DO NOTHING: a concurrent twin waits for the first writer and then
    does nothing, instead of failing the whole transaction with a unique violation.
    """
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(HandledKey)
        .values(key=key, session_id=session_id, at=now)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    result = await db.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def recorded(db: AsyncSession, key: str) -> bool:
    """Whether `key` was recorded."""
    return await db.get(HandledKey, key) is not None
