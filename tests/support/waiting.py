"""Waiting for eventually consistent effects without fixed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    seconds: float = 10.0,
    interval: float = 0.05,
) -> T:
    """Call probe until `until(result)` holds; fail with the last result after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await probe()
        if until(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {seconds}s; last: {result!r}")
        await asyncio.sleep(interval)
