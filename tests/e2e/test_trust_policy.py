"""The strict trust policy (default) against the tofu mode, with real devices and identities."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SealroomFactory
from tests.support.cross_signing import cross_sign, sign_device_of
from tests.support.fixtures import MatrixUserFactory
from tests.support.matrix_users import MatrixUser, from_bot
from tests.support.rows import audit_actions


async def _room_with_customer(service, agent, customer) -> str:
    bot_id = service.config.bot.user_id
    _, room_id = await service.open_room("T-TRUST", agent, customer)
    await customer.wait_for_message(room_id, from_bot(bot_id, "only to share credentials"))
    return room_id


async def _second_device(customer, tmp_path, synapse, *, cross_signed: bool):
    localpart = customer.user_id[1:].split(":", 1)[0]
    second = await MatrixUser.create(
        synapse.url, synapse, localpart, tmp_path / "second", password=customer.password
    )
    await second.start()
    await second.wait_until(lambda: second.client.olm.account.shared, what="keys uploaded")
    if cross_signed:
        await sign_device_of(second, customer.cross_signing, second.device_id)
    return second


@pytest.mark.parametrize("mode", ["strict", "tofu"])
async def test_unsigned_new_device_of_a_member(
    mode: str, sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse, tmp_path
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id}, trust={"mode": mode})
    bot_id = service.config.bot.user_id
    room_id = await _room_with_customer(service, agent, customer)
    second = await _second_device(customer, tmp_path, synapse, cross_signed=False)
    try:
        await second.wait_for_room(room_id)
        await agent.send_text(room_id, "!help")
        await customer.wait_for_message(room_id, from_bot(bot_id, "Commands: !close"))
        if mode == "tofu":
            await second.wait_for_message(room_id, from_bot(bot_id, "Commands: !close"))
            assert "device.excluded" not in await audit_actions(service.app.database)
            return
        warning = await customer.wait_for_message(
            room_id, from_bot(bot_id, f"the device {second.device_id} of {customer.user_id}")
        )
        assert "gets no keys" in warning[1]
        await agent.wait_for_message(room_id, from_bot(bot_id, second.device_id))
        # The unverified device got nothing it could decrypt after it appeared.
        await second.wait_until(
            lambda: second.undecryptable(room_id) or None, what="the withheld notice"
        )
        assert not [m for m in second.messages(room_id) if "Commands: !close" in m[1]]
        assert "device.excluded" in await audit_actions(service.app.database)
    finally:
        await second.stop()


@pytest.mark.parametrize("mode", ["strict", "tofu"])
async def test_changed_identity_of_a_member(
    mode: str, sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id}, trust={"mode": mode})
    bot_id = service.config.bot.user_id
    room_id = await _room_with_customer(service, agent, customer)

    # The customer's account gets a new identity (a reset, or someone else took it over).
    customer.cross_signing = await cross_sign(customer)
    await agent.send_text(room_id, "!help")
    if mode == "tofu":
        await customer.wait_for_message(room_id, from_bot(bot_id, "Commands: !close"))
        assert "identity.changed" not in await audit_actions(service.app.database)
        return
    warning = await agent.wait_for_message(
        room_id, from_bot(bot_id, f"identity of {customer.user_id} changed")
    )
    assert f"!trust {customer.user_id}" in warning[1]
    assert "identity.changed" in await audit_actions(service.app.database)
    assert not [m for m in customer.messages(room_id) if "Commands: !close" in m[1]]

    # The agent checked with the customer and accepts the new identity.
    await agent.send_text(room_id, f"!trust {customer.user_id}")
    await customer.wait_for_message(room_id, from_bot(bot_id, "new identity of"), timeout=30)
    assert "identity.accepted" in await audit_actions(service.app.database)


async def test_a_command_from_the_agents_unverified_device_is_refused_in_strict_mode(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory, synapse, tmp_path
) -> None:
    agent = await matrix_user("agent")
    customer = await matrix_user("customer")
    service = await sealroom(agents={"agent@example.com": agent.user_id}, trust={"mode": "strict"})
    bot_id = service.config.bot.user_id
    opened_room = await _room_with_customer(service, agent, customer)
    # A second, unverified device of the agent's account (someone who got the password, say).
    second = await _second_device(agent, tmp_path, synapse, cross_signed=False)
    try:
        await second.wait_for_room(opened_room)
        await second.send_text(opened_room, "!close")
        refusal = await agent.wait_for_message(
            opened_room,
            from_bot(bot_id, "not verified, so it was not carried out"),
        )
        assert refusal
        assert "command.refused" in await audit_actions(service.app.database)
        assert "session.closing" not in await audit_actions(service.app.database)

        # The same command from the agent's verified device is obeyed.
        await agent.send_text(opened_room, "!close")
        await customer.wait_for_message(opened_room, from_bot(bot_id, "being closed"))
    finally:
        await second.stop()
