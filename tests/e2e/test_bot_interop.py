"""The bot against an implementation we did not write: matrix-js-sdk with its Rust crypto, strict.

MSC4153: a strict client neither shares keys with nor decrypts from devices their owner has not
cross-signed. These tests show the bot's device counts as cross-signed there, both directions
work, and the recovery key the bot printed opens its secret storage and key backup in js-sdk.
"""

from __future__ import annotations

import bridge.app
from bridge.matrix import identity
from tests.e2e.conftest import SealroomFactory
from tests.support import jsclient

js_client = jsclient.js_client  # the fixture


async def test_strict_js_clients_and_the_bot_understand_each_other(
    sealroom: SealroomFactory, js_client, monkeypatch
) -> None:
    printed: list[str] = []
    monkeypatch.setattr(bridge.app, "show_recovery_key", lambda key, user: printed.append(key))

    agent = await js_client("agent")
    customer = await js_client("customer")
    for client in (agent, customer):
        await client.bootstrap()  # Element-style first login: cross-signing and a recovery key
        await client.set_strict(True)
    service = await sealroom(agents={"agent@example.com": agent.user_id})
    bot_id = service.config.bot.user_id
    bot_device = service.app.bot.device_id

    status = await customer.device_status(bot_id, bot_device)
    assert status["signedByOwner"] is True
    assert (
        status["crossSigningVerified"] is False
    )  # not verified by the customer: TOFU on identity

    await service.open_ticket("T-JS")
    room_id = await agent.wait_invite()
    await agent.join(room_id)
    code, answer = await service.redeem(customer.user_id)
    assert code == 200, answer
    assert await customer.wait_invite(room_id) == room_id
    await customer.join(room_id)

    rules = await customer.wait_message(
        room_id, sender=bot_id, contains="only to share credentials"
    )
    assert rules["sender_device"] == bot_device

    # The bot decrypts what a strict client sends: the agent's command is understood.
    await agent.wait_joined(room_id, customer.user_id)
    await agent.send(room_id, "!help")
    await agent.wait_message(room_id, sender=bot_id, contains="Commands: !close")
    await customer.wait_message(room_id, sender=bot_id, contains="Commands: !close")

    secret = "hunter2-for-the-agent"
    await customer.send(room_id, secret)
    assert (await agent.wait_message(room_id, sender=customer.user_id, contains=secret))["body"]
    for client in (agent, customer):
        assert (await client.messages(room_id))["undecryptable"] == []

    # The recovery key the bot printed, in js-sdk, on a new device of the bot's own account.
    (recovery_key,) = printed
    bot_device_2 = await js_client(user_id=bot_id, password=service.config.bot.password_value())
    opened = await bot_device_2.open_secret_storage(recovery_key)
    assert opened["key_ok"] is True
    assert all(opened["secrets"].values()), opened["secrets"]
    assert set(opened["secrets"]) >= {
        "m.cross_signing.master",
        "m.cross_signing.self_signing",
        "m.cross_signing.user_signing",
        "m.megolm_backup.v1",
    }
    assert opened["own_device_cross_signed"] is True
    backup = await bot_device_2.backup_info(restore=True)
    assert backup["trusted"] is True
    assert backup["matches_decryption_key"] is True
    assert backup["algorithm"] == identity.BACKUP_ALGORITHM
    assert backup["restored"]["imported"] >= 1  # the bot's own room keys are in the backup


async def test_a_wrong_recovery_key_opens_nothing(
    sealroom: SealroomFactory, js_client, monkeypatch
) -> None:
    monkeypatch.setattr(bridge.app, "show_recovery_key", lambda key, user: None)
    service = await sealroom()
    bot_id = service.config.bot.user_id
    other = await js_client(user_id=bot_id, password=service.config.bot.password_value())
    wrong = identity.encode_recovery_key(identity.generate_recovery_key())
    opened = await other.open_secret_storage(wrong)
    assert opened["key_ok"] is False
    assert not any(opened["secrets"].values())
    backup = await other.backup_info()
    assert backup["matches_decryption_key"] is False
