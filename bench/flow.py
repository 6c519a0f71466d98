"""End-to-end timing: a bare nio bot versus sealroom, on one local Synapse, round by round.

    python bench/flow.py [--rounds N] [--quick]

Row 4 of bench/README.md (target: ratio <= 1.10). The sealroom measured is the one on PYTHONPATH
when it is set (``PYTHONPATH=/other/checkout python bench/flow.py``), else this checkout.

Each round measures both flows once, in alternating order (so neither always runs on a warmer
Synapse), each with a fresh customer account and device:

- baseline: a bare matrix-nio bot creates an encrypted room (``m.room.encryption`` in
  ``initial_state``) inviting the customer; the customer joins; the bot sends an encrypted
  notice; the customer decrypts it.
- sealroom: a signed webhook to a running sealroom service; ``POST /i/redeem`` with the
  customer's Matrix ID; the customer accepts the invite and joins; the customer decrypts the
  bot's rules notice.

The clock starts before the first request and stops when the customer's client has decrypted
the notice. Account creation, login and the first sync of the customer are not timed. Prints
per-round times, median, p90, the ratio of the medians and this process's RSS. Everything runs
on 127.0.0.1 and is removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import os
import resource
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import nio

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTHONPATH"):  # the code measured comes from PYTHONPATH; tests/support too
    sys.path.append(str(ROOT))
elif str(ROOT) not in sys.path:  # `python bench/flow.py` from a checkout
    sys.path.insert(0, str(ROOT))

from _common import send_notice  # noqa: E402 (bench/, this script's folder)

import bridge  # noqa: E402
import bridge.config  # noqa: E402
from bridge import logs  # noqa: E402
from bridge.app import App  # noqa: E402
from bridge.devtools.localsynapse import LocalSynapse, free_port  # noqa: E402
from tests.support.cross_signing import cross_sign  # noqa: E402
from tests.support.http_json import post_json, post_webhook  # noqa: E402
from tests.support.matrix_users import MatrixUser, from_bot  # noqa: E402
from tests.support.service_config import fresh_agents, service_config, webhook_secret  # noqa: E402

if hasattr(bridge.config, "parse"):  # a checkout from before the config split (bench/compare.sh)
    parse = bridge.config.parse
else:
    from bridge.config_file import parse

MAX_ROUNDS = 50
ROUND_TIMEOUT = 60.0
RULES_NEEDLE = "only to share credentials"
BASELINE_NOTICE = "baseline notice: this room is only for sharing credentials"


class Bench:
    """One Synapse, one bare nio bot, one sealroom service, and the customers made so far."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.synapse = LocalSynapse(folder / "synapse")
        self.bot: MatrixUser | None = None
        self.app: App | None = None
        self.url = ""
        self.secret = ""
        self.customers: list[MatrixUser] = []
        self.log_stream: io.TextIOBase | None = None
        self.phases: dict[str, list[float]] = {}
        self._count = 0

    # -- set-up and tear-down ------------------------------------------------------------------

    async def start(self) -> None:
        await self.synapse.start()
        self.bot = await self._user("baseline-bot")
        await self._start_sealroom()

    async def _user(self, name: str) -> MatrixUser:
        self._count += 1
        localpart = f"{name}-{self._count}-{secrets.token_hex(3)}"
        user = await MatrixUser.create(
            self.synapse.url, self.synapse, localpart, self.folder / "nio" / localpart
        )
        self.customers.append(user)
        await user.start()
        # Like Element at first login (and the tests' users): the device is verified by its
        # owner, which sealroom's default strict trust policy requires before sharing a key.
        await user.wait_until(
            lambda: user.client.olm is not None and user.client.olm.account.shared,
            what="device keys uploaded",
        )
        user.cross_signing = await cross_sign(user)
        return user

    async def _start_sealroom(self) -> None:
        """Configured by the tests' builder, as tests/e2e/conftest.py does, but with the
        product's job defaults and quieter logs."""
        folder = self.folder / "sealroom"
        folder.mkdir()
        bot_password = secrets.token_urlsafe(16)
        bot_id = await self.synapse.register_user(
            f"sealroom-bot-{secrets.token_hex(3)}", bot_password
        )
        agents = await fresh_agents(self.synapse, f"bench-agent-{secrets.token_hex(3)}")
        self.secret = webhook_secret()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = parse(
            service_config(
                self.synapse.url,
                str(folder / "data"),
                bot_id=bot_id,
                bot_password=bot_password,
                pickle_key=secrets.token_urlsafe(24),
                port=port,
                secret=self.secret,
                agents=agents,
                integration="bench",
                log_level="WARNING",
            )
        )
        self.log_stream = open(folder / "sealroom.log", "a", encoding="utf-8")  # noqa: SIM115
        logs.configure("WARNING", "json", stream=self.log_stream, secrets=[bot_password])
        self.app = App(config)
        await self.app.start()
        await self.app.bot.wait_until_synced(60)

    async def stop(self) -> None:
        """Every step guarded, so one failure does not leave Synapse running."""
        users, self.customers = self.customers, []
        await asyncio.gather(*(user.stop() for user in users), return_exceptions=True)
        if self.app is not None:
            app, self.app = self.app, None
            with contextlib.suppress(Exception):
                await app.stop()
        if self.log_stream is not None:
            self.log_stream.close()
            self.log_stream = None
        await self.synapse.stop()

    # -- the two flows -------------------------------------------------------------------------

    async def new_customer(self) -> MatrixUser:
        return await self._user("customer")

    async def baseline(self, customer: MatrixUser) -> float:
        bot = self.bot
        assert bot is not None
        started = time.monotonic()
        created = await bot.client.room_create(
            visibility=nio.RoomVisibility.private,
            name="baseline",
            invite=[customer.user_id],
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        )
        if not isinstance(created, nio.RoomCreateResponse):
            raise RuntimeError(f"baseline room_create failed: {created}")
        room_id = created.room_id
        await customer.wait_for_invite(room_id)
        await customer.join(room_id)
        # Like sealroom's bot, post only once the join is seen, so the notice is encrypted for
        # the customer's device.
        await bot.wait_for_join(room_id, customer.user_id)
        await send_notice(bot, room_id, BASELINE_NOTICE)
        await customer.wait_for_message(room_id, from_bot(bot.user_id))
        elapsed = time.monotonic() - started
        assert customer.undecryptable(room_id) == []
        return elapsed

    async def sealroom(self, customer: MatrixUser, round_no: int) -> float:
        assert self.app is not None
        bot_id = self.app.config.bot.user_id
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            opened = await self._webhook(http, f"B-{round_no}-{secrets.token_hex(3)}")
            token = str(opened["invite_url"]).split("#", 1)[1]
            status, redeemed = await post_json(
                self.url, "/i/redeem", {"token": token, "user_id": customer.user_id}, session=http
            )
            if status != 200:
                raise RuntimeError(f"redeem failed: {status} {redeemed}")
            answered = time.monotonic()
        room_id = await customer.wait_for_invite(timeout=ROUND_TIMEOUT)
        invited = time.monotonic()
        await customer.join(room_id)
        joined = time.monotonic()
        await customer.wait_for_message(room_id, from_bot(bot_id, RULES_NEEDLE))
        elapsed = time.monotonic() - started
        for phase, seconds in (
            ("webhook + redeem answered", answered - started),
            ("-> invite seen by customer", invited - answered),
            ("-> customer joined", joined - invited),
            ("-> rules notice decrypted", started + elapsed - joined),
        ):
            self.phases.setdefault(phase, []).append(seconds)
        assert customer.undecryptable(room_id) == []
        return elapsed

    async def _webhook(self, http: aiohttp.ClientSession, ticket: str) -> dict[str, Any]:
        payload = {
            "event": "open",
            "ticket": {"id": ticket, "subject": "Benchmark"},
            "agent": "agent@example.com",
            "customer": {"name": "Bench Customer"},
        }
        status, data = await post_webhook(
            self.url, self.secret, payload, integration="bench", session=http
        )
        if status != 201:
            raise RuntimeError(f"webhook failed: {status} {data}")
        return data


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def rss_now_kib() -> int:
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


async def timed(label: str, flow: Callable[[], Awaitable[float]]) -> float:
    try:
        return await asyncio.wait_for(flow(), ROUND_TIMEOUT)
    except TimeoutError:
        raise RuntimeError(f"{label}: no result within {ROUND_TIMEOUT:.0f} s") from None


async def run(rounds: int) -> int:
    results: dict[str, list[float]] = {"baseline": [], "sealroom": []}
    with tempfile.TemporaryDirectory(prefix="sealroom-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            print(f"starting Synapse and sealroom in {tmp} ...", flush=True)
            await bench.start()
            print(
                f"{'round':>5}  {'first':<8}  {'baseline s':>10}  {'sealroom s':>10}", flush=True
            )
            for round_no in range(1, rounds + 1):
                order = ["baseline", "sealroom"] if round_no % 2 else ["sealroom", "baseline"]
                times: dict[str, float] = {}
                for name in order:
                    customer = await bench.new_customer()
                    if name == "baseline":
                        times[name] = await timed(name, lambda c=customer: bench.baseline(c))
                    else:
                        times[name] = await timed(
                            name, lambda c=customer, r=round_no: bench.sealroom(c, r)
                        )
                    results[name].append(times[name])
                    await customer.stop()
                    bench.customers.remove(customer)
                print(
                    f"{round_no:>5}  {order[0]:<8}  {times['baseline']:>10.3f}  "
                    f"{times['sealroom']:>10.3f}",
                    flush=True,
                )
        finally:
            await bench.stop()
    base, seal = results["baseline"], results["sealroom"]
    print()
    print(f"rounds: {len(base)} (order alternates each round)")
    for name, values in results.items():
        print(
            f"{name:<8}  median {statistics.median(values):7.3f} s   p90 {p90(values):7.3f} s"
            f"   min {min(values):7.3f} s   max {max(values):7.3f} s"
        )
    print(
        "sealroom phases (median): "
        + ", ".join(
            f"{phase} {statistics.median(values):.3f} s" for phase, values in bench.phases.items()
        )
    )
    ratio = statistics.median(seal) / statistics.median(base)
    per_round = sorted(s / b for s, b in zip(seal, base, strict=True))
    print(
        f"ratio sealroom/baseline of the medians: {ratio:.3f}x   (per round: median "
        f"{statistics.median(per_round):.3f}, min {per_round[0]:.3f}, max {per_round[-1]:.3f})"
    )
    print(f"target: ratio <= 1.10  {'MET' if ratio <= 1.10 else 'MISSED'}")
    print(f"measured code: {Path(bridge.__file__).resolve().parents[1]}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        f"RSS of this process (sealroom service + bench clients; Synapse not included): "
        f"peak {peak / 1024:.1f} MiB (getrusage ru_maxrss), now {rss_now_kib() / 1024:.1f} MiB"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help=f"rounds to measure, 1..{MAX_ROUNDS} (default 10)",
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 3
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds must be between 1 and {MAX_ROUNDS}")

    async def guarded() -> int:
        # SIGTERM cancels like Ctrl-C does, so the finally blocks stop Synapse either way.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args.rounds)

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
