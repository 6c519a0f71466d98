"""Prometheus metrics, `sealroom_` prefix, in a registry of our own."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOKS = Counter(
    "sealroom_webhooks_total",
    "Webhook deliveries by integration and outcome",
    ["integration", "outcome"],
    registry=REGISTRY,
)
REDEEMS = Counter(
    "sealroom_invite_redeems_total",
    "Invite redemptions by outcome",
    ["outcome"],
    registry=REGISTRY,
)
JOBS = Counter(
    "sealroom_jobs_total",
    "Job runs by action and outcome",
    ["action", "outcome"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "sealroom_job_duration_seconds", "Job run time by action", ["action"], registry=REGISTRY
)
SYNC_AGE = Gauge(
    "sealroom_sync_age_seconds", "Seconds since the bot's last completed sync", registry=REGISTRY
)

# -- the process and the HTTP server (#12) -----------------------------------------------------
# prometheus_client's standard collectors, in our registry: process_* (CPU, memory, open files,
# start time), python_info, python_gc_*.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Labelled by the route's template (/hooks/{integration}), never the raw path: a path is chosen
# by whoever sends the request, and each distinct label value is a new time series.
UNMATCHED_ROUTE = "(unmatched)"
HTTP_REQUEST_DURATION = Histogram(
    "sealroom_http_request_duration_seconds",
    "HTTP request handling time by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)


# -- scale and failover (issue #11): the loop, the job queue, the homeserver, the cluster --------

LOOP_LAG = Histogram(
    "sealroom_event_loop_lag_seconds",
    "How late the event loop ran a timer: time the loop was blocked",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
JOB_QUEUE_DEPTH = Gauge(
    "sealroom_job_queue_depth",
    "Jobs waiting or running, by action",
    ["action"],
    registry=REGISTRY,
)
JOB_OLDEST_AGE = Gauge(
    "sealroom_job_oldest_age_seconds",
    "Age of the oldest job waiting or running, by action",
    ["action"],
    registry=REGISTRY,
)
HOMESERVER_LATENCY = Histogram(
    "sealroom_homeserver_request_seconds",
    "Bot requests to the homeserver by endpoint (path with IDs replaced by {})",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
WEBHOOK_TO_ROOM_READY = Histogram(
    "sealroom_webhook_to_room_ready_seconds",
    "From an accepted webhook to its room created with the agent invited",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
    registry=REGISTRY,
)
UNDECRYPTABLE = Counter(
    "sealroom_undecryptable_events_total",
    "Room events the bot could not decrypt, by cause",
    ["cause"],
    registry=REGISTRY,
)
CLUSTER_LEADER = Gauge(
    "sealroom_cluster_leader",
    "1 while this instance runs the bot (holds the cluster lock), else 0",
    ["instance"],
    registry=REGISTRY,
)
CLUSTER_SIGNALS = Counter(
    "sealroom_cluster_job_signals_total",
    "Job wake-ups (PostgreSQL NOTIFY) this instance sent, or received as the leader",
    ["direction"],
    registry=REGISTRY,
)


async def watch_loop_lag(interval: float = 0.25) -> None:
    """Sleep `interval` again and again; how much later than asked we wake is the loop's lag."""
    import asyncio
    import time

    while True:
        started = time.monotonic()
        await asyncio.sleep(interval)
        LOOP_LAG.observe(max(time.monotonic() - started - interval, 0.0))


def set_job_queue(stats: dict[str, tuple[int, float]]) -> None:
    """Set the queue gauges from {action: (count, oldest age in seconds)}; absent means 0."""
    for action in set(stats) | _seen_actions:
        count, age = stats.get(action, (0, 0.0))
        JOB_QUEUE_DEPTH.labels(action).set(count)
        JOB_OLDEST_AGE.labels(action).set(age)
    _seen_actions.update(stats)


_seen_actions: set[str] = set()
