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
