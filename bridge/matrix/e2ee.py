"""The bot's end-to-end encryption on top of BotClient (the shape of mautrix's EncryptionManager).

Design answers to MATRIX-NOTES.md, hooked into the client's sync:
- a plain `sync()` never uploads, queries or claims keys: done after each sync, one-time keys
  saved before upload and a fallback key kept (nio_compat.CryptoMachine.upload_keys);
- nio never retries decryption: undecryptable events are kept and retried after each sync;
- nio answers only its own user's key requests: members' devices get re-shared keys here;
- before each send the members' devices are re-queried (one who just joined with a fresh device
  gets the key) and the trust policy (bridge.matrix.trust) decides who gets it, from one
  /keys/query; excluded devices hear why (m.room_key.withheld), and the room key goes into the
  bot's key backup in the background, off the send's critical path;
- when someone is invited, their devices are fetched and Olm sessions opened at once (one
  /keys/claim at a time, created a few devices per loop step), so the first notice after the
  join needs no claim; the room key itself goes out with that notice (strict js-sdk clients
  retry a failed decryption only when a key arrives);
- the trust policy's signature checks run in a worker thread; nio's big answers are parsed, and
  their device signatures checked, in one too (nio_compat.parse_off_loop).
nio's internals are reached only through bridge.matrix.nio_compat.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import ClientConnectionError
from nio import (
    AsyncClient,
    JoinedMembersError,
    KeysClaimError,
    KeysQueryError,
    LocalProtocolError,
    MegolmEvent,
    RoomKeyRequest,
    RoomMessageText,
    SyncResponse,
)
from nio.crypto import OlmDevice

from bridge import metrics
from bridge.errors import HomeserverUnavailable, SealroomError
from bridge.matrix import identity, nio_compat, trust
from bridge.matrix.backup_state import BackupState
from bridge.matrix.client import BotClient
from bridge.matrix.crypto_store import CryptoStoreFailed
from bridge.matrix.failures import raise_for_error, unreachable
from bridge.matrix.nio_compat import CryptoMachine

log = structlog.stdlib.get_logger(__name__)

MEGOLM = "m.megolm.v1.aes-sha2"
MAX_UNDECRYPTED = 1000


@dataclass(frozen=True)
class BackupTarget:
    """The account's key backup (m.megolm_backup.v1); its public key is enough to add to it."""

    version: str
    public_key: str


@dataclass(frozen=True)
class TrustHooks:
    """What the trust policy needs from the domain: the pins, and where to report findings."""

    mode: trust.Mode
    pins: Callable[[list[str]], Awaitable[dict[str, str]]]
    report: Callable[
        [str, dict[str, str], list[tuple[str, str, str]], dict[str, tuple[str, str]]],
        Awaitable[None],
    ]


def backup_body(
    sender_key: str, ed25519: str, index: int, session_key: str, public_key: str
) -> dict[str, Any]:
    """The key-backup entry for one of the bot's own inbound Megolm sessions."""
    session_data = {
        "algorithm": MEGOLM,
        "sender_key": sender_key,
        "session_key": session_key,
        "sender_claimed_keys": {"ed25519": ed25519},
        "forwarding_curve25519_key_chain": [],
    }
    return {
        "first_message_index": index,
        "forwarded_count": 0,
        "is_verified": True,
        "session_data": identity.encrypt_backup_session(public_key, session_data),
    }


class EncryptionManager:
    def __init__(self, bot: BotClient) -> None:
        self.bot = bot
        # Set by BotIdentity once the account has a key backup; None: nothing is backed up.
        self.backup: BackupTarget | None = None
        # None behaves like the tofu mode.
        self.trust: TrustHooks | None = None
        self._keys_lock = asyncio.Lock()
        self._claim_lock = asyncio.Lock()
        self._undecrypted: dict[str, MegolmEvent] = {}
        self._key_requests: list[RoomKeyRequest] = []
        self._share_failures = 0
        self._withheld_sent: set[tuple[str, str, str]] = set()
        self._room_locks: dict[str, asyncio.Lock] = {}
        # (user, device) pairs the trust policy excludes; nio asks through route_trust_to_policy.
        self._excluded: set[tuple[str, str]] = set()
        # Key-backup uploads under way: off the send's critical path (and its room lock).
        self._backups: set[asyncio.Task[None]] = set()
        # Which sessions are in the backup: kept in the current client's crypto store.
        self._backed_up: BackupState | None = None
        # Invitees whose Olm sessions are being opened; the tasks doing it.
        self._sessions_due: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        bot.on_client_ready(self._attach)
        bot.on_member_invited(self._member_invited)
        bot.on_sync(self._after_sync)
        bot.sender_trusted = self.sender_trusted

    def _attach(self, client: AsyncClient) -> None:
        client.add_event_callback(self._undecryptable_event, MegolmEvent)
        nio_compat.guard_share_errors(client, self._note_share_failed)
        nio_compat.route_trust_to_policy(client, self._is_excluded)
        self._backed_up = BackupState.of(client.store, self.bot.files)
        if self._backed_up is not None:  # read (and backup.json imported) before the first send
            self._track_backup(self._load_backup_state(self._backed_up))

    def _note_share_failed(self) -> None:
        self._share_failures += 1

    def _is_excluded(self, user_id: str, device_id: str) -> bool:
        return (user_id, device_id) in self._excluded

    def _machine(self) -> CryptoMachine | None:
        return CryptoMachine.of(self.bot.require_client())

    def device_signature(self, obj: dict[str, Any]) -> str | None:
        """The bot device's signature of `obj`; None while its encryption is not loaded."""
        client = self.bot.client
        machine = CryptoMachine.of(client) if client is not None else None
        return None if machine is None else machine.sign(obj)

    # -- after each sync -----------------------------------------------------------------------

    async def _after_sync(self, response: SyncResponse) -> None:
        client = self.bot.require_client()
        # nio drops other users' room-key requests silently; pick them up here.
        self._key_requests.extend(
            event
            for event in response.to_device_events
            if isinstance(event, RoomKeyRequest) and event.sender != client.user_id
        )
        async with self._keys_lock:
            await self._upload_keys_if_needed()
            if client.should_query_keys:
                queried = await client.keys_query()
                if isinstance(queried, KeysQueryError):
                    raise_for_error(queried, "querying device keys")
            if client.should_claim_keys:
                users = client.get_users_for_key_claiming()
                raise_for_error(await client.keys_claim(users), "claiming one-time keys")
            await self._answer_key_requests()
            await client.send_to_device_messages()
        await self._retry_decryption()

    async def _upload_keys_if_needed(self) -> None:
        machine = self._machine()
        if machine is None:
            return
        uploaded_at = await self.bot.files.fallback_uploaded_at()
        if not machine.needs_key_upload(uploaded_at):
            return

        async def post(content: dict[str, Any]) -> dict[str, Any]:
            return await self.bot.request_json(
                "uploading keys", "POST", ["keys", "upload"], content
            )

        new_uploaded_at = await machine.upload_keys(post, uploaded_at)
        if new_uploaded_at != uploaded_at:
            await self.bot.files.save_fallback_uploaded_at(new_uploaded_at)

    async def _undecryptable_event(self, room: Any, event: MegolmEvent) -> None:
        """nio never retries decryption: keep the event and try again when keys arrive."""
        event.room_id = room.room_id
        if len(self._undecrypted) < MAX_UNDECRYPTED:
            self._undecrypted[event.event_id] = event
        machine = CryptoMachine.of(self.bot.require_client())
        known = machine is not None and machine.has_inbound_session(
            room.room_id, event.sender_key, event.session_id
        )
        cause = "undecryptable" if known else "unknown_session"
        metrics.UNDECRYPTABLE.labels(cause).inc()
        log.info("bot.undecryptable", room_id=room.room_id, event_id=event.event_id, cause=cause)

    async def _retry_decryption(self) -> None:
        client = self.bot.require_client()
        for event_id, event in list(self._undecrypted.items()):
            try:
                decrypted = client.decrypt_event(event)
            except Exception:  # noqa: S112 (still no key: keep waiting)
                continue
            del self._undecrypted[event_id]
            if isinstance(decrypted, RoomMessageText):
                await self.bot.deliver_message(
                    event.room_id,
                    decrypted.sender,
                    decrypted.body,
                    event.event_id,
                    decrypted.sender_key,
                )

    async def _answer_key_requests(self) -> None:
        """Re-share our own room keys with devices of the room's current members.

        nio answers only its own user's devices; a member's device that missed a key (for example
        one that logged in just after the key was sent) asks, and gets it if it is still a member.
        """
        client = self.bot.require_client()
        machine = CryptoMachine.of(client)
        if machine is None:
            return
        requests, self._key_requests = self._key_requests, []
        for event in requests:
            room = client.rooms.get(event.room_id)
            if room is None or event.sender not in room.users:
                log.info("bot.key_request_refused", reason="not a member", room_id=event.room_id)
                continue
            if event.sender_key != machine.curve25519:
                continue
            group_session = machine.own_group_session(event.room_id, event.session_id)
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
            if not machine.has_olm_session(device):
                claim = await client.keys_claim({event.sender: [device.id]})
                if isinstance(claim, KeysClaimError):
                    continue
            if not machine.forward_room_key(event.room_id, group_session, device):
                continue
            log.info("bot.key_reshared", room_id=event.room_id, device_id=device.id)

    # -- trust ---------------------------------------------------------------------------------

    async def refresh_devices(self, room_id: str) -> trust.TrustDecision:
        """Re-query every member's devices before encrypting, so none is stale or missing, and
        have the trust policy decide which may get the room key.

        In strict mode one /keys/query answers both: nio's device store takes the policy's
        answer (the cross-signing keys come with the device keys).
        """
        client = self.bot.require_client()
        room = client.rooms.get(room_id)
        machine = CryptoMachine.of(client)
        if room is None or machine is None:
            return trust.TrustDecision()
        strict = self.trust is not None and self.trust.mode == "strict"
        answer: dict[str, Any] = {}
        async with self._keys_lock:
            if not room.members_synced:
                response = await client.joined_members(room_id)
                if isinstance(response, JoinedMembersError):
                    raise_for_error(response, "listing room members")
            members = sorted(room.users)
            machine.query_keys_of({user for user in members if user != client.user_id})
            if strict:
                users = sorted(machine.users_to_query() | set(members))
                answer = await self._query_keys(users)
                if not await nio_compat.take_keys_query(client, answer):
                    raise HomeserverUnavailable("the homeserver's device keys were unreadable")
            elif client.should_query_keys:
                queried = await client.keys_query()
                if isinstance(queried, KeysQueryError):
                    raise_for_error(queried, "querying device keys")
        if not strict or self.trust is None:
            return trust.TrustDecision()
        pins = await self.trust.pins(members)
        return await self._decide(answer, members, pins)

    async def _decide(
        self, answer: dict[str, Any], members: list[str], pins: dict[str, str]
    ) -> trust.TrustDecision:
        """trust.decide in a worker thread: it checks two signatures per device (canonical JSON
        and ed25519), ~10 ms of CPU for a member with 20 devices. It is a pure function."""
        return await asyncio.to_thread(
            trust.decide, "strict", answer, members, pins, bot_user_id=self.bot.settings.user_id
        )

    async def _query_keys(self, users: list[str]) -> dict[str, Any]:
        return await self.bot.request_json(
            "checking the members' identities",
            "POST",
            ["keys", "query"],
            {"device_keys": {user: [] for user in users}},
        )

    def _apply_trust(self, room_id: str, decision: trust.TrustDecision) -> None:
        """Exclude the devices the policy excludes (see bridge.matrix.trust)."""
        client = self.bot.require_client()
        room = client.rooms[room_id]
        excluded = decision.excluded_devices()
        before = {item for item in self._excluded if item[0] in room.users}
        if excluded != before:
            # A device that just lost trust must not keep reading with the current key, and one
            # that gained it needs a key: start a new group session either way.
            client.invalidate_outbound_session(room_id)
            self._excluded = (self._excluded - before) | excluded

    async def sender_trusted(self, user_id: str, sender_key: str | None) -> bool:
        """Whether the device that encrypted a message is one the trust policy accepts.

        In strict mode a message sent in clear, or by a device the bot does not know, is not.
        """
        if self.trust is None or self.trust.mode != "strict":
            return True
        if sender_key is None:
            return False
        client = self.bot.require_client()
        for device in client.device_store.active_user_devices(user_id):
            if device.curve25519 == sender_key:
                return await self._device_allowed(user_id, device.id)
        return False

    async def _device_allowed(self, user_id: str, device_id: str) -> bool:
        """The trust policy for one device (a key request), checked against the homeserver now."""
        decision = await self._trust_decision([user_id])
        return (user_id, device_id) not in decision.excluded_devices()

    async def _trust_decision(self, members: list[str]) -> trust.TrustDecision:
        """The policy's verdict on the members' devices, from the homeserver's current keys."""
        if self.trust is None or self.trust.mode != "strict":
            return trust.TrustDecision()
        answer = await self._query_keys(members)
        pins = await self.trust.pins(members)
        return await self._decide(answer, members, pins)

    async def _send_withheld(self, room_id: str, decision: trust.TrustDecision) -> None:
        """Tell excluded devices why they get no key (spec: m.room_key.withheld, m.unverified)."""
        machine = self._machine()
        session_id = machine.outbound_session_id(room_id) if machine else None
        if machine is None or session_id is None:
            return
        messages: dict[str, dict[str, Any]] = {}
        for item in decision.excluded:
            key = (session_id, item.user_id, item.device_id)
            if key in self._withheld_sent:
                continue
            self._withheld_sent.add(key)
            messages.setdefault(item.user_id, {})[item.device_id] = {
                "algorithm": MEGOLM,
                "room_id": room_id,
                "session_id": session_id,
                "sender_key": machine.curve25519,
                "code": trust.WITHHELD_UNVERIFIED,
                "reason": "This sender shares keys only with devices verified by their owner.",
            }
        if messages:
            await self.bot.request_json(
                "sending withheld notices",
                "PUT",
                ["sendToDevice", "m.room_key.withheld", secrets.token_hex(12)],
                {"messages": messages},
            )

    # -- sending -------------------------------------------------------------------------------

    async def send_encrypted(self, room_id: str, content: dict[str, Any]) -> str:
        """Encrypt and send into a room; one send per room at a time.

        The lock keeps a slow send from applying a stale trust decision after a newer one, and
        keeps nio from sharing two group sessions for one room at once.
        """
        lock = self._room_locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            return await self._send_encrypted(room_id, content)

    async def _send_encrypted(self, room_id: str, content: dict[str, Any]) -> str:
        await self.bot.wait_for_room(room_id)
        decision = await self.refresh_devices(room_id)
        self._apply_trust(room_id, decision)
        client = self.bot.require_client()
        try:
            await self._share_room_key(room_id)
            response = await client.room_send(
                room_id, "m.room.message", content, ignore_unverified_devices=True
            )
        except LocalProtocolError as err:
            raise HomeserverUnavailable(f"sending a notice: {err}") from err
        except (ClientConnectionError, TimeoutError, OSError) as err:
            raise unreachable("sending a notice", err) from err
        raise_for_error(response, "sending a notice")
        self._start_backup(room_id)
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

    async def _share_room_key(self, room_id: str) -> None:
        """Share the room's Megolm session with the devices that lack it (caller holds the room
        lock, after the trust policy was applied).

        Raises:
            HomeserverUnavailable: some device did not get the key (the session is thrown away,
                so a retry shares a fresh one with everyone).
        """
        client = self.bot.require_client()
        machine = CryptoMachine.of(client)
        if machine is None or not machine.should_share_group_session(room_id):
            return
        await self._claim_missing_sessions(room_id)
        # nio's failure report does not reliably name the room: any failure during this
        # share (in any room) counts as ours, which at worst costs a fresh session.
        failures = self._share_failures
        await client.share_group_session(room_id, ignore_unverified_devices=True)
        if self._share_failures != failures:
            client.invalidate_outbound_session(room_id)
            raise HomeserverUnavailable("sharing the room key failed; will retry")

    async def _claim_missing_sessions(self, room_id: str) -> None:
        """Olm sessions with the room's devices that have none, before nio shares the key.

        One /keys/claim at a time across rooms: rooms whose members are the same (a customer's
        tickets) wait for the first claim instead of claiming the same devices again, and
        nio creates the sessions a few devices per loop step (nio_compat.take_keys_claim).
        nio's share then finds nothing missing, except devices that had no one-time key left.
        """
        client = self.bot.require_client()
        async with self._claim_lock:
            missing = client.get_missing_sessions(room_id)
            if not missing:
                return
            answer = await self.bot.request_json(
                "claiming one-time keys",
                "POST",
                ["keys", "claim"],
                {
                    "one_time_keys": {
                        user_id: dict.fromkeys(devices, nio_compat.KEY_ALGORITHM)
                        for user_id, devices in missing.items()
                    }
                },
            )
            if not await nio_compat.take_keys_claim(client, answer):
                raise HomeserverUnavailable("the homeserver's one-time keys were unreadable")

    # -- Olm sessions ready before the join ------------------------------------------------------

    def _member_invited(self, room_id: str, user_id: str) -> None:
        """Someone was invited: fetch their devices and open Olm sessions with them now, while
        they accept, so the first notice after the join needs no /keys/claim round trip and no
        session set-up on the loop.

        The room key itself is not shared ahead: a strict matrix-js-sdk client (Element's
        "exclude insecure devices") that decrypts a notice before it has fetched the bot's
        device fails with UNKNOWN_SENDER_DEVICE and retries only when a room key arrives. A
        key sent with the notice, after the join, is that arrival; a key shared at the
        invitation was not (tests/e2e/test_bot_interop.py failed 2 runs of 3).
        """
        if user_id == self.bot.settings.user_id or user_id in self._sessions_due:
            return
        self._sessions_due.add(user_id)
        task = asyncio.create_task(
            self._prepare_sessions(room_id, user_id), name="sealroom-olm-sessions"
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _prepare_sessions(self, room_id: str, user_id: str) -> None:
        try:
            client = self.bot.require_client()
            machine = CryptoMachine.of(client)
            if machine is None or room_id not in client.rooms:
                return
            if not client.device_store.active_user_devices(user_id):
                async with self._keys_lock:
                    machine.query_keys_of({user_id})
                    queried = await client.keys_query()
                    if isinstance(queried, KeysQueryError):
                        raise_for_error(queried, "querying device keys")
            await self._claim_missing_sessions(room_id)
            log.info("bot.olm_sessions_ready", room_id=room_id)
        except asyncio.CancelledError:
            raise
        except (SealroomError, LocalProtocolError) as err:
            log.info("bot.olm_sessions_failed", room_id=room_id, error=type(err).__name__)
        except (ClientConnectionError, TimeoutError, OSError) as err:
            log.info("bot.olm_sessions_failed", room_id=room_id, error=type(err).__name__)
        finally:
            self._sessions_due.discard(user_id)

    def _start_backup(self, room_id: str) -> None:
        """Back up the room key of what was just sent, in the background: the customer waiting
        for the notice does not wait for it. A session not backed up (a failure, a stop in
        between) is backed up at the room's next send, which uses the same session."""
        target = self.backup
        machine = self._machine()
        session_id = machine.outbound_session_id(room_id) if machine else None
        if target is None or session_id is None:
            return
        self._track_backup(self._backup_outbound_session(target, room_id, session_id))

    def _track_backup(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="sealroom-backup")
        self._backups.add(task)
        task.add_done_callback(self._backups.discard)

    async def _load_backup_state(self, state: BackupState) -> None:
        try:
            await state.load()
        except CryptoStoreFailed as err:
            log.warning("bot.backup_state_unavailable", error=type(err).__name__)

    async def finish_backups(self, grace: float = 10.0) -> None:
        """Let the key-backup uploads under way finish (at stop); cut short after `grace`.

        Olm sessions being opened for invitees are cancelled: the next send opens them.
        """
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(set(self._background), timeout=grace)
        if self._backups:
            _, pending = await asyncio.wait(set(self._backups), timeout=grace)
            for task in pending:
                task.cancel()

    async def _backup_outbound_session(
        self, target: BackupTarget, room_id: str, session_id: str
    ) -> None:
        """Put the room key of what we sent into the key backup (once per session).

        Best effort: a failure is logged, the notice itself was delivered.
        """
        machine, state = self._machine(), self._backed_up
        if machine is None or state is None:
            return
        try:
            if await state.is_backed_up(target.version, session_id):
                return
            exported = machine.export_own_session(room_id, session_id)
            if exported is None:
                return
            index, session_key = exported
            body = backup_body(
                machine.curve25519, machine.ed25519, index, session_key, target.public_key
            )
            await self.bot.request_json(
                "backing up a room key",
                "PUT",
                ["room_keys", "keys", room_id, session_id],
                body,
                query={"version": target.version},
            )
            await state.record(target.version, session_id)
        except SealroomError as err:
            log.warning("bot.backup_failed", room_id=room_id, error=err.errcode)
            return
        except (ClientConnectionError, TimeoutError, OSError, CryptoStoreFailed) as err:
            log.warning("bot.backup_failed", room_id=room_id, error=type(err).__name__)
            return
        log.info("bot.room_key_backed_up", room_id=room_id, version=target.version)
