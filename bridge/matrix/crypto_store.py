"""The bot's crypto store: nio's store with its writes batched and off the event loop.

nio writes its store synchronously from inside sync handling and sends: one commit per Olm
session per key share, and a select for the account row before every write. Here the state is
pickled on the loop (vodozemac objects are not shared with another thread), and the rows are
written by one writer thread that commits everything queued so far in one transaction.

Durability keeps nio's order: `StoreWriter.flush()` runs before every request the bot makes
(bridge.matrix.nio_compat.before_requests), so nothing leaves the process before the crypto
state it depends on is committed; the sync token goes through the same queue after the keys of
its response. Loads (at login) are nio's own code.

The database is SQLite beside the data directory (one instance), or PostgreSQL on the lock
connection of the cluster leader (bridge.cluster): a deposed leader's writes fail with its lost
connection, so two processes never write the same device's state.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee
import structlog
from nio.crypto import OlmDevice, TrustState
from nio.store import (
    Accounts,
    DefaultStore,
    DeviceKeys,
    EncryptedRooms,
    ForwardedChains,
    Keys,
    MatrixStore,
    MegolmInboundSessions,
    OlmSessions,
    OutgoingKeyRequests,
    SyncTokens,
)

log = structlog.stdlib.get_logger(__name__)

Write = Callable[[], None]
OpenDatabase = Callable[[str], peewee.Database]
StoreFailed = Callable[[BaseException], None]

# Rows per commit at most: a backlog is written in bounded transactions.
MAX_BATCH = 500


class CryptoStoreFailed(Exception):
    """A batch of crypto state could not be written; the bot must not go on using it."""


@dataclass
class _Flush:
    future: asyncio.Future[None]


_STOP = object()


class StoreWriter:
    """One thread that writes queued closures, everything pending in one transaction."""

    def __init__(
        self,
        database: peewee.Database,
        loop: asyncio.AbstractEventLoop,
        on_failure: StoreFailed | None = None,
    ) -> None:
        self.database = database
        self.loop = loop
        self.on_failure = on_failure
        self.failed: BaseException | None = None
        self.commits = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._submitted = 0
        self._written = 0
        self._thread = threading.Thread(target=self._run, name="crypto-store", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._submitted - self._written

    def submit(self, write: Write) -> None:
        if self.failed is not None:
            raise CryptoStoreFailed("the crypto store failed earlier") from self.failed
        self._submitted += 1
        self._queue.put(write)

    async def flush(self) -> None:
        """Return once everything submitted so far is committed.

        Raises:
            CryptoStoreFailed: a write failed (the process must not act on unsaved state).
        """
        if self.failed is not None:
            raise CryptoStoreFailed("the crypto store failed earlier") from self.failed
        if self.pending == 0:
            return
        future = self.loop.create_future()
        self._queue.put(_Flush(future))
        await future

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < MAX_BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            writes = [item for item in items if callable(item)]
            if writes and self.failed is None:
                try:
                    with self.database.atomic():
                        for write in writes:
                            write()
                    self.commits += 1
                except BaseException as err:  # noqa: BLE001 (reported to the loop)
                    self.failed = err
                    if self.on_failure is not None:
                        self.loop.call_soon_threadsafe(self.on_failure, err)
            self._written += len(writes)
            for item in items:
                if isinstance(item, _Flush):
                    self.loop.call_soon_threadsafe(self._settle, item.future)
            if any(item is _STOP for item in items):
                return

    def _settle(self, future: asyncio.Future[None]) -> None:
        if future.done():
            return
        if self.failed is not None:
            future.set_exception(CryptoStoreFailed(f"crypto store write failed: {self.failed!r}"))
        else:
            future.set_result(None)


def writer_of(store: MatrixStore | None) -> StoreWriter | None:
    """The writer of a store made by `store_class`, else None."""
    writer = getattr(store, "writer", None)
    return writer if isinstance(writer, StoreWriter) else None


def store_class(
    open_database: OpenDatabase, on_failure: StoreFailed | None = None
) -> type[MatrixStore]:
    """A store class for AsyncClientConfig(store=...) on the database `open_database` makes."""

    @dataclass
    class BatchedStore(DefaultStore):  # type: ignore[misc]
        def _create_database(self) -> peewee.Database:
            return open_database(self.database_path)

        def __post_init__(self) -> None:
            super().__post_init__()
            # Bound for good, so that nio's bind_ctx in one thread never unbinds the models
            # under the writer thread (it restores this same binding).
            self.database.bind(self.models)
            self.writer = StoreWriter(self.database, asyncio.get_running_loop(), on_failure)
            self._account_id: int | None = None
            self._ignored: set[tuple[str, str, str]] = set()

        # -- helpers (writer thread) ---------------------------------------------------------
        # Every query names `self.database`: nio's own store methods (another client's, in
        # the same process) rebind the shared model classes with bind_ctx on the loop thread,
        # and this thread must never follow such a binding into another database.

        def _account_row(self) -> int:
            if self._account_id is None:
                row = (
                    Accounts.select()
                    .where(Accounts.user_id == self.user_id, Accounts.device_id == self.device_id)
                    .get(self.database)
                )
                self._account_id = int(row.id)
            return self._account_id

        def _pickle(self, thing: Any) -> bytes:
            pickled = thing.pickle(self.pickle_key)
            return pickled.encode() if isinstance(pickled, str) else bytes(pickled)

        # -- writes (called by nio on the loop: pickle now, write later) ---------------------

        def save_account(self, account: Any) -> None:
            pickled, shared = self._pickle(account), bool(account.shared)

            def write() -> None:
                Accounts.insert(
                    user_id=self.user_id, device_id=self.device_id, shared=shared, account=pickled
                ).on_conflict(
                    conflict_target=[Accounts.user_id, Accounts.device_id],
                    preserve=[Accounts.account, Accounts.shared],
                ).execute(self.database)

            self.writer.submit(write)

        def save_session(self, curve_key: str, session: Any) -> None:
            row = {
                "sender_key": curve_key,
                "session": self._pickle(session),
                "session_id": session.id,
                "creation_time": session.creation_time,
                "last_usage_date": session.use_time,
            }

            def write() -> None:
                OlmSessions.insert(account=self._account_row(), **row).on_conflict(
                    conflict_target=[OlmSessions.session_id],
                    preserve=[OlmSessions.session, OlmSessions.last_usage_date],
                ).execute(self.database)

            self.writer.submit(write)

        def save_inbound_group_session(self, session: Any) -> None:
            row = {
                "sender_key": session.sender_key,
                "fp_key": session.ed25519,
                "room_id": session.room_id,
                "session": self._pickle(session),
                "session_id": session.id,
            }
            chains = list(session.forwarding_chain)

            def write() -> None:
                MegolmInboundSessions.insert(account=self._account_row(), **row).on_conflict(
                    conflict_target=[MegolmInboundSessions.session_id],
                    preserve=[MegolmInboundSessions.session],
                ).execute(self.database)
                for chain in chains:
                    ForwardedChains.insert(
                        sender_key=chain, session=row["session_id"]
                    ).on_conflict_ignore().execute(self.database)

            self.writer.submit(write)

        def save_device_keys(self, device_keys: dict[str, dict[str, Any]]) -> None:
            devices = [
                (user_id, device_id, device.display_name, bool(device.deleted), dict(device.keys))
                for user_id, by_id in device_keys.items()
                for device_id, device in by_id.items()
            ]
            if not devices:
                return

            def write() -> None:
                account = self._account_row()
                for user_id, device_id, display_name, deleted, keys in devices:
                    DeviceKeys.insert(
                        account=account,
                        user_id=user_id,
                        device_id=device_id,
                        display_name=display_name,
                        deleted=deleted,
                    ).on_conflict(
                        conflict_target=[
                            DeviceKeys.account,
                            DeviceKeys.user_id,
                            DeviceKeys.device_id,
                        ],
                        preserve=[DeviceKeys.deleted, DeviceKeys.display_name],
                    ).execute(self.database)
                    row = (
                        DeviceKeys.select()
                        .where(
                            (DeviceKeys.account == account)
                            & (DeviceKeys.user_id == user_id)
                            & (DeviceKeys.device_id == device_id)
                        )
                        .get(self.database)
                    )
                    for key_type, key in keys.items():
                        Keys.insert(key_type=key_type, key=key, device=row.id).on_conflict(
                            conflict_target=[Keys.device, Keys.key_type], preserve=[Keys.key]
                        ).execute(self.database)

            self.writer.submit(write)

        def save_encrypted_rooms(self, rooms: Any) -> None:
            room_ids = list(rooms)
            if not room_ids:
                return

            def write() -> None:
                account = self._account_row()
                for start in range(0, len(room_ids), 400):
                    EncryptedRooms.insert_many(
                        [(room_id, account) for room_id in room_ids[start : start + 400]],
                        fields=[EncryptedRooms.room_id, EncryptedRooms.account],
                    ).on_conflict_ignore().execute(self.database)

            self.writer.submit(write)

        def delete_encrypted_room(self, room: str) -> None:
            def write() -> None:
                account = self._account_row()
                EncryptedRooms.delete().where(
                    (EncryptedRooms.room_id == room) & (EncryptedRooms.account == account)
                ).execute(self.database)

            self.writer.submit(write)

        def add_outgoing_key_request(self, key_request: Any) -> None:
            row = {
                "request_id": key_request.request_id,
                "session_id": key_request.session_id,
                "room_id": key_request.room_id,
                "algorithm": key_request.algorithm,
            }

            def write() -> None:
                OutgoingKeyRequests.insert(
                    account=self._account_row(), **row
                ).on_conflict_ignore().execute(self.database)

            self.writer.submit(write)

        def remove_outgoing_key_request(self, key_request: Any) -> None:
            request_id = key_request.request_id

            def write() -> None:
                OutgoingKeyRequests.delete().where(
                    (OutgoingKeyRequests.request_id == request_id)
                    & (OutgoingKeyRequests.account == self._account_row())
                ).execute(self.database)

            self.writer.submit(write)

        # -- nio's "ignored" marks: in memory only -------------------------------------------
        # nio marks every device it shares a key with but nobody verified as "ignored", and
        # rewrites (and fsyncs) three trust files on the loop each time. Who gets keys is the
        # trust policy's decision at every send (bridge.matrix.trust); the mark only stops nio
        # from refusing to encrypt, and the next share sets it again after a restart. (sealroom
        # never verifies or blacklists devices in nio's store: the policy answers nio's
        # is_device_blacklisted, bridge.matrix.nio_compat.route_trust_to_policy.)

        def ignore_devices(self, devices: list[OlmDevice]) -> None:
            for device in devices:
                self._ignored.add((device.user_id, device.id, device.ed25519))
                device.trust_state = TrustState.ignored

        def is_device_ignored(self, device: OlmDevice) -> bool:
            key = (device.user_id, device.id, device.ed25519)
            return key in self._ignored or bool(super().is_device_ignored(device))

        def save_sync_token(self, token: str) -> None:
            def write() -> None:
                SyncTokens.insert(account=self._account_row(), token=token).on_conflict(
                    conflict_target=[SyncTokens.account], preserve=[SyncTokens.token]
                ).execute(self.database)

            self.writer.submit(write)

    return BatchedStore


def sqlite_database(path: str) -> peewee.Database:
    """What nio opens by default (one connection per thread), with a wait instead of 'locked'."""
    # WAL: a commit is one fsync of the log instead of three of the file and its journal, and
    # every request to the homeserver waits for the commit before it (see the writer above).
    pragmas = {"foreign_keys": 1, "secure_delete": 1, "journal_mode": "wal", "synchronous": "full"}
    return peewee.SqliteDatabase(path, pragmas=pragmas, timeout=30)


class _HeldPostgres(peewee.PostgresqlDatabase):  # type: ignore[misc]
    """peewee on a psycopg2 connection someone else opened and closes (the lock holder)."""

    def __init__(self, connection: Any) -> None:
        super().__init__("sealroom", autoconnect=False, thread_safe=False)  # name unused
        self._held = connection

    def _connect(self) -> Any:
        if self._held.closed:
            raise peewee.OperationalError("the cluster lock connection is closed")
        self._set_server_version(self._held)
        return self._held

    def _close(self, conn: Any) -> None:
        """Never closed here: losing this connection would be losing the lock."""


def postgres_database(connection: Any) -> OpenDatabase:
    """The crypto store on `connection` (a psycopg2 connection, search_path set by its owner);
    the path nio computes for its SQLite file is not used."""

    def open_database(_path: str) -> peewee.Database:
        return _HeldPostgres(connection)

    return open_database
