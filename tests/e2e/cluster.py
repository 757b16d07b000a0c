"""The four services as separate `salesbook serve` processes over one bootstrapped database,
each logged in as its own role, and a client that sends every path to the service owning it
(what deploy/nginx.conf does in front of a distributed deployment)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.registry import SERVICES, all_modules
from tests.cli.processes import Server, salesbook_server
from tests.cli.sql import query
from tests.conftest import TEST_SECRET, migrate_all
from tests.ops.test_bootstrap_sql import BOOTSTRAP, as_role, execute

OWNERS = {
    "/v1/customers": "orders",
    "/v1/products": "orders",
    "/v1/orders": "orders",
    "/v1/payments": "payments",
    "/v1/closing": "closing",
    "/v1/analytics": "analytics",
}


def transport_settings(transport: str, database_url: str, bootstrap: str | None) -> dict[str, str]:
    """SALESBOOK_* settings of the event transport; on kafka, topics and groups of this
    database's own (the broker is shared) and short sessions, so a killed member's
    partitions move on within seconds."""
    if transport == "postgres":
        return {"SALESBOOK_TRANSPORT": "postgres", "SALESBOOK_CONSUMER_POLL_SECONDS": "0.2"}
    assert bootstrap, "the kafka transport needs a broker"
    name = database_url.rsplit("/", 1)[-1].split("?")[0]
    return {
        "SALESBOOK_TRANSPORT": "kafka",
        "SALESBOOK_KAFKA_BOOTSTRAP": bootstrap,
        "SALESBOOK_KAFKA_TOPIC_PREFIX": f"salesbook.{name}.",
        "SALESBOOK_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "SALESBOOK_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "SALESBOOK_CONSUMER_POLL_SECONDS": "0.2",
    }


def prepare_database(database_url: str) -> None:
    """deploy/bootstrap.sql, then every schema migrated by the superuser (as the compose
    file's migrate step does); the bootstrap's trigger gives each table to its service."""
    asyncio.run(execute(database_url, BOOTSTRAP.read_text()))
    asyncio.run(migrate_all(database_url))


@dataclass
class Cluster:
    """Running services, restartable one at a time; every process ends with `stack`."""

    database_url: str
    settings: dict[str, str]
    folder: Path
    stack: ExitStack
    servers: dict[str, Server] = field(default_factory=dict)
    logs: dict[str, list[Path]] = field(default_factory=dict)

    def start(self, *services: str) -> None:
        """Start the services side by side, then wait until each answers."""
        for service in services:
            self.servers[service] = self.stack.enter_context(
                salesbook_server(
                    "serve",
                    service,
                    data_dir=self.folder / service,
                    log_dir=self.folder / "logs",
                    SALESBOOK_DATABASE_URL=as_role(self.database_url, service),
                    SALESBOOK_SECRET_KEY=TEST_SECRET,
                    # Every event a consumer applies is logged with its request id.
                    SALESBOOK_LOG_LEVEL="DEBUG",
                    **self.settings,
                )
            )
            self.logs.setdefault(service, []).append(self.servers[service].log)
        for service in services:
            self.servers[service].wait_until_healthy()

    def kill(self, *services: str) -> None:
        """SIGKILL: no shutdown, no goodbye to the broker, transactions cut off mid-way."""
        for service in services:
            assert self.servers[service].stop(signal.SIGKILL) == -signal.SIGKILL

    def output(self, service: str) -> str:
        """Everything the service logged, over all its runs."""
        return "".join(log.read_text(errors="replace") for log in self.logs[service])

    def url(self, path: str) -> str:
        owner = next(s for prefix, s in OWNERS.items() if path.startswith(prefix))
        return self.servers[owner].base_url + path


@contextmanager
def running_cluster(database_url: str, settings: dict[str, str], folder: Path) -> Iterator[Cluster]:
    prepare_database(database_url)
    with ExitStack() as stack:
        cluster = Cluster(database_url, settings, folder, stack)
        cluster.start(*SERVICES)
        yield cluster


@dataclass
class Api:
    """HTTP through the cluster, each answer checked for the expected status."""

    cluster: Cluster
    client: httpx.AsyncClient

    async def post(
        self,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        headers: dict[str, str],
        status: int = 201,
    ) -> Any:
        response = await self.client.post(self.cluster.url(path), json=body, headers=headers)
        return _checked(response, status)

    async def get(self, path: str, *, headers: dict[str, str], **params: str) -> Any:
        response = await self.client.get(self.cluster.url(path), params=params, headers=headers)
        return _checked(response, 200)


def _checked(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.status_code} "
        f"{response.text[:500]}"
    )
    return response.json()


def backlog(database_url: str) -> dict[str, int]:
    """Per subscription, the events of its sources' outboxes it has not applied yet, read in
    one snapshot: all zero means every event raised so far has been applied everywhere.
    (Counted per event, so a record the broker delivered from elsewhere cannot hide a
    missing one: see `strays`.)"""
    subscriptions = [s for m in all_modules() for s in m.subscriptions]
    columns = [
        "(SELECT count(*) FROM ("
        + " UNION ALL ".join(f'SELECT event_id FROM "{source}".outbox' for source in s.sources)
        + f') o WHERE NOT EXISTS (SELECT 1 FROM "{s.schema}".processed_events p '
        f"WHERE p.consumer = ${n} AND p.event_id = o.event_id))"
        for n, s in enumerate(subscriptions, start=1)
    ]
    (row,) = query(database_url, f"SELECT {', '.join(columns)}", *(s.name for s in subscriptions))
    return {s.name: behind for s, behind in zip(subscriptions, row, strict=True)}


def strays(database_url: str, subscription_name: str) -> list[tuple[Any, ...]]:
    """Events a subscription applied that none of its sources' outboxes holds, each with
    the schema whose outbox does hold it (None when no outbox of this database does): what
    explains a backlog below zero."""
    (subscription,) = [
        s for m in all_modules() for s in m.subscriptions if s.name == subscription_name
    ]
    own = " UNION ALL ".join(
        f'SELECT event_id FROM "{source}".outbox' for source in subscription.sources
    )
    anywhere = " UNION ALL ".join(
        f"SELECT '{schema}' AS schema, event_id, type FROM \"{schema}\".outbox"
        for schema in SERVICES
    )
    return query(
        database_url,
        "SELECT p.event_id, a.schema, a.type, p.processed_at "
        f'FROM "{subscription.schema}".processed_events p '
        f"LEFT JOIN ({anywhere}) a USING (event_id) "
        f"WHERE p.consumer = $1 AND p.event_id NOT IN ({own})",
        subscription.name,
    )
