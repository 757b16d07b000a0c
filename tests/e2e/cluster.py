"""The four services as separate `salesbook serve` processes over one bootstrapped database,
each logged in as its own role, behind a real nginx running deploy/nginx.conf, which finds
each service by name through a name server the test controls (tests/e2e/proxy.py)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from services.registry import SERVICES, all_modules
from tests.cli.processes import Server, clean_env, salesbook_command
from tests.cli.sql import query
from tests.conftest import TEST_SECRET, migrate_all
from tests.e2e.proxy import Addresses, NameServer, Proxy, free_port, nginx_proxy
from tests.ops.test_bootstrap_sql import BOOTSTRAP, as_role, execute
from tests.support.waiting import eventually


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


@contextmanager
def serve_at(
    service: str, address: str, port: int, *, data_dir: Path, log_dir: Path, **settings: str
) -> Iterator[Server]:
    """`salesbook serve <service>` listening on address:port; killed if still running after."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"serve-{service}-{time.monotonic_ns()}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*salesbook_command(), "serve", service, "--host", address, "--port", str(port)],
            env=clean_env(data_dir, **settings),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Server(process, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@dataclass
class Cluster:
    """Running services, restartable one at a time, behind the proxy; every process ends
    with `stack`. Every service listens on `port`, each (re)start on a new address that the
    name server then gives for the service's name."""

    database_url: str
    settings: dict[str, str]
    folder: Path
    stack: ExitStack
    names: NameServer
    addresses: Addresses
    port: int
    proxy: Proxy | None = None
    servers: dict[str, Server] = field(default_factory=dict)
    logs: dict[str, list[Path]] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)

    def start(self, *services: str) -> None:
        """Start the services side by side, each on a new address, then wait until each
        answers and the name server gives its new address."""
        for service in services:
            address = self.addresses.new()
            self.servers[service] = self.stack.enter_context(
                serve_at(
                    service,
                    address,
                    self.port,
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
            self.where[service] = address
        for service in services:
            self.servers[service].wait_until_healthy()
            self.names.set(service, self.where[service])

    def kill(self, *services: str) -> None:
        """SIGKILL: no shutdown, no goodbye to the broker, transactions cut off mid-way."""
        for service in services:
            assert self.servers[service].stop(signal.SIGKILL) == -signal.SIGKILL

    async def routed(self, *services: str) -> None:
        """Wait until the proxy sends each service's paths to where it runs now: nginx
        looked its name up again (its old address has nothing listening any more)."""
        async with httpx.AsyncClient(timeout=5) as client:
            for service in services:
                await eventually(
                    partial(client.get, self.url(PROBES[service])),
                    lambda response: response.status_code < 500,
                    seconds=30,
                    interval=0.2,
                )

    def output(self, service: str) -> str:
        """Everything the service logged, over all its runs."""
        return "".join(log.read_text(errors="replace") for log in self.logs[service])

    def url(self, path: str) -> str:
        assert self.proxy is not None, "the proxy starts with the cluster"
        return self.proxy.base_url + path


# A path of each service that answers (404: no such route) without a token or a database
# round trip, but only from the service itself: nginx answers 502 while the name's address
# it holds has nothing listening.
PROBES = {
    "orders": "/v1/orders/-/probe",
    "payments": "/v1/payments/-/probe",
    "closing": "/v1/closing/-/probe",
    "analytics": "/v1/analytics/-/probe",
}


@contextmanager
def running_cluster(database_url: str, settings: dict[str, str], folder: Path) -> Iterator[Cluster]:
    prepare_database(database_url)
    addresses = Addresses()
    first = addresses.new()
    names = NameServer(addresses.new())
    names.start()
    try:
        with ExitStack() as stack:
            cluster = Cluster(
                database_url, settings, folder, stack, names, addresses, free_port(first)
            )
            cluster.start(*SERVICES)
            cluster.proxy = stack.enter_context(
                nginx_proxy(
                    folder / "nginx",
                    resolver=names.address,
                    address=addresses.new(),
                    service_port=cluster.port,
                )
            )
            asyncio.run(cluster.routed(*SERVICES))
            yield cluster
    finally:
        names.stop()


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
