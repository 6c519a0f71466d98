"""Queries on invites. Tokens are looked up by hash only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Invite


async def get_by_hash(db: AsyncSession, token_hash: str) -> Invite | None:
    result = await db.execute(select(Invite).where(Invite.token_hash == token_hash))
    return result.scalar_one_or_none()


async def consume(db: AsyncSession, invite_id: int, user_id: str, now: datetime) -> bool:
    """Mark the invite used, once: a single guarded UPDATE, so two redeems cannot both win."""
    result = await db.execute(
        update(Invite)
        .where(
            Invite.id == invite_id,
            Invite.used_at.is_(None),
            Invite.revoked_at.is_(None),
            Invite.expires_at > now,
        )
        .values(used_at=now, used_by=user_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke_unused(db: AsyncSession, session_id: str, now: datetime) -> int:
    result = await db.execute(
        update(Invite)
        .where(
            Invite.session_id == session_id,
            Invite.used_at.is_(None),
            Invite.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def release(db: AsyncSession, invite_id: int, now: datetime) -> bool:
    """Make a spent invite usable again (its invitation failed), unless it was revoked or has
    expired meanwhile."""
    result = await db.execute(
        update(Invite)
        .where(
            Invite.id == invite_id,
            Invite.used_at.is_not(None),
            Invite.revoked_at.is_(None),
            Invite.expires_at > now,
        )
        .values(used_at=None, used_by=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def swap_registration(
    db: AsyncSession, invite_id: int, previous_hash: str | None, new_hash: str, now: datetime
) -> bool:
    """Replace the invite's registration token hash, only if it is still `previous_hash`: of two
    concurrent starts one wins, and the loser knows to revoke its token."""
    current = (
        Invite.registration_token_hash.is_(None)
        if previous_hash is None
        else Invite.registration_token_hash == previous_hash
    )
    result = await db.execute(
        update(Invite)
        .where(Invite.id == invite_id, current)
        .values(
            registration_token_hash=new_hash,
            registration_started_at=now,
            registration_attempts=Invite.registration_attempts + 1,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
