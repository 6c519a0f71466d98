"""The Synapse admin API adapter against a real Synapse: registration tokens for new customers."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from bridge.errors import HomeserverUnavailable
from bridge.matrix.admin import AdminNotConfigured, SynapseAdmin
from tests.support.registration import register_with_token


async def test_a_minted_token_registers_exactly_one_account(synapse) -> None:
    admin = SynapseAdmin(synapse.url, await synapse.admin_token())
    minted = await admin.create_registration_token(datetime.now(UTC) + timedelta(minutes=15))
    assert minted.uses_allowed == 1
    assert minted.completed == 0

    localpart = f"newcustomer-{secrets.token_hex(3)}"
    status, _ = await register_with_token(
        synapse, localpart, "Pw-" + secrets.token_hex(8), minted.token
    )
    assert status == 200
    used = await admin.get_registration_token(minted.token)
    assert used is not None
    assert used.completed == 1
    created = await admin.user_created_at(f"@{localpart}:localhost")
    assert created is not None
    assert abs((datetime.now(UTC) - created).total_seconds()) < 120

    # The same token cannot make a second account.
    second = f"newcustomer-{secrets.token_hex(3)}"
    status, _ = await register_with_token(
        synapse, second, "Pw-" + secrets.token_hex(8), minted.token
    )
    assert status != 200
    assert await admin.user_created_at(f"@{second}:localhost") is None
    await admin.close()


async def test_a_revoked_token_is_gone(synapse) -> None:
    admin = SynapseAdmin(synapse.url, await synapse.admin_token())
    minted = await admin.create_registration_token(datetime.now(UTC) + timedelta(minutes=15))
    await admin.delete_registration_token(minted.token)
    await admin.delete_registration_token(minted.token)  # again: already gone is fine
    assert await admin.get_registration_token(minted.token) is None
    localpart = f"late-{secrets.token_hex(3)}"
    status, _ = await register_with_token(
        synapse, localpart, "Pw-" + secrets.token_hex(8), minted.token
    )
    assert status != 200
    await admin.close()


async def test_without_an_admin_token_or_homeserver_the_errors_say_so(synapse) -> None:
    with pytest.raises(AdminNotConfigured, match="homeserver.admin_token"):
        await SynapseAdmin(synapse.url, None).create_registration_token(datetime.now(UTC))
    down = SynapseAdmin("http://127.0.0.1:9", "token", timeout=2)
    with pytest.raises(HomeserverUnavailable):
        await down.get_registration_token("abc")
    await down.close()
