"""The engine as the connecting side (the gateway's upstream connections),
against the engine as the server: two `Connection`s pumping bytes into each
other, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from broker.codec.messaging import Accepted, AmqpValue, Source, Target, encode_section
from broker.codec.performatives import Role, amqp_error
from broker.engine.connection import Connection, ConnState
from broker.engine.events import (
    ConnectionClosed,
    ConnectionOpened,
    CreditChanged,
    DeliveryUpdated,
    Event,
    LinkAttached,
    LinkDetached,
    MessageReceived,
)
from broker.engine.link import Link
from broker.engine.sasl import SaslClient
from broker.errors import Condition, LocalProtocolError


def pump(a: Connection, b: Connection, rounds: int = 20) -> None:
    """Carry bytes both ways until neither side has anything to say."""
    for _ in range(rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = src.data_to_send()
            if data and not dst.done:
                dst.receive_data(bytes(data), 0.0)
                moved = True
        if not moved:
            return


def events(conn: Connection) -> list[Event]:
    out = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def pair(user: str | None = "svc", password: str = "secret", *,
         users: dict[str, str] | None = None) -> tuple[Connection, Connection]:
    server = Connection(container_id="server", users={"svc": "secret"} if users is None else users,
                        allow_anonymous=True)
    client = Connection(container_id="gateway", client=SaslClient(user, password),
                        hostname="vhost:/")
    pump(client, server)
    return client, server


def test_plain_login_opens_both_sides() -> None:
    client, server = pair()
    assert client.state is ConnState.OPENED and server.state is ConnState.OPENED
    opened = [e for e in events(server) if isinstance(e, ConnectionOpened)]
    assert opened == [ConnectionOpened("gateway", "vhost:/", "svc")]
    assert [type(e) for e in events(client)] == [ConnectionOpened]


def test_anonymous_without_a_user() -> None:
    client, server = pair(None)
    assert client.state is ConnState.OPENED
    assert server.user == "anonymous"


def test_refused_credentials_end_the_client_with_the_reason() -> None:
    client, _server = pair("svc", "wrong")
    assert client.done
    (closed,) = [e for e in events(client) if isinstance(e, ConnectionClosed)]
    assert closed.error is not None
    assert closed.error.condition == Condition.UNAUTHORIZED_ACCESS.value
    assert "refused our credentials" in (closed.error.description or "")


def test_no_mechanism_we_can_use() -> None:
    # a server with users and no anonymous offers PLAIN only
    server = Connection(container_id="server", users={"a": "b"}, allow_anonymous=False)
    client = Connection(container_id="gw", client=SaslClient(None))
    pump(client, server)
    assert client.done
    (closed,) = [e for e in events(client) if isinstance(e, ConnectionClosed)]
    assert "does not offer ANONYMOUS" in (closed.error.description or "")  # type: ignore[union-attr]


def test_a_session_is_not_begun_before_the_open() -> None:
    server = Connection(container_id="server", allow_anonymous=True)
    client = Connection(container_id="gw", client=SaslClient(None))
    with pytest.raises(LocalProtocolError):
        client.begin()
    del server


def accept_all(server: Connection, *, credit: int = 0) -> list[Any]:
    """Accept every link the server was asked for, echoing the termini."""
    links = []
    for e in events(server):
        if isinstance(e, LinkAttached):
            link = e.link
            link.accept(source=link.remote_attach.source, target=link.remote_attach.target,
                        credit_window=credit)
            links.append(link)
    return links


def test_links_we_attach_are_answered_and_carry_messages_both_ways() -> None:
    client, server = pair()
    events(client), events(server)
    session = client.begin()
    sender = session.attach(name="out", role=Role.SENDER, source=Source(address="gw"),
                            target=Target(address="/queues/q"))
    receiver = session.attach(name="in", role=Role.RECEIVER, source=Source(address="/queues/q"),
                              target=Target(address="gw"), rcv_settle_mode=0)
    pump(client, server)
    srv_receiver, srv_sender = accept_all(server, credit=10)
    pump(client, server)
    answered = events(client)
    assert [e.link for e in answered if isinstance(e, LinkAttached)] == [sender, receiver]
    assert sender.remote_attach.target.address == "/queues/q"
    # the server's credit reached our sender
    assert any(isinstance(e, CreditChanged) and e.link is sender for e in answered)
    assert sender.link_credit == 10

    payload = encode_section(AmqpValue("hello"))
    delivery = sender.send(payload, settled=False, tag=b"t1")
    pump(client, server)
    (got,) = [e for e in events(server) if isinstance(e, MessageReceived)]
    assert got.delivery.payload == payload and got.delivery.tag == b"t1"
    srv_receiver.settle(got.delivery, Accepted())
    pump(client, server)
    (updated,) = [e for e in events(client) if isinstance(e, DeliveryUpdated)]
    assert updated.delivery is delivery and isinstance(updated.state, Accepted)

    # our receiver grants credit; the server's sender sees it and sends
    receiver.flow(5)
    pump(client, server)
    assert any(isinstance(e, CreditChanged) for e in events(server))
    srv_sender.send(payload, settled=False, tag=b"s1")
    pump(client, server)
    (incoming,) = [e for e in events(client) if isinstance(e, MessageReceived)]
    assert incoming.delivery.payload == payload and receiver.link_credit == 4


def draining(credit: int) -> tuple[Connection, Connection, Link, Link]:
    """A receiver of ours that asked its sender (the server's link) to drain
    `credit`: (client, server, receiver, the server's sender)."""
    client, server = pair()
    session = client.begin()
    receiver = session.attach(name="in", role=Role.RECEIVER, source=Source(address="/queues/q"),
                              target=None)
    pump(client, server)
    events(client)
    (srv_sender,) = accept_all(server)
    pump(client, server)
    events(client)
    receiver.flow(credit, drain=True)
    pump(client, server)
    events(server)
    return client, server, receiver, srv_sender


def test_a_drain_answered_by_the_sender_is_reported() -> None:
    client, server, receiver, srv_sender = draining(7)
    srv_sender.drained()  # nothing to send: the credit is spent, a flow says so
    pump(client, server)
    assert [e for e in events(client) if isinstance(e, CreditChanged)] == [CreditChanged(receiver)]
    assert receiver.link_credit == 0 and receiver.delivery_count == 7


def test_a_drain_the_senders_transfers_spent_is_reported_on_its_answer() -> None:
    """The sender used the whole credit on messages, then answered the drain:
    its count says nothing new, yet the drain is over (a gateway passes that
    answer on; rhea reports a drain finished only on it)."""
    client, server, receiver, srv_sender = draining(2)
    srv_sender.send(b"a", settled=True)
    srv_sender.send(b"b", settled=True)
    pump(client, server)
    assert not [e for e in events(client) if isinstance(e, CreditChanged)]
    srv_sender.drained()  # the credit is spent: the flow that says so changes no count
    pump(client, server)
    assert [e for e in events(client) if isinstance(e, CreditChanged)] == [CreditChanged(receiver)]
    assert receiver.link_credit == 0 and receiver.delivery_count == 2
    srv_sender.session.send_flow()  # a session flow afterwards is no drain answer
    srv_sender.flow(0)  # nor is a sender's flow without drain
    pump(client, server)
    assert not [e for e in events(client) if isinstance(e, CreditChanged)]


def test_a_refused_attach_is_an_answer_then_a_detach_with_the_condition() -> None:
    client, server = pair()
    events(client)
    session = client.begin()
    link = session.attach(name="in", role=Role.RECEIVER, source=Source(address="/queues/none"),
                          target=None)
    pump(client, server)
    for e in events(server):
        if isinstance(e, LinkAttached):
            e.link.refuse(amqp_error(Condition.NOT_FOUND, "no queue 'none'"))
    pump(client, server)
    seen = events(client)
    assert [type(e) for e in seen] == [LinkAttached, LinkDetached]
    assert seen[0].link is link and link.remote_attach.source is None  # type: ignore[union-attr]
    assert seen[1].error.condition == Condition.NOT_FOUND.value  # type: ignore[union-attr]
    assert session.links == {}


def test_sessions_we_begin_take_the_peers_channel_from_its_answer() -> None:
    client, server = pair()
    first, second = client.begin(), client.begin()
    pump(client, server)
    assert (first.channel, second.channel) == (0, 1)
    assert set(server.sessions) == {0, 1}
    assert {first.remote_channel, second.remote_channel} == {0, 1}
    first.end()
    pump(client, server)
    assert list(client.local_sessions) == [1]


def test_close_from_the_client() -> None:
    client, server = pair()
    client.close()
    pump(client, server)
    assert client.done and server.done
