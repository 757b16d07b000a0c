"""The month-end scenario again, every service talking over Kafka (its own database: closing
periods are global state)."""

import pytest

from tests.closing.test_month_end_scenario import (  # noqa: F401  (fixtures and the test)
    client,
    db,
    test_a_month_closes_to_the_cent,
)

pytestmark = pytest.mark.parametrize("transport", ["kafka"], indirect=True)
