"""Time-ordered identifiers, so that ordering by id is ordering by creation."""

from __future__ import annotations

import os
import time
import uuid

_last_ms = 0
_counter = 0


def new_id() -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then a per-process counter and randomness."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        ms = _last_ms
        _counter += 1
        if _counter > 0xFFF:  # more than 4096 ids in one millisecond: borrow the next one
            ms, _counter = _last_ms + 1, 0
    else:
        _counter = 0
    _last_ms = ms
    rand_a = _counter & 0xFFF
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)
