"""Persistence for sealroom: the only package that imports SQLAlchemy.

The domain imports `store` alone: `Transaction` is what `Database.transaction()` yields and
`Conflict` what a unique constraint raises when a concurrent twin won.
"""

from sqlalchemy.exc import IntegrityError as Conflict
from sqlalchemy.ext.asyncio import AsyncSession as Transaction

from store.engine import Database
from store.models import (
    AuditEvent,
    HandledKey,
    Invite,
    Job,
    PinnedIdentity,
    SecureSession,
    WebhookDelivery,
)

__all__ = [
    "AuditEvent",
    "Conflict",
    "Database",
    "HandledKey",
    "Invite",
    "Job",
    "PinnedIdentity",
    "SecureSession",
    "Transaction",
    "WebhookDelivery",
]
