"""pytest plugin: a `db` fixture, one migrated Database per test on SQLite and on PostgreSQL.

Each PostgreSQL test runs in a throwaway schema, so tests never see each other's rows and the
`test` database is left as it was found. Registered in tests/conftest.py.
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
import pytest_asyncio
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


@contextlib.asynccontextmanager
async def _throwaway_schema() -> AsyncIterator[str]:
    reason = await postgres_unreachable()
    if reason:
        pytest.skip(reason)
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def _pin_search_path(database: Database, schema: str) -> None:
    """Every pooled connection works inside the test's schema (alembic_version included)."""

    def on_connect(dbapi_connection: Any, _: Any) -> None:
        # On the raw asyncpg connection, outside the adapter's implicit transaction: a SET
        # inside it would be undone by the first rollback (a unique violation, say).
        dbapi_connection.run_async(
            lambda connection: connection.execute(f'SET search_path TO "{schema}"')
        )

    event.listen(database.engine.sync_engine, "connect", on_connect)


@pytest_asyncio.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_database(request.param, tmp_path) as database:
        yield database


@contextlib.asynccontextmanager
async def migrated_database(backend: str, folder: Path) -> AsyncIterator[Database]:
    """A Database at the newest migration on `backend` ("sqlite" in `folder`, or a throwaway
    PostgreSQL schema; skipped with the reason when PostgreSQL is unreachable)."""
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            database = Database(f"sqlite+aiosqlite:///{folder / 'sealroom.db'}")
        else:
            schema = await stack.enter_async_context(_throwaway_schema())
            database = Database(PG_URL)
            _pin_search_path(database, schema)
        stack.push_async_callback(database.close)
        await asyncio.wait_for(store.migrate.upgrade_to_head(database), 30)
        yield database


PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.asynccontextmanager
async def fresh_postgres_database(prefix: str = "sealroom_test") -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped afterwards; skipped with
    the reason when PostgreSQL is unreachable. For what a schema cannot isolate: several
    processes, or the cluster's own schema."""
    reason = await postgres_unreachable()
    if reason:
        pytest.skip(reason)
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
