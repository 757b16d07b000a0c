"""The envelope every event travels in, and the registry of payload types."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.ids import new_id
from shared.periods import Period

TOPIC_PREFIX = "salesbook."


class EventPayload(BaseModel):
    """Base of every event payload: frozen, named in the past tense, versioned."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


_REGISTRY: dict[str, type[EventPayload]] = {}

P = TypeVar("P", bound=type[EventPayload])
T = TypeVar("T", bound=EventPayload)


def payload_type(type_name: str, version: int = 1) -> Callable[[P], P]:
    """Register a payload model under its event type name."""

    def register(cls: P) -> P:
        if type_name in _REGISTRY:
            raise ValueError(f"event type {type_name} registered twice")
        cls.TYPE = type_name
        cls.VERSION = version
        _REGISTRY[type_name] = cls
        return cls

    return register


def registered_types() -> dict[str, type[EventPayload]]:
    return dict(_REGISTRY)


class Event(BaseModel):
    """Envelope: who emitted what, about which key, dated into which accounting period."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID
    type: str
    version: int
    source: str
    key: str
    occurred_at: datetime
    business_date: date | None = None
    period: str | None = None
    request_id: str | None = None
    data: dict[str, Any]

    @classmethod
    def of(
        cls,
        payload: EventPayload,
        *,
        source: str,
        key: str,
        business_date: date | None = None,
        request_id: str | None = None,
    ) -> Event:
        # Built from a validated payload and values of the right types: nothing to check.
        return cls.model_construct(
            event_id=new_id(),
            type=payload.TYPE,
            version=payload.VERSION,
            source=source,
            key=key,
            occurred_at=datetime.now(UTC),
            business_date=business_date,
            period=str(Period.of(business_date)) if business_date else None,
            request_id=request_id,
            data=payload.model_dump(mode="json"),
        )

    @cached_property
    def typed(self) -> EventPayload:
        """The typed payload, validated once per event object: the subscriptions of a process
        that read the same outbox row share the object (see messaging/postgres.py), and with
        it this. Raises KeyError for a type this build does not know."""
        return _REGISTRY[self.type].model_validate(self.data)

    def payload(self) -> EventPayload:
        """The typed payload; raises KeyError for a type this build does not know."""
        return self.typed

    def payload_as(self, kind: builtins.type[T]) -> T:
        """The payload as `kind`: the typed payload when `kind` is the one registered for this
        event's type, else `kind` validated from the data."""
        if _REGISTRY.get(self.type) is kind:
            return cast(T, self.typed)
        return kind.model_validate(self.data)

    @property
    def topic(self) -> str:
        return TOPIC_PREFIX + self.source

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        return cls.model_validate_json(raw)
