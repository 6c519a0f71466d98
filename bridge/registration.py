"""An account made in the customer's browser: start, finish and abandon it.

sealroom mints a single-use registration token per invite (Synapse's admin API); the browser
registers with it and sets up the account's encryption itself. At most one valid token exists
per invite at any time: a new start revokes the previous one first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

import store.audit
import store.invites
import store.sessions
from bridge import notices
from bridge.errors import (
    InviteGone,
    RegistrationDisabled,
    RegistrationNotVerified,
    SealroomError,
    TooManyAttempts,
)
from bridge.ids import UserID, parse_user_id, server_of
from bridge.invites import InviteService, Redeemed, hash_token, token_matches
from bridge.ports import RegistrationTokens
from bridge.room_jobs import schedule_notice
from bridge.sessions import SessionService
from store import Database

log = structlog.stdlib.get_logger(__name__)

MAX_REGISTRATION_ATTEMPTS = 5
# Clock skew allowed between sealroom and the homeserver when checking an account's creation time.
CLOCK_SKEW = timedelta(minutes=2)


@dataclass(frozen=True)
class RegistrationStart:
    """A single-use registration token, for the customer's browser only (stored as a hash)."""

    registration_token: str
    expires_at: datetime


@dataclass(frozen=True)
class _Started:
    invite_id: int
    session_id: str
    started_at: datetime


class RegistrationService:
    def __init__(
        self,
        database: Database,
        sessions: SessionService,
        invites: InviteService,
        tokens: RegistrationTokens | None,
    ) -> None:
        self.database = database
        self.sessions = sessions
        self.invites = invites
        self._tokens_port = tokens
        self.clock = sessions.clock

    def _tokens(self) -> RegistrationTokens:
        if not self.sessions.settings.registration_enabled or self._tokens_port is None:
            raise RegistrationDisabled()
        return self._tokens_port

    async def start(self, token: str) -> RegistrationStart:
        """Mint a single-use registration token for this invite (the invite is not spent yet).

        Raises:
            RegistrationDisabled, InviteGone, TooManyAttempts, HomeserverUnavailable.
        """
        tokens = self._tokens()
        now = self.clock()
        async with self.database.transaction() as db:
            invite, _ = await self.invites.valid(db, token)
            if invite.registration_attempts >= MAX_REGISTRATION_ATTEMPTS:
                raise TooManyAttempts()
            previous = invite.registration_token_hash
            lifetime = self.sessions.settings.registration_token_lifetime
            expires_at = min(now + lifetime, invite.expires_at)
        if previous is not None:
            await self._revoke_by_hash(tokens, previous)
        registration_token = await tokens.mint(expires_at)
        try:
            async with self.database.transaction() as db:
                invite, session = await self.invites.valid(db, token)
                swapped = await store.invites.swap_registration(
                    db, invite.id, previous, hash_token(registration_token), now
                )
                if swapped:
                    store.audit.record(db, now, "registration.started", session_id=session.id)
        except InviteGone:
            # Spent or expired while the token was minted: it must not stay valid, unrecorded.
            await tokens.revoke(registration_token)
            raise
        if not swapped:
            # A concurrent start on the same invite won: ours must not stay valid beside it.
            await tokens.revoke(registration_token)
            raise TooManyAttempts(
                "This link is already creating an account in another window. Continue there, "
                "or reload this page."
            )
        log.info("registration.started", session_id=session.id)
        return RegistrationStart(registration_token, expires_at)

    async def _revoke_by_hash(self, tokens: RegistrationTokens, token_hash: str) -> None:
        """Only the hash is kept, so the token is found among the homeserver's valid ones."""
        for candidate in await tokens.list_valid():
            if token_matches(candidate, token_hash):
                await tokens.revoke(candidate)

    async def _started(self, token: str, registration_token: str) -> _Started:
        """Raises InviteGone, RegistrationNotVerified (not this invite's token)."""
        async with self.database.transaction() as db:
            invite, session = await self.invites.valid(db, token)
            stored = invite.registration_token_hash
            started_at = invite.registration_started_at
        if stored is None or started_at is None or not token_matches(registration_token, stored):
            raise RegistrationNotVerified()
        return _Started(invite.id, session.id, started_at)

    async def _check_account(
        self, registration_token: str, user_id: UserID, started_at: datetime
    ) -> None:
        """The homeserver confirms the token made one account and `user_id` is new since then.

        Raises:
            RegistrationNotVerified: another server, an unused token, or an older account.
        """
        tokens = self._tokens()
        if server_of(user_id) != self.sessions.settings.server_name:
            raise RegistrationNotVerified()
        completed = await tokens.completed(registration_token)
        created_at = await tokens.user_created_at(user_id)
        if completed != 1 or created_at is None or created_at < started_at - CLOCK_SKEW:
            raise RegistrationNotVerified()

    async def finish(self, token: str, user_id_text: str, registration_token: str) -> Redeemed:
        """The page made `user_id` with our token: check that with the homeserver, then invite.

        Raises:
            RegistrationNotVerified: another token, another server, or no such new account.
        """
        tokens = self._tokens()
        user_id = parse_user_id(user_id_text)
        started = await self._started(token, registration_token)
        await self._check_account(registration_token, user_id, started.started_at)
        result = await self.invites.consume(token, user_id, "registration.finished")
        try:
            await tokens.revoke(registration_token)  # used up already; tidy the homeserver
        except SealroomError as err:
            log.warning("registration.token_not_revoked", errcode=err.errcode)
        return result

    async def abandon(self, token: str, registration_token: str, user_id_text: str | None) -> None:
        """The page is left before the end: revoke the unused token, or tell the agent.

        With `user_id_text` the account was made (and checked to be ours) but its encryption
        set-up did not finish: the agent is told in the room, since only they can follow up.
        Without it, the registration token is revoked so it cannot make an account later.
        """
        tokens = self._tokens()
        now = self.clock()
        started = await self._started(token, registration_token)
        if user_id_text is None:
            await tokens.revoke(registration_token)
            async with self.database.transaction() as db:
                invite, _ = await self.invites.valid(db, token)
                invite.registration_token_hash = None
                store.audit.record(
                    db, now, "registration.abandoned", session_id=started.session_id
                )
            log.info("registration.abandoned", session_id=started.session_id)
            return
        user_id = parse_user_id(user_id_text)
        await self._check_account(registration_token, user_id, started.started_at)
        async with self.database.transaction() as db:
            session = await store.sessions.get(db, started.session_id)
            if session is not None:
                await schedule_notice(
                    db,
                    session.id,
                    now,
                    notices.registration_incomplete(
                        user_id, lang=self.sessions.settings.notice_language(session.integration)
                    ),
                    dedupe_key=f"registration-incomplete:{started.invite_id}",
                )
            store.audit.record(
                db, now, "registration.incomplete", session_id=started.session_id, actor=user_id
            )
        log.warning("registration.incomplete", session_id=started.session_id)
        self.sessions.wake_jobs()
