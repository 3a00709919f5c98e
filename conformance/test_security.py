"""Security seen by python-qpid-proton (client `proton-tls`, and `proton-tcp`
for the permission cases): amqps:// with the test CA, SASL EXTERNAL from a
client certificate, a token as the PLAIN password, permission refusals, the
user-id rule, and a certificate the broker does not trust.  The broker is
conftest's `secure_broker` (users and permissions in secure.py)."""

from __future__ import annotations

from typing import Any

import pytest
from proton import Disposition, Message, SSLDomain
from proton.utils import BlockingConnection, LinkDetached, SendException
from secure import make_token

STEP = 10.0
TLS = pytest.param("proton-tls", id="proton-tls")
TCP = pytest.param("proton-tcp", id="proton-tcp")


def domain(pki: Any, cert: tuple[Any, Any] | None = None, ca_file: Any = None) -> SSLDomain:
    """A client SSL domain trusting the test CA (or `ca_file`) and checking the
    broker's name; with `cert`, presenting a client certificate."""
    d = SSLDomain(SSLDomain.MODE_CLIENT)
    d.set_trusted_ca_db(str(ca_file or pki.ca_file))
    d.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    if cert is not None:
        d.set_credentials(str(cert[0]), str(cert[1]), None)
    return d


def amqps(broker: Any, pki: Any, *, mechs: str = "PLAIN", user: str | None = "guest",
          password: str | None = "guest", cert: tuple[Any, Any] | None = None,
          ca_file: Any = None) -> BlockingConnection:
    return BlockingConnection(f"amqps://localhost:{broker.tls_port}", timeout=STEP,
                              ssl_domain=domain(pki, cert, ca_file), sasl_enabled=True,
                              allowed_mechs=mechs, user=user, password=password)


def tcp(broker: Any, user: str, password: str) -> BlockingConnection:
    return BlockingConnection(broker.amqp_url, timeout=STEP, sasl_enabled=True,
                              allowed_mechs="PLAIN", user=user, password=password)


def round_trip(conn: BlockingConnection, address: str, n: int = 3) -> list[Any]:
    sender = conn.create_sender(address)
    for i in range(n):
        sender.send(Message(id=f"m{i}", body=f"body {i}"))
    receiver = conn.create_receiver(address, credit=n)
    bodies = []
    for _ in range(n):
        bodies.append(receiver.receive(timeout=STEP).body)
        receiver.accept()
    return bodies


def refused_condition(action: Any) -> tuple[str, str]:
    """(condition, description) of the link error `action` raises."""
    with pytest.raises(LinkDetached) as info:
        action()
    condition = info.value.link.remote_condition
    return condition.name, condition.description


@pytest.mark.parametrize("client", [TLS])
def test_amqps_plain(client: str, secure_broker: Any, pki: Any, tag: str) -> None:
    conn = amqps(secure_broker, pki)
    try:
        assert round_trip(conn, f"/queues/conf-{tag}") == ["body 0", "body 1", "body 2"]
    finally:
        conn.close()


@pytest.mark.parametrize("client", [TLS])
def test_amqps_external_with_a_client_certificate(client: str, secure_broker: Any, pki: Any,
                                                  tag: str) -> None:
    """The certificate's CN (bob) is the user: bob's permissions apply."""
    conn = amqps(secure_broker, pki, mechs="EXTERNAL", user=None, password=None,
                 cert=pki.client_cert("bob"))
    try:
        assert round_trip(conn, f"/queues/conf-bob-{tag}", 1) == ["body 0"]
        name, description = refused_condition(
            lambda: conn.create_receiver(f"/queues/conf-{tag}"))
        assert name == "amqp:unauthorized-access"
        assert "for user 'bob'" in description
    finally:
        conn.close()


@pytest.mark.parametrize("client", [TLS])
def test_amqps_refuses_a_certificate_from_another_ca(client: str, secure_broker: Any,
                                                     pki: Any) -> None:
    import trustme

    stranger = trustme.CA()
    cert = pki.client_cert("mallory", ca=stranger)
    with pytest.raises(Exception, match="(?i)ssl|certificate|connection"):
        amqps(secure_broker, pki, mechs="EXTERNAL", user=None, password=None,
              cert=cert).close()
    # and a client that does not trust the broker's CA fails too
    other_ca = pki.workdir / "stranger-ca.pem"
    stranger.cert_pem.write_to_path(str(other_ca))
    with pytest.raises(Exception, match="(?i)ssl|certificate|verify|connection"):
        amqps(secure_broker, pki, ca_file=other_ca).close()
    amqps(secure_broker, pki).close()  # others are served all along


@pytest.mark.parametrize("client", [TCP])
def test_permission_refusals(client: str, secure_broker: Any, tag: str) -> None:
    bob = tcp(secure_broker, "bob", "bob")
    try:
        name, description = refused_condition(
            lambda: bob.create_receiver(f"/queues/conf-other-{tag}"))
        assert name == "amqp:unauthorized-access"
        assert description == (f"configure access to queue 'conf-other-{tag}' in vhost '/' "
                               "refused for user 'bob'"), "creating it needs configure"
        name, _ = refused_condition(lambda: bob.create_sender("/exchanges/amq.topic/x"))
        assert name == "amqp:unauthorized-access"
        assert round_trip(bob, f"/queues/conf-bob-{tag}", 1) == ["body 0"], \
            "the same connection goes on"
    finally:
        bob.close()
    carol = tcp(secure_broker, "carol", "carol")
    try:
        name, description = refused_condition(
            lambda: carol.create_sender(f"/queues/conf-bob-{tag}"))
        assert name == "amqp:unauthorized-access" and "write access" in description
        carol.create_receiver(f"/queues/conf-bob-{tag}", credit=1)  # read is allowed
    finally:
        carol.close()


@pytest.mark.parametrize("client", [TCP])
def test_user_id_must_be_the_connections_user(client: str, secure_broker: Any,
                                              tag: str) -> None:
    bob = tcp(secure_broker, "bob", "bob")
    try:
        sender = bob.create_sender(f"/queues/conf-bob-{tag}")
        sender.send(Message(body="mine", user_id=b"bob"))
        with pytest.raises(SendException) as info:
            sender.send(Message(body="theirs", user_id=b"guest"))
        assert info.value.state == Disposition.REJECTED
    finally:
        bob.close()


@pytest.mark.parametrize("client", [TCP, TLS])
def test_a_token_as_the_plain_password(client: str, secure_broker: Any, pki: Any,
                                       tag: str) -> None:
    """RabbitMQ's way for clients that cannot set headers: any user name, the
    JWT as the password; the token's subject is the user."""
    token = make_token("token-user")
    if client == "proton-tls":
        conn = amqps(secure_broker, pki, user="ignored", password=token)
    else:
        conn = tcp(secure_broker, "ignored", token)
    try:
        assert round_trip(conn, f"/queues/conf-{tag}", 1) == ["body 0"]
    finally:
        conn.close()
    with pytest.raises(Exception, match="(?i)auth|sasl|connection"):
        tcp(secure_broker, "x", make_token(secret="not-the-secret-of-the-broker-0123")).close()

