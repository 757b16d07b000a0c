"""CSV answers for clients that send `Accept: text/csv`."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import Response

CSV = "text/csv"


_JSON_RANGES = ("application/json", "application/*", "*/*")


def wants_csv(request: Request) -> bool:
    """Whether the client asks for CSV: `text/csv` with a weight (q) above 0 and not below
    the weight it gives JSON (`Accept: text/csv;q=0, application/json` asks for JSON)."""
    accept = request.headers.get("accept", "").lower()
    if CSV not in accept:
        return False
    weights = {"csv": 0.0, "json": 0.0}
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        kind = "csv" if media == CSV else "json" if media in _JSON_RANGES else None
        if kind is not None and weight > weights[kind]:
            weights[kind] = weight
    return weights["csv"] > 0 and weights["csv"] >= weights["json"]


# Text a spreadsheet would run as a formula (=, +, -, @, or a tab or carriage return before
# one); a number such as -12.50 is not text of that kind.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def _cell(value: Any) -> Any:
    """A value as a CSV cell: booleans as JSON writes them (true/false), nothing as empty,
    and text that a spreadsheet would take for a formula (a customer named "=HYPERLINK(...)")
    led by an apostrophe, so that it opens as the text it is."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_response(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, filename: str
) -> Response:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
