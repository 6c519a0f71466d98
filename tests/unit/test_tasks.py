"""Stopping background tasks stays bounded even when a task swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import time

from bridge.tasks import cancel_and_wait


async def test_a_normal_task_is_cancelled_and_awaited() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    assert await cancel_and_wait(task, None) is True
    assert task.cancelled()


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again() -> None:
    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        await asyncio.sleep(60)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, timeout=5) is True
    assert task.cancelled()


async def test_a_task_that_never_stops_is_given_up_on_in_time() -> None:
    release = asyncio.Event()

    async def immortal() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(60)

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await cancel_and_wait(task, timeout=1) is False
    assert time.monotonic() - started < 3
    release.set()  # leave nothing running behind this test
    task.cancel()
    await asyncio.wait({task}, timeout=1)
    assert task.done()


async def test_a_crashed_task_does_not_raise_here() -> None:
    async def crash() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(crash())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task) is True
