"""Serving an app with uvicorn until SIGINT or SIGTERM, then returning so the caller can
stop what it started (the embedded PostgreSQL) in order."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from shared.collector import tune_garbage_collection

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
        self.stopping = False  # a shutdown signal came, to this handler or to uvicorn's
        self._interrupting = True

    def install(self) -> ShutdownSignals:
        for sig in SHUTDOWN_SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def stop_interrupting(self) -> None:
        self._interrupting = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        self.stopping = True
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

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals.stopping = True  # uvicorn re-raises the signal only once it has stopped
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        tune_garbage_collection()
        if self.started:
            # The bound port, which differs from the configured one when that was 0.
            self._on_started(self.servers[0].sockets[0].getsockname()[1])


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
