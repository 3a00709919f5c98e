"""Client links that asked to ride out an upstream failure (gateway/reattach.py):
bytes in on one side, bytes out on the other, the upstream this project's
own broker (test_routes.Net), lost and dialed again by the test."""

from __future__ import annotations

from typing import Any

import pytest

from broker.codec.messaging import (
    Accepted,
    AmqpValue,
    MessageAnnotations,
    Rejected,
    Source,
    Target,
    encode_section,
)
from broker.codec.performatives import Attach, Open, Role
from broker.codec.types import Described, Long, Symbol, ULong
from broker.config import Config, StreamConfig
from broker.engine.connection import Connection
from broker.engine.events import DeliveriesUpdated, DeliveryUpdated, LinkAttached, LinkDetached
from broker.engine.link import Link
from broker.engine.sasl import SaslClient
from broker.engine.session import Session
from broker.errors import Condition
from broker.gateway.core import ATTACH_WAIT
from broker.gateway.observe import overview as gateway_view
from broker.gateway.reattach import REATTACH, X_STREAM_OFFSET, allowed, asked
from broker.nodes.stream import OFFSET_SPEC

from .test_routes import Net, body, passthrough_net, received, texts


def reattaching_receiver(net: Net, session: Session, address: str,
                         offset_spec: str | None = None) -> Link:
    filters = {OFFSET_SPEC: Described(OFFSET_SPEC, offset_spec)} if offset_spec else None
    link = session.attach(name=f"r-{address}", role=Role.RECEIVER,
                          source=Source(address=address, filter=filters), target=Target(),
                          desired_capabilities=(REATTACH,))
    net.pump()
    return link


def reattaching_sender(net: Net, session: Session, address: str) -> Link:
    link = session.attach(name=f"s-{address}", role=Role.SENDER, source=Source(),
                          target=Target(address=address), desired_capabilities=(REATTACH,))
    net.pump()
    return link


def lose_upstream(net: Net, *, pump: bool = True, which: int = -1) -> None:
    """The upstream connection drops (the last one dialed, or `which`): both
    ends hear of it (the upstream requeues what it had sent and not had settled)."""
    up, side = net.wires[which]
    up.connection_lost()
    side.receive_data(b"")
    if pump:
        net.pump()


def detached(events: list[Any]) -> dict[Link, Any]:
    return {e.link: e.error for e in events if isinstance(e, LinkDetached)}


def settlements(events: list[Any]) -> list[tuple[Any, Any]]:
    """(delivery, outcome) of each delivery the peer settled, ranges included."""
    out = []
    for e in events:
        if isinstance(e, DeliveryUpdated) and e.settled:
            out.append((e.delivery, e.state))
        elif isinstance(e, DeliveriesUpdated) and e.settled:
            out += [(d, e.state) for d in e.deliveries]
    return out


def test_a_receiver_that_asked_keeps_its_link_and_gets_its_unsettled_messages_again() -> None:
    net = Net()
    session = net.session()
    publisher = net.sender(session, "/queues/q")
    for i in range(3):
        publisher.send(body(f"m{i}"), settled=True)
    receiver = reattaching_receiver(net, session, "/queues/q")
    assert REATTACH in (receiver.remote_attach.offered_capabilities or ()), \
        "the answer says the link will be re-attached"
    receiver.flow(10)
    net.pump()
    first = received(net.events())
    assert texts(first) == ["m0", "m1", "m2"]
    receiver.settle(first[0], Accepted())  # settled upstream before the loss
    net.pump()

    lose_upstream(net)
    events = net.events()
    gone = detached(events)
    assert receiver not in gone, "the asking link stays attached"
    assert gone[publisher].condition == Condition.CONNECTION_FORCED.value, \
        "a link that did not ask ends as before"
    assert gateway_view(net.gw)["links_waiting_reattach"] == 1
    receiver.settle(first[1], Accepted())  # its original went with the upstream link
    net.pump()

    net.connect_upstream()
    net.pump()
    again = received(net.events())
    assert texts(again) == ["m1", "m2"], "what the upstream had not had settled comes again"
    for delivery in again:
        receiver.settle(delivery, Accepted())
    net.pump()
    assert net.queue("q").depth == 0 and net.queue("q").unacked == 0
    view = gateway_view(net.gw)
    assert view["links_waiting_reattach"] == 0 and view["links_reattached_total"] == 1
    # and the link carries on, its credit upstream again
    publisher = net.sender(session, "/queues/q", name="s2")
    publisher.send(body("after"), settled=True)
    net.pump()
    assert texts(received(net.events())) == ["after"]


def test_a_sender_that_asked_has_what_the_upstream_had_not_settled_sent_again() -> None:
    net = Net()
    session = net.session()
    sender = reattaching_sender(net, session, "/queues/q")
    assert REATTACH in (sender.remote_attach.offered_capabilities or ())
    before = sender.send(body("settled-before"), settled=False)
    net.pump()
    assert settlements(net.events()) == [(before, Accepted())]
    # two messages the gateway sends on, but the upstream never gets
    up, _ = net.wires[-1]
    pending = [sender.send(body(f"m{i}"), settled=False) for i in range(2)]
    net.carry(net.app, net.edge)
    assert up.data_to_send(), "sent on upstream"
    lose_upstream(net, pump=False)
    # one more, under the credit the client still had; then its credit is taken away
    late = sender.send(body("late"), settled=False)
    net.pump()
    assert not detached(net.events()) and sender.link_credit == 0, \
        "no more until the upstream grants it"

    net.connect_upstream()
    net.pump()
    assert settlements(net.events()) == [(d, Accepted()) for d in [*pending, late]]
    assert sender.link_credit > 0, "credit from the new upstream link"
    assert net.queue("q").depth == 4
    receiver = net.receiver(session, "/queues/q")
    receiver.flow(10)
    net.pump()
    assert texts(received(net.events())) == ["settled-before", "m0", "m1", "late"], \
        "in the order sent, none lost, none twice (the upstream never had them)"


def test_a_link_goes_at_once_to_another_open_connection_of_the_pool() -> None:
    net = Net()
    session = net.session()
    receiver = reattaching_receiver(net, session, "/queues/q")
    net.connect_upstream()  # a second connection of the pool, open
    net.pump()
    lose_upstream(net, which=0)  # the one carrying the link
    # nothing from the client: the gateway itself wakes the connection it used
    (route,) = [r for sr in net.edge.sessions.values() for r in sr.links]
    assert route.answered and route.session.upstream is net.wires[1][0]
    publisher = net.sender(session, "/queues/q")
    publisher.send(body("on"), settled=True)
    receiver.flow(1)
    net.pump()
    assert texts(received(net.events())) == ["on"]


def test_a_sender_gets_no_credit_while_it_waits_even_when_the_edge_refuses_one() -> None:
    """The anonymous relay, whose messages the edge checks: a refused message
    gives back its credit, but there is no upstream link to take more."""
    config = Config(users={"app": "pw"}, allow_anonymous=False,
                    permissions={"app": ("", "^allowed$", "")})
    net = Net(gateway_config=config, user="app", password="pw")
    session = net.session()
    relay = session.attach(name="relay", role=Role.SENDER, source=Source(), target=Target(),
                           desired_capabilities=(REATTACH,))
    net.pump()
    assert REATTACH in (relay.remote_attach.offered_capabilities or ())
    lose_upstream(net, pump=False)
    refused = relay.send(body("out", to="/queues/other"), settled=False)  # in flight at the loss
    net.pump()
    assert [(d, type(state)) for d, state in settlements(net.events())] == [(refused, Rejected)]
    assert relay.link_credit == 0, "no credit with nothing attached upstream"
    net.connect_upstream()
    net.pump()
    assert relay.link_credit > 0, "and credit again once re-attached"


def publish_directly(net: Net, address: str, *texts_: str) -> None:
    """Another client of the upstream broker, not through the gateway."""
    side = net.broker.connection_made("other", "tcp", lambda: None)
    app = Connection(container_id="other", client=SaslClient("svc", "secret"))

    def pump() -> None:
        for _ in range(50):
            a, b = app.data_to_send(), side.data_to_send()
            if a:
                side.receive_data(bytes(a))
            if b:
                app.receive_data(bytes(b), net.now)
            if not a and not b:
                return

    pump()
    session = app.begin()
    pump()
    link = session.attach(name="p", role=Role.SENDER, source=Source(),
                          target=Target(address=address))
    pump()
    for text in texts_:
        link.send(body(text), settled=True)
    pump()
    net.pump()


def stream_net() -> Net:
    return Net(broker_config=Config(users={"svc": "secret"}, allow_anonymous=False,
                                    streams=(StreamConfig("s"),)))


@pytest.mark.parametrize("spec", [None, "first"], ids=["no-offset-spec", "from-first"])
def test_a_stream_reader_resumes_just_past_what_it_was_sent(spec: str | None) -> None:
    """Not from its own spec again: from `first` it would get everything twice,
    from the default (`next`) it would miss what was appended while it waited."""
    net = stream_net()
    session = net.session()
    reader = reattaching_receiver(net, session, "/queues/s", spec)
    reader.flow(10)
    net.pump()
    assert REATTACH in (reader.remote_attach.offered_capabilities or ())
    publish_directly(net, "/queues/s", "m0", "m1")
    assert texts(received(net.events())) == ["m0", "m1"]
    lose_upstream(net)
    publish_directly(net, "/queues/s", "while-away")
    net.connect_upstream()
    net.pump()
    (upstream_link,) = [lk for lk in net.broker_sessions()[-1].links.values()]
    assert upstream_link.remote_attach.source.filter[OFFSET_SPEC] == Described(  # type: ignore[union-attr]
        OFFSET_SPEC, ULong(2)), "asked from the offset after m1's"
    publish_directly(net, "/queues/s", "after")
    assert not detached(events := net.events())
    assert texts(received(events)) == ["while-away", "after"]


def test_a_stream_reader_sent_nothing_yet_attaches_again_with_its_own_spec() -> None:
    net = stream_net()
    publish_directly(net, "/queues/s", "m0")
    session = net.session()
    reader = reattaching_receiver(net, session, "/queues/s", "first")  # no credit: nothing sent
    lose_upstream(net)
    net.connect_upstream()
    net.pump()
    reader.flow(10)
    net.pump()
    assert texts(received(net.events())) == ["m0"]


def test_a_stream_readers_offset_spec_is_replaced_under_whatever_key_it_came() -> None:
    """A broker knows an offset filter by its descriptor, not its key."""
    net = stream_net()
    session = net.session()
    reader = session.attach(name="r", role=Role.RECEIVER, target=Target(),
                            source=Source(address="/queues/s", filter={
                                Symbol("my-offset"): Described(OFFSET_SPEC, "first")}),
                            desired_capabilities=(REATTACH,))
    reader.flow(10)
    net.pump()
    publish_directly(net, "/queues/s", "m0", "m1")
    assert texts(received(net.events())) == ["m0", "m1"]
    lose_upstream(net)
    net.connect_upstream()
    net.pump()
    publish_directly(net, "/queues/s", "after")
    assert texts(received(net.events())) == ["after"], "nothing read twice"


def test_what_the_gateway_held_unsettled_comes_once_even_when_a_queue_message_looks_streamed(
        ) -> None:
    """Messages on a queue that carry x-stream-offset (copied from a stream):
    the reader looks like a stream's, but what the gateway held for it
    unsettled is dropped all the same, and the queue delivers it again once."""
    net = Net()
    session = net.session()
    reader = reattaching_receiver(net, session, "/queues/q")
    publisher = net.sender(session, "/queues/q", name="p")
    for i in range(4):
        publisher.send(encode_section(MessageAnnotations({X_STREAM_OFFSET: Long(i)}))
                       + encode_section(AmqpValue(f"m{i}")), settled=True)
    net.pump()
    # credit 4 goes upstream; the client lowers it to 1 while the 4 are on their way
    reader.flow(4)
    net.carry(net.app, net.edge)
    up, side = net.wires[0]
    net.carry(net.edge, net.app)
    net.carry(up, side)
    reader.flow(1)
    net.carry(net.app, net.edge)
    net.carry(side, up)
    net.pump()
    (route,) = [r for sr in net.edge.sessions.values() for r in sr.links
                if r.client.name == reader.name]
    assert len(route.pending) == 3, "three held for the client"
    assert texts(received(net.events())) == ["m0"]
    lose_upstream(net)
    net.connect_upstream()
    net.pump()
    reader.flow(20)
    net.pump()
    # m0 was unsettled at the loss: delivered again, as any queue does
    assert texts(received(net.events())) == ["m0", "m1", "m2", "m3"]


def test_an_attach_that_asked_waits_for_an_upstream_as_long_as_a_reattach() -> None:
    net = Net()
    session = net.session()
    lose_upstream(net)
    receiver = reattaching_receiver(net, session, "/queues/q")
    net.later(ATTACH_WAIT + 1)
    assert not detached(net.events())
    net.later(30.0 - ATTACH_WAIT - 1)
    error = detached(net.events())[receiver]
    assert error.condition == Condition.CONNECTION_FORCED.value
    assert "within 30 s" in error.description


@pytest.mark.parametrize("wait", [30.0, 12.0], ids=["default", "reattach-wait-12"])
def test_a_link_that_waits_longer_than_reattach_wait_ends_with_connection_forced(
        wait: float) -> None:
    net = Net(gateway_config=Config() if wait == 30.0 else Config(reattach_wait=wait))
    session = net.session()
    receiver = reattaching_receiver(net, session, "/queues/q")
    net.events()
    lose_upstream(net)
    net.later(ATTACH_WAIT + 1)
    assert not detached(net.events()), "a re-attach waits longer than an attach"
    net.later(wait - ATTACH_WAIT - 1.5)
    assert not detached(net.events()), "still waiting half a second before the end"
    net.later(0.5)
    error = detached(net.events())[receiver]
    assert error.condition == Condition.CONNECTION_FORCED.value
    assert f"not back within {wait:g} s to re-attach" in error.description
    net.connect_upstream()
    net.pump()
    assert not net.broker_sessions()[-1].links, "nothing re-attached after the end"


def test_a_link_detached_by_its_client_while_it_waits_is_not_reattached() -> None:
    net = Net()
    session = net.session()
    receiver = reattaching_receiver(net, session, "/queues/q")
    lose_upstream(net)
    receiver.detach()
    net.pump()
    net.events()
    net.connect_upstream()
    net.pump()
    assert not net.broker_sessions()[-1:] or not net.broker_sessions()[-1].links
    assert gateway_view(net.gw)["links_waiting_reattach"] == 0


def test_a_reattach_the_upstream_refuses_detaches_the_client_with_its_error() -> None:
    net = Net(broker_config=Config(users={"svc": "secret"}, allow_anonymous=False,
                                   auto_create=False))
    net.broker.admin.declare_queue("q")
    session = net.session()
    receiver = reattaching_receiver(net, session, "/queues/q")
    assert receiver.usable and not detached(net.events())
    lose_upstream(net)
    net.broker.admin.delete_queue("q")  # gone while the gateway was away
    net.connect_upstream()
    net.pump()
    error = detached(net.events())[receiver]
    assert error.condition == Condition.NOT_FOUND.value, "the upstream's condition"


def _attach(role: bool, **terminus: Any) -> Attach:
    node = Source(**terminus) if role is Role.RECEIVER else Target(**terminus)
    return Attach(name="l", handle=0, role=role,
                  source=node if role is Role.RECEIVER else Source(),
                  target=node if role is Role.SENDER else Target())


@pytest.mark.parametrize(("attach", "allows"), [
    (_attach(Role.RECEIVER, address="/queues/q"), True),
    (_attach(Role.SENDER, address="/exchanges/x/k"), True),
    (_attach(Role.SENDER), True),  # the anonymous relay
    (Attach(name="l", handle=0, role=Role.SENDER, source=Source(), target=None), True),
    (_attach(Role.RECEIVER, dynamic=True), False),
    (_attach(Role.SENDER, dynamic=True), False),
    (_attach(Role.RECEIVER, address="/management"), False),
    (_attach(Role.SENDER, address="/management"), False),
    (_attach(Role.RECEIVER, address="/queues/s",
             filter={OFFSET_SPEC: Described(OFFSET_SPEC, "first")}), True),
    (_attach(Role.RECEIVER, address="/queues/s",
             filter={Symbol("rabbitmq:stream-filter"): Described(Symbol("x"), "a")}), True),
], ids=["queue", "exchange", "relay", "relay-null-target", "dynamic-source", "dynamic-target",
        "management-replies", "management-requests", "stream-offset", "stream-filter"])
def test_which_links_may_be_reattached(attach: Attach, allows: bool) -> None:
    assert allowed(attach) is allows


def test_a_client_asks_on_the_link_or_for_every_link_of_its_connection() -> None:
    plain = _attach(Role.RECEIVER, address="/queues/q")
    assert not asked(plain, None) and not asked(plain, Open(container_id="c"))
    assert asked(plain, Open(container_id="c", desired_capabilities=(REATTACH,)))
    linked = Attach(name="l", handle=0, role=Role.RECEIVER, source=Source(address="/queues/q"),
                    target=Target(), desired_capabilities=(REATTACH,))
    assert asked(linked, None)


def test_passthrough_dials_the_clients_login_again_until_the_upstream_is_back() -> None:
    net = passthrough_net("alice", "pw")
    session = net.session()
    receiver = reattaching_receiver(net, session, "/queues/q")
    (login,) = net.dialed  # type: ignore[attr-defined]
    net.connect_upstream(login=login)
    net.pump()
    assert receiver.usable and REATTACH in (receiver.remote_attach.offered_capabilities or ())
    up, _ = net.wires[-1]
    lose_upstream(net)
    net.gw.upstream_gone(up)  # the edge is done with its socket: alice's login dials again
    assert net.dialed == [login, login]  # type: ignore[attr-defined]
    net.gw.dial_failed(login, "connection refused")  # every node refused
    net.later(1)
    assert net.dialed == [login] * 3, "dialed again at the tick"  # type: ignore[attr-defined]
    assert not detached(net.events())
    net.connect_upstream(login=login)
    net.pump()
    publisher = net.sender(session, "/queues/q")
    publisher.send(body("back"), settled=True)
    receiver.flow(1)
    net.pump()
    assert texts(received(net.events())) == ["back"], "re-attached on alice's new connection"


def test_an_attach_the_upstream_had_not_answered_waits_for_the_next_connection() -> None:
    """Asked or not: it is an attach made while no upstream connection is open."""
    net = Net()
    session = net.session()
    receiver = session.attach(name="r", role=Role.RECEIVER, source=Source(address="/queues/q"),
                              target=Target())
    net.carry(net.app, net.edge)  # the gateway attaches upstream; no answer yet
    lose_upstream(net)
    events = net.events()
    assert not detached(events) and LinkAttached(receiver) not in events
    net.connect_upstream()
    net.pump()
    assert LinkAttached(receiver) in net.events(), "answered on the next connection"
    assert gateway_view(net.gw)["links_routed_total"] == 1, "counted once"
    publisher = net.sender(session, "/queues/q")
    publisher.send(body("m"), settled=True)
    receiver.flow(1)
    net.pump()
    assert texts(received(net.events())) == ["m"]
