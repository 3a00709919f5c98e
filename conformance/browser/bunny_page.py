"""The bunny demo's page as the browser tests drive it (test_bunny_restart.py and
test_gateway_browser.py): its colours and canvas, strokes drawn and checked."""

from __future__ import annotations

from typing import Any

RED, BLUE = "#e4572e", "#2e86de"
CANVAS = (960, 600)
ZIGZAG = [(0.10, 0.20), (0.20, 0.35), (0.30, 0.20), (0.40, 0.35), (0.50, 0.20)]
SWOOSH = [(0.55, 0.70), (0.65, 0.55), (0.75, 0.70), (0.85, 0.55)]


def rgba(color: str) -> list[int]:
    return [int(color[i : i + 2], 16) for i in (1, 3, 5)] + [255]


def at(fx: float, fy: float) -> tuple[int, int]:
    return round(fx * CANVAS[0]), round(fy * CANVAS[1])


def open_bunny(open_page: Any, url: str) -> Any:
    page = open_page(url)
    page.wait_for("window.bunny && window.bunny.ready")
    return page


def draw(page: Any, color: str, points: list[tuple[float, float]]) -> tuple[str, int]:
    """test_bunny.py's: pick a colour and the thick brush, drag; the stroke id and
    how many points the tab published for it."""
    page.click(f'.swatch[data-color="{color}"]')
    page.click('.width[data-width="18"]')
    before = page.eval("bunny.mine.length")
    page.drag("#ink", points)
    stroke = page.wait_for(f"bunny.mine.length === {before + 1} && bunny.mine[{before}]")
    sent = page.wait_for(f"bunny.sent[{stroke!r}]")
    return stroke, sent


def assert_shows(page: Any, stroke: str, points: int, color: str, where: tuple[int, int]) -> None:
    page.wait_for(f"(bunny.strokes[{stroke!r}] || {{}}).points === {points}")
    assert page.eval(f"bunny.pixelAt({where[0]}, {where[1]})") == rgba(color)
