"""Headless Chromium over wss:// (client `chromium-wss`): rhea's browser build
in a page served from 127.0.0.1 (`page/security.html`), with a token as the
SASL PLAIN password, and the broker's Origin check.

Chromium trusts the test broker's certificate through
`--ignore-certificate-errors-spki-list=<sha256 of its public key>`: one
Chromium for this module, launched with that switch (driver.mjs takes extra
switches from `CHROMIUM_EXTRA_ARGS`).  The switch pins exactly that key;
every other certificate is verified as usual, which `untrusted_cert` shows
with the suite's unpinned Chromium.

The cases run against conftest's `secure_broker`, which asks amqps clients for
certificates (`--tls-verify-client optional`) but not wss ones: headless
Chromium cancels a wss handshake in which the server asks for a client
certificate (it has no way to pick one), which is why wss has its own
`--wss-verify-client`, off by default.

- `jwt_password`: PLAIN with a JWT as the password (a page cannot set the
  upgrade's `Authorization` header), 3 messages out and back over wss.
- `jwt_permissions`: the token's scopes are the connection's permissions.
- `untrusted_cert`: the session's Chromium, without the pin, cannot open the
  same wss URL (ERR_CERT_AUTHORITY_INVALID).
- `origin_refused`: a broker allowing only `https://app.example` answers the
  upgrade from our 127.0.0.1 page with 403 (the page sees a failed
  WebSocket, close code 1006; the broker logs the origin).
- `origin_allowed`: with the page's origin in `--allowed-origin` it connects.
- `bunny_over_wss`: the bunny example (`examples/bunny/serve.py --tls-cert`)
  connects its tabs with wss://, and a stroke drawn in one shows in the other.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from secure import JWT_AUDIENCE, JWT_SECRET, make_token
from test_bunny import RED, assert_shows, at, draw, open_bunny

pytestmark = pytest.mark.parametrize("client", ["chromium-wss"])

HERE = Path(__file__).resolve().parent
CONFORMANCE = HERE.parent
STEP = 15  # seconds for one call into the page (the page's own waits are 5 s)


def _conftest(config: pytest.Config, directory: Path) -> Any:
    """The conftest module of `directory` as pytest loaded it (both are
    called `conftest`, so neither can simply be imported here)."""
    module = config.pluginmanager.get_plugin(str(directory / "conftest.py"))
    assert module is not None, f"{directory}/conftest.py is not loaded"
    return module


def spki_sha256(cert_file: Path) -> str:
    """base64 of the SHA-256 of the leaf certificate's SubjectPublicKeyInfo,
    the form `--ignore-certificate-errors-spki-list` takes."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    leaf = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pinned_chromium(request: pytest.FixtureRequest, node: str, pki: Any) -> Iterator[Any]:
    """A Chromium of its own that accepts the test broker's certificate key."""
    browser = _conftest(request.config, HERE)
    if not (HERE / "node_modules" / "playwright-core" / "package.json").exists():
        browser.missing("playwright-core is not installed (conformance/browser/node_modules)")
    if not os.access(browser.CHROMIUM, os.X_OK):
        browser.missing(f"Chromium not found at {browser.CHROMIUM}")
    log_path = Path(tempfile.mkdtemp(prefix="amqpws-chromium-wss-")) / "driver.log"
    pin = f"--ignore-certificate-errors-spki-list={spki_sha256(pki.cert_file)}"
    driver = browser.Driver(node, log_path, extra_args=[pin])
    yield driver
    driver.close()


@pytest.fixture
def secure_page(request: pytest.FixtureRequest, pinned_chromium: Any,
                page_server: str) -> Iterator[Any]:
    """A tab of the pinned Chromium with page/security.html loaded."""
    browser = _conftest(request.config, HERE)
    page = browser.Page(pinned_chromium, f"{page_server}/security.html")
    request.node.browser_pages = [page]  # their console goes into a failure's report
    page.wait_for("window.security !== undefined && "
                  "document.getElementById('status').textContent === 'security ready'")
    yield page
    try:
        page.close()
    except browser.DriverError:
        pass


def _tls_token_args(pki: Any) -> list[str]:
    """wss on the test certificate (no amqps), HS256 tokens; no client certificates."""
    return ["--tls-cert", str(pki.cert_file), "--tls-key", str(pki.key_file),
            "--tls-port", "off", "--wss-port", "0",
            "--jwt-secret", JWT_SECRET, "--jwt-audience", JWT_AUDIENCE]


@pytest.fixture
def origin_broker(request: pytest.FixtureRequest, pki: Any) -> Iterator[Callable[..., Any]]:
    """Starts brokers with wss on the test certificate, tokens, and the given
    `--allowed-origin`s (conftest's start_broker); stopped after the test."""
    suite = _conftest(request.config, CONFORMANCE)
    started: list[tuple[Any, Any]] = []

    def start(*origins: str) -> Any:
        args = _tls_token_args(pki)
        for origin in origins:
            args += ["--allowed-origin", origin]
        proc, info = suite.start_broker(*args)
        started.append((proc, info))
        return info

    yield start
    for proc, info in started:
        code = suite.stop_broker(proc)
        assert code == 0, f"broker exited with {code}; log: {info.log_path}"


def wait_for_log(broker: Any, text: str, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in broker.log_path.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False


def roundtrip(page: Any, url: str, tag: str, count: int = 3, *, token: str | None = None,
              address: str | None = None) -> dict[str, Any]:
    return page.call("security.roundtrip", {
        "url": url, "username": "browser", "password": token or make_token(),
        "address": address or f"/queues/conf-{tag}", "count": count, "tag": tag,
    }, timeout=STEP)


def assert_round_trip(result: dict[str, Any], tag: str, count: int = 3) -> None:
    assert result["mechanism"] == "PLAIN", result
    assert result["outcomes"] == ["accepted"] * count, result
    got = result["received"]
    assert [m["message_id"] for m in got] == [f"{tag}-{i}" for i in range(count)]
    assert [m["body"] for m in got] == [f"{tag} body {i}" for i in range(count)]
    assert [m["application_properties"] for m in got] == [{"i": i} for i in range(count)]
    assert result["errors"] == [], result


def raw_websocket(page: Any, url: str) -> str:
    """The browser's own WebSocket to `url`: 'open' or 'closed <code>'."""
    return page.eval("new Promise((resolve) => {"
                     f"  const ws = new WebSocket({json.dumps(url)}, ['amqp']);"
                     "  ws.onopen = () => { resolve('open'); ws.close(); };"
                     "  ws.onclose = (e) => resolve('closed ' + e.code);"
                     "})", timeout=STEP)


# -- cases -------------------------------------------------------------------------------------


def test_jwt_password(client, secure_broker, secure_page, tag):
    assert secure_broker.wss_url.startswith("wss://127.0.0.1:")
    assert_round_trip(roundtrip(secure_page, secure_broker.wss_url, tag), tag)


def test_jwt_permissions(client, secure_broker, secure_page, tag):
    """A token with scopes on `conf-tok-*` only: such a queue works, another is
    refused with `amqp:unauthorized-access` naming the token's user."""
    user = f"tok-{tag[-6:]}"
    scope = " ".join(f"{JWT_AUDIENCE}.{op}:*/conf-tok-*" for op in ("configure", "write", "read"))
    token = make_token(user, scope=scope)
    ok = roundtrip(secure_page, secure_broker.wss_url, tag, token=token,
                   address=f"/queues/conf-tok-{tag}")
    assert_round_trip(ok, tag)
    other = f"conf-other-{tag}"
    result = secure_page.call("security.attach", {
        "url": secure_broker.wss_url, "username": "browser", "password": token,
        "addresses": [f"/queues/{other}", f"/queues/conf-tok-{tag}"],
    }, timeout=STEP)
    refused, allowed = result["outcomes"]
    assert refused["attached"] is False, refused
    assert refused["error"]["condition"] == "amqp:unauthorized-access", refused
    assert f"queue '{other}'" in refused["error"]["description"], refused
    assert f"refused for user '{user}'" in refused["error"]["description"], refused
    assert allowed == {"attached": True, "events": ["open"], "error": None}, allowed
    assert result["open_after"] is True


def test_untrusted_cert(client, secure_broker, harness):
    """The suite's Chromium has no pin: the test CA is not trusted, so the
    wss handshake fails (which the pinned Chromium's success is measured against)."""
    connect = harness.call("harness.connect", {"url": secure_broker.wss_url, "timeout": 5000},
                           timeout=STEP)
    assert connect["ok"] is False, connect
    assert raw_websocket(harness, secure_broker.wss_url) == "closed 1006"
    assert any("ERR_CERT_AUTHORITY_INVALID" in line for line in harness.log()), harness.log()


def test_origin_refused(client, origin_broker, secure_page, page_server, tag):
    """Only https://app.example may open WebSockets: our page's upgrade gets
    403, which a page sees only as a failed WebSocket (close code 1006)."""
    broker = origin_broker("https://app.example")
    probe = secure_page.call("security.probe", {"url": broker.wss_url}, timeout=STEP)
    assert probe == {"opened": False, "protocol": None, "error": True, "close_code": 1006}, probe
    connect = secure_page.call("harness.connect", {"url": broker.wss_url, "timeout": 5000},
                               timeout=STEP)
    assert connect["ok"] is False, connect
    assert wait_for_log(broker, f"origin {page_server!r} is not allowed"), \
        broker.log_path.read_text()[-2000:]
    # Chromium says why in the console.
    assert any("403" in line for line in secure_page.log()), secure_page.log()


def test_origin_allowed(client, origin_broker, secure_page, page_server, tag):
    """The page's own origin added to the list: the upgrade succeeds (the broker
    picks `amqp`) and rhea sends and receives with a token."""
    broker = origin_broker("https://app.example", page_server)
    probe = secure_page.call("security.probe", {"url": broker.wss_url}, timeout=STEP)
    assert probe == {"opened": True, "protocol": "amqp", "error": False, "close_code": 1000}, probe
    assert_round_trip(roundtrip(secure_page, broker.wss_url, tag), tag)
    assert not wait_for_log(broker, "is not allowed", timeout=0.1)


# -- the bunny example over wss (examples/bunny/serve.py --tls-cert) ---------------------------


@pytest.fixture(scope="module")
def bunny_wss_server(request: pytest.FixtureRequest, node: str, pki: Any) -> Iterator[Any]:
    """`examples/bunny/serve.py --tls-cert --tls-key` on the test certificate and
    free ports, as a user would run it; yields its ready file's URLs and the
    path of its output (the broker's log, at info)."""
    browser = _conftest(request.config, HERE)
    with browser.run_example("bunny", "--tls-port=0", "--wss-port=0",
                             "--tls-cert", str(pki.cert_file), "--tls-key",
                             str(pki.key_file), log_level="info") as urls:
        yield urls


@pytest.fixture
def open_pinned_page(request: pytest.FixtureRequest, pinned_chromium: Any) -> Iterator[Any]:
    """open_page (conftest) for the pinned Chromium: a factory url -> Page."""
    browser = _conftest(request.config, HERE)
    pages: list[Any] = []
    request.node.browser_pages = pages

    def _open(url: str) -> Any:
        pages.append(browser.Page(pinned_chromium, url))
        return pages[-1]

    yield _open
    for page in pages:
        try:
            page.close()
        except browser.DriverError:
            pass


def test_bunny_over_wss(client, bunny_wss_server, open_pinned_page):
    """The bunny page, served over http, finds `wss_port` in config.json and
    connects with wss:// (the pinned Chromium trusts the test certificate); a
    stroke drawn in tab A shows in tab B, and the broker saw both tabs on wss."""
    wss_url = bunny_wss_server["wss_url"]
    assert wss_url.startswith("wss://127.0.0.1:"), bunny_wss_server
    a = open_bunny(open_pinned_page, bunny_wss_server["http_url"])
    b = open_bunny(open_pinned_page, bunny_wss_server["http_url"])
    for page in (a, b):
        assert page.eval("bunny.url") == wss_url

    zigzag = [(0.10, 0.20), (0.20, 0.35), (0.30, 0.20), (0.40, 0.35)]
    stroke, points = draw(a, RED, zigzag)
    assert_shows(b, stroke, points, RED, at(*zigzag[1]))
    for page in (a, b):
        assert page.eval("bunny.errors") == []

    log = bunny_wss_server["log_path"].read_text(errors="replace")
    for page in (a, b):
        assert f"(wss) opened by 'bunny-{page.eval('bunny.tab')}'" in log, log[-3000:]
    assert "(ws) opened by" not in log, log[-3000:]
