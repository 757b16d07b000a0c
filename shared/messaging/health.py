"""How a subscription is doing, so that a consumer never spins silently (SPEC §9).

An event a handler keeps failing on is not skipped: after `STUCK_AFTER` failed attempts the
subscription is `stuck` on it, which readiness, metrics, the admin view and a close waiting
for the subscription all show. The worker keeps retrying the same event with a backoff, or
at once when someone asks (`request_retry`), and is `running` again as soon as it applies.
Connection trouble (database or broker) is `retrying`, never `stuck`: it is no event's fault.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

State = Literal["starting", "running", "retrying", "stuck", "stopped"]

STUCK_AFTER = 3
# The longest pause between two attempts at an event that failed; a retry request ends it.
RETRY_MOST_SECONDS = 30.0
# How much of an error message is kept: enough to see the constraint or the bad field.
ERROR_CHARS = 500


@dataclass(frozen=True)
class FailedEvent:
    """The event an attempt failed on: where it is in its source and what it is."""

    source: str
    position: str
    event_id: UUID | None
    type: str | None


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


class SubscriptionHealth:
    """The state of one subscription's worker, as it reports it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state: State = "starting"
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.failing: FailedEvent | None = None
        self.attempts = 0
        self.since = datetime.now(UTC)
        self._retry = asyncio.Event()

    @property
    def stuck(self) -> bool:
        return self.state == "stuck"

    def _enter(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self.since = datetime.now(UTC)

    def applied(self) -> None:
        """A batch was applied: whatever failed before is behind us."""
        self.failing = None
        self.attempts = 0
        self._enter("running")

    def idle(self) -> None:
        """Nothing to apply, and nothing failing."""
        if self.failing is None:
            self._enter("running")

    def unreachable(self, exc: BaseException) -> None:
        """The database or the broker could not be reached: retried, no event blamed."""
        self._error(exc)
        if self.state != "stuck":
            self._enter("retrying")

    def failed(self, exc: BaseException, event: FailedEvent | None) -> None:
        """The handler failed on `event` (None: on a batch, not yet narrowed to one event)."""
        self._error(exc)
        if event is None:
            if self.state != "stuck":
                self._enter("retrying")
            return
        if self.failing != event:
            self.failing = event
            self.attempts = 0
        self.attempts += 1
        self._enter("stuck" if self.attempts >= STUCK_AFTER else "retrying")

    def stopped(self) -> None:
        self._enter("stopped")

    def _error(self, exc: BaseException) -> None:
        self.last_error = describe(exc)
        self.last_error_at = datetime.now(UTC)

    def request_retry(self) -> None:
        """Try the failing event again now, without waiting for the backoff."""
        self._retry.set()

    async def pause(self, seconds: float, stopping: asyncio.Event) -> None:
        """Wait out a backoff; a retry request or a stop ends it early."""
        retry = asyncio.ensure_future(self._retry.wait())
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({retry, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (retry, stop):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        self._retry.clear()

    def problem(self) -> str | None:
        """One line naming the stuck event, or None while not stuck."""
        if not self.stuck or self.failing is None:
            return None
        event = self.failing
        what = f"{event.type} {event.event_id}" if event.event_id else "an unreadable event"
        return (
            f"subscription {self.name} is stuck on {what} ({event.source} at {event.position}) "
            f"after {self.attempts} attempts: {self.last_error}"
        )

    def view(self) -> dict[str, Any]:
        failing = _event_view(self.failing)
        return {
            "state": self.state,
            "since": self.since.isoformat(),
            "attempts": self.attempts,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "stuck_on": failing if self.stuck else None,
            "failing_on": failing,
        }


def _event_view(event: FailedEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "source": event.source,
        "position": event.position,
        "event_id": str(event.event_id) if event.event_id else None,
        "type": event.type,
    }


class Backoff:
    """Exponential pause between retries, reset by the next success."""

    def __init__(self, first: float = 0.1, most: float = 10.0) -> None:
        self.first = first
        self.most = most
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.most)
        return delay

    def reset(self) -> None:
        self.delay = self.first
