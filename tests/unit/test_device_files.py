"""The bot device's files: one process per device, private and atomic writes, cached reads."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bridge.matrix.device_files import BotAlreadyRunning, DeviceFiles, SavedLogin


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_second_lock_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = DeviceFiles(tmp_path / "data")
    first.lock()
    try:
        with pytest.raises(BotAlreadyRunning, match="one process per bot"):
            DeviceFiles(tmp_path / "data").lock()
    finally:
        first.unlock()
    again = DeviceFiles(tmp_path / "data")
    again.lock()
    again.unlock()
    assert _mode(tmp_path / "data") == 0o700
    assert (tmp_path / "data" / "crypto").is_dir()


async def test_login_round_trips_in_an_owner_only_file(tmp_path: Path) -> None:
    files = DeviceFiles(tmp_path)
    assert await files.load_login() is None
    login = SavedLogin("@bot:example.org", "DEVICE", "syt_secret")
    await files.save_login(login)
    assert await DeviceFiles(tmp_path).load_login() == login
    assert _mode(tmp_path / "bot.json") == 0o600
    assert not list(tmp_path.glob("*.tmp"))


async def test_the_sync_token_of_an_older_version_is_still_read(tmp_path: Path) -> None:
    """The token now lives in the crypto store; an upgrade resumes from the old sync.json."""
    files = DeviceFiles(tmp_path)
    assert await files.load_sync_token() is None
    (tmp_path / "sync.json").write_text('{"next_batch": "s72_1"}')
    assert await DeviceFiles(tmp_path).load_sync_token() == "s72_1"


async def test_pickle_key_is_configured_or_generated_once(tmp_path: Path) -> None:
    files = DeviceFiles(tmp_path)
    assert await files.pickle_key("from-config") == "from-config"
    assert not (tmp_path / "pickle.key").exists()
    generated = await files.pickle_key(None)
    assert len(generated) >= 32
    assert generated != "DEFAULT_KEY"
    assert await DeviceFiles(tmp_path).pickle_key(None) == generated
    assert _mode(tmp_path / "pickle.key") == 0o600


async def test_fallback_key_time_is_kept(tmp_path: Path) -> None:
    files = DeviceFiles(tmp_path)
    assert await files.fallback_uploaded_at() is None
    await files.save_fallback_uploaded_at(1234.5)
    assert await files.fallback_uploaded_at() == 1234.5
    assert await DeviceFiles(tmp_path).fallback_uploaded_at() == 1234.5


async def test_an_older_versions_backup_json_is_read_then_removed(tmp_path: Path) -> None:
    """Kept only to be imported into the crypto store (bridge.matrix.backup_state)."""
    files = DeviceFiles(tmp_path)
    assert await files.legacy_backed_up() is None
    (tmp_path / "backup.json").write_text(json.dumps({"3": ["session-a", "session-b"]}))
    assert await files.legacy_backed_up() == {"3": ["session-a", "session-b"]}
    await files.remove_legacy_backup()
    assert not (tmp_path / "backup.json").exists()
    assert await files.legacy_backed_up() is None


async def test_an_unreadable_backup_json_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "backup.json").write_text("{not json")
    assert await DeviceFiles(tmp_path).legacy_backed_up() is None
