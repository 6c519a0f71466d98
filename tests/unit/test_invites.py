"""bridge.invites: the account is looked up before the link is spent, on our homeserver or,
over federation, on the customer's own."""

from __future__ import annotations

import pytest

from bridge.errors import (
    HomeserverUnavailable,
    MatrixIdInvalid,
    MatrixServerUnreachable,
    MatrixUserUnknown,
)
from bridge.jobs import Action
from tests.support.domain import CUSTOMER_ID, OpenTicket

LOCAL_USER = "@carol:example.org"


@pytest.mark.parametrize(
    ("user_id", "error"),
    [
        ("@carol:example.org", MatrixUserUnknown),  # a typo: no such account here
        ("carol", MatrixIdInvalid),
    ],
)
async def test_a_redeem_that_cannot_succeed_leaves_the_link_unspent(
    ticket: OpenTicket, user_id: str, error: type[Exception]
) -> None:
    world, opened = ticket

    with pytest.raises(error):
        await world.invites.redeem(opened.token, user_id)

    assert (await world.invites.view(opened.token)).ticket_ref == "T-1"
    assert await world.jobs(Action.INVITE) == []


async def test_a_redeem_while_the_homeserver_cannot_tell_leaves_the_link_unspent(
    ticket: OpenTicket,
) -> None:
    world, opened = ticket
    world.accounts.existing.add(LOCAL_USER)
    world.accounts.fail_next("exists", HomeserverUnavailable())

    with pytest.raises(HomeserverUnavailable):
        await world.invites.redeem(opened.token, LOCAL_USER)
    redeemed = await world.invites.redeem(opened.token, LOCAL_USER)  # it answers again

    assert redeemed.user_id == LOCAL_USER
    assert world.accounts.called("exists") == [(LOCAL_USER,), (LOCAL_USER,)]
    [invite] = await world.jobs(Action.INVITE)
    assert invite.params["user_id"] == LOCAL_USER


async def test_accounts_on_other_servers_are_looked_up_too(ticket: OpenTicket) -> None:
    world, opened = ticket

    redeemed = await world.invites.redeem(opened.token, CUSTOMER_ID)

    assert redeemed.user_id == CUSTOMER_ID
    assert world.accounts.called("exists") == [(CUSTOMER_ID,)]


async def test_no_such_user_on_another_server_leaves_the_link_unspent(
    ticket: OpenTicket,
) -> None:
    world, opened = ticket
    world.accounts.missing.add(CUSTOMER_ID)

    with pytest.raises(MatrixUserUnknown):
        await world.invites.redeem(opened.token, CUSTOMER_ID)

    assert (await world.invites.view(opened.token)).ticket_ref == "T-1"
    assert await world.jobs(Action.INVITE) == []


async def test_a_server_that_does_not_answer_is_named_and_the_link_stays_unspent(
    ticket: OpenTicket,
) -> None:
    world, opened = ticket
    world.accounts.unreachable.add("example.net")

    with pytest.raises(MatrixServerUnreachable) as raised:
        await world.invites.redeem(opened.token, CUSTOMER_ID)

    assert "example.net" in raised.value.message
    assert "link still works" in raised.value.message
    assert (await world.invites.view(opened.token)).ticket_ref == "T-1"
    assert await world.jobs(Action.INVITE) == []
    world.accounts.unreachable.clear()  # back: the same link works
    assert (await world.invites.redeem(opened.token, CUSTOMER_ID)).user_id == CUSTOMER_ID
