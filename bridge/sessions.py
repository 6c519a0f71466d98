"""A secure session's life: open or reuse, extend, begin close, close, expire.

The states and the moves between them are checked here and nowhere else. Knows neither HTTP nor
nio; everything that touches the homeserver is a durable job (see `bridge.room_jobs`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import structlog

import store.audit
import store.invites
import store.sessions
from bridge.errors import AgentUnknown, SessionClosed, TicketUnknown
from bridge.jobs import Action, outstanding, schedule, schedule_in
from bridge.ticket_notes import Milestone, TicketUpdates, schedule_milestone
from store import Batch, Database, LiveSession, SecureSession, Transaction, run_in

log = structlog.stdlib.get_logger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class SessionState(StrEnum):
    PENDING = "pending"  # recorded; the room is being created
    OPEN = "open"  # the room exists
    CLOSING = "closing"  # members are being removed and the room wiped
    CLOSED = "closed"


# Every allowed move; `_move` refuses anything else.
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.PENDING: frozenset({SessionState.OPEN, SessionState.CLOSING}),
    SessionState.OPEN: frozenset({SessionState.CLOSING}),
    SessionState.CLOSING: frozenset({SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}
LIVE = (SessionState.PENDING, SessionState.OPEN)


def _sources(to: SessionState) -> tuple[str, ...]:
    """Every state allowed to move to `to`."""
    return tuple(state.value for state, targets in TRANSITIONS.items() if to in targets)


def is_live(session: SecureSession) -> bool:
    """Pending or open: it may still be joined, extended or closed."""
    return session.state in LIVE


@dataclass(frozen=True)
class Settings:
    """The parts of the configuration the domain needs."""

    server_name: str
    invite_lifetime: timedelta
    session_lifetime: timedelta
    name_template: str
    topic_template: str
    room_version: str | None
    agents: dict[str, str]
    registration_enabled: bool = False
    registration_token_lifetime: timedelta = timedelta(minutes=30)
    # How long before expiry the room is warned (zero: never).
    expiry_warning: timedelta = timedelta(0)
    # How long the first notice to someone who just joined waits for their client (welcome.py).
    first_notice_wait: timedelta = timedelta(0)
    # How long an invite is retried while the invitee's (other) homeserver does not answer.
    remote_invite_patience: timedelta = timedelta(minutes=10)
    # For links the bot hands the agent in the room (!link).
    public_base_url: str = ""
    # Per integration: that helpdesk's own agent ids -> Matrix IDs (before `agents`).
    integration_agents: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Per integration: what is posted back into its tickets (bridge.ticket_notes).
    ticket_updates: Mapping[str, TicketUpdates] = field(default_factory=dict)
    # Per integration: the language of the bot's notices (bridge.i18n.LANGUAGES; default en).
    notice_languages: Mapping[str, str] = field(default_factory=dict)

    def notice_language(self, integration: str) -> str:
        return self.notice_languages.get(integration, "en")

    # Per integration: its own session lifetime (before `session_lifetime`).
    integration_lifetimes: Mapping[str, timedelta] = field(default_factory=dict)
    # False: zero-knowledge mode; the bot leaves once the customer and the agent have joined.
    bot_stays: bool = True
    # A room with no message for this long is closed; None: never.
    idle_timeout: timedelta | None = None

    def lifetime(self, integration: str) -> timedelta:
        """How long a new session of `integration` stays open before it expires."""
        return self.integration_lifetimes.get(integration, self.session_lifetime)

    def agent_user_id(self, agent: str, integration: str | None = None) -> str | None:
        """The Matrix account mapped to a helpdesk agent (case-insensitive), if any: the
        integration's own map first, then the global one."""
        key = agent.strip().lower()
        own = self.integration_agents.get(integration or "", {})
        return own.get(key) or self.agents.get(key)


@dataclass(frozen=True)
class OpenRequest:
    ticket_ref: str
    subject: str
    agent: str
    # A reassign: hand the ticket's live session to `agent`, but never start one.
    reassign: bool = False


def room_alias_localpart(session_id: str) -> str:
    """Deterministic per session, so a retried createRoom finds the room instead of a twin."""
    return f"sealroom-{session_id}"


class SessionService:
    """The secure-session state machine: pending -> open -> closing -> closed."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        wake_jobs: Callable[[], None] = lambda: None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.clock = clock
        self.wake_jobs = wake_jobs

    async def load(self, session_id: str | None) -> SecureSession:
        """Raises LookupError when the session is gone (a job for it cannot run)."""
        async with self.database.transaction() as db:
            session = await store.sessions.get(db, session_id or "")
        if session is None:
            raise LookupError(f"secure session {session_id} is gone")
        return session

    def agent_for(self, integration: str, agent: str) -> str:
        """The Matrix account of a helpdesk agent.

        Raises:
            AgentUnknown: the agent is not mapped to a Matrix account.
        """
        agent_user_id = self.settings.agent_user_id(agent, integration)
        if agent_user_id is None:
            raise AgentUnknown(
                f"agent: {agent!r} is not mapped to a Matrix account; add it under "
                f"`agents:` (or `integrations.{integration}.agents:`) in sealroom's "
                "configuration.",
                ["agent"],
            )
        return agent_user_id

    def open_or_reuse_in(
        self, db: Batch, integration: str, request: OpenRequest, now: datetime
    ) -> tuple[LiveSession, bool]:
        """The ticket's live session, locked for this transaction, or a new one (the webhook
        path: synchronous, in the group commit's batch).

        Raises (each before anything is written, so the batch goes on for the others):
            AgentUnknown: the agent is not mapped to a Matrix account.
            SessionClosed: the ticket's session is still being closed.
            TicketUnknown: a reassign for a ticket without a live session.
        Raises store.Conflict when a concurrent twin created the session first (run again).
        """
        agent_user_id = self.agent_for(integration, request.agent)
        # The row lock makes concurrent re-opens of one ticket take turns (PostgreSQL's READ
        # COMMITTED would otherwise let each revoke only the invites it can see).
        session = db.live_session(integration, request.ticket_ref)
        if session is not None:
            if session.state == SessionState.CLOSING:
                raise SessionClosed(
                    f"The secure session for ticket {request.ticket_ref!r} is still being "
                    "closed; send the webhook again in a minute."
                )
            if session.agent_user_id != agent_user_id:
                self._hand_over(db, session, request.agent, agent_user_id, now)
                session = replace(session, agent_user_id=agent_user_id)
            return session, True
        if request.reassign:
            raise TicketUnknown(
                f"There is no open secure session for ticket {request.ticket_ref!r} to hand "
                "over; a reassign never opens one."
            )
        session_id = str(uuid.uuid4())
        expires_at = now + self.settings.lifetime(integration)
        db.add_session(
            id=session_id,
            integration=integration,
            ticket_ref=request.ticket_ref,
            subject=request.subject,
            agent_ref=request.agent,
            agent_user_id=agent_user_id,
            room_alias=f"#{room_alias_localpart(session_id)}:{self.settings.server_name}",
            state=SessionState.PENDING.value,
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
        )
        schedule_in(db, Action.CREATE_ROOM, now, session_id=session_id)
        self.schedule_expiry_in(db, session_id, expires_at, now)
        db.audit(
            now,
            "session.opened",
            session_id=session_id,
            actor=request.agent,
            ticket_ref=request.ticket_ref,
            integration=integration,
        )
        live = LiveSession(
            session_id, integration, SessionState.PENDING.value, agent_user_id, expires_at
        )
        return live, False

    async def open_or_reuse(
        self, db: Transaction, integration: str, request: OpenRequest, now: datetime
    ) -> tuple[SecureSession, bool]:
        """`open_or_reuse_in` inside an ORM transaction; the session as a model."""
        live, reused = await run_in(
            db, lambda batch: self.open_or_reuse_in(batch, integration, request, now)
        )
        session = await store.sessions.get(db, live.id, for_update=True)
        assert session is not None
        return session, reused

    def _hand_over(
        self, db: Batch, session: LiveSession, agent: str, user_id: str, now: datetime
    ) -> None:
        """A re-open or reassignment names another (mapped) agent: they become the session's
        agent and are invited, and the previous agent is removed from the room; the room jobs
        wait for the room if it does not exist yet."""
        previous = session.agent_user_id
        if previous is not None:
            schedule_in(
                db,
                Action.REMOVE_MEMBER,
                now,
                session_id=session.id,
                params={
                    "user_id": previous,
                    "reason": "The ticket was handed to another agent.",
                    "demote": True,
                },
            )
        db.assign_agent(session.id, agent, user_id, now)
        schedule_in(
            db,
            Action.INVITE,
            now,
            session_id=session.id,
            params={"user_id": user_id, "agent": True},
            dedupe_key=f"agent-invite:{session.id}:{user_id}",
        )
        db.audit(now, "session.agent_changed", session_id=session.id, actor=agent, user_id=user_id)

    async def extend(
        self, db: Transaction, session: SecureSession, hours: float, actor: str, now: datetime
    ) -> None:
        session.expires_at = max(session.expires_at, now) + timedelta(hours=hours)
        session.updated_at = now
        await self.schedule_expiry(db, session, now)
        store.audit.record(
            db,
            now,
            "session.extended",
            session_id=session.id,
            actor=actor,
            expires_at=session.expires_at.isoformat(),
        )

    async def begin_close(
        self, db: Transaction, session: SecureSession, reason: str, actor: str, now: datetime
    ) -> bool:
        """Move a live session to closing and schedule the room's closing; False if it was not
        live (already closing or closed: nothing to do). Keeps the loaded object in step."""
        session_id = session.id
        if not await run_in(
            db, lambda batch: self.begin_close_in(batch, session_id, reason, actor, now)
        ):
            return False
        session.state = SessionState.CLOSING.value
        session.updated_at = now
        session.close_reason = reason
        log.info("session.closing", session_id=session_id, reason=reason)
        return True

    def begin_close_in(
        self, db: Batch, session_id: str, reason: str, actor: str, now: datetime
    ) -> bool:
        """`begin_close` in a batch (the close webhook's path; logs nothing)."""
        sources = _sources(SessionState.CLOSING)
        if not db.move(
            session_id, SessionState.CLOSING.value, now, from_states=sources, close_reason=reason
        ):
            return False
        db.revoke_unused_invites(session_id, now)
        schedule_in(
            db,
            Action.CLOSE_ROOM,
            now,
            session_id=session_id,
            params={"reason": reason},
            dedupe_key=f"close:{session_id}",
        )
        db.audit(now, "session.closing", session_id=session_id, actor=actor, reason=reason)
        return True

    async def close(self, session_id: str, reason: str, actor: str) -> None:
        """Close a session from outside the webhook path (agent, expiry, admin).

        Raises:
            SessionClosed: the session is not live any more.
        """
        now = self.clock()
        async with self.database.transaction() as db:
            session = await store.sessions.get(db, session_id)
            if session is None or not is_live(session):
                raise SessionClosed()
            await self.begin_close(db, session, reason, actor, now)
        self.wake_jobs()

    async def opened(self, db: Transaction, session: SecureSession, now: datetime) -> None:
        """The room exists: a pending session becomes open (a closing one stays closing)."""
        if session.state == SessionState.PENDING and await self._move(
            db, session, SessionState.OPEN, now
        ):
            # The idle clock starts with the room.
            session.last_activity_at = now
            timeout = self.settings.idle_timeout
            if timeout is not None:
                next_check = self._next_idle_check(now + timeout, now)
                await self._schedule_idle_check(db, session.id, now, next_check)
            await schedule_milestone(
                db, self.settings.ticket_updates, session, Milestone.ROOM_READY, now
            )

    async def closed(self, db: Transaction, session: SecureSession, now: datetime) -> None:
        if await self._move(db, session, SessionState.CLOSED, now):
            await schedule_milestone(
                db, self.settings.ticket_updates, session, Milestone.SESSION_CLOSED, now
            )

    async def expire_if_due(self, session_id: str | None) -> None:
        """Close a live session whose time ran out; an earlier expiry job of an extended
        session finds it not yet due and does nothing."""
        session = await self.load(session_id)
        if not is_live(session) or session.expires_at > self.clock():
            return
        try:
            await self.close(session.id, "expired", "sealroom")
        except SessionClosed:
            return

    def idle_deadline(self, session: SecureSession) -> datetime | None:
        """When the session closes for want of messages; None when the idle timeout is off."""
        if self.settings.idle_timeout is None:
            return None
        return (session.last_activity_at or session.created_at) + self.settings.idle_timeout

    async def check_idle(self, session_id: str | None) -> None:
        """Close an open session whose room was quiet for `idle_timeout`; warn the room
        `expiry_warning` before; otherwise look again when the warning or the deadline is due.

        Each check schedules the next one, so one chain of checks runs per session; a message
        in the room moves the deadline, and the check that comes finds it not yet due.
        """
        session = await self.load(session_id)
        deadline = self.idle_deadline(session)
        if deadline is None or session.state != SessionState.OPEN:
            return
        now = self.clock()
        if deadline <= now:
            try:
                await self.close(session.id, "idle", "sealroom")
            except SessionClosed:
                pass
            return
        next_check = self._next_idle_check(deadline, now)
        async with self.database.transaction() as db:
            if next_check == deadline and self.settings.expiry_warning:
                await schedule(
                    db,
                    Action.NOTICE,
                    now,
                    session_id=session.id,
                    params={"kind": "idle_warning", "idle_until": deadline.isoformat()},
                    dedupe_key=f"idle-warning:{session.id}:{deadline.isoformat()}",
                )
            await self._schedule_idle_check(db, session.id, now, next_check)
        self.wake_jobs()

    def _next_idle_check(self, deadline: datetime, now: datetime) -> datetime:
        """When the room is to be warned, while that is ahead; else the deadline itself."""
        warning = self.settings.expiry_warning
        if warning and deadline - warning > now:
            return deadline - warning
        return deadline

    async def _schedule_idle_check(
        self, db: Transaction, session_id: str, now: datetime, at: datetime
    ) -> None:
        await schedule(
            db,
            Action.IDLE_CHECK,
            now,
            session_id=session_id,
            run_after=at,
            dedupe_key=f"idle:{session_id}:{at.isoformat()}",
        )

    async def schedule_purge(self, session_id: str, actor: str) -> None:
        """Purge a closed session's room from the homeserver (`sessions wipe`): a durable
        job for the running service; asking again while one is on its way adds none."""
        now = self.clock()
        async with self.database.transaction() as db:
            if await outstanding(db, session_id, Action.PURGE_ROOM, now):
                return
            await schedule(
                db, Action.PURGE_ROOM, now, session_id=session_id, params={"actor": actor}
            )
            store.audit.record(db, now, "room.purge_requested", session_id=session_id, actor=actor)
        self.wake_jobs()

    async def schedule_expiry(
        self, db: Transaction, session: SecureSession, now: datetime
    ) -> None:
        """`schedule_expiry_in` inside an ORM transaction."""
        session_id, expires_at = session.id, session.expires_at
        await run_in(db, lambda batch: self.schedule_expiry_in(batch, session_id, expires_at, now))

    def schedule_expiry_in(
        self, db: Batch, session_id: str, expires_at: datetime, now: datetime
    ) -> None:
        """One expiry job (and warning) per deadline: an extension adds later ones, and the
        earlier ones find the session not yet due and do nothing."""
        warning_at = expires_at - self.settings.expiry_warning
        if self.settings.expiry_warning and warning_at > now:
            schedule_in(
                db,
                Action.NOTICE,
                now,
                session_id=session_id,
                params={"kind": "expiry_warning", "expires_at": expires_at.isoformat()},
                run_after=warning_at,
                dedupe_key=f"expiry-warning:{session_id}:{expires_at.isoformat()}",
            )
        schedule_in(
            db,
            Action.EXPIRE,
            now,
            session_id=session_id,
            run_after=expires_at,
            dedupe_key=f"expire:{session_id}:{expires_at.isoformat()}",
        )

    async def _move(
        self,
        db: Transaction,
        session: SecureSession,
        to: SessionState,
        now: datetime,
        *,
        close_reason: str | None = None,
    ) -> bool:
        """Move atomically from any state allowed to reach `to`; False when the session was in
        none of them (a concurrent move won). Keeps the loaded object in step."""
        sources = _sources(to)
        moved = await store.sessions.set_state(
            db, session.id, to.value, now, from_states=sources, close_reason=close_reason
        )
        if moved:
            session.state = to.value
            session.updated_at = now
            if close_reason is not None:
                session.close_reason = close_reason
        return moved
