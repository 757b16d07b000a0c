"""What the subscriptions of a service are doing, for people: `GET /v1/<service>/subscriptions`
and `POST /v1/<service>/subscriptions/{name}/retry` (admin), and the stuck events a close
reports as its problem. Every service mounts the same router (shared/app.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import func, select

from shared.auth import Actor, Role, require
from shared.db import Database
from shared.errors import NotFound
from shared.messaging.health import SubscriptionHealth
from shared.strict import StrictRoute
from shared.tables import common_tables


class SubscriptionView(BaseModel):
    name: str
    service: str
    sources: list[str]
    transport: str
    state: str
    since: str
    # Per source (postgres: the outbox id applied up to) or per partition (kafka: the next
    # offset to apply, as far as this process's member knows).
    position: dict[str, int]
    lag: int | None
    attempts: int
    last_error: str | None
    last_error_at: str | None
    stuck_on: dict[str, Any] | None
    failing_on: dict[str, Any] | None


def subscription_workers(workers: list[Any], service: str | None = None) -> list[Any]:
    """The workers that run a subscription (of `service`, if given), in start order."""
    return [
        w
        for w in workers
        if isinstance(getattr(w, "health", None), SubscriptionHealth)
        and (service is None or w.subscription.schema == service)
    ]


def stuck_problem(workers: list[Any], names: tuple[str, ...]) -> str | None:
    """The stuck events of the named subscriptions that this process runs, one line."""
    problems = [
        w.health.problem()
        for w in subscription_workers(workers)
        if w.subscription.name in names and w.health.stuck
    ]
    return "; ".join(p for p in problems if p) or None


async def _postgres_progress(db: Database, worker: Any) -> tuple[dict[str, int], int | None]:
    sub = worker.subscription
    offsets = common_tables(sub.schema).consumer_offsets
    position: dict[str, int] = {}
    lag = 0
    async with db.sessions() as session:
        for source in sub.sources:
            outbox = common_tables(source).outbox
            head = (
                await session.execute(select(func.coalesce(func.max(outbox.c.id), 0)))
            ).scalar_one()
            done = (
                await session.execute(
                    select(func.coalesce(func.max(offsets.c.position), 0)).where(
                        offsets.c.consumer == sub.name, offsets.c.source == source
                    )
                )
            ).scalar_one()
            position[source] = int(done)
            lag += max(0, int(head) - int(done))
    return position, lag


async def view_of(db: Database, worker: Any, service: str) -> SubscriptionView:
    if hasattr(worker, "positions"):  # kafka
        transport, position, lag = "kafka", worker.positions(), worker.lag()
    else:
        transport = "postgres"
        position, lag = await _postgres_progress(db, worker)
    return SubscriptionView(
        name=worker.subscription.name,
        service=service,
        sources=list(worker.subscription.sources),
        transport=transport,
        position=position,
        lag=lag,
        **worker.health.view(),
    )


def subscriptions_router(service: str) -> APIRouter:
    """The admin view of `service`'s subscriptions, under /<service>/subscriptions."""
    router = APIRouter(
        route_class=StrictRoute, prefix=f"/{service}/subscriptions", tags=["operations"]
    )

    def find(request: Request, name: str) -> Any:
        for worker in subscription_workers(request.app.state.workers, service):
            if worker.subscription.name == name:
                return worker
        raise NotFound(f"{service} runs no subscription named {name!r} in this process")

    @router.get("", response_model=list[SubscriptionView])
    async def list_subscriptions(
        request: Request, _: Actor = Depends(require(Role.ADMIN))
    ) -> list[SubscriptionView]:
        """Each subscription of this service: position, lag, state (starting, running,
        retrying, stuck, stopped), last error and the event it is stuck on."""
        db = request.app.state.db
        workers = subscription_workers(request.app.state.workers, service)
        return [await view_of(db, w, service) for w in workers]

    @router.post("/{name}/retry", status_code=202, response_model=SubscriptionView)
    async def retry_subscription(
        name: str, request: Request, _: Actor = Depends(require(Role.ADMIN))
    ) -> SubscriptionView:
        """Try the event a subscription is failing on again now, instead of after its
        backoff; poll the list to see it resume. Nothing is ever skipped."""
        worker = find(request, name)
        worker.retry()
        return await view_of(request.app.state.db, worker, service)

    return router
