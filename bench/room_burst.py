"""Row 5: rooms per second, a burst of 64 webhooks at concurrency 16, against raw createRoom at
concurrency 16.

    python bench/room_burst.py [--reps 3] [--rooms 64] [--concurrency 16] [--quick]

sealroom: `rooms` webhooks from `concurrency` senders; the clock stops when the agent's client
has seen the invitation to every new room (each room is created with the agent invited). Baseline:
the bare bot's `rooms` createRoom calls (agent in `invite`, encrypted) at the same concurrency,
until the agent has seen every invitation. sealroom runs with `jobs.concurrency` set to
`concurrency` too. Target: ratio of rooms/s >= 0.95.

Before the measured repetitions each side makes one unmeasured burst of `concurrency` rooms
(`--warmup 0` to skip): otherwise the first repetition's first side also pays for what any
fresh process pays once (sealroom's first webhook, first job, first room; Synapse's caches for
a new user) and the second side runs on a warmed homeserver.

Also printed: Synapse's CPU time per room over each burst (its process's user + system time
from /proc, so Linux only), the homeserver's cost of one room of each kind, and sealroom's own
process CPU per room (the two share the machine's cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import _common
from _common import Stack

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process `pid` so far (0 when unknown or not on Linux)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_line(label: str, per_room: list[float]) -> None:
    if any(per_room):
        print(f"   {label:<28} {_common.spread([x * 1000 for x in per_room])} ms")


async def run(args: argparse.Namespace) -> int:
    rooms = 16 if args.quick else args.rooms
    if args.warmup is None:
        args.warmup = args.concurrency

    async def body(stack: Stack) -> int:
        agent = stack.agent
        assert agent is not None
        synapse_process = stack.synapse._process  # the bench's own child: its CPU is read
        synapse_pid = synapse_process.pid if synapse_process else None
        service_pid = stack.process.pid if stack.process else None
        synapse_cpu: dict[str, list[float]] = {"sealroom": [], "baseline": []}
        service_cpu: list[float] = []

        async def burst(
            make: Callable[[], Awaitable[object]], side: str, rooms: int = rooms
        ) -> float:
            known = set(agent.client.invited_rooms)
            left = list(range(rooms))

            async def worker() -> None:
                while left:
                    left.pop()
                    await make()

            cpu_before = cpu_seconds(synapse_pid), cpu_seconds(service_pid)
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            await agent.wait_until(
                lambda: len(set(agent.client.invited_rooms) - known) >= rooms,
                180,
                f"{rooms} invitations",
            )
            elapsed = time.perf_counter() - started
            synapse_cpu[side].append((cpu_seconds(synapse_pid) - cpu_before[0]) / rooms)
            if side == "sealroom":
                service_cpu.append((cpu_seconds(service_pid) - cpu_before[1]) / rooms)
            await asyncio.sleep(1)
            return rooms / elapsed

        async def sealroom(size: int = rooms) -> float:
            return await burst(stack.open_ticket, "sealroom", size)

        async def baseline(size: int = rooms) -> float:
            assert agent is not None
            return await burst(
                lambda: stack.raw_create_room(invite=[agent.user_id]), "baseline", size
            )

        if args.warmup:
            for warm in (sealroom, baseline):
                await warm(args.warmup)
            for side in synapse_cpu.values():
                side.clear()
            service_cpu.clear()
        ours, base = await _common.interleaved(args.reps, sealroom, baseline)
        _common.report(
            f"row 5: rooms/s, burst of {rooms} at concurrency {args.concurrency} vs raw "
            "createRoom",
            "sealroom rooms/s",
            ours,
            base,
            unit="rooms/s",
            target="ratio >= 0.95",
            meets=lambda r: r >= 0.95,
        )
        cpu_line("Synapse CPU/room, sealroom", synapse_cpu["sealroom"])
        cpu_line("Synapse CPU/room, baseline", synapse_cpu["baseline"])
        if synapse_cpu["baseline"] and any(synapse_cpu["baseline"]):
            ratio = statistics.median(synapse_cpu["sealroom"]) / statistics.median(
                synapse_cpu["baseline"]
            )
            print(f"   Synapse CPU/room ratio       {ratio:.3f}x")
        cpu_line("sealroom's own CPU/room", service_cpu)
        return 0

    # As many room creations at once as the baseline's callers (the product's default is 4).
    return await _common.with_stack(body, jobs={"concurrency": args.concurrency})


if __name__ == "__main__":
    parser = _common.parser(__doc__)
    parser.add_argument("--rooms", type=int, default=64, help="rooms per burst")
    parser.add_argument("--concurrency", type=int, default=16, help="callers at once")
    parser.add_argument(
        "--warmup", type=int, default=None, help="rooms per side before measuring (concurrency)"
    )
    sys.exit(_common.main(run, parser.parse_args()))
