"""`sealroom migrate [--downgrade-to REVISION]`, and the one line for a database that a newer
version migrated (also met by `run`).

Alembic is imported only when a command needs it: importing it already logs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from bridge.preflight import StartupProblem

if TYPE_CHECKING:
    from store import Database
    from store.migrate import SchemaTooNew

EXIT_OK = 0
EXIT_FAILED = 1


async def run_migrate(database_url: str, downgrade_to: str | None) -> int:
    """Upgrade to the newest migration, or undo those after `downgrade_to` (for a rollback).

    Raises:
        StartupProblem: the database is at a migration this version does not know.
    """
    import store.migrate
    from store import Database

    database = Database(database_url)
    try:
        if downgrade_to is None:
            await store.migrate.upgrade_to_head(database)
        elif not await _downgrade(database, downgrade_to):
            return EXIT_FAILED
        print(f"database at revision {await store.migrate.current_revision(database)}")
    except store.migrate.SchemaTooNew as err:
        raise _too_new(err) from None
    finally:
        await database.close()
    return EXIT_OK


async def _downgrade(database: Database, revision: str) -> bool:
    """False (with one line on stderr) when `revision` is not something to go back to."""
    import store.migrate

    known = store.migrate.known_revisions()
    current = await store.migrate.current_revision(database)
    if revision not in known:
        print(
            f"sealroom: --downgrade-to: {revision!r} is not a migration of this version "
            f"({', '.join(known)})",
            file=sys.stderr,
        )
        return False
    if current is None or current not in known:
        print(
            f"sealroom: --downgrade-to: the database is at {current or 'no migration'}, which "
            "this version cannot undo",
            file=sys.stderr,
        )
        return False
    if known.index(revision) < known.index(current):
        await store.migrate.downgrade_to(database, revision)
    return True


def schema_problem(err: BaseException) -> StartupProblem | None:
    """The operator's line if `err` is a database migrated by a newer version, else None."""
    from store.migrate import SchemaTooNew

    return _too_new(err) if isinstance(err, SchemaTooNew) else None


def _too_new(err: SchemaTooNew) -> StartupProblem:
    return StartupProblem(
        f"database.url: {err}; to roll back, run `sealroom migrate --downgrade-to {err.head}` "
        "with the newer version first, or restore the database backup taken before the upgrade "
        "(docs/upgrades.md)"
    )
