"""bridge.cluster on a real PostgreSQL: one holder at a time, takeover, loss detected, fenced."""

from __future__ import annotations

import asyncio

import asyncpg

from bridge.cluster import ClusterSettings, Leadership
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
