"""BotClient: the bot's Matrix device. The only module that talks to nio's client directly.

Design answers to MATRIX-NOTES.md:
- one device for life: log in once, keep `bot.json` (0600) beside nio's crypto store, then
  `restore_login()`; never log out on shutdown; a file lock stops a second process using it;
- nio's `store_sync_tokens` saves the token *before* handling to-device events, so sealroom keeps
  its own token and writes it only after a sync response is fully handled;
- a plain `sync()` never uploads, queries or claims keys: our loop does all three after each sync;
- before each send the members' device lists are re-queried, so a fresh device of a member who just
  joined gets the room key;
- the crypto store's pickle key comes from the config (or a generated file), never "DEFAULT_KEY";
- nio's error values are turned into exceptions here (HomeserverUnavailable, MatrixRequestFailed).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog
from aiohttp import ClientConnectionError, ClientError
from nio import (
    Api,
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinedMembersError,
    KeysClaimError,
    KeysQueryError,
    LocalProtocolError,
    LoginError,
    MegolmEvent,
    RoomKeyRequest,
    RoomMemberEvent,
    RoomMessageText,
    ShareGroupSessionError,
    SyncError,
    WhoamiError,
)
from nio.crypto import OlmDevice

from bridge.errors import HomeserverUnavailable, MatrixRequestFailed, SealroomError
from bridge.logs import register_secret
from bridge.matrix import device_keys, trust
from bridge.matrix.key_backup import MEGOLM, BackupTarget, backup_body
from bridge.tasks import cancel_and_wait

log = structlog.stdlib.get_logger(__name__)

T = TypeVar("T")
MemberJoined = Callable[[str, str, str], Awaitable[None]]  # room_id, user_id, event_id
MessageReceived = Callable[
    [str, str, str, str], Awaitable[None]
]  # room_id, sender, body, event_id

SYNC_TIMEOUT_MS = 25_000


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


@dataclass(frozen=True)
class TrustHooks:
    """What the trust policy needs from the domain: the pins, and where to report findings."""

    mode: trust.Mode
    pins: Callable[[list[str]], Awaitable[dict[str, str]]]
    report: Callable[
        [str, dict[str, str], list[tuple[str, str, str]], dict[str, tuple[str, str]]],
        Awaitable[None],
    ]


class BotAlreadyRunning(SealroomError):
    errcode = "SEALROOM_BOT_LOCKED"
    default_message = (
        "Another sealroom process is using this bot device (its data directory is locked). "
        "Run one process per bot, or give each its own bot account and data_dir."
    )


def raise_for_error(response: Any, what: str) -> None:
    """Turn a nio error value into our exception, once, at the seam."""
    if not isinstance(response, ErrorResponse):
        return
    transport = getattr(response, "transport_response", None)
    status = getattr(transport, "status", None)
    errcode = response.status_code
    if errcode is None or (isinstance(status, int) and status >= 500) or errcode == 502:
        raise HomeserverUnavailable(f"{what}: the homeserver answered with an error ({status})")
    raise MatrixRequestFailed(f"{what}: {errcode} {response.message}", str(errcode))


class BotClient:
    """Owns the nio client, its login, its sync loop and its crypto housekeeping."""

    def __init__(self, settings: BotSettings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.store_dir = self.data_dir / "crypto"
        self.client: AsyncClient | None = None
        self.on_member_joined: MemberJoined | None = None
        self.on_message: MessageReceived | None = None
        self.synced = asyncio.Event()
        self.last_sync_monotonic: float | None = None
        self._lock_file: Any = None
        self._task: asyncio.Task[None] | None = None
        self._keys_lock = asyncio.Lock()
        self._undecrypted: dict[str, MegolmEvent] = {}
        self._key_requests: list[RoomKeyRequest] = []
        self._stopping = False
        self._share_failed = False
        # Set by BotIdentity once the account has a key backup; None: nothing is backed up.
        self.backup: BackupTarget | None = None
        # None behaves like the tofu mode.
        self.trust: TrustHooks | None = None
        self._withheld_sent: set[tuple[str, str, str]] = set()
        self._room_locks: dict[str, asyncio.Lock] = {}
        # (user, device) pairs the trust policy excludes; nio consults it through
        # is_device_blacklisted (its own trust store cannot un-blacklist reliably).
        self._excluded: set[tuple[str, str]] = set()
        # When the fallback key was last uploaded (data_dir/keys.json, read once).
        self._fallback_uploaded_at: float | None = None

    # -- files in the data directory -----------------------------------------------------------

    @property
    def device_id(self) -> str | None:
        return self.client.device_id if self.client else None

    def _read_json(self, name: str) -> dict[str, Any] | None:
        path = self.data_dir / name
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None

    def _write_private(self, name: str, text: str) -> None:
        """Atomic write, readable by the owner only (these files hold the device's token)."""
        path = self.data_dir / name
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def _pickle_key(self) -> str:
        if self.settings.pickle_key:
            return self.settings.pickle_key
        path = self.data_dir / "pickle.key"
        if not path.exists():
            self._write_private("pickle.key", secrets.token_urlsafe(32))
            log.warning(
                "bot.pickle_key_generated",
                hint="set bot.pickle_key_file to keep the crypto store key outside data_dir",
            )
        return path.read_text(encoding="utf-8").strip()

    def _acquire_lock(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.data_dir / "bot.lock", "a+")  # noqa: SIM115 (held for our lifetime)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise BotAlreadyRunning() from None
        self._lock_file = handle

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the lock and start logging in and syncing in the background.

        The homeserver may be down: the service still starts, `synced` is set once it is up.
        """
        self._acquire_lock()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="sealroom-bot-sync")

    async def stop(self) -> None:
        """Stop syncing and close the HTTP session. Never log out: that deletes the device."""
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self.client is not None:
            await self.client.close()
        self._release_lock()
        self.synced.clear()

    async def _run(self) -> None:
        delay = 1.0
        while not self._stopping:
            try:
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

    def _new_client(self, device_id: str | None) -> AsyncClient:
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=False,
            pickle_key=self._pickle_key(),
            max_timeouts=2,
            request_timeout=int(self.settings.request_timeout),
        )
        client = AsyncClient(
            self.settings.homeserver_url,
            self.settings.user_id,
            device_id=device_id,
            store_path=str(self.store_dir),
            config=config,
        )
        client.add_event_callback(self._member_event, RoomMemberEvent)
        client.add_event_callback(self._message_event, RoomMessageText)
        client.add_event_callback(self._undecryptable_event, MegolmEvent)
        self._guard_share_errors(client)
        return client

    def _route_trust_to_policy(self, olm: Any) -> None:
        """nio skips 'blacklisted' devices when it shares a room key: let our policy decide."""
        original = olm.is_device_blacklisted

        def is_device_blacklisted(device: OlmDevice) -> bool:
            return (device.user_id, device.id) in self._excluded or bool(original(device))

        olm.is_device_blacklisted = is_device_blacklisted

    def _guard_share_errors(self, client: AsyncClient) -> None:
        """Two nio 0.26 bugs around a failed /sendToDevice while sharing a room key.

        `ShareGroupSessionError.from_dict` puts the shared-with set into `soft_logout`, and
        `receive_response` then clears the access token (every later call fails with
        M_UNKNOWN_TOKEN); and `share_group_session` marks the session shared anyway, so devices
        that missed the key could never read the message. We keep the token and remember the
        failure, so `send_encrypted` can throw the session away and retry.
        """
        original = client.receive_response

        async def receive_response(response: Any) -> None:
            token = client.access_token
            await original(response)
            if isinstance(response, ShareGroupSessionError):
                self._share_failed = True
                if not client.access_token:
                    client.access_token = token
                    log.warning("bot.share_failed_token_kept")

        client.receive_response = receive_response

    async def _login(self) -> None:
        saved = self._read_json("bot.json")
        if saved and saved.get("user_id") == self.settings.user_id:
            client = self._new_client(saved["device_id"])
            client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
            register_secret(saved["access_token"])
            self.client = client
            log.info("bot.restored", user_id=client.user_id, device_id=client.device_id)
        elif self.settings.access_token:
            client = self._new_client(None)
            client.access_token = self.settings.access_token
            whoami = await client.whoami()
            if isinstance(whoami, WhoamiError) or not whoami.device_id:
                await client.close()
                raise_for_error(whoami, "checking the bot's access token")
                raise MatrixRequestFailed("the bot's access token has no device ID")
            await client.close()
            client = self._new_client(whoami.device_id)
            client.restore_login(
                self.settings.user_id, whoami.device_id, self.settings.access_token
            )
            self._save_login(client)
            self.client = client
            log.info("bot.token_login", user_id=client.user_id, device_id=client.device_id)
        else:
            if not self.settings.password:
                raise MatrixRequestFailed("the bot needs bot.password or bot.access_token")
            client = self._new_client(None)
            response = await client.login(
                password=self.settings.password, device_name=self.settings.device_name
            )
            if isinstance(response, LoginError):
                await client.close()
                raise_for_error(response, "logging in the bot")
            self._save_login(client)
            self.client = client
            log.info("bot.logged_in", user_id=client.user_id, device_id=client.device_id)
            with contextlib.suppress(Exception):
                await client.set_displayname(self.settings.display_name)
        token = self._read_sync_token()
        if token:
            self.client.next_batch = token
        if self.client.olm is not None:
            self._route_trust_to_policy(self.client.olm)

    def _save_login(self, client: AsyncClient) -> None:
        register_secret(client.access_token)
        payload = {
            "user_id": client.user_id,
            "device_id": client.device_id,
            "access_token": client.access_token,
        }
        self._write_private("bot.json", json.dumps(payload))

    def _read_sync_token(self) -> str | None:
        saved = self._read_json("sync.json")
        return str(saved["next_batch"]) if saved and saved.get("next_batch") else None

    # -- the sync loop -------------------------------------------------------------------------

    async def _sync_forever(self) -> None:
        client = self._require_client()
        first = True
        while not self._stopping:
            response = await client.sync(
                timeout=0 if first else SYNC_TIMEOUT_MS,
                full_state=first,
                since=client.next_batch or None,
            )
            if isinstance(response, SyncError):
                raise_for_error(response, "syncing")
            # nio drops other users' room-key requests silently; pick them up here.
            self._key_requests.extend(
                event
                for event in response.to_device_events
                if isinstance(event, RoomKeyRequest) and event.sender != client.user_id
            )
            await self._after_sync()
            # Only now is everything in this response handled (to-device keys saved by nio):
            # the token may move on.
            self._write_private("sync.json", json.dumps({"next_batch": client.next_batch}))
            self.last_sync_monotonic = time.monotonic()
            if first:
                log.info("bot.synced", device_id=client.device_id, rooms=len(client.rooms))
                first = False
            self.synced.set()

    async def _after_sync(self) -> None:
        client = self._require_client()
        async with self._keys_lock:
            await self._upload_keys_if_needed()
            if client.should_query_keys:
                response = await client.keys_query()
                if isinstance(response, KeysQueryError):
                    raise_for_error(response, "querying device keys")
            if client.should_claim_keys:
                users = client.get_users_for_key_claiming()
                raise_for_error(await client.keys_claim(users), "claiming one-time keys")
            await self._answer_key_requests()
            await client.send_to_device_messages()
        await self._retry_decryption()

    async def _upload_keys_if_needed(self) -> None:
        client = self._require_client()
        olm = client.olm
        if olm is None:
            return
        if self._fallback_uploaded_at is None:
            state = self._read_json("keys.json") or {}
            self._fallback_uploaded_at = state.get("fallback_uploaded_at")
        uploaded_at = self._fallback_uploaded_at
        if not device_keys.needs_upload(olm, uploaded_at):
            return

        async def post(content: dict[str, Any]) -> dict[str, Any]:
            return await self.request_json("uploading keys", "POST", ["keys", "upload"], content)

        new_uploaded_at = await device_keys.upload(olm, post, uploaded_at)
        if new_uploaded_at != uploaded_at:
            self._write_private("keys.json", json.dumps({"fallback_uploaded_at": new_uploaded_at}))
            self._fallback_uploaded_at = new_uploaded_at

    def _require_client(self) -> AsyncClient:
        if self.client is None:
            raise HomeserverUnavailable("the bot is not logged in yet")
        return self.client

    # -- callbacks (from inside nio's sync handling) --------------------------------------------

    async def _member_event(self, room: Any, event: RoomMemberEvent) -> None:
        if event.membership != "join" or event.prev_membership == "join":
            return
        if self.on_member_joined is not None:
            await self.on_member_joined(room.room_id, event.state_key, event.event_id)

    async def _message_event(self, room: Any, event: RoomMessageText) -> None:
        if event.sender == self.settings.user_id or self.on_message is None:
            return
        await self.on_message(room.room_id, event.sender, event.body, event.event_id)

    async def _undecryptable_event(self, room: Any, event: MegolmEvent) -> None:
        """nio never retries decryption: keep the event and try again when keys arrive."""
        event.room_id = room.room_id
        if len(self._undecrypted) < 1000:
            self._undecrypted[event.event_id] = event
        log.info("bot.undecryptable", room_id=room.room_id, event_id=event.event_id)

    async def _retry_decryption(self) -> None:
        client = self._require_client()
        for event_id, event in list(self._undecrypted.items()):
            try:
                decrypted = client.decrypt_event(event)
            except Exception:  # noqa: S112 (still no key: keep waiting)
                continue
            del self._undecrypted[event_id]
            if isinstance(decrypted, RoomMessageText) and self.on_message is not None:
                if decrypted.sender != self.settings.user_id:
                    await self.on_message(
                        event.room_id, decrypted.sender, decrypted.body, event.event_id
                    )

    async def _answer_key_requests(self) -> None:
        """Re-share our own room keys with devices of the room's current members.

        nio answers only its own user's devices; a member's device that missed a key (for example
        one that logged in just after the key was sent) asks, and gets it if it is still a member.
        """
        client = self._require_client()
        olm = client.olm
        if olm is None:
            return
        requests, self._key_requests = self._key_requests, []
        for event in requests:
            room = client.rooms.get(event.room_id)
            if room is None or event.sender not in room.users:
                log.info("bot.key_request_refused", reason="not a member", room_id=event.room_id)
                continue
            if event.sender_key != olm.account.identity_keys["curve25519"]:
                continue
            group_session = olm.inbound_group_store.get(
                event.room_id, event.sender_key, event.session_id
            )
            device: OlmDevice | None = next(
                (
                    known
                    for known in client.device_store.active_user_devices(event.sender)
                    if known.id == event.requesting_device_id
                ),
                None,
            )
            if group_session is None or device is None:
                log.info(
                    "bot.key_request_refused",
                    reason="unknown session" if group_session is None else "unknown device",
                    room_id=event.room_id,
                )
                continue
            if not await self._device_allowed(event.sender, device.id):
                log.info("bot.key_request_refused", reason="untrusted", room_id=event.room_id)
                continue
            session = olm.session_store.get(device.curve25519)
            if session is None:
                claim = await client.keys_claim({event.sender: [device.id]})
                if isinstance(claim, KeysClaimError):
                    continue
                session = olm.session_store.get(device.curve25519)
                if session is None:
                    continue
            olm.outgoing_to_device_messages.append(
                olm._encrypt_forwarding_key(event.room_id, group_session, session, device)
            )
            log.info("bot.key_reshared", room_id=event.room_id, device_id=device.id)

    # -- operations used by the room adapter ---------------------------------------------------

    async def call(self, what: str, request: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run one nio request, turning transport failures and error values into exceptions."""
        client = self._require_client()
        try:
            response = await request(client)
        except (ClientConnectionError, TimeoutError, OSError) as err:
            raise HomeserverUnavailable(f"{what}: {type(err).__name__}") from err
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
        client = self._require_client()
        headers = {"Authorization": f"Bearer {client.access_token}"}
        try:
            response = await client.send(
                method,
                Api._build_path(path, query),
                json.dumps(body) if body is not None else None,
                headers,
            )
            data = await response.json(content_type=None)
        except (ClientError, TimeoutError, OSError, ValueError) as err:
            raise HomeserverUnavailable(f"{what}: {type(err).__name__}") from err
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
        if status >= 400:
            errcode = str(data.get("errcode", status))
            raise MatrixRequestFailed(f"{what}: {errcode} {data.get('error', '')}", errcode)
        return data

    async def wait_until_synced(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.synced.wait(), timeout)
        except TimeoutError:
            raise HomeserverUnavailable("the bot has not synced with the homeserver yet") from None

    async def wait_for_room(self, room_id: str, timeout: float = 30.0) -> None:
        """nio cannot send into a room it has not seen in a sync yet."""
        client = self._require_client()
        deadline = time.monotonic() + timeout
        while room_id not in client.rooms:
            if time.monotonic() > deadline:
                raise HomeserverUnavailable(f"room {room_id} has not appeared in the bot's sync")
            await asyncio.sleep(0.1)

    async def refresh_devices(self, room_id: str) -> None:
        """Re-query every member's devices before encrypting, so none is stale or missing."""
        client = self._require_client()
        room = client.rooms.get(room_id)
        if room is None or client.olm is None:
            return
        async with self._keys_lock:
            if not room.members_synced:
                response = await client.joined_members(room_id)
                if isinstance(response, JoinedMembersError):
                    raise_for_error(response, "listing room members")
            client.olm.users_for_key_query.update(
                user for user in room.users if user != client.user_id
            )
            if client.should_query_keys:
                response = await client.keys_query()
                if isinstance(response, KeysQueryError):
                    raise_for_error(response, "querying device keys")

    async def _apply_trust(self, room_id: str) -> trust.TrustDecision:
        """Decide which member devices may get the room key (see bridge.matrix.trust)."""
        client = self._require_client()
        room = client.rooms[room_id]
        decision = await self._trust_decision(sorted(room.users))
        excluded = decision.excluded_devices()
        before = {item for item in self._excluded if item[0] in room.users}
        if excluded != before:
            # A device that just lost trust must not keep reading with the current key, and one
            # that gained it needs a key: start a new group session either way.
            client.invalidate_outbound_session(room_id)
            self._excluded = (self._excluded - before) | excluded
        return decision

    async def _device_allowed(self, user_id: str, device_id: str) -> bool:
        """The trust policy for one device (a key request), checked against the homeserver now."""
        decision = await self._trust_decision([user_id])
        return (user_id, device_id) not in decision.excluded_devices()

    async def _trust_decision(self, members: list[str]) -> trust.TrustDecision:
        """The policy's verdict on the members' devices, from the homeserver's current keys."""
        if self.trust is None or self.trust.mode != "strict":
            return trust.TrustDecision()
        answer = await self.request_json(
            "checking the members' identities",
            "POST",
            ["keys", "query"],
            {"device_keys": {user: [] for user in members}},
        )
        pins = await self.trust.pins(members)
        return trust.decide("strict", answer, members, pins, bot_user_id=self.settings.user_id)

    async def _send_withheld(self, room_id: str, decision: trust.TrustDecision) -> None:
        """Tell excluded devices why they get no key (spec: m.room_key.withheld, m.unverified)."""
        client = self._require_client()
        olm = client.olm
        outbound = olm.outbound_group_sessions.get(room_id) if olm else None
        if olm is None or outbound is None:
            return
        messages: dict[str, dict[str, Any]] = {}
        for item in decision.excluded:
            key = (outbound.id, item.user_id, item.device_id)
            if key in self._withheld_sent:
                continue
            self._withheld_sent.add(key)
            messages.setdefault(item.user_id, {})[item.device_id] = {
                "algorithm": MEGOLM,
                "room_id": room_id,
                "session_id": outbound.id,
                "sender_key": olm.account.identity_keys["curve25519"],
                "code": trust.WITHHELD_UNVERIFIED,
                "reason": "This sender shares keys only with devices verified by their owner.",
            }
        if messages:
            await self.request_json(
                "sending withheld notices",
                "PUT",
                ["sendToDevice", "m.room_key.withheld", secrets.token_hex(12)],
                {"messages": messages},
            )

    async def send_encrypted(self, room_id: str, content: dict[str, Any]) -> str:
        """Encrypt and send into a room; one send per room at a time.

        The lock keeps a slow send from applying a stale trust decision after a newer one, and
        keeps nio from sharing two group sessions for one room at once.
        """
        lock = self._room_locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            return await self._send_encrypted(room_id, content)

    async def _send_encrypted(self, room_id: str, content: dict[str, Any]) -> str:
        await self.wait_for_room(room_id)
        await self.refresh_devices(room_id)
        decision = await self._apply_trust(room_id)
        client = self._require_client()
        try:
            if client.olm is not None and client.olm.should_share_group_session(room_id):
                self._share_failed = False
                await client.share_group_session(room_id, ignore_unverified_devices=True)
                if self._share_failed:
                    # Some device did not get the key: start over with a fresh session later.
                    client.invalidate_outbound_session(room_id)
                    raise HomeserverUnavailable("sharing the room key failed; will retry")
            response = await client.room_send(
                room_id, "m.room.message", content, ignore_unverified_devices=True
            )
        except LocalProtocolError as err:
            raise HomeserverUnavailable(f"sending a notice: {err}") from err
        except (ClientConnectionError, TimeoutError, OSError) as err:
            raise HomeserverUnavailable(f"sending a notice: {type(err).__name__}") from err
        raise_for_error(response, "sending a notice")
        await self._backup_outbound_session(room_id)
        await self._send_withheld(room_id, decision)
        if self.trust is not None and (
            decision.excluded or decision.new_pins or decision.identity_changes
        ):
            await self.trust.report(
                room_id,
                decision.new_pins,
                [(item.user_id, item.device_id, item.reason) for item in decision.excluded],
                decision.identity_changes,
            )
        return str(response.event_id)

    async def _backup_outbound_session(self, room_id: str) -> None:
        """Put the room key of what we just sent into the key backup (once per session).

        Best effort: a failure is logged, the notice itself was delivered.
        """
        client = self._require_client()
        olm = client.olm
        if self.backup is None or olm is None:
            return
        outbound = olm.outbound_group_sessions.get(room_id)
        if outbound is None:
            return
        state = self._read_json("backup.json") or {}
        done = set(state.get(self.backup.version, []))
        if outbound.id in done:
            return
        inbound = olm.inbound_group_store.get(
            room_id, olm.account.identity_keys["curve25519"], outbound.id
        )
        if inbound is None:
            return
        try:
            await self.request_json(
                "backing up a room key",
                "PUT",
                ["room_keys", "keys", room_id, outbound.id],
                backup_body(olm, inbound, self.backup.public_key),
                query={"version": self.backup.version},
            )
        except SealroomError as err:
            log.warning("bot.backup_failed", room_id=room_id, error=err.errcode)
            return
        done.add(outbound.id)
        self._write_private("backup.json", json.dumps({self.backup.version: sorted(done)}))
        log.info("bot.room_key_backed_up", room_id=room_id, version=self.backup.version)
