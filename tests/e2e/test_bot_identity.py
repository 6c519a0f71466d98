"""The bot's cross-signed identity: created once, checked later, restored with the recovery key."""

from __future__ import annotations

import json
import re
import shutil

from bridge.matrix import identity
from tests.support.http_json import post_json
from tests.support.service_process import ServiceProcess

RECOVERY_KEY = re.compile(r"RECOVERY KEY is:\s+((?:[1-9A-HJ-NP-Za-km-z]{4} ?){12})")


async def _query_keys(synapse, user, bot_id: str) -> dict:
    status, keys = await post_json(
        synapse.url,
        "/_matrix/client/v3/keys/query",
        {"device_keys": {bot_id: []}},
        headers={"Authorization": f"Bearer {user.client.access_token}"},
    )
    assert status == 200
    return keys


def _device_id(service: ServiceProcess) -> str:
    return json.loads((service.folder / "data" / "bot.json").read_text())["device_id"]


def _assert_cross_signed(keys: dict, bot_id: str, device_id: str) -> str:
    """Verify the chain ourselves: device <- self-signing key <- master key."""
    master = keys["master_keys"][bot_id]
    ssk = keys["self_signing_keys"][bot_id]
    (master_pub,) = master["keys"].values()
    (ssk_pub,) = ssk["keys"].values()
    identity.verify_signature(ssk, bot_id, master_pub, master_pub)
    identity.verify_signature(keys["device_keys"][bot_id][device_id], bot_id, ssk_pub, ssk_pub)
    return master_pub


async def test_identity_created_once_checked_later_and_restored(
    synapse, matrix_user, tmp_path
) -> None:
    observer = await matrix_user("observer", start=False)
    service = await ServiceProcess.create(synapse, tmp_path)
    await service.start()
    try:
        await service.wait_ready()
    finally:
        assert await service.stop() == 0
    match = RECOVERY_KEY.search(service.stdout_text(1))
    assert match, service.stdout_text(1)
    recovery_key = match.group(1).strip()
    identity.decode_recovery_key(recovery_key)  # well-formed: prefix and parity check out

    first_device = _device_id(service)
    keys = await _query_keys(synapse, observer, service.bot_id)
    master = _assert_cross_signed(keys, service.bot_id, first_device)

    # A later start finds everything in place: no new identity, no key printed.
    await service.start()
    try:
        await service.wait_ready()
    finally:
        assert await service.stop() == 0
    assert "RECOVERY KEY" not in service.stdout_text(2)
    assert _device_id(service) == first_device

    # The recovery key was shown once and is kept nowhere else.
    for path in service.folder.rglob("*"):
        if path.is_file() and path.suffix != ".out":
            assert recovery_key.encode() not in path.read_bytes(), path
            assert recovery_key.replace(" ", "").encode() not in path.read_bytes(), path

    # The data directory is lost: a new device, not cross-signed until the admin restores.
    shutil.rmtree(service.folder / "data")
    await service.start()
    try:
        await service.wait_ready()
    finally:
        assert await service.stop() == 0
    second_device = _device_id(service)
    assert second_device != first_device
    assert "bot.device_not_cross_signed" in service.log_text(3)

    code, out, err = await service.cli("bot-identity", "--recovery-key", stdin=b"EsTJ vezE\n")
    assert code == 1
    assert "not a valid recovery key" in err
    wrong = identity.encode_recovery_key(identity.generate_recovery_key())
    code, out, err = await service.cli("bot-identity", "--recovery-key", stdin=wrong.encode())
    assert code == 1
    assert "does not open the bot's secret storage" in err

    code, out, err = await service.cli(
        "bot-identity", "--recovery-key", stdin=recovery_key.encode() + b"\n"
    )
    assert code == 0, err
    assert recovery_key not in out + err
    keys = await _query_keys(synapse, observer, service.bot_id)
    assert _assert_cross_signed(keys, service.bot_id, second_device) == master
