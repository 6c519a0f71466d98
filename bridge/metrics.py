"""Prometheus metrics, `sealroom_` prefix, in a registry of our own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
