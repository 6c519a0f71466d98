"""Row 3: webhook -> room created + agent invited, against raw createRoom (invite in the call)
+ one encrypted send.

    python bench/room_ready.py [--reps 5] [--quick]

sealroom: the clock starts before the webhook and stops when the agent's client (syncing all
along) sees the invitation to the new room. Baseline: the bare nio bot's createRoom with the
agent in `invite` and ``m.room.encryption`` in its initial state, then one encrypted m.notice
into it; the clock stops when both the send is done and the agent sees the invitation.
Target: ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import _common
from _common import Stack, send_notice


async def run(args: argparse.Namespace) -> int:
    reps = 2 if args.quick else args.reps

    async def body(stack: Stack) -> int:
        agent, bot = stack.agent, stack.bot
        assert agent is not None
        assert bot is not None

        def new_invite(known: set[str]) -> str | None:
            fresh = set(agent.client.invited_rooms) - known
            return next(iter(fresh), None)

        async def sealroom() -> float:
            known = set(agent.client.invited_rooms)
            started = time.perf_counter()
            await stack.open_ticket()
            await agent.wait_until(lambda: new_invite(known), 60, "the agent's invite")
            return time.perf_counter() - started

        async def baseline() -> float:
            started = time.perf_counter()
            room_id = await stack.raw_create_room(invite=[agent.user_id])
            await asyncio.gather(
                agent.wait_for_invite(room_id, 60),
                send_notice(bot, room_id, "baseline notice"),
            )
            return time.perf_counter() - started

        ours, base = await _common.interleaved(reps, sealroom, baseline)
        _common.report(
            "row 3: webhook -> room created + agent invited vs raw createRoom(invite) + one "
            "encrypted send",
            "webhook -> agent invited",
            ours,
            base,
            target="ratio <= 1.10",
            meets=lambda r: r <= 1.10,
        )
        return 0

    return await _common.with_stack(body)


if __name__ == "__main__":
    sys.exit(_common.main(run, _common.parser(__doc__, reps=5).parse_args()))
