"""SAP's Node client `@sap/xb-msg-amqp-v100` 0.9.58 (`sap-xb-msg`, the client of
SAP Event Mesh) against our broker over WebSocket (`node/sap_cases.js`).

- `ws_sasl_plain`: `ws://` with SASL PLAIN guest/guest on the suite's broker.
- `wss_oauth2`: `wss://` with TLS (a trustme CA; verification stays on) and
  the client's OAuth2 client-credentials grant against a token endpoint this
  module runs; the broker checks the Bearer JWT at the WebSocket upgrade.
- `wss_oauth2_bad_token`: the same endpoint hands out a JWT signed with the
  wrong secret: the broker answers the upgrade with 401, the client reports
  it, and the broker keeps serving others.

Cases (b) and (c) run against conftest's `secure_broker` (wss on the test CA's
certificate, HS256 tokens for audience `amqpws`).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from clients import IN_CI, CaseError
from secure import JWT_AUDIENCE, JWT_SECRET

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_SCRIPT = HERE / "node" / "sap_cases.js"
SAP_PACKAGE = HERE / "node_modules" / "@sap" / "xb-msg-amqp-v100" / "package.json"
NODE_TIMEOUT = 20.0

SAP = pytest.param("sap-xb-msg", id="sap-xb-msg")

WRONG_SECRET = "not-the-broker-secret-0123456789abcdef"
OAUTH_CLIENT, OAUTH_SECRET = "sap-client", "sap-secret"
SCOPES = "amqpws.configure:*/* amqpws.write:*/* amqpws.read:*/*"


# -- the client ---------------------------------------------------------------------------


def require_sap() -> None:
    """Skip (locally) or fail (in CI) when node or the SAP package is missing."""
    if shutil.which("node") is None:
        reason = "node is not installed (apt-get install nodejs npm)"
    elif not SAP_PACKAGE.exists():
        reason = ("npm package @sap/xb-msg-amqp-v100 missing in conformance/node_modules; "
                  "run `make conformance`")
    else:
        return
    if IN_CI:
        pytest.fail(f"sap-xb-msg: {reason}", pytrace=False)
    pytest.skip(f"sap-xb-msg: {reason}")


def run_sap(case: str, **params: Any) -> Any:
    """One `node sap_cases.js` run; its JSON result, or CaseError."""
    require_sap()
    params.setdefault("timeout", NODE_TIMEOUT)
    spec = {"case": case, "params": params}
    try:
        proc = subprocess.run(
            ["node", str(NODE_SCRIPT), json.dumps(spec)],
            capture_output=True, text=True, timeout=NODE_TIMEOUT + 10, cwd=HERE, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CaseError(f"node case {case} hung: {exc.stderr!r}") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise CaseError(
            f"node case {case} printed no result (exit {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    answer = json.loads(lines[-1])
    if not answer.get("ok"):
        raise CaseError(f"sap-xb-msg {case}: {answer.get('error')}")
    return answer["result"]


def assert_round_trip(result: dict[str, Any], tag: str, count: int) -> None:
    """Every message accepted by the broker, then received intact and in order."""
    assert result["outcomes"] == ["accepted"] * count
    got = result["messages"]
    assert [m["message_id"] for m in got] == [f"{tag}-{i}" for i in range(count)]
    assert [m["body"] for m in got] == [f"{tag} body {i}" for i in range(count)]
    assert [m["application_properties"] for m in got] == [
        {"i": i, "tag": tag} for i in range(count)
    ]
    assert {m["content_type"] for m in got} == {"text/plain"}
    assert not any(m["settled"] for m in got), "at-least-once: deliveries arrive unsettled"
    assert result["errors"] == []


# -- (a) ws:// with SASL PLAIN ---------------------------------------------------------------


@pytest.mark.parametrize("client", [SAP])
def test_ws_sasl_plain(client, broker, tag):
    """The client's default WebSocket setup (path from the URI, subprotocol
    `amqp`) with PLAIN guest/guest; `queue:NAME` is one opaque address for
    sender and receiver alike."""
    result = run_sap("send_receive", uri=broker.ws_url, address=f"queue:conf-sap-{tag}",
                     count=3, tag=tag, sasl={"user": "guest", "password": "guest"})
    # Its own list is PLAIN ANONYMOUS EXTERNAL; we offer PLAIN and ANONYMOUS.
    assert result["mechanism"] == "PLAIN"
    assert_round_trip(result, tag, 3)


# -- a token endpoint and a TLS/JWT broker -----------------------------------------------------


@dataclass
class TokenEndpoint:
    """An OAuth2 token endpoint for the client-credentials grant on loopback:
    HTTP Basic client credentials in, a JWT signed with `signing_secret` out."""

    signing_secret: str
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)

    def token(self) -> str:
        import jwt

        claims = {"sub": OAUTH_CLIENT, "aud": JWT_AUDIENCE, "exp": int(time.time()) + 300,
                  "scope": SCOPES}
        return jwt.encode(claims, self.signing_secret, algorithm="HS256")


@pytest.fixture
def token_endpoint() -> Iterator[Callable[[str], TokenEndpoint]]:
    """Starts token endpoints on 127.0.0.1:0 (each signing with its own secret)."""
    servers: list[ThreadingHTTPServer] = []

    def start(signing_secret: str) -> TokenEndpoint:
        endpoint = TokenEndpoint(signing_secret)
        expected = "Basic " + base64.b64encode(f"{OAUTH_CLIENT}:{OAUTH_SECRET}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name for the handler
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                auth = self.headers.get("Authorization")
                endpoint.requests.append({"path": self.path, "authorization": auth,
                                          "content_type": self.headers.get("Content-Type"),
                                          "form": parse_qs(body)})
                if auth != expected:
                    self._answer(401, {"error": "invalid_client"})
                elif parse_qs(body).get("grant_type") != ["client_credentials"]:
                    self._answer(400, {"error": "unsupported_grant_type"})
                else:
                    self._answer(200, {"access_token": endpoint.token(), "token_type": "bearer",
                                       "expires_in": 300})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest's output clean

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/oauth/token"
        return endpoint

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _oa2(endpoint: TokenEndpoint) -> dict[str, str]:
    return {"endpoint": endpoint.url, "client": OAUTH_CLIENT, "secret": OAUTH_SECRET}


# -- (b) wss:// with an OAuth2 client-credentials token -----------------------------------------

@pytest.mark.parametrize("client", [SAP])
def test_wss_oauth2(client, secure_broker, pki, token_endpoint, tag):
    """Event Mesh's setup: the client fetches a token (client credentials in
    HTTP Basic), sends it as `Authorization: Bearer` on the upgrade, then
    runs SASL with its defaults inside the TLS WebSocket."""
    endpoint = token_endpoint(JWT_SECRET)
    result = run_sap("send_receive", uri=secure_broker.wss_url, ca_file=str(pki.ca_file),
                     oa2=_oa2(endpoint), address=f"queue:conf-sap-{tag}", count=3, tag=tag)
    assert len(endpoint.requests) == 1, "one grant per connect"
    grant = endpoint.requests[0]
    assert grant["content_type"] == "application/x-www-form-urlencoded"
    assert grant["form"] == {"grant_type": ["client_credentials"]}
    # After a bearer upgrade the broker offers only ANONYMOUS (meaning the
    # token's user); the client's default list PLAIN ANONYMOUS EXTERNAL would
    # pick PLAIN guest/guest if it were offered.
    assert result["mechanism"] == "ANONYMOUS"
    assert_round_trip(result, tag, 3)


# -- (c) the same with a token the broker did not sign ------------------------------------------


@pytest.mark.parametrize("client", [SAP])
def test_wss_oauth2_bad_token(client, secure_broker, pki, token_endpoint, tag):
    """A JWT signed with another secret is refused at the upgrade (HTTP 401):
    the client reports the failed upgrade; the broker stays up and serves the
    next client with a good token."""
    bad = token_endpoint(WRONG_SECRET)
    result = run_sap("connect_refused", uri=secure_broker.wss_url, ca_file=str(pki.ca_file),
                     oa2=_oa2(bad))
    assert result["refused"] is True, "a token with a bad signature must be refused"
    assert "upgrade request failed, code 401" in result["error"], result
    assert len(bad.requests) == 1

    os.kill(secure_broker.pid, 0)  # the broker survives a refused upgrade
    good = token_endpoint(JWT_SECRET)
    after = run_sap("send_receive", uri=secure_broker.wss_url, ca_file=str(pki.ca_file),
                    oa2=_oa2(good), address=f"queue:conf-sap-{tag}", count=1, tag=tag)
    assert_round_trip(after, tag, 1)

