"""Fixtures of the unit tier: a migrated SQLite store per test and the domain wired to fakes.

Migrating costs about 0.1 s, so the schema is migrated once per run (`upgrade_to_head`) into a
template file, and every test gets its own copy of it in its tmp_path: independent stores at the
price of a file copy.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

import store.migrate
from store import Database
from tests.support.domain import World, build_world


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest_asyncio.fixture(scope="session")
async def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "sealroom.db"
    database = Database(_url(path))
    try:
        await store.migrate.upgrade_to_head(database)
    finally:
        await database.close()  # checkpoints the WAL: the one file holds everything
    return path


@pytest_asyncio.fixture
async def database(migrated_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "sealroom.db"
    shutil.copyfile(migrated_template, path)
    database = Database(_url(path))
    try:
        yield database
    finally:
        await database.close()


@pytest_asyncio.fixture
async def world(database: Database) -> World:
    return build_world(database)
