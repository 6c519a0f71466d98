"""BotClient: the bot's Matrix device: login, sync, event dispatch and typed room calls.

Design answers to MATRIX-NOTES.md:
- one device for life: log in once, keep `bot.json` beside nio's crypto store, then
  `restore_login()`; never log out on shutdown; a file lock stops a second process using it;
- nio's `store_sync_tokens` saves the token *before* handling to-device events, so sealroom keeps
  its own token and writes it only after a sync response is fully handled (hooks included), into
  the crypto store after the keys of that response (bridge.matrix.crypto_store);
- nio ignores a sync response whose `next_batch` equals the token it has, so the saved token is
  given to the first sync as `since` and never set on the client: after a restart with nothing
  new, the first (full-state) sync still tells nio every room;
- the crypto store's pickle key comes from the config (or a generated file), never "DEFAULT_KEY";
- nio's error values become exceptions at this seam (bridge.matrix.failures).

Encryption (key upload, trust, encrypted sends) is `bridge.matrix.e2ee`, which hooks in through
`on_client_ready` and `on_sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog
from aiohttp import ClientConnectionError, ClientError
from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginError,
    RoomMemberEvent,
    RoomMessageText,
    SyncError,
    SyncResponse,
    WhoamiError,
)

from bridge import metrics
from bridge.errors import HomeserverUnavailable, MatrixRequestFailed, MatrixServerUnreachable
from bridge.ids import UserID, server_of
from bridge.logs import register_secret
from bridge.matrix import crypto_store, nio_compat
from bridge.matrix.device_files import DeviceFiles, SavedLogin
from bridge.matrix.failures import (
    raise_for_error,
    raise_for_status,
    remote_server_failed,
    unreachable,
)
from bridge.tasks import cancel_and_wait

log = structlog.stdlib.get_logger(__name__)

T = TypeVar("T")
MemberJoined = Callable[[str, str, str], Awaitable[None]]  # room_id, user_id, event_id
MemberInvited = Callable[[str, str], None]  # room_id, user_id
# Asked only when it matters (an agent's command): is the sending device trusted by the policy?
DeviceTrusted = Callable[[], Awaitable[bool]]
MessageReceived = Callable[
    [str, str, str, str, DeviceTrusted], Awaitable[None]
]  # room_id, sender, body, event_id, device_trusted
SenderTrust = Callable[[str, str | None], Awaitable[bool]]  # sender, sender's curve25519 key
ClientReady = Callable[[AsyncClient], None]
SyncHandled = Callable[[SyncResponse], Awaitable[None]]
# Why this process may not act for the bot right now (a deposed cluster leader), or None.
Fence = Callable[[], str | None]

SYNC_TIMEOUT_MS = 25_000
SYNC_STALE_SECONDS = 90.0


@dataclass(frozen=True)
class BotSettings:
    homeserver_url: str
    user_id: str
    password: str | None
    access_token: str | None
    device_name: str
    display_name: str
    data_dir: Path
    pickle_key: str | None
    request_timeout: float = 30.0


_LITERAL_SEGMENT = re.compile(r"[_a-z][A-Za-z0-9_.]{0,39}")


def endpoint_template(path: str) -> str:
    """A request path with every ID, token and number replaced by {} (bounded label values)."""
    segments = path.split("?", 1)[0].split("/")
    return "/".join(s if not s or _LITERAL_SEGMENT.fullmatch(s) else "{}" for s in segments)


def _observe_request(method: str, path: str, seconds: float) -> None:
    metrics.HOMESERVER_LATENCY.labels(method.upper(), endpoint_template(path)).observe(seconds)


class BotClient:
    """Owns the nio client, its login and its sync loop."""

    def __init__(
        self,
        settings: BotSettings,
        *,
        crypto_database: crypto_store.OpenDatabase | None = None,
        fence: Fence | None = None,
        use_file_lock: bool = True,
    ) -> None:
        """`crypto_database` opens the crypto store's database (default: SQLite in data_dir);
        `fence` is asked before every request; `use_file_lock` is off when a cluster lock
        already keeps other processes off the device."""
        self.settings = settings
        self.files = DeviceFiles(settings.data_dir)
        self.crypto_database = crypto_database or crypto_store.sqlite_database
        self.fence = fence
        self.use_file_lock = use_file_lock
        self.client: AsyncClient | None = None
        self.on_member_joined: MemberJoined | None = None
        self.on_member_left: MemberJoined | None = None
        self.on_message: MessageReceived | None = None
        # Set by the encryption manager: whether the device behind a sender key is trusted.
        self.sender_trusted: SenderTrust | None = None
        self.synced = asyncio.Event()
        self.last_sync_monotonic: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._resume_token: str | None = None
        self._stopping = False
        self._client_ready: list[ClientReady] = []
        self._sync_handled: list[SyncHandled] = []
        self._member_invited: list[MemberInvited] = []

    @property
    def device_id(self) -> str | None:
        return self.client.device_id if self.client else None

    def on_client_ready(self, callback: ClientReady) -> None:
        """Call `callback` with each logged-in nio client (crypto loaded), before it syncs."""
        self._client_ready.append(callback)

    def on_member_invited(self, callback: MemberInvited) -> None:
        """Call `callback(room_id, user_id)` when the sync shows someone newly invited (the
        encryption manager opens Olm sessions with their devices before they join)."""
        self._member_invited.append(callback)

    def on_sync(self, callback: SyncHandled) -> None:
        """Await `callback` after nio handled a sync response and before its token is saved.

        An exception restarts the sync loop (with backoff) without saving that token, so a
        process restarted after it handles the response again.
        """
        self._sync_handled.append(callback)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the lock and start logging in and syncing in the background.

        The homeserver may be down: the service still starts, `synced` is set once it is up.

        Raises:
            NioVersionUnknown: the installed matrix-nio is not one nio_compat was checked with.
            BotAlreadyRunning: another process uses this bot device.
        """
        nio_compat.check_nio_version()
        if self.use_file_lock:
            self.files.lock()
        else:
            self.files.prepare()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="sealroom-bot-sync")

    async def stop(self) -> None:
        """Stop syncing and close the HTTP session. Never log out: that deletes the device."""
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await self._drop_client()
        self.files.unlock()
        self.synced.clear()

    async def check_sync(self) -> str | None:
        """Readiness: None while the last completed sync is recent, else why not."""
        last = self.last_sync_monotonic
        if last is None:
            return "the bot has not synced yet"
        age = time.monotonic() - last
        metrics.SYNC_AGE.set(age)
        return None if age < SYNC_STALE_SECONDS else f"last sync {age:.0f} s ago"

    async def _run(self) -> None:
        delay = 1.0
        while not self._stopping:
            try:
                if self._store_broken():
                    await self._drop_client()
                if self.client is None or not self.client.logged_in:
                    await self._login()
                await self._sync_forever()
            except asyncio.CancelledError:
                raise
            except (HomeserverUnavailable, ClientError, TimeoutError, OSError) as err:
                log.warning("bot.homeserver_unreachable", error=type(err).__name__, retry_in=delay)
            except Exception:
                log.exception("bot.sync_crashed", retry_in=delay)
            self.synced.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _store_broken(self) -> bool:
        writer = crypto_store.writer_of(self.client.store if self.client is not None else None)
        return writer is not None and writer.failed is not None

    async def _drop_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()
            writer = crypto_store.writer_of(client.store)
            if writer is not None:
                await asyncio.to_thread(writer.close)

    async def _new_client(self, device_id: str | None) -> AsyncClient:
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=False,
            pickle_key=await self.files.pickle_key(self.settings.pickle_key),
            max_timeouts=2,
            request_timeout=int(self.settings.request_timeout),
            store=crypto_store.store_class(self.crypto_database, self._store_failed),
        )
        return AsyncClient(
            self.settings.homeserver_url,
            self.settings.user_id,
            device_id=device_id,
            store_path=str(self.files.store_dir),
            config=config,
        )

    async def _login(self) -> None:
        client = await self._logged_in_client()
        try:
            nio_compat.around_requests(client, self._before_request, _observe_request)
            nio_compat.parse_off_loop(client)
            saved = client.store.load_sync_token() if client.store is not None else None
            self._resume_token = saved or await self.files.load_sync_token()
            client.add_event_callback(self._member_event, RoomMemberEvent)
            client.add_event_callback(self._message_event, RoomMessageText)
            for ready in self._client_ready:
                ready(client)
        except BaseException:
            await client.close()
            raise
        self.client = client

    async def _before_request(self) -> None:
        """Before anything leaves: this process may still act, and the crypto state is saved."""
        reason = self.fence() if self.fence is not None else None
        if reason is not None:
            raise HomeserverUnavailable(reason)
        client = self.client
        writer = crypto_store.writer_of(client.store if client is not None else None)
        if writer is not None:
            await writer.flush()

    def _store_failed(self, err: BaseException) -> None:
        """A crypto write failed: every request now fails, and the sync loop starts a new
        client from what the store holds (state that was never saved is never used)."""
        log.error("bot.crypto_store_failed", error=type(err).__name__)

    async def _logged_in_client(self) -> AsyncClient:
        """Restore the saved login; else log in once (token or password) and save it."""
        saved = await self.files.load_login()
        if saved and saved.user_id == self.settings.user_id:
            client = await self._new_client(saved.device_id)
            client.restore_login(saved.user_id, saved.device_id, saved.access_token)
            register_secret(saved.access_token)
            log.info("bot.restored", user_id=client.user_id, device_id=client.device_id)
            return client
        if self.settings.access_token:
            client = await self._new_client(None)
            client.access_token = self.settings.access_token
            whoami = await client.whoami()
            await client.close()
            if isinstance(whoami, WhoamiError) or not whoami.device_id:
                raise_for_error(whoami, "checking the bot's access token")
                raise MatrixRequestFailed("the bot's access token has no device ID")
            client = await self._new_client(whoami.device_id)
            client.restore_login(
                self.settings.user_id, whoami.device_id, self.settings.access_token
            )
            await self._save_login(client)
            log.info("bot.token_login", user_id=client.user_id, device_id=client.device_id)
            return client
        if not self.settings.password:
            raise MatrixRequestFailed("the bot needs bot.password or bot.access_token")
        client = await self._new_client(None)
        response = await client.login(
            password=self.settings.password, device_name=self.settings.device_name
        )
        if isinstance(response, LoginError):
            await client.close()
            raise_for_error(response, "logging in the bot")
        await self._save_login(client)
        log.info("bot.logged_in", user_id=client.user_id, device_id=client.device_id)
        with contextlib.suppress(Exception):
            await client.set_displayname(self.settings.display_name)
        return client

    async def _save_login(self, client: AsyncClient) -> None:
        register_secret(client.access_token)
        await self.files.save_login(
            SavedLogin(client.user_id, client.device_id, client.access_token)
        )

    # -- the sync loop -------------------------------------------------------------------------

    async def _sync_forever(self) -> None:
        client = self.require_client()
        first = True
        while not self._stopping:
            response = await client.sync(
                timeout=0 if first else SYNC_TIMEOUT_MS,
                full_state=first,
                since=client.next_batch or self._resume_token or None,
            )
            if isinstance(response, SyncError):
                raise_for_error(response, "syncing")
            for handled in self._sync_handled:
                await handled(response)
            # Only now is everything in this response handled: the token may move on, committed
            # after the keys of this response.
            await self._save_sync_token(client)
            self.last_sync_monotonic = time.monotonic()
            if first:
                log.info("bot.synced", device_id=client.device_id, rooms=len(client.rooms))
                first = False
            self.synced.set()

    async def _save_sync_token(self, client: AsyncClient) -> None:
        """Into the crypto store, behind the keys of the response it ends."""
        writer = crypto_store.writer_of(client.store)
        if writer is None or client.store is None:
            raise HomeserverUnavailable("the bot's crypto store is not open")
        client.store.save_sync_token(client.next_batch)
        await writer.flush()

    def require_client(self) -> AsyncClient:
        """The logged-in nio client.

        Raises:
            HomeserverUnavailable: not logged in yet.
        """
        if self.client is None:
            raise HomeserverUnavailable("the bot is not logged in yet")
        return self.client

    # -- dispatch (from inside nio's sync handling) ---------------------------------------------

    async def _member_event(self, room: Any, event: RoomMemberEvent) -> None:
        if event.membership == "invite" and event.prev_membership not in ("invite", "join"):
            for invited in self._member_invited:
                invited(room.room_id, event.state_key)
        elif event.membership == "join" and event.prev_membership != "join":
            if self.on_member_joined is not None:
                await self.on_member_joined(room.room_id, event.state_key, event.event_id)
        elif (
            event.membership == "leave"
            and event.prev_membership == "join"
            and event.sender == event.state_key  # left on their own, not removed
            and self.on_member_left is not None
        ):
            await self.on_member_left(room.room_id, event.state_key, event.event_id)

    async def _message_event(self, room: Any, event: RoomMessageText) -> None:
        await self.deliver_message(
            room.room_id, event.sender, event.body, event.event_id, event.sender_key
        )

    async def deliver_message(
        self, room_id: str, sender: str, body: str, event_id: str, sender_key: str | None
    ) -> None:
        """Hand a text message to `on_message` (also for ones decrypted late); not our own.

        `sender_key` is the curve25519 key of the device that encrypted it (None: sent in clear).
        """
        if sender == self.settings.user_id or self.on_message is None:
            return

        async def device_trusted() -> bool:
            return self.sender_trusted is None or await self.sender_trusted(sender, sender_key)

        await self.on_message(room_id, sender, body, event_id, device_trusted)

    # -- requests ------------------------------------------------------------------------------

    async def _call(self, what: str, request: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run one nio request, turning transport failures and error values into exceptions."""
        client = self.require_client()
        try:
            response = await request(client)
        except (ClientConnectionError, TimeoutError, OSError) as err:
            raise unreachable(what, err) from err
        raise_for_error(response, what)
        return response

    async def request(
        self,
        what: str,
        method: str,
        path: list[str],
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """A client-API call nio has no typed method for; (status, JSON body).

        Raises:
            HomeserverUnavailable: unreachable, or a 5xx answer.
        """
        client = self.require_client()
        headers = {"Authorization": f"Bearer {client.access_token}"}
        try:
            response = await client.send(
                method,
                nio_compat.api_path(path, query),
                json.dumps(body) if body is not None else None,
                headers,
            )
            data = await response.json(content_type=None)
        except (ClientError, TimeoutError, OSError, ValueError) as err:
            raise unreachable(what, err) from err
        if response.status >= 500 or not isinstance(data, dict):
            raise HomeserverUnavailable(f"{what}: the homeserver answered {response.status}")
        return response.status, data

    async def request_json(
        self,
        what: str,
        method: str,
        path: list[str],
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Like `request`, raising MatrixRequestFailed for any 4xx answer."""
        status, data = await self.request(what, method, path, body, query)
        raise_for_status(what, status, data)
        return data

    async def wait_until_synced(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.synced.wait(), timeout)
        except TimeoutError:
            raise HomeserverUnavailable("the bot has not synced with the homeserver yet") from None

    async def wait_for_room(self, room_id: str, timeout: float = 30.0) -> None:
        """nio cannot send into a room it has not seen in a sync yet."""
        client = self.require_client()
        deadline = time.monotonic() + timeout
        while room_id not in client.rooms:
            if time.monotonic() > deadline:
                raise HomeserverUnavailable(f"room {room_id} has not appeared in the bot's sync")
            await asyncio.sleep(0.1)

    # -- typed room calls (each raises HomeserverUnavailable or MatrixRequestFailed) -------------

    async def resolve_alias(self, alias: str) -> str:
        response = await self._call(
            "resolving the secure room's alias", lambda c: c.room_resolve_alias(alias)
        )
        return str(response.room_id)

    async def invite(self, room_id: str, user_id: str) -> None:
        """Raises MatrixServerUnreachable when `user_id` is on another homeserver that did not
        answer ours (Synapse says 502): our own homeserver is fine, and the error names theirs."""
        server = server_of(UserID(user_id))
        if server == server_of(UserID(self.settings.user_id)):
            await self._call("inviting", lambda c: c.room_invite(room_id, user_id))
            return
        client = self.require_client()
        try:
            response = await client.room_invite(room_id, user_id)
        except (ClientConnectionError, TimeoutError, OSError) as err:
            raise unreachable("inviting", err) from err
        if remote_server_failed(response):
            raise MatrixServerUnreachable(server, "inviting")
        raise_for_error(response, "inviting")

    async def kick(self, room_id: str, user_id: str, reason: str) -> None:
        await self._call("removing a member", lambda c: c.room_kick(room_id, user_id, reason))

    async def leave(self, room_id: str) -> None:
        await self._call("leaving the room", lambda c: c.room_leave(room_id))
