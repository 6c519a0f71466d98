"""Alembic, run from code: `upgrade_to_head(database)` at start-up and by `sealroom migrate`.

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


def head_revision() -> str:
    """The newest revision, read from the migration files (the one no other revises)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revisions.update(_REVISION.findall(source))
        revised.update(_DOWN_REVISION.findall(source))
    heads = revisions - revised
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


async def upgrade_to_head(database: Database, revision: str = "head") -> None:
    if revision == "head" and await current_revision(database) == head_revision():
        return
    from alembic import command

    async with database.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync), revision))


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
