"""bridge.cluster on a real PostgreSQL: one holder at a time, takeover, loss detected, fenced."""

from __future__ import annotations

import asyncio

import asyncpg

from bridge.cluster import ClusterSettings, JobSignals, Leadership
from store import Database
from tests.support.databases import fresh_postgres_database


def settings(url: str, instance: str) -> ClusterSettings:
    return ClusterSettings(
        instance_id=instance,
        dsn=Database(url).libpq_url(),
        lock_name="@bot:example.org",
        lock_retry_seconds=0.1,
        check_seconds=0.1,
        lost_after_seconds=2.0,
    )


async def test_one_leader_and_the_standby_takes_over_when_it_goes() -> None:
    async with fresh_postgres_database("sealroom_cluster_test") as url:
        first, second = Leadership(settings(url, "a")), Leadership(settings(url, "b"))
        try:
            assert first.fence() is not None  # nobody acts before it holds the lock
            await asyncio.wait_for(first.campaign(), 10)
            assert first.fence() is None
            assert first.is_leader

            standby = asyncio.create_task(second.campaign())
            await asyncio.sleep(0.5)  # several tries of the standby
            assert not standby.done()
            assert "standby" in (second.fence() or "")

            await first.close()  # the leader's connection ends, as when its process dies
            await asyncio.wait_for(standby, 10)
            assert second.is_leader
            assert second.fence() is None
        finally:
            await first.close()
            await second.close()


async def test_a_leader_whose_connection_is_cut_fences_itself() -> None:
    async with fresh_postgres_database("sealroom_cluster_test") as url:
        leader = Leadership(settings(url, "a"))
        try:
            await asyncio.wait_for(leader.campaign(), 10)
            watch = asyncio.create_task(leader.watch())
            pid = leader.lock.connection.get_backend_pid()
            admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            try:
                await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            await asyncio.wait_for(watch, 10)
            assert leader.lost.is_set()
            assert "lost" in (leader.fence() or "")
        finally:
            await leader.close()


async def _signalled(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), 10)
    except TimeoutError:
        raise AssertionError(f"the leader was not signalled {what}") from None
    event.clear()


async def test_a_job_signal_from_a_standby_wakes_the_leader_even_after_its_connection_broke() -> (
    None
):
    async with fresh_postgres_database("sealroom_cluster_test") as url:
        dsn = Database(url).libpq_url()
        woken = asyncio.Event()
        leader = JobSignals(dsn, on_signal=woken.set, retry_seconds=0.1)
        standby = JobSignals(dsn, on_signal=lambda: None)
        try:
            leader.listen()
            # On (re)connecting, the leader looks once: a signal sent before it listened.
            await _signalled(woken, "when it started listening")
            await asyncio.sleep(0.2)
            assert not woken.is_set()

            standby.notify()
            await _signalled(woken, "by the standby's NOTIFY")

            # Many signals at once are coalesced, and still reach it.
            for _ in range(50):
                standby.notify()
            await _signalled(woken, "after a burst of signals")

            # The listener's connection is cut (a database restart, a proxy): it comes back.
            assert leader._connection is not None
            pid = leader._connection.get_server_pid()
            admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            try:
                await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            await _signalled(woken, "when it listened again")
            standby.notify()
            await _signalled(woken, "by a NOTIFY after it listened again")
        finally:
            await leader.close()
            await standby.close()


async def test_a_job_signal_that_cannot_be_sent_is_only_logged() -> None:
    # Nothing listens on this port: the webhook that scheduled the job must not notice.
    signals = JobSignals("postgresql://sealroom@127.0.0.1:9/none", on_signal=lambda: None)
    signals.notify()
    assert signals._sending is not None
    await asyncio.wait_for(signals._sending, 10)
    await signals.close()
