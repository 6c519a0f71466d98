"""Rows of a test service's database, read (or aged) where no HTTP answer says enough.

Tests assert on what the database holds after a browser or a webhook acted: an invite spent or
not, the audit trail. They take the service's `Database` (``service.app.database``).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import store.audit
from bridge.invites import hash_token
from bridge.sessions import utcnow
from store import Database
from store.models import AuditEvent, Invite


async def _invite(db: AsyncSession, token: str) -> Invite:
    invite = await db.scalar(select(Invite).where(Invite.token_hash == hash_token(token)))
    assert invite is not None
    return invite


async def invite_row(database: Database, token: str) -> Invite:
    """The invite behind an invite link's `token` (it must exist)."""
    async with database.transaction() as db:
        return await _invite(db, token)


async def expire_invite(database: Database, token: str) -> None:
    """Age the invite a minute past its expiry, instead of waiting for it."""
    async with database.transaction() as db:
        (await _invite(db, token)).expires_at = utcnow() - timedelta(minutes=1)


async def audit_actions(database: Database, session_id: str | None = None) -> list[str]:
    """The audit trail's actions, of one session or (without `session_id`) of all."""
    async with database.transaction() as db:
        if session_id is None:
            rows = (await db.execute(select(AuditEvent))).scalars()
            return [row.action for row in rows]
        return [row.action for row in await store.audit.for_session(db, session_id)]
