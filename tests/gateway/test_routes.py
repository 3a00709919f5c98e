"""The gateway's routing tables, bytes in on one side and bytes out on the
other: an application's engine (client mode) ↔ the gateway ↔ an upstream
broker, all in memory.  The upstream is this project's own broker (a
`Container`), or a bare server engine where a test needs to script what the
upstream does."""

from __future__ import annotations

from typing import Any

import pytest

from broker.codec.messaging import (
    Accepted,
    AmqpValue,
    Message,
    MessageAnnotations,
    Properties,
    Rejected,
    Released,
    Source,
    Target,
    encode_section,
)
from broker.codec.performatives import Disposition, Flow, Role, amqp_error
from broker.codec.types import Described, Symbol
from broker.config import Config, StreamConfig
from broker.container import Container
from broker.engine.connection import Connection
from broker.engine.events import (
    CreditChanged,
    DeliveryUpdated,
    Event,
    LinkAttached,
    LinkDetached,
    MessageReceived,
    SessionEnded,
)
from broker.engine.link import Link
from broker.engine.sasl import SaslClient
from broker.engine.session import Session
from broker.errors import Condition
from broker.framing import NEED_DATA, FrameReader, ProtocolHeader, decode_frame_body
from broker.gateway.core import ATTACH_WAIT, Gateway
from broker.gateway.identity import Login
from broker.gateway.routes import LinkRoute
from broker.gateway.upstream import UpstreamNode

NODE = UpstreamNode("rabbit-1", 5672, user="svc", password="secret")


def body(text: str, **properties: Any) -> bytes:
    props = encode_section(Properties(**properties)) if properties else b""
    return props + encode_section(AmqpValue(text))


class Net:
    """An application, the gateway and an upstream, wired in memory."""

    def __init__(self, *, upstream: Any = None, gateway_config: Config | None = None,
                 user: str | None = None, password: str = "", max_frame_size: int = 65536,
                 broker_config: Config | None = None) -> None:
        self.now = 0.0
        self.broker = Container(broker_config or Config(users={"svc": "secret"},
                                                         allow_anonymous=False),
                                clock=lambda: self.now, wall_clock=lambda: 1e9 + self.now)
        self.gw = Gateway(gateway_config or Config(), [NODE], connections=1,
                          clock=lambda: self.now, wall_clock=lambda: 1e9 + self.now)
        # the gateway's handles are flushed as the driver flushes them: after
        # they were fed, or when woken (output made while the other side was fed)
        self.flushable: set[object] = set()
        self.wires: list[tuple[Any, Any]] = []  # (gateway's upstream handle, the upstream's)
        self.edge = self.gw.connection_made("browser", "ws",
                                            lambda: self.flushable.add(self.edge))
        self.flushable.add(self.edge)  # the driver's first tick wakes it
        self.upstream_side = upstream
        self.up: Any = None
        if not self.gw.passthrough:
            self.up, self.upstream_side = self.connect_upstream(upstream)
        self.app = Connection(container_id="app", client=SaslClient(user, password),
                              max_frame_size=max_frame_size)
        self.pump()

    def connect_upstream(self, upstream: Any = None, login: Any = None) -> tuple[Any, Any]:
        """A socket from the gateway to the upstream (what gateway_server dials)."""
        side = upstream if upstream is not None else \
            self.broker.connection_made("gw", "tcp", lambda: None)
        up: Any = None
        up = self.gw.upstream_made(NODE, lambda: self.flushable.add(up), login=login)
        self.flushable.add(up)
        self.wires.append((up, side))
        return up, side

    def pump(self) -> None:
        for _ in range(200):
            moved = False
            pairs = [(self.app, self.edge), (self.edge, self.app)]
            for up, side in self.wires:
                pairs += [(up, side), (side, up)]
            for src, dst in pairs:
                if src is self.edge or any(src is up for up, _ in self.wires):
                    if src not in self.flushable:
                        continue
                    self.flushable.discard(src)
                data = src.data_to_send()
                if data and not dst.done:
                    if isinstance(dst, Connection):
                        dst.receive_data(bytes(data), self.now)
                    else:
                        dst.receive_data(bytes(data))
                    self.flushable.add(dst)
                    moved = True
            if not moved:
                return
        raise AssertionError("the peers never went quiet")

    def later(self, seconds: float) -> None:
        """Time passes; the server's housekeeping tick runs."""
        self.now += seconds
        self.gw.housekeeping()
        self.pump()

    def carry(self, src: Any, dst: Any) -> None:
        """One direction, once: what `src` has written reaches `dst`."""
        self.flushable.discard(src)
        data = src.data_to_send()
        self.flushable.add(dst)
        if data:
            if isinstance(dst, Connection):
                dst.receive_data(bytes(data), self.now)
            else:
                dst.receive_data(bytes(data))

    def events(self) -> list[Event]:
        out = []
        while (e := self.app.next_event()) is not None:
            out.append(e)
        return out

    def session(self) -> Session:
        session = self.app.begin()
        self.pump()
        return session

    def receiver(self, session: Session, address: str, **kw: Any) -> Link:
        link = session.attach(name=f"r-{address}", role=Role.RECEIVER,
                              source=Source(address=address, **kw), target=Target())
        self.pump()
        return link

    def sender(self, session: Session, address: str | None, name: str = "s") -> Link:
        link = session.attach(name=name, role=Role.SENDER, source=Source(),
                              target=Target(address=address))
        self.pump()
        return link

    def broker_sessions(self) -> list[Session]:
        """The upstream broker's sessions with the gateway."""
        return [s for up, side in self.wires for s in side.conn.local_sessions.values()]

    def queue(self, name: str) -> Any:
        return self.broker.registry.nodes[name]


def received(events: list[Event]) -> list[Any]:
    return [e.delivery for e in events if isinstance(e, MessageReceived)]


def texts(deliveries: list[Any]) -> list[object]:
    return [Message.parse(d.payload).body[0].value for d in deliveries]  # type: ignore[attr-defined]


def test_publish_and_consume_through_the_gateway() -> None:
    net = Net()
    session = net.session()
    sender = net.sender(session, "/queues/q")
    events = net.events()
    assert any(isinstance(e, LinkAttached) and e.link is sender for e in events)
    assert sender.link_credit > 0, "the upstream's credit reached the application"
    d = sender.send(body("one"), settled=False, tag=b"tag-1")
    net.pump()
    (update,) = [e for e in net.events() if isinstance(e, DeliveryUpdated)]
    assert update.delivery is d and isinstance(update.state, Accepted) and update.settled
    assert net.queue("q").depth == 1, "accepted by the upstream, stored there"

    receiver = net.receiver(session, "/queues/q")
    receiver.flow(10)
    net.pump()
    (got,) = received(net.events())
    assert texts([got]) == ["one"]
    assert got.payload.endswith(body("one")), "the bare message as sent"
    receiver.settle(got, Accepted())
    net.pump()
    assert net.queue("q").depth == 0 and net.queue("q").unacked == 0


def test_the_upstream_sends_no_more_than_the_client_granted() -> None:
    net = Net()
    session = net.session()
    sender = net.sender(session, "/queues/q")
    for i in range(10):
        sender.send(body(f"m{i}"), settled=True)
    net.pump()
    receiver = net.receiver(session, "/queues/q")
    receiver.flow(3)
    net.pump()
    assert texts(received(net.events())) == ["m0", "m1", "m2"]
    route = _route_of(net, receiver)
    assert route.upstream.link_credit == 0 and not route.pending
    assert net.queue("q").depth == 7
    receiver.flow(2)
    net.pump()
    assert texts(received(net.events())) == ["m3", "m4"]


def _route_of(net: Net, app_link: Link) -> LinkRoute:
    for session_route in net.edge.sessions.values():
        for route in session_route.links:
            if route.client.name == app_link.name and route.client.role is not app_link.role:
                return route
    raise AssertionError("no route")


@pytest.mark.parametrize("credit", [5, 2], ids=["more-than-queued", "spent-by-messages"])
def test_a_drain_is_answered_end_to_end(credit: int) -> None:
    """Two messages queued, a drain with credit 5, or with credit 2: then the
    upstream sends both and answers the drain with a flow that moves no count,
    and that answer reaches the client too (it was lost once, and a rhea
    drain hung)."""
    net = Net()
    session = net.session()
    sender = net.sender(session, "/queues/q")
    sender.send(body("a"), settled=True)
    sender.send(body("b"), settled=True)
    receiver = net.receiver(session, "/queues/q")
    net.events()
    receiver.flow(credit, drain=True)
    net.pump()
    events = net.events()
    assert texts(received(events)) == ["a", "b"]
    assert CreditChanged(receiver) in events, "the drain's answer reached the application"
    assert (receiver.link_credit, receiver.delivery_count) == (0, credit)


def test_the_gateway_settles_first_where_it_receives() -> None:
    """A client asking rcv-settle-mode second is answered first, as RabbitMQ
    answers: as a sender's receiver (its messages) and as the upstream's (the
    messages for it), the gateway never owes a settlement it must wait for."""
    net = Net()
    session = net.session()
    sender = session.attach(name="s", role=Role.SENDER, source=Source(),
                            target=Target(address="/queues/q"), rcv_settle_mode=1)
    receiver = session.attach(name="r", role=Role.RECEIVER, source=Source(address="/queues/q"),
                              target=Target(), rcv_settle_mode=1)
    net.pump()
    assert sender.remote_attach.rcv_settle_mode == 0
    assert receiver.remote_attach.rcv_settle_mode == 0
    (upstream_link,) = [link for s in net.broker_sessions() for link in s.links.values()
                        if link.name == "r"]
    assert upstream_link.rcv_settle_mode == 0, "asked first upstream"


def test_a_sending_client_is_answered_first_whatever_the_upstream_answers() -> None:
    """An upstream receiver answering rcv-settle-mode second settles second
    itself (the engine settles our copies after its outcomes); the client is
    still answered first, for the gateway settles its messages at once."""
    upstream = Connection(container_id="rabbit", users={"svc": "secret"}, allow_anonymous=False)
    net = Net(upstream=upstream)
    session = net.session()
    sender = session.attach(name="s", role=Role.SENDER, source=Source(),
                            target=Target(address="/queues/q"), rcv_settle_mode=1)
    net.pump()
    (attached,) = [e.link for e in upstream.take_events() if isinstance(e, LinkAttached)]
    assert attached.rcv_settle_mode == 1, "the client's request, for the upstream to decide"
    attached.accept(source=Source(), target=Target(address="/queues/q"), rcv_settle_mode=1)
    net.pump()
    assert sender.remote_attach.rcv_settle_mode == 0


def test_a_receiver_settling_second_all_the_same_gets_our_settlement() -> None:
    """A client that says its outcome without settling (as a receiver in
    rcv-settle-mode second does) and waits: the upstream has the outcome, and
    the client has our settlement."""
    net = Net()
    session = net.session()
    sender = net.sender(session, "/queues/q")
    sender.send(body("m"), settled=False)
    receiver = net.receiver(session, "/queues/q")
    net.events()
    receiver.flow(1)
    net.pump()
    (delivery,) = received(net.events())
    session.write(Disposition(role=Role.RECEIVER, first=delivery.delivery_id, settled=False,
                              state=Accepted()))
    net.pump()
    assert net.queue("q").depth == 0 and net.queue("q").unacked == 0, "acknowledged upstream"
    assert delivery.remote_settled, "and settled by us, the sender"
    assert not receiver.unsettled


def test_multi_frame_messages_cross_in_both_directions() -> None:
    net = Net(max_frame_size=4096)  # the application's frames are small
    session = net.session()
    sender = net.sender(session, "/queues/big")
    big = body("x" * 300_000)
    sender.send(big, settled=False)
    net.pump()
    assert any(isinstance(e, DeliveryUpdated) for e in net.events())
    receiver = net.receiver(session, "/queues/big")
    receiver.flow(1)
    net.pump()
    (got,) = received(net.events())
    assert got.payload.endswith(big), "the bare message unchanged (the upstream adds a header)"


def test_outcomes_other_than_accepted_go_back_as_they_were() -> None:
    net = Net()
    session = net.session()
    sender = net.sender(session, "/queues/q")
    sender.send(body("x"), settled=True)
    receiver = net.receiver(session, "/queues/q")
    receiver.flow(1)
    net.pump()
    (first,) = received(net.events())
    receiver.settle(first, Released())
    net.pump()
    assert net.queue("q").depth == 1, "released: back in the upstream's queue"
    receiver.flow(1)
    net.pump()
    (again,) = received(net.events())
    receiver.settle(again, Rejected())
    net.pump()
    assert net.queue("q").depth == 0


def test_a_refused_attach_carries_the_upstreams_condition() -> None:
    net = Net(broker_config=Config(users={"svc": "secret"}, allow_anonymous=False,
                                   auto_create=False))
    session = net.session()
    receiver = net.receiver(session, "/queues/missing")
    events = net.events()
    (detached,) = [e for e in events if isinstance(e, LinkDetached)]
    assert detached.link is receiver
    assert detached.error.condition == Condition.NOT_FOUND.value  # type: ignore[union-attr]
    assert receiver.remote_attach.source is None, "refused the spec's way: a null source"
    assert net.edge.sessions[next(iter(net.edge.sessions))].links == set()


def test_a_presettled_publish_stays_presettled() -> None:
    net = Net()
    session = net.session()
    sender = net.sender(session, "/queues/q")
    sender.send(body("fire and forget"), settled=True)
    net.pump()
    assert not any(isinstance(e, DeliveryUpdated) for e in net.events())
    assert net.queue("q").depth == 1


def test_delivery_tags_pass_through() -> None:
    net = Net()
    session = net.session()
    sender = net.sender(session, "/queues/q")
    sender.send(body("t"), settled=False, tag=b"my-own-tag")
    net.pump()
    route = _route_of(net, sender)
    (outcome,) = [e for e in net.events() if isinstance(e, DeliveryUpdated)]
    assert outcome.delivery.tag == b"my-own-tag"
    assert route.upstream.session.outgoing_unsettled == {}, "settled upstream too"
    receiver = net.receiver(session, "/queues/q")
    receiver.flow(1)
    net.pump()
    (got,) = received(net.events())
    # the upstream (this broker) tags its first delivery on a link with 16 bytes of 0
    assert got.tag == bytes(16), "the upstream's tag reaches the application"


def test_an_upstream_that_goes_away_ends_the_links_with_connection_forced() -> None:
    net = Net()
    session = net.session()
    receiver = net.receiver(session, "/queues/q")
    sender = net.sender(session, "/queues/q")
    net.events()
    net.up.connection_lost()
    net.pump()
    events = net.events()
    detached = {e.link: e.error for e in events if isinstance(e, LinkDetached)}
    assert set(detached) == {receiver, sender}
    assert {e.condition for e in detached.values() if e} == {Condition.CONNECTION_FORCED.value}
    assert "went away" in (detached[receiver].description or "")  # type: ignore[union-attr]
    # the session itself stays; a new attach waits for an upstream, then is refused
    again = net.receiver(session, "/queues/q")
    assert net.events() == [], "waiting for an upstream connection"
    net.later(ATTACH_WAIT)
    (refused,) = [e for e in net.events() if isinstance(e, LinkDetached)]
    assert refused.link is again
    assert refused.error.condition == Condition.CONNECTION_FORCED.value  # type: ignore[union-attr]


def test_an_attach_waits_for_the_upstream_to_come_back() -> None:
    net = Net()
    session = net.session()
    sender = net.sender(session, "/queues/q")
    sender.send(body("before"), settled=False)
    net.pump()
    net.up.connection_lost()
    net.pump()
    net.events()
    receiver = net.receiver(session, "/queues/q")
    net.later(ATTACH_WAIT / 2)
    assert not [e for e in net.events() if isinstance(e, LinkDetached)]
    net.connect_upstream()  # the gateway reconnected
    net.pump()
    assert LinkAttached(receiver) in net.events()
    receiver.flow(1)
    net.pump()
    assert texts(received(net.events())) == ["before"], "the accepted message is still there"


def test_an_upstream_session_end_ends_the_clients_session_with_its_error() -> None:
    upstream = Connection(container_id="rabbit", users={"svc": "secret"}, allow_anonymous=False)
    net = Net(upstream=upstream)
    session = net.session()
    receiver = session.attach(name="r", role=Role.RECEIVER,
                              source=Source(address="/queues/none"), target=Target())
    net.pump()
    # RabbitMQ's way with an attach to a missing queue: the whole session ends
    (upstream_session,) = upstream.sessions.values()
    upstream_session.end(amqp_error(Condition.NOT_FOUND, "no queue 'none' in vhost '/'"))
    net.pump()
    events = net.events()
    ended = [e for e in events if isinstance(e, SessionEnded)]
    assert [e.session for e in ended] == [session]
    assert ended[0].error.condition == Condition.NOT_FOUND.value  # type: ignore[union-attr]
    assert any(isinstance(e, LinkDetached) and e.link is receiver for e in events)
    assert net.edge.sessions == {}
    # a new session gets a new upstream session
    other = net.session()
    net.sender(other, "/queues/q")
    assert len(upstream.sessions) == 1


def test_edge_permissions_refuse_before_anything_goes_upstream() -> None:
    config = Config(users={"reader": "pw"}, allow_anonymous=False,
                    permissions={"reader": ("", "", "^q$")})
    net = Net(gateway_config=config, user="reader", password="pw")
    session = net.session()
    receiver = net.receiver(session, "/queues/secret")
    (detached,) = [e for e in net.events() if isinstance(e, LinkDetached)]
    assert detached.link is receiver
    assert detached.error.condition == Condition.UNAUTHORIZED_ACCESS.value  # type: ignore[union-attr]
    assert net.up.conn.local_sessions == {}, "nothing was attached upstream"
    net.receiver(session, "/queues/q")
    assert not [e for e in net.events() if isinstance(e, LinkDetached)]
    sender = net.sender(session, "/queues/q")
    assert [e.link for e in net.events() if isinstance(e, LinkDetached)] == [sender]


def test_an_anonymous_relay_checks_each_messages_target() -> None:
    config = Config(users={"app": "pw"}, allow_anonymous=False,
                    permissions={"app": ("", "^allowed$", "")})
    net = Net(gateway_config=config, user="app", password="pw")
    session = net.session()
    relay = net.sender(session, None, name="relay")
    net.events()
    ok = relay.send(body("in", to="/queues/allowed"), settled=False)
    refused = relay.send(body("out", to="/queues/other"), settled=False)
    net.pump()
    outcomes = {e.delivery: e.state for e in net.events() if isinstance(e, DeliveryUpdated)}
    assert isinstance(outcomes[ok], Accepted)
    assert isinstance(outcomes[refused], Rejected)
    assert outcomes[refused].error.condition == Condition.UNAUTHORIZED_ACCESS.value
    assert net.queue("allowed").depth == 1 and "other" not in net.broker.registry.nodes


def test_the_client_closing_ends_its_upstream_sessions_and_requeues() -> None:
    net = Net()
    session = net.session()
    sender = net.sender(session, "/queues/q")
    sender.send(body("keep me"), settled=True)
    receiver = net.receiver(session, "/queues/q")
    receiver.flow(1)
    net.pump()
    assert len(received(net.events())) == 1
    assert net.queue("q").unacked == 1
    net.app.close()
    net.pump()
    assert net.up.conn.local_sessions == {}
    assert net.queue("q").depth == 1, "unsettled: back in the upstream's queue"


def test_lowered_credit_holds_what_was_in_flight() -> None:
    net = Net()
    session = net.session()
    sender = net.sender(session, "/queues/q")
    for i in range(4):
        sender.send(body(f"m{i}"), settled=True)
    net.pump()
    receiver = net.receiver(session, "/queues/q")
    net.events()
    receiver.flow(4)
    net.carry(net.app, net.edge)
    net.carry(net.up, net.upstream_side)  # the upstream sends 4, still on the wire...
    receiver.flow(1)  # ...when the application lowers its credit to 1
    net.carry(net.app, net.edge)
    net.carry(net.upstream_side, net.up)
    route = _route_of(net, receiver)
    assert len(route.pending) == 3, "held: credit allowed them, the client no longer does"
    net.pump()
    assert texts(received(net.events())) == ["m0"]
    receiver.flow(3)
    net.pump()
    assert texts(received(net.events())) == ["m1", "m2", "m3"], "in order, none lost"
    assert not route.pending and route.upstream.link_credit == 0


# -- passthrough: each client's own credentials upstream ------------------------------


def passthrough_net(user: str, password: str) -> Net:
    broker = Config(users={"alice": "pw", "bob": "pw2"}, allow_anonymous=False)
    net = Net(gateway_config=Config(upstream_auth="passthrough"), broker_config=broker,
              user=user, password=password)
    net.dialed = []  # type: ignore[attr-defined]
    net.gw.dial = lambda login: net.dialed.append(login)  # type: ignore[attr-defined]
    return net


def test_passthrough_presents_the_clients_own_login_upstream() -> None:
    net = passthrough_net("alice", "pw")
    session = net.session()
    net.events()
    sender = net.sender(session, "/queues/q")
    assert net.dialed == [Login("alice", "pw")]  # type: ignore[attr-defined]
    assert net.events() == [], "waiting for alice's own connection"
    net.connect_upstream(login=Login("alice", "pw"))
    net.pump()
    assert LinkAttached(sender) in net.events()
    (upstream_user,) = [h.user for h in net.broker.connections if h.opened]
    assert upstream_user == "alice", "the upstream sees alice, not a service account"
    sender.send(body("mine"), settled=False)
    net.pump()
    assert any(isinstance(e, DeliveryUpdated) and isinstance(e.state, Accepted)
               for e in net.events())


def test_passthrough_closes_a_client_the_upstream_refuses() -> None:
    net = passthrough_net("alice", "wrong")
    session = net.session()
    net.sender(session, "/queues/q")
    (login,) = net.dialed  # type: ignore[attr-defined]
    net.connect_upstream(login=login)
    net.pump()
    assert net.app.done, "the client's connection is closed"
    closed = [e for e in net.events() if type(e).__name__ == "ConnectionClosed"]
    assert closed and closed[0].error.condition == Condition.UNAUTHORIZED_ACCESS.value  # type: ignore[attr-defined]
    assert "refused the login of user 'alice'" in closed[0].error.description  # type: ignore[attr-defined]


def test_a_dynamic_source_gets_the_upstreams_address() -> None:
    net = Net()
    session = net.session()
    link = session.attach(name="replies", role=Role.RECEIVER,
                          source=Source(dynamic=True), target=Target())
    net.pump()
    assert LinkAttached(link) in net.events()
    address = link.remote_attach.source.address  # type: ignore[union-attr]
    assert address.startswith("/queues/amq.gen-"), "named by the upstream, passed on as is"
    # a message sent to that address through the gateway reaches the link
    sender = net.sender(session, address, name="requests")
    sender.send(body("reply"), settled=True)
    link.flow(1)
    net.pump()
    assert texts(received(net.events())) == ["reply"]


def test_link_properties_and_capabilities_pass_both_ways() -> None:
    net = Net()
    session = net.session()
    link = session.attach(name="m", role=Role.SENDER, source=Source(),
                          target=Target(address="/management"),
                          properties={Symbol("paired"): True},
                          desired_capabilities=(Symbol("x-test"),))
    net.pump()
    assert LinkAttached(link) in net.events()
    (upstream_link,) = [lk for s in net.broker_sessions() for lk in s.links.values()]
    assert upstream_link.remote_attach.properties == {Symbol("paired"): True}
    assert upstream_link.remote_attach.desired_capabilities == (Symbol("x-test"),)
    # and the upstream's answer reaches the client as the upstream gave it
    assert link.remote_attach.properties == {Symbol("paired"): True}
    assert link.remote_attach.target.address == "/management"  # type: ignore[union-attr]


# -- found by the real clients of conformance/test_gateway.py --------------------------


def management_pair(net: Net, session: Session) -> tuple[Link, Link]:
    """RabbitMQ's /management link pair: two links of one name, attached at once."""
    props = {Symbol("paired"): True}
    sender = session.attach(name="management-link-pair", role=Role.SENDER, source=Source(),
                            target=Target(address="/management"), properties=props,
                            snd_settle_mode=1)
    receiver = session.attach(name="management-link-pair", role=Role.RECEIVER,
                              source=Source(address="/management"),
                              target=Target(address="/management"), properties=props)
    receiver.flow(10)
    net.pump()
    return sender, receiver


def request(subject: str, to: str, body: object = None) -> bytes:
    return (encode_section(Properties(message_id="req-1", to=to, subject=subject,
                                      reply_to="$me"))
            + encode_section(AmqpValue(body)))


def test_a_management_link_pair_attached_in_one_read() -> None:
    net = Net()
    session = net.session()
    sender, receiver = management_pair(net, session)
    events = net.events()
    assert LinkAttached(sender) in events and LinkAttached(receiver) in events
    assert not [e for e in events if isinstance(e, (LinkDetached, SessionEnded))]
    sender.send(request("PUT", "/queues/made", {"durable": True}), settled=True)
    net.pump()
    (reply,) = received(net.events())
    answer = Message.parse(reply.payload)
    assert answer.properties.subject == "201" and answer.properties.correlation_id == "req-1"  # type: ignore[union-attr]
    assert "made" in net.broker.registry.nodes


def test_credit_given_with_the_attach_waits_for_the_upstreams_answer() -> None:
    net = Net()
    session = net.session()
    receiver = session.attach(name="r", role=Role.RECEIVER, source=Source(address="/queues/q"),
                              target=Target())
    receiver.flow(5)  # in the same read as the attach, as proton and rhea send them
    net.carry(net.app, net.edge)
    route = _route_of(net, receiver)
    assert route.upstream.link_credit == 0, "no upstream credit before the upstream's attach"
    net.pump()
    assert route.upstream.link_credit == 5, "passed on once the upstream answered"
    sender = net.sender(session, "/queues/q")
    sender.send(body("x"), settled=True)
    net.pump()
    assert texts(received(net.events())) == ["x"]


def test_flows_on_a_session_not_yet_answered_carry_no_next_incoming_id() -> None:
    net = Net()
    upstream_session = net.up.conn.begin()
    link = upstream_session.attach(name="early", role=Role.RECEIVER,
                                   source=Source(address="/queues/q"), target=None)
    link.flow(1)
    frames = decode_all(bytes(net.up.conn.data_to_send()))
    (flow,) = [f for f in frames if isinstance(f, Flow)]
    assert flow.next_incoming_id is None, "§2.7.4: unset until the peer's begin"


def decode_all(data: bytes) -> list[object]:
    reader = FrameReader()
    reader._want_header = False  # frames only: the headers went long ago
    reader.feed(data)
    out = []
    while (item := reader.next()) is not NEED_DATA:
        if not isinstance(item, ProtocolHeader) and item.body:  # type: ignore[union-attr]
            out.append(decode_frame_body(item.body)[0])  # type: ignore[union-attr]
    return out


def test_a_management_request_refused_at_the_edge_is_answered_403() -> None:
    config = Config(users={"app": "pw"}, allow_anonymous=False,
                    permissions={"app": ("^mine$", ".*", ".*")})
    net = Net(gateway_config=config, user="app", password="pw")
    session = net.session()
    sender, _receiver = management_pair(net, session)
    net.events()
    sender.send(request("PUT", "/queues/theirs", {"durable": True}), settled=True)
    net.pump()
    (reply,) = received(net.events())
    answer = Message.parse(reply.payload)
    assert answer.properties.subject == "403"  # type: ignore[union-attr]
    assert answer.properties.correlation_id == "req-1"  # type: ignore[union-attr]
    assert "theirs" not in net.broker.registry.nodes, "nothing went upstream"
    sender.send(request("PUT", "/queues/mine", {"durable": True}), settled=True)
    net.pump()
    (reply,) = received(net.events())
    assert Message.parse(reply.payload).properties.subject == "201"  # type: ignore[union-attr]


def test_direct_reply_to_through_the_gateway() -> None:
    """RabbitMQ 4.2's Direct Reply-To (a dynamic source with the volatile-queue
    capability), as the upstream offers it: the address and the replies pass."""
    net = Net()
    session = net.session()
    replies = session.attach(
        name="replies", role=Role.RECEIVER, snd_settle_mode=1,
        source=Source(dynamic=True, capabilities=(Symbol("rabbitmq:volatile-queue"),),
                      expiry_policy=Symbol("link-detach")),
        target=Target())
    net.pump()
    assert LinkAttached(replies) in net.events()
    address = replies.remote_attach.source.address  # type: ignore[union-attr]
    assert "amq.rabbitmq.reply-to." in address
    replies.flow(5)
    relay = net.sender(session, None, name="responder")  # answers to each reply-to
    relay.send(body("the answer", to=address), settled=False)
    net.pump()
    assert texts(received(net.events())) == ["the answer"]


def test_stream_offset_specs_and_stream_filters_pass_through() -> None:
    net = Net(broker_config=Config(users={"svc": "secret"}, allow_anonymous=False,
                                   streams=(StreamConfig("s"),)))
    session = net.session()
    sender = net.sender(session, "/queues/s")
    for i, colour in enumerate(["red", "blue", "red", "green"]):
        annotations = encode_section(MessageAnnotations({Symbol("x-stream-filter-value"): colour}))
        sender.send(annotations + body(f"{colour}-{i}"), settled=True)
    net.pump()
    offset, stream_filter = Symbol("rabbitmq:stream-offset-spec"), Symbol("rabbitmq:stream-filter")
    reds = session.attach(name="reds", role=Role.RECEIVER, target=Target(), source=Source(
        address="/queues/s", filter={offset: Described(offset, "first"),
                                     stream_filter: Described(stream_filter, "red")}))
    reds.flow(10)
    late = session.attach(name="late", role=Role.RECEIVER, target=Target(), source=Source(
        address="/queues/s", filter={offset: Described(offset, 2)}))
    late.flow(10)
    net.pump()
    got: dict[str, list[object]] = {link.name: [] for link in (reds, late)}
    for e in net.events():
        if isinstance(e, MessageReceived):
            got[e.link.name] += texts([e.delivery])
    assert got == {"reds": ["red-0", "red-2"], "late": ["red-2", "green-3"]}
    assert stream_filter in reds.remote_attach.source.filter, "the upstream's echo reaches us"  # type: ignore[union-attr]


def test_an_upstream_sending_beyond_its_credit_is_held_not_refused() -> None:
    """RabbitMQ 3.10 overshoots a credit lowered while it sends; a client
    talking to it directly takes the extra messages, so the gateway holds them."""
    upstream = Connection(container_id="rabbit", users={"svc": "secret"}, allow_anonymous=False)
    net = Net(upstream=upstream)
    session = net.session()
    receiver = session.attach(name="r", role=Role.RECEIVER, source=Source(address="/queues/q"),
                              target=Target())
    net.pump()
    for e in list(upstream.events):
        if isinstance(e, LinkAttached):
            e.link.accept(source=e.link.remote_attach.source, target=e.link.remote_attach.target)
    upstream.events.clear()
    net.pump()
    receiver.flow(2)
    net.pump()
    (upstream_sender,) = [lk for s in upstream.local_sessions.values() for lk in s.links.values()]
    assert upstream_sender.link_credit == 2
    upstream_sender.link_credit = 5  # the upstream behaves as if it had more credit
    for i in range(5):
        upstream_sender.send(body(f"m{i}"), settled=True)
    net.pump()
    events = net.events()
    assert not [e for e in events if isinstance(e, LinkDetached)], "no transfer-limit-exceeded"
    assert texts(received(events)) == ["m0", "m1"], "the client gets what it granted"
    route = _route_of(net, receiver)
    assert len(route.pending) == 3
    receiver.flow(3)
    net.pump()
    assert texts(received(net.events())) == ["m2", "m3", "m4"], "and the rest when it grants more"
