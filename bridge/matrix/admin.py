"""Synapse's admin API: single-use registration tokens (for customers who create an account).

Uses the admin token from `homeserver.admin_token`; never logs a token. Docs:
https://element-hq.github.io/synapse/latest/usage/administration/admin_api/registration_tokens.html
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import ClientError, ClientSession, ClientTimeout

from bridge.errors import HomeserverUnavailable, MatrixRequestFailed, SealroomError

log = structlog.stdlib.get_logger(__name__)


class AdminNotConfigured(SealroomError):
    errcode = "SEALROOM_ADMIN_NOT_CONFIGURED"
    default_message = (
        "Creating accounts needs homeserver.admin_token (a Synapse admin's access token)."
    )


@dataclass(frozen=True)
class RegistrationToken:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None  # milliseconds since the epoch


def _parse(data: dict[str, Any]) -> RegistrationToken:
    return RegistrationToken(
        token=str(data["token"]),
        uses_allowed=data.get("uses_allowed"),
        pending=int(data.get("pending", 0)),
        completed=int(data.get("completed", 0)),
        expiry_time=data.get("expiry_time"),
    )


class SynapseAdmin:
    def __init__(self, homeserver_url: str, admin_token: str | None, timeout: float = 30) -> None:
        self.base = homeserver_url.rstrip("/")
        self._token = admin_token
        self._timeout = ClientTimeout(total=timeout)

    async def _call(
        self, what: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        if not self._token:
            raise AdminNotConfigured()
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with (
                ClientSession(timeout=self._timeout) as http,
                http.request(
                    method,
                    f"{self.base}/_synapse/admin{path}",
                    data=json.dumps(body) if body is not None else None,
                    headers=headers,
                ) as response,
            ):
                data = await response.json(content_type=None)
                status = response.status
        except (ClientError, TimeoutError, ValueError) as err:
            raise HomeserverUnavailable(f"{what}: {type(err).__name__}") from err
        if status >= 500 or not isinstance(data, dict):
            raise HomeserverUnavailable(f"{what}: the homeserver answered {status}")
        return status, data

    async def create_registration_token(self, expires_at: datetime) -> RegistrationToken:
        """A token that registers exactly one account, until `expires_at`."""
        status, data = await self._call(
            "minting a registration token",
            "POST",
            "/v1/registration_tokens/new",
            {"uses_allowed": 1, "expiry_time": int(expires_at.timestamp() * 1000)},
        )
        if status >= 400:
            raise MatrixRequestFailed(
                f"minting a registration token: {data.get('errcode', status)}",
                str(data.get("errcode", status)),
            )
        return _parse(data)

    async def get_registration_token(self, token: str) -> RegistrationToken | None:
        status, data = await self._call(
            "reading a registration token",
            "GET",
            f"/v1/registration_tokens/{quote(token, safe='')}",
        )
        if status == 404:
            return None
        if status >= 400:
            raise MatrixRequestFailed(
                f"reading a registration token: {data.get('errcode', status)}",
                str(data.get("errcode", status)),
            )
        return _parse(data)

    async def valid_registration_tokens(self) -> list[RegistrationToken]:
        status, data = await self._call(
            "listing registration tokens", "GET", "/v1/registration_tokens?valid=true"
        )
        if status >= 400:
            raise MatrixRequestFailed(
                f"listing registration tokens: {data.get('errcode', status)}",
                str(data.get("errcode", status)),
            )
        return [_parse(item) for item in data.get("registration_tokens", [])]

    async def delete_registration_token(self, token: str) -> None:
        """Revoke a token that was not (or no longer should be) used; gone already is fine."""
        status, data = await self._call(
            "revoking a registration token",
            "DELETE",
            f"/v1/registration_tokens/{quote(token, safe='')}",
        )
        if status >= 400 and status != 404:
            raise MatrixRequestFailed(
                f"revoking a registration token: {data.get('errcode', status)}",
                str(data.get("errcode", status)),
            )

    async def user_created_at(self, user_id: str) -> datetime | None:
        """When the account was created, or None if it does not exist."""
        status, data = await self._call(
            "reading an account", "GET", f"/v2/users/{quote(user_id, safe='')}"
        )
        if status == 404:
            return None
        if status >= 400:
            raise MatrixRequestFailed(
                f"reading an account: {data.get('errcode', status)}",
                str(data.get("errcode", status)),
            )
        created = data.get("creation_ts")
        if not isinstance(created, int):
            return None
        # Synapse reports seconds in older versions and milliseconds in newer ones.
        seconds = created / 1000 if created > 10**11 else created
        return datetime.fromtimestamp(seconds, UTC)


class AdminRegistrationTokens:
    """bridge.ports.RegistrationTokens on top of SynapseAdmin."""

    def __init__(self, admin: SynapseAdmin) -> None:
        self.admin = admin

    async def mint(self, expires_at: datetime) -> str:
        return (await self.admin.create_registration_token(expires_at)).token

    async def completed(self, token: str) -> int | None:
        found = await self.admin.get_registration_token(token)
        return None if found is None else found.completed

    async def revoke(self, token: str) -> None:
        await self.admin.delete_registration_token(token)

    async def list_valid(self) -> list[str]:
        return [found.token for found in await self.admin.valid_registration_tokens()]

    async def user_created_at(self, user_id: str) -> datetime | None:
        return await self.admin.user_created_at(user_id)
