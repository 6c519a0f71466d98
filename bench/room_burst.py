"""Row 5: rooms per second, a burst of 64 webhooks at concurrency 16, against raw createRoom at
concurrency 16.

    python bench/room_burst.py [--reps 3] [--rooms 64] [--concurrency 16] [--quick]

sealroom: `rooms` webhooks from `concurrency` senders; the clock stops when the agent's client
has seen the invitation to every new room (each room is created with the agent invited). Baseline:
the bare bot's `rooms` createRoom calls (agent in `invite`, encrypted) at the same concurrency,
until the agent has seen every invitation. sealroom runs with `jobs.concurrency` set to
`concurrency` too. Target: ratio of rooms/s >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import _common
from _common import Stack


async def run(args: argparse.Namespace) -> int:
    rooms = 16 if args.quick else args.rooms

    async def body(stack: Stack) -> int:
        agent = stack.agent
        assert agent is not None

        async def burst(make: Callable[[], Awaitable[object]]) -> float:
            known = set(agent.client.invited_rooms)
            left = list(range(rooms))

            async def worker() -> None:
                while left:
                    left.pop()
                    await make()

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            await agent.wait_until(
                lambda: len(set(agent.client.invited_rooms) - known) >= rooms,
                180,
                f"{rooms} invitations",
            )
            elapsed = time.perf_counter() - started
            await asyncio.sleep(1)
            return rooms / elapsed

        async def sealroom() -> float:
            return await burst(stack.open_ticket)

        async def baseline() -> float:
            assert agent is not None
            return await burst(lambda: stack.raw_create_room(invite=[agent.user_id]))

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
        return 0

    # As many room creations at once as the baseline's callers (the product's default is 4).
    return await _common.with_stack(body, jobs={"concurrency": args.concurrency})


if __name__ == "__main__":
    parser = _common.parser(__doc__)
    parser.add_argument("--rooms", type=int, default=64, help="rooms per burst")
    parser.add_argument("--concurrency", type=int, default=16, help="callers at once")
    sys.exit(_common.main(run, parser.parse_args()))
