"""Events published by the payments service on `salesbook.payments`, keyed by customer_id."""

from __future__ import annotations

SOURCE = "payments"
