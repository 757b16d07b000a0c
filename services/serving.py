"""Serving an app with uvicorn until SIGINT or SIGTERM, then returning so the caller can
stop what it started (the embedded PostgreSQL) in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignals:
    """SIGINT and SIGTERM as this process wants them at each stage.

    Before serving, a signal interrupts (KeyboardInterrupt), so startup unwinds through its
    `finally` blocks. While serving, uvicorn owns the signals and shuts down gracefully; it
    re-raises the signal afterwards, and from then on a signal is only recorded: the
    server is already stopping and the database must be stopped cleanly, not interrupted.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._interrupting = True

    def install(self) -> ShutdownSignals:
        for sig in SHUTDOWN_SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def stop_interrupting(self) -> None:
        self._interrupting = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if self._interrupting:
            raise KeyboardInterrupt


class _Server(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, signals: ShutdownSignals, on_started: Callable[[int], None]
    ) -> None:
        super().__init__(config)
        self._signals = signals
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            # Flipped only once uvicorn's handlers are in place, so no signal falls between.
            self._signals.stop_interrupting()
            yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        _tune_garbage_collection()
        if self.started:
            # The bound port, which differs from the configured one when that was 0.
            self._on_started(self.servers[0].sockets[0].getsockname()[1])


# Young-generation collections after this many new container objects (Python's default is
# 700). A request or a batch of events allocates thousands of short-lived objects: with the
# default, the order-entry benchmark's `salesbook run` spent 15% of its CPU in the collector
# (gc.callbacks, 2,075 young and 17 full collections in 28 s of CPU), with this 1.6%.
YOUNG_COLLECTION_THRESHOLD = 50_000


def _tune_garbage_collection() -> None:
    """Once the app has started: what it has built so far (modules, routes, pools) lives as
    long as the process, so it is moved out of the collector's sight (gc.freeze), and young
    collections run less often. Reference counting still frees everything without cycles
    at once; only cyclic garbage waits for a collection."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def serve(
    app: FastAPI,
    *,
    host: str,
    port: int,
    signals: ShutdownSignals,
    on_started: Callable[[int], None] = lambda port: None,
) -> None:
    """Serve `app` until a shutdown signal; `on_started(port)` runs once the port accepts
    requests (port 0 asks for any free port, and `on_started` learns which)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # the process's JSON logging applies to uvicorn's loggers too
        timeout_graceful_shutdown=10,
    )
    asyncio.run(_Server(config, signals, on_started).serve())
