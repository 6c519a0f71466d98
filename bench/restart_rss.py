"""Rows 8 and 9 of issue #11: memory and restart time with many sessions, against bare nio.

    python bench/restart_rss.py [--sessions 1000] [--repetitions 3] [--before-src DIR]

One local Synapse; one sealroom process (`python -m bridge run`, SQLite) is given `--sessions`
webhooks (concurrency 16) and runs until every session has its room and no job is left. A bare
matrix-nio device of the same bot account (bench/_restart_nio_child.py) is then in the same
rooms. Each repetition, interleaved:

- row 9, restart to ready: sealroom is stopped (SIGTERM) and started again, timed from the spawn
  to `/readyz` 200 (synced, identity checked); the bare nio process is spawned, restores its
  login and crypto store and does one full-state sync from its saved token, timed from the spawn
  to that sync handled;
- row 8, RSS: each process's resident memory (VmRSS) 3 s after it is ready.

With `--before-src DIR` (another checkout, e.g. main before a change) each repetition also
restarts that checkout's sealroom on the same data and database, so "before" and "after" come
from the same run and the same rooms (after one untimed warm-up start of it).

Prints every figure, the medians with their spread, and the ratios to nio. Targets (the issue):
RSS <= 100 MB (nio in the same rooms: ~80 MB); restart <= 1.2x nio's. Bounded: the whole run
stops after `--budget` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/restart_rss.py` from a checkout
    sys.path.insert(0, str(ROOT))

from bridge.devtools.localsynapse import LocalSynapse  # noqa: E402
from tests.support.http_json import post_webhook  # noqa: E402
from tests.support.service_config import AGENT  # noqa: E402
from tests.support.service_process import ServiceProcess  # noqa: E402

CONCURRENCY = 16
SETTLE_SECONDS = 3.0
NIO_CHILD = ROOT / "bench" / "_restart_nio_child.py"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


class Run:
    def __init__(self, folder: Path, sessions: int) -> None:
        self.folder = folder
        self.sessions = sessions
        self.synapse = LocalSynapse(folder / "synapse")
        self.service: ServiceProcess | None = None
        self.nio_folder = folder / "nio"
        self.bot_password = ""

    async def start(self) -> None:
        await self.synapse.start()
        # The child runs this checkout's sealroom (not the venv's install).
        os.environ["PYTHONPATH"] = str(ROOT)
        service = await ServiceProcess.create(self.synapse, self.folder / "sealroom")
        service.config["jobs"] = {
            "concurrency": 8,
            "retry_initial_seconds": 0.2,
            "retry_max_seconds": 2.0,
            "poll_seconds": 1.0,
        }
        service.config["logging"] = {"level": "WARNING", "format": "json"}
        service.write_config()
        self.bot_password = (service.folder / "bot_password").read_text()
        self.service = service
        await service.start()
        await service.wait_ready(180)

    async def fill(self, timeout: float) -> None:
        """`sessions` webhooks, then wait until every session has a room and no job is due (the
        expiry jobs wait for their time)."""
        assert self.service is not None
        service = self.service
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(self.sessions):
            queue.put_nowait(i)
        started = time.monotonic()

        async def worker(http: aiohttp.ClientSession) -> None:
            while not queue.empty():
                i = queue.get_nowait()
                payload = {
                    "event": "open",
                    "ticket": {"id": f"B-{i}", "subject": f"bench {i}"},
                    "agent": AGENT,
                    "customer": {"name": "Bench Customer"},
                }
                webhook_id = f"msg_bench_{i}"
                for attempt in range(5):  # a loaded machine may time out: deliver again
                    try:
                        status, data = await post_webhook(
                            service.url, service.secret, payload, webhook_id=webhook_id,
                            session=http,
                        )  # fmt: skip
                        break
                    except (TimeoutError, aiohttp.ClientError):
                        if attempt == 4:
                            raise
                assert status in (200, 201), (status, data)

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
        took = time.monotonic() - started
        print(f"{self.sessions} webhooks accepted in {took:.1f} s", flush=True)
        database = service.folder / "data" / "sealroom.db"
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
                rooms = db.execute(
                    "SELECT count(*) FROM secure_sessions WHERE room_id IS NOT NULL"
                ).fetchone()[0]
                waiting = db.execute(
                    "SELECT count(*) FROM jobs WHERE state = 'running' OR "
                    "(state = 'pending' AND run_after <= datetime('now'))"
                ).fetchone()[0]
            if rooms >= self.sessions and waiting == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {rooms} rooms, {waiting} jobs left after {timeout} s")
            print(f"  rooms {rooms}/{self.sessions}, jobs waiting {waiting}", flush=True)
            await asyncio.sleep(5)
        print(f"all rooms ready after {time.monotonic() - started:.1f} s", flush=True)

    async def nio_login(self) -> None:
        assert self.service is not None
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(NIO_CHILD), "--homeserver", self.synapse.url,
            "--folder", str(self.nio_folder), "login", self.service.bot_id, self.bot_password,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 600)
        assert process.returncode == 0, out
        print(f"bare nio device: {out.decode().strip()}", flush=True)

    async def sealroom_restart(self, source: Path = ROOT) -> tuple[float, float]:
        """(seconds from spawn to /readyz 200, RSS in MiB once settled) of the sealroom in the
        checkout `source`."""
        assert self.service is not None
        assert await self.service.stop() == 0
        os.environ["PYTHONPATH"] = str(source)
        started = time.monotonic()
        await self.service.start()
        await self.service.wait_ready(300)
        ready = time.monotonic() - started
        await asyncio.sleep(SETTLE_SECONDS)
        assert self.service.process is not None
        return ready, rss_mib(self.service.process.pid)

    async def nio_restart(self) -> tuple[float, float]:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(NIO_CHILD), "--homeserver", self.synapse.url,
            "--folder", str(self.nio_folder), "restart",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        assert process.stdin is not None
        line = await asyncio.wait_for(process.stdout.readline(), 300)
        ready = time.monotonic() - started
        assert line.startswith(b"READY"), line
        await asyncio.sleep(SETTLE_SECONDS)
        rss = rss_mib(process.pid)
        process.stdin.write(b"quit\n")
        await process.stdin.drain()
        await asyncio.wait_for(process.wait(), 60)
        return ready, rss

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
        await self.synapse.stop()


async def run(sessions: int, repetitions: int, before: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="sealroom-bench-") as tmp:
        folder = Path(tmp)
        (folder / "sealroom").mkdir()
        bench = Run(folder, sessions)
        try:
            await bench.start()
            await bench.fill(timeout=120 + 3.0 * sessions)
            await bench.nio_login()
            restarts = {
                "sealroom": bench.sealroom_restart,
                "nio": bench.nio_restart,
            }
            if before is not None:
                restarts["before"] = functools.partial(bench.sealroom_restart, before)
                await restarts["before"]()  # warm-up: its own sync token, files
            figures: dict[str, list[float]] = {}
            for who in restarts:
                figures[f"{who}_ready"] = []
                figures[f"{who}_rss"] = []
            for repetition in range(1, repetitions + 1):
                order = list(restarts)
                order = order[repetition - 1 :] + order[: repetition - 1]  # rotate
                for who in order:
                    ready, rss = await restarts[who]()
                    figures[f"{who}_ready"].append(ready)
                    figures[f"{who}_rss"].append(rss)
                    print(
                        f"repetition {repetition}: {who:8s} ready {ready:6.2f} s, "
                        f"RSS {rss:6.1f} MiB",
                        flush=True,
                    )
        finally:
            await bench.stop()
    print(f"\n{sessions} sessions, {repetitions} repetitions")
    for name, values in figures.items():
        print(f"{name:15s} {spread(values)}")
    for who in [w for w in ("before", "sealroom") if f"{w}_rss" in figures]:
        rss = statistics.median(figures[f"{who}_rss"])
        rss_ratio = rss / statistics.median(figures["nio_rss"])
        ready_ratio = statistics.median(figures[f"{who}_ready"]) / statistics.median(
            figures["nio_ready"]
        )
        print(f"{who}: row 8 RSS {rss:.1f} MiB = {rss_ratio:.2f}x bare nio (target <= 100 MB)")
        print(f"{who}: row 9 restart to ready = {ready_ratio:.2f}x bare nio (target <= 1.2x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--before-src", type=Path, default=None)
    parser.add_argument("--budget", type=float, default=3600.0, help="seconds for the whole run")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 100 sessions, 3 repetitions"
    )
    args = parser.parse_args()
    if args.quick:
        args.sessions = 100
    if not 1 <= args.sessions <= 5000 or not 3 <= args.repetitions <= 20:
        parser.error("--sessions 1..5000 and --repetitions 3..20")

    async def bounded() -> None:
        work = run(args.sessions, args.repetitions, args.before_src)
        await asyncio.wait_for(work, args.budget)

    loop = asyncio.new_event_loop()
    task = loop.create_task(bounded())
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        loop.run_until_complete(task)
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
