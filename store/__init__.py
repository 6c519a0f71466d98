"""Persistence for sealroom: the only package that imports SQLAlchemy.

The domain imports `store` alone: `Transaction` is what `Database.transaction()` yields,
`Batch` what a unit of `Database.in_group_commit()` gets (the webhook path, in Core), and
`Conflict` what a unique constraint raises when a concurrent twin won.
"""

from sqlalchemy.exc import IntegrityError as Conflict
from sqlalchemy.ext.asyncio import AsyncSession as Transaction

from store.batch import Batch, IssuedInvite, LiveSession, run_in
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
    "Batch",
    "Conflict",
    "Database",
    "HandledKey",
    "Invite",
    "IssuedInvite",
    "Job",
    "LiveSession",
    "PinnedIdentity",
    "SecureSession",
    "Transaction",
    "WebhookDelivery",
    "run_in",
]
