"""What a process remembers of a database between requests or batches: one store per
database (tests and tools run several in one process, and none may see another's), each
bounded, the oldest entry making room for a new one."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

_STORES: weakref.WeakKeyDictionary[Any, dict[type, Any]] = weakref.WeakKeyDictionary()


def per_database(session: AsyncSession, kind: type[T]) -> T:
    """This process's one `kind()` for the session's database, made on first use."""
    stores = _STORES.setdefault(session.get_bind(), {})
    store = stores.get(kind)
    if store is None:
        store = stores[kind] = kind()
    return store


def remember(kept: OrderedDict[K, V], key: K, value: V, size: int) -> None:
    """Keep `value` under `key`, forgetting the entry kept longest when `size` are kept.

    An OrderedDict forgets its oldest entry at once; a dict's oldest is found by walking
    past the slots its earlier deletions left, a walk that grows until the dict is resized."""
    if key not in kept and len(kept) >= size:
        kept.popitem(last=False)
    kept[key] = value
