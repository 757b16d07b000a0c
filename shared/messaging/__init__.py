"""Outbox, inbox, and the two event transports (postgres outbox reading, kafka)."""
