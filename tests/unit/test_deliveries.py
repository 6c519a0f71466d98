"""bridge.deliveries: each webhook delivery is acted on once; a replay gets the first answer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bridge.deliveries import Delivery, OutcomeKind
from bridge.errors import AgentUnknown, SessionClosed, TicketUnknown
from bridge.sessions import OpenRequest
from store import AuditEvent, Invite, Job, SecureSession, WebhookDelivery
from tests.support.domain import AGENT, World


async def _counts(world: World) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with world.database.transaction() as db:
        for model in (SecureSession, Invite, Job, WebhookDelivery, AuditEvent):
            query = select(func.count()).select_from(model)
            counts[model.__tablename__] = int((await db.execute(query)).scalar_one())
    return counts


def _open(ticket: str = "T-1", agent: str = AGENT) -> OpenRequest:
    return OpenRequest(ticket, "VPN access", agent)


async def test_a_first_open_creates_a_session_and_hands_out_its_link_once(world: World) -> None:
    delivery = Delivery("helpdesk", "msg_1")

    outcome = await world.deliveries.open(delivery, _open())

    assert outcome.kind == OutcomeKind.CREATED
    assert outcome.replayed is False
    assert outcome.invite_token is not None
    session = await world.session(str(outcome.body["session_id"]))
    assert outcome.body == {
        "session_id": session.id,
        "expires_at": outcome.body["expires_at"],
        "session_expires_at": session.expires_at.isoformat(),
        "state": "pending",
    }
    assert (await world.invites.view(outcome.invite_token)).ticket_ref == "T-1"
    assert world.wakes, "the runner was not woken for the room job"


async def test_a_replayed_open_returns_the_first_kind_and_body_and_changes_nothing(
    world: World,
) -> None:
    delivery = Delivery("helpdesk", "msg_1")
    first = await world.deliveries.open(delivery, _open())
    counts = await _counts(world)
    world.clock.advance(minutes=5)

    again = await world.deliveries.open(delivery, _open(agent="whoever"))

    assert (again.kind, again.replayed) == (OutcomeKind.CREATED, True)
    assert again.body == first.body
    assert again.invite_token is None  # the link is handed out once
    assert await _counts(world) == counts


async def test_the_same_webhook_id_from_another_integration_is_another_delivery(
    world: World,
) -> None:
    await world.deliveries.open(Delivery("helpdesk", "msg_1"), _open("T-1"))

    other = await world.deliveries.open(Delivery("zammad", "msg_1"), _open("T-1"))

    assert (other.kind, other.replayed) == (OutcomeKind.CREATED, False)


async def test_a_second_delivery_for_a_live_ticket_reuses_it_with_a_fresh_link(
    world: World,
) -> None:
    first = await world.deliveries.open(Delivery("helpdesk", "msg_1"), _open())

    second = await world.deliveries.open(Delivery("helpdesk", "msg_2"), _open())

    assert (second.kind, second.replayed) == (OutcomeKind.REUSED, False)
    assert second.body["session_id"] == first.body["session_id"]
    assert second.invite_token not in (None, first.invite_token)
    [reissued] = await world.audit("invite.reissued")
    assert reissued.detail == {"revoked": 1}


async def test_a_replayed_close_returns_closing_again(world: World) -> None:
    opened = await world.deliveries.open(Delivery("helpdesk", "msg_1"), _open())
    close = Delivery("helpdesk", "msg_close")

    first = await world.deliveries.close_ticket(close, "T-1")
    counts = await _counts(world)
    again = await world.deliveries.close_ticket(close, "T-1")

    assert (first.kind, first.replayed) == (OutcomeKind.CLOSING, False)
    assert first.body == {"session_id": opened.body["session_id"], "state": "closing"}
    assert (again.kind, again.replayed, again.body) == (OutcomeKind.CLOSING, True, first.body)
    assert await _counts(world) == counts


async def test_a_replayed_open_after_the_close_still_gets_its_first_answer(world: World) -> None:
    first = await world.deliveries.open(Delivery("helpdesk", "msg_1"), _open())
    await world.deliveries.close_ticket(Delivery("helpdesk", "msg_close"), "T-1")

    again = await world.deliveries.open(Delivery("helpdesk", "msg_1"), _open())

    assert (again.kind, again.replayed, again.body) == (OutcomeKind.CREATED, True, first.body)


async def test_closing_an_unknown_ticket_raises_ticket_unknown_and_records_nothing(
    world: World,
) -> None:
    await world.deliveries.open(Delivery("helpdesk", "msg_1"), _open("T-1"))
    counts = await _counts(world)

    with pytest.raises(TicketUnknown, match="T-404"):
        await world.deliveries.close_ticket(Delivery("helpdesk", "msg_close"), "T-404")

    assert await _counts(world) == counts
    # Nothing recorded: the same delivery succeeds once the ticket has a session.
    await world.deliveries.open(Delivery("helpdesk", "msg_2"), _open("T-404"))
    retried = await world.deliveries.close_ticket(Delivery("helpdesk", "msg_close"), "T-404")
    assert (retried.kind, retried.replayed) == (OutcomeKind.CLOSING, False)


@pytest.mark.parametrize(
    ("setup", "error"),
    [({"agent": "mallory@example.com"}, AgentUnknown), ({"closing": True}, SessionClosed)],
    ids=["unknown-agent", "ticket-closing"],
)
async def test_a_refused_open_records_nothing_so_the_helpdesk_may_retry(
    world: World, setup: dict[str, Any], error: type[Exception]
) -> None:
    if setup.get("closing"):
        await world.deliveries.open(Delivery("helpdesk", "msg_0"), _open())
        await world.deliveries.close_ticket(Delivery("helpdesk", "msg_close"), "T-1")
    counts = await _counts(world)

    with pytest.raises(error):
        await world.deliveries.open(
            Delivery("helpdesk", "msg_1"), _open(agent=setup.get("agent", AGENT))
        )

    assert await _counts(world) == counts
