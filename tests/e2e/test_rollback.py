"""Going back to an older version after an upgrade, with the real CLI in a child process: `run`
on a database a newer version migrated stops, touching nothing, with one line saying how to roll
back (`migrate --downgrade-to` itself: tests/unit/test_cli.py, tests/store)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import store.migrate
from tests.e2e.test_startup import sealroom, write_config


def test_run_refuses_a_database_migrated_by_a_newer_version(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    assert sealroom("migrate", "-c", str(path)).returncode == 0
    database = tmp_path / "data" / "sealroom.db"
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")

    result = sealroom("run", "-c", str(path))

    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sealroom: database.url: the database is at migration 9999")
    assert f"--downgrade-to {store.migrate.head_revision()}" in last
    with sqlite3.connect(database) as conn:  # nothing was touched
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("9999",)
