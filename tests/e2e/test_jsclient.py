"""The matrix-js-sdk interop client works against the real Synapse.

It is an independent implementation (Element's Rust crypto, in WASM under Node.js), so later
tests can trust what it says about our bot: cross-signed or not, decryptable in strict mode or
not, and whether a recovery key opens secret storage and the key backup.
"""

from __future__ import annotations

import asyncio
import os
import time

import base58
import nio
import pytest

from tests.support import jsclient
from tests.support.jsclient import JsClient, JsClientError

js_client = jsclient.js_client  # the fixture, without adding a pytest_plugins entry

ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}
SECRETS = [
    "m.cross_signing.master",
    "m.cross_signing.self_signing",
    "m.cross_signing.user_signing",
    "m.megolm_backup.v1",
]

pytestmark = pytest.mark.asyncio(loop_scope="session")


def recovery_key_for(key: bytes) -> str:
    """Encode 32 bytes as a recovery key: 0x8B 0x01, key, parity byte, base58, groups of 4."""
    raw = b"\x8b\x01" + key
    parity = 0
    for byte in raw:
        parity ^= byte
    encoded = base58.b58encode(raw + bytes([parity])).decode()
    return " ".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


async def nio_room_with(alice, js: JsClient, *, strict: bool = False) -> str:
    """An encrypted room made by the nio user, joined by the js client."""
    created = await alice.client.room_create(initial_state=[ENCRYPTION], invite=[js.user_id])
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id
    if strict:
        await js.set_strict(True)
    assert await js.wait_invite(room_id) == room_id
    joined = await js.join(room_id)
    assert joined["encrypted"] is True
    await alice.wait_for_join(room_id, js.user_id)
    return room_id


async def test_nio_and_js_exchange_encrypted_messages(matrix_user, js_client) -> None:
    alice = await matrix_user("alice")
    js = await js_client("carol")
    assert js.device_id
    assert js.login_info["timings_ms"]["total"] > 0

    room_id = await nio_room_with(alice, js)

    await alice.send_text(room_id, "hello js, this is secret")
    got = await js.wait_message(room_id, sender=alice.user_id, contains="secret")
    assert got["body"] == "hello js, this is secret"
    assert got["encrypted"] is True
    assert got["sender_device"] == alice.device_id
    assert got["undecryptable"] == 0

    event_id = await js.send(room_id, "hi alice, from matrix-js-sdk")
    assert event_id.startswith("$")
    sender, body = await alice.wait_for_message(room_id, lambda s, b: s == js.user_id)
    assert (sender, body) == (js.user_id, "hi alice, from matrix-js-sdk")

    state = await js.messages(room_id)
    assert state["undecryptable"] == []
    assert [m["body"] for m in state["messages"] if m["sender"] == alice.user_id] == [
        "hello js, this is secret"
    ]
    assert alice.undecryptable(room_id) == []


async def test_strict_mode_refuses_a_device_its_owner_did_not_cross_sign(
    matrix_user, js_client
) -> None:
    """MSC4153: what our bot must overcome by cross-signing its own device."""
    alice = await matrix_user("alice", cross_signed=False)
    js = await js_client("carol")
    room_id = await nio_room_with(alice, js, strict=True)

    await alice.send_text(room_id, "you will not read this")
    failure = await js.wait_undecryptable(
        room_id, reasons={"UNSIGNED_SENDER_DEVICE"}, sender=alice.user_id
    )
    assert failure["sender_device"] == alice.device_id
    state = await js.messages(room_id)
    assert [m for m in state["messages"] if m["sender"] == alice.user_id] == []

    # Strict mode also refuses to send from an account without cross-signing: a customer's
    # fresh device must be verified (recovery key) before it can answer.
    with pytest.raises(JsClientError, match="cross-signing is not set up"):
        await js.send(room_id, "can I answer?")

    # Back in the default mode the same client decrypts the next message from that device.
    await js.set_strict(False)
    await alice.send_text(room_id, "now you can")
    got = await js.wait_message(room_id, sender=alice.user_id, contains="now you can")
    assert got["undecryptable"] == 1
    # ... but marks it: the device is not cross-signed by its owner.
    assert got["shield"] == {"colour": "RED", "reason": "UNSIGNED_DEVICE"}


async def test_strict_mode_decrypts_a_device_its_owner_cross_signed(js_client) -> None:
    """The positive control: what a cross-signed bot device looks like to a strict client."""
    sender = await js_client("erin")
    await sender.bootstrap()
    strict = await js_client("carol", strict=True)
    room_id = await sender.create_room(invite=[strict.user_id])
    assert await strict.wait_invite(room_id) == room_id
    await strict.join(room_id)
    await sender.wait_joined(room_id, strict.user_id)

    status = await strict.device_status(sender.user_id, sender.device_id)
    assert status["signedByOwner"] is True
    assert status["crossSigningVerified"] is False  # carol never verified erin's identity
    assert status["server"]["device_signed_by_self_signing_key"] is True

    await sender.send(room_id, "signed and sealed")
    got = await strict.wait_message(room_id, sender=sender.user_id, contains="sealed")
    assert got["undecryptable"] == 0
    assert got["sender_device"] == sender.device_id
    # Cross-signed by its owner, though carol has not verified erin: no shield at all.
    assert got["shield"] == {"colour": "NONE", "reason": None}


async def test_strict_mode_decrypts_a_nio_device_cross_signed_by_our_own_code(
    matrix_user, js_client
) -> None:
    """tests.support.cross_signing (sealroom's identity primitives) as Element's crypto sees it."""
    alice = await matrix_user("alice", cross_signed=True)
    js = await js_client("carol")

    status = await js.device_status(alice.user_id, alice.device_id)
    assert status["signedByOwner"] is True
    assert status["crossSigningVerified"] is False  # carol has not verified alice
    assert status["cross_signing"]["has_keys"] is True
    assert status["cross_signing"]["master_key"] == alice.cross_signing.master_key
    assert status["server"]["master_key"] == alice.cross_signing.master_key
    assert status["server"]["device_signed_by_self_signing_key"] is True

    room_id = await nio_room_with(alice, js, strict=True)
    await alice.send_text(room_id, "signed by sealroom's own code")
    got = await js.wait_message(room_id, sender=alice.user_id, contains="sealroom")
    assert got["undecryptable"] == 0
    assert got["shield"] == {"colour": "NONE", "reason": None}


async def test_device_status_of_a_nio_device_is_not_signed_by_its_owner(
    matrix_user, js_client
) -> None:
    alice = await matrix_user("alice", cross_signed=False)
    js = await js_client("carol")

    status = await js.device_status(alice.user_id, alice.device_id)
    assert status["device_known"] is True
    assert status["signedByOwner"] is False
    assert status["crossSigningVerified"] is False
    assert status["localVerified"] is False
    assert status["isVerified"] is False
    assert status["cross_signing"]["has_keys"] is False
    assert status["cross_signing"]["master_key"] is None
    assert status["server"]["device_listed"] is True
    assert status["server"]["master_key"] is None

    unknown = await js.device_status(alice.user_id, "NOSUCHDEVICE")
    assert unknown["device_known"] is False
    assert unknown["status_known"] is False


async def test_recovery_key_opens_secret_storage_and_backup_on_a_new_device(js_client) -> None:
    first = await js_client("dana")
    recovery_key = await first.bootstrap()
    info = first.bootstrap_info
    assert info["cross_signing_ready"] is True
    assert info["secret_storage_ready"] is True
    assert info["backup_version"]
    assert info["own_device_cross_signed"] is True
    # js-sdk encodes the recovery key as the spec (and DESIGN.md) says.
    raw = base58.b58decode(recovery_key.replace(" ", ""))
    assert len(raw) == 35
    assert raw[:2] == b"\x8b\x01"
    assert recovery_key_for(raw[2:34]) == recovery_key

    # A room key in the backup, so there is something to restore.
    room_id = await first.create_room()
    await first.send(room_id, "written before the second device existed")
    deadline = time.monotonic() + 30
    while (backup := await first.backup_info())["count"] < 1:
        assert time.monotonic() < deadline, f"room key never reached the backup: {backup}"
        await asyncio.sleep(0.2)
    assert backup["trusted"] is True
    assert "restored" not in backup  # the creating device restores nothing by default

    second = await js_client(user_id=first.user_id, password=first.password)
    before = await second.device_status(second.user_id, second.device_id)
    assert before["signedByOwner"] is False

    opened = await second.open_secret_storage(recovery_key)
    assert opened["key_ok"] is True
    assert opened["stored"] == dict.fromkeys(SECRETS, True)
    assert opened["secrets"] == dict.fromkeys(SECRETS, True)
    assert opened["own_device_cross_signed"] is True
    assert opened["server"]["device_signed_by_self_signing_key"] is True

    backup = await second.backup_info()
    assert backup["version"] == info["backup_version"]
    assert backup["algorithm"] == "m.megolm_backup.v1.curve25519-aes-sha2"
    assert backup["trusted"] is True
    assert backup["matches_decryption_key"] is True
    assert backup["restored"]["imported"] >= 1
    old = await second.wait_message(room_id, sender=first.user_id, contains="before the second")
    assert old["body"] == "written before the second device existed"

    # The first device, fresh from the server, sees the second one cross-signed.
    status = await first.device_status(first.user_id, second.device_id)
    assert status["signedByOwner"] is True
    assert status["crossSigningVerified"] is True
    assert status["cross_signing"]["master_key"] == opened["server"]["master_key"]

    # A well-formed but wrong recovery key opens nothing.
    third = await js_client(user_id=first.user_id, password=first.password)
    wrong = await third.open_secret_storage(recovery_key_for(os.urandom(32)))
    assert wrong["key_ok"] is False
    assert wrong["stored"] == dict.fromkeys(SECRETS, True)
    assert wrong["secrets"] == dict.fromkeys(SECRETS, False)
    assert wrong["own_device_cross_signed"] is False
    backup = await third.backup_info()
    assert backup["version"] == info["backup_version"]
    assert backup["trusted"] is False
    assert backup["matches_decryption_key"] is False
    assert backup["has_private_key"] is False
    assert "restored" not in backup

    with pytest.raises(JsClientError, match="invalid recovery key"):
        await third.open_secret_storage("EsTc not a recovery key")
