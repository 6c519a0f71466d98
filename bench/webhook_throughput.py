"""Row 2: valid webhooks per second sustained at concurrency 16 on SQLite; p95, p99; loop CPU.

    python bench/webhook_throughput.py [--reps 3] [--count 240] [--concurrency 16] [--quick]

Each repetition sends `count` signed webhooks (distinct tickets) from `concurrency` senders at
once and times each until its 201. The service's loop-thread CPU over the burst (from the probe
in bench/_service.py) divided by `count` is the loop CPU per webhook; it includes whatever else
the loop did meanwhile (the room creations the burst started). The process CPU per webhook is
the same for all the service's threads (SQLite's writer thread included, which the loop's
figure leaves out). No baseline: targets are >= 300 webhooks/s and p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time

import _common
from _common import Stack, percentile, read_probe


async def run(args: argparse.Namespace) -> int:
    count = 64 if args.quick else args.count

    async def body(stack: Stack) -> int:
        rates: list[float] = []
        p95s: list[float] = []
        p99s: list[float] = []
        cpus: list[float] = []
        process_cpus: list[float] = []
        for rep in range(args.reps):
            queue: asyncio.Queue[str] = asyncio.Queue()
            for i in range(count):
                queue.put_nowait(f"L-{rep}-{i}-{secrets.token_hex(3)}")
            latencies: list[float] = []

            async def sender(queue: asyncio.Queue[str], latencies: list[float]) -> None:
                while not queue.empty():
                    ticket = queue.get_nowait()
                    started = time.perf_counter()
                    status, data = await stack.webhook(ticket)
                    if status != 201:
                        raise RuntimeError(f"webhook failed: {status} {data}")
                    latencies.append(time.perf_counter() - started)

            await asyncio.sleep(0.3)
            before = read_probe(stack.probe_path)[-1]
            started = time.perf_counter()
            await asyncio.gather(*(sender(queue, latencies) for _ in range(args.concurrency)))
            wall = time.perf_counter() - started
            await asyncio.sleep(0.3)  # the probe's next line
            after = read_probe(stack.probe_path)[-1]
            rates.append(count / wall)
            p95s.append(percentile(latencies, 95) * 1000)
            p99s.append(percentile(latencies, 99) * 1000)
            cpus.append((after.thread_cpu - before.thread_cpu) / count * 1000)
            process_cpus.append((after.process_cpu - before.process_cpu) / count * 1000)
            print(
                f"   rep {rep + 1}: {rates[-1]:.1f} webhooks/s  p95 {p95s[-1]:.0f} ms  "
                f"p99 {p99s[-1]:.0f} ms  loop CPU {cpus[-1]:.2f} ms/webhook  "
                f"process CPU {process_cpus[-1]:.2f} ms/webhook",
                flush=True,
            )
            await asyncio.sleep(2)  # let the room creations it started drain a little
        title = f"row 2: valid webhooks/s, concurrency {args.concurrency}, SQLite"
        _common.report(
            title,
            "webhooks/s",
            rates,
            None,
            unit="/s",
            target=">= 300/s",
            meets=lambda v: v >= 300,
        )
        _common.report(title, "p95", p95s, None, unit="ms", target="-")
        _common.report(
            title, "p99", p99s, None, unit="ms", target="<= 250 ms", meets=lambda v: v <= 250
        )
        _common.report(title, "loop CPU per webhook", cpus, None, unit="ms", target="-")
        _common.report(title, "process CPU per webhook", process_cpus, None, unit="ms", target="-")
        return 0

    return await _common.with_stack(body)


if __name__ == "__main__":
    parser = _common.parser(__doc__)
    parser.add_argument("--count", type=int, default=240, help="webhooks per repetition")
    parser.add_argument("--concurrency", type=int, default=16, help="senders at once")
    sys.exit(_common.main(run, parser.parse_args()))
