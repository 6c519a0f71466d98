"""Webhook deliveries: each is acted on once, and a replay gets the first answer back.

Returns an outcome *kind*; `bridge.web.hooks` decides what HTTP status that is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog

from bridge.errors import AgentUnknown, SealroomError, SessionClosed, TicketUnknown
from bridge.invites import InviteService
from bridge.sessions import OpenRequest, SessionService
from bridge.ticket_notes import LinkSealer, schedule_link_reply
from store import Batch, Conflict, Database

log = structlog.stdlib.get_logger(__name__)


def invite_url(public_base_url: str, token: str) -> str:
    """The link a customer opens: the token in the fragment, never sent to a server."""
    return f"{public_base_url}/i#{token}"


# A concurrent twin (same delivery, or same ticket) can win a race once; then ours replays or
# reuses. More rounds than that means something else is wrong.
CONFLICT_ROUNDS = 3


class OutcomeKind(StrEnum):
    CREATED = "created"  # a new secure session and its link
    REUSED = "reused"  # the ticket's live session, with a fresh link
    CLOSING = "closing"  # the session is being closed


@dataclass(frozen=True)
class Delivery:
    """One inbound webhook delivery, identified for idempotency."""

    integration: str
    webhook_id: str


@dataclass(frozen=True)
class WebhookOutcome:
    """What to answer a delivery. `invite_token` is set only on the first answer of an open."""

    kind: OutcomeKind
    body: dict[str, Any]
    invite_token: str | None = None
    replayed: bool = False


# (the answer, the session opened or closing, or None for a replay)
Recorded = tuple[WebhookOutcome, str | None]
Work = Callable[[Batch, datetime], Recorded | SealroomError]


class DeliveryService:
    def __init__(
        self,
        database: Database,
        sessions: SessionService,
        invites: InviteService,
        *,
        sealer: LinkSealer | None = None,
        public_base_url: str = "",
    ) -> None:
        self.database = database
        self.sessions = sessions
        self.invites = invites
        # For the public reply with the link (bridge.ticket_notes); None: never posted.
        self.sealer = sealer
        self.public_base_url = public_base_url

    async def open(self, delivery: Delivery, request: OpenRequest) -> WebhookOutcome:
        """Record the session, its invite and the room job durably; a replay does nothing.

        Raises:
            AgentUnknown, SessionClosed: nothing is recorded, so the helpdesk may retry.
        """
        outcome, session_id = await self._record(
            delivery, lambda db, now: self._open_in(db, delivery, request, now)
        )
        if session_id is not None:
            log.info(
                "session.reused" if outcome.kind == OutcomeKind.REUSED else "session.opened",
                session_id=session_id,
                ticket_ref=request.ticket_ref,
                integration=delivery.integration,
            )
        return outcome

    def _open_in(
        self, db: Batch, delivery: Delivery, request: OpenRequest, now: datetime
    ) -> Recorded | SealroomError:
        """The webhook's work in the batch (synchronous: on SQLite it runs in the writer
        thread, so it logs nothing); (the outcome, the session opened or reused),
        or the domain's refusal, returned rather than raised: nothing was written yet, and the
        other webhooks of the batch go on."""
        try:
            session, reused = self.sessions.open_or_reuse_in(
                db, delivery.integration, request, now
            )
        except (AgentUnknown, SessionClosed, TicketUnknown) as err:
            return err
        invite, token = self.invites.issue_in(
            db, session.id, session.expires_at, now, new_session=not reused
        )
        schedule_link_reply(
            db,
            self.sessions.settings.ticket_updates,
            self.sealer,
            session,
            invite.id,
            invite_url(self.public_base_url, token),
            invite.expires_at,
            now,
        )
        kind = OutcomeKind.REUSED if reused else OutcomeKind.CREATED
        body = {
            "session_id": session.id,
            "expires_at": invite.expires_at.isoformat(),
            "session_expires_at": session.expires_at.isoformat(),
            "state": session.state,
        }
        db.add_delivery(delivery.integration, delivery.webhook_id, now, kind.value, body)
        return WebhookOutcome(kind, body, invite_token=token), session.id

    async def close_ticket(self, delivery: Delivery, ticket_ref: str) -> WebhookOutcome:
        """The helpdesk says the ticket is done: close its live session, if any.

        Raises:
            TicketUnknown: no live session for this ticket (nothing is recorded, so the
                helpdesk may retry).
        """
        outcome, closing = await self._record(
            delivery, lambda db, now: self._close_in(db, delivery, ticket_ref, now)
        )
        if closing is not None:
            log.info("session.closing", session_id=closing, reason="helpdesk")
        return outcome

    async def _record(self, delivery: Delivery, work: Work) -> Recorded:
        """`work` in a transaction shared with concurrent webhooks (one commit, one fsync for
        all), unless the delivery was recorded before: then its first answer, replayed, and
        None. A concurrent twin can win a race once; the next round then replays or reuses.
        What a recorded delivery scheduled runs at once.

        Raises:
            SealroomError: the refusal `work` returned (nothing was written).
        """
        for _ in range(CONFLICT_ROUNDS):
            now = self.sessions.clock()

            def unit(db: Batch, now: datetime = now) -> Recorded | SealroomError:
                seen = db.delivery(delivery.integration, delivery.webhook_id)
                if seen is not None:
                    outcome, response = seen
                    return WebhookOutcome(OutcomeKind(outcome), response, replayed=True), None
                return work(db, now)

            try:
                done = await self.database.in_group_commit(unit)
            except Conflict:
                continue
            if isinstance(done, SealroomError):
                raise done
            if done[0].replayed:
                self._log_replay(delivery)
            else:
                self.sessions.wake_jobs()
            return done
        raise RuntimeError("could not record the webhook after concurrent retries")

    def _close_in(
        self, db: Batch, delivery: Delivery, ticket_ref: str, now: datetime
    ) -> Recorded | SealroomError:
        """The close webhook's work in the batch; (the outcome, the session that began closing
        or None), or TicketUnknown, returned before anything was written."""
        session = db.live_session(delivery.integration, ticket_ref)
        if session is None:
            return TicketUnknown(f"There is no open secure session for ticket {ticket_ref!r}.")
        began = self.sessions.begin_close_in(db, session.id, "helpdesk", "helpdesk", now)
        body = {"session_id": session.id, "state": "closing"}
        db.add_delivery(
            delivery.integration, delivery.webhook_id, now, OutcomeKind.CLOSING.value, body
        )
        return WebhookOutcome(OutcomeKind.CLOSING, body), session.id if began else None

    @staticmethod
    def _log_replay(delivery: Delivery) -> None:
        log.info(
            "webhook.replayed", integration=delivery.integration, webhook_id=delivery.webhook_id
        )
