"""What every benchmark shares: one local Synapse, a bare nio bot (the baseline), sealroom as a
child process (the code measured), Matrix users, and the statistics printed.

Which sealroom is measured: the one on PYTHONPATH if set (``PYTHONPATH=/other/checkout``
measures another checkout with these benchmarks), else this checkout. The child runs through
bench/_service.py, which adds an event-loop probe: every 5 ms it notes how late the loop woke
it (a stall) and the loop thread's CPU time, written to a file the benchmark reads.

Only ratios mean something on a shared machine: every benchmark measures its baseline in the
same run, interleaved, against the same Synapse.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
if os.environ.get("PYTHONPATH"):
    sys.path.append(str(ROOT))  # the code measured comes from PYTHONPATH; tests/support too
else:
    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = str(ROOT)  # and the child measures this checkout

import aiohttp  # noqa: E402
import nio  # noqa: E402

import bridge  # noqa: E402
from bridge.devtools.localsynapse import LocalSynapse, free_port  # noqa: E402
from tests.support.cross_signing import CrossSigning, cross_sign, sign_device_of  # noqa: E402
from tests.support.http_json import post_json, post_webhook  # noqa: E402
from tests.support.matrix_users import MatrixUser  # noqa: E402
from tests.support.service_config import AGENT, service_config, webhook_secret  # noqa: E402

ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}
RULES_NEEDLE = "only to share credentials"
INTEGRATION = "bench"


# -- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def spread(values: Sequence[float]) -> str:
    middle = statistics.median(values)
    return f"median {middle:.4g} (min {min(values):.4g}, max {max(values):.4g}, n={len(values)})"


def report(
    title: str,
    figure: str,
    ours: Sequence[float],
    base: Sequence[float] | None,
    *,
    target: str,
    unit: str = "s",
    meets: Callable[[float], bool] | None = None,
) -> float | None:
    """Print one row: our figure and the baseline's over repetitions, the ratio, the target."""
    print()
    print(f"== {title}")
    print(f"   measured code: {Path(bridge.__file__).resolve().parents[1]}")
    print(f"   {figure:<28} {spread(ours)} {unit}")
    ratio = None
    if base:
        print(f"   {'baseline':<28} {spread(base)} {unit}")
        ratios = [a / b for a, b in zip(ours, base, strict=False) if b]
        ratio = statistics.median(ours) / statistics.median(base)
        print(f"   ratio of the medians         {ratio:.3f}x   (per repetition: {spread(ratios)})")
    value = ratio if ratio is not None else statistics.median(ours)
    verdict = "" if meets is None else ("  MET" if meets(value) else "  MISSED")
    print(f"   target                       {target}{verdict}")
    return ratio


def parser(doc: str, reps: int = 3) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.split("\n\n", 1)[0])
    parser.add_argument("--reps", type=int, default=reps, help=f"repetitions (default {reps})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    return parser


def main(run: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    """Run a benchmark; SIGTERM and Ctrl-C stop everything it started."""

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args)

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130


async def interleaved(
    reps: int, ours: Callable[[], Awaitable[float]], base: Callable[[], Awaitable[float]]
) -> tuple[list[float], list[float]]:
    """Each repetition measures both, alternating which goes first."""
    mine: list[float] = []
    theirs: list[float] = []
    for rep in range(reps):
        order = [(mine, ours), (theirs, base)]
        if rep % 2:
            order.reverse()
        for results, measure in order:
            results.append(await measure())
        print(f"   rep {rep + 1}: sealroom {mine[-1]:.4g}  baseline {theirs[-1]:.4g}", flush=True)
    return mine, theirs


# -- the loop probe in the child ---------------------------------------------------------------


@dataclass
class ProbeSample:
    wall: float
    thread_cpu: float
    process_cpu: float
    lags_ms: list[float]


def read_probe(path: Path) -> list[ProbeSample]:
    samples = []
    if not path.exists():
        return samples
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, IndexError):
            wall, thread_cpu, process_cpu, lags = line.split(" ", 3)
            samples.append(
                ProbeSample(
                    float(wall),
                    float(thread_cpu),
                    float(process_cpu),
                    [float(x) for x in lags.split(",") if x],
                )
            )
    return samples


# -- the stack ---------------------------------------------------------------------------------


class Stack:
    """One Synapse, one bare nio bot, one agent, one sealroom child process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.synapse = LocalSynapse(folder / "synapse")
        self.users: list[MatrixUser] = []
        self.bot: MatrixUser | None = None
        self.agent: MatrixUser | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""
        self.secret = ""
        self.bot_id = ""
        self.probe_path = folder / "probe.txt"
        self.http: aiohttp.ClientSession | None = None
        self._count = 0

    async def start(self, *, jobs: dict[str, Any] | None = None) -> None:
        print(f"   starting Synapse and sealroom in {self.folder} ...", flush=True)
        await self.synapse.start()
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=60)
        )
        self.bot = await self.user("baseline-bot", sync=True)
        self.agent = await self.user("agent", sync=True)
        await self._start_service(jobs)

    async def _start_service(self, jobs: dict[str, Any] | None) -> None:
        folder = self.folder / "sealroom"
        folder.mkdir()
        password = secrets.token_urlsafe(16)
        self.bot_id = await self.synapse.register_user(
            f"sealroom-bot-{secrets.token_hex(3)}", password
        )
        assert self.agent is not None
        self.secret = webhook_secret()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = service_config(
            self.synapse.url,
            str(folder / "data"),
            bot_id=self.bot_id,
            bot_password=password,
            pickle_key=secrets.token_urlsafe(24),
            port=port,
            secret=self.secret,
            agents={AGENT: self.agent.user_id},
            integration=INTEGRATION,
            log_level="WARNING",
            jobs=jobs,
        )
        (folder / "config.yaml").write_text(json.dumps(config))
        log = open(folder / "sealroom.log", "wb")  # noqa: SIM115 (the child owns it)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH / "_service.py"),
            "run",
            "-c",
            str(folder / "config.yaml"),
            stdout=log,
            stderr=log,
            env={**os.environ, "SEALROOM_BENCH_PROBE": str(self.probe_path)},
        )
        log.close()
        await self._wait_ready(folder / "sealroom.log")

    async def _wait_ready(self, log_path: Path, timeout: float = 90) -> None:
        assert self.http is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.returncode is not None:
                raise RuntimeError(f"sealroom exited: {log_path.read_text()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with self.http.get(f"{self.url}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"sealroom not ready after {timeout} s: {log_path.read_text()[-3000:]}")

    async def stop(self) -> None:
        """Every step guarded, so one failure does not leave a process running."""
        users, self.users = self.users, []
        await asyncio.gather(*(user.stop() for user in users), return_exceptions=True)
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self.http is not None:
            await self.http.close()
        await self.synapse.stop()

    # -- users ---------------------------------------------------------------------------------

    async def user(self, name: str, *, sync: bool = True, devices: int = 1) -> MatrixUser:
        """A fresh account whose devices are all cross-signed (verified by their owner, as
        Element does at login, which sealroom's default strict trust requires)."""
        self._count += 1
        localpart = f"{name}-{self._count}-{secrets.token_hex(3)}"
        user = await MatrixUser.create(
            self.synapse.url, self.synapse, localpart, self.folder / "nio" / localpart
        )
        self.users.append(user)
        await user.start()
        await user.wait_until(
            lambda: user.client.olm is not None and user.client.olm.account.shared,
            what="device keys uploaded",
        )
        keys: CrossSigning = await cross_sign(user)
        user.cross_signing = keys
        if devices > 1:
            slots = asyncio.Semaphore(4)  # a login hashes the password: Synapse is slow at it

            async def extra(n: int) -> None:
                async with slots:
                    await self._extra_device(user, localpart, keys, n)

            await asyncio.gather(*(extra(n) for n in range(devices - 1)))
        if not sync:
            await user.stop()
        return user

    async def _extra_device(
        self, owner: MatrixUser, localpart: str, keys: CrossSigning, n: int
    ) -> None:
        """Another logged-in device of `owner`, with its keys and one-time keys uploaded,
        cross-signed, then left idle (it exists for the sender to encrypt to)."""
        store_dir = self.folder / "nio" / f"{localpart}-d{n}"
        store_dir.mkdir(parents=True)
        config = nio.AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=False, pickle_key=f"bench-{n}"
        )
        client = nio.AsyncClient(
            self.synapse.url, owner.user_id, store_path=str(store_dir), config=config
        )
        login = await client.login(owner.password, device_name=f"bench device {n}")
        if not isinstance(login, nio.LoginResponse):
            await client.close()
            raise RuntimeError(f"login of another device of {owner.user_id}: {login}")
        device = MatrixUser(client, owner.password)
        try:
            await device.start()
            await device.wait_until(
                lambda: device.client.olm is not None and device.client.olm.account.shared,
                what="device keys uploaded",
            )
            await sign_device_of(device, keys, device.device_id)
        finally:
            await device.stop()

    # -- sealroom ------------------------------------------------------------------------------

    async def webhook(self, ticket: str) -> tuple[int, dict[str, Any]]:
        payload = {
            "event": "open",
            "ticket": {"id": ticket, "subject": "Benchmark"},
            "agent": AGENT,
            "customer": {"name": "Bench Customer"},
        }
        status, data = await post_webhook(
            self.url, self.secret, payload, integration=INTEGRATION, session=self.http
        )
        return status, data

    async def open_ticket(self, ticket: str | None = None) -> str:
        """A webhook that must be accepted; returns the invite token."""
        status, data = await self.webhook(ticket or f"T-{secrets.token_hex(5)}")
        if status != 201:
            raise RuntimeError(f"webhook failed: {status} {data}")
        return str(data["invite_url"]).split("#", 1)[1]

    async def redeem(self, token: str, user_id: str) -> None:
        status, data = await post_json(
            self.url, "/i/redeem", {"token": token, "user_id": user_id}, session=self.http
        )
        if status != 200:
            raise RuntimeError(f"redeem failed: {status} {data}")

    # -- the baseline --------------------------------------------------------------------------

    async def raw_create_room(self, invite: Sequence[str] = ()) -> str:
        """The bare bot's createRoom: private, encrypted from the start, `invite` in the call."""
        assert self.bot is not None
        assert self.http is not None
        body = {
            "preset": "private_chat",
            "visibility": "private",
            "name": "baseline",
            "invite": list(invite),
            "initial_state": [ENCRYPTION_STATE],
        }
        url = f"{self.synapse.url}/_matrix/client/v3/createRoom"
        headers = {"Authorization": f"Bearer {self.bot.client.access_token}"}
        async with self.http.post(url, json=body, headers=headers) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"createRoom failed: {resp.status} {data}")
            return str(data["room_id"])

    async def raw_join(self, user: MatrixUser, room_id: str) -> None:
        assert self.http is not None
        url = f"{self.synapse.url}/_matrix/client/v3/rooms/{room_id}/join"
        headers = {"Authorization": f"Bearer {user.client.access_token}"}
        async with self.http.post(url, json={}, headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"join failed: {resp.status} {await resp.text()}")


async def send_notice(user: MatrixUser, room_id: str, body: str) -> None:
    """A bare nio bot's m.notice, encrypted for every current device of every member."""
    room = await user.wait_for_room(room_id)
    if not room.members_synced:
        members = await user.client.joined_members(room_id)
        if not isinstance(members, nio.JoinedMembersResponse):
            raise RuntimeError(f"joined_members({room_id}) failed: {members}")
    if user.client.olm is not None:
        user.client.olm.update_tracked_users(room)
    if user.client.should_query_keys:
        with contextlib.suppress(nio.LocalProtocolError):  # a concurrent sync may have done it
            await user.client.keys_query()
    resp = await user.client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.notice", "body": body},
        ignore_unverified_devices=True,
    )
    if not isinstance(resp, nio.RoomSendResponse):
        raise RuntimeError(f"baseline notice to {room_id} failed: {resp}")


async def with_stack(
    body: Callable[[Stack], Awaitable[int]], *, jobs: dict[str, Any] | None = None
) -> int:
    with tempfile.TemporaryDirectory(prefix="sealroom-bench-") as tmp:
        stack = Stack(Path(tmp))
        try:
            await stack.start(jobs=jobs)
            return await body(stack)
        finally:
            await stack.stop()
