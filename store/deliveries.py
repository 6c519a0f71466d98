"""Webhook deliveries, kept so that a replayed delivery is answered without doing anything."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import WebhookDelivery


async def get(db: AsyncSession, integration: str, webhook_id: str) -> WebhookDelivery | None:
    result = await db.execute(
        select(WebhookDelivery).where(
            WebhookDelivery.integration == integration,
            WebhookDelivery.webhook_id == webhook_id,
        )
    )
    return result.scalar_one_or_none()
