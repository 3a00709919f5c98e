"""The ticker example (`examples/ticker/`) in headless Chromium tabs.

`serve.py` runs as a user would start it: the broker with the last-value
queue `ticker` (`--queue 'ticker:x-last-value-key=symbol'`) and the page.
Tab A opens on an empty queue and starts the page's feed; prices flow.  Tab B
opens while the feed runs and shows the latest price of every symbol at once,
then follows live updates.  With the feed paused both tabs show the same
board, a tab C opened then gets exactly one message per symbol, and the queue
holds one message per symbol: browsing (distribution-mode copy, which the
broker's attach confirms) took nothing.  Depths come from the broker's HTTP
JSON API, `GET http://127.0.0.1:<ws_port>/api/queues/ticker`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SYMBOLS = ["AMQP", "BNNY", "QPID", "RHEA", "TRIO", "WSKT"]  # app.js's SYMBOLS

pytestmark = pytest.mark.parametrize("client", ["rhea-browser"])


@pytest.fixture(scope="module")
def ticker_server(request: pytest.FixtureRequest, node: str) -> Iterator[dict[str, Any]]:
    """`examples/ticker/serve.py` on free ports (conftest's `run_example`)."""
    browser = request.config.pluginmanager.get_plugin(str(HERE / "conftest.py"))
    with browser.run_example("ticker") as urls:
        yield urls


def queue_stats(server: dict[str, Any]) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server['ws_port']}/api/queues/{server['queue']}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


def open_tab(open_page: Any, url: str) -> Any:
    page = open_page(url)
    page.wait_for("window.ticker && ticker.ready")
    return page


def press(page: Any, selector: str) -> None:
    """Click through the DOM (`element.click()`), not Playwright's click, which
    waits for animation frames that Chromium hands a background tab about once
    a second (as in test_pubsub_rpc.py)."""
    found = page.eval(
        f"(b => b && !b.disabled && (b.click(), true))(document.querySelector({selector!r}))"
    )
    assert found, f"no enabled {selector} on the page"


def board(page: Any) -> dict[str, Any]:
    return dict(page.eval("ticker.snapshot()"))


def rendered(page: Any) -> dict[str, str]:
    """The price column of the table as shown, by symbol."""
    return dict(
        page.eval(
            "Object.fromEntries([...document.querySelectorAll('#rows tr')].map(r => "
            "[r.dataset.symbol, r.querySelector('[data-field=price]').textContent]))"
        )
    )


def test_ticker_late_tab(
    client: str, ticker_server: dict[str, Any], open_page: Any, tmp_path: Path
) -> None:
    url = ticker_server["http_url"]
    start = queue_stats(ticker_server)
    assert start["message_count"] == 0
    assert start["arguments"]["x-last-value-key"] == "symbol"

    # Tab A opens early, on an empty queue: browsing, nothing to show yet.
    a = open_tab(open_page, url)
    assert a.eval("ticker.mode") == "copy", "the broker's attach says the tab browses"
    assert a.eval("ticker.received") == 0
    assert a.eval("document.getElementById('empty').hidden") is False

    # A starts the feed; prices flow, one message per symbol first, then updates.
    press(a, "#feed")
    a.wait_for("ticker.feed.running && Object.keys(ticker.prices).length === 6")
    a.wait_for("ticker.received >= 12")
    assert queue_stats(ticker_server)["message_count"] == len(SYMBOLS)

    # Tab B opens late, while the feed runs: it shows the whole board at once,
    # then follows live updates.
    opened = time.monotonic()
    b = open_tab(open_page, url)
    b.wait_for("Object.keys(ticker.prices).length === 6", timeout=5)
    assert time.monotonic() - opened < 5
    assert b.eval("ticker.mode") == "copy"
    assert sorted(board(b)) == SYMBOLS
    sent_before = a.eval("ticker.feed.published")
    assert b.eval("ticker.received") < sent_before, "a late tab gets the latest, not the history"
    first = b.eval("ticker.received")
    b.wait_for(f"ticker.received >= {first + 4}", timeout=10)  # live updates

    # Pause the feed; once A's last messages are settled and arrived, A and B
    # show the same board, and it is what the feed published last.
    press(a, "#feed")
    assert a.eval("ticker.feed.running") is False
    a.wait_for("ticker.feed.unsettled === 0")
    published = a.eval("ticker.feed.published")
    assert a.eval("ticker.feed.accepted") == published
    last_seq = a.eval("Math.max(...Object.values(ticker.prices).map(p => p.seq))")
    assert last_seq == published, "A has the feed's last message"
    b.wait_for(f"Math.max(...Object.values(ticker.prices).map(p => p.seq)) === {published}")
    time.sleep(0.3)
    shown_a = board(a)
    assert sorted(shown_a) == SYMBOLS
    assert board(b) == shown_a, "the late tab shows what the early one shows"
    assert rendered(b) == rendered(a) == {s: f"{p['price']:.2f}" for s, p in shown_a.items()}
    assert {p["from"] for p in shown_a.values()} == {a.eval("ticker.tab")}

    # Tab C opens after the pause: exactly one message per symbol, the same board.
    c = open_tab(open_page, url)
    c.wait_for("Object.keys(ticker.prices).length === 6", timeout=5)
    time.sleep(0.3)
    assert c.eval("ticker.received") == len(SYMBOLS), "only the latest of each symbol"
    assert board(c) == shown_a

    # Nothing was taken: the queue holds one message per symbol, none acquired.
    stats = queue_stats(ticker_server)
    assert stats["message_count"] == len(SYMBOLS), stats
    assert stats["unacked"] == 0 and stats["acked"] == 0 and stats["delivered"] == 0, stats
    assert stats["published"] == published, stats

    for page in (a, b, c):
        assert page.eval("ticker.errors") == []
        assert page.eval("ticker.ignored") == 0

    shot = tmp_path / "ticker.png"
    c.screenshot(shot)
    assert shot.stat().st_size > 10_000
    if os.environ.get("TICKER_SCREENSHOT"):
        shutil.copy(shot, os.environ["TICKER_SCREENSHOT"])
