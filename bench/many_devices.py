"""Row 6: the first notice to a member with 20 devices, against a plain nio bot.

    python bench/many_devices.py [--reps 3] [--devices 20] [--quick]

Each repetition makes two fresh customers with `devices` cross-signed devices each (one syncs,
the others exist with their keys and one-time keys uploaded), one per flow, so the sender has
no Olm session with any of them yet. sealroom: webhook, redeem, the customer sees the invite
(untimed); the clock starts at the customer's join and stops when the syncing device decrypts
the rules notice. Baseline: the bare bot's createRoom inviting the customer; the clock starts
at the join, the bot sees it and sends an encrypted m.notice, the device decrypts it.
Target: ratio <= 0.67.
"""

from __future__ import annotations

import argparse
import sys
import time

import _common
from _common import RULES_NEEDLE, Stack, send_notice

from tests.support.matrix_users import from_bot


async def run(args: argparse.Namespace) -> int:
    devices = 6 if args.quick else args.devices
    reps = 1 if args.quick else args.reps

    async def body(stack: Stack) -> int:
        bot = stack.bot
        assert bot is not None

        async def sealroom() -> float:
            customer = await stack.user("customer", devices=devices)
            await stack.redeem(await stack.open_ticket(), customer.user_id)
            room_id = await customer.wait_for_invite(timeout=60)
            started = time.perf_counter()
            await customer.join(room_id)
            await customer.wait_for_message(room_id, from_bot(stack.bot_id, RULES_NEEDLE), 60)
            elapsed = time.perf_counter() - started
            assert customer.undecryptable(room_id) == []
            await customer.stop()
            return elapsed

        async def baseline() -> float:
            customer = await stack.user("customer", devices=devices)
            room_id = await stack.raw_create_room(invite=[customer.user_id])
            await customer.wait_for_invite(room_id, 60)
            started = time.perf_counter()
            await customer.join(room_id)
            await bot.wait_for_join(room_id, customer.user_id, 60)
            await send_notice(bot, room_id, "baseline notice")
            await customer.wait_for_message(room_id, from_bot(bot.user_id), 60)
            elapsed = time.perf_counter() - started
            await customer.stop()
            return elapsed

        ours, base = await _common.interleaved(reps, sealroom, baseline)
        _common.report(
            f"row 6: first notice to a member with {devices} devices vs a plain nio bot",
            "join -> notice decrypted",
            ours,
            base,
            target="ratio <= 0.67",
            meets=lambda r: r <= 0.67,
        )
        return 0

    return await _common.with_stack(body)


if __name__ == "__main__":
    parser = _common.parser(__doc__)
    parser.add_argument("--devices", type=int, default=20, help="devices of each customer")
    sys.exit(_common.main(run, parser.parse_args()))
