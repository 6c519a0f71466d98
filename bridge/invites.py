"""The invite link: its token (256 random bits, handed out once, stored only as a SHA-256
hash), and issuing, viewing, redeeming and releasing it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

import store.audit
import store.invites
import store.sessions
from bridge.errors import InviteGone, MatrixUserUnknown
from bridge.ids import RoomID, UserID, parse_user_id
from bridge.jobs import Action, schedule
from bridge.ports import Accounts
from bridge.sessions import SessionService, is_live
from bridge.ticket_notes import Milestone, schedule_milestone
from store import Batch, Database, Invite, IssuedInvite, SecureSession, Transaction, run_in

log = structlog.stdlib.get_logger(__name__)

TOKEN_BYTES = 32
# How long an invitation waits for its room before checking on it anyway.
ROOM_WAIT = timedelta(seconds=60)


def mint_token() -> str:
    """A URL-safe token with 256 bits of entropy."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The only form of a token that is ever stored or looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison, so the response time says nothing about the stored hash."""
    return hmac.compare_digest(hash_token(token), stored_hash)


def looks_like_token(token: str) -> bool:
    """Reject junk early (no database work for a string that cannot be one of ours)."""
    if not 32 <= len(token) <= 64:
        return False
    return all(c.isascii() and (c.isalnum() or c in "-_") for c in token)


@dataclass(frozen=True)
class InviteView:
    """What the landing page may show to whoever holds a valid link."""

    ticket_ref: str
    subject: str
    expires_at: datetime


@dataclass(frozen=True)
class Redeemed:
    session_id: str
    user_id: UserID
    room_alias: str
    room_id: RoomID | None


class InviteService:
    """The single-use link: issue, look at, redeem (spend) and, after a failed invite, release."""

    def __init__(
        self,
        database: Database,
        sessions: SessionService,
        accounts: Accounts | None = None,
    ) -> None:
        self.database = database
        self.sessions = sessions
        self.accounts = accounts
        self.clock = sessions.clock

    def issue_in(
        self,
        db: Batch,
        session_id: str,
        session_expires_at: datetime,
        now: datetime,
        *,
        new_session: bool = False,
    ) -> tuple[IssuedInvite, str]:
        """A new link for the session and its token (to hand out once); older unused links stop
        working, so a session has one live link (a session opened in this batch has none)."""
        revoked = 0 if new_session else db.revoke_unused_invites(session_id, now)
        if revoked:
            db.audit(now, "invite.reissued", session_id=session_id, revoked=revoked)
        token = mint_token()
        expires_at = min(now + self.sessions.settings.invite_lifetime, session_expires_at)
        return db.add_invite(session_id, hash_token(token), now, expires_at), token

    async def issue(
        self, db: Transaction, session: SecureSession, now: datetime
    ) -> tuple[IssuedInvite, str]:
        """`issue_in` inside an ORM transaction."""
        session_id, expires_at = session.id, session.expires_at
        return await run_in(db, lambda batch: self.issue_in(batch, session_id, expires_at, now))

    async def valid(self, db: Transaction, token: str) -> tuple[Invite, SecureSession]:
        """Raises InviteGone for unknown, used, revoked and expired alike."""
        if not looks_like_token(token):
            raise InviteGone()
        invite = await store.invites.get_by_hash(db, hash_token(token))
        now = self.clock()
        if (
            invite is None
            or not token_matches(token, invite.token_hash)
            or invite.used_at is not None
            or invite.revoked_at is not None
            or invite.expires_at <= now
        ):
            raise InviteGone()
        session = await store.sessions.get(db, invite.session_id)
        if session is None or not is_live(session):
            raise InviteGone()
        return invite, session

    async def view(self, token: str) -> InviteView:
        """Look without using: link scanners and reloads must never spend an invite."""
        async with self.database.transaction() as db:
            invite, session = await self.valid(db, token)
        return InviteView(session.ticket_ref, session.subject, invite.expires_at)

    async def redeem(self, token: str, user_id_text: str) -> Redeemed:
        """Spend the invite for `user_id_text` and have the bot invite that account.

        Raises:
            MatrixIdInvalid, MatrixUserUnknown, MatrixServerUnreachable, HomeserverUnavailable:
                before anything is spent.
            InviteGone: unknown, used, revoked or expired link.
        """
        user_id = parse_user_id(user_id_text)
        async with self.database.transaction() as db:
            await self.valid(db, token)  # a dead link is told as such before any lookup
        await self._check_exists(user_id)
        return await self.consume(token, user_id, "invite.redeemed")

    async def _check_exists(self, user_id: UserID) -> None:
        """The account is looked up before the link is spent, on our homeserver or (over
        federation) on another one: a typo or a server that does not answer must not use it
        up. The customer is told, and the link still works."""
        if self.accounts is None:
            return
        if not await self.accounts.exists(user_id):
            raise MatrixUserUnknown()

    async def consume(self, token: str, user_id: UserID, action: str) -> Redeemed:
        """Spend the invite for `user_id` and schedule the bot's invitation, atomically."""
        now = self.clock()
        async with self.database.transaction() as db:
            invite, session = await self.valid(db, token)
            if not await store.invites.consume(db, invite.id, user_id, now):
                raise InviteGone()
            # Read again, locked: the room's creation either sees the job added below or is
            # seen by it (then the job is due at once), never neither.
            locked = await store.sessions.get(db, session.id, for_update=True)
            assert locked is not None
            session = locked
            session.customer_user_id = user_id
            session.updated_at = now
            await schedule(
                db,
                Action.INVITE,
                now,
                session_id=session.id,
                # Before the room exists the job waits for it: the room's creation invites the
                # customer or makes this job due; the delay is only a safety net.
                run_after=now if session.room_id else now + ROOM_WAIT,
                # No dedupe key: the guarded consume above already lets one spending through,
                # and a link released after a failed invitation may be spent again.
                params={"user_id": user_id, "invite_id": invite.id},
            )
            store.audit.record(db, now, action, session_id=session.id, actor=user_id)
            await schedule_milestone(
                db,
                self.sessions.settings.ticket_updates,
                session,
                Milestone.LINK_USED,
                now,
                once_per=str(invite.id),
            )
            result = Redeemed(
                session_id=session.id,
                user_id=user_id,
                room_alias=session.room_alias,
                room_id=RoomID(session.room_id) if session.room_id else None,
            )
        log.info(action, session_id=session.id, ticket_ref=session.ticket_ref)
        self.sessions.wake_jobs()
        return result

    async def release(
        self, db: Transaction, session: SecureSession, invite_id: int, now: datetime
    ) -> bool:
        """The invitation failed for good: the spent link works again (unless it expired or
        was replaced meanwhile). True when it did."""
        if not await store.invites.release(db, invite_id, now):
            return False
        session.customer_user_id = None
        session.updated_at = now
        store.audit.record(db, now, "invite.released", session_id=session.id)
        return True
