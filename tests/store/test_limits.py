"""store.limits is the one source of column sizes: the models use it, the migrations agree with it,
and the webhook payload model validates with it. And Database.check says in one line why a
database cannot be used, without its password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import String, inspect

from bridge.devtools.localsynapse import free_port
from bridge.helpdesk.payloads import Ticket, WebhookBody
from store import Database, SecureSession, WebhookDelivery, limits
from store.engine import DatabaseUnavailable
from store.models import Base
from tests.support.databases import BACKENDS, PG_URL, migrated_database, postgres_unreachable


def _max_length(model: type[Any], name: str) -> int | None:
    for meta in model.model_fields[name].metadata:
        if hasattr(meta, "max_length"):
            return int(meta.max_length)
    return None


def _column_length(model: type[Any], name: str) -> int:
    column_type = model.__table__.c[name].type
    assert isinstance(column_type, String)
    assert column_type.length is not None
    return int(column_type.length)


def test_the_payload_model_refuses_what_the_columns_cannot_hold() -> None:
    assert _max_length(Ticket, "id") == _column_length(SecureSession, "ticket_ref")
    assert _max_length(WebhookBody, "agent") == _column_length(SecureSession, "agent_ref")
    assert _max_length(Ticket, "subject") == limits.SUBJECT_MAX
    assert _column_length(WebhookDelivery, "webhook_id") == limits.WEBHOOK_ID_MAX
    assert limits.ACTOR_MAX >= max(limits.AGENT_REF_MAX, limits.MATRIX_ID_MAX)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_migrations_match_the_models_column_sizes(backend: str, tmp_path: Path) -> None:
    """No migration is needed: the migrated schema has exactly the models' column sizes."""
    async with migrated_database(backend, tmp_path) as database:

        def differences(sync_conn: Any) -> list[Any]:
            context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
            found = compare_metadata(context, Base.metadata)
            return [d for d in found if "modify_type" in repr(d) or "add_column" in repr(d)]

        def lengths(sync_conn: Any) -> dict[str, int | None]:
            columns = inspect(sync_conn).get_columns("secure_sessions")
            return {c["name"]: getattr(c["type"], "length", None) for c in columns}

        async with database.engine.connect() as conn:
            assert await conn.run_sync(differences) == []
            found = await conn.run_sync(lengths)
    assert found["ticket_ref"] == limits.TICKET_REF_MAX
    assert found["agent_ref"] == limits.AGENT_REF_MAX
    assert found["integration"] == limits.INTEGRATION_MAX


async def test_check_names_a_refused_postgresql_without_its_password() -> None:
    database = Database(f"postgresql+asyncpg://sealroom:s3cret-pw@127.0.0.1:{free_port()}/db")
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            await database.check(timeout=30)
    finally:
        await database.close()

    assert info.value.kind == "refused"
    assert "127.0.0.1" in str(info.value)
    assert "s3cret-pw" not in str(info.value)
    assert "\n" not in str(info.value)


async def test_check_names_a_missing_database() -> None:
    reason = await postgres_unreachable()
    if reason:
        pytest.skip(reason)
    database = Database(PG_URL.rsplit("/", 1)[0] + "/sealroom_absent_db")
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            await database.check(timeout=30)
    finally:
        await database.close()

    assert info.value.kind == "missing_database"
    assert 'database "sealroom_absent_db" does not exist' in str(info.value)
    assert "sqlalche.me" not in str(info.value)


async def test_check_names_a_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'sealroom.db'}")
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            await database.check(timeout=30)
    finally:
        await database.close()

    assert str(tmp_path / "missing" / "sealroom.db") in str(info.value)
    assert "unable to open database file" in str(info.value)
