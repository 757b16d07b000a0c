"""Builds a FastAPI app from one or more service modules: routes, errors, workers, health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import signing_secret
from shared.config import Settings, get_settings
from shared.db import Database
from shared.errors import TOO_LARGE, install_error_handlers, problem
from shared.limits import MAX_BODY_BYTES
from shared.logs import request_id_var
from shared.messaging.admin import subscription_workers, subscriptions_router
from shared.messaging.consumer import Subscription
from shared.messaging.transport import Worker, build_workers
from shared.metrics import install_metrics
from shared.openapi import install_openapi
from shared.strict import STRICT_QUERY, StrictRoute, refused_at_the_door

log = logging.getLogger("salesbook.app")

API_PREFIX = "/v1"
REQUEST_ID_HEADER = "X-Request-ID"
SHUTDOWN_SECONDS = 10.0
CANCEL_SECONDS = 5.0
DOCS_ASSETS = "/docs/assets"


@dataclass(frozen=True)
class ServiceModule:
    """One service as the app factory sees it."""

    name: str
    routers: list[APIRouter]
    subscriptions: list[Subscription] = field(default_factory=list)
    migrations: Path | None = None
    produces_events: bool = True


def create_app(
    modules: list[ServiceModule],
    *,
    settings: Settings | None = None,
    database_url: str | None = None,
    run_workers: bool = True,
    title: str = "Salesbook",
) -> FastAPI:
    """An app serving the given modules under /v1 with their consumers running alongside."""
    settings = settings or get_settings()
    url = database_url or settings.database_url
    if not url:
        raise RuntimeError("no database: set SALESBOOK_DATABASE_URL or use `salesbook run`")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
        app.state.db = db
        databases = [db]
        tasks: list[asyncio.Task[None]] = []
        if run_workers:
            producers = [m.name for m in modules if m.produces_events]
            subscriptions = [s for m in modules for s in m.subscriptions]
            # Consumers and relays get a pool of their own: a rush of requests cannot keep
            # events from being applied, nor a backlog of events slow the requests.
            consumer_db = Database(
                url,
                pool_size=settings.consumer_pool_size
                or max(1, len(producers) + len(subscriptions)),
                max_overflow=0,
            )
            databases.append(consumer_db)
            workers = build_workers(
                settings,
                consumer_db,
                producers=producers,
                subscriptions=subscriptions,
            )
            app.state.workers = workers
            app.state.metrics.watch(workers)
            tasks = [asyncio.create_task(_supervise(w), name=_worker_name(w)) for w in workers]
        try:
            yield
        finally:
            await _stop_workers(app.state.workers, tasks)
            for database in databases:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(database.dispose(), SHUTDOWN_SECONDS)

    # /docs and /redoc with their scripts and styles served from here, not from a CDN: the
    # documentation works where the service has no internet access.
    app = FastAPIOffline(title=title, version="1.0", lifespan=lifespan, static_url=DOCS_ASSETS)
    install_openapi(app)
    app.state.settings = settings
    app.state.token_secret = signing_secret(settings)
    app.state.workers = []
    install_error_handlers(app, door=refused_at_the_door)
    _install_request_id(app)
    install_metrics(app)
    app.include_router(_health_router(), dependencies=[STRICT_QUERY])
    for module in modules:
        # Before the module's own routes, which may take /<service>/{id} for a document.
        if module.subscriptions:
            app.include_router(
                subscriptions_router(module.name), prefix=API_PREFIX, dependencies=[STRICT_QUERY]
            )
        for router in module.routers:
            app.include_router(router, prefix=API_PREFIX, dependencies=[STRICT_QUERY])
    return app


async def _stop_workers(workers: list[Worker], tasks: list[asyncio.Task[None]]) -> None:
    """Ask every worker to stop and wait for them to finish what they are doing: a worker is
    not cancelled in the middle of a round trip unless it does not stop in time."""
    for worker in workers:
        worker.stop()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_SECONDS)
    if not pending:
        return
    for task in pending:
        log.warning(
            "worker %s did not stop within %ss; cancelling", task.get_name(), SHUTDOWN_SECONDS
        )
        task.cancel()
    # A worker cancelled in the middle of a database round trip may never get its rollback
    # answered; shutdown must not wait on it forever. What it had not committed is
    # redelivered at the next start.
    await asyncio.wait(pending, timeout=CANCEL_SECONDS)


async def _supervise(worker: Worker) -> None:
    """Keep a worker alive: a crash is logged and the worker restarted after a pause."""
    while True:
        try:
            await worker.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Cancelled, though the error it came out as is another (asyncio.wait_for
                # turns a cancellation into TimeoutError on Python 3.11 when the two meet):
                # a worker that is being stopped is not started again.
                raise asyncio.CancelledError from None
            log.exception("worker crashed; restarting in 1s")
            await asyncio.sleep(1)


READY_BROKER_SECONDS = 1.0
"""How long readiness waits for the broker to answer."""
READY_DATABASE_SECONDS = 2.0
"""How long readiness waits for the database's answer: longer than the broker's, as a busy
pool may make it wait for a connection."""


_ABANDONED: set[asyncio.Future[None]] = set()


async def _database_answers(db: Database) -> None:
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def _abandon(probe: asyncio.Future[None]) -> None:
    """Cancel a probe that took too long and let it end in the background, kept referenced
    until then and its outcome read (nobody waits for it)."""
    probe.cancel()
    _ABANDONED.add(probe)
    probe.add_done_callback(_ABANDONED.discard)
    probe.add_done_callback(lambda done: done.cancelled() or done.exception())


def _worker_name(worker: Worker) -> str:
    subscription = getattr(worker, "subscription", None)
    if subscription is not None:
        return f"{type(worker).__name__}:{subscription.name}"
    source = getattr(worker, "source", None)
    return f"{type(worker).__name__}:{source}" if source else type(worker).__name__


def _install_request_id(app: FastAPI) -> None:
    app.add_middleware(_Intake)


BODY_TOO_LARGE = f"the body is larger than the {MAX_BODY_BYTES} bytes read"


class _BodyTooLarge(StarletteHTTPException):
    def __init__(self) -> None:
        super().__init__(413, BODY_TOO_LARGE)


class _Intake:
    """What every request gets on the way in, its headers read once:

    - an id (the caller's X-Request-ID, or a new one), visible to the route as
      request.state.request_id, to logs, and to the events the request causes;
    - no body read past MAX_BODY_BYTES: 413 problem+json at once when Content-Length says
      so, else when the bytes received pass it (a chunked body). FastAPI's own limit
      answers 413 as plain text.

    A plain ASGI middleware: the decorator form wraps each request in a task group, which
    costs time and can stall under many concurrent requests.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")[:80]
        # Printable ASCII only, as it is echoed and logged; anything else gets an id of ours.
        rid = given if given and given.isascii() and given.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (REQUEST_ID_HEADER.encode(), rid.encode("latin-1")),
                ]
            await send(message)

        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise _BodyTooLarge()
            return message

        token = request_id_var.set(rid)
        try:
            length = headers.get(b"content-length", b"")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                await problem(413, TOO_LARGE, BODY_TOO_LARGE)(scope, receive, send_with_id)
                return
            await self.app(scope, limited, send_with_id)
        finally:
            request_id_var.reset(token)


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


def _health_router() -> APIRouter:
    router = APIRouter(route_class=StrictRoute, tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Something is not ready"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Ready when the database answers, the broker answers (on kafka), every relay and
        consumer works, and no subscription is stuck on an event (SPEC §9); 503 otherwise,
        naming what is not."""
        checks: dict[str, str] = {}
        # Bounded: a database that stopped answering (a stopped server, a partition) holds a
        # query for as long as TCP waits, and readiness must say so meanwhile. Shielded, so
        # that giving up does not wait for the abandoned connection to be closed.
        answered = asyncio.ensure_future(_database_answers(request.app.state.db))
        try:
            await asyncio.wait_for(asyncio.shield(answered), READY_DATABASE_SECONDS)
            checks["database"] = "ok"
        except TimeoutError:
            _abandon(answered)
            checks["database"] = f"unavailable: no answer within {READY_DATABASE_SECONDS:g} s"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        settings: Settings = request.app.state.settings
        if settings.effective_transport == "kafka" and settings.kafka_bootstrap:
            from shared.messaging.kafka import broker_reachable

            # Within a second: a probe gives up after its own timeout (a second, by default,
            # in Kubernetes), and a broker that answers at all answers in milliseconds.
            reachable = await broker_reachable(
                settings.kafka_bootstrap, timeout_seconds=READY_BROKER_SECONDS
            )
            checks["broker"] = "ok" if reachable else "unavailable"
        for worker in request.app.state.workers:
            probe = getattr(worker, "ready", None)
            if probe is not None:
                checks[f"transport:{_worker_name(worker)}"] = "ok" if probe() else "unavailable"
        for worker in subscription_workers(request.app.state.workers):
            if worker.health.stuck:
                checks[f"subscription:{worker.subscription.name}"] = worker.health.problem()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503
        )

    return router
