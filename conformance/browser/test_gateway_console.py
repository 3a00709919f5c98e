"""The gateway's console page (`broker/console/gateway.html`, served at `/` by
`amqpws-broker gateway` on its WebSocket port) in headless Chromium (client
`chromium`).

The upstream is `python -m broker serve` (conformance/conftest.py's
`start_broker`); in front of it, `python -m broker gateway --upstream …` runs
as a user runs it, with one upstream connection.  Clients are Qpid Proton
over TCP through the gateway; what the page shows is read from its DOM.

- `live`: the page shows mode: gateway, the listeners and 1 open upstream
  connection; a receiver attached through the gateway shows as a routed link
  and a client connection (tcp, its container id), an unsettled delivery as
  1 in flight until it is accepted, and closing the client takes both away
  (the total of routed links stays) — all without a reload.
- `login`: with anonymous access off the page asks for a login, shows a
  wrong password's refusal, and, logged in, the view and the user.
- `screenshots`: the page at 1280×800 and 375×812 (under /tmp/console-shots/,
  gateway-*.png) with traffic through the gateway; at phone width nothing is
  wider than the screen and the page logs no errors.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from proton import Message
from proton.utils import BlockingConnection

pytestmark = pytest.mark.parametrize("client", ["chromium"])

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SHOTS = Path("/tmp/console-shots")
WAIT = 10  # seconds for the page to show something (it polls every second)


def _conftest(config: pytest.Config, directory: Path) -> Any:
    """The conftest module of `directory` as pytest loaded it (both are
    called `conftest`, so neither can simply be imported here)."""
    module = config.pluginmanager.get_plugin(str(directory / "conftest.py"))
    assert module is not None, f"{directory}/conftest.py is not loaded"
    return module


@dataclass(frozen=True)
class GatewayProcess:
    amqp_url: str
    ws_url: str
    ws_port: int
    upstream_label: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.ws_port}/"


def start_gateway(upstream_port: int, *args: str, timeout: float = 15.0) -> GatewayProcess:
    """`python -m broker gateway` on free ports in front of 127.0.0.1:`upstream_port`."""
    workdir = Path(tempfile.mkdtemp(prefix="amqpws-gwconsole-"))
    ready, log_path = workdir / "ready.json", workdir / "gateway.log"
    cmd = [sys.executable, "-m", "broker", "gateway",
           "--upstream", f"amqp://guest:guest@127.0.0.1:{upstream_port}",
           "--upstream-connections", "1", "--port", "0", "--ws-port", "0",
           "--ready-file", str(ready), "--log-level", "debug", *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"gateway did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    return GatewayProcess(amqp_url=info["amqp_url"], ws_url=info["ws_url"],
                          ws_port=info["ws_port"],
                          upstream_label=f"amqp://127.0.0.1:{upstream_port}",
                          log_path=log_path, proc=proc)


def stop_gateway(gateway: GatewayProcess) -> int:
    gateway.proc.send_signal(signal.SIGTERM)
    try:
        return gateway.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        gateway.proc.kill()
        return gateway.proc.wait()


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream(request: pytest.FixtureRequest) -> Iterator[Any]:
    suite = _conftest(request.config, HERE.parent)
    proc, info = suite.start_broker("--user", "guest:guest")
    yield info
    code = suite.stop_broker(proc)
    assert code == 0, f"upstream exited with {code}; log: {info.log_path}"


@pytest.fixture
def gateway(upstream: Any) -> Iterator[GatewayProcess]:
    """A gateway of its own for each case: its counts start at zero."""
    gw = start_gateway(upstream.port)
    yield gw
    code = stop_gateway(gw)
    assert code == 0, f"gateway exited with {code}; log: {gw.log_path}"


@pytest.fixture
def name() -> str:
    return f"gwconsole-{uuid.uuid4().hex[:8]}"


# -- helpers ----------------------------------------------------------------------------


def text(selector: str) -> str:
    """JS: the text of the first element matching selector ('' if none)."""
    return f"(document.querySelector({json.dumps(selector)}) || {{textContent: ''}}).textContent"


def tile(key: str, part: str = "value") -> str:
    """JS: a tile's value (or its `sub` line)."""
    return text(f'.tile[data-tile="{key}"] .tile-{part}')


def rows(table: str) -> str:
    """JS: the rows of a table (its data rows, not the 'none' row) as lists of cell texts."""
    return (f"[...document.querySelectorAll('#{table} tbody tr[data-key]')]"
            ".map((r) => Object.fromEntries([...r.querySelectorAll('td')]"
            ".map((td) => [td.dataset.col, td.textContent])))")


def fill(page: Any, selector: str, value: str) -> None:
    """Type into a field (set it and fire `input`, as typing does)."""
    assert page.eval(
        f"(() => {{ const el = document.querySelector({json.dumps(selector)}); if (!el) return false;"
        f" el.value = {json.dumps(value)}; el.dispatchEvent(new Event('input', {{bubbles: true}}));"
        " return true; })()"), f"no {selector} in the page"


def wait_rows(page: Any, table: str, check: Callable[[list[dict[str, str]]], bool],
              what: str) -> list[dict[str, str]]:
    deadline = time.monotonic() + WAIT
    while True:
        found: list[dict[str, str]] = page.eval(rows(table))
        if check(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; {table} shows {found}; "
                                 "page log:\n" + "\n".join(page.log()[-40:]))
        time.sleep(0.05)


def publish(url: str, address: str, messages: list[Message]) -> None:
    conn = BlockingConnection(url, timeout=10)
    try:
        sender = conn.create_sender(address)
        for message in messages:
            sender.send(message)
    finally:
        conn.close()


# -- cases ------------------------------------------------------------------------------


def test_gateway_console_live(client: str, upstream: Any, gateway: GatewayProcess,
                              open_page: Callable[[str], Any], name: str) -> None:
    page = open_page(gateway.page_url)
    page.wait_for("window.amqpwsGateway && amqpwsGateway.polls >= 1", timeout=WAIT)
    page.eval("window.sameDocument = true")
    assert page.eval(text("#mode")) == "mode: gateway"
    assert page.eval("document.title") == "Gateway · amqpws-broker"
    about = page.eval(text("#view .stack .kv"))
    assert gateway.amqp_url in about and gateway.ws_url in about, "the listeners are shown"
    assert gateway.upstream_label in about
    assert "guest" not in page.eval("document.body.textContent"), "never the upstream's password"

    # one upstream connection, open, on the upstream broker
    page.wait_for(tile("upstream") + " === '1'", timeout=WAIT)
    (up,) = wait_rows(page, "upstream-table", lambda r: len(r) == 1 and r[0]["state"] == "open",
                      "the upstream connection to open")
    assert up["name"] == gateway.upstream_label
    assert up["container"] == "amqpws-broker", "the upstream's container id"
    assert (up["sessions"], up["links"]) == ("0", "0")
    assert page.eval(text(".view-head .badge.good")) == "ready"
    assert page.eval(tile("clients")) == "0" and page.eval(tile("links")) == "0"
    assert page.eval("document.querySelectorAll('#clients-table tbody tr[data-key]').length") == 0

    # a receiver through the gateway: a routed link and a client connection
    conn = BlockingConnection(gateway.amqp_url, timeout=10, container_id=f"{name}-app")
    try:
        receiver = conn.create_receiver(f"/queues/{name}", credit=1)
        page.wait_for(tile("links") + " === '1'", timeout=WAIT)
        assert page.eval(tile("links", "sub")) == "now · 1 in all"
        assert page.eval(tile("clients")) == "1" and page.eval(tile("clients", "sub")) == "tcp 1"
        (row,) = wait_rows(page, "clients-table", lambda r: len(r) == 1, "the client's row")
        assert row["container"] == f"{name}-app" and row["transport"] == "tcp"
        assert (row["sessions"], row["links"], row["in_flight"]) == ("1", "1", "0")
        assert row["user"].startswith("anonymous")
        wait_rows(page, "upstream-table", lambda r: r[0]["sessions"] == "1" and r[0]["links"] == "1",
                  "the upstream connection to carry the session")
        rtt = page.eval(tile("rtt"))
        assert rtt.endswith(" ms") and float(rtt.removesuffix(" ms")) >= 0, rtt

        # a delivery the application has not settled is in flight
        publish(upstream.amqp_url, f"/queues/{name}", [Message(body="through the gateway")])
        message = receiver.receive(timeout=10)
        assert message.body == "through the gateway"
        page.wait_for(tile("in_flight") + " === '1'", timeout=WAIT)
        wait_rows(page, "clients-table", lambda r: r[0]["in_flight"] == "1", "1 in flight")
        receiver.accept()
        conn.create_sender(f"/queues/{name}")  # its attach carries the accept out too
        page.wait_for(tile("in_flight") + " === '0'", timeout=WAIT)
        page.wait_for(tile("links") + " === '2'", timeout=WAIT)
        assert page.eval(tile("held")) == "0"
    finally:
        conn.close()

    page.wait_for(tile("clients") + " === '0'", timeout=WAIT)
    page.wait_for(tile("links") + " === '0'", timeout=WAIT)
    assert page.eval(tile("links", "sub")) == "now · 2 in all"
    wait_rows(page, "clients-table", lambda r: r == [], "the client's row to go")
    assert page.eval("window.sameDocument === true"), "the page reloaded"
    assert page.eval("performance.getEntriesByType('navigation').length") == 1
    assert page.eval(text("#status-text")) == "live"
    errors = [line for line in page.log() if line.startswith(("error", "pageerror"))]
    assert errors == []


def test_gateway_console_login(client: str, upstream: Any,
                               open_page: Callable[[str], Any]) -> None:
    gw = start_gateway(upstream.port, "--no-anonymous", "--user", "alice:secret")
    try:
        page = open_page(gw.page_url)
        page.wait_for("document.querySelector('#login-form')", timeout=WAIT)
        assert "anonymous access is off" in page.eval(text("#login-form"))

        fill(page, '#login-form input[name="user"]', "alice")
        fill(page, '#login-form input[name="password"]', "wrong")
        page.click('#login-form button[type="submit"]')
        page.wait_for(text("#login-form .notice.error") + ".includes('bad credentials')",
                      timeout=WAIT)

        fill(page, '#login-form input[name="user"]', "alice")
        fill(page, '#login-form input[name="password"]', "secret")
        page.click('#login-form button[type="submit"]')
        page.wait_for(tile("upstream") + " === '1'", timeout=WAIT)
        page.wait_for(text("#who .user") + " === 'alice'", timeout=WAIT)
        assert page.eval("document.querySelector('#login-form')") is None
        assert page.eval(text("#mode")) == "mode: gateway"
    finally:
        code = stop_gateway(gw)
    assert code == 0, f"gateway exited with {code}; log: {gw.log_path}"


# -- screenshots --------------------------------------------------------------------------

# Run with node in conformance/browser (so `playwright-core` resolves) and one
# JSON argument: {url, out, chromium, shots: [[label, width, height]]}.
SHOOT = r"""
import { chromium } from 'playwright-core';

const job = JSON.parse(process.argv[1]);
const browser = await chromium.launch({
  executablePath: job.chromium, headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
});
const report = {};

async function session([label, width, height]) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(job.url);
  await page.waitForFunction('window.amqpwsGateway && amqpwsGateway.polls >= 5', null,
    { timeout: 15000 });
  await page.waitForSelector('#clients-table tbody tr[data-key]');
  await page.screenshot({ path: `${job.out}/gateway-${label}.png` });
  await page.screenshot({ path: `${job.out}/gateway-${label}-full.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
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
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return width, height


def traffic(gateway: GatewayProcess, queue: str, stop: threading.Event,
            started: threading.Event) -> None:
    """About 20 msg/s through the gateway into `queue`, each consumed and accepted."""
    conn = BlockingConnection(gateway.amqp_url, timeout=10, container_id="gateway-traffic")
    try:
        sender = conn.create_sender(f"/queues/{queue}")
        receiver = conn.create_receiver(f"/queues/{queue}", credit=5)
        started.set()
        i = 0
        while not stop.is_set():
            sender.send(Message(body=json.dumps({"order": i, "item": "widget"})))
            receiver.receive(timeout=5)
            receiver.accept()
            i += 1
            time.sleep(0.05)
    finally:
        conn.close()


def test_gateway_console_screenshots(client: str, request: pytest.FixtureRequest,
                                     gateway: GatewayProcess, chromium: Any, node: str,
                                     name: str) -> None:
    """`chromium` (the suite's driver) is not used here; asking for it makes
    this case skip or fail like the others when Chromium is missing."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    stop, started = threading.Event(), threading.Event()
    thread = threading.Thread(target=traffic, args=(gateway, name, stop, started), daemon=True)
    thread.start()
    try:
        assert started.wait(WAIT), "the traffic client did not attach"
        job = {"url": gateway.page_url, "out": str(SHOTS),
               "chromium": _conftest(request.config, HERE).CHROMIUM,
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
        assert png_size(SHOTS / f"gateway-{label}.png") == (width, height)
        assert png_size(SHOTS / f"gateway-{label}-full.png")[0] == width
    assert report["375x812"]["overflow"] == 0, "something is wider than a phone's screen"
