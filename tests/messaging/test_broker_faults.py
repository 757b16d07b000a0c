"""What happens when the broker goes away: every service says it is not ready, a relay that
finds the broker lost what it acknowledged publishes its outbox again, and events lost where
no relay could see it are published again with `salesbook republish`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from services.cli import main
from services.registry import SERVICES, all_modules, service_module
from shared.app import create_app
from shared.config import Settings
from shared.db import Database
from shared.events.envelope import Event
from shared.messaging.kafka import RELAY_LOG, KafkaRelay, KafkaSubscriber, topic_of
from tests.conftest import auth, kafka_settings, migrate_all
from tests.messaging.conftest import Harness, prepared
from tests.support.database import fresh_database
from tests.support.tansu import free_port, tansu_broker
from tests.support.waiting import eventually

SALES, POS, FINANCE = auth("sales", "sam"), auth("pos", "till"), auth("finance", "fay")
MONTH = "2026-10"
KEYS = ["cust-a", "cust-b", "cust-c"]


@pytest.fixture
def empty_database(pg_server: str) -> Iterator[str]:
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
async def db_url(empty_database: str) -> str:
    return await migrate_all(empty_database)


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text[:600]
    return response.json()


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_is_not_ready_while_the_broker_is_down(
    migrated: str, settings: Settings, service: str
) -> None:
    """Consumer-only services too (analytics has no relay), with nothing to do meanwhile."""
    port = free_port()
    chosen = kafka_settings(settings, f"127.0.0.1:{port}", migrated)
    app = create_app([service_module(service)], settings=chosen, database_url=migrated)
    with contextlib.ExitStack() as broker:
        broker.enter_context(tansu_broker(port))
        async with app.router.lifespan_context(app):
            asgi = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=asgi, base_url="http://test") as client:
                await eventually(
                    lambda: client.get("/readyz"), lambda r: r.status_code == 200, seconds=60
                )
                broker.close()  # the broker stops; the service runs on
                ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"] == "unavailable"
    assert ready.json()["checks"]["database"] == "ok"


async def test_events_a_broker_lost_are_republished_and_the_month_closes(
    db_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    chosen = kafka_settings(settings, f"127.0.0.1:{port}", db_url)
    db = Database(db_url)
    try:
        # The month's documents, relayed to a first broker and acknowledged by it, before any
        # consumer read them.
        app = create_app(all_modules(), settings=chosen, database_url=db_url, run_workers=False)
        async with app.router.lifespan_context(app):
            asgi = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=asgi, base_url="http://test") as client:
                customer = ok(
                    await client.post(
                        "/v1/customers",
                        json={"name": "Alice Ltd", "payment_terms_days": 30},
                        headers=SALES,
                    ),
                    201,
                )
                product = {"sku": "P1", "name": "Pump", "category": "pumps"}
                body = {**product, "unit_price": "100.00", "tax_rate": "0.13"}
                ok(await client.post("/v1/products", json=body, headers=SALES), 201)
                order = {
                    "customer_id": customer["id"],
                    "channel": "pos",
                    "lines": [{"sku": "P1", "quantity": "2"}],
                    "business_date": f"{MONTH}-15",
                    "submit": True,
                }
                ok(await client.post("/v1/orders", json=order, headers=POS), 201)
        with tansu_broker(port):
            relay = KafkaRelay(db, chosen, source="orders")
            task = asyncio.create_task(relay.run())
            try:
                await eventually(_relayed(relay), lambda n: n > 0, seconds=60)
                await eventually(_idle(relay), bool, seconds=30)
            finally:
                relay.stop()
                await asyncio.wait_for(task, 30)
        # As a relay of a version that kept no marks of where it left the logs would have
        # left it: the relays that start next cannot tell what the broker lost.
        async with db.transaction() as session:
            await session.execute(
                text("DELETE FROM orders.consumer_offsets WHERE consumer = :marks"),
                {"marks": RELAY_LOG},
            )
        # The broker comes back empty: what it acknowledged is gone.
        with tansu_broker(port):
            app = create_app(all_modules(), settings=chosen, database_url=db_url)
            async with app.router.lifespan_context(app):
                asgi = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=asgi, base_url="http://test") as client:
                    ok(
                        await client.post(f"/v1/closing/periods/{MONTH}/close", headers=FINANCE),
                        202,
                    )
                    waiting = await eventually(
                        lambda: client.get(f"/v1/closing/periods/{MONTH}", headers=FINANCE),
                        # Both sources' cutoffs in, and the ledger short of what orders says.
                        lambda r: bool(
                            r.json()["progress"]
                            and r.json()["progress"]["mismatches"]
                            and not r.json()["progress"]["waiting_for_cutoff"]
                        ),
                        seconds=60,
                    )
                    assert waiting.json()["status"] == "closing"
                    assert waiting.json()["progress"]["waiting_for_cutoff"] == []

                    monkeypatch.setenv("SALESBOOK_DATABASE_URL", db_url)
                    monkeypatch.setenv("SALESBOOK_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
                    monkeypatch.setenv("SALESBOOK_KAFKA_TOPIC_PREFIX", chosen.kafka_topic_prefix)
                    monkeypatch.setenv("SALESBOOK_DATA_DIR", str(settings.data_dir))
                    code = await asyncio.to_thread(main, ["republish", "orders", "--from-id", "1"])
                    assert code == 0

                    closed = await eventually(
                        lambda: client.get(f"/v1/closing/periods/{MONTH}", headers=FINANCE),
                        lambda r: r.json()["status"] == "closed",
                        seconds=60,
                    )
                    invoices = closed.json()["control_totals"]["orders"]["invoice"]
                    assert invoices == {"count": 1, "amount": "226.00"}
    finally:
        await db.dispose()


def _relayed(relay: KafkaRelay):
    async def probe() -> int:
        return relay.relayed

    return probe


def _idle(relay: KafkaRelay):
    async def probe() -> bool:
        async with relay.db.sessions() as session:
            head = (await session.execute(text("SELECT max(id) FROM orders.outbox"))).scalar_one()
        return relay.position == head

    return probe


async def test_a_subscriber_outlives_a_broker_that_restarts_empty(
    contract_db: Database, tmp_path
) -> None:
    """The restarted broker knows neither the group nor the topics; the subscriber carries on
    with what is published there and is ready again (a consumer whose commits keep failing
    is rebuilt after a session timeout). Every event takes effect exactly once, and those
    from before the restart in order; of those published to the new log, a subscriber that
    fetched from its old position before noticing the restart may apply the later ones
    first and the earlier ones when its refused commit sends it back to the log's start, so
    their order is not asserted (the read models take events out of order: see
    tests/payments/test_out_of_order.py and tests/analytics/test_out_of_order.py)."""
    port = free_port()
    settings = _restartable(port, tmp_path)
    async with prepared(Harness("kafka", contract_db, settings)) as harness:
        with tansu_broker(port):
            harness.relay()
            subscriber = harness.subscriber(harness.subscription())
            await harness.publish(KEYS, 5)
            await harness.wait_for_effects(len(KEYS) * 5, within=60)
        with tansu_broker(port):
            await harness.publish(KEYS, 5, first_seq=5)
            assert isinstance(subscriber.worker, KafkaSubscriber)
            # What is still missing, and where the subscriber reads, should it never come.
            await eventually(_missing(harness, subscriber.worker), lambda m: not m[0], seconds=90)
            await eventually(_ready(subscriber.worker), bool, seconds=30)
            await harness.stop_all()
        applied = await harness.effects()
    assert len({event_id for _, _, event_id in applied}) == len(applied), "duplicate effects"
    for key in KEYS:
        seqs = [seq for k, seq, _ in applied if k == key]
        assert seqs[:5] == list(range(5)), f"key {key}: {seqs}"
        assert sorted(seqs) == list(range(10)), f"key {key}: {seqs}"


def _missing(harness: Harness, worker: KafkaSubscriber):
    async def probe() -> tuple[list[tuple[str, int]], dict[str, int]]:
        applied = {(key, seq) for key, seq, _ in await harness.effects()}
        wanted = {(key, seq) for key in KEYS for seq in range(10)}
        return sorted(wanted - applied), worker.positions()

    return probe


def _restartable(port: int, folder: Path) -> Settings:
    """Settings for a broker the test starts, and starts again, on `port`."""
    return Settings(
        transport="kafka",
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_partitions=2,
        consumer_batch_size=25,
        consumer_poll_seconds=0.2,
        data_dir=folder,
        _env_file=None,
    )


def _ready(worker: KafkaSubscriber):
    async def probe() -> bool:
        return worker.ready()

    return probe


@pytest.mark.parametrize(
    "published_after", [5, 0], ids=["at-its-next-publish", "idle-asking-where-logs-end"]
)
async def test_a_relay_that_finds_its_log_lost_publishes_the_outbox_again(
    contract_db: Database, tmp_path, published_after: int
) -> None:
    """A broker that keeps its log in memory restarts empty, so what it had acknowledged is
    gone and its offsets start again below where they ended: the relay says so (an ERROR and
    a metric) and publishes its outbox again from the start, so every event is on the topic
    again without anyone running `salesbook republish`. It notices at its next publish, or,
    with nothing new to publish (a quiet shop at month end, its last documents and the
    close's cutoff already relayed), by asking where its logs end."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    settings = _restartable(port, tmp_path)
    async with prepared(Harness("kafka", contract_db, settings)) as harness:
        with tansu_broker(port):
            relay = await _relayed_to_a_first_broker(harness)
            assert relay.log_losses == 0
        with tansu_broker(port):
            if published_after:
                await harness.publish(KEYS, published_after, first_seq=5)
            await eventually(_losses(relay), bool, seconds=90)
            everything = {(key, seq) for key in KEYS for seq in range(5 + published_after)}
            await eventually(
                _on_topic(bootstrap, topic_of(harness.source)),
                lambda seen: seen == everything,
                seconds=90,
            )
            await harness.stop_all()


async def test_an_idle_relay_sees_no_loss_where_there_was_none(
    contract_db: Database, tmp_path
) -> None:
    """Batches of several events per partition, then nothing: asking where the logs end finds
    nothing lost, again and again (a broker may answer the offset after the last batch's
    first record as a log's end, as Tansu does; taking that for a loss would publish the
    whole outbox again every few seconds, forever)."""
    port = free_port()
    settings = _restartable(port, tmp_path)
    async with prepared(Harness("kafka", contract_db, settings)) as harness:
        with tansu_broker(port):
            relay = await _relayed_to_a_first_broker(harness)
            relayed = relay.relayed
            for _ in range(3):
                assert not await relay.watch_log()
            assert relay.log_losses == 0 and relay.relayed == relayed
            await harness.stop_all()


@pytest.mark.parametrize("broker_restarted", [True, False], ids=["log-lost", "log-kept"])
async def test_a_relay_that_starts_compares_the_logs_with_where_they_were_left(
    contract_db: Database, tmp_path, broker_restarted: bool
) -> None:
    """The relay and the broker went down together (a power cut) and the broker came back
    without its log: a relay that starts knows nothing of where the logs were in memory, but
    the marks stored with its position say it, so it finds the loss before publishing
    anything and publishes the outbox again. A broker that kept its log is left alone."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    settings = _restartable(port, tmp_path)
    everything = {(key, seq) for key in KEYS for seq in range(5)}
    async with prepared(Harness("kafka", contract_db, settings)) as harness:
        with tansu_broker(port):
            first = harness.relay()
            assert first is not None and isinstance(first.worker, KafkaRelay)
            await harness.publish(KEYS, 5)
            await eventually(_relayed_all(harness, first.worker), bool, seconds=60)
            await first.stop()
            if not broker_restarted:
                await _second_relay_against(harness, bootstrap, everything, lost=False)
        if broker_restarted:
            with tansu_broker(port):
                await _second_relay_against(harness, bootstrap, everything, lost=True)


async def _second_relay_against(
    harness: Harness, bootstrap: str, everything: set[tuple[str, int]], *, lost: bool
) -> None:
    second = harness.relay()
    assert second is not None and isinstance(second.worker, KafkaRelay)
    relay = second.worker
    await eventually(_ready_relay(relay), bool, seconds=60)
    assert (relay.log_losses > 0) == lost  # one for each partition found lost
    assert relay.relayed == (len(everything) if lost else 0)
    seen = await eventually(
        _on_topic(bootstrap, topic_of(harness.source)), lambda s: s == everything, seconds=90
    )
    assert seen == everything
    await harness.stop_all()


def _ready_relay(relay: KafkaRelay):
    async def probe() -> bool:
        # Ready once it compared the logs and published whatever that called for.
        return relay.ready()

    return probe


async def _relayed_to_a_first_broker(harness: Harness) -> KafkaRelay:
    """A relay started, and five events of each key published and relayed."""
    running = harness.relay()
    assert running is not None and isinstance(running.worker, KafkaRelay)
    await harness.publish(KEYS, 5)
    await eventually(_relayed_all(harness, running.worker), bool, seconds=60)
    return running.worker


def _losses(relay: KafkaRelay):
    async def probe() -> bool:
        return relay.log_losses > 0

    return probe


def _on_topic(bootstrap: str, topic: str):
    async def probe() -> set[tuple[str, int]]:
        return await _every_event_in(bootstrap, topic)

    return probe


def _relayed_all(harness: Harness, relay: KafkaRelay):
    async def probe() -> bool:
        async with relay.db.sessions() as session:
            head = (
                await session.execute(text(f'SELECT max(id) FROM "{harness.source}".outbox'))
            ).scalar_one()
        return relay.position == head

    return probe


async def _every_event_in(
    bootstrap: str, topic: str, *, seconds: float = 15.0
) -> set[tuple[str, int]]:
    """(key, seq) of the records on the topic, read from the start until every partition's
    end, or what was read when `seconds` passed: a broker that lost records inside a log it
    still reports the end of never lets a reader get there."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    seen: set[tuple[str, int]] = set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await consumer.start()
            await consumer.seek_to_beginning()
            ends = await consumer.end_offsets(list(consumer.assignment()))

            async def behind() -> bool:
                return any([await consumer.position(tp) < end for tp, end in ends.items()])

            while await behind():
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        assert record.key is not None and record.value is not None
                        event = Event.from_json(record.value)
                        seen.add((record.key.decode(), event.data["seq"]))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(consumer.stop(), 5)
    return seen
