"""rhea in Node against conftest's `secure_broker`: TLS with verification on,
tokens, client certificates and permissions (`node/security_cases.js`).

Clients: `rhea-wss` (rhea's `websocket_connect` over ws's WebSocket, `ca` in
the ws options) and `rhea-tls` (rhea's own `tls` transport, `ca` in its
connection options).  The CA is the test PKI's (`pki.ca_file`); nothing here
turns certificate verification off, except that `wrong_ca` trusts another CA
and must fail.

- `plain_roundtrip`: SASL PLAIN guest/guest, 3 messages out and back.
- `jwt_password`: a JWT as the PLAIN password (any user name), the way a
  browser authenticates with a token (it cannot set upgrade headers).
- `jwt_password_scopes`: the connection is the token's user with the token's
  scopes as permissions, whatever user name PLAIN carried.
- `permission_refused`: bob may use only `conf-bob-*`; rhea reports the
  refused attaches as `amqp:unauthorized-access` naming bob, and an allowed
  queue then works on the same connection.
- `sasl_external`: a client certificate for CN bob, SASL EXTERNAL; the
  connection is bob (checked by his permissions).
  Over wss the same, against a broker asked for client certificates on wss
  (`--wss-verify-client optional`; off by default, as browsers cancel such handshakes).
- `client_cert_unknown_ca`: a client certificate from another CA ends the
  TLS handshake.
- `wrong_ca`: trusting a different CA fails with a certificate error before
  any AMQP is spoken; the broker keeps serving.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clients import IN_CI, CaseError
from secure import JWT_AUDIENCE, SECURE_CONFIG, make_token

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "node" / "security_cases.js"
NODE_MODULES = HERE / "node_modules"
CASE_TIMEOUT = 10.0  # seconds, enforced inside the node process too

WSS = pytest.param("rhea-wss", id="rhea-wss")
TLS = pytest.param("rhea-tls", id="rhea-tls")
BOTH = [WSS, TLS]

# Node's names for "the server's certificate does not chain to a CA I trust".
CERT_ERRORS = {
    "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    "SELF_SIGNED_CERT_IN_CHAIN",
    "DEPTH_ZERO_SELF_SIGNED_CERT",
    "CERT_SIGNATURE_FAILURE",
}


# -- running a case -----------------------------------------------------------------------


def require_rhea(client: str) -> None:
    """Skip (locally) or fail (in CI) when node or the npm packages are missing."""
    if shutil.which("node") is None:
        reason = "node is not installed (apt-get install nodejs npm)"
    else:
        reason = next((f"npm package {p} missing in conformance/node_modules; run "
                       "`make conformance`" for p in ("rhea", "ws")
                       if not (NODE_MODULES / p / "package.json").exists()), None)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{client}: {reason}", pytrace=False)
    pytest.skip(f"{client}: {reason}")


def endpoint(client: str, broker: Any, ca_file: Path | None) -> dict[str, Any]:
    """Where and how `client` connects: wss URL or amqps host/port, with the CA."""
    transport = client.removeprefix("rhea-")
    params: dict[str, Any] = {"transport": transport}
    if transport == "wss":
        params["url"] = broker.wss_url
    elif transport == "tls":
        params.update(host=broker.host, port=broker.tls_port)
    else:
        params["url"] = broker.ws_url
    if ca_file is not None:
        params["ca_file"] = str(ca_file)
    return params


def run_security(client: str, case: str, **params: Any) -> Any:
    """One `node security_cases.js` run; its JSON result, or CaseError."""
    require_rhea(client)
    params.setdefault("timeout", CASE_TIMEOUT)
    spec = {"case": case, "params": params}
    try:
        proc = subprocess.run(
            ["node", str(NODE_SCRIPT), json.dumps(spec)],
            capture_output=True, text=True, timeout=CASE_TIMEOUT + 10, cwd=HERE, check=False,
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
        raise CaseError(f"{client} {case}: {answer.get('error')}")
    return answer["result"]


def assert_round_trip(result: dict[str, Any], tag: str, count: int) -> None:
    assert result["outcomes"] == ["accepted"] * count
    assert result["messages"] == [
        {"message_id": f"{tag}-{i}", "body": f"{tag} body {i}", "i": i} for i in range(count)
    ]


def assert_verified_tls(client: str, result: dict[str, Any]) -> None:
    """Over amqps rhea's socket is Node's TLSSocket: it verified our chain."""
    if client == "rhea-tls":
        assert result["tls"]["authorized"] is True, result["tls"]
        assert result["tls"]["protocol"] in ("TLSv1.2", "TLSv1.3"), result["tls"]


def assert_refused_for(refusal: dict[str, Any], user: str, queue: str) -> None:
    assert refusal["attached"] is False, refusal
    error = refusal["error"]
    assert error is not None, refusal
    assert error["condition"] == "amqp:unauthorized-access", refusal
    assert f"user '{user}'" in error["description"], refusal
    assert f"queue '{queue}'" in error["description"], refusal


# -- (a), (b) SASL PLAIN over wss and amqps ------------------------------------------------


@pytest.mark.parametrize("client", BOTH)
def test_plain_roundtrip(client, secure_broker, pki, tag):
    result = run_security(client, "send_receive", **endpoint(client, secure_broker, pki.ca_file),
                          username="guest", password="guest",
                          queue=f"/queues/conf-{tag}", count=3, tag=tag)
    # Without a client certificate: no EXTERNAL; PLAIN for users and tokens.
    assert result["offered_mechanisms"][:1] == ["PLAIN"], result
    assert "EXTERNAL" not in result["offered_mechanisms"]
    assert result["mechanism"] == "PLAIN"
    assert_verified_tls(client, result)
    assert_round_trip(result, tag, 3)


# -- (c) a token as the PLAIN password -------------------------------------------------------


@pytest.mark.parametrize("client", BOTH)
def test_jwt_password(client, secure_broker, pki, tag):
    """RabbitMQ's way, and the only one a browser has: any user name, the
    token as the password."""
    result = run_security(client, "send_receive", **endpoint(client, secure_broker, pki.ca_file),
                          username="anyone", password=make_token(),
                          queue=f"/queues/conf-{tag}", count=3, tag=tag)
    assert result["mechanism"] == "PLAIN"
    assert_verified_tls(client, result)
    assert_round_trip(result, tag, 3)


@pytest.mark.parametrize("client", [WSS])
def test_jwt_password_scopes(client, secure_broker, pki, tag):
    """The token decides who the connection is: PLAIN says `guest`, the token
    is `tok-...` with scopes on `conf-tok-*` only, so another queue is refused
    to the token's user and a `conf-tok-` queue works."""
    user = f"tok-{tag[-6:]}"
    scope = " ".join(f"{JWT_AUDIENCE}.{op}:*/conf-tok-*" for op in ("configure", "write", "read"))
    other = f"conf-other-{tag}"
    result = run_security(client, "permissions", **endpoint(client, secure_broker, pki.ca_file),
                          username="guest", password=make_token(user, scope=scope),
                          refused=[["receiver", f"/queues/{other}"]],
                          allowed=f"/queues/conf-tok-{tag}", count=3, tag=tag)
    assert_refused_for(result["refused"][0], user, other)
    assert result["open_after_refusals"] is True
    assert_round_trip(result, tag, 3)


# -- (d) permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize("client", [WSS])
def test_permission_refused(client, secure_broker, pki, tag):
    """bob may use only `conf-bob-*`: a receiver and a sender on another queue
    are refused (rhea: the attach, then the detach with the error), the
    connection stays open, and `conf-bob-<tag>` works on it."""
    other = f"conf-other-{tag}"
    result = run_security(client, "permissions", **endpoint(client, secure_broker, pki.ca_file),
                          username="bob", password="bob",
                          refused=[["receiver", f"/queues/{other}"],
                                   ["sender", f"/queues/{other}"]],
                          allowed=f"/queues/conf-bob-{tag}", count=3, tag=tag)
    receiver, sender = result["refused"]
    assert_refused_for(receiver, "bob", other)
    assert_refused_for(sender, "bob", other)
    # §2.6.3: the refusal is an attach with a null terminus, then the detach.
    assert receiver["events"] == ["open", "error", "close"], receiver
    assert result["open_after_refusals"] is True
    assert_round_trip(result, tag, 3)


# -- (e) a client certificate: SASL EXTERNAL -------------------------------------------------


@pytest.fixture(scope="module")
def wss_certificates_broker(request, pki):
    """`secure_broker` with client certificates asked for on wss too
    (`--wss-verify-client optional`, off by default for the browsers' sake)."""
    suite = request.config.pluginmanager.get_plugin(str(HERE / "conftest.py"))
    start_broker, stop_broker = suite.start_broker, suite.stop_broker
    config = pki.workdir / "wss-certificates.toml"
    config.write_text(SECURE_CONFIG)
    proc, info = start_broker(
        "--config", str(config), "--tls-cert", str(pki.cert_file),
        "--tls-key", str(pki.key_file), "--tls-ca", str(pki.ca_file),
        "--tls-verify-client", "optional", "--wss-verify-client", "optional",
        "--tls-port", "0", "--wss-port", "0")
    yield info
    assert stop_broker(proc) == 0, f"broker log: {info.log_path}"


@pytest.mark.parametrize("client", [TLS, WSS])
def test_sasl_external(client, secure_broker, wss_certificates_broker, pki, tag):
    """A certificate for CN bob from the broker's client CA, and SASL EXTERNAL
    only (rhea over amqps: `enable_sasl_external` and no user name; over wss
    rhea turns EXTERNAL on only when asked through `sasl_mechanisms`).  The
    connection is bob: his queue works, another is refused to bob."""
    cert, key = pki.client_cert("bob")
    other = f"conf-other-{tag}"
    broker = wss_certificates_broker if client == "rhea-wss" else secure_broker
    result = run_security(client, "permissions", **endpoint(client, broker, pki.ca_file),
                          cert_file=str(cert), key_file=str(key), external=True,
                          refused=[["receiver", f"/queues/{other}"]],
                          allowed=f"/queues/conf-bob-{tag}", count=3, tag=tag)
    assert result["offered_mechanisms"][0] == "EXTERNAL", result
    assert result["mechanism"] == "EXTERNAL"
    assert_verified_tls(client, result)
    assert_refused_for(result["refused"][0], "bob", other)
    assert_round_trip(result, tag, 3)


@pytest.mark.parametrize("client", [TLS])
def test_client_cert_unknown_ca(client, secure_broker, pki, tag):
    """A client certificate that does not chain to --tls-ca: the broker ends
    the TLS handshake (--tls-verify-client optional still verifies what is
    presented), so SASL never starts, and it keeps serving.  (Its log line is
    rate-limited per peer host, so other tests' refusals may have used it up.)"""
    import trustme

    cert, key = pki.client_cert(f"stranger-{tag[-6:]}", ca=trustme.CA())
    result = run_security(client, "connect_refused", **endpoint(client, secure_broker, pki.ca_file),
                          cert_file=str(cert), key_file=str(key), external=True)
    assert result["refused"] is True, result
    assert result["sasl_started"] is False, result
    os.kill(secure_broker.pid, 0)


# -- (f) a CA that did not sign the broker's certificate -------------------------------------


@pytest.mark.parametrize("client", BOTH)
def test_wrong_ca(client, secure_broker, tmp_path, tag):
    """Verification on, trusting only another CA: the TLS handshake fails
    with a certificate error and SASL never starts; the broker keeps serving."""
    import trustme

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    result = run_security(client, "connect_refused", **endpoint(client, secure_broker, other_ca),
                          username="guest", password="guest")
    assert result["refused"] is True, result
    assert result["code"] in CERT_ERRORS, result
    assert result["sasl_started"] is False, result
    os.kill(secure_broker.pid, 0)  # still running
