"""Key-backup bookkeeping (bridge/matrix/backup_state.py) in the crypto store, on real SQLite and
real PostgreSQL (the cluster's lock connection and `sealroom_crypto` schema).

What the bot uploaded to its key backup is known to the next process and to a standby that
takes over, a new backup version forgets the old rows, and an older version's `backup.json` is
imported once so an upgrade does not upload every session again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.cluster import LeaderConnection, lock_key
from bridge.matrix import crypto_store
from bridge.matrix.backup_state import TABLE, BackupState
from bridge.matrix.device_files import DeviceFiles
from store import Database
from tests.store.test_crypto_store import USER, close, open_store
from tests.support.databases import fresh_postgres_database

Opener = Callable[[], contextlib.AbstractAsyncContextManager[crypto_store.OpenDatabase]]


@contextlib.asynccontextmanager
async def backend_of(backend: str) -> AsyncIterator[Opener]:
    """Yields a way to open the store's database as a new process would: for PostgreSQL, each
    opening is a new lock connection (the next leader), taken after the previous one ended."""
    if backend == "sqlite":

        @contextlib.asynccontextmanager
        async def sqlite() -> AsyncIterator[crypto_store.OpenDatabase]:
            yield crypto_store.sqlite_database

        yield sqlite
        return
    async with fresh_postgres_database("sealroom_crypto_test") as url:

        @contextlib.asynccontextmanager
        async def leader() -> AsyncIterator[crypto_store.OpenDatabase]:
            lock = LeaderConnection(Database(url).libpq_url(), lock_key(USER))
            assert await asyncio.to_thread(lock.try_acquire)
            try:
                yield crypto_store.postgres_database(lock.connection)
            finally:
                await asyncio.to_thread(lock.close)

        yield leader


def state_of(store: Any, files: DeviceFiles) -> BackupState:
    state = BackupState.of(store, files)
    assert state is not None
    return state


async def rows(store: Any) -> set[tuple[str, str, str]]:
    """Every row of the table, read through the writer (as the bot would)."""
    found: list[tuple[str, str, str]] = []

    def read() -> None:
        cursor = store.database.execute_sql(f"SELECT user_id, version, session_id FROM {TABLE}")
        found.extend(tuple(row) for row in cursor.fetchall())

    writer = crypto_store.writer_of(store)
    assert writer is not None
    writer.submit(read)
    await writer.flush()
    return set(found)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_what_is_backed_up_is_known_to_the_next_process(
    backend: str, tmp_path: Path
) -> None:
    files = DeviceFiles(tmp_path / "data")
    async with backend_of(backend) as leader:
        async with leader() as open_database:
            store = open_store(open_database, tmp_path)
            state = state_of(store, files)
            assert not await state.is_backed_up("1", "session-a")
            await state.record("1", "session-a")
            await state.record("1", "session-b")
            await state.record("1", "session-a")  # again: still one row
            assert await state.is_backed_up("1", "session-a")
            await close(store)  # writes what is queued

        async with leader() as open_database:  # a restart, or the standby taking over
            again = open_store(open_database, tmp_path)
            try:
                state = state_of(again, files)
                assert await state.is_backed_up("1", "session-a")
                assert await state.is_backed_up("1", "session-b")
                assert not await state.is_backed_up("2", "session-a")
                assert await rows(again) == {
                    (USER, "1", "session-a"),
                    (USER, "1", "session-b"),
                }
            finally:
                await close(again)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_new_backup_version_forgets_the_older_rows(backend: str, tmp_path: Path) -> None:
    files = DeviceFiles(tmp_path / "data")
    other_user = "@other-bot:example.org"
    async with backend_of(backend) as leader, leader() as open_database:
        store = open_store(open_database, tmp_path)
        try:
            state = state_of(store, files)
            writer = crypto_store.writer_of(store)
            assert writer is not None
            # Another bot's store in the same database (a cluster schema holds every bot's).
            other = BackupState(store.database, writer, other_user, files)
            await other.record("1", "theirs")
            await state.record("1", "session-a")
            await state.record("2", "session-b")
            assert not await state.is_backed_up("1", "session-a")
            assert await state.is_backed_up("2", "session-b")
            assert await rows(store) == {(USER, "2", "session-b"), (other_user, "1", "theirs")}
        finally:
            await close(store)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_an_older_versions_backup_json_is_imported_once(
    backend: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    legacy = data_dir / "backup.json"
    legacy.write_text(json.dumps({"4": ["session-a", "session-b"]}))
    async with backend_of(backend) as leader:
        async with leader() as open_database:
            store = open_store(open_database, tmp_path)
            state = state_of(store, DeviceFiles(data_dir))
            await state.load()
            assert not legacy.exists()  # deleted once its rows were committed
            assert await state.is_backed_up("4", "session-a")
            await close(store)

        async with leader() as open_database:
            again = open_store(open_database, tmp_path)
            try:
                state = state_of(again, DeviceFiles(data_dir))
                assert await state.is_backed_up("4", "session-b")
                assert await rows(again) == {(USER, "4", "session-a"), (USER, "4", "session-b")}
            finally:
                await close(again)


async def test_checks_read_memory_and_records_never_wait_for_the_writer(tmp_path: Path) -> None:
    """The rows are read once; afterwards a send's check is a set lookup, and recording an
    upload only queues its row, even while the writer thread is busy committing."""
    store = open_store(crypto_store.sqlite_database, tmp_path)
    writer = crypto_store.writer_of(store)
    assert writer is not None
    state = state_of(store, DeviceFiles(tmp_path / "data"))
    await state.load()
    commits = writer.commits
    for _ in range(100):
        assert not await state.is_backed_up("1", "session-a")
    await writer.flush()
    assert writer.commits == commits  # no query for any of those checks

    release = threading.Event()
    writer.submit(lambda: release.wait(10))  # the writer thread is busy with this one
    try:
        await state.record("1", "session-a")  # returns although nothing can be committed
        assert writer.pending >= 2
        assert await state.is_backed_up("1", "session-a")
    finally:
        release.set()
    await writer.flush()
    assert await rows(store) == {(USER, "1", "session-a")}
    await close(store)
