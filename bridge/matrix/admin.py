"""Synapse over plain HTTP, beside the bot's nio client: the homeserver's readiness probe, the
admin API's single-use registration tokens (for customers who create an account), and the
wipe's purge of a closed room and deletion of its files (`AdminRoomPurger`).

Uses the admin token from `homeserver.admin_token`; never logs a token. One HTTP session for the
adapter's lifetime, opened on first use; the owner calls `close()`. Docs:
https://element-hq.github.io/synapse/latest/usage/administration/admin_api/registration_tokens.html
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import ClientError, ClientSession, ClientTimeout

from bridge.errors import HomeserverUnavailable, MatrixServerUnreachable, SealroomError
from bridge.ids import RoomID, UserID, server_of
from bridge.matrix.failures import raise_for_status, unreachable

log = structlog.stdlib.get_logger(__name__)

PROBE_TIMEOUT = ClientTimeout(total=3)
# How long one attempt waits for Synapse to finish purging a room (then the job retries later,
# and finds the purge it started still running).
PURGE_WAIT_SECONDS = 120.0
PURGE_POLL_SECONDS = (0.2, 5.0)  # first and longest pause between status polls
PURGE_UNDER_WAY = frozenset({"scheduled", "active", "shutting_down", "purging"})


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
    def __init__(
        self,
        homeserver_url: str,
        admin_token: str | None,
        timeout: float = 30,
        server_name: str | None = None,
    ) -> None:
        """`server_name` (our homeserver's) tells our users from other servers' users."""
        self.base = homeserver_url.rstrip("/")
        self.server_name = server_name
        self._token = admin_token
        self._timeout = ClientTimeout(total=timeout)
        self._http: ClientSession | None = None

    def _session(self) -> ClientSession:
        if self._http is None or self._http.closed:
            self._http = ClientSession(timeout=self._timeout)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def check_homeserver(self) -> str | None:
        """Readiness: None if the homeserver answers its client API, else what it answered."""
        url = f"{self.base}/_matrix/client/versions"
        async with self._session().get(url, timeout=PROBE_TIMEOUT) as response:
            return None if response.status == 200 else f"answered {response.status}"

    async def _call(
        self, what: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        if not self._token:
            raise AdminNotConfigured()
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._session().request(
                method,
                f"{self.base}/_synapse/admin{path}",
                data=json.dumps(body) if body is not None else None,
                headers=headers,
            ) as response:
                data = await response.json(content_type=None)
                status = response.status
        except (ClientError, TimeoutError, ValueError) as err:
            raise unreachable(what, err) from err
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
        raise_for_status("minting a registration token", status, data, quote_error=False)
        return _parse(data)

    async def get_registration_token(self, token: str) -> RegistrationToken | None:
        status, data = await self._call(
            "reading a registration token",
            "GET",
            f"/v1/registration_tokens/{quote(token, safe='')}",
        )
        if status == 404:
            return None
        raise_for_status("reading a registration token", status, data, quote_error=False)
        return _parse(data)

    async def valid_registration_tokens(self) -> list[RegistrationToken]:
        status, data = await self._call(
            "listing registration tokens", "GET", "/v1/registration_tokens?valid=true"
        )
        raise_for_status("listing registration tokens", status, data, quote_error=False)
        return [_parse(item) for item in data.get("registration_tokens", [])]

    async def delete_registration_token(self, token: str) -> None:
        """Revoke a token that was not (or no longer should be) used; gone already is fine."""
        status, data = await self._call(
            "revoking a registration token",
            "DELETE",
            f"/v1/registration_tokens/{quote(token, safe='')}",
        )
        if status != 404:
            raise_for_status("revoking a registration token", status, data, quote_error=False)

    async def exists(self, user_id: UserID) -> bool:
        """Whether an active account `user_id` exists (bridge.ports.Accounts).

        For our own users with the admin token, the admin API (it knows deactivated accounts
        too); otherwise the client API's public profile lookup, which our homeserver answers
        for another server's users over federation: 404 means no such user, 502 (or no answer
        in time) that their server did not answer. A server that keeps profiles private cannot
        tell, and the account is given the benefit of the doubt.

        Raises:
            HomeserverUnavailable: our homeserver cannot tell right now.
            MatrixServerUnreachable: the user's homeserver (another one) did not answer.
        """
        server = server_of(user_id)
        remote = self.server_name is not None and server != self.server_name
        if self._token and not remote:
            status, data = await self._call(
                "looking up an account", "GET", f"/v2/users/{quote(user_id, safe='')}"
            )
            if status == 404:
                return False
            raise_for_status("looking up an account", status, data)
            return not data.get("deactivated", False)
        url = f"{self.base}/_matrix/client/v3/profile/{quote(user_id, safe='')}"
        try:
            async with self._session().get(url) as response:
                status = response.status
        except TimeoutError as err:
            if remote:
                raise MatrixServerUnreachable(server) from err
            raise unreachable("looking up an account", err) from err
        except ClientError as err:
            raise unreachable("looking up an account", err) from err
        if status >= 500:
            # Synapse answers 502 when the other server did not answer it; a 5xx for one of
            # ours is our homeserver's own failure.
            if remote and status in (502, 504):
                raise MatrixServerUnreachable(server)
            raise HomeserverUnavailable(f"looking up an account: the homeserver answered {status}")
        return status != 404

    async def user_created_at(self, user_id: str) -> datetime | None:
        """When the account was created, or None if it does not exist."""
        status, data = await self._call(
            "reading an account", "GET", f"/v2/users/{quote(user_id, safe='')}"
        )
        if status == 404:
            return None
        raise_for_status("reading an account", status, data, quote_error=False)
        created = data.get("creation_ts")
        if not isinstance(created, int):
            return None
        # Synapse reports seconds in older versions and milliseconds in newer ones.
        seconds = created / 1000 if created > 10**11 else created
        return datetime.fromtimestamp(seconds, UTC)

    async def purge_room(self, room_id: str) -> None:
        """Delete the room and its events from Synapse's database; gone already is success.

        A purge started by an earlier attempt (its answer lost, or the process killed while it
        waited) is waited for, not started again.

        Raises:
            HomeserverUnavailable: the purge failed or is not finished after PURGE_WAIT_SECONDS.
        """
        room = quote(room_id, safe="")
        status, data = await self._call("looking up a room", "GET", f"/v1/rooms/{room}")
        if status == 404:
            return
        raise_for_status("looking up a room", status, data)
        delete_id = await self._purge_under_way(room)
        if delete_id is None:
            status, data = await self._call(
                "purging a room", "DELETE", f"/v2/rooms/{room}", {"purge": True, "block": False}
            )
            raise_for_status("purging a room", status, data)
            delete_id = str(data["delete_id"])
        await self._wait_for_purge(delete_id)

    async def _purge_under_way(self, room: str) -> str | None:
        status, data = await self._call(
            "reading a room's purges", "GET", f"/v2/rooms/{room}/delete_status"
        )
        if status == 404:
            return None
        raise_for_status("reading a room's purges", status, data)
        for task in data.get("results", []):
            if isinstance(task, dict) and task.get("status") in PURGE_UNDER_WAY:
                return str(task["delete_id"])
        return None

    async def _wait_for_purge(self, delete_id: str) -> None:
        deadline = time.monotonic() + PURGE_WAIT_SECONDS
        pause, longest = PURGE_POLL_SECONDS
        what = "waiting for a room's purge"
        while True:
            status, data = await self._call(
                what, "GET", f"/v2/rooms/delete_status/{quote(delete_id, safe='')}"
            )
            raise_for_status(what, status, data)
            state = data.get("status")
            if state == "complete":
                return
            if state not in PURGE_UNDER_WAY:
                raise HomeserverUnavailable(f"{what}: Synapse reports {state!r}")
            if time.monotonic() + pause > deadline:
                raise HomeserverUnavailable(f"{what}: still {state!r}")
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)

    async def delete_media(self, server_name: str, media_id: str) -> None:
        """Delete one local file (its thumbnails too); gone already is success."""
        what = "deleting a file"
        status, data = await self._call(
            what,
            "DELETE",
            f"/v1/media/{quote(server_name, safe='')}/{quote(media_id, safe='')}",
        )
        if status != 404:
            raise_for_status(what, status, data, quote_error=False)


class AdminRoomPurger:
    """bridge.ports.RoomPurger on top of SynapseAdmin (only built with an admin token)."""

    def __init__(self, admin: SynapseAdmin, server_name: str) -> None:
        self.admin = admin
        self.server_name = server_name

    async def purge(self, room_id: RoomID) -> None:
        await self.admin.purge_room(room_id)

    async def delete_media(self, mxc: str) -> bool:
        server_name, _, media_id = mxc.removeprefix("mxc://").partition("/")
        if server_name != self.server_name or not media_id or "/" in media_id:
            return False  # another server's file (or no file at all): not ours to delete
        await self.admin.delete_media(server_name, media_id)
        return True


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
