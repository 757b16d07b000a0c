"""Alembic environment of the orders schema."""

from services.orders import models  # noqa: F401  (registers the tables)
from shared.migrations import run_migrations

run_migrations("orders")
