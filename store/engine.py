"""The Database: one async engine, SQLite pragmas, and a transaction() context."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from store.batch import Batch
from store.group_commit import GroupCommit

T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database cannot be reached or opened. The message is one line and holds no password.

    `kind` says what went wrong, for a caller that adds advice: "refused", "unresolvable",
    "timeout", "missing_database", "login" or "other".
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


# PostgreSQL SQLSTATEs a caller can give advice for.
_PG_MISSING_DATABASE = "3D000"
_PG_LOGIN_STATES = {"28000", "28P01"}


class Database:
    """Owns the engine; `transaction()` commits on success and rolls back on error."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer = _SqliteWriter(url) if self.is_sqlite and _is_file(url) else None
        if self._writer is not None:
            # Whoever disposes the engine (a test moving to another file) disposes both.
            writer = self._writer
            event.listen(self.engine.sync_engine, "engine_disposed", lambda _: writer.dispose())
        self._group = GroupCommit(self.run_sync)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as db, db.begin():
            yield db

    async def in_group_commit(self, work: Callable[[Batch], T]) -> T:
        """Run `work` in a transaction shared with concurrent callers (store.group_commit);
        its result once that transaction is committed. `work` is synchronous (Core statements
        on the batch; on SQLite it runs in the writer thread) and may run twice (after another
        unit failed the shared transaction), so it touches nothing but the batch."""
        result: T = await self._group.run(work)
        return result

    async def run_sync(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` to completion, beginning and ending its own transactions: on a
        SQLite file in the one writer thread (a single hand-off however many statements), else
        on a connection of the async engine."""
        if self._writer is not None:
            return await self._writer.run(work)
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def describe(self) -> str:
        """Where the database is, for messages: host, port, name and user; never the password."""
        url = make_url(self.url)
        if self.is_sqlite:
            return f"the SQLite database {url.database}"
        where = f"{url.host or 'localhost'}:{url.port or 5432}"
        return f"PostgreSQL at {where} (database {url.database}, user {url.username})"

    def libpq_url(self) -> str:
        """The PostgreSQL URL for libpq (psycopg2): no SQLAlchemy driver name. Holds the
        password: never log it."""
        url = make_url(self.url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    async def check(self, timeout: float = 15.0) -> None:
        """Connect once, so that a wrong URL or a database that is down is one clear message.

        Raises:
            DatabaseUnavailable: with a one-line reason.
        """
        where = self.describe()
        try:
            await asyncio.wait_for(self.ping(), timeout)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"{where} did not answer within {timeout:g} s", "timeout"
            ) from None
        except socket.gaierror:
            raise DatabaseUnavailable(
                f"{where}: the host name does not resolve", "unresolvable"
            ) from None
        except ConnectionRefusedError:
            raise DatabaseUnavailable(f"{where} refused the connection", "refused") from None
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise DatabaseUnavailable(f"{where}: {reason}", "other") from None
        except DBAPIError as err:
            unavailable = self.explain(err)
            assert unavailable is not None
            raise unavailable from None

    def explain(self, err: BaseException) -> DatabaseUnavailable | None:
        """A driver's error as a one-line DatabaseUnavailable, or None for any other exception.

        The driver's own words without SQLAlchemy's boilerplate, so that a start-up failure is
        one line; `kind` says which advice fits.
        """
        if not isinstance(err, DBAPIError):
            return None
        text = str(err.orig).strip()
        reason = text.splitlines()[0] if text else type(err.orig).__name__
        state = getattr(err.orig, "sqlstate", None)
        if state == _PG_MISSING_DATABASE:
            kind = "missing_database"
        elif state in _PG_LOGIN_STATES:
            kind = "login"
        else:
            kind = "other"
        return DatabaseUnavailable(f"{self.describe()}: {reason}", kind)

    async def close(self) -> None:
        await self.engine.dispose()
        if self._writer is not None:
            self._writer.close()


class _SqliteWriter:
    """A synchronous engine on the same SQLite file and the one thread that uses it.

    aiosqlite hands every call (cursor, execute, fetch, close) to its thread and back to the
    loop; the group commit's batch runs here whole instead. SQLite has one writer at a time, so
    one thread loses nothing; the async engine's connections wait on busy_timeout as before.
    """

    def __init__(self, url: str) -> None:
        sync_url = make_url(url).set(drivername="sqlite")
        # check_same_thread off only so that dispose() may close idle connections from the
        # loop's thread; every statement runs in the writer thread.
        self.engine = create_engine(
            sync_url, connect_args={"timeout": 30, "check_same_thread": False}
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sealroom-writer")

    async def run(self, work: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._call, work)

    def _call(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            return work(conn)

    def dispose(self) -> None:
        self.engine.dispose()

    def close(self) -> None:
        self._thread.shutdown(wait=False)
        self.engine.dispose()


def _is_file(url: str) -> bool:
    """A SQLite URL naming a file (an in-memory database is private to its connection)."""
    parsed = make_url(url)
    database = parsed.database or ""
    return database not in ("", ":memory:") and parsed.query.get("mode") != "memory"


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    """WAL lets readers run beside the writer; busy_timeout waits instead of failing."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()
