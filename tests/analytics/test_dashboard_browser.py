"""The dashboard in a real browser: the analytics service runs as its own process over a
seeded quarter of documents, headless Chromium opens the page over TCP with nothing but
that service to reach, and both what the script built (the DOM) and what was painted (a
screenshot) must show every chart drawn from the service's figures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops

from services.analytics.dashboard import COLOURS
from shared.events.envelope import Event
from tests.analytics.world import ALL_TIME, END, START, World, build
from tests.cli.processes import Server, salesbook_server
from tests.conftest import TEST_SECRET, auth, migrate_all, token
from tests.support.feed import publish

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_SECONDS = 60
APPLY_SECONDS = 30
WINDOW = (1400, 1800)


@pytest.fixture(scope="module")
async def world(own_database: str) -> tuple[World, list[Event]]:
    await migrate_all(own_database)
    w = build()
    return w, await publish(own_database, w.events)


@pytest.fixture(scope="module")
def analytics(
    own_database: str, world: tuple[World, list[Event]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`salesbook serve analytics` over the seeded database, once it has applied every event."""
    folder = tmp_path_factory.mktemp("analytics")
    with salesbook_server(
        "serve",
        "analytics",
        data_dir=folder / "data",
        log_dir=folder / "logs",
        SALESBOOK_DATABASE_URL=own_database,
        SALESBOOK_SECRET_KEY=TEST_SECRET,
        SALESBOOK_CONSUMER_POLL_SECONDS="0.2",
    ) as server:
        server.wait_until_healthy()
        _wait_until_applied(server, *world)
        yield server


def _wait_until_applied(server: Server, w: World, events: list[Event]) -> None:
    newest = max(e.occurred_at for e in events)
    deadline = time.monotonic() + APPLY_SECONDS
    with httpx.Client(base_url=server.base_url, headers=auth("analyst"), timeout=10) as client:
        while time.monotonic() < deadline:
            if w.all_applied(client.get("/v1/analytics/kpis", params=ALL_TIME).json(), newest):
                return
            time.sleep(0.1)
    raise AssertionError(f"the analytics service did not apply the events:\n{server.output()}")


def run_chromium(url: str, folder: Path, *outputs: str) -> str:
    """Open `url` in headless Chromium with a fresh profile; its stdout. The browser and
    everything it started are killed however it ends."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard test needs Debian's chromium package; "
            "`make test` installs it, or run `apt-get install chromium`"
        )
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={folder / 'profile'}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=10000",
        *outputs,
        url,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=BROWSER_SECONDS)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, f"chromium failed:\n{stderr.decode(errors='replace')}"
    return stdout.decode()


class ChartReader(HTMLParser):
    """What the script drew: per chart, how many shapes of each class and the title of each
    bar or point; plus the error line and the page's state."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[str, Counter[str]] = defaultdict(Counter)
        self.titles: dict[str, list[str]] = defaultdict(list)
        self.error = ""
        self.state = ""
        self._chart: str | None = None
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "body":
            self.state = found.get("data-shown") or ""
        if tag == "svg":
            self._chart = found.get("id")
        elif self._chart and found.get("class"):
            self.shapes[self._chart][found["class"] or ""] += 1
        if tag in ("title", "p") and (self._chart or found.get("id") == "error"):
            self._in = "title" if tag == "title" else "error"

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        if tag in ("title", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title" and self._chart:
            self.titles[self._chart].append(data)
        elif self._in == "error":
            self.error += data


def _bar_values(reader: ChartReader, chart: str) -> dict[str, Decimal]:
    pairs = (title.rsplit(": ", 1) for title in reader.titles[chart])
    return {label: Decimal(value) for label, value in pairs}


def _revenue_by(w: World, key: Any) -> dict[str, Decimal]:
    return {k or "none": g["revenue"] for k, g in w.sales(START, END, key).items()}


@dataclass(frozen=True)
class Opened:
    """The dashboard as Chromium left it: the DOM the script built, and a screenshot."""

    dom: str
    screenshot: Path


@pytest.fixture(scope="module")
def opened(analytics: Server, tmp_path_factory: pytest.TempPathFactory) -> Opened:
    fragment = f"token={token('analyst', 'dashboard')}&from={START}&to={END}"
    address = f"{analytics.base_url}/v1/analytics/dashboard#{fragment}"
    folder = tmp_path_factory.mktemp("chromium")
    shot = folder / "dashboard.png"
    return Opened(run_chromium(address, folder, "--dump-dom", f"--screenshot={shot}"), shot)


def test_dashboard_draws_every_chart_from_the_service(
    opened: Opened, world: tuple[World, list[Event]]
) -> None:
    reader = ChartReader()
    reader.feed(opened.dom)
    w = world[0]

    assert reader.error == "" and reader.state == "charts", reader.error
    assert reader.shapes["trend"]["actual-point"] == 3  # January to March
    assert reader.shapes["trend"]["forecast-point"] == 3
    assert reader.shapes["trend"]["actual"] == reader.shapes["trend"]["forecast"] == 1
    assert _bar_values(reader, "products") == _revenue_by(w, lambda f: f.sku)
    assert _bar_values(reader, "channels") == _revenue_by(w, lambda f: f.channel)
    assert _bar_values(reader, "regions") == _revenue_by(w, lambda f: f.region)
    ageing = _bar_values(reader, "ageing")
    assert len(ageing) == 5 and sum(ageing.values()) == sum(
        (sum(w.aged_at(i, END).values(), Decimal(0)) for i in w.invoices.values()), Decimal(0)
    )
    assert sum(ageing.values()) > 0


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def painted(image: Image.Image, colour: str) -> tuple[int, int, int]:
    """How many pixels show `colour` (give or take a little), and how wide and how tall a
    box they span."""
    bands = [
        band.point(lambda v, want=want: 255 if abs(v - want) <= 8 else 0)
        for band, want in zip(image.split(), _rgb(colour), strict=True)
    ]
    mask = ImageChops.logical_and(
        ImageChops.logical_and(bands[0].convert("1"), bands[1].convert("1")),
        bands[2].convert("1"),
    )
    box = mask.getbbox()
    if box is None:
        return 0, 0, 0
    return mask.histogram()[255], box[2] - box[0], box[3] - box[1]


def test_screenshot_shows_every_chart_painted(opened: Opened) -> None:
    image = Image.open(opened.screenshot).convert("RGB")
    assert image.size == WINDOW

    # Each chart has a colour of its own; its marks must cover a chart-sized area.
    for part, colour in COLOURS.items():
        count, width, height = painted(image, colour)
        assert count >= 300, f"{part} ({colour}): only {count} pixels painted"
        assert width >= 100 and height >= 20, f"{part} ({colour}): spans {width}x{height}"
