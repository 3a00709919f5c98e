"""Who may do what, in the container: permissions on attach, on relayed
messages and on /management; user-id; tokens as passwords, from the WebSocket
upgrade, refreshed and expiring; EXTERNAL from a client certificate."""

from __future__ import annotations

from typing import Any

import jwt
from engine.peer import SASL_HEADER, Peer, condition, kinds, of, one
from test_container import NOW, Broker, msg, publish, publisher
from test_routing import management_pair, request

from broker.access import Identity, Permissions
from broker.codec.messaging import Accepted, Properties, Rejected
from broker.codec.performatives import Attach, Close, Detach, Open, SaslMechanisms, SaslOutcome
from broker.codec.types import Symbol

SECRET = "a-development-secret-of-32-bytes!"


def token(user: str = "alice", exp: float = NOW + 300, scope: str = "amqpws.read:*/* "
          "amqpws.write:*/* amqpws.configure:*/*", key: str = SECRET) -> str:
    return jwt.encode({"sub": user, "aud": "amqpws", "exp": exp, "scope": scope}, key,
                      algorithm="HS256")


def secured(**config: Any) -> Broker:
    """bob may read `public` and write `inbox`; everyone else may do nothing."""
    base: dict[str, Any] = {
        "users": {"bob": "pw", "root": "pw"},
        "allow_anonymous": False,
        "permissions": {"bob": ("^$", "^inbox$", "^public$"), "root": (".*", ".*", ".*"),
                        "*": ("", "", "")},
    }
    base.update(config)
    return Broker(**base)


def login(broker: Broker, user: str, password: str, name: str = "c", **kw: Any) -> Peer:
    peer = Peer(broker.container.connection_made(name, "test", lambda: None, **kw))
    out = peer.connect(sasl=("PLAIN", user, password), container_id=name)
    assert one(out, SaslOutcome).code == 0, "authenticated"
    assert not of(out, Close)
    peer.begin()
    return peer


def refusal(out: list[Any]) -> str | None:
    attach = one(out, Attach)
    assert attach.source is None or attach.target is None, "a refused attach has a null terminus"
    return condition(one(out, Detach))


def test_attach_needs_read_to_receive_and_write_to_send() -> None:
    broker = secured(queues=("public", "inbox", "private"))
    bob = login(broker, "bob", "pw")
    assert kinds(bob.attach_receiver(1, "/queues/public")) == [Attach]
    out = bob.attach_receiver(2, "/queues/private")
    assert refusal(out) == "amqp:unauthorized-access"
    assert one(out, Detach).error.description == (
        "read access to queue 'private' in vhost '/' refused for user 'bob'")
    publisher(bob, 3, "/queues/inbox")
    assert refusal(bob.attach_sender(4, "/queues/public")) == "amqp:unauthorized-access"
    assert refusal(bob.attach_sender(5, "/exchanges/amq.topic/x")) == "amqp:unauthorized-access"


def test_auto_creating_a_queue_needs_configure() -> None:
    broker = secured()
    bob = login(broker, "bob", "pw")
    out = bob.attach_sender(0, "/queues/inbox")  # write is allowed, creating it is not
    assert "configure access to queue 'inbox'" in one(out, Detach).error.description
    assert broker.container.registry.get("inbox") is None
    root = login(broker, "root", "pw", name="r")
    publisher(root, 0, "/queues/inbox")


def test_dynamic_nodes_need_configure() -> None:
    broker = secured()
    bob = login(broker, "bob", "pw")
    from broker.codec.messaging import Source

    out = bob.attach_receiver(0, None, source=Source(dynamic=True))
    assert refusal(out) == "amqp:unauthorized-access"
    assert not [n for n in broker.container.registry.nodes if n.startswith("amq.")], \
        "the refused temporary queue is gone"


def test_relayed_messages_are_checked_one_by_one() -> None:
    broker = secured(queues=("public", "inbox"))
    bob = login(broker, "bob", "pw")
    out = bob.attach_sender(0, None)
    assert not of(out, Detach)
    ok, refused = publish(bob, 0, msg(b"a", properties=Properties(to="/queues/inbox")),
                          msg(b"b", properties=Properties(to="/queues/public")))
    assert ok == Accepted()
    assert isinstance(refused, Rejected)
    assert refused.error.condition == Symbol("amqp:unauthorized-access")
    assert broker.queue("public").depth == 0 and broker.queue("inbox").depth == 1


def test_user_id_must_be_the_connection_user() -> None:
    broker = secured(queues=("inbox",))
    bob = login(broker, "bob", "pw")
    publisher(bob, 0, "/queues/inbox")
    mine, theirs = publish(bob, 0, msg(b"a", properties=Properties(user_id=b"bob")),
                           msg(b"b", properties=Properties(user_id=b"root")))
    assert mine == Accepted()
    assert isinstance(theirs, Rejected)
    assert theirs.error.condition == Symbol("amqp:unauthorized-access")
    assert "user_id property set to 'root' but authenticated user was 'bob'" in \
        theirs.error.description


def test_management_operations_need_permissions() -> None:
    broker = secured(queues=("public",), exchanges=())
    bob = login(broker, "bob", "pw")
    management_pair(bob)
    reply = request(bob, "/queues/mine", "PUT", {})
    assert reply.properties.subject == "403"
    assert reply.body[0].value == "configure access to queue 'mine' in vhost '/' refused for " \
                                  "user 'bob'"
    assert request(bob, "/queues/public", "GET").properties.subject == "200", "listing is free"
    assert request(bob, "/queues/public/messages", "DELETE").properties.subject == "200", \
        "purge needs read"
    assert request(bob, "/queues/public", "DELETE").properties.subject == "403"
    bind = {"source": "amq.direct", "destination_queue": "public", "binding_key": "k"}
    assert request(bob, "/bindings", "POST", bind).properties.subject == "403", \
        "write on the destination"
    root = login(broker, "root", "pw", name="r")
    management_pair(root)
    assert request(root, "/bindings", "POST", bind).properties.subject == "204"


def test_a_token_as_the_plain_password() -> None:
    broker = secured(jwt_secret=SECRET, jwt_audience="amqpws", queues=("q",))
    alice = login(broker, "ignored-name", token())
    assert kinds(alice.attach_receiver(1, "/queues/q")) == [Attach]
    peer = Peer(broker.container.connection_made("x", "test", lambda: None))
    out = peer.connect(sasl=("PLAIN", "x", token(key="another-secret-of-at-least-32-bytes")))
    assert one(out, SaslOutcome).code == 1


def test_token_scopes_limit_what_the_user_may_do() -> None:
    broker = secured(jwt_secret=SECRET, jwt_audience="amqpws", queues=("q", "r"))
    reader = login(broker, "", token(scope="amqpws.read:*/q"))
    assert kinds(reader.attach_receiver(1, "/queues/q")) == [Attach]
    assert refusal(reader.attach_receiver(2, "/queues/r")) == "amqp:unauthorized-access"


def test_an_expired_token_closes_the_connection() -> None:
    broker = secured(jwt_secret=SECRET, jwt_audience="amqpws")
    alice = login(broker, "", token(exp=NOW + 30))
    handle = alice.conn
    deadline = handle.tick()
    assert deadline is not None and deadline <= broker.clock() + 30 + 60, "leeway included"
    broker.wall.t = NOW + 30 + 61
    handle.tick()
    close = one(alice.read(), Close)
    assert condition(close) == "amqp:unauthorized-access"


def test_put_auth_tokens_refreshes_verified_tokens_only() -> None:
    broker = secured(jwt_secret=SECRET, jwt_audience="amqpws")
    alice = login(broker, "", token(exp=NOW + 30))
    management_pair(alice)
    bad = request(alice, "/auth/tokens", "PUT", token(key="another-secret-of-at-least-32-bytes")
                  .encode())
    assert bad.properties.subject == "401"
    other = request(alice, "/auth/tokens", "PUT", token(user="mallory").encode())
    assert other.properties.subject == "401"
    good = request(alice, "/auth/tokens", "PUT", token(exp=NOW + 3600).encode())
    assert good.properties.subject == "204"
    broker.wall.t = NOW + 600
    alice.conn.tick()
    assert not of(alice.read(), Close), "the refreshed token keeps the connection"


def test_a_bearer_from_the_upgrade_means_anonymous_is_that_user() -> None:
    broker = secured(jwt_secret=SECRET, jwt_audience="amqpws", queues=("q",))
    identity = broker.container.verify_bearer(token())
    peer = Peer(broker.container.connection_made("ws", "ws", lambda: None, bearer=identity))
    mechs = one(peer.header(SASL_HEADER), SaslMechanisms)
    assert mechs.sasl_server_mechanisms == (Symbol("ANONYMOUS"),)
    out = peer.sasl_init("ANONYMOUS")
    assert one(out, SaslOutcome).code == 0
    peer.header()
    assert kinds(peer.open()) == [Open]
    assert peer.conn.user == "alice"


def test_external_uses_the_certificate_identity() -> None:
    broker = secured(queues=("public",))
    peer = Peer(broker.container.connection_made("tls", "tls", lambda: None, tls_subject="bob"))
    mechs = one(peer.header(SASL_HEADER), SaslMechanisms).sasl_server_mechanisms
    assert mechs[0] == Symbol("EXTERNAL")
    assert one(peer.sasl_init("EXTERNAL", b""), SaslOutcome).code == 0
    peer.header()
    peer.open()
    peer.begin()
    assert kinds(peer.attach_receiver(1, "/queues/public")) == [Attach], "bob's permissions"
    other = Peer(broker.container.connection_made("t2", "tls", lambda: None, tls_subject="bob"))
    other.header(SASL_HEADER)
    assert one(other.sasl_init("EXTERNAL", b"root"), SaslOutcome).code == 1, "no acting as root"


def test_external_needs_a_configured_user() -> None:
    """As RabbitMQ: a CA may sign names nobody meant to let in."""
    broker = secured()
    peer = Peer(broker.container.connection_made("t", "tls", lambda: None,
                                                 tls_subject="mallory"))
    peer.header(SASL_HEADER)
    assert one(peer.sasl_init("EXTERNAL", b""), SaslOutcome).code == 1


def test_external_is_not_offered_without_a_certificate() -> None:
    broker = secured()
    peer = Peer(broker.container.connection_made("t", "tcp", lambda: None))
    mechs = one(peer.header(SASL_HEADER), SaslMechanisms).sasl_server_mechanisms
    assert Symbol("EXTERNAL") not in mechs
    assert one(peer.sasl_init("EXTERNAL", b""), SaslOutcome).code == 1


def test_anonymous_gets_the_default_permissions() -> None:
    broker = Broker(permissions={"*": ("", "", "^public$")}, queues=("public", "private"))
    anon = broker.client()
    assert kinds(anon.attach_receiver(1, "/queues/public")) == [Attach]
    assert refusal(anon.attach_receiver(2, "/queues/private")) == "amqp:unauthorized-access"
    assert Identity("x", Permissions()).permissions.allows("read", "q") is False
