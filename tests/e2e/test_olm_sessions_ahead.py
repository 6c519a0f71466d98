"""The bot opens Olm sessions with an invited member's devices before they join
(bridge.matrix.e2ee), so the first notice needs no /keys/claim; the room key still goes out with
that notice, the strict trust policy still decides who gets it, and a device that appears in
between still gets it."""

from __future__ import annotations

from pathlib import Path

from bridge.matrix.nio_compat import CryptoMachine
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


def _bot_has_sessions_with(service: Sealroom, user: MatrixUser) -> bool:
    """The bot holds an Olm session with every device of `user` it knows (and knows some)."""
    client = service.app.bot.require_client()
    machine = CryptoMachine.of(client)
    assert machine is not None
    devices = client.device_store.active_user_devices(user.user_id)
    return bool(devices) and all(machine.has_olm_session(device) for device in devices)


def _logged(service: Sealroom, event: str, room_id: str) -> bool:
    service.log_stream.flush()
    return any(
        event in line and room_id in line
        for line in service.log_path.read_text(encoding="utf-8").splitlines()
    )


async def _invited(service: Sealroom, agent: MatrixUser, customer: MatrixUser) -> str:
    """Open a ticket, the agent joins, the customer redeems the link and is invited."""
    await service.open_ticket("T-PRESHARE")
    room_id = await agent.wait_for_invite()
    await agent.join(room_id)
    # The agent's welcome is out: no send shares a key (nor opens sessions) meanwhile.
    bot_id = service.config.bot.user_id
    await agent.wait_for_message(room_id, from_bot(bot_id, "customer has been sent an invite"))
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


async def test_olm_sessions_with_the_invited_member_are_ready_before_the_join(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    bot_id = service.config.bot.user_id
    room_id = await _invited(service, agent, customer)

    # Before the join: the bot says it opened them, and it holds one with every device.
    await customer.wait_until(
        lambda: _logged(service, "bot.olm_sessions_ready", room_id), what="the bot's sessions"
    )
    assert _bot_has_sessions_with(service, customer)
    await customer.join(room_id)
    await customer.wait_for_message(room_id, from_bot(bot_id, RULES))
    assert customer.undecryptable(room_id) == []


async def test_a_device_added_after_the_sessions_were_opened_still_gets_the_key(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse, tmp_path: Path
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    bot_id = service.config.bot.user_id
    room_id = await _invited(service, agent, customer)
    await customer.wait_until(lambda: _bot_has_sessions_with(service, customer), what="sessions")

    later = await _another_device(customer, tmp_path, synapse, cross_signed=True)
    try:
        await customer.join(room_id)
        await customer.wait_for_message(room_id, from_bot(bot_id, RULES))
        await later.wait_for_message(room_id, from_bot(bot_id, RULES))
        assert later.undecryptable(room_id) == []
    finally:
        await later.stop()


async def test_a_device_its_owner_did_not_cross_sign_still_gets_no_key(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse, tmp_path: Path
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    unsigned = await _another_device(customer, tmp_path, synapse, cross_signed=False)
    try:
        service = await sealroom(agents={"agent@example.com": agent.user_id})
        bot_id = service.config.bot.user_id
        room_id = await _invited(service, agent, customer)
        await customer.wait_until(
            lambda: _bot_has_sessions_with(service, customer), what="the bot's Olm sessions"
        )

        await customer.join(room_id)
        await customer.wait_for_message(room_id, from_bot(bot_id, RULES))
        await unsigned.wait_until(
            lambda: unsigned.undecryptable(room_id) or None, what="the notice it cannot read"
        )
        assert not [body for _, body in unsigned.messages(room_id) if RULES in body]
        assert _room_keys(unsigned, room_id) == set()
    finally:
        await unsigned.stop()
