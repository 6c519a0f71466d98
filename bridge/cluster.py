"""Several instances on one PostgreSQL database: exactly one of them runs the bot.

Every instance serves webhooks and pages. The bot (its Matrix device, sync, crypto store and
the durable jobs) runs only in the instance holding a PostgreSQL session-level advisory lock,
keyed by the bot's user ID, on a connection of its own. That same connection carries the bot's
crypto store (schema `sealroom_crypto`), so:

- the lock is the fence: crypto state is written only through the connection that holds it; if
  that connection is gone, so are the lock and every later write;
- PostgreSQL frees the lock when the leader's connection ends (a crash closes its socket at
  once; a silent network loss within the server-side keepalive time set below), and a standby
  polling every `lock_retry_seconds` takes over, loading the same device and crypto state;
- the leader pings its connection every `check_seconds`; without a good ping for
  `lost_after_seconds` (less than the server's keepalive time, so before another instance can
  hold the lock) it refuses every further homeserver request and the process exits, to be
  restarted as a standby by its supervisor.

No consensus of our own: PostgreSQL decides who holds the lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from bridge import metrics

log = structlog.stdlib.get_logger(__name__)

CRYPTO_SCHEMA = "sealroom_crypto"
# The server drops a silent leader's connection (and frees the lock) after about
# idle + interval * count seconds; `lost_after_seconds` must stay below it.
SERVER_KEEPALIVE = {"idle": 5, "interval": 2, "count": 3}
SERVER_RELEASE_SECONDS = (
    SERVER_KEEPALIVE["idle"] + SERVER_KEEPALIVE["interval"] * SERVER_KEEPALIVE["count"]
)


@dataclass(frozen=True)
class ClusterSettings:
    instance_id: str
    dsn: str  # libpq URL of the service's database
    lock_name: str  # what the lock is for (the bot's user ID)
    lock_retry_seconds: float = 1.0
    check_seconds: float = 1.0
    lost_after_seconds: float = 5.0


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for `name`."""
    digest = hashlib.sha256(f"sealroom-bot:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LeaderConnection:
    """The psycopg2 connection that holds the advisory lock (blocking calls: use a thread)."""

    def __init__(self, dsn: str, key: int) -> None:
        self.dsn = dsn
        self.key = key
        self.connection: Any = None

    def try_acquire(self) -> bool:
        import psycopg2  # only the cluster needs it
        import psycopg2.extensions

        if self.connection is None or self.connection.closed:
            conn = psycopg2.connect(
                self.dsn, connect_timeout=5, keepalives=1, keepalives_idle=5,
                keepalives_interval=2, keepalives_count=3, application_name="sealroom-leader",
            )  # fmt: skip
            conn.autocommit = True
            # nio's pickles are bytea: hand them back as bytes, as SQLite does.
            bytea = psycopg2.extensions.new_type(
                psycopg2.BINARY.values,
                "SEALROOM_BYTEA",
                lambda value, cursor: (
                    None if value is None else bytes(psycopg2.BINARY(value, cursor))
                ),
            )
            psycopg2.extensions.register_type(bytea, conn)
            with conn.cursor() as cursor:
                cursor.execute(f"SET tcp_keepalives_idle = {SERVER_KEEPALIVE['idle']}")
                cursor.execute(f"SET tcp_keepalives_interval = {SERVER_KEEPALIVE['interval']}")
                cursor.execute(f"SET tcp_keepalives_count = {SERVER_KEEPALIVE['count']}")
            self.connection = conn
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
            held = bool(cursor.fetchone()[0])
            if held:
                cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{CRYPTO_SCHEMA}"')
                cursor.execute(f'SET search_path TO "{CRYPTO_SCHEMA}"')
        return held

    def ping(self) -> None:
        """Raises if the connection (and so the lock) is gone."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def close(self) -> None:
        if self.connection is not None and not self.connection.closed:
            self.connection.close()


class Leadership:
    """Campaign for the lock, watch it while held, and say whether this process may act."""

    def __init__(self, settings: ClusterSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self.lock = LeaderConnection(settings.dsn, lock_key(settings.lock_name))
        self.elected = asyncio.Event()
        self.lost = asyncio.Event()
        self._last_ok = 0.0
        self._gauge = metrics.CLUSTER_LEADER.labels(settings.instance_id)
        self._gauge.set(0)

    @property
    def is_leader(self) -> bool:
        return self.elected.is_set() and not self.lost.is_set()

    def fence(self) -> str | None:
        """None while this process holds the lock and has confirmed it recently."""
        if not self.elected.is_set():
            return "this instance is a standby (another one runs the bot)"
        if self.lost.is_set() or self.clock() - self._last_ok > self.settings.lost_after_seconds:
            return "this instance lost the bot's cluster lock"
        return None

    async def campaign(self) -> None:
        """Return once this process holds the lock."""
        waited = False
        while True:
            try:
                held = await asyncio.to_thread(self.lock.try_acquire)
            except Exception as err:  # noqa: BLE001 (the database may be down: keep trying)
                log.warning("cluster.lock_unavailable", error=type(err).__name__)
                await asyncio.to_thread(self.lock.close)
                held = False
            if held:
                self._last_ok = self.clock()
                self.elected.set()
                self._gauge.set(1)
                log.info(
                    "cluster.elected", instance_id=self.settings.instance_id, after_wait=waited
                )
                return
            if not waited:
                log.info("cluster.standby", instance_id=self.settings.instance_id)
                waited = True
            await asyncio.sleep(self.settings.lock_retry_seconds)

    async def watch(self) -> None:
        """While leader: ping the lock connection; return (with `lost` set) when it is gone."""
        while True:
            await asyncio.sleep(self.settings.check_seconds)
            try:
                await asyncio.wait_for(
                    asyncio.to_thread(self.lock.ping), self.settings.lost_after_seconds
                )
            except Exception as err:  # noqa: BLE001 (any failure means the lock may be gone)
                self._lose(type(err).__name__)
                return
            self._last_ok = self.clock()

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            self.lost.set()
            self._gauge.set(0)
            log.error("cluster.leadership_lost", instance_id=self.settings.instance_id, why=why)

    async def close(self) -> None:
        self._gauge.set(0)
        await asyncio.to_thread(self.lock.close)
