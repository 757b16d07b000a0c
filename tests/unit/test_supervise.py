"""A worker kept alive by the app (shared/app.py _supervise) is restarted after a crash, but
not once it is being cancelled, whatever error its cancellation came out as."""

from __future__ import annotations

import asyncio

from shared.app import _supervise


class Worker:
    def __init__(self, *, crash_first: bool = False) -> None:
        self.runs = 0
        self.crash_first = crash_first
        self.started = asyncio.Event()
        self.restarted = asyncio.Event()

    async def run(self) -> None:
        self.runs += 1
        self.started.set()
        if self.runs == 2:
            self.restarted.set()
        if self.crash_first and self.runs == 1:
            raise RuntimeError("first run fails")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # What asyncio.wait_for may give instead of the cancellation on Python 3.11.
            raise TimeoutError from None

    def stop(self) -> None:
        """Not asked of it here: these tests cancel."""


async def test_a_cancelled_worker_is_not_restarted_whatever_it_raises() -> None:
    worker = Worker()
    task = asyncio.create_task(_supervise(worker))
    await worker.started.wait()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done and task.cancelled()
    assert worker.runs == 1


async def test_a_crashed_worker_is_restarted() -> None:
    worker = Worker(crash_first=True)
    task = asyncio.create_task(_supervise(worker))
    try:
        async with asyncio.timeout(10):
            await worker.restarted.wait()
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=5)
    assert worker.runs == 2
