"""Money rules: Decimal only, two places, half-up rounding, strings in JSON."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def round_money(value: Decimal) -> Decimal:
    """Round to two places, half away from zero (the accounting half-up)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


# Plain decimal text with no more places than allowed: what every JSON payload carries, so
# it skips the general checks below (they would accept it unchanged).
_PLAIN = {places: re.compile(rf"-?[0-9]+(\.[0-9]{{1,{places}}})?") for places in (2, 3, 4)}
_PLAIN_CENTS = re.compile(r"-?[0-9]+\.[0-9]{2}")
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_LARGE = Decimal("1e20")  # far from what quantize() cannot hold


def _parse_decimal(raw: Any, *, places: int, what: str) -> Decimal:
    if type(raw) is str and _PLAIN[places].fullmatch(raw):
        return Decimal(raw)
    if (
        isinstance(raw, bool)
        or not isinstance(raw, str | int | float | Decimal)
        # Text is ASCII digits with an optional point, as the OpenAPI pattern says: Decimal()
        # alone would also take "1e3", "1_000", " 1 " and digits of other scripts ("１０").
        or (isinstance(raw, str) and not _DECIMAL_TEXT.fullmatch(raw))
    ):
        raise ValueError(f'{what} must be a decimal string such as "12.50"')
    try:
        # Floats go through str() so 0.1 stays 0.1 instead of its binary expansion.
        value = Decimal(str(raw)) if not isinstance(raw, Decimal) else raw
    except InvalidOperation:
        raise ValueError(f'{what} must be a decimal string such as "12.50"') from None
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite number")
    exponent = value.as_tuple().exponent
    # Only when the written form has more places do we pay for normalize(): "1.500" is fine.
    if isinstance(exponent, int) and -exponent > places and _decimal_places(value) > places:
        raise ValueError(f"{what} must have at most {places} decimal places")
    return value


def _money(raw: Any) -> Decimal:
    if type(raw) is str and _PLAIN_CENTS.fullmatch(raw):
        return Decimal(raw)  # already two places: rounding would not change it
    if type(raw) is Decimal and raw.is_finite() and -_LARGE < raw < _LARGE:
        rounded = raw.quantize(CENT, rounding=ROUND_HALF_UP)
        if rounded == raw:  # no more than two places, as a sum of NUMERIC(18, 2) has
            return rounded
    value = _parse_decimal(raw, places=2, what="amount")
    try:
        return round_money(value)
    except InvalidOperation:
        # More digits than the decimal context holds (1e30, 1e300): no amount is that large.
        raise ValueError("amount is too large") from None


def _quantity(raw: Any) -> Decimal:
    return _parse_decimal(raw, places=3, what="quantity")


def _rate(raw: Any) -> Decimal:
    return _parse_decimal(raw, places=4, what="rate")


def money_str(value: Decimal) -> str:
    return str(round_money(value))


def plain(value: Decimal) -> str:
    """A number as a person writes it in a sentence: 2, 1.5, 1000000 (never 2.000 or 1E+6)."""
    return format(value.normalize(), "f")


def _plain_str(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else str(value)


_DECIMAL_SCHEMA = WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$"})

Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    PlainSerializer(money_str, return_type=str, when_used="json"),
    _DECIMAL_SCHEMA,
]
"""An amount: at most two decimal places, serialised as a string with exactly two."""

Quantity = Annotated[
    Decimal,
    BeforeValidator(_quantity),
    PlainSerializer(_plain_str, return_type=str, when_used="json"),
    _DECIMAL_SCHEMA,
]
"""A quantity of a product: at most three decimal places."""

Rate = Annotated[
    Decimal,
    BeforeValidator(_rate),
    PlainSerializer(_plain_str, return_type=str, when_used="json"),
    _DECIMAL_SCHEMA,
]
"""A rate such as a tax rate (0.13): at most four decimal places."""

# In event payloads. Events are written by the services from values checked at the door and
# serialised with exactly two places (money_str), and every consumer reads each of them: they
# are read by pydantic itself, without calling Python per value (0.4 µs a decimal, against
# 1 µs through the checks above; pydantic's own decimal_places check costs more than those).
# Text that is not a finite number is still refused.
EventMoney = Annotated[
    Decimal, PlainSerializer(money_str, return_type=str, when_used="json"), _DECIMAL_SCHEMA
]
EventQuantity = Annotated[
    Decimal, PlainSerializer(_plain_str, return_type=str, when_used="json"), _DECIMAL_SCHEMA
]
EventRate = EventQuantity


def line_amounts(
    *, quantity: Decimal, unit_price: Decimal, discount: Decimal, tax_rate: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """Net, tax and gross of one line, each rounded half-up per line."""
    net = round_money(quantity * unit_price - discount)
    tax = round_money(net * tax_rate)
    return net, tax, net + tax
