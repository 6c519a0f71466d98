"""Group commit on both backends: concurrent units share a commit, and a bad one loses nothing
of the others'."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bridge.sessions import utcnow
from store import Batch, Database, HandledKey
from store.group_commit import GroupCommit


async def _keys(db: Database) -> set[str]:
    async with db.transaction() as tx:
        return set((await tx.execute(select(HandledKey.key))).scalars())


def _group(db: Database) -> GroupCommit:
    return GroupCommit(db.run_sync)


async def test_concurrent_units_share_transactions_and_each_is_durable_when_answered(
    db: Database,
) -> None:
    group = _group(db)

    async def unit(n: int) -> str:
        def work(batch: Batch) -> str:
            batch.record_key(f"key-{n}", utcnow())
            return f"done-{n}"

        answer = await group.run(work)
        assert f"key-{n}" in await _keys(db)  # committed before the caller hears back
        return str(answer)

    answers = await asyncio.wait_for(asyncio.gather(*(unit(n) for n in range(20))), 60)

    assert answers == [f"done-{n}" for n in range(20)]
    assert await _keys(db) == {f"key-{n}" for n in range(20)}
    assert group.transactions < 20  # shared: fewer transactions (and commits) than units


async def test_a_failing_unit_gets_its_error_and_the_others_are_committed(db: Database) -> None:
    group = _group(db)

    def work(batch: Batch, n: int) -> int:
        batch.record_key(f"key-{n}", utcnow())
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
    group = _group(db)

    def work(batch: Batch) -> bool:
        return batch.record_key("alone", utcnow())

    assert await group.run(work) is True
    assert group.transactions == 1
    assert await _keys(db) == {"alone"}
