"""The ageing reference: instalments paid oldest first, credits taking back the newest."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from shared.ageing import Instalment, Invoice, age, age_customer, bucket_of, open_instalments

D = Decimal
PLAN = [
    Instalment(date(2026, 1, 31), D("100.00")),
    Instalment(date(2026, 2, 28), D("100.00")),
    Instalment(date(2026, 3, 31), D("139.00")),
]


def test_payments_take_the_oldest_instalments_first() -> None:
    opened = open_instalments(PLAN, allocated=D("150.00"), credited=D("0"))
    assert [amount for _, amount in opened] == [D("0.00"), D("50.00"), D("139.00")]


def test_credits_take_back_the_newest_first() -> None:
    opened = open_instalments(PLAN, allocated=D("100.00"), credited=D("189.00"))
    assert [amount for _, amount in opened] == [D("0.00"), D("50.00"), D("0.00")]


def test_an_instalment_plan_ages_by_each_due_date() -> None:
    aged = age(PLAN, allocated=D("0"), credited=D("0"), on=date(2026, 4, 15))
    assert aged == {
        "current": D("0.00"),
        "d1_30": D("139.00"),
        "d31_60": D("100.00"),
        "d61_90": D("100.00"),
        "over_90": D("0.00"),
    }


def test_buckets_edges() -> None:
    assert [bucket_of(d) for d in (-3, 0, 1, 30, 31, 60, 61, 90, 91)] == [
        "current",
        "current",
        "d1_30",
        "d1_30",
        "d31_60",
        "d31_60",
        "d61_90",
        "d61_90",
        "over_90",
    ]


cents = st.integers(min_value=1, max_value=10**7).map(lambda c: D(c) / 100)


@given(
    amounts=st.lists(cents, min_size=1, max_size=5),
    allocated_share=st.fractions(min_value=0, max_value=1),
    credited_share=st.fractions(min_value=0, max_value=1),
)
def test_open_amounts_add_up(amounts, allocated_share, credited_share) -> None:
    plan = [Instalment(date(2026, 1, 1) + timedelta(days=30 * i), a) for i, a in enumerate(amounts)]
    gross = sum(amounts, D(0))
    allocated = (gross * D(allocated_share.numerator) / allocated_share.denominator).quantize(
        D("0.01")
    )
    credited = min(
        gross - allocated,
        (gross * D(credited_share.numerator) / credited_share.denominator).quantize(D("0.01")),
    )
    opened = open_instalments(plan, allocated=allocated, credited=credited)
    assert sum((a for _, a in opened), D(0)) == gross - allocated - credited
    assert all(D(0) <= a <= i.amount for i, a in opened)


def test_a_customer_in_credit_has_no_ageing() -> None:
    invoice = Invoice(PLAN, allocated=D("0"), credited=D("0"))
    aged = age_customer([invoice], closing=D("-5.00"), on=date(2026, 4, 15))
    assert set(aged.values()) == {D("0.00")}


def test_spare_credit_pays_the_oldest_open_instalments_and_the_rest_is_current() -> None:
    invoice = Invoice(PLAN, allocated=D("0"), credited=D("0"))
    # 339.00 open, 189.00 owed: 150.00 of unallocated payments pays the oldest first.
    aged = age_customer([invoice], closing=D("189.00"), on=date(2026, 4, 15))
    assert aged == {
        "current": D("0.00"),
        "d1_30": D("139.00"),
        "d31_60": D("50.00"),
        "d61_90": D("0.00"),
        "over_90": D("0.00"),
    }
    # Owing more than any open instalment explains: the difference is current.
    more = age_customer([invoice], closing=D("400.00"), on=date(2026, 4, 15))
    assert more["current"] == D("61.00") and sum(more.values()) == D("400.00")


@given(
    invoices=st.lists(st.tuples(st.lists(cents, min_size=1, max_size=3), cents, cents), max_size=4),
    closing=st.integers(min_value=-(10**6), max_value=10**8).map(lambda c: D(c) / 100),
)
def test_a_customers_buckets_add_up_to_its_closing_balance(invoices, closing) -> None:
    on = date(2026, 6, 30)
    aged = age_customer(
        (
            Invoice(
                [Instalment(date(2026, 1, 1) + timedelta(days=40 * i), a) for i, a in enumerate(p)],
                allocated=allocated,
                credited=credited,
            )
            for p, allocated, credited in invoices
        ),
        closing=closing,
        on=on,
    )
    assert sum(aged.values(), D(0)) == max(closing, D(0))
    assert all(amount >= 0 for amount in aged.values())
