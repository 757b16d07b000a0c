"""Control events of the month-end close on `salesbook.closing`."""

from __future__ import annotations

SOURCE = "closing"
