"""The bot device's files in `data_dir`, and the lock that keeps a second process off them.

- `bot.lock`: held while the bot runs; two processes on one device would fork its Olm account.
- `bot.json`: the one login (user, device, access token); logging in again makes a new device.
- `sync.json`: the sync token of versions before the token moved into the crypto store (read
  once, as a fallback, when the store has none).
- `keys.json`: when the fallback key was last uploaded.
- `backup.json`: which Megolm sessions were in the key backup, as kept by versions before
  that moved into the crypto store (bridge.matrix.backup_state imports it once, then deletes
  it).
- `pickle.key`: the crypto store's key, generated only when the config gives none.
- `crypto/`: nio's own store (SQLite), opened by nio.

Writes are atomic and durable (write, fsync, rename), owner-only (they hold the device's token),
and run in a thread.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from bridge.errors import SealroomError

log = structlog.stdlib.get_logger(__name__)

LEGACY_BACKUP_FILE = "backup.json"


class BotAlreadyRunning(SealroomError):
    errcode = "SEALROOM_BOT_LOCKED"
    default_message = (
        "Another sealroom process is using this bot device (its data directory is locked). "
        "Run one process per bot, or give each its own bot account and data_dir."
    )


@dataclass(frozen=True)
class SavedLogin:
    user_id: str
    device_id: str
    access_token: str


class DeviceFiles:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.store_dir = data_dir / "crypto"
        self._lock_file: IO[str] | None = None
        # keys.json is written only by this process (it holds the lock), so it is read once and
        # then kept here.
        self._fallback_uploaded_at: float | None = None
        self._fallback_loaded = False

    # -- the lock ------------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the device for this process and prepare the directories (0700).

        Raises:
            BotAlreadyRunning: another process holds the lock.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.data_dir / "bot.lock", "a+")  # noqa: SIM115 (held until unlock)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise BotAlreadyRunning() from None
        self._lock_file = handle
        self.prepare()

    def prepare(self) -> None:
        """The directories (0700), without the lock (a cluster lock guards the device)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)

    def unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # -- reading and writing -------------------------------------------------------------------

    def _read_json(self, name: str) -> dict[str, Any] | None:
        path = self.data_dir / name
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None

    def _write_private(self, name: str, text: str) -> None:
        path = self.data_dir / name
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    async def _read(self, name: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._read_json, name)

    async def _write(self, name: str, data: dict[str, Any]) -> None:
        await asyncio.to_thread(self._write_private, name, json.dumps(data))

    def _pickle_key(self, configured: str | None) -> str:
        if configured:
            return configured
        path = self.data_dir / "pickle.key"
        if not path.exists():
            self._write_private("pickle.key", secrets.token_urlsafe(32))
            log.warning(
                "bot.pickle_key_generated",
                hint="set bot.pickle_key_file to keep the crypto store key outside data_dir",
            )
        return path.read_text(encoding="utf-8").strip()

    async def pickle_key(self, configured: str | None) -> str:
        """The configured key, or one generated once into `pickle.key` (never "DEFAULT_KEY")."""
        return await asyncio.to_thread(self._pickle_key, configured)

    async def load_login(self) -> SavedLogin | None:
        saved = await self._read("bot.json")
        if not saved:
            return None
        return SavedLogin(saved["user_id"], saved["device_id"], saved["access_token"])

    async def save_login(self, login: SavedLogin) -> None:
        await self._write(
            "bot.json",
            {
                "user_id": login.user_id,
                "device_id": login.device_id,
                "access_token": login.access_token,
            },
        )

    async def load_sync_token(self) -> str | None:
        """The token an older version saved here (now it is in the crypto store)."""
        saved = await self._read("sync.json")
        return str(saved["next_batch"]) if saved and saved.get("next_batch") else None

    async def fallback_uploaded_at(self) -> float | None:
        if not self._fallback_loaded:
            state = await self._read("keys.json") or {}
            self._fallback_uploaded_at = state.get("fallback_uploaded_at")
            self._fallback_loaded = True
        return self._fallback_uploaded_at

    async def save_fallback_uploaded_at(self, uploaded_at: float | None) -> None:
        await self._write("keys.json", {"fallback_uploaded_at": uploaded_at})
        self._fallback_uploaded_at = uploaded_at
        self._fallback_loaded = True

    async def legacy_backed_up(self) -> dict[str, list[str]] | None:
        """`backup.json` of an older version ({backup version: [session id]}); None without
        one, or when it cannot be read (logged: its sessions are then backed up again)."""
        try:
            saved = await self._read(LEGACY_BACKUP_FILE)
        except (OSError, ValueError) as err:
            log.warning("bot.legacy_backup_state_unreadable", error=type(err).__name__)
            return None
        if saved is None:
            return None
        return {
            str(version): [str(session_id) for session_id in ids]
            for version, ids in saved.items()
            if isinstance(ids, list)
        }

    async def remove_legacy_backup(self) -> None:
        """Delete `backup.json` once its sessions are committed to the crypto store (if that
        fails, it is imported again at the next start: harmless, the rows are already there)."""
        try:
            await asyncio.to_thread((self.data_dir / LEGACY_BACKUP_FILE).unlink, missing_ok=True)
        except OSError as err:
            log.warning("bot.legacy_backup_state_kept", error=type(err).__name__)
