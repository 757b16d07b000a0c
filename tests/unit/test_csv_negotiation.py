"""Which answers are CSV: what `Accept` asks for, weights (q) included."""

from __future__ import annotations

import pytest
from fastapi import Request

from shared.csvout import wants_csv


def request(accept: str | None) -> Request:
    headers = [] if accept is None else [(b"accept", accept.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        (None, False),
        ("application/json", False),
        ("*/*", False),
        ("text/csv", True),
        ("text/csv; charset=utf-8", True),
        ("application/json, text/csv", True),
        ("text/csv, */*;q=0.1", True),
        ("text/csv;q=0, application/json", False),
        ("text/csv;q=0", False),
        ("text/csv;q=0.5, application/json", False),
        ("application/json;q=0.4, text/csv;q=0.5", True),
        ("text/csv;q=oops", False),
        ("TEXT/CSV;Q=1", True),  # media types and parameter names ignore case
    ],
)
def test_csv_is_what_accept_prefers(accept: str | None, csv: bool) -> None:
    assert wants_csv(request(accept)) is csv
