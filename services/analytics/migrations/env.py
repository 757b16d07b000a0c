"""Alembic environment of the analytics schema."""

from services.analytics import models  # noqa: F401  (registers the tables)
from shared.migrations import run_migrations

run_migrations("analytics")
