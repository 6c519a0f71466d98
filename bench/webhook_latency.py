"""Row 1: a webhook accepted (durable 201) p50, against a raw createRoom p50.

    python bench/webhook_latency.py [--reps 3] [--count 20] [--quick]

Each repetition sends `count` signed webhooks one at a time and has the bare bot make `count`
raw createRoom calls one at a time, alternating one of each, against the same Synapse; the
figure is each side's p50 per repetition. Target: ratio <= 0.05.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import _common
from _common import Stack


async def run(args: argparse.Namespace) -> int:
    count = 8 if args.quick else args.count

    async def body(stack: Stack) -> int:
        ours: list[float] = []
        base: list[float] = []
        for rep in range(args.reps):
            hooks: list[float] = []
            rooms: list[float] = []
            for i in range(count):
                for which in ("hook", "room") if (i + rep) % 2 == 0 else ("room", "hook"):
                    started = time.perf_counter()
                    if which == "hook":
                        await stack.open_ticket()
                        hooks.append(time.perf_counter() - started)
                    else:
                        await stack.raw_create_room()
                        rooms.append(time.perf_counter() - started)
            ours.append(statistics.median(hooks) * 1000)
            base.append(statistics.median(rooms) * 1000)
            print(
                f"   rep {rep + 1}: webhook p50 {ours[-1]:.2f} ms  "
                f"createRoom p50 {base[-1]:.2f} ms",
                flush=True,
            )
        _common.report(
            "row 1: webhook accepted (durable 201) p50 vs raw createRoom p50",
            "webhook 201 p50",
            ours,
            base,
            unit="ms",
            target="ratio <= 0.05",
            meets=lambda r: r <= 0.05,
        )
        return 0

    return await _common.with_stack(body)


if __name__ == "__main__":
    parser = _common.parser(__doc__)
    parser.add_argument("--count", type=int, default=20, help="calls of each per repetition")
    sys.exit(_common.main(run, parser.parse_args()))
