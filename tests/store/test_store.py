"""store/ on both backends: SQLite (the default) and PostgreSQL (production), same test bodies.

Each PostgreSQL test runs in a throwaway schema, so tests never see each other's rows and the
`test` database is left as it was found.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError, StatementError

import store.invites
import store.jobs
import store.migrate
import store.sessions
from store import Database, Invite, Job, SecureSession, WebhookDelivery

TABLES = {"secure_sessions", "invites", "webhook_deliveries", "jobs", "audit_events"}
NOW = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)


async def add_session(
    database: Database,
    *,
    ticket_ref: str = "T-1",
    integration: str = "helpdesk",
    state: str = "pending",
) -> str:
    session_id = str(uuid.uuid4())
    async with database.transaction() as tx:
        tx.add(
            SecureSession(
                id=session_id,
                integration=integration,
                ticket_ref=ticket_ref,
                subject="",
                agent_ref="alice",
                room_alias=f"#sealroom-{session_id}:example.org",
                state=state,
                created_at=NOW,
                updated_at=NOW,
                expires_at=NOW + timedelta(hours=72),
            )
        )
    return session_id


async def add_invite(
    database: Database,
    session_id: str,
    *,
    expires_at: datetime = NOW + timedelta(hours=24),
    revoked_at: datetime | None = None,
) -> int:
    async with database.transaction() as tx:
        invite = Invite(
            session_id=session_id,
            token_hash=secrets.token_hex(32),
            created_at=NOW,
            expires_at=expires_at,
            revoked_at=revoked_at,
        )
        tx.add(invite)
        await tx.flush()
        return invite.id


# -- migrations and engine set-up ----------------------------------------------------------------


async def test_migrations_reach_head_and_are_idempotent(db: Database) -> None:
    assert await store.migrate.current_revision(db) == "0006"

    await store.migrate.upgrade_to_head(db)  # a restart runs them again

    assert await store.migrate.current_revision(db) == "0006"
    async with db.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    assert tables >= TABLES | {"alembic_version"}


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError):
        await add_invite(db, str(uuid.uuid4()))


async def test_sqlite_runs_in_wal_mode_with_busy_timeout_and_foreign_keys(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'pragmas.db'}")
    try:
        async with database.engine.connect() as conn:
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
            foreign = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    finally:
        await database.close()

    assert journal == "wal"
    assert busy is not None
    assert busy >= 5000
    assert foreign == 1
    assert (tmp_path / "pragmas.db-wal").exists() or (tmp_path / "pragmas.db").exists()


# -- invites -------------------------------------------------------------------------------------


async def test_consume_wins_exactly_once_under_concurrency(db: Database) -> None:
    session_id = await add_session(db)
    invite_id = await add_invite(db, session_id)
    both_have_read = asyncio.Barrier(2)

    async def attempt(user_id: str) -> bool:
        async with db.transaction() as tx:
            # Both look first (as redeem does), then both try to spend.
            seen = await tx.get(Invite, invite_id)
            assert seen is not None
            assert seen.used_at is None
            await both_have_read.wait()
            return await store.invites.consume(tx, invite_id, user_id, NOW)

    results = await asyncio.wait_for(
        asyncio.gather(attempt("@a:example.org"), attempt("@b:example.org")), 40
    )

    assert sorted(results) == [False, True]
    async with db.transaction() as tx:
        invite = await tx.get(Invite, invite_id)
    assert invite is not None
    assert invite.used_at == NOW
    assert invite.used_by == ["@a:example.org", "@b:example.org"][results.index(True)]


async def test_consume_twice_in_a_row_wins_once(db: Database) -> None:
    invite_id = await add_invite(db, await add_session(db))

    async with db.transaction() as tx:
        assert await store.invites.consume(tx, invite_id, "@a:example.org", NOW)
    async with db.transaction() as tx:
        assert not await store.invites.consume(tx, invite_id, "@a:example.org", NOW)


@pytest.mark.parametrize(
    "kind", ["expired", "expires-right-now", "revoked", "revoked-by-reissue", "unknown"]
)
async def test_an_expired_or_revoked_invite_cannot_be_consumed(db: Database, kind: str) -> None:
    session_id = await add_session(db)
    if kind == "expired":
        invite_id = await add_invite(db, session_id, expires_at=NOW - timedelta(seconds=1))
    elif kind == "expires-right-now":
        invite_id = await add_invite(db, session_id, expires_at=NOW)
    elif kind == "revoked":
        invite_id = await add_invite(db, session_id, revoked_at=NOW - timedelta(minutes=1))
    elif kind == "revoked-by-reissue":
        invite_id = await add_invite(db, session_id)
        async with db.transaction() as tx:
            assert await store.invites.revoke_unused(tx, session_id, NOW) == 1
    else:
        invite_id = 999_999

    async with db.transaction() as tx:
        assert not await store.invites.consume(tx, invite_id, "@a:example.org", NOW)
    async with db.transaction() as tx:
        invite = await tx.get(Invite, invite_id)
    assert invite is None or invite.used_at is None


async def test_revoke_unused_leaves_a_used_invite_alone(db: Database) -> None:
    session_id = await add_session(db)
    used = await add_invite(db, session_id)
    unused = await add_invite(db, session_id)
    async with db.transaction() as tx:
        assert await store.invites.consume(tx, used, "@a:example.org", NOW)

    async with db.transaction() as tx:
        assert await store.invites.revoke_unused(tx, session_id, NOW) == 1
    async with db.transaction() as tx:
        used_row, unused_row = await tx.get(Invite, used), await tx.get(Invite, unused)
    assert used_row is not None
    assert used_row.revoked_at is None
    assert unused_row is not None
    assert unused_row.revoked_at == NOW


# -- sessions and deliveries ---------------------------------------------------------------------


@pytest.mark.parametrize("live", ["pending", "open", "closing"])
async def test_only_one_live_session_per_ticket(db: Database, live: str) -> None:
    await add_session(db, ticket_ref="T-9", state=live)

    with pytest.raises(IntegrityError):
        await add_session(db, ticket_ref="T-9", state="pending")

    # Another ticket, or the same ticket ref from another helpdesk, is fine.
    await add_session(db, ticket_ref="T-10")
    await add_session(db, ticket_ref="T-9", integration="other-desk")


async def test_a_closed_session_does_not_block_a_new_one(db: Database) -> None:
    old = await add_session(db, ticket_ref="T-9")
    async with db.transaction() as tx:
        assert await store.sessions.set_state(
            tx, old, "closed", NOW, from_states=("pending", "open", "closing")
        )
    await add_session(db, ticket_ref="T-9", state="closed")  # closed ones may pile up

    new = await add_session(db, ticket_ref="T-9")

    async with db.transaction() as tx:
        live = await store.sessions.get_live_by_ticket(tx, "helpdesk", "T-9")
        closed = await store.sessions.get(tx, old)
    assert live is not None
    assert live.id == new
    assert closed is not None
    assert closed.closed_at == NOW


async def test_set_state_only_moves_from_the_given_states(db: Database) -> None:
    session_id = await add_session(db, state="open")

    async with db.transaction() as tx:
        assert not await store.sessions.set_state(
            tx, session_id, "closed", NOW, from_states=("closing",)
        )
        assert await store.sessions.set_state(
            tx, session_id, "closing", NOW, from_states=("open",), close_reason="agent"
        )
    async with db.transaction() as tx:
        session = await store.sessions.get(tx, session_id)
    assert session is not None
    assert (session.state, session.close_reason, session.closed_at) == ("closing", "agent", None)


async def test_a_webhook_delivery_is_unique_per_integration(db: Database) -> None:
    def delivery(integration: str, webhook_id: str) -> WebhookDelivery:
        return WebhookDelivery(
            integration=integration,
            webhook_id=webhook_id,
            received_at=NOW,
            outcome="created",
            response={"session_id": "s"},
        )

    async with db.transaction() as tx:
        tx.add(delivery("helpdesk", "msg_1"))
    async with db.transaction() as tx:
        tx.add(delivery("other-desk", "msg_1"))  # another integration may reuse the id
        tx.add(delivery("helpdesk", "msg_2"))

    with pytest.raises(IntegrityError):
        async with db.transaction() as tx:
            tx.add(delivery("helpdesk", "msg_1"))

    async with db.transaction() as tx:
        count = (await tx.execute(select(func.count()).select_from(WebhookDelivery))).scalar()
    assert count == 3


# -- jobs ----------------------------------------------------------------------------------------


async def _job_states(database: Database) -> list[tuple[str, str, int]]:
    async with database.transaction() as tx:
        rows = (await tx.execute(select(Job).order_by(Job.id))).scalars()
        return [(job.action, job.state, job.attempts) for job in rows]


async def test_add_with_a_dedupe_key_is_idempotent(db: Database) -> None:
    async with db.transaction() as tx:
        assert await store.jobs.add(tx, "notice", NOW, dedupe_key="joined:$event1")
    async with db.transaction() as tx:
        assert not await store.jobs.add(tx, "notice", NOW, dedupe_key="joined:$event1")
        assert await store.jobs.add(tx, "notice", NOW, dedupe_key="joined:$event2")
        assert await store.jobs.add(tx, "notice", NOW)  # no key: always added
        assert await store.jobs.add(tx, "notice", NOW)

    assert len(await _job_states(db)) == 4


async def test_due_respects_run_after(db: Database) -> None:
    async with db.transaction() as tx:
        await store.jobs.add(tx, "expire", NOW, run_after=NOW + timedelta(hours=1))
        await store.jobs.add(tx, "create_room", NOW)

    async with db.transaction() as tx:
        now_due = [job.action for job in await store.jobs.due(tx, NOW, 10)]
        later_due = [job.action for job in await store.jobs.due(tx, NOW + timedelta(hours=2), 10)]
        limited = await store.jobs.due(tx, NOW + timedelta(hours=2), 1)
        next_at = await store.jobs.next_due_at(tx)

    assert now_due == ["create_room"]
    assert later_due == ["create_room", "expire"]  # oldest run_after first
    assert [job.action for job in limited] == ["create_room"]
    assert next_at == NOW


async def test_claim_succeeds_once(db: Database) -> None:
    async with db.transaction() as tx:
        await store.jobs.add(tx, "invite", NOW)
    async with db.transaction() as tx:
        (job,) = await store.jobs.due(tx, NOW, 10)

    claims = await asyncio.wait_for(asyncio.gather(*(_claim(db, job.id) for _ in range(2))), 40)

    assert sorted(claims) == [False, True]
    assert await _job_states(db) == [("invite", "running", 1)]
    async with db.transaction() as tx:
        assert await store.jobs.due(tx, NOW, 10) == []


async def _claim(database: Database, job_id: int) -> bool:
    async with database.transaction() as tx:
        return await store.jobs.claim(tx, job_id, NOW)


async def test_requeue_running_puts_running_jobs_back(db: Database) -> None:
    async with db.transaction() as tx:
        for action in ("create_room", "invite", "notice"):
            await store.jobs.add(tx, action, NOW)
    async with db.transaction() as tx:
        first, second, third = await store.jobs.due(tx, NOW, 10)
    assert await _claim(db, first.id)
    assert await _claim(db, second.id)
    async with db.transaction() as tx:
        await store.jobs.finish(tx, second.id, NOW)

    async with db.transaction() as tx:
        assert await store.jobs.requeue_running(tx, NOW) == 1

    assert await _job_states(db) == [
        ("create_room", "pending", 1),
        ("invite", "done", 1),
        ("notice", "pending", 0),
    ]
    async with db.transaction() as tx:
        assert [job.id for job in await store.jobs.due(tx, NOW, 10)] == [first.id, third.id]


# -- datetimes -----------------------------------------------------------------------------------


async def test_datetimes_come_back_timezone_aware_utc(db: Database) -> None:
    session_id = await add_session(db)

    async with db.transaction() as tx:  # a fresh session: values come from the database
        session = await store.sessions.get(tx, session_id)
    assert session is not None
    for value in (session.created_at, session.updated_at, session.expires_at):
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)
    assert session.created_at == NOW
    assert session.expires_at - session.created_at == timedelta(hours=72)


async def test_an_aware_non_utc_datetime_keeps_its_instant(
    db: Database, request: pytest.FixtureRequest
) -> None:
    berlin = timezone(timedelta(hours=2))
    at = NOW.astimezone(berlin)
    async with db.transaction() as tx:
        tx.add(
            Job(
                action="noop",
                params={},
                state="pending",
                attempts=0,
                run_after=at,
                created_at=at,
                updated_at=at,
            )
        )

    async with db.transaction() as tx:
        job = (await tx.execute(select(Job))).scalar_one()

    assert job.run_after == NOW
    assert job.run_after.utcoffset() == timedelta(0)


async def test_a_naive_datetime_is_refused(db: Database) -> None:
    async def add_naive() -> None:
        async with db.transaction() as tx:
            await store.jobs.add(tx, "noop", NOW.replace(tzinfo=None))

    with pytest.raises(StatementError, match="naive datetime"):
        await add_naive()
    assert await _job_states(db) == []


async def _activity(db: Database, session_id: str) -> datetime | None:
    async with db.transaction() as tx:
        session = await store.sessions.get(tx, session_id)
    assert session is not None
    return session.last_activity_at


async def test_note_activity_writes_an_open_rooms_activity_at_most_once_a_minute(
    db: Database,
) -> None:
    """One guarded UPDATE, the same on SQLite and PostgreSQL (the idle timeout, #9)."""
    session_id = await add_session(db, state="open")
    closed_id = await add_session(db, ticket_ref="T-2", state="closed")
    async with db.transaction() as tx:
        for sid, room in ((session_id, "!open:example.org"), (closed_id, "!closed:example.org")):
            session = await store.sessions.get(tx, sid)
            assert session is not None
            session.room_id = room
    minute = timedelta(minutes=1)

    async def note(room: str, at: datetime) -> bool:
        async with db.transaction() as tx:
            return await store.sessions.note_activity(tx, room, at, unless_after=at - minute)

    first = await note("!open:example.org", NOW)
    too_soon = await note("!open:example.org", NOW + timedelta(seconds=59))
    after_a_minute = await note("!open:example.org", NOW + minute)
    closed = await note("!closed:example.org", NOW)
    unknown = await note("!nowhere:example.org", NOW)

    assert (first, too_soon, after_a_minute, closed, unknown) == (True, False, True, False, False)
    assert await _activity(db, session_id) == NOW + minute
    assert await _activity(db, closed_id) is None


async def test_outstanding_counts_due_running_and_retrying_jobs_not_later_ones(
    db: Database,
) -> None:
    session_id = await add_session(db, state="open")
    async with db.transaction() as tx:
        await store.jobs.add(
            tx, "notice", NOW, session_id=session_id, run_after=NOW + timedelta(hours=1)
        )
    async with db.transaction() as tx:
        later_only = await store.jobs.outstanding(tx, session_id, "notice", NOW)
        await store.jobs.add(tx, "notice", NOW, session_id=session_id)
    async with db.transaction() as tx:
        due = await store.jobs.outstanding(tx, session_id, "notice", NOW)
        other_action = await store.jobs.outstanding(tx, session_id, "invite", NOW)

    assert (later_only, due, other_action) == (False, True, False)


def test_the_head_read_from_the_files_is_alembics_head() -> None:
    """Start-up skips Alembic when the database is at this head: it must be Alembic's own."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(store.migrate._alembic_config())
    assert store.migrate.head_revision() == script.get_current_head()
