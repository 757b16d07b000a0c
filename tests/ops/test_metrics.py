"""GET /metrics: request latency by route template, consumer lag, outbox backlog, events
applied — scraped from a running app after some traffic, on both transports."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.registry import all_modules
from shared.app import create_app
from shared.config import Settings
from tests.conftest import BOTH_TRANSPORTS, AppClient, auth
from tests.orders.factories import make_order
from tests.support.waiting import eventually

SUBSCRIPTIONS = {s.name for m in all_modules() for s in m.subscriptions}


async def scrape(client: httpx.AsyncClient) -> dict[str, list[Sample]]:
    response = await client.get("/metrics", headers=auth("analyst", "prometheus"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def caught_up(metrics: dict[str, list[Sample]]) -> bool:
    lags = metrics.get("salesbook_consumer_lag_events", [])
    backlogs = metrics.get("salesbook_outbox_backlog_events", [])
    applied = sum(s.value for s in metrics.get("salesbook_events_applied", []))
    return (
        {s.labels["subscription"] for s in lags} == SUBSCRIPTIONS
        and bool(backlogs)
        and all(s.value == 0 for s in lags + backlogs)
        and applied > 0
    )


@BOTH_TRANSPORTS
async def test_metrics_after_traffic_and_lag_drains_to_zero(app_client: AppClient) -> None:
    async with app_client() as client:
        order = await make_order(client, submit=True)
        assert (await client.get(f"/v1/orders/{order['id']}")).status_code == 401
        assert (await client.get("/v1/no-such-thing")).status_code == 404

        metrics = await eventually(lambda: scrape(client), caught_up, seconds=30)
        # Not a health check: a token of any role, but a token.
        assert (await client.get("/metrics")).status_code == 401
        bad = await client.get("/metrics", headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code == 401
        assert (await client.get("/metrics", headers=auth("pos"))).status_code == 200

    latency = metrics["salesbook_http_request_duration_seconds"]
    counted = {
        (s.labels["method"], s.labels["route"], s.labels["status"])
        for s in latency
        if s.name.endswith("_count")
    }
    assert ("POST", "/v1/orders", "201") in counted
    # Route templates, not paths: one series however many orders there are.
    assert ("GET", "/v1/orders/{order_id}", "401") in counted
    assert ("GET", "unmatched", "404") in counted
    assert not any(order["id"] in route for _, route, _ in counted)

    backlog_sources = {s.labels["source"] for s in metrics["salesbook_outbox_backlog_events"]}
    assert {"orders", "payments", "closing"} <= backlog_sources


async def test_each_app_has_its_own_registry(migrated: str, settings: Settings) -> None:
    """Two apps in one process both expose /metrics: nothing is registered globally."""
    first = create_app(all_modules(), settings=settings, database_url=migrated, run_workers=False)
    second = create_app(all_modules(), settings=settings, database_url=migrated, run_workers=False)
    assert first.state.metrics.registry is not second.state.metrics.registry
    for app in (first, second):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get("/healthz")).status_code == 200
                metrics = await scrape(client)
        healthz = [
            s
            for s in metrics["salesbook_http_request_duration_seconds"]
            if s.name.endswith("_count") and s.labels["route"] == "/healthz"
        ]
        assert [s.value for s in healthz] == [1.0]
