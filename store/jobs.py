"""Durable jobs: claimed with a guarded UPDATE so that one job runs once at a time."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store import ledger
from store.models import Base, Job

_tables = Base.metadata.tables


async def add(
    db: AsyncSession,
    action: str,
    now: datetime,
    *,
    session_id: str | None = None,
    params: dict[str, Any] | None = None,
    run_after: datetime | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Add a job; with a `dedupe_key` already in the ledger, add nothing and return False."""
    if dedupe_key is not None and not await ledger.record(
        db, dedupe_key, now, session_id=session_id
    ):
        return False
    db.add(
        Job(
            action=action,
            session_id=session_id,
            params=params or {},
            state="pending",
            attempts=0,
            run_after=run_after or now,
            created_at=now,
            updated_at=now,
        )
    )
    return True


async def due(db: AsyncSession, now: datetime, limit: int) -> list[Job]:
    result = await db.execute(
        select(Job)
        .where(Job.state == "pending", Job.run_after <= now)
        .order_by(Job.run_after, Job.id)
        .limit(limit)
    )
    return list(result.scalars())


def _claim_statement(now: datetime, limit: int, first: Collection[str]) -> Any:
    ahead = case((Job.action.in_(list(first)), 0), else_=1) if first else None
    chosen = (
        select(Job.id)
        .where(Job.state == "pending", Job.run_after <= now)
        .order_by(*(() if ahead is None else (ahead,)), Job.run_after, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        # Chosen once: as a plain subquery PostgreSQL may run it again and claim more.
        .cte("chosen")
        .prefix_with("MATERIALIZED")
    )
    return (
        update(Job)
        .where(Job.id.in_(select(chosen.c.id)), Job.state == "pending")
        .values(state="running", attempts=Job.attempts + 1, updated_at=now)
    )


def _claim_order(first: Collection[str]) -> Callable[[Job], tuple[bool, datetime, int]]:
    return lambda job: (job.action not in first, job.run_after, job.id)


async def claim_due(
    db: AsyncSession, now: datetime, limit: int, first: Collection[str] = ()
) -> list[Job]:
    """Claim up to `limit` due jobs in one statement, the actions in `first` before the others,
    then the oldest; the claimed jobs in that order. On PostgreSQL, rows another instance is
    claiming are skipped, not waited for."""
    result = await db.execute(
        _claim_statement(now, limit, first).returning(Job),
        execution_options={"synchronize_session": False},
    )
    claimed = list(result.scalars())
    claimed.sort(key=_claim_order(first))
    return claimed


def claim_due_in(
    conn: Connection, now: datetime, limit: int, first: Collection[str] = ()
) -> tuple[list[Job], datetime | None]:
    """`claim_due` and `next_due_at` in one transaction of its own on a Core connection (the
    runner's dispatch, through `Database.run_sync`: on SQLite the write lock is held for the
    statements alone, not across event-loop turns). The jobs are detached copies."""
    jobs = _tables["jobs"]
    with conn.begin():
        claimed: list[Job] = []
        if limit > 0:
            rows = conn.execute(_claim_statement(now, limit, first).returning(*jobs.c))
            claimed = [Job(**row._mapping) for row in rows]
        next_at = conn.execute(
            select(func.min(jobs.c.run_after)).where(jobs.c.state == "pending")
        ).scalar_one_or_none()
    claimed.sort(key=_claim_order(first))
    return claimed, next_at if isinstance(next_at, datetime) else None


def finish_in(conn: Connection, job_id: int, now: datetime) -> None:
    """`finish` in a transaction of its own on a Core connection (see `claim_due_in`)."""
    with conn.begin():
        conn.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(state="done", updated_at=now, last_error=None)
        )


async def next_due_at(db: AsyncSession) -> datetime | None:
    result = await db.execute(select(func.min(Job.run_after)).where(Job.state == "pending"))
    value = result.scalar_one_or_none()
    return value if isinstance(value, datetime) or value is None else None


async def claim(db: AsyncSession, job_id: int, now: datetime) -> bool:
    result = await db.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == "pending")
        .values(state="running", attempts=Job.attempts + 1, updated_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def finish(db: AsyncSession, job_id: int, now: datetime) -> None:
    await db.execute(
        update(Job).where(Job.id == job_id).values(state="done", updated_at=now, last_error=None)
    )


async def retry_later(
    db: AsyncSession, job_id: int, now: datetime, run_after: datetime, error: str
) -> None:
    await db.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(state="pending", run_after=run_after, updated_at=now, last_error=error)
    )


async def give_up(db: AsyncSession, job_id: int, now: datetime, error: str) -> None:
    await db.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(state="failed", updated_at=now, last_error=error)
    )


async def requeue_running(db: AsyncSession, now: datetime) -> int:
    """After a crash, jobs left 'running' are run again (every action is idempotent)."""
    result = await db.execute(
        update(Job).where(Job.state == "running").values(state="pending", updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def count_failed(db: AsyncSession) -> int:
    result = await db.execute(select(func.count()).select_from(Job).where(Job.state == "failed"))
    return int(result.scalar_one())


async def make_due(db: AsyncSession, session_id: str, action: str, now: datetime) -> int:
    """Run a session's waiting jobs of one kind now (their precondition was just met)."""
    result = await db.execute(
        update(Job)
        .where(Job.session_id == session_id, Job.action == action, Job.state == "pending")
        .values(run_after=now, updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def make_due_for(
    db: AsyncSession, session_id: str, action: str, now: datetime, **params: Any
) -> int:
    """Run now those of a session's waiting jobs of one kind whose params include `params`
    (JSON is compared here, not in SQL: SQLite and PostgreSQL query JSON differently, and a
    session has a handful of jobs)."""
    result = await db.execute(
        select(Job).where(
            Job.session_id == session_id, Job.action == action, Job.state == "pending"
        )
    )
    ids = [
        job.id
        for job in result.scalars()
        if all((job.params or {}).get(key) == value for key, value in params.items())
    ]
    if ids:
        await db.execute(update(Job).where(Job.id.in_(ids)).values(run_after=now, updated_at=now))
    return len(ids)


async def save_checkpoint(
    db: AsyncSession, job_id: int, checkpoint: dict[str, Any], now: datetime
) -> None:
    await db.execute(
        update(Job).where(Job.id == job_id).values(checkpoint=checkpoint, updated_at=now)
    )


async def prune_done(db: AsyncSession, before: datetime) -> int:
    """Delete finished jobs last touched before `before` (idempotency lives in the ledger)."""
    result = await db.execute(delete(Job).where(Job.state == "done", Job.updated_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def running(db: AsyncSession, session_id: str, action: str) -> bool:
    """Whether a job of `action` for the session is being carried out right now."""
    result = await db.execute(
        select(Job.id).where(
            Job.session_id == session_id, Job.action == action, Job.state == "running"
        )
    )
    return result.first() is not None


async def forget_params(db: AsyncSession, job_id: int, now: datetime) -> None:
    """Drop a job's parameters (a sealed secret it no longer needs)."""
    await db.execute(update(Job).where(Job.id == job_id).values(params={}, updated_at=now))


async def outstanding(db: AsyncSession, session_id: str, action: str, now: datetime) -> bool:
    """Whether a job of `action` for the session is running, due, or failed once and waiting
    for its retry (one first scheduled for later does not count)."""
    result = await db.execute(
        select(Job.id).where(
            Job.session_id == session_id,
            Job.action == action,
            or_(
                Job.state == "running",
                and_(Job.state == "pending", or_(Job.run_after <= now, Job.attempts > 0)),
            ),
        )
    )
    return result.first() is not None


async def queue_stats(db: AsyncSession, now: datetime) -> dict[str, tuple[int, float]]:
    """{action: (jobs waiting or running, age of the oldest in seconds)}."""
    result = await db.execute(
        select(Job.action, func.count(), func.min(Job.created_at))
        .where(Job.state.in_(("pending", "running")))
        .group_by(Job.action)
    )
    stats: dict[str, tuple[int, float]] = {}
    for action, count, oldest in result.all():
        age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        stats[str(action)] = (int(count), age)
    return stats
