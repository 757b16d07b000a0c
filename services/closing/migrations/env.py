"""Alembic environment of the closing schema."""

from services.closing import models  # noqa: F401  (registers the tables)
from shared.migrations import run_migrations

run_migrations("closing")
