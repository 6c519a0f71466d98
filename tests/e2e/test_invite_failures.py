"""A customer is never silently stuck: an invitation that fails is told to the agent, and the
customer's link works again (real Synapse, real agent client)."""

from __future__ import annotations

from tests.e2e.conftest import SealroomFactory
from tests.support.fixtures import MatrixUserFactory


async def test_unknown_local_account_is_refused_before_the_link_is_spent(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    customer = await matrix_user("customer")
    service = await sealroom()
    await service.open_ticket("T-TYPO")
    token = service.tokens[-1]

    status, body = await service.redeem("@no-such-customer:localhost", token)

    assert status == 400, body
    assert body["errcode"] == "SEALROOM_MATRIX_USER_UNKNOWN"
    assert "no account with this Matrix ID" in str(body["error"])
    status, body = await service.redeem(customer.user_id, token)
    assert status == 200, body
    await customer.wait_for_invite()


async def test_a_server_our_homeserver_will_not_reach_is_refused_before_the_link_is_spent(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    """(#13) Before, this invitation was accepted, failed later and was told to the agent; the
    profile lookup now finds out on the page. Invitations that fail after the link was spent:
    tests/e2e/test_federation.py."""
    customer = await matrix_user("customer")
    service = await sealroom()
    await service.open_ticket("T-REFUSED")
    token = service.tokens[-1]

    # A server the homeserver will not talk to (a loopback address, refused by Synapse's
    # federation IP blacklist).
    status, body = await service.redeem("@customer:127.0.0.1:9", token)

    assert status == 502, body
    assert body["errcode"] == "SEALROOM_MATRIX_SERVER_UNREACHABLE"
    assert "127.0.0.1:9" in body["error"]
    status, body = await service.redeem(customer.user_id, token)
    assert status == 200, body
    await customer.wait_for_invite()
