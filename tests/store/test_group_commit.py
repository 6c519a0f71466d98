"""Group commit on both backends: concurrent units share a commit, and a bad one loses nothing
of the others'."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import select

import store.ledger
from bridge.sessions import utcnow
from store import Database, HandledKey, Transaction
from store.group_commit import GroupCommit


async def _keys(db: Database) -> set[str]:
    async with db.transaction() as tx:
        return set((await tx.execute(select(HandledKey.key))).scalars())


def _counting(db: Database) -> tuple[GroupCommit, list[int]]:
    opened: list[int] = []

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[Transaction]:
        opened.append(1)
        async with db.transaction() as tx:
            yield tx

    return GroupCommit(transaction), opened


async def test_concurrent_units_share_transactions_and_each_is_durable_when_answered(
    db: Database,
) -> None:
    group, opened = _counting(db)

    async def unit(n: int) -> str:
        async def work(tx: Transaction) -> str:
            await store.ledger.record(tx, f"key-{n}", utcnow())
            return f"done-{n}"

        answer = await group.run(work)
        assert f"key-{n}" in await _keys(db)  # committed before the caller hears back
        return str(answer)

    answers = await asyncio.wait_for(asyncio.gather(*(unit(n) for n in range(20))), 60)

    assert answers == [f"done-{n}" for n in range(20)]
    assert await _keys(db) == {f"key-{n}" for n in range(20)}
    assert len(opened) < 20  # shared: fewer transactions (and commits) than units


async def test_a_failing_unit_gets_its_error_and_the_others_are_committed(db: Database) -> None:
    group, _ = _counting(db)

    async def work(tx: Transaction, n: int) -> int:
        await store.ledger.record(tx, f"key-{n}", utcnow())
        if n == 3:
            raise ValueError("bad input")
        return n

    results = await asyncio.wait_for(
        asyncio.gather(
            *(group.run(lambda tx, n=n: work(tx, n)) for n in range(8)), return_exceptions=True
        ),
        60,
    )

    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
    assert await _keys(db) == {f"key-{n}" for n in range(8) if n != 3}


async def test_a_lone_unit_runs_in_its_own_transaction(db: Database) -> None:
    group, opened = _counting(db)

    async def work(tx: Transaction) -> bool:
        return await store.ledger.record(tx, "alone", utcnow())

    assert await group.run(work) is True
    assert opened == [1]
    assert await _keys(db) == {"alone"}
