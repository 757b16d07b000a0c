"""CSV answers open in a spreadsheet as the text they hold, never as a formula."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from shared.csvout import csv_response


def _cells(*values: object) -> list[str]:
    rows = [{"value": value} for value in values]
    body = bytes(csv_response(rows, ["value"], filename="x.csv").body).decode()
    return [row["value"] for row in csv.DictReader(io.StringIO(body))]


def test_text_a_spreadsheet_would_run_is_led_by_an_apostrophe() -> None:
    assert _cells("=1+1", "+SUM(A1)", "-2+3", "@cmd", "\t=1", '=HYPERLINK("x")') == [
        "'=1+1",
        "'+SUM(A1)",
        "'-2+3",
        "'@cmd",
        "'\t=1",
        '\'=HYPERLINK("x")',
    ]


def test_numbers_and_plain_text_are_left_as_they_are() -> None:
    assert _cells("-12.50", "+3", Decimal("-1.00"), "east", "a=b", None, True) == [
        "-12.50",
        "+3",
        "-1.00",
        "east",
        "a=b",
        "",
        "true",
    ]
