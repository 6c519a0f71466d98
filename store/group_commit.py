"""Group commit: concurrent units of work share one transaction, so one commit (one fsync on
SQLite) makes a whole batch durable, and each caller hears back only after that commit.

While a batch commits, new callers queue; the next batch takes all of them. A unit that raises
rolls its batch back, and each unit of that batch then runs again alone in its own transaction:
one bad unit costs the others a retry, never their work, and its caller gets its own error.

Units are synchronous functions of a `store.batch.Batch` (SQLAlchemy Core, no ORM). The whole
batch, retries included, is one call of `run_sync`: on SQLite one hand-off to the writer thread
per batch instead of several per statement (aiosqlite), and the event loop is free meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Connection

from store.batch import Batch

Work = Callable[[Batch], Any]
# Runs a function of a Connection (no transaction begun) to completion, off the loop or not.
RunSync = Callable[[Callable[[Connection], Any]], Awaitable[Any]]
# (True, result) or (False, the exception it raised), per unit.
Outcome = tuple[bool, Any]

MAX_BATCH = 64


class GroupCommit:
    def __init__(self, run_sync: RunSync, max_batch: int = MAX_BATCH) -> None:
        self.run_sync = run_sync
        self.max_batch = max_batch
        # Transactions begun so far (tests check that units share them).
        self.transactions = 0
        self._waiting: list[tuple[Work, asyncio.Future[Any]]] = []
        self._leader: asyncio.Task[None] | None = None

    async def run(self, work: Work) -> Any:
        """Run `work(batch)` in a shared transaction; its result once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        if self._leader is None or self._leader.done():
            self._leader = asyncio.create_task(self._drain(), name="sealroom-group-commit")
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                await self._commit(batch)
        finally:
            # Cancelled (the loop is closing): nobody may wait for ever.
            for _, future in self._waiting:
                if not future.done():
                    future.set_exception(RuntimeError("the database is closing"))

    async def _commit(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        works = [work for work, _ in batch]
        try:
            outcomes, transactions = await self.run_sync(lambda conn: _run_batch(conn, works))
        except Exception as err:  # the database itself failed (no connection, say)
            outcomes, transactions = [(False, err)] * len(batch), 0
        self.transactions += transactions
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():  # its caller went away; the work is committed all the same
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def _run_batch(conn: Connection, works: list[Work]) -> tuple[list[Outcome], int]:
    """All units in one transaction; after a failure, each again in its own."""
    try:
        results = _in_transaction(conn, works)
    except Exception as err:
        if len(works) == 1:
            return [(False, err)], 1
    else:
        return [(True, result) for result in results], 1
    outcomes: list[Outcome] = []
    for work in works:
        try:
            outcomes.append((True, _in_transaction(conn, [work])[0]))
        except Exception as err:
            outcomes.append((False, err))
    return outcomes, 1 + len(works)


def _in_transaction(conn: Connection, works: list[Work]) -> list[Any]:
    with conn.begin():
        batch = Batch(conn)
        results = [work(batch) for work in works]
        batch.flush()
    return results
