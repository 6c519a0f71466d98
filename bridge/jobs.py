"""Durable job runner: work on the homeserver survives crashes and outages.

Jobs live in the database (`store.jobs`). The runner claims due jobs with a guarded UPDATE, runs
at most `concurrency` at once, retries failures with exponential backoff, and gives up visibly
(log, audit event, `/readyz` detail) after `max_attempts`. Jobs left running by a crash are run
again at start-up, so every action must be idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import structlog

import store.audit
import store.jobs
from bridge import metrics
from bridge.errors import SealroomError
from bridge.tasks import cancel_and_wait
from store import Database, Job

log = structlog.stdlib.get_logger(__name__)

Action = Callable[[str | None, dict[str, Any]], Awaitable[None]]


class PermanentJobError(Exception):
    """Retrying cannot help (for example the homeserver refuses for good)."""


class RetryLater(Exception):
    """An expected wait (for example for another job to finish first): retry, quietly."""


class JobRunner:
    def __init__(
        self,
        database: Database,
        clock: Callable[[], datetime],
        *,
        concurrency: int = 4,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        max_attempts: int = 30,
        poll_seconds: float = 5.0,
    ) -> None:
        self.database = database
        self.clock = clock
        self.concurrency = concurrency
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        self._actions: dict[str, Action] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._gates: tuple[asyncio.Event, ...] = ()

    def register(self, name: str, action: Action) -> None:
        self._actions[name] = action

    def wake(self) -> None:
        """Look for due jobs now instead of at the next poll."""
        self._wake.set()

    def pause_until(self, *gates: asyncio.Event) -> None:
        """Hold jobs back while any gate is clear (the bot has not synced, or has no identity)."""
        self._gates = gates

    async def start(self) -> None:
        async with self.database.transaction() as db:
            requeued = await store.jobs.requeue_running(db, self.clock())
        if requeued:
            log.info("jobs.requeued", count=requeued)
        self._task = asyncio.create_task(self._loop(), name="sealroom-jobs")

    async def stop(self, grace: float = 10.0) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._running:
            # Let jobs in flight finish; anything cut short is re-run at the next start.
            _, pending = await asyncio.wait(self._running, timeout=grace)
            await cancel_and_wait(*pending)

    async def _loop(self) -> None:
        while True:
            try:
                for gate in self._gates:
                    await gate.wait()
                await self._dispatch_due()
                delay = await self._delay_until_next()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("jobs.loop_failed")
                delay = self.poll_seconds
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _delay_until_next(self) -> float:
        async with self.database.transaction() as db:
            next_at = await store.jobs.next_due_at(db)
        if next_at is None:
            return self.poll_seconds
        return min(max((next_at - self.clock()).total_seconds(), 0.05), self.poll_seconds)

    async def _dispatch_due(self) -> None:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return
        async with self.database.transaction() as db:
            due = await store.jobs.due(db, self.clock(), free)
        for job in due:
            async with self.database.transaction() as db:
                claimed = await store.jobs.claim(db, job.id, self.clock())
            if not claimed:
                continue
            task = asyncio.create_task(self._run(job), name=f"job-{job.id}-{job.action}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, job: Job) -> None:
        bound = log.bind(job_id=job.id, action=job.action, session_id=job.session_id)
        action = self._actions.get(job.action)
        attempt = job.attempts + 1
        started = time.monotonic()
        try:
            if action is None:
                raise PermanentJobError(f"no action named {job.action!r} is registered")
            async with self._slots:
                await action(job.session_id, job.params)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            metrics.JOBS.labels(
                job.action, "failed" if attempt >= self.max_attempts else "retry"
            ).inc()
            error = _describe(err)
            now = self.clock()
            if isinstance(err, PermanentJobError) or attempt >= self.max_attempts:
                async with self.database.transaction() as db:
                    await store.jobs.give_up(db, job.id, now, error)
                    store.audit.record(
                        db,
                        now,
                        "job.failed",
                        session_id=job.session_id,
                        action_name=job.action,
                        error=error,
                        attempts=attempt,
                    )
                bound.error("job.failed", error=error, attempts=attempt)
            else:
                delay = self.backoff(attempt)
                async with self.database.transaction() as db:
                    await store.jobs.retry_later(
                        db, job.id, now, now + timedelta(seconds=delay), error
                    )
                level = "info" if isinstance(err, RetryLater) else "warning"
                bound.log(
                    logging.getLevelName(level.upper()),
                    "job.retrying",
                    error=error,
                    attempts=attempt,
                    delay=round(delay, 2),
                )
            self.wake()
            return
        async with self.database.transaction() as db:
            await store.jobs.finish(db, job.id, self.clock())
        metrics.JOBS.labels(job.action, "done").inc()
        metrics.JOB_DURATION.labels(job.action).observe(time.monotonic() - started)
        bound.debug("job.done", attempts=attempt)
        self.wake()

    def backoff(self, attempt: int) -> float:
        base = min(self.retry_initial * (2 ** (attempt - 1)), self.retry_max)
        return float(base * random.uniform(0.8, 1.0))  # noqa: S311 (jitter, not security)

    async def failed_count(self) -> int:
        async with self.database.transaction() as db:
            return await store.jobs.count_failed(db)


def _describe(err: Exception) -> str:
    """A short, secret-free description of a failure for the jobs table and logs."""
    if isinstance(err, SealroomError):
        return f"{err.errcode}: {err.message}"[:500]
    return f"{type(err).__name__}: {err}"[:500]
