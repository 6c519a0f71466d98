"""Which code held the event loop: a sampling profiler for the sealroom child of a benchmark.

    STALLPROF_OUT=/tmp/stalls.txt PYTHONPATH=<checkout>:bench/stall_profile \\
        .venv/bin/python bench/loop_stall.py --reps 1

Python imports this file at start in every process with this folder on its path; it acts only
in the service child of a benchmark (bench/_service.py, SEALROOM_BENCH_PROBE set). Every loop
callback is timed; while one runs longer than 4 ms, a thread samples the loop thread's stack
every 2 ms (the switch interval is lowered to 1 ms so that it gets the GIL). Each callback over
15 ms is written to $STALLPROF_OUT with its most frequent stacks (innermost frame first), then
the stacks of all samples. A callback without samples held no Python code: the process was not
running (another process had the CPU). Profiling only: it slows the service a little.
"""

from __future__ import annotations

import os
import sys

if (
    os.environ.get("STALLPROF_OUT")
    and os.environ.get("SEALROOM_BENCH_PROBE")
    and any(arg.endswith("_service.py") for arg in sys.argv)
):
    import asyncio.events
    import atexit
    import collections
    import threading
    import time
    import traceback
    from typing import Any

    _OUT = os.environ["STALLPROF_OUT"]
    _MAIN = threading.main_thread().ident
    _state: dict[str, Any] = {"start": None, "stacks": None}
    _all: collections.Counter[str] = collections.Counter()
    _stalls: list[tuple[float, float, str, list[tuple[int, str]]]] = []
    _run = asyncio.events.Handle._run
    sys.setswitchinterval(0.001)

    def _timed_run(self: asyncio.events.Handle) -> None:
        started = time.perf_counter()
        _state["stacks"] = collections.Counter()
        _state["start"] = started
        try:
            _run(self)
        finally:
            _state["start"] = None
            took = time.perf_counter() - started
            if took > 0.015:
                top = _state["stacks"].most_common(4)
                _stalls.append(
                    (time.time(), took * 1000, repr(self)[:200], [(n, k) for k, n in top])
                )

    def _sample() -> None:
        while True:
            time.sleep(0.002)
            started = _state["start"]
            if started is None or time.perf_counter() - started < 0.004:
                continue
            frame = sys._current_frames().get(_MAIN)  # noqa: SLF001 (a profiler's one way in)
            if frame is None:
                continue
            frames = traceback.extract_stack(frame)[-16:]
            key = " <- ".join(
                f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in reversed(frames)
            )
            stacks = _state["stacks"]
            if stacks is not None:
                stacks[key] += 1
            _all[key] += 1

    def _dump() -> None:
        with open(_OUT, "w", encoding="utf-8") as out:
            out.write(f"callbacks over 15 ms: {len(_stalls)}\n")
            for wall, took, handle, top in sorted(_stalls, key=lambda s: -s[1])[:80]:
                out.write(f"== {took:.1f} ms at {wall:.1f} {handle}\n")
                for count, stack in top:
                    out.write(f"   {count}: {stack}\n")
            out.write("\n==== all samples\n")
            for stack, count in _all.most_common(50):
                out.write(f"{count}: {stack}\n")

    def _dump_every_5s() -> None:
        while True:
            time.sleep(5)
            try:
                _dump()
            except OSError:
                pass

    asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
    threading.Thread(target=_sample, name="stallprof-sampler", daemon=True).start()
    threading.Thread(target=_dump_every_5s, name="stallprof-dump", daemon=True).start()
    atexit.register(_dump)
