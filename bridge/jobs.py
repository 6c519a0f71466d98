"""Durable job runner: work on the homeserver survives crashes and outages.

Jobs live in the database (`store.jobs`). The runner claims due jobs with a guarded UPDATE, runs
at most `concurrency` at once, retries failures with exponential backoff, and gives up visibly
(log, audit event, `/readyz` detail) after `max_attempts`. Jobs left running by a crash are run
again at start-up, so every action must be idempotent. Long actions save a checkpoint as
they go and resume from it. Idempotency keys live in a ledger (`store.ledger`), not in the jobs,
so finished jobs are pruned after a while.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog

import store.audit
import store.jobs
import store.ledger
from bridge import metrics
from bridge.errors import SealroomError
from bridge.tasks import cancel_and_wait
from store import Batch, Database, Job, Transaction

log = structlog.stdlib.get_logger(__name__)

# Claimed before any other due job: someone is waiting for these (a customer who just joined
# for their rules notice), and they must never queue behind a backlog of invitations.
FIRST = frozenset({"notice"})

# Finished jobs are kept this long (for `/metrics`-less debugging), then pruned.
DONE_RETENTION = timedelta(days=7)


class Action(StrEnum):
    """Every kind of durable job; a misspelt name fails type checking, not at run time."""

    CREATE_ROOM = "create_room"
    INVITE = "invite"
    NOTICE = "notice"
    CLOSE_ROOM = "close_room"
    EXPIRE = "expire"
    REMOVE_MEMBER = "remove_member"
    TICKET_NOTE = "ticket_note"
    TICKET_REPLY = "ticket_reply"
    IDLE_CHECK = "idle_check"
    DEPART = "depart"
    PURGE_ROOM = "purge_room"


@dataclass
class JobContext:
    """What an action gets: its session, parameters and checkpoint (to resume long work)."""

    job_id: int
    session_id: str | None
    params: dict[str, Any]
    checkpoint: dict[str, Any] = field(default_factory=dict)
    _save: Callable[[int, dict[str, Any]], Awaitable[None]] | None = None

    async def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record progress durably; a re-run after a crash starts from here."""
        self.checkpoint = dict(checkpoint)
        if self._save is not None:
            await self._save(self.job_id, self.checkpoint)

    async def save_checkpoint_in(
        self, db: Transaction, checkpoint: dict[str, Any], now: datetime
    ) -> None:
        """Record progress in the caller's transaction, so that it and what the transaction
        records besides (an audit event of the step just done) happen together or not at all."""
        self.checkpoint = dict(checkpoint)
        await store.jobs.save_checkpoint(db, self.job_id, self.checkpoint, now)


Handler = Callable[[JobContext], Awaitable[None]]
GiveUpHandler = Callable[[JobContext, str], Awaitable[None]]


async def schedule(
    db: Transaction,
    action: Action,
    now: datetime,
    *,
    session_id: str | None = None,
    params: dict[str, Any] | None = None,
    run_after: datetime | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Add a durable job in the caller's transaction; False when `dedupe_key` was seen before.

    Call the runner's `wake()` after the transaction commits.
    """
    return await store.jobs.add(
        db,
        action.value,
        now,
        session_id=session_id,
        params=params,
        run_after=run_after,
        dedupe_key=dedupe_key,
    )


def schedule_in(
    db: Batch,
    action: Action,
    now: datetime,
    *,
    session_id: str | None = None,
    params: dict[str, Any] | None = None,
    run_after: datetime | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """`schedule` for the webhook path's batch (synchronous, Core); the same rows."""
    return db.add_job(
        action.value,
        now,
        session_id=session_id,
        params=params,
        run_after=run_after,
        dedupe_key=dedupe_key,
    )


class PermanentJobError(Exception):
    """Retrying cannot help (for example the homeserver refuses for good)."""


class RetryLater(Exception):
    """An expected wait (for example for another job to finish first): retry, quietly."""


async def run_now(db: Transaction, session_id: str, action: Action, now: datetime) -> None:
    """A session's waiting jobs of one kind are due now (what they waited for happened)."""
    await store.jobs.make_due(db, session_id, action.value, now)


async def running(db: Transaction, session_id: str, action: Action) -> bool:
    """Whether a job of `action` for the session is being carried out right now (a waiting one
    has not looked at the session yet, so it will see what changed)."""
    return await store.jobs.running(db, session_id, action.value)


async def outstanding(db: Transaction, session_id: str, action: Action, now: datetime) -> bool:
    """Whether a job of `action` for the session is due or running, or waiting to be retried
    (one scheduled for later, such as an expiry warning, does not count)."""
    return await store.jobs.outstanding(db, session_id, action.value, now)


async def handled(db: Transaction, key: str) -> bool:
    """Whether `first_time` recorded `key` already."""
    return await store.ledger.recorded(db, key)


def welcomed_key(session_id: str, user_id: str) -> str:
    """The ledger's note that a member's join was seen and their welcome notice scheduled."""
    return f"welcomed:{session_id}:{hashlib.sha256(user_id.encode()).hexdigest()[:32]}"


async def first_time(db: Transaction, key: str, now: datetime, session_id: str | None) -> bool:
    """Record in the ledger that `key` (a Matrix event, say) was handled; False if it was."""
    return await store.ledger.record(db, key, now, session_id=session_id)


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
        self._actions: dict[str, Handler] = {}
        self._on_give_up: dict[str, GiveUpHandler] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._gates: tuple[asyncio.Event, ...] = ()

    def register(
        self, action: Action, handler: Handler, on_give_up: GiveUpHandler | None = None
    ) -> None:
        """`on_give_up` runs once when the job fails for good (to tell someone)."""
        self._actions[action.value] = handler
        if on_give_up is not None:
            self._on_give_up[action.value] = on_give_up

    def wake(self) -> None:
        """Look for due jobs now instead of at the next poll."""
        self._wake.set()

    def pause_until(self, *gates: asyncio.Event) -> None:
        """Hold jobs back while any gate is clear (the bot has not synced, or has no identity)."""
        self._gates = gates

    async def start(self) -> None:
        now = self.clock()
        async with self.database.transaction() as db:
            requeued = await store.jobs.requeue_running(db, now)
            pruned = await store.jobs.prune_done(db, now - DONE_RETENTION)
        if requeued or pruned:
            log.info("jobs.requeued", count=requeued, pruned=pruned)
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
            # Cleared before looking, so a wake-up while looking is not lost.
            self._wake.clear()
            try:
                for gate in self._gates:
                    await gate.wait()
                delay = await self._dispatch_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("jobs.loop_failed")
                delay = self.poll_seconds
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _dispatch_due(self) -> float:
        """Claim what is due and may run now in one statement, start it, and say how long to
        sleep until the next job is due (a finishing job wakes the loop sooner)."""
        free = self.concurrency - len(self._running)
        now = self.clock()
        # One hand-off to the database for both (store.jobs.claim_due_in): a dispatch follows
        # every webhook's wake-up, so it must not hold SQLite's write lock across loop turns.
        claimed, next_at = await self.database.run_sync(
            lambda conn: store.jobs.claim_due_in(conn, now, free, FIRST)
        )
        for job in claimed:
            task = asyncio.create_task(self._run(job), name=f"job-{job.id}-{job.action}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        if next_at is None:
            return self.poll_seconds
        return min(max((next_at - now).total_seconds(), 0.05), self.poll_seconds)

    async def _save_checkpoint(self, job_id: int, checkpoint: dict[str, Any]) -> None:
        async with self.database.transaction() as db:
            await store.jobs.save_checkpoint(db, job_id, checkpoint, self.clock())

    async def _run(self, job: Job) -> None:
        bound = log.bind(job_id=job.id, action=job.action, session_id=job.session_id)
        handler = self._actions.get(job.action)
        attempt = job.attempts  # counted by the claim
        started = time.monotonic()
        context = JobContext(
            job.id,
            job.session_id,
            dict(job.params),
            dict(job.checkpoint or {}),
            self._save_checkpoint,
        )
        try:
            if handler is None:
                raise PermanentJobError(f"no action named {job.action!r} is registered")
            async with self._slots:
                await handler(context)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # A permanent error gives up at its first attempt: "failed" too, or the alert on
            # jobs giving up (docs/monitoring.md) would never see it.
            gives_up = isinstance(err, PermanentJobError) or attempt >= self.max_attempts
            metrics.JOBS.labels(job.action, "failed" if gives_up else "retry").inc()
            error = _describe(err)
            now = self.clock()
            if gives_up:
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
                await self._gave_up(context, job.action, error)
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
        finished = self.clock()
        await self.database.run_sync(lambda conn: store.jobs.finish_in(conn, job.id, finished))
        metrics.JOBS.labels(job.action, "done").inc()
        metrics.JOB_DURATION.labels(job.action).observe(time.monotonic() - started)
        if job.action == Action.CREATE_ROOM:  # scheduled by the webhook that asked for it
            ready = (self.clock() - job.created_at).total_seconds()
            metrics.WEBHOOK_TO_ROOM_READY.observe(max(ready, 0.0))
        bound.debug("job.done", attempts=attempt)
        self.wake()

    async def _gave_up(self, context: JobContext, action: str, error: str) -> None:
        on_give_up = self._on_give_up.get(action)
        if on_give_up is None:
            return
        try:
            await on_give_up(context, error)
        except Exception:
            log.exception("job.give_up_hook_failed", action=action, job_id=context.job_id)

    def backoff(self, attempt: int) -> float:
        base = min(self.retry_initial * (2 ** (attempt - 1)), self.retry_max)
        return float(base * random.uniform(0.8, 1.0))  # noqa: S311 (jitter, not security)

    async def queue_stats(self) -> dict[str, tuple[int, float]]:
        """{action: (jobs waiting or running, oldest age in seconds)}, for the metrics."""
        async with self.database.transaction() as db:
            return await store.jobs.queue_stats(db, self.clock())

    async def failed_count(self) -> int:
        async with self.database.transaction() as db:
            return await store.jobs.count_failed(db)


def _describe(err: Exception) -> str:
    """A short, secret-free description of a failure for the jobs table and logs."""
    if isinstance(err, SealroomError):
        return f"{err.errcode}: {err.message}"[:500]
    return f"{type(err).__name__}: {err}"[:500]
