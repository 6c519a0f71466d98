"""Key-backup bookkeeping: the event loop's cost of recording one more backed-up room key.

After each encrypted notice the bot uploads the room key to its key backup and records that
the session is backed up. Versions up to e3436cf kept the record in
`data_dir/backup.json` (rewritten and fsynced whole on every upload, serialised on the loop);
this checkout may keep it in the crypto store (bridge/matrix/backup_state.py). The benchmark
records `--sessions` uploads one after another, each made durable before the next (the old
file write, or the record plus the writer's flush that precedes the bot's next request), and
checks "already backed up?" once per record, on the measured checkout's own code (the one on
PYTHONPATH, else this checkout). No homeserver: only the bookkeeping is measured.

Printed per repetition (a fresh data directory each), for the first and the last 100 records:
loop-thread CPU per record (what stalls the event loop) and wall time per durable record.
Compare checkouts back to back (`PYTHONPATH=/other/checkout`); only ratios mean something.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import main, parser, report

USER = "@bench-bot:example.org"
DEVICE = "BENCHDEVICE"
VERSION = "1"
WINDOW = 100


async def _bookkeeping(folder: Path) -> tuple[Callable[[str], Awaitable[None]], Any, Any]:
    """(record one session durably, check one session, close), with the checkout's code."""
    from bridge.matrix.device_files import DeviceFiles

    files = DeviceFiles(folder / "data")
    files.prepare()
    try:
        from bridge.matrix import crypto_store
        from bridge.matrix.backup_state import BackupState
    except ImportError:  # backup.json

        async def record_file(session_id: str) -> None:
            await files.record_backed_up(VERSION, session_id)  # type: ignore[attr-defined]

        async def check_file(session_id: str) -> bool:
            return bool(await files.is_backed_up(VERSION, session_id))  # type: ignore[attr-defined]

        async def close_file() -> None:
            return None

        return record_file, check_file, close_file

    store = crypto_store.store_class(crypto_store.sqlite_database)(
        USER, DEVICE, str(files.store_dir), "bench-pickle-key", ""
    )
    state = BackupState.of(store, files)
    writer = crypto_store.writer_of(store)
    assert state is not None
    assert writer is not None
    await state.load()

    async def record_store(session_id: str) -> None:
        await state.record(VERSION, session_id)
        await writer.flush()  # what the bot's next request waits for

    async def check_store(session_id: str) -> bool:
        return await state.is_backed_up(VERSION, session_id)

    async def close_store() -> None:
        await asyncio.to_thread(writer.close)

    return record_store, check_store, close_store


async def _one_repetition(sessions: int) -> tuple[float, float, float, float]:
    """(loop CPU ms first window, last window, wall ms first window, last window)."""
    with tempfile.TemporaryDirectory(prefix="sealroom-bench-backup-") as tmp:
        record, check, close = await _bookkeeping(Path(tmp))
        cpu: list[float] = []
        wall: list[float] = []
        try:
            for i in range(sessions):
                session_id = f"bench-session-{i:06d}-{'x' * 32}"
                started_cpu, started = time.thread_time(), time.perf_counter()
                if not await check(session_id):
                    await record(session_id)
                cpu.append((time.thread_time() - started_cpu) * 1000)
                wall.append((time.perf_counter() - started) * 1000)
        finally:
            await close()
    return (
        statistics.fmean(cpu[:WINDOW]),
        statistics.fmean(cpu[-WINDOW:]),
        statistics.fmean(wall[:WINDOW]),
        statistics.fmean(wall[-WINDOW:]),
    )


async def run(args: Any) -> int:
    sessions = 400 if args.quick else args.sessions
    results = []
    for rep in range(args.reps):
        results.append(await _one_repetition(sessions))
        cpu_first, cpu_last, wall_first, wall_last = results[-1]
        print(
            f"   rep {rep + 1}: loop CPU/record {cpu_first:.3f} -> {cpu_last:.3f} ms, "
            f"wall/record {wall_first:.3f} -> {wall_last:.3f} ms",
            flush=True,
        )
    title = f"key-backup bookkeeping, {sessions} sessions recorded one by one"
    for index, figure in enumerate(
        [
            f"loop CPU/record, first {WINDOW}",
            f"loop CPU/record, last {WINDOW}",
            f"wall/record, first {WINDOW}",
            f"wall/record, last {WINDOW}",
        ]
    ):
        report(
            title, figure, [r[index] for r in results], None, target="(compare checkouts)",
            unit="ms",
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    arguments = parser(__doc__)
    arguments.add_argument(
        "--sessions", type=int, default=3000, help="uploads recorded per repetition"
    )
    sys.exit(main(run, arguments.parse_args()))
