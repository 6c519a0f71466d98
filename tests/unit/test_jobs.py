"""bridge.jobs.JobRunner: retries with a capped backoff, gives up visibly, resumes, prunes.

The runner runs for real (its loop, the real clock, a real store) with retry delays of
milliseconds. Tests wait for a state with a deadline that only bounds a failure; no assertion
depends on how long anything took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select

import store.jobs
from bridge import metrics
from bridge.jobs import (
    DONE_RETENTION,
    Action,
    JobContext,
    JobRunner,
    PermanentJobError,
    RetryLater,
    schedule,
)
from store import AuditEvent, Database, Job

MakeRunner = Callable[..., JobRunner]


def utcnow() -> datetime:
    return datetime.now(UTC)


async def wait_until(
    condition: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 5.0
) -> None:
    """Poll `condition` until it holds; fail naming `what` if it does not within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        holds = condition()
        if holds if isinstance(holds, bool) else await holds:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def make_runner(database: Database) -> AsyncIterator[MakeRunner]:
    runners: list[JobRunner] = []

    def make(**options: Any) -> JobRunner:
        settings: dict[str, Any] = {
            "retry_initial": 0.005,
            "retry_max": 0.02,
            "max_attempts": 3,
            "poll_seconds": 0.05,
        }
        settings.update(options)
        runner = JobRunner(database, utcnow, **settings)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        await runner.stop(grace=2)


async def _add(database: Database, action: Action = Action.NOTICE, **kwargs: Any) -> int:
    """Schedule a job as the domain does; its id."""
    async with database.transaction() as db:
        assert await schedule(db, action, utcnow(), **kwargs)
        await db.flush()
        return int((await db.execute(select(func.max(Job.id)))).scalar_one())


async def _job(database: Database, job_id: int) -> Job | None:
    async with database.transaction() as db:
        return await db.get(Job, job_id)


OUTCOMES = ("done", "retry", "failed")


def _jobs_counted(action: str, outcome: str) -> float:
    """sealroom_jobs_total{action, outcome} as /metrics shows it."""
    value = metrics.REGISTRY.get_sample_value(
        "sealroom_jobs_total", {"action": action, "outcome": outcome}
    )
    return value or 0.0


async def _state_is(database: Database, job_id: int, state: str) -> bool:
    job = await _job(database, job_id)
    return job is not None and job.state == state


# -- backoff --------------------------------------------------------------------------------------


def test_backoff_doubles_within_its_jitter_and_is_capped() -> None:
    runner = JobRunner(Database("sqlite+aiosqlite:///:memory:"), utcnow, retry_max=300.0)
    samples = {attempt: [runner.backoff(attempt) for _ in range(200)] for attempt in range(1, 16)}

    for attempt, delays in samples.items():
        ceiling = min(2.0 ** (attempt - 1), 300.0)
        assert all(0.8 * ceiling <= delay <= ceiling for delay in delays), (attempt, delays)
    for attempt in range(1, 9):  # 2**8 = 256 < 300: still growing
        assert max(samples[attempt]) < min(samples[attempt + 1]), attempt
    assert all(delay <= 300.0 for attempt in range(10, 16) for delay in samples[attempt])


# -- failures -------------------------------------------------------------------------------------


async def test_a_job_that_keeps_failing_gives_up_after_max_attempts_and_says_so_once(
    database: Database, make_runner: MakeRunner
) -> None:
    runner = make_runner(max_attempts=3)
    attempts: list[int] = []
    gave_up: list[tuple[int, str]] = []

    async def always_fails(job: JobContext) -> None:
        attempts.append(job.job_id)
        raise RuntimeError("boom")

    async def tell_someone(job: JobContext, error: str) -> None:
        gave_up.append((job.job_id, error))

    runner.register(Action.NOTICE, always_fails, on_give_up=tell_someone)
    job_id = await _add(database, params={"text": "hello"})
    await runner.start()

    await wait_until(lambda: _state_is(database, job_id, "failed"), "the job to give up")
    await wait_until(lambda: bool(gave_up), "the give-up hook")
    await runner.stop()

    assert attempts == [job_id] * 3
    assert gave_up == [(job_id, "RuntimeError: boom")]
    job = await _job(database, job_id)
    assert job is not None
    assert (job.attempts, job.last_error) == (3, "RuntimeError: boom")
    assert await runner.failed_count() == 1
    async with database.transaction() as db:
        [failed] = (await db.execute(select(AuditEvent))).scalars()
    assert (failed.action, failed.detail["attempts"]) == ("job.failed", 3)


async def test_a_permanent_error_gives_up_at_once(
    database: Database, make_runner: MakeRunner
) -> None:
    runner = make_runner(max_attempts=30)
    gave_up: list[str] = []

    async def refused(job: JobContext) -> None:
        raise PermanentJobError("the homeserver refuses for good")

    async def tell_someone(job: JobContext, error: str) -> None:
        gave_up.append(error)

    runner.register(Action.INVITE, refused, on_give_up=tell_someone)
    counted_before = {outcome: _jobs_counted("invite", outcome) for outcome in OUTCOMES}
    job_id = await _add(database, Action.INVITE)
    await runner.start()

    await wait_until(lambda: bool(gave_up), "the give-up hook")
    await runner.stop()

    job = await _job(database, job_id)
    assert job is not None
    assert (job.state, job.attempts) == ("failed", 1)
    assert gave_up == ["PermanentJobError: the homeserver refuses for good"]
    # Counted as giving up (what the "jobs giving up" alert watches), not as a retry.
    counted = {
        outcome: _jobs_counted("invite", outcome) - counted_before[outcome] for outcome in OUTCOMES
    }
    assert counted == {"done": 0, "retry": 0, "failed": 1}


async def test_a_job_whose_action_is_not_registered_gives_up(
    database: Database, make_runner: MakeRunner
) -> None:
    runner = make_runner()
    async with database.transaction() as db:
        await store.jobs.add(db, "wipe", utcnow())
    await runner.start()

    async def gave_up() -> bool:
        return await runner.failed_count() == 1

    await wait_until(gave_up, "the unknown job to give up")

    async with database.transaction() as db:
        job = (await db.execute(select(Job))).scalar_one()
    assert (job.attempts, job.last_error) == (
        1,
        "PermanentJobError: no action named 'wipe' is registered",
    )


async def test_a_job_that_fails_then_succeeds_is_done(
    database: Database, make_runner: MakeRunner
) -> None:
    runner = make_runner(max_attempts=5)
    seen: list[str] = []

    async def flaky(job: JobContext) -> None:
        seen.append("try")
        if len(seen) == 1:
            raise RetryLater("the room is not there yet")
        if len(seen) == 2:
            raise ConnectionError("reset")

    runner.register(Action.CREATE_ROOM, flaky)
    job_id = await _add(database, Action.CREATE_ROOM)
    await runner.start()

    await wait_until(lambda: _state_is(database, job_id, "done"), "the job to succeed")

    job = await _job(database, job_id)
    assert job is not None
    assert (job.attempts, job.last_error) == (3, None)
    assert seen == ["try"] * 3


async def test_a_saved_checkpoint_is_handed_back_when_the_job_runs_again(
    database: Database, make_runner: MakeRunner
) -> None:
    runner = make_runner(max_attempts=5)
    handed: list[dict[str, Any]] = []

    async def long_job(job: JobContext) -> None:
        handed.append(dict(job.checkpoint))
        step = int(job.checkpoint.get("step", 0))
        await job.save_checkpoint({"step": step + 1})
        if step == 0:
            raise ConnectionError("cut off halfway")

    runner.register(Action.CLOSE_ROOM, long_job)
    job_id = await _add(database, Action.CLOSE_ROOM)
    await runner.start()

    await wait_until(lambda: _state_is(database, job_id, "done"), "the job to finish")

    assert handed == [{}, {"step": 1}]
    job = await _job(database, job_id)
    assert job is not None
    assert job.checkpoint == {"step": 2}


async def test_a_job_left_running_by_a_crash_runs_again_at_start(
    database: Database, make_runner: MakeRunner
) -> None:
    job_id = await _add(database, Action.EXPIRE)
    async with database.transaction() as db:
        assert await store.jobs.claim(db, job_id, utcnow())  # then the process died
    runner = make_runner()
    ran: list[int] = []

    async def expire(job: JobContext) -> None:
        ran.append(job.job_id)

    runner.register(Action.EXPIRE, expire)
    await runner.start()

    await wait_until(lambda: _state_is(database, job_id, "done"), "the requeued job")
    assert ran == [job_id]


# -- pruning --------------------------------------------------------------------------------------


async def test_finished_jobs_past_the_retention_are_pruned_and_their_keys_still_count(
    database: Database, make_runner: MakeRunner
) -> None:
    long_ago = utcnow() - DONE_RETENTION - timedelta(hours=1)
    recently = utcnow() - DONE_RETENTION + timedelta(hours=1)
    old_done = await _add(database, dedupe_key="close:old")
    recent_done = await _add(database, dedupe_key="close:recent")
    old_failed = await _add(database, dedupe_key="close:failed")
    async with database.transaction() as db:
        await store.jobs.finish(db, old_done, long_ago)
        await store.jobs.finish(db, recent_done, recently)
        await store.jobs.give_up(db, old_failed, long_ago, "gave up")

    await make_runner().start()

    assert await _job(database, old_done) is None
    assert await _job(database, recent_done) is not None
    assert await _job(database, old_failed) is not None  # kept: someone has to look at it
    async with database.transaction() as db:
        for key in ("close:old", "close:recent", "close:failed"):
            assert await schedule(db, Action.CLOSE_ROOM, utcnow(), dedupe_key=key) is False, key
    async with database.transaction() as db:
        assert len((await db.execute(select(Job))).scalars().all()) == 2
