"""metrics.port: the real service serves /metrics on its own listener and not on the public port,
timing real requests by route template, and exporting every metric the dashboard queries."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bridge.devtools.localsynapse import free_port
from tests.e2e.conftest import SealroomFactory
from tests.support.promql import dashboard_exprs, exported_names, metric_names


async def test_metrics_move_to_their_own_listener(sealroom: SealroomFactory) -> None:
    metrics_port = free_port()
    service = await sealroom(metrics={"bind": "127.0.0.1", "port": metrics_port})
    await service.open_ticket("T-METRICS")

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service.url}/metrics") as public:
            public_status = public.status
        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as private:
            assert private.status == 200
            exposition = await private.text()

    assert public_status == 404
    webhooks = [
        sample
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "sealroom_http_request_duration_seconds_count"
        and sample.labels.get("route") == "/hooks/{integration}"
        and sample.labels.get("status") == "201"
    ]
    assert webhooks
    assert webhooks[0].value >= 1
    exported = exported_names(exposition)
    for expr in dashboard_exprs():
        assert metric_names(expr) <= exported, expr
