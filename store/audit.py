"""The audit trail: who did what, when. Callers never pass a secret in `detail`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import AuditEvent


def record(
    db: AsyncSession,
    now: datetime,
    action: str,
    *,
    session_id: str | None = None,
    actor: str = "sealroom",
    **detail: Any,
) -> None:
    db.add(AuditEvent(at=now, session_id=session_id, actor=actor, action=action, detail=detail))


async def for_session(db: AsyncSession, session_id: str) -> list[AuditEvent]:
    result = await db.execute(
        select(AuditEvent).where(AuditEvent.session_id == session_id).order_by(AuditEvent.id)
    )
    return list(result.scalars())
