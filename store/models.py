"""SQLAlchemy 2 typed models. Nothing here holds a secret: invite tokens only as SHA-256 hashes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, text
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from store.limits import (
    ACTOR_MAX,
    AGENT_REF_MAX,
    INTEGRATION_MAX,
    MATRIX_ID_MAX,
    TICKET_REF_MAX,
    WEBHOOK_ID_MAX,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# States in which a secure session still owns a room (or will): one per ticket at a time.
LIVE_STATES = ("pending", "open", "closing")
# The same as SQL, word for word the partial index's WHERE: a query holding it lets SQLite (and
# PostgreSQL's generic plans) use that index; `state IN (?, ?, ?)` makes them scan the table.
LIVE_PREDICATE = "state IN ('pending', 'open', 'closing')"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        # SQLite keeps the wall time and drops the offset: store every instant in UTC.
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(AsyncAttrs, DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class SecureSession(Base):
    __tablename__ = "secure_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    integration: Mapped[str] = mapped_column(String(INTEGRATION_MAX))
    ticket_ref: Mapped[str] = mapped_column(String(TICKET_REF_MAX))
    subject: Mapped[str] = mapped_column(Text, default="")
    agent_ref: Mapped[str] = mapped_column(String(AGENT_REF_MAX), default="")
    agent_user_id: Mapped[str | None] = mapped_column(String(MATRIX_ID_MAX))
    customer_user_id: Mapped[str | None] = mapped_column(String(MATRIX_ID_MAX))
    room_alias: Mapped[str] = mapped_column(String(MATRIX_ID_MAX))
    room_id: Mapped[str | None] = mapped_column(String(MATRIX_ID_MAX), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    close_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    # The last message seen in the room (the idle timeout), written at most about once a minute.
    last_activity_at: Mapped[datetime | None]
    # When the bot left the room on purpose (zero-knowledge mode, rooms.bot_stays: false).
    bot_left_at: Mapped[datetime | None]
    # When the room was purged from the homeserver (Synapse's admin API).
    purged_at: Mapped[datetime | None]

    __table_args__ = (
        # One live session per ticket; closed ones stay for the audit trail.
        Index(
            "uq_secure_sessions_live_ticket",
            "integration",
            "ticket_ref",
            unique=True,
            sqlite_where=text(LIVE_PREDICATE),
            postgresql_where=text(LIVE_PREDICATE),
        ),
    )


class Invite(Base):
    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("secure_sessions.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[str | None] = mapped_column(String(MATRIX_ID_MAX))
    revoked_at: Mapped[datetime | None]
    # Account creation from the invite page: the hash of the single-use registration token
    # minted for it (the token itself is only ever in the customer's browser), when, how often.
    registration_token_hash: Mapped[str | None] = mapped_column(String(64))
    registration_started_at: Mapped[datetime | None]
    registration_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # Re-opening a ticket revokes its session's unused invites (migration 0006).
    __table_args__ = (Index("ix_invites_session_id", "session_id"),)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    integration: Mapped[str] = mapped_column(String(INTEGRATION_MAX))
    webhook_id: Mapped[str] = mapped_column(String(WEBHOOK_ID_MAX))
    received_at: Mapped[datetime]
    # What the first answer was (created, reused, closing); the web layer maps it to a status.
    outcome: Mapped[str] = mapped_column(String(16))
    # The first answer without its secret part (the invite URL is never stored).
    response: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("uq_webhook_deliveries_delivery", "integration", "webhook_id", unique=True),
    )


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(32))
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("secure_sessions.id", ondelete="CASCADE")
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Progress of a long job (the wipe), so a re-run after a crash resumes instead of restarting.
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_jobs_due", "state", "run_after"),)


class HandledKey(Base):
    """The idempotency ledger: a key is here once something was done for it (a Matrix event
    handled, a step scheduled). Kept apart from jobs so that finished jobs can be pruned."""

    __tablename__ = "handled_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("secure_sessions.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    session_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PinnedIdentity(Base):
    """A member's cross-signing master key, pinned when first seen (strict trust policy)."""

    __tablename__ = "pinned_identities"

    user_id: Mapped[str] = mapped_column(String(MATRIX_ID_MAX), primary_key=True)
    master_key: Mapped[str] = mapped_column(String(64))
    # A different master key the homeserver showed since; an agent's `!trust` adopts it.
    pending_master_key: Mapped[str | None] = mapped_column(String(64))
    pinned_at: Mapped[datetime]
    updated_at: Mapped[datetime]
