"""The ageing rule, written once in Python: the reference the SQL that scales it (closing's
balances, analytics' AR ageing) is held equal to in tests.

An invoice is due in instalments (one, on its due date, when it has no plan). Allocated
payments pay its instalments oldest first; credit notes and cancellations take back its
newest first. What is left of each instalment is open, and is aged by the days it is past
its due date.

A customer's closing balance is aged the same way (`age_customer`, the month-end close):
whatever credit the customer has beyond its open instalments (payments not allocated to an
invoice) pays the remaining instalments oldest first, and what no open instalment explains
is current, so the buckets always add up to the closing balance; a customer in credit has
no ageing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

ZERO = Decimal("0.00")
BUCKETS = ("current", "d1_30", "d31_60", "d61_90", "over_90")


@dataclass(frozen=True)
class Instalment:
    due_date: date
    amount: Decimal


@dataclass(frozen=True)
class Invoice:
    """What ageing needs of one invoice on a day: its instalments, and the payments applied
    to it and credits taken from it up to that day."""

    instalments: Sequence[Instalment]
    allocated: Decimal
    credited: Decimal


def bucket_of(days_late: int) -> str:
    """The ageing bucket of an amount `days_late` days past its due date (0 or less: current)."""
    if days_late <= 0:
        return "current"
    if days_late <= 30:
        return "d1_30"
    if days_late <= 60:
        return "d31_60"
    if days_late <= 90:
        return "d61_90"
    return "over_90"


def open_instalments(
    instalments: Sequence[Instalment], *, allocated: Decimal, credited: Decimal
) -> list[tuple[Instalment, Decimal]]:
    """Each instalment, in due order, with what is still open of it after `allocated`
    (payments applied to the invoice) and `credited` (credit notes, cancellation)."""
    ordered = sorted(enumerate(instalments), key=lambda p: (p[1].due_date, p[0]))
    gross = sum((i.amount for i in instalments), ZERO)
    paid = max(min(allocated, gross), ZERO)
    upto = ZERO
    result = []
    for _, instalment in ordered:
        upto += instalment.amount
        before = upto - instalment.amount
        paid_part = min(instalment.amount, max(ZERO, paid - before))
        credited_part = min(instalment.amount, max(ZERO, credited - (gross - upto)))
        result.append((instalment, max(ZERO, instalment.amount - paid_part - credited_part)))
    return result


def age(
    instalments: Sequence[Instalment], *, allocated: Decimal, credited: Decimal, on: date
) -> dict[str, Decimal]:
    """An invoice's open amount on `on` by bucket (every bucket present, zero or not)."""
    buckets = dict.fromkeys(BUCKETS, ZERO)
    for instalment, still_open in open_instalments(
        instalments, allocated=allocated, credited=credited
    ):
        buckets[bucket_of((on - instalment.due_date).days)] += still_open
    return buckets


def age_customer(invoices: Iterable[Invoice], *, closing: Decimal, on: date) -> dict[str, Decimal]:
    """A customer's closing balance on `on` by bucket (every bucket present)."""
    buckets = dict.fromkeys(BUCKETS, ZERO)
    if closing <= ZERO:
        return buckets
    still_open = sorted(
        (instalment.due_date, amount)
        for invoice in invoices
        for instalment, amount in open_instalments(
            invoice.instalments, allocated=invoice.allocated, credited=invoice.credited
        )
    )
    spare = max(sum((amount for _, amount in still_open), ZERO) - closing, ZERO)
    for due_date, amount in still_open:
        paid = min(amount, spare)
        spare -= paid
        buckets[bucket_of((on - due_date).days)] += amount - paid
    buckets["current"] += closing - sum(buckets.values(), ZERO)
    return buckets
