"""Secure sessions for admins and helpdesk apps: list, show (with the audit trail), close.

The read side of `bridge.sessions`, shared by the session API (`bridge.web.api`) and the command
line (`sealroom sessions ...`). What it hands out is metadata only: states, ticket references,
Matrix IDs, timestamps and the audit trail. Never an invite token or its hash, a registration
token, a ticket's subject or anything said in a room. Closing goes through
`SessionService.close`, as the agent's `!close` and the expiry do.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import store.audit
import store.sessions
from bridge.errors import PayloadInvalid, PurgeUnavailable, SessionClosed, SessionUnknown
from bridge.sessions import LIVE, SessionService, SessionState
from store import AuditEvent, Database, SecureSession

LIMIT_DEFAULT = 50
LIMIT_MAX = 200
# What an admin's close records as the reason (the agent's is "agent", the helpdesk's "helpdesk").
ADMIN_REASON = "admin"
# An integration's name, as the configuration allows it (bridge.config).
_INTEGRATION = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class SessionSummary:
    """One session in a list: what it is about, who is in it, where it stands."""

    id: str
    state: str
    integration: str
    ticket_ref: str
    agent_user_id: str | None
    customer_user_id: str | None
    room_id: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    # Zero-knowledge mode: when the bot left the room; when the room was purged.
    bot_left_at: datetime | None
    purged_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class SessionDetail:
    """One session with the helpdesk's name for its agent, its room alias and audit trail."""

    summary: SessionSummary
    agent_ref: str
    room_alias: str
    audit: list[AuditEntry]

    def as_json(self) -> dict[str, Any]:
        return {
            **self.summary.as_json(),
            "agent_ref": self.agent_ref,
            "room_alias": self.room_alias,
            "audit": [entry.as_json() for entry in self.audit],
        }


@dataclass(frozen=True)
class Page:
    sessions: list[SessionSummary]
    # Give it back as `cursor` for the next (older) page; None on the last page.
    next_cursor: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "sessions": [session.as_json() for session in self.sessions],
            "next_cursor": self.next_cursor,
        }


class WipeOutcome(StrEnum):
    """What `SessionQueries.wipe` did."""

    CLOSING = "closing"  # it was live: closing it wipes the room (the whole wipe)
    ALREADY_CLOSING = "already_closing"  # its wipe is under way
    PURGING = "purging"  # closed earlier, not purged: the room is being purged now
    ALREADY_WIPED = "already_wiped"  # closed and purged: nothing left to do
    NO_ROOM = "no_room"  # closed before its room was made: nothing to wipe


@dataclass(frozen=True)
class Wiped:
    outcome: WipeOutcome
    session: SessionDetail

    @property
    def under_way(self) -> bool:
        """Whether the running service still has work to do (202) or nothing is left (200)."""
        return self.outcome in (
            WipeOutcome.CLOSING,
            WipeOutcome.ALREADY_CLOSING,
            WipeOutcome.PURGING,
        )

    def as_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "session": self.session.as_json()}


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in values.items()
    }


def _summary(session: SecureSession) -> SessionSummary:
    return SessionSummary(
        id=session.id,
        state=session.state,
        integration=session.integration,
        ticket_ref=session.ticket_ref,
        agent_user_id=session.agent_user_id,
        customer_user_id=session.customer_user_id,
        room_id=session.room_id,
        created_at=session.created_at,
        updated_at=session.updated_at,
        expires_at=session.expires_at,
        closed_at=session.closed_at,
        close_reason=session.close_reason,
        bot_left_at=session.bot_left_at,
        purged_at=session.purged_at,
    )


def _entry(event: AuditEvent) -> AuditEntry:
    return AuditEntry(event.at, event.actor, event.action, dict(event.detail or {}))


def encode_cursor(session: SessionSummary) -> str:
    raw = json.dumps([session.created_at.isoformat(), session.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a page ends with.

    Raises:
        PayloadInvalid: naming `cursor`, when it is not one this module made.
    """
    invalid = PayloadInvalid(
        "cursor is not a cursor from a previous page; start again without it.", ["cursor"]
    )
    if len(cursor) > 200:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at_text, session_id = json.loads(raw)
        created_at = datetime.fromisoformat(created_at_text)
    except (binascii.Error, ValueError, TypeError):
        raise invalid from None
    if created_at.tzinfo is None or not is_session_id(session_id):
        raise invalid
    return created_at, session_id


def is_session_id(value: object) -> bool:
    """A session id is a UUID in its canonical form (what `bridge.sessions` makes)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def check_filters(state: str | None, integration: str | None, limit: int) -> None:
    """Raises PayloadInvalid naming the filter that cannot match anything sensible."""
    if state is not None and state not in {s.value for s in SessionState}:
        states = ", ".join(s.value for s in SessionState)
        raise PayloadInvalid(f"state must be one of {states}.", ["state"])
    if integration is not None and not _INTEGRATION.fullmatch(integration):
        raise PayloadInvalid(
            "integration must be an integration's name: lowercase letters, digits, - and _.",
            ["integration"],
        )
    if not 1 <= limit <= LIMIT_MAX:
        raise PayloadInvalid(f"limit must be between 1 and {LIMIT_MAX}.", ["limit"])


class SessionQueries:
    def __init__(
        self, database: Database, sessions: SessionService, *, can_purge: bool = False
    ) -> None:
        """`can_purge`: a homeserver admin token is configured (`wipe` of a closed room)."""
        self.database = database
        self.sessions = sessions
        self.can_purge = can_purge

    async def list(
        self,
        *,
        state: str | None = None,
        integration: str | None = None,
        limit: int = LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> Page:
        """Sessions newest first, filtered by state and integration, a page at a time.

        Raises:
            PayloadInvalid: naming the filter, the limit or the cursor that is wrong.
        """
        check_filters(state, integration, limit)
        before = decode_cursor(cursor) if cursor is not None else None
        async with self.database.transaction() as db:
            rows = await store.sessions.page(
                db,
                limit=limit + 1,
                states=(state,) if state is not None else (),
                integration=integration,
                before=before,
            )
        sessions = [_summary(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(sessions, encode_cursor(sessions[-1]) if more else None)

    async def show(self, session_id: str) -> SessionDetail:
        """Raises SessionUnknown when there is no such session."""
        if not is_session_id(session_id):
            raise SessionUnknown()
        async with self.database.transaction() as db:
            session = await store.sessions.get(db, session_id)
            if session is None:
                raise SessionUnknown()
            events = await store.audit.for_session(db, session_id)
        return SessionDetail(
            _summary(session),
            session.agent_ref,
            session.room_alias,
            [_entry(event) for event in events],
        )

    async def close(self, session_id: str, actor: str) -> SessionDetail:
        """Close a live session as an admin: the close is recorded now, and the job runner of
        the running service removes everyone and closes the room (as for `!close`).

        Raises:
            SessionUnknown: no such session.
            SessionClosed: it is already closing or closed (nothing is done).
        """
        detail = await self.show(session_id)
        if detail.summary.state not in LIVE:
            raise SessionClosed(
                f"The secure session {session_id} is already {detail.summary.state}."
            )
        await self.sessions.close(session_id, ADMIN_REASON, actor)
        return await self.show(session_id)

    async def wipe(self, session_id: str, actor: str) -> Wiped:
        """Wipe a session's room, whatever its state; asking twice does no harm. A live
        session is closed (its close is the whole wipe); the room of one closed without a
        purge (before an admin token was configured, say) is purged by the running service.

        Raises:
            SessionUnknown: no such session.
            PurgeUnavailable: its room needs a purge and no admin token is configured.
        """
        detail = await self.show(session_id)
        summary = detail.summary
        if summary.state in LIVE:
            try:
                await self.sessions.close(session_id, ADMIN_REASON, actor)
            except SessionClosed:
                pass  # closed concurrently: its wipe is under way
            return Wiped(WipeOutcome.CLOSING, await self.show(session_id))
        if summary.state == SessionState.CLOSING:
            return Wiped(WipeOutcome.ALREADY_CLOSING, detail)
        if summary.room_id is None:
            return Wiped(WipeOutcome.NO_ROOM, detail)
        if summary.purged_at is not None:
            return Wiped(WipeOutcome.ALREADY_WIPED, detail)
        if not self.can_purge:
            raise PurgeUnavailable()
        await self.sessions.schedule_purge(session_id, actor)
        return Wiped(WipeOutcome.PURGING, await self.show(session_id))
