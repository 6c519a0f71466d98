"""An independent Matrix client for the tests: matrix-js-sdk with its Rust crypto, under Node.js.

``tests/interop/client.mjs`` is one device of one account, driven over JSON lines; ``JsClient``
is its asyncio wrapper and ``js_client`` the pytest fixture that makes them. The point is a
second implementation of the protocol (Element's crypto stack, not nio's): it checks that our
bot's device is cross-signed, that strict mode ("only cross-signed devices", MSC4153) decrypts
its notices, and that a recovery key opens secret storage and the key backup.

Register with ``pytest_plugins`` or import ``js_client`` into a test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bridge.devtools.localsynapse import LocalSynapse
from bridge.tasks import cancel_and_wait
from tests.support.npm import npm_ci, unavailable

INTEROP_DIR = Path(__file__).resolve().parents[1] / "interop"
CLIENT_SCRIPT = INTEROP_DIR / "client.mjs"

_counter = itertools.count(1)


class JsClientError(RuntimeError):
    """The Node client answered ``ok: false``, died, or did not answer in time."""


class JsClient:
    """One matrix-js-sdk device in its own Node process."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self._process = process
        self.log_path = log_path
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_answers(), name="jsclient reader")
        self.user_id = ""
        self.device_id = ""
        self.password = ""
        self.startup_seconds = 0.0
        self.login_info: dict[str, Any] = {}
        self.bootstrap_info: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        homeserver_url: str,
        user_id: str,
        password: str,
        *,
        device_name: str | None = None,
        log_dir: Path | None = None,
        strict: bool = False,
        timeout: float = 60,
        node: str | None = None,
        env: dict[str, str] | None = None,
    ) -> JsClient:
        """Spawn ``node client.mjs``, log in a new device and wait for its first sync."""
        node = node or shutil.which("node")
        if node is None:
            raise JsClientError("node is not installed")
        if not (INTEROP_DIR / "node_modules").is_dir():
            raise JsClientError(f"no node_modules in {INTEROP_DIR}: run `npm ci` there")
        log_dir = Path(log_dir) if log_dir else Path(os.environ.get("TMPDIR", "/tmp"))
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"jsclient-{next(_counter)}-{secrets.token_hex(3)}.log"
        began = time.monotonic()
        log_file = open(log_path, "ab")  # noqa: SIM115 (the child keeps it)
        try:
            process = await asyncio.create_subprocess_exec(
                node,
                str(CLIENT_SCRIPT),
                cwd=str(INTEROP_DIR),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env={**os.environ, **(env or {})},
                limit=16 * 1024 * 1024,
            )
        finally:
            log_file.close()
        self = cls(process, log_path)
        self.user_id = user_id
        try:
            await self._wait(self._ready, timeout, "the Node process to start")
            info = await self.call(
                "login",
                timeout=timeout,
                homeserver_url=homeserver_url,
                user_id=user_id,
                password=password,
                device_name=device_name,
            )
            self.user_id = str(info["user_id"])
            self.device_id = str(info["device_id"])
            self.password = password
            self.login_info = info
            if strict:
                await self.set_strict(True)
        except BaseException:
            await self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    async def stop(self, timeout: float = 10) -> None:
        """Ask the process to exit, then kill it if it does not; never logs the device out."""
        if self._process.returncode is None:
            with contextlib.suppress(JsClientError, OSError, ConnectionError):
                await self.call("stop", timeout=5)
            try:
                await asyncio.wait_for(self._process.wait(), timeout)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        await cancel_and_wait(self._reader)

    @property
    def running(self) -> bool:
        return self._process.returncode is None

    # -- the protocol ------------------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def _read_answers(self) -> None:
        assert self._process.stdout is not None
        error: BaseException | None = None
        try:
            while line := await self._process.stdout.readline():
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    continue  # not ours: the protocol is one JSON object per line
                if message.get("id") == 0 and message.get("ready"):
                    if not self._ready.done():
                        self._ready.set_result(message)
                    continue
                future = self._pending.pop(message.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except Exception as exc:  # pragma: no cover - a broken pipe
            error = exc
        code = await self._process.wait()
        failure = JsClientError(
            f"the Node client exited with code {code}"
            + (f" ({error!r})" if error else "")
            + f"; log {self.log_path}:\n{self.log_tail()}"
        )
        for future in [self._ready, *self._pending.values()]:
            if not future.done():
                future.set_exception(failure)
        self._pending.clear()

    async def _wait(
        self, future: asyncio.Future[dict[str, Any]], timeout: float, what: str
    ) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise JsClientError(
                f"no answer after {timeout} s for {what}; log {self.log_path}:\n{self.log_tail()}"
            ) from None

    async def call(self, cmd: str, *, timeout: float = 60, **args: Any) -> dict[str, Any]:
        """Send one command and return its answer; ``ok: false`` raises ``JsClientError``.

        ``timeout`` (seconds) goes to the Node side too, which gives up first and says why.
        """
        if self._process.returncode is not None or self._process.stdin is None:
            raise JsClientError(f"the Node client is not running; log {self.log_path}")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        # Commands that wait use ``timeout`` themselves; the others ignore it.
        payload = {k: v for k, v in args.items() if v is not None} | {"timeout": timeout}
        self._process.stdin.write(
            json.dumps({"id": request_id, "cmd": cmd, **payload}).encode() + b"\n"
        )
        try:
            await self._process.stdin.drain()
            # The Node side has its own deadline for waits; give it a moment to say so itself.
            answer = await self._wait(future, timeout + 5, f"{cmd}")
        finally:
            self._pending.pop(request_id, None)
        if not answer.get("ok"):
            raise JsClientError(f"{cmd} failed for {self.user_id}: {answer.get('error')}")
        answer.pop("id", None)
        answer.pop("ok", None)
        return answer

    # -- commands ----------------------------------------------------------------------------

    async def set_strict(self, strict: bool = True) -> None:
        """Strict: OnlySignedDevicesIsolationMode (MSC4153); else AllDevicesIsolationMode."""
        await self.call("set_strict", strict=strict)

    async def wait_invite(self, room_id: str | None = None, timeout: float = 30) -> str:
        answer = await self.call("wait_invite", room_id=room_id, timeout=timeout)
        return str(answer["room_id"])

    async def join(self, room_id: str, timeout: float = 30) -> dict[str, Any]:
        return await self.call("join", room_id=room_id, timeout=timeout)

    async def create_room(
        self,
        invite: Collection[str] = (),
        *,
        encrypted: bool = True,
        name: str | None = None,
        timeout: float = 30,
    ) -> str:
        answer = await self.call(
            "create_room", invite=list(invite), encrypted=encrypted, name=name, timeout=timeout
        )
        return str(answer["room_id"])

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.call("invite", room_id=room_id, user_id=user_id)

    async def wait_joined(self, room_id: str, user_id: str, timeout: float = 30) -> None:
        await self.call("wait_joined", room_id=room_id, user_id=user_id, timeout=timeout)

    async def wait_message(
        self,
        room_id: str,
        *,
        sender: str | None = None,
        contains: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """The first decrypted m.room.message matching; without ``sender``, not our own.

        The answer has ``sender``, ``body``, ``event_id``, ``shield`` and ``undecryptable``
        (how many events of the room this client could not decrypt, with
        ``undecryptable_reasons``).
        """
        return await self.call(
            "wait_message", room_id=room_id, sender=sender, contains=contains, timeout=timeout
        )

    async def messages(self, room_id: str) -> dict[str, Any]:
        """``{"messages": [...], "undecryptable": [{"reason": ..., ...}], "pending": n}``."""
        return await self.call("messages", room_id=room_id)

    async def wait_undecryptable(
        self,
        room_id: str,
        *,
        reasons: Collection[str] | None = None,
        sender: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Until an event of the room failed to decrypt (for one of ``reasons``); return it."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while True:
            last = await self.messages(room_id)
            for failure in last["undecryptable"]:
                if (reasons is None or failure["reason"] in reasons) and (
                    sender is None or failure["sender"] == sender
                ):
                    return dict(failure)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.user_id}: no undecryptable event ({reasons}) in {room_id} after "
                    f"{timeout} s; state: {last}"
                )
            await asyncio.sleep(0.2)

    async def send(self, room_id: str, body: str, timeout: float = 30) -> str:
        """Send an encrypted m.text; fails if the room is not encrypted."""
        answer = await self.call("send", room_id=room_id, body=body, timeout=timeout)
        return str(answer["event_id"])

    async def device_status(
        self, user_id: str, device_id: str, *, refresh: bool = True
    ) -> dict[str, Any]:
        """Trust in one device after a fresh key query, as the Rust crypto sees it.

        Keys: ``signedByOwner``, ``crossSigningVerified``, ``localVerified``, ``isVerified``,
        ``device_known``, ``user`` (getUserVerificationStatus), ``cross_signing``
        (``has_keys``, ``master_key``, ``own_master_key_id``) and ``server`` (the raw
        /keys/query view: ``master_key``, ``self_signing_key``,
        ``device_signed_by_self_signing_key``).
        """
        return await self.call(
            "device_status", user_id=user_id, device_id=device_id, refresh=refresh
        )

    async def open_secret_storage(self, recovery_key: str) -> dict[str, Any]:
        """Check the recovery key, read the secrets, and cross-sign this device from them.

        ``{"key_ok", "secrets": {name: decrypts}, "stored": {name: exists},
        "own_device_cross_signed", ...}``; a malformed key raises ``JsClientError``.
        """
        return await self.call("open_secret_storage", recovery_key=recovery_key)

    async def backup_info(self, *, restore: bool | None = None) -> dict[str, Any]:
        """``{"version", "algorithm", "count", "trusted", "matches_decryption_key", ...}``.

        With the backup key from secret storage (or ``restore=True``) the backup is restored
        and ``restored`` is ``{"total", "imported"}``.
        """
        return await self.call("backup_info", restore=restore, timeout=120)

    async def bootstrap(self, password: str | None = None, *, reset: bool = False) -> str:
        """Cross-signing, secret storage and a new key backup for this account.

        Returns the new recovery key; ``self.bootstrap_info`` keeps the whole answer.
        """
        answer = await self.call(
            "bootstrap", password=password or self.password, reset=reset, timeout=120
        )
        self.bootstrap_info = answer
        return str(answer["recovery_key"])

    def __repr__(self) -> str:
        return f"<JsClient {self.user_id} device {self.device_id}>"


# -- installing the Node dependencies ------------------------------------------------------------

_npm_lock = asyncio.Lock()
_npm_checked = False


async def ensure_node_modules() -> None:
    """Run ``npm ci`` in tests/interop once if needed; skip without Node unless CI=true."""
    global _npm_checked
    what = "the matrix-js-sdk interop client"
    if shutil.which("node") is None:
        unavailable(what, "node is not installed")
    async with _npm_lock:
        if not _npm_checked:
            await npm_ci(INTEROP_DIR, what)
            _npm_checked = True


# -- the fixture ---------------------------------------------------------------------------------

JsClientFactory = Callable[..., Awaitable[JsClient]]


@pytest_asyncio.fixture(loop_scope="session")
async def js_client(
    synapse: LocalSynapse, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[JsClientFactory]:
    """``await js_client("carol")`` gives a logged-in, syncing matrix-js-sdk device.

    Without ``user_id`` a fresh account is registered (``name`` prefixes its localpart); pass
    ``user_id`` and ``password`` for another device of an existing account. Other keywords:
    ``homeserver_url`` (e.g. a FaultProxy's url), ``device_name``, ``strict``.
    Each client's Node log is ``client.log_path``, in the test's tmp dir.
    """
    await ensure_node_modules()
    clients: list[JsClient] = []
    log_dir = tmp_path_factory.mktemp("jsclient")

    async def make(
        name: str = "js",
        *,
        user_id: str | None = None,
        password: str | None = None,
        homeserver_url: str | None = None,
        device_name: str | None = None,
        strict: bool = False,
        timeout: float = 60,
    ) -> JsClient:
        if user_id is None:
            password = password or secrets.token_urlsafe(16)
            localpart = f"{name}-{next(_counter)}-{secrets.token_hex(3)}".lower()
            user_id = await synapse.register_user(localpart, password)
        elif password is None:
            raise ValueError("an existing user_id needs its password")
        client = await JsClient.start(
            homeserver_url or synapse.url,
            user_id,
            password,
            device_name=device_name or f"js {name}",
            log_dir=log_dir,
            strict=strict,
            timeout=timeout,
        )
        clients.append(client)
        return client

    yield make
    await asyncio.gather(*(client.stop() for client in clients), return_exceptions=True)
