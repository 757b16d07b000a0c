"""What test oracles share about the documents they work out."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

ZERO = Decimal("0.00")


class LineTotals:
    """net, tax and gross of a document as the sums of its `lines` (each with net and tax)."""

    lines: list[Any]

    @property
    def net(self) -> Decimal:
        return sum((line.net for line in self.lines), ZERO)

    @property
    def tax(self) -> Decimal:
        return sum((line.tax for line in self.lines), ZERO)

    @property
    def gross(self) -> Decimal:
        return self.net + self.tax
