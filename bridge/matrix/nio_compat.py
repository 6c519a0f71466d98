"""Every workaround for matrix-nio 0.26 and every nio name that is not public API, in one place.

Other modules use nio's documented client API only (`AsyncClient` methods, responses, events);
whatever reaches into nio's Olm machine (`client.olm`), a private name or a monkeypatch is here.
An nio upgrade starts in this file: check each item against the new version's source, then add
the version to KNOWN_NIO_VERSIONS. On any other version the bot refuses to start.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from typing import Any

import structlog
import vodozemac
from nio import (
    Api,
    AsyncClient,
    KeysClaimResponse,
    KeysQueryError,
    KeysQueryResponse,
    ShareGroupSessionError,
    SyncResponse,
)
from nio.crypto import OlmDevice

from bridge.errors import SealroomError

log = structlog.stdlib.get_logger(__name__)

KNOWN_NIO_VERSIONS = frozenset({"0.26.0"})

FALLBACK_ROTATION_SECONDS = 7 * 24 * 3600
KEY_ALGORITHM = "signed_curve25519"

Post = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class NioVersionUnknown(SealroomError):
    errcode = "SEALROOM_NIO_VERSION_UNKNOWN"


def check_nio_version(installed: str | None = None) -> None:
    """Refuse an nio whose internals nobody checked: its failures would be silent key loss.

    Raises:
        NioVersionUnknown: the installed matrix-nio is not in KNOWN_NIO_VERSIONS.
    """
    if installed is None:
        try:
            installed = metadata.version("matrix-nio")
        except metadata.PackageNotFoundError:
            installed = "none"
    if installed not in KNOWN_NIO_VERSIONS:
        raise NioVersionUnknown(
            f"matrix-nio {installed} is installed, but sealroom's workarounds for nio's "
            f"internals are checked only against {', '.join(sorted(KNOWN_NIO_VERSIONS))} "
            "(bridge/matrix/nio_compat.py). Install a known version."
        )


def api_path(path: Sequence[str], query: dict[str, str] | None = None) -> str:
    """A percent-encoded client-API path (/_matrix/client/v3/...) for a raw request."""
    return str(Api._build_path(list(path), query))


# -- monkeypatches -------------------------------------------------------------------------------


def guard_share_errors(client: AsyncClient, on_failure: Callable[[], None]) -> None:
    """Two nio 0.26 bugs around a failed /sendToDevice while sharing a room key.

    `ShareGroupSessionError.from_dict` puts the shared-with set into `soft_logout`, and
    `receive_response` then clears the access token (every later call fails with
    M_UNKNOWN_TOKEN); and `share_group_session` marks the session shared anyway, so devices
    that missed the key could never read the message. We keep the token and report the
    failure, so the sender can throw the session away and retry.
    """
    original = client.receive_response

    async def receive_response(response: Any) -> None:
        token = client.access_token
        await original(response)
        if isinstance(response, ShareGroupSessionError):
            on_failure()
            if not client.access_token:
                client.access_token = token
                log.warning("bot.share_failed_token_kept")

    client.receive_response = receive_response


def around_requests(
    client: AsyncClient,
    before: Callable[[], Awaitable[None]],
    after: Callable[[str, str, float], None],
) -> None:
    """Await `before()` ahead of every request nio makes (it may raise to refuse the request),
    and call `after(method, path, seconds)` once it is answered.

    Wraps `AsyncClient.send`, which every nio API call goes through: the crypto store is
    flushed there (nothing leaves before the state it depends on is saved) and a deposed
    cluster leader is stopped there.
    """
    original = client.send

    async def send(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        await before()
        started = time.monotonic()
        try:
            return await original(method, path, *args, **kwargs)
        finally:
            after(method, path, time.monotonic() - started)

    client.send = send


# Answers whose parsing (JSON, then nio's jsonschema validation and event objects) can hold the
# loop for tens of ms: a sync of many rooms, the device keys of members with many devices.
_PARSED_OFF_LOOP = (SyncResponse, KeysQueryResponse, KeysClaimResponse)
# Payloads checked in a thread, waiting for nio's verify_json on the loop (bounded).
_PREVERIFIED_MAX = 10_000
_PREVERIFIED_ATTR = "_sealroom_preverified"

Preverified = dict[int, tuple[dict[str, Any], tuple[str, str, str]]]


def _self_signed(payload: dict[str, Any], user_id: str, device_id: str) -> str | None:
    """The device's ed25519 key when `payload` (its /keys/query entry) carries a valid
    signature by it: nio's `OlmMachine.verify_json`, without changing the payload."""
    try:
        key = payload["keys"][f"ed25519:{device_id}"]
        signature = payload["signatures"][user_id][f"ed25519:{device_id}"]
        signed = {k: v for k, v in payload.items() if k not in ("signatures", "unsigned")}
        vodozemac.Ed25519PublicKey.from_base64(key).verify_signature(
            Api.to_canonical_json(signed).encode(),
            vodozemac.Ed25519Signature.from_base64(signature),
        )
    except Exception:  # noqa: BLE001 (anything odd: nio checks it again on the loop)
        return None
    return str(key)


def _preverify(response: Any) -> Preverified:
    """Check the self-signature of every device in a /keys/query answer (worker thread)."""
    verified: Preverified = {}
    device_keys = getattr(response, "device_keys", None)
    if not isinstance(device_keys, dict):
        return verified
    for user_id, devices in device_keys.items():
        for device_id, payload in devices.items():
            key = _self_signed(payload, user_id, device_id)
            if key is not None:
                verified[id(payload)] = (payload, (key, user_id, device_id))
    return verified


def _parse_response(response_class: Any, body: bytes, data: tuple[Any, ...]) -> Any:
    """What nio's `create_matrix_response` makes of a JSON body (unreadable JSON: {}), and
    the device keys it verified."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {}
    response = response_class.from_dict(parsed, *data)
    return response, _preverify(response) if isinstance(response, KeysQueryResponse) else {}


def _remember_preverified(client: AsyncClient, verified: Preverified) -> None:
    store: Preverified | None = getattr(client, _PREVERIFIED_ATTR, None)
    if store is None or not verified:
        return
    if len(store) > _PREVERIFIED_MAX:
        store.clear()
    store.update(verified)


def parse_off_loop(client: AsyncClient) -> None:
    """Parse nio's big answers, and check the device signatures in them, in a worker thread.

    nio parses every answer on the event loop (JSON, jsonschema validation, event objects),
    then checks each device's signature in `_handle_key_query` (canonical JSON + ed25519 per
    device, every time a member's devices are fetched). Both are pure work on data no one
    else sees yet, so they run in a thread (Python switches threads every few ms: the loop
    keeps running). Every state change stays on the loop, in order: `receive_response`, and
    nio's `verify_json`, which answers from the thread's check only for that very payload
    object with the same key, user and device, and checks anything else itself.
    """
    original = client.create_matrix_response

    async def create_matrix_response(
        response_class: Any,
        transport_response: Any,
        data: tuple[Any, ...] | None = None,
        save_to: Any = None,
    ) -> Any:
        if not (isinstance(response_class, type) and issubclass(response_class, _PARSED_OFF_LOOP)):
            return await original(response_class, transport_response, data, save_to)
        body = await transport_response.read()
        response, verified = await asyncio.to_thread(
            _parse_response, response_class, body, data or ()
        )
        _remember_preverified(client, verified)
        response.transport_response = transport_response
        return response

    client.create_matrix_response = create_matrix_response
    olm = client.olm
    if olm is None:
        return
    preverified: Preverified = {}
    setattr(client, _PREVERIFIED_ATTR, preverified)
    verify_json = olm.verify_json

    def verify_json_once(payload: Any, user_key: str, user_id: str, device_id: str) -> bool:
        entry = preverified.pop(id(payload), None)
        if (
            entry is not None
            and entry[0] is payload
            and entry[1] == (user_key, user_id, device_id)
        ):
            return True
        return bool(verify_json(payload, user_key, user_id, device_id))

    olm.verify_json = verify_json_once


def route_trust_to_policy(client: AsyncClient, excluded: Callable[[str, str], bool]) -> None:
    """nio skips 'blacklisted' devices when it shares a room key: let our policy decide.

    nio's own trust store cannot un-blacklist reliably, so `excluded(user_id, device_id)` is
    asked first, then nio's store.
    """
    olm = client.olm
    if olm is None:
        return
    original = olm.is_device_blacklisted

    def is_device_blacklisted(device: OlmDevice) -> bool:
        return excluded(device.user_id, device.id) or bool(original(device))

    olm.is_device_blacklisted = is_device_blacklisted


# -- nio's Olm machine ---------------------------------------------------------------------------


async def take_keys_query(client: AsyncClient, answer: dict[str, Any]) -> bool:
    """Hand nio a /keys/query answer fetched by someone else, as if its own `keys_query()` had
    asked (the device store is updated, the users queried are no longer due). False when the
    answer is not one nio can read."""
    # Validating and checking many devices' keys takes a while: off the loop (parse_off_loop).
    response = await asyncio.to_thread(KeysQueryResponse.from_dict, answer)
    if isinstance(response, KeysQueryError):
        return False
    _remember_preverified(client, await asyncio.to_thread(_preverify, response))
    await client.receive_response(response)
    return True


# Olm sessions nio creates per loop step from a /keys/claim answer (~0.7 ms of CPU each).
CLAIMS_PER_STEP = 4


async def take_keys_claim(client: AsyncClient, answer: dict[str, Any]) -> bool:
    """Hand nio a /keys/claim answer fetched by someone else, a few devices per loop step.

    nio creates an Olm session (and checks a signature, and saves the account) for every
    device of an answer in one go: 20 devices held the loop ~15 ms, far more on a busy
    machine. Split, each step is a few ms. False when the answer is not one nio can read.
    """
    one_time_keys = answer.get("one_time_keys")
    if not isinstance(one_time_keys, dict):
        return False
    devices = [
        (user_id, device_id, keys)
        for user_id, by_device in one_time_keys.items()
        if isinstance(by_device, dict)
        for device_id, keys in by_device.items()
    ]
    for start in range(0, len(devices), CLAIMS_PER_STEP):
        part: dict[str, dict[str, Any]] = {}
        for user_id, device_id, keys in devices[start : start + CLAIMS_PER_STEP]:
            part.setdefault(user_id, {})[device_id] = keys
        response = KeysClaimResponse.from_dict({"one_time_keys": part, "failures": {}})
        if not isinstance(response, KeysClaimResponse):
            return False
        await client.receive_response(response)
        await asyncio.sleep(0)
    return True


class CryptoMachine:
    """What sealroom reads and writes in nio's Olm machine (`client.olm`, not public API)."""

    def __init__(self, olm: Any) -> None:
        self._olm = olm

    @classmethod
    def of(cls, client: AsyncClient) -> CryptoMachine | None:
        """None until nio has loaded the crypto store (after login)."""
        return None if client.olm is None else cls(client.olm)

    @property
    def curve25519(self) -> str:
        return str(self._olm.account.identity_keys["curve25519"])

    @property
    def ed25519(self) -> str:
        return str(self._olm.account.identity_keys["ed25519"])

    def sign(self, obj: dict[str, Any]) -> str:
        """The device's ed25519 signature of `obj` (canonical JSON)."""
        return str(self._olm.sign_json(obj))

    def should_share_group_session(self, room_id: str) -> bool:
        return bool(self._olm.should_share_group_session(room_id))

    def query_keys_of(self, users: set[str]) -> None:
        """Have the next `keys_query()` fetch these users' devices, changed or not."""
        self._olm.users_for_key_query.update(users)

    def users_to_query(self) -> set[str]:
        """Whose devices the next `keys_query()` would fetch."""
        return set(self._olm.users_for_key_query)

    def outbound_session_id(self, room_id: str) -> str | None:
        outbound = self._olm.outbound_group_sessions.get(room_id)
        return None if outbound is None else str(outbound.id)

    def own_group_session(self, room_id: str, session_id: str) -> Any | None:
        """One of the bot's own inbound Megolm sessions (opaque; for `forward_room_key`)."""
        return self._olm.inbound_group_store.get(room_id, self.curve25519, session_id)

    def has_inbound_session(self, room_id: str, sender_key: str, session_id: str) -> bool:
        return self._olm.inbound_group_store.get(room_id, sender_key, session_id) is not None

    def export_own_session(self, room_id: str, session_id: str) -> tuple[int, str] | None:
        """(first known index, session key exported at it), for the key backup."""
        group_session = self.own_group_session(room_id, session_id)
        if group_session is None:
            return None
        index = int(group_session.first_known_index)
        return index, str(group_session.export_session(index))

    def has_olm_session(self, device: OlmDevice) -> bool:
        return self._olm.session_store.get(device.curve25519) is not None

    def forward_room_key(self, room_id: str, group_session: Any, device: OlmDevice) -> bool:
        """Queue an m.forwarded_room_key for `device`; False without an Olm session to it.

        Sent with the client's next `send_to_device_messages()`.
        """
        session = self._olm.session_store.get(device.curve25519)
        if session is None:
            return False
        self._olm.outgoing_to_device_messages.append(
            self._olm._encrypt_forwarding_key(room_id, group_session, session, device)
        )
        return True

    # -- key upload without nio's crash window, and with a fallback key --------------------------
    #
    # nio generates one-time keys in memory, uploads them, and saves its account only after the
    # answer. A crash in between leaves the server holding keys the saved account never had; the
    # next keys get the same ids with other material, and Synapse refuses every later upload
    # ("One time key ... already exists"). Here the account is saved *before* the upload, so a
    # retry after a crash sends exactly the same keys, which the server accepts. nio also never
    # uploads a fallback key: a bot whose one-time keys ran out while it was down could not be
    # reached by new devices. We upload one and rotate it weekly.

    def _signed(self, key: str, *, fallback: bool = False) -> dict[str, Any]:
        olm = self._olm
        body: dict[str, Any] = {"key": key}
        if fallback:
            body["fallback"] = True
        body["signatures"] = {olm.user_id: {f"ed25519:{olm.device_id}": self.sign(dict(body))}}
        return body

    def _device_keys(self) -> dict[str, Any]:
        olm = self._olm
        keys: dict[str, Any] = {
            "algorithms": olm._algorithms,
            "device_id": olm.device_id,
            "user_id": olm.user_id,
            "keys": {
                f"curve25519:{olm.device_id}": self.curve25519,
                f"ed25519:{olm.device_id}": self.ed25519,
            },
        }
        keys["signatures"] = {olm.user_id: {f"ed25519:{olm.device_id}": self.sign(dict(keys))}}
        return keys

    def needs_key_upload(
        self, fallback_uploaded_at: float | None, now: float | None = None
    ) -> bool:
        olm = self._olm
        now = time.time() if now is None else now
        vz = olm.account._account
        if not olm.account.shared or vz.one_time_keys or vz.fallback_key:
            return True  # first upload, or keys prepared by a run that did not finish
        if fallback_uploaded_at is None or now - fallback_uploaded_at > FALLBACK_ROTATION_SECONDS:
            return True
        if olm.uploaded_key_count is None:
            return False
        return bool(olm.uploaded_key_count < vz.max_number_of_one_time_keys // 2)

    async def upload_keys(self, post: Post, fallback_uploaded_at: float | None) -> float | None:
        """Prepare keys, save the account, upload; returns when the fallback key was uploaded.

        Keys prepared by an earlier run that crashed are sent again as they are (never
        regenerated).
        """
        olm = self._olm
        vz = olm.account._account
        target = vz.max_number_of_one_time_keys // 2
        pending = dict(vz.one_time_keys)
        if not pending and olm.account.shared and olm.uploaded_key_count is not None:
            missing = target - olm.uploaded_key_count
            if missing > 0:
                vz.generate_one_time_keys(missing)
        elif not pending and not olm.account.shared:
            vz.generate_one_time_keys(target)
        now = time.time()
        rotate = (
            fallback_uploaded_at is None or now - fallback_uploaded_at > FALLBACK_ROTATION_SECONDS
        )
        if rotate and not vz.fallback_key:
            vz.generate_fallback_key()
        # The crash-window fix: the keys exist on disk before the server can have them.
        olm.save_account()

        content: dict[str, Any] = {}
        if not olm.account.shared:
            content["device_keys"] = self._device_keys()
        one_time = {
            f"{KEY_ALGORITHM}:{key_id}": self._signed(key.to_base64())
            for key_id, key in vz.one_time_keys.items()
        }
        if one_time:
            content["one_time_keys"] = one_time
        fallback = {
            f"{KEY_ALGORITHM}:{key_id}": self._signed(key.to_base64(), fallback=True)
            for key_id, key in vz.fallback_key.items()
        }
        if fallback:
            content["fallback_keys"] = fallback
        answer = await post(content)
        counts = answer.get("one_time_key_counts", {})
        olm.account.shared = True
        olm.uploaded_key_count = int(counts.get(KEY_ALGORITHM, 0))
        vz.mark_keys_as_published()
        olm.save_account()
        log.info(
            "bot.keys_uploaded",
            one_time_keys=len(one_time),
            fallback_key=bool(fallback),
            server_count=olm.uploaded_key_count,
        )
        return now if fallback else fallback_uploaded_at
