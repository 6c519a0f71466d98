"""Accounts made on the homeserver the way the landing page's script makes them, so tests can
make one without a browser (and check what sealroom then accepts)."""

from __future__ import annotations

from typing import Any

import aiohttp

from bridge.devtools.localsynapse import LocalSynapse
from tests.support.http_json import post_json

REGISTER_PATH = "/_matrix/client/v3/register"


async def register_with_token(
    synapse: LocalSynapse, localpart: str, password: str, token: str
) -> tuple[int, dict[str, Any]]:
    """POST /register through the registration-token stage, then m.login.dummy: the last
    (status, answer); 200 once the account exists."""
    body: dict[str, Any] = {"username": localpart, "password": password, "inhibit_login": True}
    async with aiohttp.ClientSession() as http:

        async def call(extra: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            return await post_json(synapse.url, REGISTER_PATH, {**body, **extra}, session=http)

        status, data = await call({})
        for _ in range(3):
            if status != 401:
                break
            session = data.get("session")
            auth = (
                {"type": "m.login.dummy", "session": session}
                if "m.login.registration_token" in data.get("completed", [])
                else {"type": "m.login.registration_token", "token": token, "session": session}
            )
            status, data = await call({"auth": auth})
    return status, data
