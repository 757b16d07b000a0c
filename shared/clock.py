"""Today's business date as a route dependency: the one seam where a test can set the clock
(`app.dependency_overrides[business_today]`), so rules about "today" are tested on the day
they are about instead of on whatever day the suite runs."""

from __future__ import annotations

from datetime import date

from fastapi import Request

from shared.periods import today


def business_today(request: Request) -> date:
    """The calendar date now in the deployment's business time zone."""
    return today(request.app.state.settings.zone)
