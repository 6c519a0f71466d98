"""Alembic, run from code: `upgrade_to_head(database)` at start-up and by `sealroom migrate`;
`downgrade_to(database, revision)` by `sealroom migrate --downgrade-to` before a rollback.

Alembic (and Mako under it) is imported only when a migration has to run: a start-up on a
database already at the newest revision reads `alembic_version` with one query and leaves them
out of the process's memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from store.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import Connection

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_REVISION = re.compile(r'^revision\s*=\s*"([^"]+)"', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision\s*=\s*"([^"]+)"', re.MULTILINE)


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

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


def _revisions() -> dict[str, str | None]:
    """{revision: the revision it follows}, read from the migration files (no Alembic)."""
    chain: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision = _REVISION.findall(source)
        if not revision:
            continue  # not a migration (__init__.py)
        down = _DOWN_REVISION.findall(source)
        chain[revision[0]] = down[0] if down else None
    return chain


def known_revisions() -> list[str]:
    """This version's migrations, oldest first."""
    chain = _revisions()
    follows = {down: revision for revision, down in chain.items()}
    ordered: list[str] = []
    current = follows.get(None)
    while current is not None:
        ordered.append(current)
        current = follows.get(current)
    if len(ordered) != len(chain):
        raise RuntimeError(f"the migrations do not form one chain: {sorted(chain)}")
    return ordered


def head_revision() -> str:
    """The newest migration this version ships."""
    return known_revisions()[-1]


async def upgrade_to_head(database: Database, revision: str = "head") -> None:
    """Raises:
    SchemaTooNew: the database is at a migration this version does not ship.
    """
    current = await current_revision(database)
    if revision == "head" and current == head_revision():
        return
    if current is not None and current not in known_revisions():
        raise SchemaTooNew(current, head_revision())
    from alembic import command

    async with database.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync), revision))


async def downgrade_to(database: Database, revision: str) -> None:
    """Undo the migrations after `revision` (one of `known_revisions()`), newest first."""
    from alembic import command

    async with database.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(_alembic_config(sync), revision))


async def current_revision(database: Database) -> str | None:
    """The database's revision; None before the first migration."""
    async with database.engine.connect() as conn:
        if not await conn.run_sync(lambda sync: sync.dialect.has_table(sync, "alembic_version")):
            return None
        try:
            result = await conn.execute(text("SELECT version_num FROM alembic_version"))
        except DBAPIError:
            return None
        value = result.scalar_one_or_none()
        return None if value is None else str(value)
