"""Group commit: concurrent units of work share one transaction, so one commit (one fsync on
SQLite) makes a whole batch durable, and each caller hears back only after that commit.

While a batch commits, new callers queue; the next batch takes all of them. A unit that raises
rolls its batch back, and each unit of that batch then runs again alone in its own transaction:
one bad unit costs the others a retry, never their work, and its caller gets its own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

Work = Callable[[AsyncSession], Awaitable[Any]]

MAX_BATCH = 64


class GroupCommit:
    def __init__(
        self,
        transaction: Callable[[], AbstractAsyncContextManager[AsyncSession]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.transaction = transaction
        self.max_batch = max_batch
        self._waiting: list[tuple[Work, asyncio.Future[Any]]] = []
        self._leader: asyncio.Task[None] | None = None

    async def run(self, work: Work) -> Any:
        """Run `work(transaction)` in a shared transaction; its result once committed."""
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
        results: list[Any] = []
        try:
            async with self.transaction() as db:
                for work, _ in batch:
                    results.append(await work(db))
        except Exception as err:
            if len(batch) == 1:
                _settle(batch[0][1], error=err)
                return
            for work, future in batch:
                await self._alone(work, future)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)

    async def _alone(self, work: Work, future: asyncio.Future[Any]) -> None:
        try:
            async with self.transaction() as db:
                result = await work(db)
        except Exception as err:
            _settle(future, error=err)
        else:
            _settle(future, result=result)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():  # its caller went away; the work is committed all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
