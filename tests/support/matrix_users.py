"""A real Matrix user with its own E2EE device, for end-to-end tests against a real Synapse.

It plays the customer or the agent: it must decrypt what sealroom sends, and it records what it
could not decrypt, so a test can assert "zero undecryptable events" instead of hoping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import nio
from nio import (
    AsyncClient,
    AsyncClientConfig,
    LocalProtocolError,
    MegolmEvent,
    RoomMessageNotice,
    RoomMessageText,
    SyncResponse,
)
from nio.exceptions import EncryptionError

from bridge.devtools.localsynapse import LocalSynapse
from bridge.tasks import cancel_and_wait

log = logging.getLogger(__name__)

T = TypeVar("T")


def _keep_token_on_share_error(client: AsyncClient) -> None:
    """Work around a nio 0.26 bug that logs the client out when /sendToDevice fails.

    ShareGroupSessionError.from_dict passes ``users_shared_with`` (a non-empty set) into the
    ``soft_logout`` field, and receive_response then clears ``access_token``: every later
    request fails with M_UNKNOWN_TOKEN. A test user stands for a well-behaved client such as
    Element, so it keeps its token; sealroom's own bot needs its own answer to this.
    """
    original = client.receive_response

    async def receive_response(response: nio.Response) -> None:
        token = client.access_token
        await original(response)
        if isinstance(response, nio.ShareGroupSessionError) and not client.access_token:
            log.warning("nio cleared the access token after %s; restoring it", response)
            client.access_token = token

    client.receive_response = receive_response


def from_bot(bot_id: str, *needles: str) -> Callable[[str, str], bool]:
    """A `wait_for_message` predicate: sent by `bot_id`, holding every needle in its body."""
    return lambda sender, body: sender == bot_id and all(needle in body for needle in needles)


class MatrixUser:
    """One account, one device, one nio client with a persistent crypto store."""

    def __init__(self, client: AsyncClient, password: str) -> None:
        self.client = client
        self.password = password
        self._messages: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._seen: set[str] = set()
        self._undecryptable: dict[str, dict[str, MegolmEvent]] = defaultdict(dict)
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sync_errors: list[BaseException] = []
        self.late_decrypted: list[str] = []  # event ids decrypted only on a later retry
        self.cross_signing: Any = None  # set by the fixture once the device is cross-signed
        client.add_event_callback(self._on_message, (RoomMessageText, RoomMessageNotice))
        client.add_event_callback(self._on_megolm, MegolmEvent)
        client.add_response_callback(self._on_sync, SyncResponse)

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    @classmethod
    async def create(
        cls,
        homeserver_url: str,
        synapse: LocalSynapse,
        localpart: str,
        store_dir: Path,
        password: str | None = None,
    ) -> MatrixUser:
        """Register the account (idempotent) and log in a fresh encrypting device."""
        password = password or secrets.token_urlsafe(16)
        user_id = await synapse.register_user(localpart, password)
        store_dir = Path(store_dir)
        store_dir.mkdir(parents=True, exist_ok=True)  # nio needs it before login
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=False,
            pickle_key=f"sealroom-test-{localpart}",
            max_timeouts=None,
        )
        client = AsyncClient(homeserver_url, user_id, store_path=str(store_dir), config=config)
        _keep_token_on_share_error(client)
        resp = await client.login(password, device_name=f"sealroom test {localpart}")
        if not isinstance(resp, nio.LoginResponse):
            await client.close()
            raise RuntimeError(f"login of {user_id} failed: {resp}")
        return cls(client, password)

    # -- event recording ---------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _record(self, room_id: str, event_id: str, sender: str, body: str) -> None:
        if event_id in self._seen:
            return
        self._seen.add(event_id)
        self._messages[room_id].append((sender, body))
        self._undecryptable[room_id].pop(event_id, None)
        self._notify()

    async def _on_message(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        self._record(room.room_id, event.event_id, event.sender, event.body)

    async def _on_megolm(self, room: nio.MatrixRoom, event: MegolmEvent) -> None:
        if event.event_id not in self._seen:
            self._undecryptable[room.room_id][event.event_id] = event
            self._notify()

    async def _on_sync(self, _response: SyncResponse) -> None:
        """nio never retries decryption: do it here, once per sync, as keys may have arrived."""
        for room_id, pending in self._undecryptable.items():
            for event_id, event in list(pending.items()):
                try:
                    decrypted = self.client.decrypt_event(event)
                except EncryptionError:
                    continue
                self.late_decrypted.append(event_id)
                if isinstance(decrypted, (RoomMessageText, RoomMessageNotice)):
                    self._record(room_id, event_id, decrypted.sender, decrypted.body)
                else:  # decrypted, but not a message we record
                    pending.pop(event_id, None)
        self._notify()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Initial sync (keys uploaded), then keep syncing in the background."""
        resp = await self.client.sync(timeout=0, full_state=True)
        if not isinstance(resp, SyncResponse):
            raise RuntimeError(f"initial sync of {self.user_id} failed: {resp}")
        await self.client.run_response_callbacks([resp])
        if self.client.should_upload_keys:
            up = await self.client.keys_upload()
            if not isinstance(up, nio.KeysUploadResponse):
                raise RuntimeError(f"keys upload of {self.user_id} failed: {up}")
        self._task = asyncio.create_task(self._sync_loop(), name=f"sync {self.user_id}")

    async def _sync_loop(self) -> None:
        """sync_forever ends on the first exception; a test client must outlive a proxy outage."""
        while True:
            try:
                await self.client.sync_forever(timeout=1000, full_state=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.sync_errors.append(exc)
                log.warning("sync of %s failed, retrying: %r", self.user_id, exc)
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        """Stop syncing and close the HTTP session; never log out (that deletes the device)."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        await self.client.close()

    # -- waiting -----------------------------------------------------------------------------

    async def wait_until(
        self, check: Callable[[], T | None], timeout: float = 30, what: str = "a condition"
    ) -> T:
        """Re-check ``check()`` after every sync or recorded event until it is truthy."""
        return await self._wait(check, timeout, what)

    async def _wait(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            result = check()
            if result:
                return result
            if self._task is not None and self._task.done():
                self._task.result()  # surface a crashed sync loop
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.user_id}: timed out after {timeout} s waiting for {what}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, 0.5))

    async def wait_for_invite(self, room_id: str | None = None, timeout: float = 30) -> str:
        def check() -> str | None:
            for invited in self.client.invited_rooms:
                if room_id is None or invited == room_id:
                    return str(invited)
            return None

        return await self._wait(check, timeout, f"an invite to {room_id or 'any room'}")

    async def wait_for_room(self, room_id: str, timeout: float = 30) -> nio.MatrixRoom:
        """Until the room is in client.rooms (nio cannot send to a room it has not synced)."""
        return await self._wait(
            lambda: self.client.rooms.get(room_id), timeout, f"room {room_id} in sync"
        )

    async def wait_for_join(self, room_id: str, user_id: str, timeout: float = 30) -> None:
        """Until this client has seen ``user_id`` join, so its next send encrypts for them."""

        def check() -> bool:
            room = self.client.rooms.get(room_id)
            if room is None:
                return False
            member = room.users.get(user_id)
            return member is not None and not member.invited

        await self._wait(check, timeout, f"{user_id} joining {room_id}")

    async def join(self, room_id: str) -> None:
        resp = await self.client.join(room_id)
        if not isinstance(resp, nio.JoinResponse):
            raise RuntimeError(f"{self.user_id} could not join {room_id}: {resp}")
        await self.wait_for_room(room_id)

    async def wait_for_message(
        self,
        room_id: str,
        predicate: Callable[[str, str], bool] = lambda sender, body: True,
        timeout: float = 30,
    ) -> tuple[str, str]:
        def check() -> tuple[str, str] | None:
            for sender, body in self._messages.get(room_id, []):
                if predicate(sender, body):
                    return sender, body
            return None

        return await self._wait(check, timeout, f"a matching message in {room_id}")

    def messages(self, room_id: str) -> list[tuple[str, str]]:
        return list(self._messages.get(room_id, []))

    def undecryptable(self, room_id: str) -> list[str]:
        return list(self._undecryptable.get(room_id, {}))

    # -- sending -----------------------------------------------------------------------------

    async def send_text(self, room_id: str, body: str) -> str:
        """Send m.text, encrypted for every current device of every member."""
        return await self.send(room_id, {"msgtype": "m.text", "body": body})

    async def send(
        self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message"
    ) -> str:
        """Send any event, encrypted for every current device of every member."""
        room = await self.wait_for_room(room_id)
        if not room.members_synced:
            members = await self.client.joined_members(room_id)
            if not isinstance(members, nio.JoinedMembersResponse):
                raise RuntimeError(f"joined_members({room_id}) failed: {members}")
        if room.encrypted and self.client.olm is not None:
            self.client.olm.update_tracked_users(room)
        if self.client.should_query_keys:
            with contextlib.suppress(LocalProtocolError):  # a concurrent sync may have done it
                await self.client.keys_query()
        resp = await self.client.room_send(
            room_id, event_type, content, ignore_unverified_devices=True
        )
        if not isinstance(resp, nio.RoomSendResponse):
            raise RuntimeError(f"{self.user_id} could not send to {room_id}: {resp}")
        return str(resp.event_id)

    def __repr__(self) -> str:
        return f"<MatrixUser {self.user_id} device {self.device_id}>"
