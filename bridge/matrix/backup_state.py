"""Which of the bot's Megolm sessions are already in its key backup, kept in the crypto store.

One row per (user, backup version, session id) in the crypto store's database (SQLite beside
the device, or the cluster's `sealroom_crypto` schema), so a standby that takes over knows what
the leader uploaded. The rows are read once into a set (a send never queries them) and written
through the store's writer thread (never on the event loop, batched with nio's own writes). A
new backup version forgets the rows of the older ones. The `backup.json` of older versions is
imported at the first load and then deleted.

Losing a row costs one more upload of that session (the PUT is idempotent), never a key.
"""

from __future__ import annotations

import asyncio
from typing import Any

import peewee
import structlog
from nio.store import MatrixStore

from bridge.matrix.crypto_store import StoreWriter, writer_of
from bridge.matrix.device_files import DeviceFiles

log = structlog.stdlib.get_logger(__name__)

TABLE = "sealroom_backed_up_sessions"
# Rows per INSERT: SQLite allows 999 parameters per statement in older builds.
_CHUNK = 300


def _model(database: peewee.Database) -> Any:
    """The table's model, bound to this store's database only (nio rebinds its own shared
    model classes under other threads; a class per store never follows such a binding)."""

    bound = database

    class BackedUpSession(peewee.Model):  # type: ignore[misc]
        # The user, not the device: the key backup is the account's, and one database may hold
        # several bots' stores (a cluster's schema is shared by every bot on that database).
        user_id = peewee.TextField()
        version = peewee.TextField()
        session_id = peewee.TextField()

        class Meta:
            database = bound
            table_name = TABLE
            primary_key = peewee.CompositeKey("user_id", "version", "session_id")

    return BackedUpSession


class BackupState:
    """The set of backed-up sessions of one crypto store (one logged-in nio client)."""

    def __init__(
        self, database: peewee.Database, writer: StoreWriter, user_id: str, files: DeviceFiles
    ) -> None:
        self.writer = writer
        self.user_id = user_id
        self.files = files
        self._rows = _model(database)
        self._by_version: dict[str, set[str]] | None = None
        self._loading = asyncio.Lock()

    @classmethod
    def of(cls, store: MatrixStore | None, files: DeviceFiles) -> BackupState | None:
        """The state kept in `store` (one made by crypto_store.store_class), else None."""
        writer = writer_of(store)
        if store is None or writer is None:
            return None
        return cls(store.database, writer, str(store.user_id), files)

    async def load(self) -> None:
        """Create the table if needed, import `backup.json` once, read the rows (once).

        Raises:
            CryptoStoreFailed: the crypto store cannot be written.
        """
        async with self._loading:
            if self._by_version is not None:
                return
            legacy = await self.files.legacy_backed_up()
            imported = [
                {"user_id": self.user_id, "version": version, "session_id": session_id}
                for version, ids in (legacy or {}).items()
                for session_id in ids
            ]
            found: list[tuple[str, str]] = []
            rows = self._rows

            def read() -> None:  # in the writer thread, inside its transaction
                rows.create_table(safe=True)
                for start in range(0, len(imported), _CHUNK):
                    chunk = imported[start : start + _CHUNK]
                    rows.insert_many(chunk).on_conflict_ignore().execute()
                query = rows.select(rows.version, rows.session_id).where(
                    rows.user_id == self.user_id
                )
                found.extend((row.version, row.session_id) for row in query)

            self.writer.submit(read)
            await self.writer.flush()
            by_version: dict[str, set[str]] = {}
            for version, session_id in found:
                by_version.setdefault(version, set()).add(session_id)
            self._by_version = by_version
            if legacy is not None:
                await self.files.remove_legacy_backup()
                log.info("bot.legacy_backup_state_imported", sessions=len(imported))

    async def is_backed_up(self, version: str, session_id: str) -> bool:
        """Whether `session_id` is in the backup `version` (a query only the first time).

        Raises:
            CryptoStoreFailed: the crypto store cannot be written.
        """
        if self._by_version is None:
            await self.load()
        assert self._by_version is not None
        return session_id in self._by_version.get(version, set())

    async def record(self, version: str, session_id: str) -> None:
        """Remember an uploaded session, at once in memory; its row is committed by the writer
        thread (before the bot's next request), not awaited here. Rows of other backup
        versions are forgotten.

        Raises:
            CryptoStoreFailed: the crypto store failed.
        """
        if self._by_version is None:
            await self.load()
        assert self._by_version is not None
        rows, user_id = self._rows, self.user_id
        forget_others = bool(set(self._by_version) - {version})

        def write() -> None:  # in the writer thread
            if forget_others:
                older = (rows.user_id == user_id) & (rows.version != version)
                rows.delete().where(older).execute()
            rows.insert(
                user_id=user_id, version=version, session_id=session_id
            ).on_conflict_ignore().execute()

        self.writer.submit(write)
        sessions = self._by_version.setdefault(version, set())
        sessions.add(session_id)  # in place: no copy of a set that grows with every room
        if forget_others:
            self._by_version = {version: sessions}
