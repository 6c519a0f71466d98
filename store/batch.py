"""The webhook path's reads and writes in SQLAlchemy Core: plain synchronous statements on one
Connection, with no ORM (no unit of work, no identity map), for `store.group_commit`.

A `Batch` is the shared transaction of one group commit. Rows nothing reads back on the webhook
path (jobs, audit events, deliveries) are kept and written once per batch, one multi-row INSERT
per table, when the batch ends; a replay of a delivery recorded earlier in the same batch is
found among those kept. Sessions, invites and ledger keys are written at once: later statements
refer to them (foreign keys, an invite's id, a key seen before).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from store.models import (
    LIVE_PREDICATE,
    AuditEvent,
    Base,
    HandledKey,
    Invite,
    Job,
    SecureSession,
    WebhookDelivery,
)

T = TypeVar("T")

_tables = Base.metadata.tables
_sessions = _tables[SecureSession.__tablename__]
_invites = _tables[Invite.__tablename__]
_jobs = _tables[Job.__tablename__]
_keys = _tables[HandledKey.__tablename__]
_audit = _tables[AuditEvent.__tablename__]
_deliveries = _tables[WebhookDelivery.__tablename__]

# Built once with bind parameters: building a statement per call (values bound in) costs more
# CPU than running it.
_FIND_DELIVERY = select(_deliveries.c.outcome, _deliveries.c.response).where(
    _deliveries.c.integration == bindparam("b_integration"),
    _deliveries.c.webhook_id == bindparam("b_webhook_id"),
)
_FIND_LIVE = select(
    _sessions.c.id,
    _sessions.c.integration,
    _sessions.c.state,
    _sessions.c.agent_user_id,
    _sessions.c.expires_at,
).where(
    _sessions.c.integration == bindparam("b_integration"),
    _sessions.c.ticket_ref == bindparam("b_ticket_ref"),
    text(LIVE_PREDICATE),  # the partial unique index's own words: it is used
)
# The row lock makes concurrent re-opens of one ticket take turns on PostgreSQL.
_FIND_LIVE_LOCKED = _FIND_LIVE.with_for_update()
_ASSIGN_AGENT = (
    update(_sessions)
    .where(_sessions.c.id == bindparam("b_id"))
    .values(
        agent_ref=bindparam("b_agent_ref"),
        agent_user_id=bindparam("b_agent_user_id"),
        updated_at=bindparam("b_now"),
    )
)
_REVOKE_UNUSED = (
    update(_invites)
    .where(
        _invites.c.session_id == bindparam("b_session_id"),
        _invites.c.used_at.is_(None),
        _invites.c.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("b_now"))
)
_INSERT_SESSION = insert(_sessions)
_INSERT_INVITE = insert(_invites).returning(_invites.c.id)
_RECORD_KEY = {
    name: dialect.insert(_keys).on_conflict_do_nothing(index_elements=["key"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_INSERTS = ((_jobs, insert(_jobs)), (_audit, insert(_audit)), (_deliveries, insert(_deliveries)))


@dataclass(frozen=True)
class LiveSession:
    """What the webhook path needs of a ticket's live session."""

    id: str
    integration: str
    state: str
    agent_user_id: str | None
    expires_at: datetime


@dataclass(frozen=True)
class IssuedInvite:
    id: int
    expires_at: datetime


class Batch:
    """One transaction on a Core Connection: synchronous calls, run off the event loop on
    SQLite (one thread hand-off per batch, not per statement)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._postgres = conn.dialect.name == "postgresql"
        self._record_key = _RECORD_KEY["postgresql" if self._postgres else "sqlite"]
        self._jobs: list[dict[str, Any]] = []
        self._audit: list[dict[str, Any]] = []
        self._deliveries: dict[tuple[str, str], dict[str, Any]] = {}

    # -- deliveries ----------------------------------------------------------------------------

    def delivery(self, integration: str, webhook_id: str) -> tuple[str, dict[str, Any]] | None:
        """(outcome, response) of the first answer to this delivery, if it was recorded."""
        kept = self._deliveries.get((integration, webhook_id))
        if kept is not None:
            return str(kept["outcome"]), dict(kept["response"])
        row = self.conn.execute(
            _FIND_DELIVERY, {"b_integration": integration, "b_webhook_id": webhook_id}
        ).first()
        if row is None:
            return None
        return str(row.outcome), dict(row.response or {})

    def add_delivery(
        self,
        integration: str,
        webhook_id: str,
        now: datetime,
        outcome: str,
        response: dict[str, Any],
    ) -> None:
        self._deliveries[(integration, webhook_id)] = {
            "integration": integration,
            "webhook_id": webhook_id,
            "received_at": now,
            "outcome": outcome,
            "response": response,
        }

    # -- secure sessions -----------------------------------------------------------------------

    def live_session(self, integration: str, ticket_ref: str) -> LiveSession | None:
        """The ticket's live session, its row locked until the transaction ends (PostgreSQL;
        SQLite has one writer at a time anyway)."""
        query = _FIND_LIVE_LOCKED if self._postgres else _FIND_LIVE
        params = {"b_integration": integration, "b_ticket_ref": ticket_ref}
        row = self.conn.execute(query, params).first()
        if row is None:
            return None
        return LiveSession(row.id, row.integration, row.state, row.agent_user_id, row.expires_at)

    def add_session(self, **values: Any) -> None:
        """Insert a secure session (columns as keywords).

        Raises:
            store.Conflict: a concurrent twin holds the ticket's live session.
        """
        self.conn.execute(_INSERT_SESSION, values)

    def assign_agent(self, session_id: str, agent_ref: str, user_id: str, now: datetime) -> None:
        self.conn.execute(
            _ASSIGN_AGENT,
            {
                "b_id": session_id,
                "b_agent_ref": agent_ref,
                "b_agent_user_id": user_id,
                "b_now": now,
            },
        )

    def move(
        self,
        session_id: str,
        state: str,
        now: datetime,
        *,
        from_states: tuple[str, ...],
        close_reason: str | None = None,
    ) -> bool:
        """Move a session between states atomically (as `store.sessions.set_state`); False
        when it was not in `from_states`."""
        values: dict[str, object] = {"state": state, "updated_at": now}
        if close_reason is not None:
            values["close_reason"] = close_reason
        if state in ("closed", "purged"):
            values["closed_at"] = now
        result = self.conn.execute(
            update(_sessions)
            .where(_sessions.c.id == session_id, _sessions.c.state.in_(from_states))
            .values(**values)
        )
        return bool(result.rowcount)

    # -- invites -------------------------------------------------------------------------------

    def revoke_unused_invites(self, session_id: str, now: datetime) -> int:
        result = self.conn.execute(_REVOKE_UNUSED, {"b_session_id": session_id, "b_now": now})
        return int(result.rowcount)

    def add_invite(
        self, session_id: str, token_hash: str, now: datetime, expires_at: datetime
    ) -> IssuedInvite:
        result = self.conn.execute(
            _INSERT_INVITE,
            {
                "session_id": session_id,
                "token_hash": token_hash,
                "created_at": now,
                "expires_at": expires_at,
                "used_at": None,
                "used_by": None,
                "revoked_at": None,
                "registration_token_hash": None,
                "registration_started_at": None,
                "registration_attempts": 0,
            },
        )
        return IssuedInvite(int(result.scalar_one()), expires_at)

    # -- jobs, the ledger and the audit trail --------------------------------------------------

    def add_job(
        self,
        action: str,
        now: datetime,
        *,
        session_id: str | None = None,
        params: dict[str, Any] | None = None,
        run_after: datetime | None = None,
        dedupe_key: str | None = None,
    ) -> bool:
        """Add a job (written when the batch ends); with a `dedupe_key` already in the ledger,
        add nothing and return False (as `store.jobs.add`)."""
        if dedupe_key is not None and not self.record_key(dedupe_key, now, session_id):
            return False
        self._jobs.append(
            {
                "action": action,
                "session_id": session_id,
                "params": params or {},
                "checkpoint": None,
                "state": "pending",
                "attempts": 0,
                "run_after": run_after or now,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
            }
        )
        return True

    def record_key(self, key: str, now: datetime, session_id: str | None = None) -> bool:
        """True the first time `key` is recorded in the ledger (as `store.ledger.record`)."""
        result = self.conn.execute(
            self._record_key, {"key": key, "session_id": session_id, "at": now}
        )
        return bool(result.rowcount)

    def audit(
        self,
        now: datetime,
        action: str,
        *,
        session_id: str | None = None,
        actor: str = "sealroom",
        **detail: Any,
    ) -> None:
        """Record an audit event (written when the batch ends). Never pass a secret."""
        self._audit.append(
            {
                "at": now,
                "session_id": session_id,
                "actor": actor,
                "action": action,
                "detail": detail,
            }
        )

    def flush(self) -> None:
        """Write what was kept: one INSERT per table (jobs refer to sessions, written already)."""
        kept = {
            _jobs: self._jobs,
            _audit: self._audit,
            _deliveries: list(self._deliveries.values()),
        }
        for table, statement in _INSERTS:
            if kept[table]:
                self.conn.execute(statement, kept[table])
        self._jobs, self._audit, self._deliveries = [], [], {}


async def run_in(db: AsyncSession, work: Callable[[Batch], T]) -> T:
    """`work` on a Batch inside an ORM transaction (callers off the webhook path share the
    webhook path's code): what the ORM holds is flushed first, what the batch kept after."""

    def call(session: Session) -> T:
        session.flush()
        batch = Batch(session.connection())
        result = work(batch)
        batch.flush()
        return result

    return await db.run_sync(call)
