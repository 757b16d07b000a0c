"""Rebuilding a read model from the retained events, while the service goes on answering from
the one it has.

The events are read from the sources' outboxes, which keep every event on both transports (on
Kafka the relays publish from them). The new model is built into a shadow schema
(`<schema>_rebuild`), with tables made LIKE the live ones, by the consumer's own handler: its
statements are pointed at the shadow tables on the rebuild's own connections. When the shadow
has caught up, one transaction swaps it in: it takes the live subscription's position rows
(postgres transport), blocks writes to the live tables (the live consumer waits; reads go
on, and see the old model until the commit), applies what arrived meanwhile (every event the
live consumer applied is in an outbox by then), replaces the live rows with the shadow's,
moves the subscription's position to where the rebuild stopped, and records the events the
rebuild applied beyond the old position in the inbox, so none is applied twice (on Kafka,
where the broker keeps the offsets, all of them).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import get_settings
from shared.db import Database
from shared.events.envelope import Event
from shared.messaging.postgres import OutboxReader
from shared.tables import common_tables, metadata

LIVE = "/* live */ "
"""Statements of the swap that name the live tables start with this and are not redirected."""

BATCH = 5000

ALL_BUT: tuple[str, ...] = ("*",)

Handler = Callable[[AsyncSession, list[Event], Any], Awaitable[None]]


@dataclass(frozen=True)
class ReadModel:
    """What one `salesbook rebuild <name>` rebuilds."""

    name: str
    schema: str
    subscription: str  # the live subscription that keeps the model up to date
    sources: tuple[str, ...]
    tables: tuple[str, ...]  # the model's tables; the schema's others are left as they are
    # Builds the handler's state (read from the live schema) and returns the handler.
    start: Callable[[AsyncSession], Awaitable[tuple[Handler, Any]]]
    # Set-based work after the last event, in the swap transaction (shadow tables).
    finish: Callable[[AsyncSession], Awaitable[None]] | None = None
    keep: tuple[str, ...] = ()  # with tables=ALL_BUT: the schema's tables left as they are

    @property
    def shadow(self) -> str:
        return f"{self.schema}_rebuild"

    def table_names(self) -> tuple[str, ...]:
        if self.tables != ALL_BUT:
            return self.tables
        importlib.import_module(f"services.{self.schema}.models")
        common = {t.name for t in vars(common_tables(self.schema)).values() if hasattr(t, "c")}
        return tuple(
            sorted(
                t.name
                for t in metadata.tables.values()
                if t.schema == self.schema and t.name not in common and t.name not in self.keep
            )
        )


async def _closing(session: AsyncSession) -> tuple[Handler, Any]:
    from services.closing.handlers import replay_book, replay_events

    return replay_events, await replay_book(session)


async def _analytics(session: AsyncSession) -> tuple[Handler, Any]:
    from services.analytics.handlers import apply_events

    async def handle(session: AsyncSession, events: list[Event], _: Any) -> None:
        await apply_events(session, events, rollups=False)

    return handle, None


async def _fill_rollups(session: AsyncSession) -> None:
    from services.analytics.handlers import fill_rollups

    await fill_rollups(session)


async def _replica(session: AsyncSession) -> tuple[Handler, Any]:
    from services.payments.replica import project

    async def handle(session: AsyncSession, events: list[Event], _: Any) -> None:
        await project(session, events)

    return handle, None


async def _count_applied(session: AsyncSession) -> None:
    from services.payments.replica import count_applied

    await count_applied(session)


MODELS = {
    "closing": ReadModel(
        name="closing",
        schema="closing",
        subscription="closing.ledger",
        sources=("orders", "payments"),
        tables=(
            "ledger_entries",
            "account_totals",
            "customer_activity",
            "document_totals",
            "invoices",
            "invoice_instalments",
            "invoice_movements",
            "reconciliation_exceptions",
            "pending_allocations",
            "customers",
        ),
        start=_closing,
    ),
    "analytics": ReadModel(
        name="analytics",
        schema="analytics",
        subscription="analytics.read_models",
        sources=("orders", "payments"),
        # Every table of the schema but what the service's commands own (the targets).
        tables=ALL_BUT,
        keep=("targets",),
        start=_analytics,
        finish=_fill_rollups,
    ),
    "payments-replica": ReadModel(
        name="payments-replica",
        schema="payments",
        subscription="payments.orders",
        sources=("orders",),
        tables=("known_customers", "known_orders"),
        start=_replica,
        finish=_count_applied,
    ),
}


def redirect(db: Database, model: ReadModel) -> None:
    """Point every statement of `db` that names one of the model's tables at its shadow."""
    names = "|".join(sorted(model.table_names(), key=len, reverse=True))
    pattern = re.compile(rf'(?<![\w."]){model.schema}\.({names})\b')
    replacement = rf"{model.shadow}.\1"

    def rewrite(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        if not statement.startswith(LIVE):
            statement = pattern.sub(replacement, statement)
        return statement, parameters

    sa_event.listen(db.engine.sync_engine, "before_cursor_execute", rewrite, retval=True)


class Progress:
    """A progress bar on the terminal (tqdm), or nothing."""

    def __init__(self, total: int, name: str, shown: bool) -> None:
        self.bar = None
        if shown:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, unit=" events", unit_scale=True, desc=f"rebuild {name}", smoothing=0.1
            )

    def advance(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def rebuild(
    db: Database,
    name: str,
    *,
    progress: bool = True,
    batch_size: int = BATCH,
    before_swap: Callable[[], Awaitable[None]] | None = None,
    transport: str | None = None,
) -> int:
    """Rebuild the read model `name` from its sources' retained events and swap it in;
    returns how many events were read. `before_swap` runs when the shadow has caught up;
    `transport` is the live consumers' (the settings' by default)."""
    positioned = (transport or get_settings().effective_transport) == "postgres"
    model = MODELS[name]
    shadow = Database(db.url, pool_size=1, max_overflow=0)
    redirect(shadow, model)
    try:
        async with db.transaction() as session:
            await _create_shadow(session, model)
            heads = await _heads(session, model.sources)
        async with shadow.transaction() as session:
            handle, state = await model.start(session)
        positions = dict.fromkeys(model.sources, 0)
        bar = Progress(sum(heads.values()), model.name, progress)
        reader = OutboxReader(_payload_types(model))
        try:
            read = 0
            while True:
                async with shadow.transaction() as session:
                    count = await _apply_some(
                        session, model, handle, state, positions, batch_size, bar, reader
                    )
                read += count
                if not count:
                    break
            if before_swap is not None:
                await before_swap()
            async with shadow.transaction() as session:
                read += await _swap(
                    session, model, handle, state, positions, batch_size, bar, positioned, reader
                )
        finally:
            reader.close()
            bar.close()
        return read
    finally:
        await shadow.dispose()


def _payload_types(model: ReadModel) -> frozenset[str]:
    """The event types whose payloads the model's live subscription reads."""
    from services.registry import all_modules

    subscriptions = {s.name: s for m in all_modules() for s in m.subscriptions}
    live = subscriptions.get(model.subscription)
    return live.payload_types if live is not None else frozenset()


async def _create_shadow(session: AsyncSession, model: ReadModel) -> None:
    """Tables like the live ones, unlogged (a crashed rebuild is simply run again) and with
    only the unique indexes the handlers' upserts need: their rows are copied into the live
    tables at the swap, whose indexes are the ones read."""
    await session.execute(text(f"DROP SCHEMA IF EXISTS {model.shadow} CASCADE"))
    await session.execute(text(f"CREATE SCHEMA {model.shadow}"))
    for table in model.table_names():
        await session.execute(
            text(
                f"CREATE UNLOGGED TABLE {model.shadow}.{table} (LIKE {model.schema}.{table} "
                "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
            )
        )
        unneeded = await session.execute(
            text(
                "SELECT indexrelid::regclass::text FROM pg_index "
                "WHERE indrelid = CAST(:t AS regclass) AND NOT indisunique"
            ),
            {"t": f"{model.shadow}.{table}"},
        )
        for (index,) in unneeded.all():
            await session.execute(text(f"DROP INDEX {index}"))


async def _heads(session: AsyncSession, sources: Sequence[str]) -> dict[str, int]:
    heads = {}
    for source in sources:
        heads[source] = (
            await session.execute(text(f"SELECT count(*) FROM {source}.outbox"))
        ).scalar_one()
    return heads


async def _apply_some(
    session: AsyncSession,
    model: ReadModel,
    handle: Handler,
    state: Any,
    positions: dict[str, int],
    batch_size: int,
    bar: Progress,
    reader: OutboxReader,
) -> int:
    """One batch from each source that has more; how many events were applied."""
    applied = 0
    for source in model.sources:
        rows = await reader.read(session, source=source, after=positions[source], limit=batch_size)
        if rows:
            await handle(session, [event for _, event in rows], state)
            positions[source] = rows[-1][0]
            applied += len(rows)
            bar.advance(len(rows))
    return applied


async def _swap(
    session: AsyncSession,
    model: ReadModel,
    handle: Handler,
    state: Any,
    positions: dict[str, int],
    batch_size: int,
    bar: Progress,
    positioned: bool,
    reader: OutboxReader,
) -> int:
    """Catch up and swap the shadow in, in one transaction; how many events it applied."""
    offsets = common_tables(model.schema).consumer_offsets
    # On the postgres transport the live consumer reads from its stored positions: hold them,
    # so it waits, and move them. On Kafka its offsets are the broker's; the inbox below is
    # what keeps it from applying again what the rebuild applied.
    old = dict.fromkeys(model.sources, 0)
    for source in model.sources if positioned else ():
        await session.execute(
            text(
                f"{LIVE}INSERT INTO {model.schema}.{offsets.name} (consumer, source, position) "
                "VALUES (:c, :s, 0) ON CONFLICT DO NOTHING"
            ),
            {"c": model.subscription, "s": source},
        )
        old[source] = (
            await session.execute(
                text(
                    f"{LIVE}SELECT position FROM {model.schema}.{offsets.name} "
                    "WHERE consumer = :c AND source = :s FOR UPDATE"
                ),
                {"c": model.subscription, "s": source},
            )
        ).scalar_one()
    live = ", ".join(f"{model.schema}.{t}" for t in model.table_names())
    # Writers wait (the live consumer, and commands that touch the model); readers do not.
    await session.execute(text(f"{LIVE}LOCK TABLE {live} IN EXCLUSIVE MODE"))
    caught_up = 0
    while count := await _apply_some(
        session, model, handle, state, positions, batch_size, bar, reader
    ):
        caught_up += count
    if model.finish is not None:
        await model.finish(session)
    for table in model.table_names():
        await session.execute(text(f"{LIVE}DELETE FROM {model.schema}.{table}"))
        await session.execute(
            text(f"{LIVE}INSERT INTO {model.schema}.{table} SELECT * FROM {model.shadow}.{table}")
        )
    inbox = common_tables(model.schema).processed_events
    for source in model.sources:
        # Applied by the rebuild but not by the live consumer: never to be applied again.
        await session.execute(
            text(
                f"{LIVE}INSERT INTO {model.schema}.{inbox.name} (consumer, event_id) "
                f"SELECT :c, event_id FROM {source}.outbox WHERE id > :old AND id <= :new "
                "ON CONFLICT DO NOTHING"
            ),
            {"c": model.subscription, "old": old[source], "new": positions[source]},
        )
        if not positioned:
            continue
        await session.execute(
            text(
                f"{LIVE}UPDATE {model.schema}.{offsets.name} SET position = :p, "
                "updated_at = now() WHERE consumer = :c AND source = :s"
            ),
            {"p": positions[source], "c": model.subscription, "s": source},
        )
    await session.execute(text(f"{LIVE}DROP SCHEMA {model.shadow} CASCADE"))
    return caught_up
