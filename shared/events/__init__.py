"""Event envelope and the versioned payload model of every event Salesbook publishes.

See docs/events.md for the catalogue. Importing this package registers every payload type.
"""

from shared.events import closing, orders, payments  # noqa: F401  (registers payload types)
from shared.events.envelope import Event, EventPayload, payload_type

__all__ = ["Event", "EventPayload", "payload_type"]
