"""/metrics: request timing by route template, the process collectors, the separate listener,
and the Grafana dashboard in docs/ naming only metrics the app exports.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bridge.web.app import make_metrics_app
from tests.support.api_app import API_TOKEN, ApiApp
from tests.support.promql import alert_exprs, dashboard_exprs, exported_names, metric_names

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest_asyncio.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    opened: list[tuple[TestClient[Any, Any], ApiApp]] = []

    async def make(serve_metrics: bool = True) -> TestClient[Any, Any]:
        built = await ApiApp.build(
            tmp_path / f"sealroom-{len(opened)}.db", serve_metrics=serve_metrics
        )
        client: TestClient[Any, Any] = TestClient(TestServer(built.app))
        await client.start_server()
        opened.append((client, built))
        return client

    yield make
    for client, built in opened:
        await client.close()
        await built.database.close()


def request_count(exposition: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "sealroom_http_request_duration_seconds_count" and (
                sample.labels == labels
            ):
                return float(sample.value)
    return 0.0


async def test_requests_are_timed_by_route_template_never_by_raw_path(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    unknown = str(uuid.uuid4())
    by_template = {
        "method": "GET",
        "route": "/api/v1/sessions/{session_id}",
        "status": "404",
    }
    unmatched = {"method": "GET", "route": "(unmatched)", "status": "404"}
    before = await (await client.get("/metrics")).text()

    assert (await client.get(f"/api/v1/sessions/{unknown}", headers=AUTH)).status == 404
    assert (await client.get(f"/no-such-page/{unknown}")).status == 404
    after = await (await client.get("/metrics")).text()

    assert request_count(after, by_template) == request_count(before, by_template) + 1
    assert request_count(after, unmatched) == request_count(before, unmatched) + 1
    assert unknown not in after  # a caller-chosen path never becomes a label value


async def test_process_and_python_collectors_are_exported(make_client: MakeClient) -> None:
    client = await make_client()

    names = exported_names(await (await client.get("/metrics")).text())

    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"):
        assert name in names


async def test_with_a_metrics_port_metrics_leave_the_public_app(make_client: MakeClient) -> None:
    public = await make_client(serve_metrics=False)
    private: TestClient[Any, Any] = TestClient(TestServer(make_metrics_app()))
    await private.start_server()
    try:
        assert (await public.get("/healthz")).status == 200
        assert (await public.get("/metrics")).status == 404
        response = await private.get("/metrics")
        assert response.status == 200
        assert "sealroom_webhooks_total" in await response.text()
    finally:
        await private.close()


# -- the Grafana dashboard ---------------------------------------------------------------------


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{status=~"5.."}'
        "[$__rate_interval]))) / clamp_min(b_total, 1e-9)"
    )

    assert metric_names(expr) == {"a_bucket", "b_total"}


async def test_every_dashboard_query_names_an_exported_metric(make_client: MakeClient) -> None:
    client = await make_client()
    await client.get("/healthz")
    exported = exported_names(await (await client.get("/metrics")).text())
    exprs = dashboard_exprs()

    assert len(exprs) >= 10
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{expr!r} names {sorted(names - exported)}, not exported"


async def test_every_documented_alert_names_an_exported_metric(make_client: MakeClient) -> None:
    client = await make_client()
    exported = exported_names(await (await client.get("/metrics")).text())
    exprs = alert_exprs()

    assert len(exprs) >= 5
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{expr!r} names {sorted(names - exported)}, not exported"
