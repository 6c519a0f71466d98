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

A job scheduled on a standby (it accepted the webhook) would wait for the leader's next poll;
`JobSignals` sends a PostgreSQL NOTIFY after the job's transaction commits, and the leader, which
LISTENs, wakes its job runner at once. The poll stays as the fallback for a lost notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from bridge import metrics

log = structlog.stdlib.get_logger(__name__)

CRYPTO_SCHEMA = "sealroom_crypto"
JOBS_CHANNEL = "sealroom_jobs"
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


class JobSignals:
    """NOTIFY the leader that jobs were scheduled; on the leader, LISTEN and wake its runner.

    One asyncpg connection per instance, opened on first use and again after it breaks. Signals
    are best effort: none is ever needed for correctness (the leader polls anyway), so a failure
    is logged and never reaches the webhook that scheduled the job.
    """

    def __init__(self, dsn: str, on_signal: Callable[[], None], retry_seconds: float = 1.0):
        self.dsn = dsn
        self.on_signal = on_signal
        self.retry_seconds = retry_seconds
        self._connection: Any = None
        self._connect_lock = asyncio.Lock()
        self._sending: asyncio.Task[None] | None = None
        self._again = False
        self._listener: asyncio.Task[None] | None = None

    async def _connect(self) -> Any:
        async with self._connect_lock:
            if self._connection is None or self._connection.is_closed():
                import asyncpg  # only the cluster needs it here

                self._connection = await asyncpg.connect(self.dsn, timeout=5)
            return self._connection

    def notify(self) -> None:
        """Signal the leader (fire and forget); signals while one is in flight become one."""
        if self._sending is not None and not self._sending.done():
            self._again = True
            return
        self._sending = asyncio.create_task(self._send(), name="sealroom-job-signal")

    async def _send(self) -> None:
        while True:
            self._again = False
            try:
                connection = await self._connect()
                await connection.execute(f"NOTIFY {JOBS_CHANNEL}")
            except Exception as err:  # noqa: BLE001 (the leader's poll is the fallback)
                log.warning("cluster.signal_failed", error=type(err).__name__)
                await self._drop()
                return
            metrics.CLUSTER_SIGNALS.labels("sent").inc()
            if not self._again:
                return

    def listen(self) -> None:
        """On the leader: wake the runner on every signal, until close()."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="sealroom-job-listener")

    async def _listen(self) -> None:
        while True:
            broken = asyncio.Event()
            try:
                connection = await self._connect()
                connection.add_termination_listener(lambda _, ended=broken: ended.set())
                await connection.add_listener(JOBS_CHANNEL, self._signalled)
                log.info("cluster.listening", channel=JOBS_CHANNEL)
                # Anything signalled while we were not listening: look now.
                self.on_signal()
                await broken.wait()
                log.warning("cluster.listener_lost")
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 (retry: the poll covers the gap)
                log.warning("cluster.listen_failed", error=type(err).__name__)
            await self._drop()
            await asyncio.sleep(self.retry_seconds)

    def _signalled(self, *_: Any) -> None:
        metrics.CLUSTER_SIGNALS.labels("received").inc()
        self.on_signal()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)

    async def close(self) -> None:
        tasks = [t for t in (self._listener, self._sending) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._listener = None
        await self._drop()
