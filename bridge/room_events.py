"""What happens in a session's room: joins, the agent's commands, the trust policy's findings.

Called by the Matrix adapter with plain data. Message bodies are never logged or stored: only a
parsed command is kept. Each Matrix event is acted on once (the ledger), even when a restart
replays the timeline.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

import store.audit
import store.identities
import store.sessions
from bridge import notices
from bridge.errors import MatrixIdInvalid
from bridge.ids import UserID, parse_user_id
from bridge.jobs import Action, first_time, schedule, welcomed_key
from bridge.room_jobs import schedule_notice
from bridge.sessions import SessionService, SessionState
from bridge.ticket_notes import Milestone, schedule_milestone
from bridge.welcome import release_welcome, schedule_welcome
from store import SecureSession, Transaction

log = structlog.stdlib.get_logger(__name__)

# A room's last activity is written at most this often (the idle timeout is counted in hours).
ACTIVITY_INTERVAL = timedelta(minutes=1)
ACTIVITY_ROOMS_REMEMBERED = 10_000
MIN_EXTEND_HOURS = 1 / 60
MAX_EXTEND_HOURS = 24.0 * 30
DEFAULT_EXTEND_HOURS = 24.0


# -- the agent's commands, parsed into typed calls ----------------------------------------------


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Extend:
    hours: float


@dataclass(frozen=True)
class Trust:
    user_id: UserID


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Link:
    pass


@dataclass(frozen=True)
class Usage:
    """A known command with bad arguments: answer with how to use it, never crash."""

    problem: str


Command = Close | Extend | Trust | Help | Status | Link | Usage

COMMAND_WORDS = ("!close", "!extend", "!trust", "!help", "!status", "!link")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([hd]?)", re.IGNORECASE)


def parse_command(body: str) -> Command | None:
    """The command in a message, or None when it is not one of ours (then it is ignored)."""
    words = body.strip().split()
    if not words or words[0].lower() not in COMMAND_WORDS:
        return None
    word, args = words[0].lower(), words[1:]
    if word == "!close":
        return Close()
    if word == "!help":
        return Help()
    if word == "!status":
        return Status()
    if word == "!link":
        return Link()
    if word == "!extend":
        return _parse_extend(args)
    if len(args) != 1:
        return Usage("!trust needs the Matrix ID whose new identity you accept.")
    try:
        return Trust(parse_user_id(args[0]))
    except MatrixIdInvalid:
        return Usage("!trust needs a Matrix ID such as @name:example.org.")


def _parse_extend(args: list[str]) -> Extend | Usage:
    if not args:
        return Extend(DEFAULT_EXTEND_HOURS)
    match = _DURATION.fullmatch(" ".join(args))
    if match is None:
        return Usage("!extend takes a duration such as 2h, 3d or 12 (hours).")
    hours = float(match.group(1)) * (24 if match.group(2).lower() == "d" else 1)
    if not math.isfinite(hours) or hours < MIN_EXTEND_HOURS or hours > MAX_EXTEND_HOURS:
        return Usage(f"!extend takes between a minute and {MAX_EXTEND_HOURS / 24:.0f} days.")
    return Extend(hours)


# -- the trust policy's findings ------------------------------------------------------------------


@dataclass(frozen=True)
class ExcludedDevice:
    user_id: str
    device_id: str
    reason: str


@dataclass(frozen=True)
class IdentityChange:
    user_id: str
    old_master_key: str
    new_master_key: str


@dataclass(frozen=True)
class TrustFindings:
    """What the Matrix adapter found while deciding whom to encrypt for in one room."""

    room_id: str
    new_pins: dict[str, str] = field(default_factory=dict)
    excluded: list[ExcludedDevice] = field(default_factory=list)
    identity_changes: list[IdentityChange] = field(default_factory=list)


async def _always() -> bool:
    return True


class RoomEventService:
    def __init__(self, sessions: SessionService, bot_user_id: str) -> None:
        self.sessions = sessions
        self.bot_user_id = bot_user_id
        self.database = sessions.database
        self.clock = sessions.clock
        # room -> when its activity was last written (bounded: cleared when full).
        self._activity_written: dict[str, datetime] = {}

    async def _first_time_in_open_room(
        self, db: Transaction, room_id: str, key: str, now: datetime
    ) -> SecureSession | None:
        """The room's open session, when the event `key` names was not handled before (a
        restart replays the timeline); None otherwise."""
        session = await store.sessions.get_by_room(db, room_id)
        if session is None or session.state != SessionState.OPEN:
            return None
        if not await first_time(db, key, now, session.id):
            return None
        return session

    async def member_joined(self, room_id: str, user_id: str, event_id: str) -> None:
        """Post the rules when the customer (anyone but the bot and the agent) joins."""
        if user_id == self.bot_user_id:
            return
        now = self.clock()
        async with self.database.transaction() as db:
            session = await self._first_time_in_open_room(db, room_id, f"joined:{event_id}", now)
            if session is None:
                return
            # The customer gets the rules; the agent what to do next; once their client knows
            # the bot's device (bridge.welcome).
            is_agent = user_id == session.agent_user_id
            await schedule_welcome(
                db,
                self.sessions.settings,
                session.id,
                user_id,
                "agent_welcome" if is_agent else "rules",
                now,
            )
            if not is_agent:
                await schedule_milestone(
                    db,
                    self.sessions.settings.ticket_updates,
                    session,
                    Milestone.CUSTOMER_JOINED,
                    now,
                    once_per=hashlib.sha256(user_id.encode()).hexdigest()[:16],
                )
            if not self.sessions.settings.bot_stays:
                # Zero-knowledge mode: the bot leaves once both are in and welcomed
                # (bridge.room_jobs.depart).
                await first_time(db, welcomed_key(session.id, user_id), now, session.id)
                await schedule(db, Action.DEPART, now, session_id=session.id)
            store.audit.record(db, now, "member.joined", session_id=session.id, actor=user_id)
            log.info("member.joined", session_id=session.id, room_id=room_id, agent=is_agent)
        self.sessions.wake_jobs()

    async def message_seen(self, room_id: str, sender: str) -> None:
        """Someone other than the bot sent something into a room: its idle clock restarts.

        Written at most once per `ACTIVITY_INTERVAL` per room (remembered here, and checked
        again by the UPDATE itself): a busy room costs one small write a minute, not one per
        message.
        """
        if sender == self.bot_user_id or self.sessions.settings.idle_timeout is None:
            return
        now = self.clock()
        last = self._activity_written.get(room_id)
        if last is not None and now - last < ACTIVITY_INTERVAL:
            return
        if len(self._activity_written) >= ACTIVITY_ROOMS_REMEMBERED:
            self._activity_written.clear()
        self._activity_written[room_id] = now
        async with self.database.transaction() as db:
            await store.sessions.note_activity(
                db, room_id, now, unless_after=now - ACTIVITY_INTERVAL
            )

    async def member_spoke(self, room_id: str, user_id: str) -> None:
        """A member's message reached the bot: in these encrypted rooms their client encrypted it
        for the bot's device, so it knows that device, and a first notice waiting for that
        (bridge.welcome) may go now."""
        if user_id == self.bot_user_id:
            return
        async with self.database.transaction() as db:
            session = await store.sessions.get_by_room(db, room_id)
            if session is None or session.state != SessionState.OPEN:
                return
            released = await release_welcome(db, session.id, user_id, self.clock())
        if released:
            self.sessions.wake_jobs()

    async def member_left(self, room_id: str, user_id: str, event_id: str) -> None:
        """The agent is told when the customer (or anyone but the agent and the bot) leaves."""
        if user_id == self.bot_user_id:
            return
        now = self.clock()
        async with self.database.transaction() as db:
            session = await self._first_time_in_open_room(db, room_id, f"left:{event_id}", now)
            if session is None or user_id == session.agent_user_id:
                return
            await schedule_notice(
                db, session.id, now, notices.customer_left(user_id, lang=self._lang(session))
            )
            store.audit.record(db, now, "member.left", session_id=session.id, actor=user_id)
        self.sessions.wake_jobs()

    async def agent_command(
        self,
        room_id: str,
        sender: str,
        body: str,
        event_id: str,
        *,
        device_trusted: Callable[[], Awaitable[bool]] = _always,
    ) -> None:
        """Obey the session's agent; anyone else, and anything not a command, is ignored.

        `device_trusted` says whether the trust policy trusts the device the command came from
        (asked only for the agent's commands: it may query the homeserver); if not, the command
        is refused with a notice.
        """
        command = parse_command(body)
        if command is None or sender == self.bot_user_id:
            return
        now = self.clock()
        async with self.database.transaction() as db:
            session = await self._first_time_in_open_room(db, room_id, f"command:{event_id}", now)
            if session is None:
                return
            if sender != session.agent_user_id:
                # Told, so a customer who tries !close knows nothing happened.
                word = body.strip().split()[0].lower()
                await schedule_notice(
                    db, session.id, now, notices.command_not_yours(word, lang=self._lang(session))
                )
                store.audit.record(db, now, "command.refused", session_id=session.id, actor=sender)
            elif not await device_trusted():
                await schedule_notice(
                    db, session.id, now, notices.command_untrusted_device(lang=self._lang(session))
                )
                store.audit.record(db, now, "command.refused", session_id=session.id, actor=sender)
            else:
                await self._obey(db, session, command, sender)
        self.sessions.wake_jobs()

    async def _obey(
        self, db: Transaction, session: SecureSession, command: Command, sender: str
    ) -> None:
        now = self.clock()
        match command:
            case Close():
                await self.sessions.begin_close(db, session, "agent", sender, now)
            case Extend(hours):
                await self.sessions.extend(db, session, hours, sender, now)
                await schedule_notice(
                    db,
                    session.id,
                    now,
                    notices.extended(session.expires_at, lang=self._lang(session)),
                )
            case Trust(user_id):
                if await store.identities.accept_change(db, user_id, now):
                    await schedule_notice(
                        db,
                        session.id,
                        now,
                        notices.identity_accepted(user_id, lang=self._lang(session)),
                    )
                    store.audit.record(
                        db,
                        now,
                        "identity.accepted",
                        session_id=session.id,
                        actor=sender,
                        user_id=user_id,
                    )
            case Help():
                await schedule_notice(
                    db, session.id, now, notices.agent_help(lang=self._lang(session))
                )
            case Status() | Link():
                # Both are written when sent: the members then, and a link that is never stored.
                kind = "status" if isinstance(command, Status) else "link"
                await schedule(
                    db, Action.NOTICE, now, session_id=session.id, params={"kind": kind}
                )
            case Usage(problem):
                await schedule_notice(
                    db, session.id, now, notices.command_usage(problem, lang=self._lang(session))
                )

    def _lang(self, session: SecureSession) -> str:
        """The language of this session's notices: its integration's."""
        return self.sessions.settings.notice_language(session.integration)

    async def pinned_identities(self, user_ids: list[str]) -> dict[str, str]:
        async with self.database.transaction() as db:
            return await store.identities.pins(db, user_ids)

    async def trust_report(self, findings: TrustFindings) -> None:
        """Pin first-seen identities; warn the room and audit each exclusion once."""
        now = self.clock()
        room_id = findings.room_id
        async with self.database.transaction() as db:
            for user_id, master in findings.new_pins.items():
                if await store.identities.pin(db, user_id, master, now):
                    store.audit.record(
                        db, now, "identity.pinned", user_id=user_id, master_key=master
                    )
            session = await store.sessions.get_by_room(db, room_id)
            if session is None or session.state != SessionState.OPEN:
                return
            changed = {change.user_id for change in findings.identity_changes}
            for change in findings.identity_changes:
                await store.identities.note_change(db, change.user_id, change.new_master_key, now)
                if await schedule_notice(
                    db,
                    session.id,
                    now,
                    notices.identity_changed(change.user_id, lang=self._lang(session)),
                    dedupe_key=f"identity:{room_id}:{change.user_id}:{change.new_master_key}",
                ):
                    store.audit.record(
                        db,
                        now,
                        "identity.changed",
                        session_id=session.id,
                        user_id=change.user_id,
                        master_key=change.new_master_key,
                    )
                    log.warning("identity.changed", session_id=session.id, room_id=room_id)
            for device in findings.excluded:
                if device.user_id in changed:
                    continue
                if await schedule_notice(
                    db,
                    session.id,
                    now,
                    notices.device_excluded(
                        device.user_id, device.device_id, device.reason, lang=self._lang(session)
                    ),
                    dedupe_key=(
                        f"excluded:{room_id}:{device.user_id}:{device.device_id}:{device.reason}"
                    ),
                ):
                    store.audit.record(
                        db,
                        now,
                        "device.excluded",
                        session_id=session.id,
                        user_id=device.user_id,
                        device_id=device.device_id,
                        reason=device.reason,
                    )
                    log.warning(
                        "device.excluded",
                        session_id=session.id,
                        room_id=room_id,
                        reason=device.reason,
                    )
        self.sessions.wake_jobs()
