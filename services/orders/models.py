"""Tables of the orders schema."""

from shared.tables import common_tables

SCHEMA = "orders"
common = common_tables(SCHEMA)
