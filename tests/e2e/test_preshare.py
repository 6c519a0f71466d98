"""The room key reaches an invited member's devices before they join (bridge.matrix.e2ee
pre-sharing), so the first notice is one encrypt and one send; the strict trust policy still
decides who gets it, and a device that appears later still gets the key."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Sealroom, SealroomFactory
from tests.support.cross_signing import sign_device_of
from tests.support.fixtures import MatrixUserFactory
from tests.support.matrix_users import MatrixUser, from_bot

RULES = "only to share credentials"


def _room_keys(user: MatrixUser, room_id: str, sender_key: str | None = None) -> set[str]:
    """The Megolm sessions this device holds for the room (from `sender_key` if given)."""
    olm = user.client.olm
    assert olm is not None
    return {
        session.id
        for session in olm.inbound_group_store
        if session.room_id == room_id and sender_key in (None, session.sender_key)
    }


async def _invited(service: Sealroom, agent: MatrixUser, customer: MatrixUser) -> str:
    """Open a ticket, the agent joins, the customer redeems the link and is invited."""
    await service.open_ticket("T-PRESHARE")
    room_id = await agent.wait_for_invite()
    await agent.join(room_id)
    status, data = await service.redeem(customer.user_id)
    assert status == 200, data
    await customer.wait_for_invite(room_id)
    return room_id


async def _another_device(
    customer: MatrixUser, tmp_path: Path, synapse, *, cross_signed: bool
) -> MatrixUser:
    localpart = customer.user_id[1:].split(":", 1)[0]
    device = await MatrixUser.create(
        synapse.url, synapse, localpart, tmp_path / "another", password=customer.password
    )
    await device.start()
    await device.wait_until(lambda: device.client.olm.account.shared, what="keys uploaded")
    if cross_signed:
        await sign_device_of(device, customer.cross_signing, device.device_id)
    return device


async def test_the_invited_member_holds_the_key_of_the_first_notice_before_joining(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    bot_id = service.config.bot.user_id
    room_id = await _invited(service, agent, customer)

    preshared = await customer.wait_until(
        lambda: _room_keys(customer, room_id), what="the room key, before joining"
    )
    await customer.join(room_id)
    await customer.wait_for_message(room_id, from_bot(bot_id, RULES))
    # The notice was encrypted with the key the customer got while invited: no new one.
    assert _room_keys(customer, room_id) == preshared
    assert customer.undecryptable(room_id) == []


async def test_a_device_added_after_the_key_was_preshared_still_gets_it(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse, tmp_path: Path
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    bot_id = service.config.bot.user_id
    room_id = await _invited(service, agent, customer)
    await customer.wait_until(lambda: _room_keys(customer, room_id), what="the pre-shared key")

    later = await _another_device(customer, tmp_path, synapse, cross_signed=True)
    try:
        await customer.join(room_id)
        await customer.wait_for_message(room_id, from_bot(bot_id, RULES))
        await later.wait_for_message(room_id, from_bot(bot_id, RULES))
        assert later.undecryptable(room_id) == []
    finally:
        await later.stop()


async def test_a_device_its_owner_did_not_cross_sign_gets_no_preshared_key(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse, tmp_path: Path
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    unsigned = await _another_device(customer, tmp_path, synapse, cross_signed=False)
    try:
        service = await sealroom(agents={"agent@example.com": agent.user_id})
        bot_id = service.config.bot.user_id
        room_id = await _invited(service, agent, customer)
        await customer.wait_until(lambda: _room_keys(customer, room_id), what="the key")

        await customer.join(room_id)
        await customer.wait_for_message(room_id, from_bot(bot_id, RULES))
        await unsigned.wait_until(
            lambda: unsigned.undecryptable(room_id) or None, what="the notice it cannot read"
        )
        assert not [body for _, body in unsigned.messages(room_id) if RULES in body]
        assert _room_keys(unsigned, room_id) == set()
    finally:
        await unsigned.stop()
