"""Pinned cross-signing identities of room members."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import PinnedIdentity


async def pins(db: AsyncSession, user_ids: list[str]) -> dict[str, str]:
    if not user_ids:
        return {}
    result = await db.execute(select(PinnedIdentity).where(PinnedIdentity.user_id.in_(user_ids)))
    return {row.user_id: row.master_key for row in result.scalars()}


async def pin(db: AsyncSession, user_id: str, master_key: str, now: datetime) -> bool:
    """Pin a first-seen identity; False when one is pinned already (never overwritten here)."""
    if await db.get(PinnedIdentity, user_id) is not None:
        return False
    db.add(PinnedIdentity(user_id=user_id, master_key=master_key, pinned_at=now, updated_at=now))
    return True


async def note_change(db: AsyncSession, user_id: str, master_key: str, now: datetime) -> None:
    row = await db.get(PinnedIdentity, user_id)
    if row is not None and row.pending_master_key != master_key:
        row.pending_master_key = master_key
        row.updated_at = now


async def accept_change(db: AsyncSession, user_id: str, now: datetime) -> str | None:
    """Adopt the identity the homeserver now shows; returns it, or None if there is none."""
    row = await db.get(PinnedIdentity, user_id)
    if row is None or row.pending_master_key is None:
        return None
    row.master_key, row.pending_master_key = row.pending_master_key, None
    row.updated_at = now
    return row.master_key
