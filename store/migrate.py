"""Alembic, run from code: `upgrade_to_head(database)` at start-up and by `sealroom migrate`;
`downgrade_to(database, revision)` by `sealroom migrate --downgrade-to` before a rollback."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from store.engine import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


class SchemaTooNew(Exception):
    """The database was migrated by a newer sealroom than this one (after a rollback)."""

    def __init__(self, current: str, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"the database is at migration {current}, which this version does not know (its "
            f"newest is {head}): a newer sealroom upgraded it"
        )


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def head_revision() -> str:
    """The newest migration this version ships."""
    head = _script().get_current_head()
    assert head is not None
    return head


def known_revisions() -> list[str]:
    """This version's migrations, oldest first."""
    return [script.revision for script in reversed(list(_script().walk_revisions()))]


async def upgrade_to_head(database: Database, revision: str = "head") -> None:
    """Raises:
    SchemaTooNew: the database is at a migration this version does not ship.
    """
    current = await current_revision(database)
    if current is not None and current not in known_revisions():
        raise SchemaTooNew(current, head_revision())
    async with database.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync), revision))


async def downgrade_to(database: Database, revision: str) -> None:
    """Undo the migrations after `revision` (one of `known_revisions()`), newest first."""
    async with database.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(_alembic_config(sync), revision))


async def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with database.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
