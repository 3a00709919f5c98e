"""The web console (`broker/console/`, served by the broker itself on its
WebSocket port) in headless Chromium (client `chromium`).

The broker is `python -m broker serve` on free ports (conformance/conftest.py's
`start_broker`); the page is http://127.0.0.1:<ws_port>/, as a user opens it.
Messages go in and out with Qpid Proton, and what the page did is checked
through the JSON API.

- `live_depth`: the queues view shows a queue's depth change to 3 when
  Proton publishes 3 messages, without a reload.
- `pauses_when_hidden`: no polls while the tab is hidden, one at once when
  it shows again.
- `peek`: on the queue page (reached by clicking the row) peek shows the
  bodies (text, pretty JSON, hex) and the properties; nothing is taken.
- `stream_offset`: peeking a stream from an offset shows those offsets.
- `publish_purge_delete`: the page adds a queue (and shows the API's error
  for a bad argument), publishes from its own form, purges and deletes with
  a confirm step; each shows in the JSON API.
- `login_and_refusals`: with anonymous access off the page asks for a login,
  shows a wrong password's 401, and, logged in as a user who may only read,
  shows the 403 of a delete and the rejected outcome of a publish.
- `screenshots`: the overview, the queues view and a queue page at 1280×800
  and 375×812 (under /tmp/console-shots/), with live traffic; at phone width
  nothing is wider than the screen.  driver.mjs has no viewport command, so
  these come from a short playwright-core script of their own (SHOOT below).
"""

from __future__ import annotations

import json
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from proton import Message
from proton.utils import BlockingConnection

pytestmark = pytest.mark.parametrize("client", ["chromium"])

HERE = Path(__file__).resolve().parent
SHOTS = Path("/tmp/console-shots")
WAIT = 10  # seconds for the page to show something (it polls every 2 s)


def _conftest(config: pytest.Config, directory: Path) -> Any:
    """The conftest module of `directory` as pytest loaded it (both are
    called `conftest`, so neither can simply be imported here)."""
    module = config.pluginmanager.get_plugin(str(directory / "conftest.py"))
    assert module is not None, f"{directory}/conftest.py is not loaded"
    return module


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def console_broker(request: pytest.FixtureRequest) -> Iterator[Any]:
    suite = _conftest(request.config, HERE.parent)
    proc, info = suite.start_broker()
    yield info
    code = suite.stop_broker(proc)
    assert code == 0, f"broker exited with {code}; log: {info.log_path}"


@pytest.fixture
def name() -> str:
    return f"console-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def console(open_page: Callable[[str], Any]) -> Callable[..., Any]:
    """console(broker, '#/queues') → a tab with the console there, sampled once."""

    def _open(broker: Any, route: str = "#/overview") -> Any:
        page = open_page(f"http://127.0.0.1:{broker.ws_port}/{route}")
        page.wait_for("window.amqpwsConsole && amqpwsConsole.polls >= 1", timeout=WAIT)
        return page

    return _open


# -- helpers ----------------------------------------------------------------------------


def publish(broker: Any, address: str, messages: list[Message]) -> None:
    conn = BlockingConnection(broker.amqp_url, timeout=10)
    try:
        sender = conn.create_sender(address)
        for message in messages:
            sender.send(message)
    finally:
        conn.close()


def api(broker: Any, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """The JSON API, as the console calls it (with the console's header)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{broker.ws_port}{path}", data=data, method=method,
        headers={"x-amqpws-console": "1", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def depth(broker: Any, queue: str) -> int | None:
    status, answer = api(broker, "GET", f"/api/queues/{queue}")
    return answer["message_count"] if status == 200 else None


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def cell(table: str, key: str, column: str) -> str:
    """JS: the text of a table cell (null while the row is not there)."""
    return (f"(() => {{ const row = [...document.querySelectorAll('#{table} tbody tr')]"
            f".find((r) => r.dataset.key === {json.dumps(key)});"
            f" return row ? row.querySelector('td[data-col=\"{column}\"]').textContent : null; }})()")


def text(selector: str) -> str:
    """JS: the text of the first element matching selector ('' if none)."""
    return f"(document.querySelector({json.dumps(selector)}) || {{textContent: ''}}).textContent"


def fill(page: Any, selector: str, value: str) -> None:
    """Type into a field (set it and fire `input`, as typing does)."""
    assert page.eval(
        f"(() => {{ const el = document.querySelector({json.dumps(selector)}); if (!el) return false;"
        f" el.value = {json.dumps(value)}; el.dispatchEvent(new Event('input', {{bubbles: true}}));"
        " return true; })()"), f"no {selector} in the page"


def open_queue_page(page: Any, queue: str) -> None:
    page.eval(f"location.hash = '#/queue/' + encodeURIComponent({json.dumps(queue)})")
    page.wait_for(f"amqpwsConsole.route.arg === {json.dumps(queue)} && "
                  + text(".queue-name") + f" === {json.dumps(queue)} && "
                  + "!document.querySelector('.queue-body').hidden", timeout=WAIT)


# -- cases ------------------------------------------------------------------------------


def test_console_live_depth(client: str, console_broker: Any, console: Any, name: str) -> None:
    page = console(console_broker, "#/queues")
    assert page.eval(cell("queues-table", name, "depth")) is None
    page.eval("window.sameDocument = true")

    publish(console_broker, f"/queues/{name}", [Message(body=f"m{i}") for i in range(3)])

    page.wait_for(cell("queues-table", name, "depth") + " === '3'", timeout=WAIT)
    assert page.eval("window.sameDocument === true"), "the page reloaded"
    assert page.eval("performance.getEntriesByType('navigation').length") == 1
    assert page.eval(cell("queues-table", name, "type")) == "classic"


HIDE = """(() => {
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => %s});
  document.dispatchEvent(new Event('visibilitychange'));
})()"""


def test_console_pauses_when_hidden(client: str, console_broker: Any, console: Any) -> None:
    page = console(console_broker, "#/overview")
    page.wait_for("amqpwsConsole.polls >= 2", timeout=WAIT)
    page.eval(HIDE % "true")
    assert page.eval(text("#status-text")) == "paused while hidden"
    time.sleep(0.5)  # a poll under way when the tab hid may still land
    polls = page.eval("amqpwsConsole.polls")
    time.sleep(4.5)  # two poll intervals and then some
    assert page.eval("amqpwsConsole.polls") == polls, "the page polled while hidden"
    page.eval(HIDE % "false")
    page.wait_for(f"amqpwsConsole.polls > {polls}", timeout=1)  # at once, not after 2 s
    page.wait_for(text("#status-text") + " === 'live'", timeout=WAIT)


def test_console_peek(client: str, console_broker: Any, console: Any, name: str) -> None:
    publish(console_broker, f"/queues/{name}", [
        Message(body="hello, console", subject="greeting", properties={"n": 1}),
        Message(body=b'{"price": 42, "items": ["a", "b"]}', inferred=True,
                content_type="application/json", subject="quote"),
        Message(body=b"\xff\x00raw", inferred=True),
    ])
    page = console(console_broker, "#/queues")
    page.wait_for(cell("queues-table", name, "depth") + " === '3'", timeout=WAIT)
    page.click(f'#queues-table a[href="#/queue/{name}"]')
    page.wait_for(f"amqpwsConsole.route.arg === {json.dumps(name)}", timeout=WAIT)
    page.wait_for("!document.querySelector('.queue-body').hidden", timeout=WAIT)

    page.click('button[data-action="peek"]')
    page.wait_for("document.querySelectorAll('#peeked .message').length === 3", timeout=WAIT)
    bodies = page.eval("[...document.querySelectorAll('#peeked pre.body')].map((p) => p.textContent)")
    assert bodies[0] == "hello, console"
    assert json.loads(bodies[1]) == {"price": 42, "items": ["a", "b"]}
    assert '"price": 42' in bodies[1], "JSON is pretty-printed"
    assert "ff 00 72 61 77" in bodies[2] and "..raw" in bodies[2], "a binary body is a hex dump"
    first = page.eval(text("#peeked .message"))
    assert "greeting" in first and "subject" in first, "properties are shown"
    assert "Application properties" in first and "n" in first

    # the JSON body as text, and as hex, through the toggle
    page.click('#peeked .message:nth-child(2) button[data-form="Text"]')
    assert page.eval(text("#peeked .message:nth-child(2) pre.body")) == \
        '{"price": 42, "items": ["a", "b"]}'
    page.click('#peeked .message:nth-child(2) button[data-form="Hex"]')
    assert page.eval(text("#peeked .message:nth-child(2) pre.body")).startswith("00000000  7b 22")
    assert depth(console_broker, name) == 3, "peeking takes nothing"


def test_console_stream_offset(client: str, console_broker: Any, console: Any, name: str) -> None:
    assert api(console_broker, "PUT", f"/api/queues/{name}",
               {"arguments": {"x-queue-type": "stream"}})[0] == 201
    publish(console_broker, f"/queues/{name}", [Message(body=f"event {i}") for i in range(5)])
    page = console(console_broker, "#/queues")
    open_queue_page(page, name)
    page.wait_for(text(".inline-form .muted") + " === 'offsets 0 … 4'", timeout=WAIT)
    assert page.eval("document.querySelector('button[data-action=\"purge\"]').disabled")

    fill(page, 'input[name="offset"]', "3")
    page.click('button[data-action="peek"]')
    page.wait_for("document.querySelectorAll('#peeked .message').length === 2", timeout=WAIT)
    assert page.eval("[...document.querySelectorAll('#peeked .message')].map("
                     "(m) => [m.dataset.offset, m.querySelector('pre.body').textContent])") == \
        [["3", "event 3"], ["4", "event 4"]]


def test_console_publish_purge_delete(client: str, console_broker: Any, console: Any,
                                      name: str) -> None:
    page = console(console_broker, "#/queues")

    # add the queue from the page; a bad argument first: the API's error shows
    page.click("details.declare summary")
    fill(page, 'details.declare input[name="name"]', name)
    fill(page, 'details.declare input[name="arguments"]', '{"x-max-length": "lots"}')
    page.click('details.declare button[type="submit"]')
    page.wait_for(text("details.declare .notice.error") + ".includes('x-max-length')", timeout=WAIT)
    assert depth(console_broker, name) is None
    fill(page, 'details.declare input[name="arguments"]', '{"x-max-length": 100}')
    page.click('details.declare button[type="submit"]')
    page.wait_for(cell("queues-table", name, "depth") + " === '0'", timeout=WAIT)
    assert api(console_broker, "GET", f"/api/queues/{name}")[1]["arguments"]["x-max-length"] == 100

    # publish twice from the queue page's form
    open_queue_page(page, name)
    fill(page, '#publish-form textarea[name="body"]', "from the page")
    fill(page, '#publish-form input[name="subject"]', "console-form")
    fill(page, '#publish-form input[name="application_properties"]', "not json")
    page.click('button[data-action="publish"]')
    page.wait_for(text("#publish-form .notice.error") + ".includes('not JSON')", timeout=WAIT)
    fill(page, '#publish-form input[name="application_properties"]', '{"source": "console"}')
    for _ in range(2):
        page.click('button[data-action="publish"]')
        page.wait_for(text("#publish-form .notice.ok") + ".includes('accepted')", timeout=WAIT)
        page.eval("document.querySelector('#publish-form .notice').hidden = true")
    wait_until(lambda: depth(console_broker, name) == 2, "2 messages in the queue")
    status, peeked = api(console_broker, "GET", f"/api/queues/{name}/messages?count=5")
    assert status == 200 and len(peeked) == 2
    assert peeked[0]["body"]["text"] == "from the page"
    assert peeked[0]["properties"]["subject"] == "console-form"
    assert peeked[0]["application_properties"] == {"source": "console"}
    page.wait_for(text('.tile[data-tile="ready"] .tile-value') + " === '2'", timeout=WAIT)

    # purge, with a confirm step that names the count
    page.click('button[data-action="purge"]')
    assert "2 ready messages" in page.eval(text(".danger-zone .confirm-text"))
    assert depth(console_broker, name) == 2, "nothing happens before the confirm"
    page.click('button[data-confirm="purge"]')
    wait_until(lambda: depth(console_broker, name) == 0, "the purge")
    page.wait_for(text('.tile[data-tile="ready"] .tile-value') + " === '0'", timeout=WAIT)

    # delete: the page goes back to the list, and the queue is gone
    page.click('button[data-action="delete"]')
    page.click('button[data-confirm="delete"]')
    page.wait_for("amqpwsConsole.route.name === 'queues'", timeout=WAIT)
    assert api(console_broker, "GET", f"/api/queues/{name}")[0] == 404
    page.wait_for(cell("queues-table", name, "depth") + " === null", timeout=WAIT)
    assert page.eval(text("#toasts")).count(f"Deleted {name}") == 1


LOCKED_CONFIG = """
[users]
alice = "secret"
carol = "carol"
[permissions.carol]
read = ".*"
"""


def test_console_login_and_refusals(client: str, request: pytest.FixtureRequest,
                                    open_page: Any, tmp_path: Path, name: str) -> None:
    suite = _conftest(request.config, HERE.parent)
    config = tmp_path / "broker.toml"
    config.write_text(LOCKED_CONFIG)
    proc, broker = suite.start_broker("--config", str(config), "--no-anonymous",
                                      "--queue", name)
    try:
        page = open_page(f"http://127.0.0.1:{broker.ws_port}/#/queue/{name}")
        page.wait_for("document.querySelector('#login-form')", timeout=WAIT)
        assert "anonymous access is off" in page.eval(text("#login-form"))

        fill(page, '#login-form input[name="user"]', "carol")
        fill(page, '#login-form input[name="password"]', "wrong")
        page.click('#login-form button[type="submit"]')
        page.wait_for(text("#login-form .notice.error") + ".length > 0", timeout=WAIT)

        fill(page, '#login-form input[name="user"]', "carol")
        fill(page, '#login-form input[name="password"]', "carol")
        page.click('#login-form button[type="submit"]')
        page.wait_for(text(".queue-name") + f" === {json.dumps(name)}", timeout=WAIT)
        page.wait_for(text("#who .user") + " === 'carol'", timeout=WAIT)

        page.click('button[data-action="delete"]')
        page.click('button[data-confirm="delete"]')
        page.wait_for(text(".danger-zone .notice.error") + ".startsWith('403')", timeout=WAIT)
        assert "configure" in page.eval(text(".danger-zone .notice.error"))

        fill(page, '#publish-form textarea[name="body"]', "may I?")
        page.click('button[data-action="publish"]')
        page.wait_for(text("#publish-form .notice.error") + ".includes('rejected')", timeout=WAIT)
        assert page.eval("document.querySelector('#login-form')") is None
    finally:
        code = suite.stop_broker(proc)
    assert code == 0, f"broker exited with {code}; log: {broker.log_path}"


# -- screenshots --------------------------------------------------------------------------

# Run with node in conformance/browser (so `playwright-core` resolves) and one
# JSON argument: {base, queue, out, shots: [[label, width, height]]}.
SHOOT = r"""
import { chromium } from 'playwright-core';

const job = JSON.parse(process.argv[1]);
const browser = await chromium.launch({
  executablePath: job.chromium, headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
});
const report = {};

async function shoot(page, file) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: `${job.out}/${file}.png` });
  await page.screenshot({ path: `${job.out}/${file}-full.png`, fullPage: true });
}

async function wideness(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

async function session([label, width, height]) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const polls = (n) => page.waitForFunction(`amqpwsConsole.polls >= ${n}`, null, { timeout: 10000 });
  await page.goto(`${job.base}/#/overview`);
  await polls(4); // a few rates for the chart
  await shoot(page, `overview-${label}`);
  const overflow = { overview: await wideness(page) };
  await page.evaluate(() => { location.hash = '#/queues'; });
  await page.waitForSelector('#queues-table tbody tr[data-key]');
  await polls(5);
  await shoot(page, `queues-${label}`);
  overflow.queues = await wideness(page);
  await page.evaluate((q) => { location.hash = `#/queue/${encodeURIComponent(q)}`; }, job.queue);
  await page.waitForSelector('.queue-body:not([hidden])');
  await page.fill('input[name="count"]', '3');
  await page.click('button[data-action="peek"]');
  await page.waitForSelector('#peeked .message');
  await polls(6);
  await shoot(page, `queue-${label}`);
  overflow.queue = await wideness(page);
  report[label] = { errors, overflow };
  await context.close();
}

try {
  await Promise.all(job.shots.map(session));
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
"""


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def traffic(broker: Any, queue: str, stop: threading.Event) -> None:
    """About 20 msg/s into `queue`, half of them consumed: the charts move."""
    conn = BlockingConnection(broker.amqp_url, timeout=10, container_id="console-traffic")
    try:
        sender = conn.create_sender(f"/queues/{queue}")
        receiver = conn.create_receiver(f"/queues/{queue}", credit=1)
        i = 0
        while not stop.is_set():
            sender.send(Message(body=json.dumps({"order": i, "item": "widget"}),
                                subject="order.created", properties={"region": "eu", "n": i}))
            if i % 2:
                receiver.receive(timeout=5)
                receiver.accept()
            i += 1
            time.sleep(0.05)
    finally:
        conn.close()


def test_console_screenshots(client: str, request: pytest.FixtureRequest, console_broker: Any,
                             chromium: Any, node: str, name: str) -> None:
    """`chromium` (the suite's driver) is not used here; asking for it makes
    this case skip or fail like the others when Chromium is missing."""
    publish(console_broker, f"/queues/{name}-log",
            [Message(body=b"\x00\x01\x02 binary", inferred=True)])
    api(console_broker, "PUT", f"/api/queues/{name}-stream", {"arguments": {"x-queue-type": "stream"}})
    SHOTS.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    thread = threading.Thread(target=traffic, args=(console_broker, name, stop), daemon=True)
    thread.start()
    try:
        wait_until(lambda: (depth(console_broker, name) or 0) > 1, "traffic")
        job = {"base": f"http://127.0.0.1:{console_broker.ws_port}", "queue": name,
               "out": str(SHOTS), "chromium": _conftest(request.config, HERE).CHROMIUM,
               "shots": [["1280x800", 1280, 800], ["375x812", 375, 812]]}
        done = subprocess.run([node, "--input-type=module", "-e", SHOOT, json.dumps(job)],
                              cwd=HERE, capture_output=True, text=True, timeout=60, check=False)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for label, width, height in job["shots"]:
        assert report[label]["errors"] == [], report[label]["errors"]
        for view in ("overview", "queues", "queue"):
            assert png_size(SHOTS / f"{view}-{label}.png") == (width, height)
            assert png_size(SHOTS / f"{view}-{label}-full.png")[0] == width
    assert report["375x812"]["overflow"] == {"overview": 0, "queues": 0, "queue": 0}, \
        "something is wider than a phone's screen"
