"""The bunny example (`examples/bunny/`) in real headless Chromium tabs.

`serve.py` runs as a user would start it; tab A draws with the mouse, tab B
sees the stroke live, and tab C, opened afterwards, replays it from the stream.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from proton import Described, symbol
from proton.reactor import Filter
from proton.utils import BlockingConnection

pytestmark = pytest.mark.parametrize("client", ["rhea-browser"])

RED, BLUE = "#e4572e", "#2e86de"
CANVAS = (960, 600)


def rgba(color: str) -> list[int]:
    return [int(color[i : i + 2], 16) for i in (1, 3, 5)] + [255]


def at(fx: float, fy: float) -> tuple[int, int]:
    """A point given as fractions of the canvas, in canvas pixels."""
    return round(fx * CANVAS[0]), round(fy * CANVAS[1])


def open_bunny(open_page: Any, url: str) -> Any:
    page = open_page(url)
    page.wait_for("window.bunny && window.bunny.ready")
    return page


def draw(page: Any, color: str, points: list[tuple[float, float]]) -> tuple[str, int]:
    """Pick a colour and the thick brush, drag through points; return the stroke id
    and how many points the tab published for it."""
    page.click(f'.swatch[data-color="{color}"]')
    page.click('.width[data-width="18"]')
    before = page.eval("bunny.mine.length")
    page.drag("#ink", points)
    stroke = page.wait_for(f"bunny.mine.length === {before + 1} && bunny.mine[{before}]")
    sent = page.wait_for(f"bunny.sent[{stroke!r}]")
    return stroke, sent


def assert_shows(page: Any, stroke: str, points: int, color: str, where: tuple[int, int]) -> None:
    """The page got every point of the stroke from the stream and painted it."""
    page.wait_for(f"(bunny.strokes[{stroke!r}] || {{}}).points === {points}")
    assert page.eval(f"bunny.pixelAt({where[0]}, {where[1]})") == rgba(color)


def test_bunny_shared_drawing(
    client: str, bunny_server: dict[str, Any], open_page: Any, tmp_path: Path
) -> None:
    url = bunny_server["http_url"]
    a = open_bunny(open_page, url)
    b = open_bunny(open_page, url)
    assert b.eval("bunny.pixelAt(480, 100)") == [0, 0, 0, 0]

    # A draws a red zigzag; B sees it live.
    zigzag = [(0.10, 0.20), (0.20, 0.35), (0.30, 0.20), (0.40, 0.35), (0.50, 0.20)]
    red, red_points = draw(a, RED, zigzag)
    assert red_points > len(zigzag)
    assert_shows(b, red, red_points, RED, at(*zigzag[1]))
    assert_shows(a, red, red_points, RED, at(*zigzag[1]))  # its own echo, drawn once

    # C opens afterwards and replays the drawing from the stream.
    c = open_bunny(open_page, url)
    assert_shows(c, red, red_points, RED, at(*zigzag[3]))
    assert c.eval("bunny.lastOffset") >= 0

    # Then C follows live strokes, here one from B.
    swoosh = [(0.55, 0.70), (0.65, 0.55), (0.75, 0.70), (0.85, 0.55)]
    blue, blue_points = draw(b, BLUE, swoosh)
    for page in (a, c):
        assert_shows(page, blue, blue_points, BLUE, at(*swoosh[2]))

    for page in (a, b, c):
        assert page.eval("bunny.errors") == []
        assert page.eval(f"bunny.strokes[{red!r}].tab") == a.eval("bunny.tab")

    # Any AMQP client can read the drawing: python-qpid-proton over TCP, from `first`.
    spec = symbol("rabbitmq:stream-offset-spec")
    conn = BlockingConnection(bunny_server["amqp_url"], timeout=20)
    try:
        receiver = conn.create_receiver(
            f"/queues/{bunny_server['stream']}",
            credit=100,
            options=Filter({spec: Described(spec, "first")}),
        )
        first = receiver.receive(timeout=20)
        receiver.accept()
    finally:
        conn.close()
    assert first.annotations[symbol("x-stream-offset")] == 0
    assert first.body["stroke"] == red and first.body["color"] == RED
    x0, y0 = at(*zigzag[0])
    assert abs(first.body["points"][0] - x0) <= 2 and abs(first.body["points"][1] - y0) <= 2

    shot = tmp_path / "bunny.png"
    c.screenshot(shot)
    assert shot.stat().st_size > 10_000
    if os.environ.get("BUNNY_SCREENSHOT"):
        shutil.copy(shot, os.environ["BUNNY_SCREENSHOT"])
