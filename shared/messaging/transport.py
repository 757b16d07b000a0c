"""Chooses the event transport from settings and builds the background workers for it."""

from __future__ import annotations

from typing import Protocol

from shared.config import Settings
from shared.db import Database
from shared.messaging.consumer import Subscription
from shared.messaging.postgres import PostgresSubscriber


class Worker(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None:
        """Ask `run` to return soon: between batches, or from a wait or backoff."""
        ...


def build_workers(
    settings: Settings,
    db: Database,
    *,
    producers: list[str],
    subscriptions: list[Subscription],
) -> list[Worker]:
    """Relays for the producers' outboxes (kafka only) and a runner per subscription."""
    if settings.effective_transport == "postgres":
        return [
            PostgresSubscriber(
                db,
                sub,
                batch_size=settings.consumer_batch_size,
                poll_seconds=settings.consumer_poll_seconds,
                linger_seconds=settings.consumer_linger_seconds,
            )
            for sub in subscriptions
        ]
    from shared.messaging.kafka import KafkaRelay, KafkaSubscriber

    workers: list[Worker] = [KafkaRelay(db, settings, source=source) for source in producers]
    workers += [KafkaSubscriber(db, settings, sub) for sub in subscriptions]
    return workers
