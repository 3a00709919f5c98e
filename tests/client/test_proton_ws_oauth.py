"""proton_ws for brokers behind OAuth2 and wss:// (SAP Event Mesh and the like).

Two stand-ins play the remote side: `TokenEndpoint` (token_endpoint.py), a
real HTTP token endpoint on loopback, and `UpgradeRecorder` here, a
WebSocket server (optionally over TLS, with a `trustme` CA) that records each
upgrade request's headers and then relays the AMQP bytes to the in-process
broker's TCP port, so that every connect runs end to end.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import proton
import pytest
import trio
import trio_websocket
import trustme
from proton import Message
from token_endpoint import Accept, CannedAnswer, TokenEndpoint

from broker.client import proton_ws
from broker.server import ServerInfo

# -- the WebSocket side: record the upgrade, relay to the broker --------------------


@dataclass(frozen=True)
class Upgrade:
    """One upgrade request as the server saw it."""

    path: str
    headers: dict[str, str]
    subprotocols: tuple[str, ...]


class UpgradeRecorder:
    """Records upgrade requests; accepts `amqp` and relays to the broker, or
    refuses every upgrade with `refuse_status` when that is set."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.upgrades: list[Upgrade] = []
        self.refuse_status: int | None = None
        self.port = 0

    async def start(self, nursery: trio.Nursery, ssl_context: ssl.SSLContext | None = None) -> str:
        """Serve on a free loopback port; return the URL to connect to."""
        server: trio_websocket.WebSocketServer = await nursery.start(
            functools.partial(
                trio_websocket.serve_websocket, self._handle, "127.0.0.1", 0, ssl_context
            )
        )
        self.port = server.port
        scheme = "ws" if ssl_context is None else "wss"
        return f"{scheme}://127.0.0.1:{self.port}/protocols/amqp10ws"

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        self.upgrades.append(
            Upgrade(
                path=request.path,
                headers={k.decode(): v.decode("latin-1") for k, v in request.headers},
                subprotocols=tuple(request.proposed_subprotocols),
            )
        )
        if self.refuse_status is not None:
            await request.reject(self.refuse_status, body=b"go away")
            return
        ws = await request.accept(subprotocol="amqp")
        tcp = await trio.open_tcp_stream("127.0.0.1", self.broker_port)

        async def up() -> None:
            try:
                while True:
                    message = await ws.get_message()
                    assert isinstance(message, bytes)  # the binding is binary only
                    await tcp.send_all(message)
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError):
                pass
            await tcp.aclose()

        async def down() -> None:
            try:
                while data := await tcp.receive_some(65536):
                    await ws.send_message(data)
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError):
                pass
            await ws.aclose()

        async with tcp, trio.open_nursery() as nursery:  # tcp closed when cancelled, too
            nursery.start_soon(up)
            nursery.start_soon(down)


@dataclass(frozen=True)
class Tls:
    """A test CA, a server context with its certificate for 127.0.0.1, and
    the CA's certificate as a PEM file."""

    ca: trustme.CA
    server_context: ssl.SSLContext
    ca_file: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    return Tls(ca, server_context, ca_file)


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint() as token_endpoint:
        yield token_endpoint


@pytest.fixture
def recorder(server: ServerInfo) -> UpgradeRecorder:
    assert server.port is not None
    return UpgradeRecorder(server.port)


def q(name: str) -> str:
    return f"/queues/oauth-{name}-{os.urandom(3).hex()}"


async def round_trip(conn: proton_ws.AsyncConnection, name: str) -> None:
    """One message through the broker: proves the relayed connection works."""
    address = q(name)
    sender = await conn.open_sender(address)
    assert (await sender.send(Message(body=name))).accepted
    receiver = await conn.open_receiver(address, credit=1)
    got = await receiver.receive(timeout=5)
    got.accept()
    assert got.message.body == name


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- oauth2_client_credentials against the token endpoint (plain, blocking) ----------


def test_token_json_is_what_the_endpoint_sent(endpoint: TokenEndpoint) -> None:
    """Sanity check of the stand-in itself: a standard RFC 6749 §5.1 answer."""
    request = urllib.request.Request(
        endpoint.url,
        data=b"grant_type=client_credentials",
        headers={"Authorization": basic("app-client", "s3cret!")},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.loads(response.read())
    assert answer == {"access_token": "token-1", "token_type": "bearer", "expires_in": 3600}


def test_client_credentials_in_basic_auth(endpoint: TokenEndpoint) -> None:
    tokens = proton_ws.oauth2_client_credentials(
        endpoint.url, "app-client", "s3cret!", scope="uaa.resource xbem.send"
    )
    token = tokens()
    assert token.token == "token-1"
    assert token.expires_at is not None
    [request] = endpoint.requests
    assert request.path == "/oauth/token"
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.authorization == basic("app-client", "s3cret!")
    assert request.form == {"grant_type": "client_credentials", "scope": "uaa.resource xbem.send"}
    assert "s3cret!" not in repr(tokens.provider) and "s3cret!" not in repr(token)


def test_credentials_with_sap_style_characters(endpoint: TokenEndpoint) -> None:
    """XSUAA client ids hold `!` and `|`, secrets `$` and `=`: Basic auth
    carries them as they are (that is what such servers expect)."""
    endpoint.client_id = "sb-na-1234!t56|xbem!b7"
    endpoint.client_secret = "a$b=c+d/e%f"
    tokens = proton_ws.oauth2_client_credentials(
        endpoint.url, endpoint.client_id, endpoint.client_secret
    )
    assert tokens().token == "token-1"
    assert len(endpoint.requests) == 1


def test_token_cached_until_30_s_before_expiry(endpoint: TokenEndpoint) -> None:
    now = [1_000_000.0]
    tokens = proton_ws.oauth2_client_credentials(
        endpoint.url, "app-client", "s3cret!", clock=lambda: now[0]
    )
    first = tokens()
    assert first.expires_at == 1_000_000.0 + 3600
    now[0] += 3600 - 31
    assert tokens() is first
    assert len(endpoint.requests) == 1
    now[0] += 1  # 30 s left: time to refresh
    assert tokens().token == "token-2"
    assert len(endpoint.requests) == 2


@pytest.mark.parametrize("expires_in", [None, 20, "not a number"])
def test_token_without_usable_lifetime_is_fetched_each_time(
    endpoint: TokenEndpoint, expires_in: int | str | None
) -> None:
    """No expires_in (or one inside the 30 s margin) means nothing to cache on."""
    endpoint.expires_in = expires_in
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
    assert [tokens().token, tokens().token] == ["token-1", "token-2"]


@pytest.mark.parametrize("accept", ["form", "form-400"])
def test_form_field_fallback(endpoint: TokenEndpoint, accept: Accept) -> None:
    """Basic auth refused (401, or 400 invalid_client): once more, with the
    credentials as form fields."""
    endpoint.accept = accept
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
    assert tokens().token == "token-1"
    first, second = endpoint.requests
    assert first.authorization == basic("app-client", "s3cret!")
    assert "client_secret" not in first.form
    assert second.authorization is None
    assert second.form == {
        "grant_type": "client_credentials",
        "client_id": "app-client",
        "client_secret": "s3cret!",
    }
    tokens()
    assert len(endpoint.requests) == 2  # cached: the fallback is not paid again


def test_bad_secret_is_a_clear_error_without_the_secret(endpoint: TokenEndpoint) -> None:
    endpoint.echo_secret_in_errors = True  # a careless server repeats what it got
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "wrong-secret")
    with pytest.raises(proton_ws.TokenRequestError) as caught:
        tokens()
    message = str(caught.value)
    assert endpoint.url in message and "HTTP 401" in message and "invalid_client" in message
    assert "wrong-secret" not in message and "***" in message
    assert caught.value.status == 401 and caught.value.token_url == endpoint.url
    assert len(endpoint.requests) == 2  # Basic, then form fields; then give up


@pytest.mark.parametrize(
    ("canned", "expected"),
    [
        (CannedAnswer(500, b"<html>oops</html>"), "HTTP 500"),
        (CannedAnswer(200, b'{"token_type": "bearer"}'), "without an access_token"),
        (CannedAnswer(200, b"not json"), "without an access_token"),
        (CannedAnswer(400, b'{"error": "invalid_scope"}'), r"HTTP 400 \(invalid_scope\)"),
    ],
)
def test_endpoint_failures(endpoint: TokenEndpoint, canned: CannedAnswer, expected: str) -> None:
    endpoint.canned = canned
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
    with pytest.raises(proton_ws.TokenRequestError, match=expected):
        tokens()
    assert len(endpoint.requests) == 1  # only client-authentication failures retry


def test_redirect_is_not_followed(endpoint: TokenEndpoint) -> None:
    """A redirect would carry the Basic credentials elsewhere: refused."""
    with TokenEndpoint() as elsewhere:
        endpoint.canned = CannedAnswer(307, b"", {"Location": elsewhere.url})
        tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
        with pytest.raises(proton_ws.TokenRequestError, match="HTTP 307"):
            tokens()
        assert elsewhere.requests == []


def test_unreachable_endpoint() -> None:
    with TokenEndpoint() as gone:
        url = gone.url
    tokens = proton_ws.oauth2_client_credentials(url, "app-client", "s3cret!", timeout=2)
    with pytest.raises(proton_ws.TokenRequestError, match="token request to http://127.0.0.1:"):
        tokens()


def test_token_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        proton_ws.oauth2_client_credentials("file:///etc/passwd", "id", "secret")


# -- CachedTokenProvider ---------------------------------------------------------------


def test_cached_provider_with_your_own_provider() -> None:
    now = [100.0]
    calls: list[int] = []

    def provider() -> proton_ws.AccessToken:
        calls.append(1)
        return proton_ws.AccessToken(f"own-{len(calls)}", expires_at=now[0] + 60)

    tokens = proton_ws.CachedTokenProvider(provider, refresh_margin=10, clock=lambda: now[0])
    assert tokens().token == tokens().token == "own-1"
    now[0] += 50
    assert tokens().token == "own-2"
    tokens.invalidate()
    assert tokens().token == "own-3"

    # A bare string has no expiry: asked every time.
    strings = proton_ws.CachedTokenProvider(lambda: f"plain-{len(calls)}")
    assert strings().token == "plain-3" and strings().expires_at is None

    with pytest.raises(TypeError, match="expected a str"):
        proton_ws.CachedTokenProvider(lambda: 42)()  # type: ignore[arg-type, return-value]


def test_concurrent_callers_share_one_fetch(endpoint: TokenEndpoint) -> None:
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(tokens().token)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["token-1"] * 8
    assert len(endpoint.requests) == 1


# -- connect(): the token and headers on the upgrade request -----------------------------


async def test_bearer_token_and_extra_headers_reach_the_upgrade(
    endpoint: TokenEndpoint, recorder: UpgradeRecorder, nursery: trio.Nursery
) -> None:
    url = await recorder.start(nursery)
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
    with trio.fail_after(10):
        async with proton_ws.connect(
            url, token_provider=tokens, headers={"X-Tenant": "acme", "x-qos": "1"}
        ) as conn:
            assert conn.ws.subprotocol == "amqp"
            await round_trip(conn, "bearer")
    [upgrade] = recorder.upgrades
    assert upgrade.path == "/protocols/amqp10ws"
    assert upgrade.subprotocols == ("amqp",)
    assert upgrade.headers["authorization"] == "Bearer token-1"
    assert upgrade.headers["x-tenant"] == "acme" and upgrade.headers["x-qos"] == "1"


async def test_repeated_connects_fetch_the_token_once(
    endpoint: TokenEndpoint, recorder: UpgradeRecorder, nursery: trio.Nursery
) -> None:
    url = await recorder.start(nursery)
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
    with trio.fail_after(10):
        for _ in range(2):
            async with proton_ws.connect(url, token_provider=tokens) as conn:
                await round_trip(conn, "twice")
    assert len(endpoint.requests) == 1
    assert [u.headers["authorization"] for u in recorder.upgrades] == ["Bearer token-1"] * 2


async def test_form_field_fallback_through_connect(
    endpoint: TokenEndpoint, recorder: UpgradeRecorder, nursery: trio.Nursery
) -> None:
    endpoint.accept = "form"
    url = await recorder.start(nursery)
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
    with trio.fail_after(10):
        async with proton_ws.connect(url, token_provider=tokens) as conn:
            await round_trip(conn, "fallback")
    assert len(endpoint.requests) == 2
    assert recorder.upgrades[0].headers["authorization"] == "Bearer token-1"


async def test_bad_secret_fails_before_any_websocket(
    endpoint: TokenEndpoint, recorder: UpgradeRecorder, nursery: trio.Nursery
) -> None:
    url = await recorder.start(nursery)
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "wrong")
    with trio.fail_after(10), pytest.raises(proton_ws.TokenRequestError, match="HTTP 401"):
        async with proton_ws.connect(url, token_provider=tokens):
            pass
    assert recorder.upgrades == []


async def test_refused_upgrade_drops_the_cached_token(
    endpoint: TokenEndpoint, recorder: UpgradeRecorder, nursery: trio.Nursery
) -> None:
    """A 401 on the upgrade says the token was not good: the next connect
    must fetch another one, not offer the same again until it expires."""
    url = await recorder.start(nursery)
    recorder.refuse_status = 401
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
    with trio.fail_after(10):
        with pytest.raises(proton_ws.WebSocketConnectError) as caught:
            async with proton_ws.connect(url, token_provider=tokens):
                pass
        assert caught.value.status_code == 401
        assert "HTTP 401" in str(caught.value) and "token-1" not in str(caught.value)
        assert isinstance(caught.value, proton.ConnectionException)
        recorder.refuse_status = None
        async with proton_ws.connect(url, token_provider=tokens) as conn:
            await round_trip(conn, "after-401")
    assert [u.headers["authorization"] for u in recorder.upgrades] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


async def test_refused_upgrade_other_status(
    recorder: UpgradeRecorder, nursery: trio.Nursery
) -> None:
    url = await recorder.start(nursery)
    recorder.refuse_status = 403
    with trio.fail_after(10), pytest.raises(proton_ws.WebSocketConnectError, match="HTTP 403"):
        async with proton_ws.connect(url, headers={"X-Tenant": "acme"}):
            pass


async def test_plain_providers_run_in_a_worker_thread(
    recorder: UpgradeRecorder, nursery: trio.Nursery
) -> None:
    """A provider may be any blocking callable returning a str or a token
    object; connect runs it off the trio thread."""
    url = await recorder.start(nursery)
    threads: list[threading.Thread] = []

    def as_string() -> str:
        threads.append(threading.current_thread())
        return "plain.jwt.value"

    def as_object() -> proton_ws.AccessToken:
        threads.append(threading.current_thread())
        return proton_ws.AccessToken("object-token", expires_at=None)

    with trio.fail_after(10):
        for provider in (as_string, as_object):
            async with proton_ws.connect(url, token_provider=provider) as conn:
                await round_trip(conn, provider.__name__)
    assert threading.main_thread() not in threads and len(threads) == 2
    assert [u.headers["authorization"] for u in recorder.upgrades] == [
        "Bearer plain.jwt.value",
        "Bearer object-token",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"headers": {"X-Bad": "a\r\nInjected: 1"}}, "line break"),
        ({"headers": {"Bad Name": "x"}}, "not an HTTP header name"),
        (
            {"headers": {"Authorization": "Basic x"}, "token_provider": lambda: "t"},
            "not both",
        ),
        ({"token_provider": lambda: "two\nlines"}, "invalid characters"),
        ({"token_provider": lambda: ""}, "empty token"),
        ({"headers": {"Sec-WebSocket-Protocol": "mqtt"}}, "set by the WebSocket handshake"),
        ({"headers": {"Host": "elsewhere"}}, "set by the WebSocket handshake"),
        ({"ca_file": "ca.pem"}, "wss://"),
    ],
)
async def test_bad_options_refused_before_connecting(
    recorder: UpgradeRecorder, nursery: trio.Nursery, options: dict[str, object], message: str
) -> None:
    url = await recorder.start(nursery)
    with trio.fail_after(5), pytest.raises(ValueError, match=message):
        async with proton_ws.connect(url, **options):  # type: ignore[arg-type]
            pass
    assert recorder.upgrades == []


async def test_a_blocking_provider_does_not_hold_up_cancellation(
    recorder: UpgradeRecorder, nursery: trio.Nursery
) -> None:
    """The provider runs in a worker thread that a cancelled connect leaves
    behind: the caller's deadline holds even while the token endpoint hangs."""
    url = await recorder.start(nursery)
    release = threading.Event()

    def hanging() -> str:
        release.wait(10)
        return "late"

    try:
        with trio.fail_after(5):
            with trio.move_on_after(0.2) as scope:
                async with proton_ws.connect(url, token_provider=hanging):
                    pass
        assert scope.cancelled_caught
        assert recorder.upgrades == []
    finally:
        release.set()


async def test_silent_server_times_out_with_a_clear_error(nursery: trio.Nursery) -> None:
    """A server that takes the TCP connection and never answers the upgrade."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def mute(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    nursery.start_soon(trio.serve_listeners, mute, listeners)
    with trio.fail_after(5):
        with pytest.raises(proton_ws.WebSocketConnectError, match="no WebSocket handshake"):
            async with proton_ws.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=0.3):
                pass
        with pytest.raises(proton_ws.WebSocketConnectError, match="no WebSocket handshake"):
            # A TLS client waits for the server's hello just the same.
            async with proton_ws.connect(f"wss://127.0.0.1:{port}/ws", open_timeout=0.3):
                pass


@pytest.mark.parametrize("url", ["http://127.0.0.1/ws", "ws:///path", "ws://127.0.0.1:port/"])
async def test_bad_urls_refused_before_the_token_is_fetched(url: str) -> None:
    fetched: list[str] = []

    def provider() -> str:
        fetched.append(url)
        return "never-used"

    with pytest.raises(ValueError):
        async with proton_ws.connect(url, token_provider=provider):
            pass
    assert fetched == []


async def test_nothing_listening() -> None:
    with (
        trio.fail_after(10),
        pytest.raises(proton_ws.WebSocketConnectError, match="cannot connect"),
    ):
        async with proton_ws.connect("ws://127.0.0.1:1/ws"):
            pass


# -- wss:// -----------------------------------------------------------------------


async def test_wss_with_ssl_context_or_ca_file(
    tls: Tls, recorder: UpgradeRecorder, nursery: trio.Nursery, endpoint: TokenEndpoint
) -> None:
    url = await recorder.start(nursery, tls.server_context)
    assert url.startswith("wss://")
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
    with trio.fail_after(10):
        async with proton_ws.connect(url, ssl_context=tls.client_context()) as conn:
            await round_trip(conn, "wss-context")
        async with proton_ws.connect(url, ca_file=tls.ca_file, token_provider=tokens) as conn:
            await round_trip(conn, "wss-ca-file")
        async with proton_ws.connect(url, ca_file=str(tls.ca_file)) as conn:
            await round_trip(conn, "wss-ca-file-str")
    assert recorder.upgrades[1].headers["authorization"] == "Bearer token-1"
    assert len(recorder.upgrades) == 3


async def test_wss_untrusted_ca_is_a_clear_error(
    tls: Tls, recorder: UpgradeRecorder, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Quickly, and saying why (trio-websocket alone would wait 60 s and
    report a bare ConnectionTimeout)."""
    url = await recorder.start(nursery, tls.server_context)
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(other_ca)
    with trio.fail_after(5):
        for options in ({"ca_file": other_ca}, {}):  # a wrong CA; the system's store
            with pytest.raises(proton_ws.WebSocketConnectError) as caught:
                async with proton_ws.connect(url, **options):  # type: ignore[arg-type]
                    pass
            message = str(caught.value)
            assert "TLS handshake with 127.0.0.1:" in message
            assert "CERTIFICATE_VERIFY_FAILED" in message
    assert recorder.upgrades == []


async def test_wss_options_conflict(tls: Tls) -> None:
    with pytest.raises(ValueError, match="not both"):
        async with proton_ws.connect(
            "wss://127.0.0.1:1/", ssl_context=tls.client_context(), ca_file=tls.ca_file
        ):
            pass


async def test_blocking_connection_over_wss_with_a_token(
    tls: Tls, recorder: UpgradeRecorder, nursery: trio.Nursery, endpoint: TokenEndpoint
) -> None:
    url = await recorder.start(nursery, tls.server_context)
    tokens = proton_ws.oauth2_client_credentials(endpoint.url, "app-client", "s3cret!")
    address = q("blocking")

    def work() -> str:
        with proton_ws.BlockingConnection(
            url, ca_file=tls.ca_file, token_provider=tokens, headers={"X-Tenant": "acme"}, timeout=5
        ) as conn:
            conn.create_sender(address).send(Message(body="blocking-wss"))
            got = conn.create_receiver(address, credit=1).receive()
            got.accept()
            return str(got.message.body)

    def untrusted() -> None:
        proton_ws.BlockingConnection(url, timeout=5)

    with trio.fail_after(20):
        assert await trio.to_thread.run_sync(work) == "blocking-wss"
        with pytest.raises(proton_ws.WebSocketConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await trio.to_thread.run_sync(untrusted)
    [upgrade] = recorder.upgrades
    assert upgrade.headers["authorization"] == "Bearer token-1"
    assert upgrade.headers["x-tenant"] == "acme"


# -- end to end: our own broker over wss, a token from an OAuth2 endpoint ------------------


async def test_wss_with_an_oauth2_token_against_the_broker(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    """The whole SAP-style path on our broker: client credentials → JWT →
    `Authorization: Bearer` on a wss upgrade → SASL ANONYMOUS as the token's user."""
    import time

    import jwt

    from broker.config import Config
    from broker.server import serve

    secret = "an-end-to-end-secret-of-32-bytes!!"
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = Config(port=None, ws_port=None, tls_port=None, wss_port=0,
                    tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem"),
                    jwt_secret=secret, jwt_audience="amqpws", allow_anonymous=False)
    info: ServerInfo = await nursery.start(functools.partial(serve, config,
                                                             shutdown_grace=1.0))
    claims = {"sub": "svc-orders", "aud": "amqpws", "exp": int(time.time()) + 600,
              "scope": "amqpws.configure:*/* amqpws.write:*/* amqpws.read:*/*"}
    token = jwt.encode(claims, secret, algorithm="HS256")
    with TokenEndpoint() as endpoint:
        endpoint.canned = CannedAnswer(200, json.dumps(
            {"access_token": token, "token_type": "bearer", "expires_in": 600}).encode(),
            {"Content-Type": "application/json"})
        tokens = proton_ws.oauth2_client_credentials(endpoint.url, endpoint.client_id,
                                                     endpoint.client_secret)
        with trio.fail_after(10):
            async with proton_ws.connect(info.wss_url, token_provider=tokens,  # type: ignore[arg-type]
                                         ca_file=tmp_path / "ca.pem") as conn:
                sender = await conn.open_sender("/queues/oauth-e2e")
                assert (await sender.send(Message(body="over wss"))).accepted
                receiver = await conn.open_receiver("/queues/oauth-e2e", credit=1)
                got = await receiver.receive(timeout=5)
                assert got.message.body == "over wss"
                got.accept()
                users = [c["user"] for c in info.container.list_connections()]  # type: ignore[attr-defined]
                assert users == ["svc-orders"]
    info.shutdown()
