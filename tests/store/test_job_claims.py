"""Claiming due jobs in one statement, on both backends: each job runs once, notices first."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import store.jobs
from bridge.sessions import utcnow
from store import Database


async def _add(db: Database, *actions: str, due_in: float = 0) -> None:
    now = utcnow()
    async with db.transaction() as tx:
        for action in actions:
            await store.jobs.add(tx, action, now, run_after=now + timedelta(seconds=due_in))


async def test_a_claim_takes_due_jobs_notices_first_then_the_oldest(db: Database) -> None:
    await _add(db, "invite", "invite", "create_room", "notice")
    await _add(db, "notice", due_in=60)  # not due yet

    async with db.transaction() as tx:
        claimed = await store.jobs.claim_due(tx, utcnow(), 3, {"notice"})

    assert [job.action for job in claimed] == ["notice", "invite", "invite"]
    assert {job.state for job in claimed} == {"running"}
    assert {job.attempts for job in claimed} == {1}
    async with db.transaction() as tx:
        rest = await store.jobs.claim_due(tx, utcnow(), 10, {"notice"})
    assert [job.action for job in rest] == ["create_room"]


async def test_concurrent_claims_never_take_one_job_twice(db: Database) -> None:
    await _add(db, *(["invite"] * 40))

    async def claim() -> list[int]:
        async with db.transaction() as tx:
            return [job.id for job in await store.jobs.claim_due(tx, utcnow(), 7)]

    batches = await asyncio.wait_for(asyncio.gather(*(claim() for _ in range(8))), 60)

    ids = [job_id for batch in batches for job_id in batch]
    assert len(ids) == len(set(ids)) == 40
