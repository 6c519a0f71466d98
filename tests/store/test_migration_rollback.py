"""Rolling back an upgrade: every migration can be undone and done again on SQLite and
PostgreSQL, and a database that a newer version migrated is refused with what to do."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

import store.migrate
from store import Database
from store.migrate import SchemaTooNew


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_every_migration_can_be_undone_and_done_again(db: Database) -> None:
    known = store.migrate.known_revisions()
    head = store.migrate.head_revision()
    tables_at_head = await _tables(db)
    assert known[-1] == head
    assert len(known) >= 2

    for revision in reversed(known[:-1]):
        await store.migrate.downgrade_to(db, revision)
        assert await store.migrate.current_revision(db) == revision

    assert await _tables(db) < tables_at_head  # later migrations' tables are gone
    await store.migrate.upgrade_to_head(db)
    assert await store.migrate.current_revision(db) == head
    assert await _tables(db) == tables_at_head


async def test_a_database_migrated_by_a_newer_version_is_refused(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))

    with pytest.raises(SchemaTooNew) as info:
        await store.migrate.upgrade_to_head(db)

    assert info.value.current == "9999"
    assert info.value.head == store.migrate.head_revision()
    assert "a newer sealroom upgraded it" in str(info.value)
