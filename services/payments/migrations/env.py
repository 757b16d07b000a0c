"""Alembic environment of the payments schema."""

from services.payments import models  # noqa: F401  (registers the tables)
from shared.migrations import run_migrations

run_migrations("payments")
