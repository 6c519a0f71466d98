"""Two real sealroom processes on one PostgreSQL database: SIGKILL the one running the bot.

Both accept webhooks; the standby takes the cluster lock when the leader dies and goes on with
the same bot device and crypto state (bridge/cluster.py). Nothing accepted is lost or doubled,
and a customer decrypts the notice the new leader sends.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bridge.devtools.localsynapse import LocalSynapse, free_port
from tests.support.databases import fresh_postgres_database
from tests.support.fixtures import MatrixUserFactory
from tests.support.http_json import post_json, post_webhook
from tests.support.matrix_users import from_bot
from tests.support.service_config import AGENT, service_config, webhook_secret
from tests.support.service_process import ServiceProcess

BURST = 12
KILL_AFTER = 5  # accepted webhooks before the leader is killed


def _instance(
    folder: Path, name: str, base: dict[str, Any], secret: str, token: str, pickle_key: str
) -> ServiceProcess:
    folder.mkdir()
    (folder / "bot_token").write_text(token)
    (folder / "pickle_key").write_text(pickle_key)
    port = free_port()
    config = {
        **base,
        "http": {"bind": "127.0.0.1", "port": port, "public_base_url": f"http://127.0.0.1:{port}"},
        "bot": {**base["bot"], "access_token_file": "bot_token", "pickle_key_file": "pickle_key"},
        "cluster": {
            "enabled": True,
            "instance_id": name,
            "lock_retry_seconds": 0.5,
            "check_seconds": 0.5,
        },
    }
    service = ServiceProcess(folder, config, secret, port)
    service.write_config()
    return service


async def _bot_devices(synapse: LocalSynapse, token: str, bot_id: str) -> dict[str, str]:
    """The bot's devices as the homeserver lists them: {device_id: ed25519 key}."""
    _, data = await post_json(
        synapse.url,
        "/_matrix/client/v3/keys/query",
        {"device_keys": {bot_id: []}},
        headers={"Authorization": f"Bearer {token}"},
    )
    devices = data["device_keys"].get(bot_id, {})
    return {device_id: keys["keys"][f"ed25519:{device_id}"] for device_id, keys in devices.items()}


async def _wait_for_log(service: ServiceProcess, event: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.get("event") == event for e in service.events(service.runs)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {event} after {timeout} s: {service.log_text(service.runs)[-3000:]}")


async def _two_instances(
    synapse: LocalSynapse,
    tmp_path: Path,
    database_url: str,
    agent_id: str,
    jobs: dict[str, Any],
) -> tuple[str, str, ServiceProcess, ServiceProcess]:
    """A new bot account and two instances for it on one database, not started yet:
    (bot ID, webhook secret, "a", "b")."""
    password = secrets.token_urlsafe(16)
    bot_id = await synapse.register_user(f"sealroom-ha-{secrets.token_hex(4)}", password)
    token = (await synapse.login(bot_id, password))["access_token"]
    secret = webhook_secret()
    base = service_config(
        synapse.url,
        "data",
        bot_id=bot_id,
        port=0,
        secret=secret,
        agents={AGENT: agent_id},
        log_level="INFO",
        database_url=database_url,
        jobs=jobs,
    )
    pickle_key = secrets.token_urlsafe(24)
    first = _instance(tmp_path / "a", "a", base, secret, token, pickle_key)
    second = _instance(tmp_path / "b", "b", base, secret, token, pickle_key)
    return bot_id, secret, first, second


async def _start_leader_then_standby(leader: ServiceProcess, standby: ServiceProcess) -> None:
    await leader.start()
    await leader.wait_ready(90)
    await _wait_for_log(leader, "cluster.elected", 10)
    await _wait_for_log(leader, "cluster.listening", 10)
    await _wait_for_log(leader, "bot.identity_ready", 90)
    await standby.start()
    await standby.wait_ready(60)
    await _wait_for_log(standby, "cluster.standby", 10)


async def test_sigkill_of_the_leader_during_a_burst(
    synapse: LocalSynapse, matrix_user: MatrixUserFactory, tmp_path: Path
) -> None:
    async with fresh_postgres_database("sealroom_failover") as database_url:
        agent = await matrix_user("agent")
        customer = await matrix_user("customer")
        jobs = {"retry_initial_seconds": 0.2, "retry_max_seconds": 2.0, "poll_seconds": 0.5}
        bot_id, secret, first, second = await _two_instances(
            synapse, tmp_path, database_url, agent.user_id, jobs
        )
        try:
            await _start_leader_then_standby(first, second)
            devices_before = await _bot_devices(synapse, agent.client.access_token, bot_id)
            assert len(devices_before) == 1, devices_before

            accepted: dict[str, dict[str, Any]] = {}
            killed_at: list[float] = []

            async def deliver(i: int) -> None:
                """Like a helpdesk: on a refused connection, deliver again (same webhook id)
                to the other instance."""
                payload = {
                    "event": "open",
                    "ticket": {"id": f"T-HA-{i}", "subject": f"Failover {i}"},
                    "agent": AGENT,
                }
                webhook_id = f"msg_ha_{i}_{secrets.token_hex(4)}"
                targets = [first, second] if i % 2 == 0 else [second, first]
                for attempt in range(20):
                    target = targets[min(attempt, 1)]
                    try:
                        status, data = await post_webhook(
                            target.url, secret, payload, webhook_id=webhook_id
                        )
                    except (aiohttp.ClientError, OSError):
                        await asyncio.sleep(0.2)
                        continue
                    assert status in (200, 201), (status, data)
                    accepted[f"T-HA-{i}"] = data
                    if len(accepted) == KILL_AFTER and not killed_at:
                        killed_at.append(time.monotonic())
                        await first.kill()
                    return
                raise AssertionError(f"webhook {i} was never accepted")

            async def staggered(i: int) -> None:
                await asyncio.sleep(0.1 * i)
                await deliver(i)

            await asyncio.wait_for(asyncio.gather(*(staggered(i) for i in range(BURST))), 120)
            assert killed_at, "the leader was never killed"
            assert len(accepted) == BURST

            await _wait_for_log(second, "cluster.elected", 60)
            await _wait_for_log(second, "bot.identity_ready", 90)
            takeover = time.monotonic() - killed_at[0]
            print(
                f"\ntakeover (SIGKILL of the leader -> the standby's bot ready): {takeover:.2f} s"
            )

            # Every accepted webhook: exactly one session and one room, the agent invited once.
            rooms = await _rooms_when_ready(database_url, BURST, 180)
            assert set(rooms) == {f"T-HA-{i}" for i in range(BURST)}
            assert len(set(rooms.values())) == BURST
            for room_id in rooms.values():
                await agent.wait_for_invite(room_id, timeout=60)
            assert set(agent.client.invited_rooms) | set(agent.client.rooms) == set(rooms.values())

            # The same device and keys: the new leader loaded the crypto state, made none.
            assert await _bot_devices(synapse, agent.client.access_token, bot_id) == (
                devices_before
            )

            # The customer decrypts the new leader's notice.
            ticket = f"T-HA-{BURST - 1}"
            invite_token = str(accepted[ticket]["invite_url"]).split("#", 1)[1]
            status, data = await second.post_json(
                "/i/redeem", {"token": invite_token, "user_id": customer.user_id}
            )
            assert status == 200, data
            room_id = rooms[ticket]
            await customer.wait_for_invite(room_id, timeout=60)
            await customer.join(room_id)
            await customer.wait_for_message(
                room_id, from_bot(bot_id, "only to share credentials"), timeout=90
            )
            assert customer.undecryptable(room_id) == []
            # Its room key went into the key backup, recorded in the shared crypto schema
            # (where the next leader reads what needs no upload again).
            assert await _backed_up_sessions_when_any(database_url, bot_id, 60)
            log = second.log_text(second.runs)
            assert "already exists" not in log
            assert "bot.backup_failed" not in log
            assert "bot.backup_state_unavailable" not in log
        finally:
            await first.kill()
            assert await second.stop() == 0


async def _rooms_when_ready(database_url: str, count: int, timeout: float) -> dict[str, str]:
    """{ticket: room_id} once `count` sessions have a room."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await connection.fetch("SELECT ticket_ref, room_id FROM secure_sessions")
            # ticket_ref may carry the integration's name before the ticket's id
            rooms = {
                r["ticket_ref"].rsplit(":", 1)[-1]: r["room_id"] for r in rows if r["room_id"]
            }
            if len(rows) == len(rooms) == count or time.monotonic() > deadline:
                assert len(rows) == count, f"{len(rows)} sessions for {count} tickets"
                return rooms
            await asyncio.sleep(0.3)
    finally:
        await connection.close()


async def _backed_up_sessions_when_any(database_url: str, bot_id: str, timeout: float) -> int:
    """How many of the bot's room keys the crypto schema records as backed up, once any are
    (the upload runs in the background after the notice)."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        deadline = time.monotonic() + timeout
        while True:
            count = int(
                await connection.fetchval(
                    "SELECT count(*) FROM sealroom_crypto.sealroom_backed_up_sessions"
                    " WHERE user_id = $1",
                    bot_id,
                )
            )
            if count or time.monotonic() > deadline:
                return count
            await asyncio.sleep(0.3)
    finally:
        await connection.close()


async def test_a_webhook_the_standby_accepts_is_acted_on_by_the_leader_without_its_poll(
    synapse: LocalSynapse, matrix_user: MatrixUserFactory, tmp_path: Path
) -> None:
    """The leader polls for jobs only every 300 s here: the room comes from the NOTIFY."""
    async with fresh_postgres_database("sealroom_signal") as database_url:
        agent = await matrix_user("agent")
        _, secret, leader, standby = await _two_instances(
            synapse, tmp_path, database_url, agent.user_id, {"poll_seconds": 300}
        )
        try:
            await _start_leader_then_standby(leader, standby)
            # Let the leader's job loop settle into its 300 s sleep.
            await asyncio.sleep(1)
            for i in range(2):
                status, data = await post_webhook(
                    standby.url,
                    secret,
                    {"event": "open", "ticket": {"id": f"T-SIG-{i}"}, "agent": AGENT},
                )
                assert status == 201, data
                rooms = await _rooms_when_ready(database_url, i + 1, 60)
                await agent.wait_for_invite(rooms[f"T-SIG-{i}"], timeout=60)
        finally:
            assert await standby.stop() == 0
            assert await leader.stop() == 0
