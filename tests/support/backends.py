"""A migrated Database on either backend, for tests that must behave the same on both.

SQLite lives in the test's folder; PostgreSQL (127.0.0.1:5432, database `test`, trust auth) gets
a throwaway schema per database, so tests never see each other's rows and `test` is left as it
was found. Without a reachable PostgreSQL the test is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event

import store.migrate
from store import Database

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


async def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None."""
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as err:
        return f"PostgreSQL at 127.0.0.1:5432 is unreachable: {err!r}"
    await conn.close()
    return None


def _pin_search_path(database: Database, schema: str) -> None:
    def on_connect(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f'SET search_path TO "{schema}"')
        cursor.close()

    event.listen(database.engine.sync_engine, "connect", on_connect)


@contextlib.asynccontextmanager
async def migrated_database(backend: str, folder: Path) -> AsyncIterator[Database]:
    """A Database at the newest migration on `backend` ("sqlite" or "postgresql")."""
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            database = Database(f"sqlite+aiosqlite:///{folder / 'sealroom.db'}")
        else:
            reason = await postgres_unreachable()
            if reason:
                pytest.skip(reason)
            schema = f"t_{secrets.token_hex(6)}"
            conn = await asyncpg.connect(PG_DSN, timeout=5)
            await conn.execute(f'CREATE SCHEMA "{schema}"')

            async def drop() -> None:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                await conn.close()

            stack.push_async_callback(drop)
            database = Database(PG_URL)
            _pin_search_path(database, schema)
        stack.push_async_callback(database.close)
        await asyncio.wait_for(store.migrate.upgrade_to_head(database), 30)
        yield database
