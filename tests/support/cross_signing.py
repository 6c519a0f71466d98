"""Give a nio test user what Element-class clients set up at first login: cross-signing.

nio cannot cross-sign; this does it over the client API with sealroom's own identity primitives
(checked against matrix-js-sdk's vectors), so test users count as verified in strict mode.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

from bridge.matrix import identity


@dataclass
class CrossSigning:
    master_seed: bytes
    self_signing_seed: bytes

    @property
    def master_key(self) -> str:
        return identity.ed25519_public_key(self.master_seed)


async def _call(user: Any, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict]:
    url = f"{user.client.homeserver}/_matrix/client/v3{path}"
    headers = {"Authorization": f"Bearer {user.client.access_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def cross_sign(user: Any, *, sign_device: bool = True) -> CrossSigning:
    """Upload fresh master/self-signing/user-signing keys and sign the user's current device."""
    user_id = user.user_id
    master_seed, ssk_seed, usk_seed = (secrets.token_bytes(32) for _ in range(3))
    master_pub = identity.ed25519_public_key(master_seed)
    body = {
        "master_key": identity.cross_signing_key(user_id, "master", master_pub),
        "self_signing_key": identity.sign_json(
            identity.cross_signing_key(
                user_id, "self_signing", identity.ed25519_public_key(ssk_seed)
            ),
            user_id,
            master_pub,
            master_seed,
        ),
        "user_signing_key": identity.sign_json(
            identity.cross_signing_key(
                user_id, "user_signing", identity.ed25519_public_key(usk_seed)
            ),
            user_id,
            master_pub,
            master_seed,
        ),
    }
    status, data = await _call(user, "POST", "/keys/device_signing/upload", body)
    if status == 401:
        body["auth"] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": user.password,
            "session": data.get("session"),
        }
        status, data = await _call(user, "POST", "/keys/device_signing/upload", body)
    assert status == 200, data
    result = CrossSigning(master_seed, ssk_seed)
    if sign_device:
        await sign_device_of(user, result, user.device_id)
    return result


async def sign_device_of(user: Any, keys: CrossSigning, device_id: str) -> None:
    status, data = await _call(
        user, "POST", "/keys/query", {"device_keys": {user.user_id: [device_id]}}
    )
    assert status == 200, data
    device = data["device_keys"][user.user_id][device_id]
    ssk_pub = identity.ed25519_public_key(keys.self_signing_seed)
    signed = identity.sign_json(device, user.user_id, ssk_pub, keys.self_signing_seed)
    upload = {k: v for k, v in device.items() if k != "unsigned"}
    upload["signatures"] = {
        user.user_id: {
            f"ed25519:{ssk_pub}": signed["signatures"][user.user_id][f"ed25519:{ssk_pub}"]
        }
    }
    status, data = await _call(
        user, "POST", "/keys/signatures/upload", {user.user_id: {device_id: upload}}
    )
    assert status == 200, data
    assert not data.get("failures"), data
