"""Back into the ticket: the invite link as a public reply, and milestones as internal notes.

Optional per integration (`integrations.<name>.outbound`). Each post is a durable job
(`Action.TICKET_NOTE`, `Action.TICKET_REPLY`) scheduled in the transaction of the event it tells
about, retried with backoff while the helpdesk is down, and carrying an idempotency key that is
the same on every retry: the adapter (`bridge.helpdesk.outbound`) looks for a post already made
under that key before posting, so a retry after a lost answer posts nothing twice. A milestone is
scheduled at most once per session (the job ledger's dedupe key).

The invite link is a secret and is never stored in the clear. The reply job carries it *sealed*:
AES-256-GCM under a key that lives in a file beside the bot's crypto store (`link.key` in
`bot.data_dir`), never in the database, bound to its session id; the job's parameters are
dropped as soon as the reply is posted or given up. Someone with the database alone learns
nothing; someone with the database *and* the data folder could open a link that was not posted
yet, which is no more than the bot's own crypto store would give them. Posts never carry any
other secret: no token, no Matrix ID of the customer, no error text from the homeserver.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import store.jobs
import store.sessions
from bridge.errors import TicketSystemRefused
from bridge.jobs import Action, JobContext, JobRunner, PermanentJobError, schedule, schedule_in
from bridge.ports import TicketSystem
from store import Batch, Database, LiveSession, SecureSession, Transaction

log = structlog.stdlib.get_logger(__name__)


class Milestone(StrEnum):
    ROOM_READY = "room_ready"
    CUSTOMER_JOINED = "customer_joined"
    LINK_USED = "link_used"
    SESSION_CLOSED = "session_closed"
    INVITE_FAILED = "invite_failed"


NOTES = {
    Milestone.ROOM_READY: "sealroom: the secure room for this ticket is ready; the agent is "
    "invited.",
    Milestone.LINK_USED: "sealroom: the customer used the invite link; the bot is inviting "
    "their Matrix account.",
    Milestone.CUSTOMER_JOINED: "sealroom: the customer joined the secure room.",
    Milestone.SESSION_CLOSED: "sealroom: the secure session is closed; everyone was removed "
    "from the room.",
    Milestone.INVITE_FAILED: "sealroom: the customer's Matrix account could not be invited; "
    "the agent was told in the room, and the customer's link works again.",
}


def reply_text(url: str, expires: str) -> str:
    return (
        "To send us credentials safely, open this personal link: "
        f"{url}\nIt works once and until {expires}. It opens an end-to-end encrypted room that "
        "is deleted when this ticket is done. Do not send passwords by e-mail."
    )


@dataclass(frozen=True)
class TicketUpdates:
    """What an integration posts back into its tickets."""

    milestones: frozenset[str]
    link_reply: bool


def idempotency_key(dedupe_key: str) -> str:
    """The same on every retry of one post; reveals nothing about the session."""
    return "sealroom-" + hashlib.sha256(dedupe_key.encode()).hexdigest()[:24]


async def schedule_milestone(
    db: Transaction,
    updates: Mapping[str, TicketUpdates],
    session: SecureSession,
    milestone: Milestone,
    now: datetime,
    *,
    once_per: str = "",
) -> bool:
    """Schedule the milestone's note if the integration wants it; once per session (and per
    `once_per`, e.g. per customer)."""
    wanted = updates.get(session.integration)
    if wanted is None or milestone.value not in wanted.milestones:
        return False
    dedupe = f"ticket-note:{session.id}:{milestone.value}:{once_per}"
    return await schedule(
        db,
        Action.TICKET_NOTE,
        now,
        session_id=session.id,
        params={"milestone": milestone.value, "key": idempotency_key(dedupe)},
        dedupe_key=dedupe,
    )


class LinkSealer:
    """AES-256-GCM for an invite link in a job's parameters, bound to its session."""

    def __init__(self, key_file: Path) -> None:
        """The key is read from `key_file` on first use, and made there (32 random bytes,
        mode 0600) if the file does not exist yet."""
        self.key_file = key_file
        self._cipher: AESGCM | None = None

    @property
    def _aead(self) -> AESGCM:
        if self._cipher is None:
            try:
                with open(self.key_file, "xb") as handle:
                    os.chmod(self.key_file, 0o600)
                    handle.write(os.urandom(32))
            except FileExistsError:
                pass
            key = self.key_file.read_bytes()
            if len(key) != 32:
                raise ValueError(f"{self.key_file} must hold 32 bytes")
            self._cipher = AESGCM(key)
        return self._cipher

    def seal(self, url: str, session_id: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, url.encode(), session_id.encode())
        return base64.b64encode(nonce + sealed).decode()

    def unseal(self, sealed: str, session_id: str) -> str:
        """Raises ValueError if the text was not sealed with this key for this session."""
        try:
            raw = base64.b64decode(sealed, validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], session_id.encode()).decode()
        except (binascii.Error, InvalidTag, ValueError) as err:
            raise ValueError("the sealed link cannot be opened with this key") from err


def schedule_link_reply(
    db: Batch,
    updates: Mapping[str, TicketUpdates],
    sealer: LinkSealer | None,
    session: LiveSession,
    invite_id: int,
    url: str,
    expires_at: datetime,
    now: datetime,
) -> bool:
    """Schedule the public reply with the link, sealed, if the integration wants it (the
    webhook path's batch)."""
    wanted = updates.get(session.integration)
    if sealer is None or wanted is None or not wanted.link_reply:
        return False
    dedupe = f"ticket-reply:{invite_id}"
    return schedule_in(
        db,
        Action.TICKET_REPLY,
        now,
        session_id=session.id,
        params={
            "sealed": sealer.seal(url, session.id),
            "expires": expires_at.strftime("%Y-%m-%d %H:%M UTC"),
            "key": idempotency_key(dedupe),
        },
        dedupe_key=dedupe,
    )


class TicketNotes:
    """The jobs that post into tickets, through each integration's `TicketSystem`."""

    def __init__(
        self,
        database: Database,
        systems: Mapping[str, TicketSystem],
        sealer: LinkSealer | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.database = database
        self.systems = systems
        self.sealer = sealer
        self.clock = clock

    def register(self, runner: JobRunner) -> None:
        runner.register(Action.TICKET_NOTE, self.note)
        runner.register(Action.TICKET_REPLY, self.reply, on_give_up=self.reply_gave_up)

    async def _target(self, job: JobContext) -> tuple[SecureSession, TicketSystem] | None:
        async with self.database.transaction() as db:
            session = await store.sessions.get(db, job.session_id or "")
        if session is None:
            return None
        system = self.systems.get(session.integration)
        return None if system is None else (session, system)

    async def note(self, job: JobContext) -> None:
        target = await self._target(job)
        if target is None:
            return
        session, system = target
        milestone = Milestone(str(job.params["milestone"]))
        await self._post(system, session, NOTES[milestone], False, job, milestone.value)
        log.info("ticket.note_posted", session_id=session.id, milestone=milestone.value)

    async def reply(self, job: JobContext) -> None:
        sealed = job.params.get("sealed")
        target = await self._target(job)
        if target is None or not isinstance(sealed, str) or self.sealer is None:
            return
        session, system = target
        try:
            url = self.sealer.unseal(sealed, session.id)
        except ValueError as err:
            raise PermanentJobError(str(err)) from None
        text = reply_text(url, str(job.params.get("expires", "")))
        await self._post(system, session, text, True, job, "invite_link")
        await self._forget(job)
        log.info("ticket.link_posted", session_id=session.id)

    async def reply_gave_up(self, job: JobContext, error: str) -> None:
        await self._forget(job)

    async def _forget(self, job: JobContext) -> None:
        async with self.database.transaction() as db:
            await store.jobs.forget_params(db, job.job_id, self.clock())

    @staticmethod
    async def _post(
        system: TicketSystem,
        session: SecureSession,
        text: str,
        public: bool,
        job: JobContext,
        event: str,
    ) -> None:
        try:
            await system.post(
                session.ticket_ref, text, public=public, key=str(job.params["key"]), event=event
            )
        except TicketSystemRefused as err:
            raise PermanentJobError(err.message) from None
