"""The bot's crypto store (bridge/matrix/crypto_store.py) on real SQLite and real PostgreSQL.

What nio saves through it is what nio loads back after a restart or a failover: the account,
Olm and Megolm sessions, device keys, encrypted rooms and the sync token. Writes are queued and
committed by one thread; `flush()` is the point after which they are durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio.crypto import (
    InboundGroupSession,
    OlmAccount,
    OlmDevice,
    OutboundGroupSession,
    OutboundSession,
)

from bridge.cluster import LeaderConnection, lock_key
from bridge.matrix import crypto_store
from store import Database
from tests.support.databases import fresh_postgres_database

USER = "@bot:example.org"
DEVICE = "BOTDEVICE"
PICKLE_KEY = "pickle-key-for-tests"


@contextlib.asynccontextmanager
async def opener(backend: str) -> AsyncIterator[crypto_store.OpenDatabase]:
    if backend == "sqlite":
        yield crypto_store.sqlite_database
        return
    async with fresh_postgres_database("sealroom_crypto_test") as url:
        lock = LeaderConnection(Database(url).libpq_url(), lock_key(USER))
        assert await asyncio.to_thread(lock.try_acquire)
        try:
            yield crypto_store.postgres_database(lock.connection)
        finally:
            await asyncio.to_thread(lock.close)


def open_store(open_database: crypto_store.OpenDatabase, folder: Path) -> Any:
    return crypto_store.store_class(open_database)(USER, DEVICE, str(folder), PICKLE_KEY, "")


async def close(store: Any) -> None:
    writer = crypto_store.writer_of(store)
    assert writer is not None
    await asyncio.to_thread(writer.close)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_what_is_saved_is_loaded_by_the_next_process(backend: str, tmp_path: Path) -> None:
    async with opener(backend) as open_database:
        store = open_store(open_database, tmp_path)
        account, peer = OlmAccount(), OlmAccount()
        peer.generate_one_time_keys(1)
        one_time_key = next(iter(peer.one_time_keys["curve25519"].values()))
        olm_session = OutboundSession(account, peer.identity_keys["curve25519"], one_time_key)
        outbound = OutboundGroupSession()
        inbound = InboundGroupSession(
            outbound.session_key,
            account.identity_keys["ed25519"],
            account.identity_keys["curve25519"],
            "!room:example.org",
            forwarding_chain=["forwarder-curve-key"],
        )
        device = OlmDevice(
            "@alice:example.org",
            "ALICEPHONE",
            {"ed25519": "alice-ed25519", "curve25519": "alice-curve25519"},
            display_name="Alice's phone",
        )
        store.save_account(account)
        store.save_session(peer.identity_keys["curve25519"], olm_session)
        store.save_inbound_group_session(inbound)
        store.save_device_keys({"@alice:example.org": {"ALICEPHONE": device}})
        store.save_encrypted_rooms({"!room:example.org", "!other:example.org"})
        store.save_sync_token("s1_first")
        store.save_sync_token("s2_second")  # the newer token replaces the older
        device.deleted = True
        store.save_device_keys({"@alice:example.org": {"ALICEPHONE": device}})
        writer = crypto_store.writer_of(store)
        assert writer is not None
        await writer.flush()
        assert writer.pending == 0
        await close(store)

        again = open_store(open_database, tmp_path)
        try:
            loaded = again.load_account()
            assert loaded is not None
            assert loaded.identity_keys == account.identity_keys
            sessions = again.load_sessions()
            assert sessions.get(peer.identity_keys["curve25519"]).id == olm_session.id
            group = again.load_inbound_group_sessions()
            found = group.get("!room:example.org", inbound.sender_key, inbound.id)
            assert found is not None
            assert found.forwarding_chain == ["forwarder-curve-key"]
            devices = again.load_device_keys()
            alice = devices["@alice:example.org"]["ALICEPHONE"]
            assert alice.ed25519 == "alice-ed25519"
            assert alice.deleted is True
            assert again.load_encrypted_rooms() == {"!room:example.org", "!other:example.org"}
            assert again.load_sync_token() == "s2_second"
        finally:
            await close(again)


async def test_writes_stay_in_the_bots_store_while_another_client_rebinds_the_models(
    tmp_path: Path,
) -> None:
    """Another nio client in the process (a test's agent, say) runs its store's methods inside
    `bind_ctx`, which rebinds nio's model classes for everyone: the writer thread must still
    write into the bot's own database, never into that client's."""
    (tmp_path / "bot").mkdir()
    store = open_store(crypto_store.sqlite_database, tmp_path / "bot")
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    other = crypto_store.sqlite_database(str(other_folder / "other.db"))  # empty: no tables
    account = OlmAccount()
    store.save_account(account)
    writer = crypto_store.writer_of(store)
    assert writer is not None
    await writer.flush()
    try:
        with other.bind_ctx(store.models):  # as nio's DefaultStore does around each method
            store.save_sync_token("s1_written_meanwhile")
            await writer.flush()
    finally:
        await close(store)

    again = open_store(crypto_store.sqlite_database, tmp_path / "bot")
    try:
        assert again.load_sync_token() == "s1_written_meanwhile"
    finally:
        await close(again)
    other.close()


async def test_a_failed_write_refuses_everything_after_it(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    store = crypto_store.store_class(crypto_store.sqlite_database, failures.append)(
        USER, DEVICE, str(tmp_path), PICKLE_KEY, ""
    )
    writer = crypto_store.writer_of(store)
    assert writer is not None
    # The account row does not exist yet: the session's write fails (foreign key).
    store.save_sync_token("s1")
    with pytest.raises(crypto_store.CryptoStoreFailed):
        await writer.flush()
    assert failures  # the owner was told, on the loop
    with pytest.raises(crypto_store.CryptoStoreFailed):
        store.save_account(OlmAccount())
    await close(store)


async def test_the_lock_connection_is_the_fence(tmp_path: Path) -> None:
    """A write after the lock's connection is gone fails: no deposed leader writes."""
    async with fresh_postgres_database("sealroom_crypto_test") as url:
        lock = LeaderConnection(
            Database(url).libpq_url(), lock_key(f"{USER}-{secrets.token_hex(2)}")
        )
        assert await asyncio.to_thread(lock.try_acquire)
        store = open_store(crypto_store.postgres_database(lock.connection), tmp_path)
        store.save_account(OlmAccount())
        writer = crypto_store.writer_of(store)
        assert writer is not None
        await writer.flush()
        await asyncio.to_thread(lock.close)
        store.save_sync_token("s-after-the-lock")
        with pytest.raises(crypto_store.CryptoStoreFailed):
            await writer.flush()
        await close(store)


async def test_writes_queued_while_one_commits_share_the_next_commit(tmp_path: Path) -> None:
    """nio's one commit per Olm session per key share becomes one commit per batch."""
    import threading

    store = open_store(crypto_store.sqlite_database, tmp_path)
    writer = crypto_store.writer_of(store)
    assert writer is not None
    store.save_account(OlmAccount())
    await writer.flush()
    commits = writer.commits
    release = threading.Event()
    writer.submit(lambda: release.wait(10))  # the writer thread is busy with this one
    for room in range(200):
        store.save_encrypted_rooms([f"!room{room}:example.org"])
    release.set()
    await writer.flush()
    assert writer.commits - commits <= 2  # the slow one, then all 200 together (or all at once)
    await close(store)
    again = open_store(crypto_store.sqlite_database, tmp_path)
    assert len(again.load_encrypted_rooms()) == 200
    await close(again)


async def test_the_sqlite_store_commits_durably_through_a_write_ahead_log(tmp_path: Path) -> None:
    """WAL with full sync: one fsync per commit, and a commit is on disk once flush() returns,
    readable by another connection (the next process) before this one closes."""
    store = open_store(crypto_store.sqlite_database, tmp_path)
    try:
        store.save_account(OlmAccount())
        store.save_sync_token("s9_committed")
        writer = crypto_store.writer_of(store)
        assert writer is not None
        await writer.flush()
        [path] = [p for p in tmp_path.iterdir() if p.suffix == ".db"]
        with contextlib.closing(sqlite3.connect(path)) as other:
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            tokens = [row[0] for row in other.execute("SELECT token FROM synctokens")]
        assert tokens == ["s9_committed"]
        assert store.database.execute_sql("PRAGMA synchronous").fetchone() == (2,)  # FULL
    finally:
        await close(store)
