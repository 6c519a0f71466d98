"""/metrics of a real running service shows the loop, the queue, the homeserver and the cluster."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import SealroomFactory
from tests.support.fixtures import MatrixUserFactory
from tests.support.service_config import AGENT


async def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        samples.setdefault(family.name, [])
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    found = [
        v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    ]
    assert found, f"no {name} {labels} in {sorted(samples)}"
    return sum(found)


async def test_metrics_of_a_running_service(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    agent = await matrix_user("agent")
    service = await sealroom(agents={AGENT: agent.user_id})
    opened = await service.open_ticket("T-METRICS-1")
    room_id = await service.wait_for_room(opened["session_id"])
    await agent.wait_for_invite(room_id)

    # The room is recorded before its job is marked done: wait for the job's observation.
    for _ in range(150):
        samples = await _scrape(service.url)
        if _value(samples, "sealroom_webhook_to_room_ready_seconds_count") >= 1:
            break
        await asyncio.sleep(0.2)
    # The loop-lag watcher runs: observations, and the loop was not blocked for seconds.
    assert _value(samples, "sealroom_event_loop_lag_seconds_count") > 0
    lag_sum = _value(samples, "sealroom_event_loop_lag_seconds_sum")
    assert 0 <= lag_sum / _value(samples, "sealroom_event_loop_lag_seconds_count") < 1.0
    # Homeserver calls by templated endpoint: the sync, and the room creation; no IDs in labels.
    assert (
        _value(
            samples,
            "sealroom_homeserver_request_seconds_count",
            endpoint="/_matrix/client/v3/sync",
        )
        > 0
    )
    assert (
        _value(
            samples,
            "sealroom_homeserver_request_seconds_count",
            endpoint="/_matrix/client/v3/createRoom",
        )
        >= 1
    )
    endpoints = {
        lab["endpoint"] for lab, _ in samples["sealroom_homeserver_request_seconds_count"]
    }
    assert not [e for e in endpoints if "!" in e or "%21" in e or "@" in e or "%40" in e]
    # From the webhook to its room: one observation, positive and below the test's bound.
    assert _value(samples, "sealroom_webhook_to_room_ready_seconds_count") >= 1
    assert 0 < _value(samples, "sealroom_webhook_to_room_ready_seconds_sum") < 120
    # One instance on SQLite is always the one running the bot.
    assert _value(samples, "sealroom_cluster_leader", instance="single") == 1
    # Declared even before anything was undecryptable.
    assert "sealroom_undecryptable_events" in samples


async def test_the_job_queue_gauges_follow_the_queue(
    sealroom: SealroomFactory, matrix_user: MatrixUserFactory
) -> None:
    """Queue depth and oldest age by action, read from the jobs table every few seconds."""
    agent = await matrix_user("agent")
    service = await sealroom(agents={AGENT: agent.user_id})
    await service.app.jobs.stop()  # nothing runs: what the webhook queues stays queued
    await service.open_ticket("T-METRICS-2")
    for _ in range(100):
        samples = await _scrape(service.url)
        depth = [
            v
            for lab, v in samples.get("sealroom_job_queue_depth", [])
            if lab.get("action") == "create_room"
        ]
        if depth == [1.0]:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"the queue depth never showed the waiting job: {samples}")
    age = _value(samples, "sealroom_job_oldest_age_seconds", action="create_room")
    assert 0 <= age < 600
