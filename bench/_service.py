"""`python -m bridge` for the benchmarks, plus an event-loop probe.

The probe sleeps 5 ms at a time on the service's loop; how late each wake-up comes is a stall
(a callback that held the loop). Every 0.25 s it appends one line to $SEALROOM_BENCH_PROBE:
``wall-clock loop-thread-CPU process-CPU lag_ms,lag_ms,...``. Nothing else changes: the same
CLI, the same configuration, the code on PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Coroutine
from typing import Any

TICK = 0.005
FLUSH = 0.25


async def _probe(path: str) -> None:
    lags: list[float] = []
    last_flush = time.monotonic()
    with open(path, "a", encoding="ascii") as out:
        while True:
            before = time.monotonic()
            await asyncio.sleep(TICK)
            now = time.monotonic()
            lags.append(max(0.0, (now - before - TICK) * 1000))
            if now - last_flush >= FLUSH:
                lag_text = ",".join(f"{lag:.2f}" for lag in lags)
                cpu = f"{time.thread_time():.4f} {time.process_time():.4f}"
                out.write(f"{time.time():.3f} {cpu} {lag_text}\n")
                out.flush()
                lags = []
                last_flush = now


def _with_probe(original: Any, path: str) -> Any:
    def run(main: Coroutine[Any, Any, Any], **kwargs: Any) -> Any:
        async def probed() -> Any:
            probe = asyncio.create_task(_probe(path))
            try:
                return await main
            finally:
                probe.cancel()

        return original(probed(), **kwargs)

    return run


if __name__ == "__main__":
    sys.path.pop(0)  # bench/ itself: the service imports only the code on PYTHONPATH
    probe_path = os.environ.get("SEALROOM_BENCH_PROBE")
    if probe_path:
        asyncio.run = _with_probe(asyncio.run, probe_path)
    from bridge.cli import main

    sys.exit(main())
