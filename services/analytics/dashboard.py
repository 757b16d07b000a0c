"""The dashboard: a page, its script and its colours, static files in `static/` served by the
analytics service itself (no CDN: it must work on a shop's machine with no internet). They
hold no figures; the script fetches every figure from the API with the bearer token the user
enters, and draws the charts as SVG.

The address may carry `#token=...&from=YYYY-MM-DD&to=YYYY-MM-DD`: a fragment never reaches a
server or its logs, and the script removes the token from the address as soon as it has read
it, so a link can open the dashboard on a given period without typing the token."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Final

_STATIC = files("services.analytics") / "static"

PAGE: Final = (_STATIC / "dashboard.html").read_text(encoding="utf-8")
SCRIPT: Final = (_STATIC / "dashboard.js").read_text(encoding="utf-8")
COLOURS_JSON: Final = (_STATIC / "dashboard-colours.json").read_text(encoding="utf-8")
COLOURS: Final[dict[str, str]] = json.loads(COLOURS_JSON)
"""One colour per chart, so each can be told apart on a screenshot of the page."""
