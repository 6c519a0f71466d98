"""The domain: open, redeem, join, extend, close and expire a secure session.

Knows neither HTTP nor nio: the web and Matrix adapters call in, and everything that touches the
homeserver happens in durable jobs (see `bridge.jobs`) carried out through the `MatrixRooms` port.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import store.audit
import store.deliveries
import store.identities
import store.invites
import store.jobs
import store.sessions
from bridge import invites, notices
from bridge.errors import (
    InviteGone,
    MatrixRequestFailed,
    RegistrationDisabled,
    RegistrationNotVerified,
    SealroomError,
    SessionClosed,
    TicketUnknown,
    TooManyAttempts,
)
from bridge.ids import RoomID, UserID, parse_user_id
from bridge.jobs import RetryLater
from bridge.ports import MatrixRooms, RegistrationTokens, RoomSpec
from store import Database, Invite, SecureSession, WebhookDelivery

log = structlog.stdlib.get_logger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


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


@dataclass(frozen=True)
class Delivery:
    """One inbound webhook delivery, identified for idempotency."""

    integration: str
    webhook_id: str


@dataclass(frozen=True)
class OpenRequest:
    ticket_ref: str
    subject: str
    agent: str


@dataclass(frozen=True)
class WebhookOutcome:
    """What to answer a delivery. `invite_token` is set only on the first answer of an open."""

    status: int
    body: dict[str, Any]
    invite_token: str | None = None
    replayed: bool = False


@dataclass(frozen=True)
class InviteView:
    """What the landing page may show to whoever holds a valid link."""

    ticket_ref: str
    subject: str
    expires_at: datetime


@dataclass(frozen=True)
class RegistrationStart:
    """A single-use registration token, for the customer's browser only (stored as a hash)."""

    registration_token: str
    expires_at: datetime


MAX_REGISTRATION_ATTEMPTS = 5
# Clock skew allowed between sealroom and the homeserver when checking an account's creation time.
CLOCK_SKEW = timedelta(minutes=2)


@dataclass(frozen=True)
class Redeemed:
    session_id: str
    user_id: UserID
    room_alias: str
    room_id: RoomID | None


def room_alias_localpart(session_id: str) -> str:
    """Deterministic per session, so a retried createRoom finds the room instead of a twin."""
    return f"sealroom-{session_id}"


class SessionService:
    """The secure-session state machine: pending -> open -> closing -> closed."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        rooms: MatrixRooms,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_job_added: Callable[[], None] = lambda: None,
        registration_tokens: RegistrationTokens | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.rooms = rooms
        self.registration_tokens = registration_tokens
        self.clock = clock
        self._wake_jobs = on_job_added

    # -- webhooks ------------------------------------------------------------------------------

    async def open(self, delivery: Delivery, request: OpenRequest) -> WebhookOutcome:
        """Record the session, its invite and the room job durably; a replay does nothing."""
        for _ in range(3):
            try:
                outcome = await self._open_once(delivery, request)
            except IntegrityError:
                # A concurrent twin (same delivery, or same ticket) won the race: run again and
                # take the replay or reuse path.
                continue
            self._wake_jobs()
            return outcome
        raise RuntimeError("could not record the webhook after concurrent retries")

    async def _open_once(self, delivery: Delivery, request: OpenRequest) -> WebhookOutcome:
        now = self.clock()
        async with self.database.transaction() as db:
            replay = await self._replay(db, delivery)
            if replay is not None:
                return replay
            session = await store.sessions.get_live_by_ticket(
                db, delivery.integration, request.ticket_ref
            )
            reused = session is not None
            if session is not None and session.state == "closing":
                raise SessionClosed(
                    f"The secure session for ticket {request.ticket_ref!r} is still being "
                    "closed; send the webhook again in a minute."
                )
            if session is None:
                session = self._new_session(delivery.integration, request, now)
                db.add(session)
                await db.flush()
                await store.jobs.add(db, "create_room", now, session_id=session.id)
                await _schedule_expiry(db, session, now)
                store.audit.record(
                    db,
                    now,
                    "session.opened",
                    session_id=session.id,
                    actor=request.agent,
                    ticket_ref=request.ticket_ref,
                    integration=delivery.integration,
                )
            else:
                revoked = await store.invites.revoke_unused(db, session.id, now)
                store.audit.record(
                    db,
                    now,
                    "invite.reissued",
                    session_id=session.id,
                    actor=request.agent,
                    revoked=revoked,
                )
            token = invites.mint_token()
            invite_expires = min(now + self.settings.invite_lifetime, session.expires_at)
            db.add(
                Invite(
                    session_id=session.id,
                    token_hash=invites.hash_token(token),
                    created_at=now,
                    expires_at=invite_expires,
                )
            )
            status = 200 if reused else 201
            body = {
                "session_id": session.id,
                "expires_at": invite_expires.isoformat(),
                "session_expires_at": session.expires_at.isoformat(),
                "state": session.state,
            }
            self._record_delivery(db, delivery, now, status, body)
        log.info(
            "session.reused" if reused else "session.opened",
            session_id=session.id,
            ticket_ref=request.ticket_ref,
            integration=delivery.integration,
        )
        return WebhookOutcome(status=status, body=body, invite_token=token)

    def _new_session(self, integration: str, request: OpenRequest, now: datetime) -> SecureSession:
        session_id = str(uuid.uuid4())
        return SecureSession(
            id=session_id,
            integration=integration,
            ticket_ref=request.ticket_ref,
            subject=request.subject,
            agent_ref=request.agent,
            agent_user_id=self.settings.agents.get(request.agent.strip().lower()),
            room_alias=f"#{room_alias_localpart(session_id)}:{self.settings.server_name}",
            state="pending",
            created_at=now,
            updated_at=now,
            expires_at=now + self.settings.session_lifetime,
        )

    async def close_ticket(self, delivery: Delivery, ticket_ref: str) -> WebhookOutcome:
        """The helpdesk says the ticket is done: close its live session, if any.

        Raises:
            TicketUnknown: no live session for this ticket (nothing is recorded, so the
                helpdesk may retry).
        """
        now = self.clock()
        try:
            async with self.database.transaction() as db:
                replay = await self._replay(db, delivery)
                if replay is not None:
                    return replay
                session = await store.sessions.get_live_by_ticket(
                    db, delivery.integration, ticket_ref
                )
                if session is None:
                    raise TicketUnknown(
                        f"There is no open secure session for ticket {ticket_ref!r}."
                    )
                await self._begin_close(db, session, "helpdesk", "helpdesk", now)
                body = {"session_id": session.id, "state": "closing"}
                self._record_delivery(db, delivery, now, 202, body)
        except IntegrityError:
            async with self.database.transaction() as db:
                replay = await self._replay(db, delivery)
            if replay is None:
                raise
            return replay
        self._wake_jobs()
        return WebhookOutcome(status=202, body=body)

    async def _replay(self, db: AsyncSession, delivery: Delivery) -> WebhookOutcome | None:
        seen = await store.deliveries.get(db, delivery.integration, delivery.webhook_id)
        if seen is None:
            return None
        log.info(
            "webhook.replayed", integration=delivery.integration, webhook_id=delivery.webhook_id
        )
        return WebhookOutcome(status=seen.status, body=dict(seen.response), replayed=True)

    @staticmethod
    def _record_delivery(
        db: AsyncSession, delivery: Delivery, now: datetime, status: int, body: dict[str, Any]
    ) -> None:
        db.add(
            WebhookDelivery(
                integration=delivery.integration,
                webhook_id=delivery.webhook_id,
                received_at=now,
                status=status,
                response=body,
            )
        )

    # -- the invite link -----------------------------------------------------------------------

    async def _valid_invite(self, db: AsyncSession, token: str) -> tuple[Invite, SecureSession]:
        """Raises InviteGone for unknown, used, revoked and expired alike."""
        if not invites.looks_like_token(token):
            raise InviteGone()
        invite = await store.invites.get_by_hash(db, invites.hash_token(token))
        now = self.clock()
        if (
            invite is None
            or not invites.token_matches(token, invite.token_hash)
            or invite.used_at is not None
            or invite.revoked_at is not None
            or invite.expires_at <= now
        ):
            raise InviteGone()
        session = await store.sessions.get(db, invite.session_id)
        if session is None or session.state not in ("pending", "open"):
            raise InviteGone()
        return invite, session

    async def view_invite(self, token: str) -> InviteView:
        """Look without using: link scanners and reloads must never spend an invite."""
        async with self.database.transaction() as db:
            invite, session = await self._valid_invite(db, token)
        return InviteView(session.ticket_ref, session.subject, invite.expires_at)

    async def redeem(self, token: str, user_id_text: str) -> Redeemed:
        """Spend the invite for `user_id_text` and have the bot invite that account.

        Raises:
            MatrixIdInvalid: before anything is spent.
            InviteGone: unknown, used, revoked or expired link.
        """
        return await self._consume(token, parse_user_id(user_id_text), "invite.redeemed")

    async def _consume(self, token: str, user_id: UserID, action: str) -> Redeemed:
        """Spend the invite for `user_id` and schedule the bot's invitation, atomically."""
        now = self.clock()
        async with self.database.transaction() as db:
            invite, session = await self._valid_invite(db, token)
            if not await store.invites.consume(db, invite.id, user_id, now):
                raise InviteGone()
            session.customer_user_id = user_id
            session.updated_at = now
            await store.jobs.add(
                db,
                "invite",
                now,
                session_id=session.id,
                params={"user_id": user_id},
                dedupe_key=f"invite:{invite.id}",
            )
            store.audit.record(db, now, action, session_id=session.id, actor=user_id)
            result = Redeemed(
                session_id=session.id,
                user_id=user_id,
                room_alias=session.room_alias,
                room_id=RoomID(session.room_id) if session.room_id else None,
            )
        log.info(action, session_id=session.id, ticket_ref=session.ticket_ref)
        self._wake_jobs()
        return result

    # -- a new account, made in the customer's browser -----------------------------------------

    def _tokens(self) -> RegistrationTokens:
        if not self.settings.registration_enabled or self.registration_tokens is None:
            raise RegistrationDisabled()
        return self.registration_tokens

    async def start_registration(self, token: str) -> RegistrationStart:
        """Mint a single-use registration token for this invite (the invite is not spent yet).

        Raises:
            RegistrationDisabled, InviteGone, TooManyAttempts, HomeserverUnavailable.
        """
        tokens = self._tokens()
        now = self.clock()
        async with self.database.transaction() as db:
            invite, _ = await self._valid_invite(db, token)
            if invite.registration_attempts >= MAX_REGISTRATION_ATTEMPTS:
                raise TooManyAttempts()
            expires_at = min(now + self.settings.registration_token_lifetime, invite.expires_at)
        registration_token = await tokens.mint(expires_at)
        async with self.database.transaction() as db:
            invite, session = await self._valid_invite(db, token)
            invite.registration_token_hash = invites.hash_token(registration_token)
            invite.registration_started_at = now
            invite.registration_attempts += 1
            store.audit.record(db, now, "registration.started", session_id=session.id)
        log.info("registration.started", session_id=session.id)
        return RegistrationStart(registration_token, expires_at)

    async def _registration(
        self, token: str, registration_token: str
    ) -> tuple[int, str, datetime]:
        """(invite id, session id, minted at) when `registration_token` is this invite's.

        Raises:
            InviteGone, RegistrationNotVerified.
        """
        async with self.database.transaction() as db:
            invite, session = await self._valid_invite(db, token)
            stored = invite.registration_token_hash
            started_at = invite.registration_started_at
        if (
            stored is None
            or started_at is None
            or not invites.token_matches(registration_token, stored)
        ):
            raise RegistrationNotVerified()
        return invite.id, session.id, started_at

    async def _check_account(
        self, registration_token: str, user_id: UserID, started_at: datetime
    ) -> None:
        """The homeserver confirms the token made one account and `user_id` is new since then.

        Raises:
            RegistrationNotVerified: another server, an unused token, or an older account.
        """
        tokens = self._tokens()
        if not user_id.endswith(f":{self.settings.server_name}"):
            raise RegistrationNotVerified()
        completed = await tokens.completed(registration_token)
        created_at = await tokens.user_created_at(user_id)
        if completed != 1 or created_at is None or created_at < started_at - CLOCK_SKEW:
            raise RegistrationNotVerified()

    async def finish_registration(
        self, token: str, user_id_text: str, registration_token: str
    ) -> Redeemed:
        """The page made `user_id` with our token: check that with the homeserver, then invite.

        Raises:
            RegistrationNotVerified: another token, another server, or no such new account.
        """
        tokens = self._tokens()
        user_id = parse_user_id(user_id_text)
        _, _, started_at = await self._registration(token, registration_token)
        await self._check_account(registration_token, user_id, started_at)
        result = await self._consume(token, user_id, "registration.finished")
        try:
            await tokens.revoke(registration_token)  # used up already; tidy the homeserver
        except SealroomError as err:
            log.warning("registration.token_not_revoked", errcode=err.errcode)
        return result

    async def abandon_registration(
        self, token: str, registration_token: str, user_id_text: str | None
    ) -> None:
        """The page is left before the end: revoke the unused token, or tell the agent.

        With `user_id_text` the account was made (and checked to be ours) but its encryption
        set-up did not finish: the agent is told in the room, since only they can follow up.
        Without it, the registration token is revoked so it cannot make an account later.
        """
        tokens = self._tokens()
        now = self.clock()
        invite_id, session_id, started_at = await self._registration(token, registration_token)
        if user_id_text is None:
            await tokens.revoke(registration_token)
            async with self.database.transaction() as db:
                invite, _ = await self._valid_invite(db, token)
                invite.registration_token_hash = None
                store.audit.record(db, now, "registration.abandoned", session_id=session_id)
            log.info("registration.abandoned", session_id=session_id)
            return
        user_id = parse_user_id(user_id_text)
        await self._check_account(registration_token, user_id, started_at)
        async with self.database.transaction() as db:
            session = await store.sessions.get(db, session_id)
            if session is not None:
                await self._notice(
                    db,
                    session,
                    now,
                    notices.registration_incomplete(user_id),
                    dedupe_key=f"registration-incomplete:{invite_id}",
                )
            store.audit.record(
                db, now, "registration.incomplete", session_id=session_id, actor=user_id
            )
        log.warning("registration.incomplete", session_id=session_id)
        self._wake_jobs()

    # -- events from the room ------------------------------------------------------------------

    async def member_joined(self, room_id: str, user_id: str, event_id: str) -> None:
        """Post the rules when the customer (anyone but the bot and the agent) joins."""
        if user_id == self.rooms.bot_user_id:
            return
        now = self.clock()
        async with self.database.transaction() as db:
            session = await store.sessions.get_by_room(db, room_id)
            if session is None or session.state != "open":
                return
            # The agent knows the rules; the notice is for the customer. The event id keeps a
            # replayed timeline (after a restart) from welcoming anyone twice.
            is_agent = user_id == session.agent_user_id
            added = await store.jobs.add(
                db,
                "noop" if is_agent else "notice",
                now,
                session_id=session.id,
                params={} if is_agent else {"kind": "rules", "user_id": user_id},
                dedupe_key=f"joined:{event_id}",
            )
            if added:
                store.audit.record(db, now, "member.joined", session_id=session.id, actor=user_id)
                log.info("member.joined", session_id=session.id, room_id=room_id, agent=is_agent)
        self._wake_jobs()

    async def agent_command(self, room_id: str, sender: str, body: str, event_id: str) -> None:
        """`!close` and `!extend [hours]` from the session's agent; anything else is ignored.

        Never logs or stores `body`: only the command word is kept.
        """
        words = body.strip().split()
        if not words or words[0] not in ("!close", "!extend", "!help", "!trust"):
            return
        now = self.clock()
        async with self.database.transaction() as db:
            session = await store.sessions.get_by_room(db, room_id)
            if session is None or session.state != "open" or sender != session.agent_user_id:
                return
            first_time = await store.jobs.add(
                db, "noop", now, session_id=session.id, dedupe_key=f"command:{event_id}"
            )
            if not first_time:
                return
            command = words[0]
            if command == "!close":
                await self._begin_close(db, session, "agent", sender, now)
            elif command == "!extend":
                hours = _parse_hours(words[1:])
                session.expires_at = max(session.expires_at, now) + timedelta(hours=hours)
                session.updated_at = now
                await _schedule_expiry(db, session, now)
                await self._notice(db, session, now, notices.extended(session.expires_at))
                store.audit.record(
                    db,
                    now,
                    "session.extended",
                    session_id=session.id,
                    actor=sender,
                    expires_at=session.expires_at.isoformat(),
                )
            elif command == "!trust" and len(words) > 1:
                user_id = words[1]
                if await store.identities.accept_change(db, user_id, now):
                    await self._notice(db, session, now, notices.identity_accepted(user_id))
                    store.audit.record(
                        db,
                        now,
                        "identity.accepted",
                        session_id=session.id,
                        actor=sender,
                        user_id=user_id,
                    )
            else:
                await self._notice(db, session, now, notices.agent_help())
        self._wake_jobs()

    async def _notice(
        self,
        db: AsyncSession,
        session: SecureSession,
        now: datetime,
        text: str,
        dedupe_key: str | None = None,
    ) -> bool:
        return await store.jobs.add(
            db,
            "notice",
            now,
            session_id=session.id,
            params={"kind": "text", "text": text},
            dedupe_key=dedupe_key,
        )

    # -- the trust policy's findings (from the Matrix adapter, as plain data) ------------------

    async def pinned_identities(self, user_ids: list[str]) -> dict[str, str]:
        async with self.database.transaction() as db:
            return await store.identities.pins(db, user_ids)

    async def trust_report(
        self,
        room_id: str,
        new_pins: dict[str, str],
        excluded: list[tuple[str, str, str]],
        identity_changes: dict[str, tuple[str, str]],
    ) -> None:
        """Pin first-seen identities; warn the room and audit each exclusion once."""
        now = self.clock()
        async with self.database.transaction() as db:
            for user_id, master in new_pins.items():
                if await store.identities.pin(db, user_id, master, now):
                    store.audit.record(
                        db, now, "identity.pinned", user_id=user_id, master_key=master
                    )
            session = await store.sessions.get_by_room(db, room_id)
            if session is None or session.state != "open":
                return
            for user_id, (_, new_master) in identity_changes.items():
                await store.identities.note_change(db, user_id, new_master, now)
                if await self._notice(
                    db,
                    session,
                    now,
                    notices.identity_changed(user_id),
                    dedupe_key=f"identity:{room_id}:{user_id}:{new_master}",
                ):
                    store.audit.record(
                        db,
                        now,
                        "identity.changed",
                        session_id=session.id,
                        user_id=user_id,
                        master_key=new_master,
                    )
                    log.warning("identity.changed", session_id=session.id, room_id=room_id)
            for user_id, device_id, reason in excluded:
                if user_id in identity_changes:
                    continue
                if await self._notice(
                    db,
                    session,
                    now,
                    notices.device_excluded(user_id, device_id, reason),
                    dedupe_key=f"excluded:{room_id}:{user_id}:{device_id}:{reason}",
                ):
                    store.audit.record(
                        db,
                        now,
                        "device.excluded",
                        session_id=session.id,
                        user_id=user_id,
                        device_id=device_id,
                        reason=reason,
                    )
                    log.warning(
                        "device.excluded", session_id=session.id, room_id=room_id, reason=reason
                    )
        self._wake_jobs()

    # -- closing -------------------------------------------------------------------------------

    async def _begin_close(
        self, db: AsyncSession, session: SecureSession, reason: str, actor: str, now: datetime
    ) -> None:
        if not await store.sessions.set_state(
            db, session.id, "closing", now, from_states=("pending", "open"), close_reason=reason
        ):
            return
        await store.invites.revoke_unused(db, session.id, now)
        await store.jobs.add(
            db,
            "close_room",
            now,
            session_id=session.id,
            params={"reason": reason},
            dedupe_key=f"close:{session.id}",
        )
        store.audit.record(
            db, now, "session.closing", session_id=session.id, actor=actor, reason=reason
        )
        log.info("session.closing", session_id=session.id, reason=reason)

    async def close(self, session_id: str, reason: str, actor: str) -> None:
        """Close a session from outside the webhook path (agent, expiry, admin).

        Raises:
            SessionClosed: the session is not live any more.
        """
        now = self.clock()
        async with self.database.transaction() as db:
            session = await store.sessions.get(db, session_id)
            if session is None or session.state not in ("pending", "open"):
                raise SessionClosed()
            await self._begin_close(db, session, reason, actor, now)
        self._wake_jobs()

    # -- job actions (run by bridge.jobs.JobRunner; each is safe to run again) ------------------

    async def _load(self, session_id: str | None) -> SecureSession:
        async with self.database.transaction() as db:
            session = await store.sessions.get(db, session_id or "")
        if session is None:
            raise LookupError(f"secure session {session_id} is gone")
        return session

    async def run_create_room(self, session_id: str | None, params: dict[str, Any]) -> None:
        session = await self._load(session_id)
        if session.room_id is not None or session.state != "pending":
            return
        fields = {
            "ticket_ref": session.ticket_ref,
            "subject": session.subject,
            "integration": session.integration,
        }
        agent = UserID(session.agent_user_id) if session.agent_user_id else None
        room_id = await self.rooms.create_secure_room(
            RoomSpec(
                alias_localpart=room_alias_localpart(session.id),
                name=self.settings.name_template.format(**fields),
                topic=self.settings.topic_template.format(**fields),
                session_id=session.id,
                invite=(agent,) if agent else (),
                agent_user_id=agent,
                room_version=self.settings.room_version,
            )
        )
        now = self.clock()
        async with self.database.transaction() as db:
            fresh = await store.sessions.get(db, session.id)
            assert fresh is not None
            fresh.room_id = room_id
            fresh.updated_at = now
            if fresh.state == "pending":
                fresh.state = "open"
            store.audit.record(db, now, "room.created", session_id=session.id, room_id=room_id)
            # A customer who redeemed before the room existed should not wait for a backoff.
            await store.jobs.make_due(db, session.id, "invite", now)
        log.info(
            "room.created", session_id=session.id, room_id=room_id, ticket_ref=session.ticket_ref
        )
        self._wake_jobs()
        if agent is None:
            log.warning("session.no_agent_mapping", session_id=session.id, agent=session.agent_ref)

    async def run_invite(self, session_id: str | None, params: dict[str, Any]) -> None:
        session = await self._load(session_id)
        if session.state not in ("pending", "open"):
            return
        if session.room_id is None:
            raise RoomNotReady("the room is not created yet")
        user_id = parse_user_id(str(params["user_id"]))
        await self.rooms.invite(RoomID(session.room_id), user_id)
        async with self.database.transaction() as db:
            store.audit.record(
                db,
                self.clock(),
                "member.invited",
                session_id=session.id,
                actor=self.rooms.bot_user_id,
                user_id=user_id,
            )
        log.info("member.invited", session_id=session.id, room_id=session.room_id)

    async def run_notice(self, session_id: str | None, params: dict[str, Any]) -> None:
        session = await self._load(session_id)
        if session.state != "open" or session.room_id is None:
            return
        if params.get("kind") == "rules":
            text = notices.rules(session.ticket_ref, session.expires_at)
        else:
            text = str(params.get("text", ""))
        await self.rooms.send_notice(RoomID(session.room_id), text)
        log.info(
            "notice.sent", session_id=session.id, room_id=session.room_id, kind=params.get("kind")
        )

    async def run_close_room(self, session_id: str | None, params: dict[str, Any]) -> None:
        """Closing notice, remove every member, leave; each step tolerates "already done"."""
        session = await self._load(session_id)
        if session.state != "closing":
            return
        if session.room_id is not None:
            room_id = RoomID(session.room_id)
            try:
                await self.rooms.send_notice(room_id, notices.closing(str(params.get("reason"))))
            except MatrixRequestFailed as err:
                log.warning("notice.failed", session_id=session.id, errcode=err.matrix_errcode)
            for member in await self.rooms.members(room_id):
                if member != self.rooms.bot_user_id:
                    await self.rooms.kick(room_id, member, "The secure session is closed.")
            await self.rooms.leave(room_id)
        now = self.clock()
        async with self.database.transaction() as db:
            await store.sessions.set_state(db, session.id, "closed", now, from_states=("closing",))
            store.audit.record(
                db, now, "session.closed", session_id=session.id, reason=session.close_reason
            )
        log.info("session.closed", session_id=session.id, room_id=session.room_id)

    async def run_expire(self, session_id: str | None, params: dict[str, Any]) -> None:
        session = await self._load(session_id)
        if session.state not in ("pending", "open") or session.expires_at > self.clock():
            return
        try:
            await self.close(session.id, "expired", "sealroom")
        except SessionClosed:
            return

    async def run_noop(self, session_id: str | None, params: dict[str, Any]) -> None:
        """Marker jobs that only record that an event was handled."""


class RoomNotReady(RetryLater):
    """A step needs the room, which a job has not created yet: retry later."""


async def _schedule_expiry(db: AsyncSession, session: SecureSession, now: datetime) -> None:
    """One expiry job per deadline: an extension adds a later one, the earlier one finds the
    session not yet due and does nothing."""
    await store.jobs.add(
        db,
        "expire",
        now,
        session_id=session.id,
        run_after=session.expires_at,
        dedupe_key=f"expire:{session.id}:{session.expires_at.isoformat()}",
    )


def _parse_hours(args: list[str]) -> float:
    try:
        hours = float(args[0]) if args else 24.0
    except ValueError:
        hours = 24.0
    return min(max(hours, 1.0), 24.0 * 30)
