"""Row 7: the worst event-loop stall in a burst of 50 rooms whose members have 20 devices.

    python bench/loop_stall.py [--reps 3] [--rooms 50] [--members 5] [--devices 20] [--quick]

`members` customers with `devices` cross-signed devices each are made first (untimed). Each
repetition: `rooms` webhooks, each link redeemed by one of the customers in turn, the customer
joins each room as soon as it is invited (by its alias, over the client API), and sealroom
encrypts its rules notice for all their devices. The probe in bench/_service.py samples the
service's loop every 5 ms from the first webhook until every room holds the bot's notice; the
figures are the worst stall and the p99 of the samples. No baseline. Target: worst <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from urllib.parse import quote

import _common
from _common import MatrixUser, Stack, percentile, read_probe


async def run(args: argparse.Namespace) -> int:
    rooms = 12 if args.quick else args.rooms
    devices = 6 if args.quick else args.devices
    members = 2 if args.quick else args.members
    reps = 1 if args.quick else args.reps

    async def body(stack: Stack) -> int:
        customers = [
            await stack.user("customer", devices=devices, sync=False) for _ in range(members)
        ]
        print(f"   {members} customers with {devices} devices each ready", flush=True)
        worst: list[float] = []
        p99: list[float] = []
        for rep in range(reps):
            started_wall = time.time()
            started = time.perf_counter()
            await asyncio.gather(
                *(room_flow(stack, customers[i % members], args.timeout) for i in range(rooms))
            )
            elapsed = time.perf_counter() - started
            ended_wall = time.time()
            await asyncio.sleep(0.5)
            lags = [
                lag
                for sample in read_probe(stack.probe_path)
                if started_wall <= sample.wall <= ended_wall + 0.3
                for lag in sample.lags_ms
            ]
            worst.append(max(lags))
            p99.append(percentile(lags, 99))
            print(
                f"   rep {rep + 1}: {rooms} rooms in {elapsed:.1f} s, worst stall "
                f"{worst[-1]:.1f} ms, p99 {p99[-1]:.1f} ms ({len(lags)} samples)",
                flush=True,
            )
        title = f"row 7: event-loop stalls, burst of {rooms} rooms with {devices}-device members"
        _common.report(
            title,
            "worst stall",
            worst,
            None,
            unit="ms",
            target="<= 20 ms",
            meets=lambda v: v <= 20,
        )
        _common.report(title, "p99 of 5 ms samples", p99, None, unit="ms", target="-")
        return 0

    return await _common.with_stack(body)


async def room_flow(stack: Stack, customer: MatrixUser, timeout: float) -> None:
    """Webhook, redeem, join once invited, until the bot's notice is in the room."""
    assert stack.http is not None
    token = await stack.open_ticket(f"S-{secrets.token_hex(5)}")
    status, data = await _common.post_json(
        stack.url, "/i/redeem", {"token": token, "user_id": customer.user_id}, session=stack.http
    )
    if status != 200:
        raise RuntimeError(f"redeem failed: {status} {data}")
    alias = str(data["room_alias"])
    base = f"{stack.synapse.url}/_matrix/client/v3"
    headers = {"Authorization": f"Bearer {customer.client.access_token}"}
    deadline = time.monotonic() + timeout
    room_id = ""
    while not room_id:
        async with stack.http.post(
            f"{base}/join/{quote(alias, safe='')}", json={}, headers=headers
        ) as resp:
            answer = await resp.json()
            if resp.status == 200:
                room_id = str(answer["room_id"])
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"never invited to {alias}: {resp.status} {answer}")
        await asyncio.sleep(0.25)
    while True:
        url = f"{base}/rooms/{room_id}/messages?dir=b&limit=10"
        async with stack.http.get(url, headers=headers) as resp:
            chunk = (await resp.json()).get("chunk", [])
        if any(e["type"] == "m.room.encrypted" and e["sender"] == stack.bot_id for e in chunk):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no notice in {room_id}")
        await asyncio.sleep(0.25)


if __name__ == "__main__":
    parser = _common.parser(__doc__)
    parser.add_argument("--rooms", type=int, default=50, help="rooms per burst")
    parser.add_argument("--members", type=int, default=5, help="distinct customers")
    parser.add_argument("--devices", type=int, default=20, help="devices of each customer")
    parser.add_argument(
        "--timeout", type=float, default=240, help="seconds each room may take (default 240)"
    )
    sys.exit(_common.main(run, parser.parse_args()))
