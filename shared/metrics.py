"""Prometheus metrics of one app: request latency, consumer lag, outbox backlog, events applied.

Every app has a registry of its own, so several apps in one process (the embedded runner,
tests) never register the same metric twice. Lag and backlog are measured when scraped, with
a few index-only queries (the max of an outbox's primary key, one offsets row), rather than
kept up to date on every event.

Lag is what a subscription has still to apply from one source. Backlog is what a producing
schema's outbox holds that has not left it: on kafka, the events the relay has not yet
published; on the postgres transport, the events the slowest subscription of this process
has not yet applied (there the outbox *is* the log, and a process sees only its own
subscriptions' positions: across a distributed deployment, take the max of the consumer lag
by source instead).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import current_actor
from shared.db import Database
from shared.messaging.health import SubscriptionHealth
from shared.messaging.kafka import RELAY_CONSUMER, KafkaRelay, KafkaSubscriber
from shared.messaging.postgres import PostgresSubscriber
from shared.tables import common_tables

log = logging.getLogger("salesbook.metrics")

# Requests that matched no route are counted under one label, so that scanning for random
# paths cannot create an unbounded number of series.
UNMATCHED_ROUTE = "unmatched"


class AppMetrics:
    """The metrics of one app and the hooks that feed them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "salesbook_http_request_duration_seconds",
            "HTTP request latency by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "salesbook_consumer_lag_events",
            "Events of a source a subscription has not yet applied.",
            ["subscription", "source"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "salesbook_outbox_backlog_events",
            "Events in a producing schema's outbox not yet relayed (kafka) or not yet applied "
            "by this process's slowest subscription (postgres transport).",
            ["source"],
            registry=self.registry,
        )
        self.events_applied = Counter(
            "salesbook_events_applied_total",
            "Events in batches a subscription committed (redeliveries the inbox dropped included).",
            ["subscription", "source"],
            registry=self.registry,
        )
        self.events_relayed = Gauge(
            "salesbook_events_relayed",
            "Events the kafka relay of a schema has published since the process started.",
            ["source"],
            registry=self.registry,
        )
        self.broker_log_losses = Gauge(
            "salesbook_broker_log_losses",
            "Partitions whose log the kafka relay of a schema found restarted below where it "
            "had left it (the broker lost events it had acknowledged; run salesbook republish).",
            ["source"],
            registry=self.registry,
        )
        self.consumer_stuck = Gauge(
            "salesbook_consumer_stuck",
            "1 while a subscription is stuck on an event it cannot apply, 0 otherwise.",
            ["subscription"],
            registry=self.registry,
        )
        self.workers: list[Any] = []

    def watch(self, workers: Iterable[Any]) -> None:
        """Count what the workers apply; called before they start, so no batch is missed."""
        self.workers = list(workers)
        for worker in self.workers:
            subscription = getattr(worker, "subscription", None)
            if subscription is not None and hasattr(worker, "on_batch"):
                worker.on_batch = self._counting(subscription.name, worker.on_batch)

    def _counting(
        self, subscription: str, chained: Callable[[str, int], None] | None
    ) -> Callable[[str, int], None]:
        def on_batch(source: str, count: int) -> None:
            self.events_applied.labels(subscription, source).inc(count)
            if chained is not None:
                chained(source, count)

        return on_batch

    async def refresh(self, db: Database | None) -> None:
        """Measure lag and backlog now; a query that fails leaves its series out."""
        self.consumer_lag.clear()
        self.outbox_backlog.clear()
        self.events_relayed.clear()
        self.broker_log_losses.clear()
        self.consumer_stuck.clear()
        for worker in self.workers:
            health = getattr(worker, "health", None)
            if isinstance(health, SubscriptionHealth):
                self.consumer_stuck.labels(worker.subscription.name).set(int(health.stuck))
        if db is None:
            return
        heads: dict[str, int | None] = {}
        positions: dict[tuple[str, str, str], int | None] = {}
        async with db.engine.connect() as conn:

            async def head(source: str) -> int | None:
                if source not in heads:
                    outbox = common_tables(source).outbox
                    heads[source] = await _scalar(
                        conn, select(func.coalesce(func.max(outbox.c.id), 0))
                    )
                return heads[source]

            async def position(schema: str, consumer: str, source: str) -> int | None:
                key = (schema, consumer, source)
                if key not in positions:
                    offsets = common_tables(schema).consumer_offsets
                    stored = select(func.coalesce(func.max(offsets.c.position), 0)).where(
                        offsets.c.consumer == consumer, offsets.c.source == source
                    )
                    positions[key] = await _scalar(conn, stored)
                return positions[key]

            slowest: dict[str, int] = {}
            for worker in self.workers:
                if isinstance(worker, KafkaRelay):
                    self.events_relayed.labels(worker.source).set(worker.relayed)
                    self.broker_log_losses.labels(worker.source).set(worker.log_losses)
                    top = await head(worker.source)
                    done = await position(worker.source, RELAY_CONSUMER, worker.source)
                    if top is not None and done is not None:
                        self.outbox_backlog.labels(worker.source).set(max(0, top - done))
                elif isinstance(worker, KafkaSubscriber):
                    lag = worker.lag()
                    if lag is not None:
                        sources = "+".join(worker.subscription.sources)
                        self.consumer_lag.labels(worker.subscription.name, sources).set(lag)
                elif isinstance(worker, PostgresSubscriber):
                    sub = worker.subscription
                    for source in sub.sources:
                        top = await head(source)
                        done = await position(sub.schema, sub.name, source)
                        if top is None or done is None:
                            continue
                        lag = max(0, top - done)
                        self.consumer_lag.labels(sub.name, source).set(lag)
                        slowest[source] = max(slowest.get(source, 0), lag)
            for source, lag in slowest.items():
                self.outbox_backlog.labels(source).set(lag)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """An ASGI middleware timing every HTTP request by its route template."""

        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status = 500  # what the client sees if the app raises before responding
            started = time.perf_counter()

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                template = route_template(scope)
                self.request_seconds.labels(scope["method"], template, str(status)).observe(
                    time.perf_counter() - started
                )

        return timed


def route_template(scope: Scope) -> str:
    """The template of the route that served the request, e.g. /v1/orders/{order_id}.

    A route of an included router knows only its own template, not the prefix it was included
    under, so the prefix is put back from the path: it is the part before the shortest tail
    the route's pattern matches.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    pattern = getattr(route, "path_regex", None)
    if not template:
        return UNMATCHED_ROUTE
    if pattern is None:
        return template
    path: str = scope["path"]
    for cut, char in enumerate(path):
        if char == "/" and pattern.match(path[cut:]):
            return path[:cut] + template
    return template


async def _scalar(conn: AsyncConnection, statement: Any) -> int | None:
    """One number, or None when the table is not there (a schema not migrated, no grant)."""
    try:
        async with conn.begin():
            return int((await conn.execute(statement)).scalar_one())
    except Exception as exc:
        log.debug("metric query failed: %r", exc)
        return None


def install_metrics(app: FastAPI) -> AppMetrics:
    """Give the app its own registry, the timing middleware and GET /metrics."""
    metrics = AppMetrics()
    app.state.metrics = metrics
    app.add_middleware(_Timing, metrics=metrics)

    # Not a health check, so not open (SPEC: every endpoint but those needs a token): a token
    # of any role reads it, as Prometheus sends one (`authorization` in a scrape config).
    @app.get(
        "/metrics",
        tags=["operations"],
        include_in_schema=False,
        dependencies=[Depends(current_actor)],
    )
    async def scrape(request: Request) -> Response:
        """Prometheus text format; lag and backlog are measured at this moment."""
        await metrics.refresh(getattr(request.app.state, "db", None))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


class _Timing:
    """Starlette's middleware stack wants a class; this one defers to AppMetrics."""

    def __init__(self, app: ASGIApp, metrics: AppMetrics) -> None:
        self._inner = metrics.middleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner(scope, receive, send)
