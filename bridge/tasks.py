"""Stopping background tasks within a bound.

A task can swallow a cancellation (a library catching CancelledError, or Python 3.11's
`asyncio.wait_for` race): awaiting it after `cancel()` would then hang a shutdown forever. Here
the cancellation is repeated until the task ends or the time is up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

log = structlog.stdlib.get_logger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None, timeout: float = 10.0) -> bool:
    """Cancel the tasks and wait for them; False if one still runs after `timeout` seconds."""
    given = [task for task in tasks if task is not None]
    pending = {task for task in given if not task.done()}
    deadline = time.monotonic() + timeout
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning("tasks.still_running", tasks=sorted(t.get_name() for t in pending))
            return False
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(remaining, 0.5))
    for task in given:
        if not task.cancelled():
            task.exception()  # retrieved: a crash was logged where it happened
    return True
