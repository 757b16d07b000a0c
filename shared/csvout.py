"""CSV answers for clients that send `Accept: text/csv`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import Response

CSV = "text/csv"


def wants_csv(request: Request) -> bool:
    return CSV in request.headers.get("accept", "")


def _cell(value: Any) -> Any:
    """A value as a CSV cell: booleans as JSON writes them (true/false), nothing as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
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
