"""Fixtures of the unit tier: a migrated SQLite store per test and the domain wired to fakes.

Each test gets its own database file in its tmp_path: a copy of a schema migrated once per run
with `upgrade_to_head` (`world`), or of one in which the real flow, once per run, handled the
open webhook of ticket T-1 (`ticket`) and then created its room (`room`).

The tests share one `Database` (one engine) that only ever points at the current test's file:
SQLAlchemy compiles statements once per engine, and a fresh engine per test cost more than the
rest of a typical test. Between tests the engine's connections are closed and a symlink is moved
to the next test's file (SQLite resolves it, so the WAL files sit beside the real file too).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

import store.migrate
from bridge.ids import UserID
from bridge.jobs import Action
from store import Database
from tests.support.domain import Opened, OpenRoom, OpenTicket, World, build_world


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@dataclass
class SharedStore:
    database: Database
    template: Path
    current: Path  # a symlink to the running test's file


@pytest_asyncio.fixture(scope="session")
async def shared_store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SharedStore]:
    root = tmp_path_factory.mktemp("store")
    template = root / "template.db"
    migrating = Database(_url(template))
    try:
        await store.migrate.upgrade_to_head(migrating)
    finally:
        await migrating.close()  # checkpoints the WAL: the one file holds everything
    shared = SharedStore(Database(_url(root / "current.db")), template, root / "current.db")
    try:
        yield shared
    finally:
        await shared.database.close()


@asynccontextmanager
async def _own_copy(shared: SharedStore, source: Path, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "sealroom.db"
    shutil.copyfile(source, path)
    shared.current.unlink(missing_ok=True)
    shared.current.symlink_to(path)
    try:
        yield shared.database
    finally:
        # Close every connection to this test's file; the next test's open the next file.
        await shared.database.engine.dispose()


@pytest_asyncio.fixture
async def database(shared_store: SharedStore, tmp_path: Path) -> AsyncIterator[Database]:
    """This test's own store: a migrated SQLite file in tmp_path."""
    async with _own_copy(shared_store, shared_store.template, tmp_path) as database:
        yield database


@pytest_asyncio.fixture
async def world(database: Database) -> World:
    return build_world(database)


@dataclass(frozen=True)
class Template:
    """A store in which the real flow already did something, once per run."""

    path: Path
    opened: Opened
    members: tuple[UserID, ...] = ()  # of the room, if one was created


@pytest_asyncio.fixture(scope="session")
async def ticket_template(
    shared_store: SharedStore, tmp_path_factory: pytest.TempPathFactory
) -> Template:
    """The helpdesk's open webhook for T-1 was handled."""
    path = tmp_path_factory.mktemp("ticket") / "ticket.db"
    shutil.copyfile(shared_store.template, path)
    database = Database(_url(path))
    try:
        opened = await build_world(database).open_ticket("T-1")
    finally:
        await database.close()
    return Template(path, opened)


@pytest_asyncio.fixture(scope="session")
async def room_template(
    ticket_template: Template, tmp_path_factory: pytest.TempPathFactory
) -> Template:
    """Then the create_room job ran."""
    path = tmp_path_factory.mktemp("room") / "room.db"
    shutil.copyfile(ticket_template.path, path)
    database = Database(_url(path))
    try:
        world = build_world(database)
        await world.run(Action.CREATE_ROOM)
        room_id = world.rooms.room_id_for_session(ticket_template.opened.session_id)
        members = tuple(world.rooms.rooms[room_id])
    finally:
        await database.close()
    return Template(path, ticket_template.opened, members)


@pytest_asyncio.fixture
async def ticket(
    shared_store: SharedStore, ticket_template: Template, tmp_path: Path
) -> AsyncIterator[OpenTicket]:
    async with _own_copy(shared_store, ticket_template.path, tmp_path) as database:
        yield OpenTicket(build_world(database), ticket_template.opened)


@pytest_asyncio.fixture
async def room(
    shared_store: SharedStore, room_template: Template, tmp_path: Path
) -> AsyncIterator[OpenRoom]:
    async with _own_copy(shared_store, room_template.path, tmp_path) as database:
        world = build_world(database)
        room_id = world.rooms.room_id_for_session(room_template.opened.session_id)
        world.rooms.rooms[room_id] = list(room_template.members)
        yield OpenRoom(world, room_template.opened, room_id)
