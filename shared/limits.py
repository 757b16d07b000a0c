"""What the API accepts (SPEC §9), in one place: the bounds of quantities and amounts, text
without NUL, periods and dates within the years the books can hold, integers a column can
hold, and decimals sent as JSON strings.

Why these bounds are enough downstream: an amount of one document is at most
1,000,000,000.00, and the narrowest money column a sum of them reaches is NUMERIC(18, 2)
(up to 9,999,999,999,999,999.99), so a per-customer, per-period or per-account sum would
need ten million maximal documents to overflow; a quantity is at most 1,000,000 and a line
or an order is refused before its amount passes the amount bound. Unit sums
(NUMERIC(18, 3)) take a billion maximal lines. tests/test_strict_input.py holds every
NUMERIC column of the migrated schemas to at least a million maximal documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from shared.money import Money, Quantity, Rate
from shared.periods import Period

MAX_QUANTITY = Decimal("1000000")
"""The most units of a product one line may carry (at most three decimals)."""
MAX_AMOUNT = Decimal("1000000000.00")
"""The most one unit price, discount, line, order, instalment, payment, allocation, refund,
write-off or target may amount to."""
MAX_BODY_BYTES = 4 * 1024 * 1024
"""The largest request body read (413 beyond): many times the largest document the bounds
allow (an order of the most lines, a thousand targets), far below what would tie up a server."""
MIN_YEAR = Period.FIRST_YEAR
MAX_YEAR = Period.LAST_YEAR
INT32_MAX = 2**31 - 1
"""The largest integer a query parameter may carry (versions and counts are int4 columns)."""

PERIOD_PATTERN = r"^2[0-9]{3}-(0[1-9]|1[0-2])$"
"""YYYY-MM with ASCII digits in the years the books hold ([0-9], never \\d: in the schema
validator \\d matches any script's digits)."""
_PERIOD = re.compile(PERIOD_PATTERN)


def _whole_number(value: Any) -> Any:
    """A JSON number with nothing after its point (30.0, 3e1) is the integer JSON Schema
    says it is; anything else goes on to the strict check as it came."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


WholeNumber = BeforeValidator(_whole_number)
"""With `Strict()`, an integer as JSON Schema has it: a number without a fraction (30 or
30.0), never text ("30") or a boolean. Bounds go before both, as in `Annotated[int,
Field(ge=0), WholeNumber, Strict()]`: given after them, pydantic writes them into the OpenAPI
document as `ge` and `le`, which JSON Schema does not know."""


def no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL; refuse it here rather than fail in the driver."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NO_NUL_PATTERN = r"^[^\x00]*$"
"""Text without NUL, as the OpenAPI document states it (no_nul refuses NUL, with a message)."""
_WHITE_SPACE = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""Unicode's White_Space, what the server strips, spelled out: `\\s` differs between regex
dialects (Python's takes \\x1c-\\x1f too, JavaScript's takes \\ufeff and not \\x85)."""
_INVISIBLE = (
    "\x01-\x08\x0e-\x1f\x7f-\x84\x86-\x9f"
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u2800\u3164\ufdd0-\ufdef\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\ufffe\uffff"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}-{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17))
)
"""Characters that show nothing and are not white space: the control characters (C0 and C1,
but for the white space among them), Unicode's Default_Ignorable_Code_Point (soft hyphen,
zero-width space and joiners, direction marks, variation selectors, byte order mark, tags,
...), the noncharacters (U+FDD0-U+FDEF and the last two code points of every plane), the
Hangul fillers and the blank Braille pattern. A name of them alone is as blank as a tab."""
_SHOWN = rf"[^\x00{_WHITE_SPACE}{_INVISIBLE}]"
NOT_BLANK_PATTERN = rf"^[^\x00]*{_SHOWN}[^\x00]*$"
"""Text without NUL holding a character other than white space and invisible ones: what is
left of it once stripped is not empty, and shows something."""


class _DocumentedPattern:
    """A pattern the OpenAPI document states for a field whose validators check the same
    thing with messages of their own."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        documented: dict[str, Any] = handler(schema)
        documented["pattern"] = self.pattern
        return documented


def text(*, max_length: int, min_length: int = 0, strip: bool = False) -> tuple[Any, ...]:
    """The rules of a text field of at most `max_length` characters without NUL, for
    `Annotated[str, *text(...)]`: a type the checker reads as str."""
    # Stripped text that must not be empty holds a character other than white space and
    # invisible ones, so that neither "\t" nor a zero-width space is a name it admits.
    not_blank = strip and min_length > 0
    return (
        StringConstraints(strip_whitespace=strip, min_length=min_length, max_length=max_length),
        AfterValidator(_shows_something if not_blank else no_nul),
        _DocumentedPattern(NOT_BLANK_PATTERN if not_blank else NO_NUL_PATTERN),
    )


_SHOWS = re.compile(_SHOWN)


def _shows_something(value: str) -> str:
    no_nul(value)
    if not _SHOWS.search(value):
        raise ValueError("must show something: white space or invisible characters alone are blank")
    return value


def each_once(name: Callable[[Any], str]) -> AfterValidator:
    """For `Annotated[list[...], each_once(...)]`: a list whose items `name` tells apart,
    each named once. A repeated one is refused, with both places, rather than one of the two
    silently taking effect."""

    def check(items: list[Any]) -> list[Any]:
        seen: dict[str, int] = {}
        for at, item in enumerate(items):
            key = name(item)
            if key in seen:
                raise ValueError(f"{key} is given twice, at {seen[key]} and {at}")
            seen[key] = at
        return items

    return AfterValidator(check)


def _year_in_range(year: int) -> bool:
    return MIN_YEAR <= year <= MAX_YEAR


def _check_date(value: date) -> date:
    if not _year_in_range(value.year):
        raise ValueError(f"must be a date in the years {MIN_YEAR} to {MAX_YEAR}")
    return value


def _check_moment(value: datetime) -> datetime:
    # The time as written, and its UTC instant (0001-01-01T00:00:00+14:00 is year 0 in UTC)
    # within a day of those years: 2000-01-01T00:00:00+08:00 is 1999 in UTC but 2000 where it
    # was written. The service judges the business date it falls on, in its time zone.
    offset = value.utcoffset()
    instant = value.replace(tzinfo=None) - offset if offset is not None else value
    if not _year_in_range(value.year) or not MIN_YEAR - 1 <= instant.year <= MAX_YEAR + 1:
        raise ValueError(f"must be a time in the years {MIN_YEAR} to {MAX_YEAR}")
    return value


_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _before_date(raw: Any) -> Any:
    # A date is written YYYY-MM-DD: not a number (seconds since 1970?), not a date and time.
    if isinstance(raw, str | int | float) and not (
        isinstance(raw, str) and _DATE_TEXT.fullmatch(raw)
    ):
        raise ValueError("must be a date written YYYY-MM-DD")
    return raw


def _before_moment(raw: Any) -> Any:
    if isinstance(raw, int | float):
        raise ValueError("must be a time written in ISO 8601, such as 2026-11-30T10:00:00+08:00")
    # datetime.min with an offset cannot even be turned into UTC; say so as a range error.
    if isinstance(raw, str) and raw[:4].isascii() and raw[:4].isdigit():
        if not _year_in_range(int(raw[:4])):
            raise ValueError(f"must be a time in the years {MIN_YEAR} to {MAX_YEAR}")
    return raw


_IN_YEARS = r"^2[0-9]{3}-"  # what the schema can say of 2000-2999

BusinessDate = Annotated[
    date,
    BeforeValidator(_before_date),
    AfterValidator(_check_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": _IN_YEARS}),
]
"""A calendar date in the years the books hold."""
Moment = Annotated[
    datetime,
    BeforeValidator(_before_moment),
    AfterValidator(_check_moment),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _IN_YEARS,
            "anyOf": [{"format": "date-time"}, {"format": "date"}],
            "description": "a time in ISO 8601; a date alone is its midnight in UTC",
        }
    ),
]
"""A point in time in the years the books hold (a date alone: its midnight in UTC)."""


def _without_null(schema: dict[str, Any]) -> None:
    if "default" in schema and schema["default"] is None:
        del schema["default"]  # left out means unchanged, which the description says
    kinds = [kind for kind in schema.pop("anyOf", []) if kind.get("type") != "null"]
    if len(kinds) == 1:
        schema.update(kinds[0])
    elif kinds:
        schema["anyOf"] = kinds


NOT_CLEARABLE = Field(json_schema_extra=_without_null)
"""For `Annotated[X | None, NOT_CLEARABLE] = None` in a PATCH body: a field that may be left
out but not sent as null (422 naming it), which the document says by admitting no null. (X |
None keeps its errors named after the field; a union with a None the document skips would
name the union's branches.)"""


def is_period(value: str) -> bool:
    # fullmatch: with match, "$" also matches before a trailing newline ("2026-12\n").
    return bool(_PERIOD.fullmatch(value))


def _check_period(value: str) -> str:
    if not is_period(value):
        raise ValueError(
            f"must be a month written YYYY-MM (ASCII digits) in the years {MIN_YEAR} to {MAX_YEAR}"
        )
    return value


PeriodText = Annotated[
    str,
    AfterValidator(_check_period),
    WithJsonSchema({"type": "string", "pattern": PERIOD_PATTERN, "examples": ["2026-11"]}),
]
"""An accounting month as a request writes it, YYYY-MM (`Period.parse` reads it)."""


def _strict_decimal(raw: Any) -> Any:
    # A JSON number has already lost what the client meant (12.34 may arrive as
    # 12.339999...); amounts travel as strings. Decimal is what the code itself passes.
    if isinstance(raw, bool | int | float):
        raise ValueError('must be a decimal string such as "12.50", not a JSON number')
    return raw


_STRICT = BeforeValidator(_strict_decimal)


def _unsigned(raw: Any) -> Any:
    # "-0" is zero, but no one writes an amount that cannot be negative with a sign.
    if isinstance(raw, str) and raw.startswith("-"):
        raise ValueError("must not be negative")
    return raw


UNSIGNED = BeforeValidator(_unsigned)
"""Refuses a sign on decimal text that cannot be negative."""


def decimal_pattern(*, places: int, top: Decimal, positive: bool) -> str:
    """The decimal text a request may carry for a number from 0 (or above 0, if `positive`)
    to `top` (a power of ten) with at most `places` decimals, as the validators read it
    (leading zeros, and zeros after the last decimal, change nothing): what the OpenAPI
    document says, so that what it admits is what the server takes."""
    digits = len(str(int(top))) - 1
    fraction = rf"(\.[0-9]{{1,{places}}}0*)?"
    at_top = rf"0*{int(top)}(\.0+)?"
    if not positive:
        below = rf"0*[0-9]{{1,{digits}}}" if digits else "0+"
        return rf"^({below}{fraction}|{at_top})$"
    small = "|".join(f"{'0' * k}[1-9][0-9]{{0,{places - k - 1}}}" for k in range(places))
    parts = [rf"0+\.({small})0*", at_top]
    if digits:
        parts.insert(0, rf"0*[1-9][0-9]{{0,{digits - 1}}}{fraction}")
    return rf"^({'|'.join(parts)})$"


def decimal_schema(*, places: int, top: Decimal, positive: bool = False) -> WithJsonSchema:
    """The OpenAPI schema of decimal text from 0 (or above 0) to `top`."""
    pattern = decimal_pattern(places=places, top=top, positive=positive)
    return WithJsonSchema({"type": "string", "pattern": pattern})


Amount = Annotated[
    Money,
    _STRICT,
    UNSIGNED,
    Field(ge=0, le=MAX_AMOUNT),
    decimal_schema(places=2, top=MAX_AMOUNT),
]
"""An amount in a request body: a string, 0 to 1,000,000,000.00."""
PositiveAmount = Annotated[
    Money,
    _STRICT,
    UNSIGNED,
    Field(gt=0, le=MAX_AMOUNT),
    decimal_schema(places=2, top=MAX_AMOUNT, positive=True),
]
"""An amount in a request body that must be more than zero."""
PositiveQuantity = Annotated[
    Quantity,
    _STRICT,
    UNSIGNED,
    Field(gt=0, le=MAX_QUANTITY),
    decimal_schema(places=3, top=MAX_QUANTITY, positive=True),
]
"""A quantity in a request body: a string, more than 0 and at most 1,000,000."""
TaxRate = Annotated[
    Rate, _STRICT, UNSIGNED, Field(ge=0, le=1), decimal_schema(places=4, top=Decimal(1))
]
"""A rate in a request body: a string from 0 to 1."""
StrictMoney = Annotated[Money, _STRICT]
"""An amount in a request body with bounds of its own."""

MAX_BALANCE = Decimal("9999999999999999.99")
"""The largest figure a NUMERIC(18, 2) column (a balance, a sum) holds."""
BalanceFigure = Annotated[
    Money,
    Field(ge=-MAX_BALANCE, le=MAX_BALANCE),
    WithJsonSchema({"type": "string", "pattern": r"^-?0*[0-9]{1,16}(\.[0-9]{1,2}0*)?$"}),
]
"""A balance to compare with, as a query parameter: decimal text a money column can hold."""

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""An ISO 4217 currency code."""
