"""The container: engine events → queues, tested through the bytes a client sends.

Plain synchronous objects: a `Container` with injected clocks, one
`ConnectionHandle` per client, a scripted `Peer` on each.
"""

from __future__ import annotations

from typing import Any

import pytest
from engine.peer import (
    Out,
    Peer,
    bodies,
    condition,
    deliveries,
    frame,
    frame_sizes,
    kinds,
    messages,
    of,
    one,
)

from broker.codec.messaging import (
    Accepted,
    Header,
    Message,
    Modified,
    Properties,
    Received,
    Rejected,
    Released,
    Source,
    Target,
)
from broker.codec.performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Flow,
    Open,
    RcvSettleMode,
    Role,
    SndSettleMode,
    Transfer,
)
from broker.codec.types import Described, Symbol, Timestamp
from broker.config import Config, StreamConfig
from broker.container import Container
from broker.nodes.base import Entry
from broker.nodes.queue import Queue
from broker.nodes.stream import Stream

NOW = 1_700_000_000.0  # wall clock at the start of each test
# what the router stamps on a message published to /queues/q (RabbitMQ's annotations)
ROUTED_TO_Q = {Symbol("x-exchange"): "", Symbol("x-routing-key"): "q"}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Broker:
    """A container with fake clocks, handing out connected clients."""

    def __init__(self, **config: Any) -> None:
        self.clock = Clock(0.0)
        self.wall = Clock(NOW)
        self.container = Container(Config(**config), clock=self.clock, wall_clock=self.wall)
        self.wakes: dict[str, int] = {}

    def client(self, name: str = "client", **open_kwargs: Any) -> Peer:
        self.wakes[name] = 0

        def wake() -> None:
            self.wakes[name] += 1

        peer = Peer(self.container.connection_made(name, "test", wake))
        out = peer.connect(container_id=name, **open_kwargs)
        assert kinds(out) == [bytes, Open]
        assert kinds(peer.begin()) == [Begin]
        return peer

    def queue(self, name: str) -> Queue:
        node = self.container.registry.get(name)
        assert node is not None, f"no queue {name!r}"
        return node


def msg(body: bytes, **kwargs: Any) -> Message:
    return Message.create(body, **kwargs)


def publisher(peer: Peer, handle: int = 0, address: object = "q") -> list[Out]:
    out = peer.attach_sender(handle, address)
    assert kinds(out) == [Attach, Flow]
    return out


def consumer(peer: Peer, handle: int = 1, address: object = "q", credit: int | None = None,
             **kwargs: Any) -> list[Out]:
    out = peer.attach_receiver(handle, address, **kwargs)
    assert kinds(out) == [Attach]
    if credit is not None:
        out += peer.flow(handle, link_credit=credit)
    return out


def publish(peer: Peer, handle: int, *items: bytes | Message) -> list[object]:
    """Send messages; return the outcome of each (None for no disposition)."""
    states = []
    for item in items:
        delivery_id = peer.next_delivery_id.get(0, 0)
        out = peer.send(handle, item)
        found = [d for d in of(out, Disposition)
                 if d.first <= delivery_id <= (d.last if d.last is not None else d.first)]
        states.append(found[0].state if found else None)
    return states


def body_of(message: Message) -> bytes:
    (section,) = message.body
    return section.value  # type: ignore[attr-defined,no-any-return]


# -- attach ---------------------------------------------------------------------------


def test_receiver_attach_echoes_the_source() -> None:
    broker = Broker()
    peer = broker.client()
    out = peer.attach_receiver(5, "/queues/q", name="c1", target=Target(address="mine"))
    attach = one(out, Attach)
    assert (attach.name, attach.handle, attach.role) == ("c1", 0, Role.SENDER)
    assert attach.source.address == "/queues/q"
    assert attach.source.default_outcome == Released()
    assert attach.source.distribution_mode == Symbol("move")
    assert Symbol("amqp:modified:list") in attach.source.outcomes
    assert attach.target == Target(address="mine")
    assert attach.initial_delivery_count == 0
    assert broker.queue("q").consumers, "the queue was created and has the consumer"


def test_sender_attach_echoes_the_target_and_grants_credit() -> None:
    broker = Broker(max_message_size=5000)
    peer = broker.client()
    out = peer.attach_sender(2, "q", name="p1")
    attach, flow = out[0].performative, out[1].performative
    assert (attach.name, attach.handle, attach.role) == ("p1", 0, Role.RECEIVER)
    assert attach.target.address == "q"
    assert attach.max_message_size == 5000
    assert (flow.handle, flow.link_credit, flow.delivery_count) == (0, 1000, 0)


def test_bare_and_v2_addresses_name_the_same_queue() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0, "/queues/my%20queue")
    consumer(peer, 1, "my queue", credit=5)
    publish(peer, 0, b"x")
    assert bodies(peer.received) == [b"x"]
    assert list(broker.container.registry.nodes) == ["my queue"]


def test_dynamic_receiver_gets_a_temporary_queue_deleted_on_close() -> None:
    broker = Broker()
    peer = broker.client()
    out = peer.attach_receiver(0, None, source=Source(dynamic=True))
    source = one(out, Attach).source
    assert source.dynamic
    assert source.address.startswith("/queues/amq.gen-")
    name = source.address[len("/queues/"):]
    assert broker.queue(name).temporary
    other = broker.client("other")
    publisher(other, 0, source.address)
    peer.flow(0, link_credit=1)
    assert publish(other, 0, b"reply") == [Accepted()]
    peer.read()
    assert bodies(peer.received) == [b"reply"]
    assert peer.detach(0) == [Out(0, Detach(handle=0, closed=True), b"")]
    assert broker.container.registry.get(name) is None


def test_dynamic_queue_is_deleted_when_the_connection_drops() -> None:
    broker = Broker()
    peer = broker.client()
    out = peer.attach_receiver(0, None, source=Source(dynamic=True))
    name = one(out, Attach).source.address[len("/queues/"):]
    peer.lost()
    assert broker.container.registry.get(name) is None


def test_two_dynamic_queues_have_different_names() -> None:
    broker = Broker()
    peer = broker.client()
    a = one(peer.attach_receiver(0, None, source=Source(dynamic=True)), Attach).source.address
    b = one(peer.attach_receiver(1, None, source=Source(dynamic=True)), Attach).source.address
    assert a != b


def test_unknown_queue_without_auto_create_refuses_a_receiver() -> None:
    broker = Broker(auto_create=False)
    peer = broker.client()
    out = peer.attach_receiver(0, "nope")
    assert kinds(out) == [Attach, Detach]
    assert out[0].performative.source is None
    assert out[1].performative.closed
    assert condition(out[1].performative) == "amqp:not-found"
    assert broker.container.registry.get("nope") is None
    assert peer.detach(0) == []


def test_unknown_queue_without_auto_create_refuses_a_sender() -> None:
    broker = Broker(auto_create=False)
    peer = broker.client()
    out = peer.attach_sender(0, "nope")
    assert kinds(out) == [Attach, Detach]
    assert out[0].performative.target is None
    assert condition(out[1].performative) == "amqp:not-found"


def test_declared_queue_works_without_auto_create() -> None:
    broker = Broker(auto_create=False, queues=("known",))
    peer = broker.client()
    publisher(peer, 0, "known")
    consumer(peer, 1, "/queues/known", credit=1)
    publish(peer, 0, b"hi")
    assert bodies(peer.received) == [b"hi"]


@pytest.mark.parametrize(("address", "expected"), [
    ("/exchanges/amq.topic", "amqp:invalid-field"),  # an exchange is not a source
    ("/topics/x", "amqp:invalid-field"),
    ("/queues/", "amqp:invalid-field"),
    ("/queues/a/b", "amqp:invalid-field"),
    ("/queues/%ff", "amqp:invalid-field"),
    ("", "amqp:invalid-field"),
])
def test_unusable_addresses_are_refused(address: str, expected: str) -> None:
    peer = Broker().client()
    out = peer.attach_receiver(0, address)
    assert kinds(out) == [Attach, Detach]
    assert condition(out[1].performative) == expected


def test_receiver_without_a_source_is_refused() -> None:
    peer = Broker().client()
    out = peer.attach(0, Role.RECEIVER, source=None, target=Target())
    assert kinds(out) == [Attach, Detach]
    assert condition(out[1].performative) == "amqp:invalid-field"


def test_dynamic_target_gets_a_temporary_queue() -> None:
    broker = Broker()
    peer = broker.client()
    out = peer.attach_sender(0, None, target=Target(dynamic=True))
    target = one(out, Attach).target
    assert target.dynamic and target.address.startswith("/queues/amq.gen-")
    assert publish(peer, 0, b"x") == [Accepted()]
    assert broker.queue(target.address[len("/queues/"):]).depth == 1


def test_consumer_detach_is_echoed_and_removes_the_consumer() -> None:
    broker = Broker()
    peer = broker.client()
    consumer(peer, 3, "q", credit=5)
    assert peer.detach(3, closed=True) == [Out(0, Detach(handle=0, closed=True), b"")]
    assert broker.queue("q").consumers == []
    publisher(peer, 0)
    assert publish(peer, 0, b"kept") == [Accepted()]
    assert broker.queue("q").depth == 1


# -- flow ------------------------------------------------------------------------------


def test_messages_flow_by_credit_in_order() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    assert publish(peer, 0, b"1", b"2", b"3") == [Accepted()] * 3
    consumer(peer, 1)
    assert of(peer.received, Transfer) == []
    out = peer.flow(1, link_credit=2)
    assert bodies(out) == [b"1", b"2"]
    out = peer.flow(1, link_credit=5)
    assert bodies(out) == [b"3"]
    assert broker.queue("q").depth == 0


def test_delivery_count_math_with_a_stale_flow() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, b"1", b"2", b"3")
    consumer(peer, 1)
    assert bodies(peer.flow(1, link_credit=2, delivery_count=0)) == [b"1", b"2"]
    # a flow still counting from 0 re-grants 2 in total: nothing is left to spend
    assert peer.flow(1, link_credit=2, delivery_count=0) == []
    assert bodies(peer.flow(1, link_credit=1, delivery_count=2)) == [b"3"]


def test_drain_with_messages_available() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, b"a", b"b")
    consumer(peer, 1)
    out = peer.flow(1, link_credit=5, drain=True)
    assert kinds(out) == [Transfer, Transfer, Flow]
    flow = out[2].performative
    assert (flow.handle, flow.delivery_count, flow.link_credit, flow.drain) == (1, 5, 0, True)


def test_drain_without_messages() -> None:
    broker = Broker()
    peer = broker.client()
    consumer(peer, 1)
    out = peer.flow(1, link_credit=10, delivery_count=0, drain=True)
    flow = one(out, Flow)
    assert (flow.handle, flow.delivery_count, flow.link_credit, flow.drain) == (0, 10, 0, True)
    publisher(peer, 0)
    publish(peer, 0, b"later")
    assert of(peer.received, Transfer) == [], "drained credit is gone"
    assert broker.queue("q").depth == 1


def test_drain_with_more_messages_than_credit() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, b"1", b"2", b"3")
    consumer(peer, 1)
    out = peer.flow(1, link_credit=2, drain=True)
    assert bodies(out) == [b"1", b"2"]
    assert broker.queue("q").depth == 1


def test_flow_echo_through_the_container() -> None:
    peer = Broker().client()
    consumer(peer, 1, credit=3)
    flow = one(peer.flow(1, link_credit=3, echo=True), Flow)
    assert (flow.handle, flow.link_credit, flow.delivery_count) == (0, 3, 0)


def test_publisher_credit_is_replenished() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    refills = []
    for i in range(1200):
        refills += of(peer.send(0, b"%d" % i), Flow)
    assert [f.link_credit for f in refills] == [1000, 1000]
    assert broker.queue("q").depth == 1200


# -- transfer -----------------------------------------------------------------------------


def test_multi_frame_publish_is_one_message() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    payload = msg(bytes(range(256)) * 10)
    out = peer.send(0, payload, chunk=100)
    assert one(out, Disposition).state == Accepted()
    consumer(peer, 1, credit=1)
    assert [Message.parse(p).bare for _, p in deliveries(peer.received)] == [payload.bare]


def test_aborted_publish_stores_nothing() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    peer.transfer(0, msg(b"x").payload[:3], more=True)
    assert peer.transfer(0, b"", aborted=True, continuation=True) == []
    assert broker.queue("q").depth == 0
    assert publish(peer, 0, b"next") == [Accepted()]


def test_settled_publish_gets_no_disposition() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    assert peer.send(0, b"fire-and-forget", settled=True) == []
    assert broker.queue("q").depth == 1


def test_message_exceeding_max_message_size_detaches_the_publisher() -> None:
    broker = Broker(max_message_size=1000)
    peer = broker.client()
    publisher(peer, 0)
    out = peer.send(0, msg(b"x" * 2000), chunk=300)
    assert kinds(out) == [Detach]
    assert out[0].performative.closed
    assert condition(out[0].performative) == "amqp:link:message-size-exceeded"
    assert broker.queue("q").depth == 0
    assert peer.detach(0) == []


def test_consumer_with_a_small_max_frame_size_gets_small_frames() -> None:
    broker = Broker()
    peer = broker.client(max_frame_size=512)
    sender = broker.client("sender")
    publisher(sender, 0)
    big = msg(bytes(range(251)) * 40, properties=Properties(message_id="big"))
    publish(sender, 0, big)
    start = len(peer.raw)
    consumer(peer, 1, credit=1)
    assert max(frame_sizes(bytes(peer.raw[start:]))) <= 512
    assert [Message.parse(p).bare for _, p in deliveries(peer.received)] == [big.bare]
    assert len(of(peer.received, Transfer)) > 10


def test_malformed_message_is_rejected_with_decode_error() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    out = peer.transfer(0, b"\x00\x53\x75\xa0\xff")  # a data section claiming 255 bytes
    state = one(out, Disposition).state
    assert isinstance(state, Rejected)
    assert str(state.error.condition) == "amqp:decode-error"
    assert broker.queue("q").depth == 0


# -- disposition -------------------------------------------------------------------------------


def consumed(broker: Broker, n: int, credit: int = 100) -> Peer:
    """A client that published n messages to q and consumed them, unsettled."""
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, *[b"m%d" % i for i in range(n)])
    consumer(peer, 1, credit=credit)
    assert len(deliveries(peer.received)) == min(n, credit)
    return peer


def test_disposition_range_accepts_first_to_last() -> None:
    broker = Broker()
    peer = consumed(broker, 4)
    q = broker.queue("q")
    assert q.unacked == 4
    assert peer.disposition(0, 2, settled=True, state=Accepted()) == []
    assert q.unacked == 1
    assert peer.disposition(3, state=Rejected()) == []
    assert (q.unacked, q.depth) == (0, 0)


def test_unsettled_outcome_is_settled_by_us() -> None:
    broker = Broker()
    peer = consumed(broker, 2)
    out = peer.disposition(0, 1, settled=False, state=Accepted())
    assert out == [Out(0, Disposition(role=Role.SENDER, first=0, last=1, settled=True,
                                      state=Accepted()), b"")]
    assert broker.queue("q").unacked == 0


def test_released_is_requeued_at_the_head_without_counting_a_failure() -> None:
    broker = Broker()
    peer = consumed(broker, 3, credit=1)
    assert bodies(peer.received) == [b"m0"]
    assert peer.disposition(0, state=Released()) == []
    assert broker.queue("q").depth == 3
    out = peer.flow(1, link_credit=3)
    ms = messages(out)
    assert [body_of(m) for m in ms] == [b"m0", b"m1", b"m2"]
    assert ms[0].header is not None
    assert (ms[0].header.delivery_count, ms[0].header.first_acquirer) == (0, False)
    assert ms[1].header.first_acquirer is True, "first deliveries say so, as RabbitMQ's do"


def test_settled_without_state_means_the_default_outcome_released() -> None:
    broker = Broker()
    peer = consumed(broker, 1, credit=1)
    peer.disposition(0, settled=True, state=None)
    assert bodies(peer.flow(1, link_credit=1)) == [b"m0"]


def test_settled_with_a_non_terminal_state_means_the_default_outcome() -> None:
    broker = Broker()
    peer = consumed(broker, 1, credit=1)
    peer.disposition(0, settled=True, state=Received(section_number=0, section_offset=0))
    assert broker.queue("q").unacked == 0
    assert bodies(peer.flow(1, link_credit=1)) == [b"m0"]


def test_unsettled_non_terminal_state_changes_nothing() -> None:
    broker = Broker()
    peer = consumed(broker, 1, credit=1)
    assert peer.disposition(0, settled=False,
                            state=Received(section_number=0, section_offset=3)) == []
    assert broker.queue("q").unacked == 1
    peer.disposition(0, settled=True, state=Accepted())
    assert broker.queue("q").unacked == 0


def test_modified_delivery_failed_counts_in_the_header() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, msg(b"x", header=Header(durable=True, priority=7, delivery_count=2)))
    consumer(peer, 1, credit=1)
    peer.disposition(0, state=Modified(delivery_failed=True,
                                       message_annotations={Symbol("x-reason"): "boom"}))
    (m,) = messages(peer.flow(1, link_credit=1))
    assert m.header == Header(durable=True, priority=7, first_acquirer=False, delivery_count=3)
    assert m.message_annotations == {**ROUTED_TO_Q, Symbol("x-reason"): "boom"}
    peer.disposition(1, state=Modified(delivery_failed=True))
    (m,) = messages(peer.flow(1, link_credit=1))
    assert m.header.delivery_count == 4
    assert m.message_annotations == {**ROUTED_TO_Q, Symbol("x-reason"): "boom"}


def test_modified_without_delivery_failed_does_not_count() -> None:
    broker = Broker()
    peer = consumed(broker, 1, credit=1)
    peer.disposition(0, state=Modified())
    (m,) = messages(peer.flow(1, link_credit=1))
    assert m.header.delivery_count == 0


def test_modified_undeliverable_here_goes_to_another_consumer() -> None:
    broker = Broker()
    a = broker.client("a")
    b = broker.client("b")
    publisher(a, 0)
    publish(a, 0, b"only-elsewhere")
    consumer(a, 1, credit=5)
    assert bodies(a.received) == [b"only-elsewhere"]
    a.disposition(0, state=Modified(undeliverable_here=True))
    assert of(a.received, Transfer)[1:] == [], "not redelivered to the same link"
    assert broker.queue("q").depth == 1
    publish(a, 0, b"next")
    assert bodies(a.received) == [b"only-elsewhere", b"next"], "later messages still come"
    consumer(b, 1, credit=5)
    assert bodies(b.received) == [b"only-elsewhere"]


def test_consumer_detach_requeues_unsettled_in_order() -> None:
    broker = Broker()
    a = consumed(broker, 3)
    a.disposition(1, state=Accepted())
    a.detach(1)
    q = broker.queue("q")
    assert (q.depth, q.unacked) == (2, 0)
    b = broker.client("b")
    consumer(b, 0, credit=5)
    assert bodies(b.received) == [b"m0", b"m2"]


def test_dropped_connection_requeues_unsettled_for_another_consumer_in_order() -> None:
    broker = Broker()
    b = broker.client("b")
    consumer(b, 0, credit=0)
    a = consumed(broker, 3, credit=2)
    # a got m0, m1 (unsettled); b has no credit yet, m2 waits
    assert broker.queue("q").unacked == 2
    assert a.lost() == []
    q = broker.queue("q")
    assert (q.depth, q.unacked) == (3, 0)
    out = b.flow(0, link_credit=10)
    ms = messages(out)
    assert [body_of(m) for m in ms] == [b"m0", b"m1", b"m2"]
    assert [m.header.delivery_count if m.header else 0 for m in ms] == [1, 1, 0]


def test_presettled_consumer_settles_on_send() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, b"1", b"2")
    consumer(peer, 1, credit=5, snd_settle_mode=SndSettleMode.SETTLED)
    assert [t.settled for t in of(peer.received, Transfer)] == [True, True]
    q = broker.queue("q")
    assert (q.depth, q.unacked) == (0, 0)
    peer.lost()
    assert q.depth == 0, "nothing to requeue"


# -- queue behaviour through the wire -----------------------------------------------------------


def test_competing_consumers_share_by_credit() -> None:
    broker = Broker()
    a = broker.client("a")
    b = broker.client("b")
    consumer(a, 0, credit=2)
    consumer(b, 0, credit=1)
    publisher(a, 1)
    publish(a, 1, *[b"%d" % i for i in range(5)])
    b.read()
    got_a, got_b = bodies(a.received), bodies(b.received)
    assert (len(got_a), len(got_b)) == (2, 1)
    assert sorted(got_a + got_b) == [b"0", b"1", b"2"]
    assert broker.queue("q").depth == 2
    assert broker.wakes["b"] > 0, "delivering on another connection wakes its writer"


def test_round_robin_between_consumers_with_credit() -> None:
    broker = Broker()
    a = broker.client("a")
    b = broker.client("b")
    consumer(a, 0, credit=10)
    consumer(b, 0, credit=10)
    publisher(a, 1)
    publish(a, 1, *[b"%d" % i for i in range(6)])
    b.read()
    assert bodies(a.received) == [b"0", b"2", b"4"]
    assert bodies(b.received) == [b"1", b"3", b"5"]


def test_ttl_expired_messages_are_never_delivered() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, msg(b"short", header=Header(ttl=1000)), msg(b"long", header=Header(ttl=60000)),
            b"forever")
    broker.wall.t = NOW + 2
    consumer(peer, 1, credit=10)
    assert bodies(peer.received) == [b"long", b"forever"]
    assert broker.queue("q").expired == 1


def test_absolute_expiry_time() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    past = msg(b"past", properties=Properties(absolute_expiry_time=Timestamp(int(NOW * 1000) - 1)))
    soon = msg(b"soon", properties=Properties(absolute_expiry_time=Timestamp(int(NOW * 1000) + 500)))
    later = msg(b"later", properties=Properties(absolute_expiry_time=Timestamp(int(NOW * 1000)
                                                                               + 5000)))
    assert publish(peer, 0, past, soon, later) == [Accepted()] * 3
    assert broker.queue("q").depth == 2, "an already expired message is accepted and dropped"
    broker.wall.t = NOW + 1
    consumer(peer, 1, credit=10)
    assert bodies(peer.received) == [b"later"]


def test_ttl_and_absolute_expiry_the_earlier_wins() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, msg(b"x", header=Header(ttl=100_000),
                         properties=Properties(absolute_expiry_time=int(NOW * 1000) + 1000)))
    broker.wall.t = NOW + 2
    consumer(peer, 1, credit=1)
    assert bodies(peer.received) == []


def test_max_length_reject_publish() -> None:
    broker = Broker(queue_max_length=2)
    peer = broker.client()
    publisher(peer, 0)
    states = publish(peer, 0, b"1", b"2", b"3")
    assert states[:2] == [Accepted(), Accepted()]
    assert isinstance(states[2], Rejected)
    assert str(states[2].error.condition) == "amqp:resource-limit-exceeded"
    consumer(peer, 1, credit=10)
    assert bodies(peer.received) == [b"1", b"2"]
    assert publish(peer, 0, b"4") == [Accepted()], "room again once consumed"


def test_max_length_drop_head() -> None:
    broker = Broker(queue_max_length=2, queue_overflow="drop-head")
    peer = broker.client()
    publisher(peer, 0)
    assert publish(peer, 0, b"1", b"2", b"3") == [Accepted()] * 3
    consumer(peer, 1, credit=10)
    assert bodies(peer.received) == [b"2", b"3"]
    assert broker.queue("q").dropped == 1


# -- anonymous relay ---------------------------------------------------------------------------


def test_anonymous_relay_routes_by_to() -> None:
    broker = Broker()
    peer = broker.client()
    assert Symbol("ANONYMOUS-RELAY") in one(peer.received, Open).offered_capabilities
    out = peer.attach_sender(0, None)
    assert one(out, Attach).target == Target(address=None)
    states = publish(peer, 0, msg(b"a", properties=Properties(to="/queues/qa")),
                     msg(b"b", properties=Properties(to="qb")))
    assert states == [Accepted(), Accepted()]
    assert broker.queue("qa").depth == 1 and broker.queue("qb").depth == 1


def test_anonymous_relay_with_a_null_target() -> None:
    broker = Broker()
    peer = broker.client()
    peer.attach(0, Role.SENDER, source=Source(), target=None)
    assert publish(peer, 0, msg(b"a", properties=Properties(to="q"))) == [Accepted()]


@pytest.mark.parametrize(("to", "expected"), [
    (None, "amqp:invalid-field"),
    ("/exchanges/no-such-exchange", "amqp:not-found"),
    ("/nowhere/x", "amqp:invalid-field"),
    ("/queues/%C3", "amqp:invalid-field"),
    (b"q", "amqp:invalid-field"),
])
def test_anonymous_relay_rejects_a_bad_to_and_stays_attached(to: object,
                                                            expected: str) -> None:
    broker = Broker()
    peer = broker.client()
    peer.attach_sender(0, None)
    properties = Properties(to=to) if to is not None else None
    (state,) = publish(peer, 0, msg(b"x", properties=properties))
    assert isinstance(state, Rejected)
    assert str(state.error.condition) == expected
    assert Detach not in kinds(peer.received)
    assert publish(peer, 0, msg(b"ok", properties=Properties(to="q"))) == [Accepted()]


def test_anonymous_relay_to_an_unknown_queue_without_auto_create() -> None:
    broker = Broker(auto_create=False)
    peer = broker.client()
    peer.attach_sender(0, None)
    (state,) = publish(peer, 0, msg(b"x", properties=Properties(to="ghost")))
    assert str(state.error.condition) == "amqp:not-found"


# -- connections ------------------------------------------------------------------------------


def test_shutdown_closes_every_connection_with_forced() -> None:
    broker = Broker()
    a = broker.client("a")
    b = broker.client("b")
    broker.container.shutdown()
    assert broker.container.connections == set()
    for peer in (a, b):
        assert condition(one(peer.read(), Close)) == "amqp:connection:forced"
        assert broker.wakes[peer.conn.peer] > 0
        assert not peer.done, "each waits for its peer's close"
    assert a.close() == []
    assert a.done


def test_peer_close_requeues_and_forgets_the_connection() -> None:
    broker = Broker()
    peer = consumed(broker, 2)
    assert kinds(peer.close()) == [Close]
    assert peer.done
    assert broker.container.connections == set()
    assert broker.queue("q").depth == 2


def test_handle_tick_uses_the_container_clock() -> None:
    broker = Broker(idle_time_out=10.0)
    peer = broker.client()
    assert peer.conn.tick() == 10.0
    broker.clock.t = 10.0
    peer.conn.tick()
    assert condition(one(peer.read(), Close)) == "amqp:resource-limit-exceeded"


def test_shutdown_requeues_unsettled_deliveries() -> None:
    broker = Broker()
    consumed(broker, 3)
    broker.container.shutdown()
    q = broker.queue("q")
    assert (q.depth, q.unacked) == (3, 0)


# -- session window ----------------------------------------------------------------------------


def test_dispatch_resumes_when_the_session_window_reopens() -> None:
    broker = Broker()
    peer = broker.client("slow")
    peer.end()
    peer.begin(0, incoming_window=2)
    publisher(peer, 0)
    publish(peer, 0, b"1", b"2", b"3", b"4", b"5")
    consumer(peer, 1, credit=10)
    assert bodies(peer.received) == [b"1", b"2"]
    assert broker.queue("q").depth == 3, "waiting messages stay in the queue"
    out = peer.flow(incoming_window=2)
    assert bodies(out) == [b"3", b"4"]
    out = peer.flow(incoming_window=100)
    assert bodies(out) == [b"5"]


def test_consumer_detaching_mid_message_gets_it_requeued_whole() -> None:
    broker = Broker()
    peer = broker.client("slow", max_frame_size=512)
    peer.end()
    peer.begin(0, incoming_window=1)
    publisher(peer, 0)
    big = msg(b"z" * 3000)
    publish(peer, 0, big)
    consumer(peer, 1, credit=1)
    assert [t.more for t in of(peer.received, Transfer)] == [True]
    peer.detach(1)
    other = broker.client("other")
    consumer(other, 0, credit=1)
    (m,) = messages(other.received)
    assert body_of(m) == b"z" * 3000


def test_attach_echo_fits_the_peers_max_frame_size() -> None:
    broker = Broker()
    peer = broker.client(max_frame_size=512)
    start = len(peer.raw)
    address = "q" * 400
    request = Attach(name="link", handle=1, role=Role.RECEIVER, source=Source(address=address),
                     target=Target())
    peer.attach_receiver(1, address, name="link")
    assert len(peer.raw) > start
    assert max(frame_sizes(bytes(peer.raw[start:]))) <= 512, (
        f"the peer's own attach was {len(frame(request))} bytes")


def test_dynamic_target_queue_is_deleted_when_its_link_closes() -> None:
    broker = Broker()
    peer = broker.client()
    target = one(peer.attach_sender(0, None, target=Target(dynamic=True)), Attach).target
    name = target.address[len("/queues/"):]
    assert broker.container.registry.get(name) is not None
    peer.detach(0, closed=True)
    assert broker.container.registry.get(name) is None


def test_closing_a_publisher_keeps_its_ordinary_queue() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, b"x")
    peer.detach(0)
    assert broker.queue("q").depth == 1


def test_housekeeping_trims_streams_by_age_without_traffic() -> None:
    wall = [1000.0]
    container = Container(Config(streams=(StreamConfig("s", max_age="10s"),)),
                          clock=lambda: 0.0, wall_clock=lambda: wall[0])
    stream = container.registry.get("s")
    assert isinstance(stream, Stream)
    stream.publish(Entry(Message.create(b"old")), wall[0])
    wall[0] += 11
    assert stream.depth == 1, "nothing trims before housekeeping runs"
    container.housekeeping()
    assert stream.depth == 0
    assert stream.first_offset == 1, "offsets are never reused"


def test_attach_echo_that_cannot_fit_refuses_the_link() -> None:
    broker = Broker()
    peer = broker.client(max_frame_size=512)
    replies = peer.attach_receiver(1, "q" * 700, name="link")
    attach = one(replies, Attach)
    assert attach.source is None, "refused: null source"
    assert condition(one(replies, Detach)) == "amqp:frame-size-too-small"
    assert max(frame_sizes(b"".join(frame(o.performative, o.channel) for o in replies))) <= 512


# -- review regressions -----------------------------------------------------------------


def test_drain_with_no_credit_left_still_answers_with_a_flow() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, b"1", b"2")
    consumer(peer, 1)
    out = peer.flow(1, link_credit=2, drain=True)
    assert bodies(out) == [b"1", b"2"]
    flows = [f for f in of(out, Flow) if f.handle is not None]
    assert flows and flows[-1].drain and flows[-1].link_credit == 0, (
        "the sender answers a drain with its flow even when the credit is already spent")
    assert flows[-1].delivery_count == 2


def test_a_non_owner_closing_its_link_keeps_the_temporary_queue() -> None:
    broker = Broker()
    client = broker.client("client")
    reply_to = one(client.attach_receiver(0, None, source=Source(dynamic=True)),
                   Attach).source.address
    client.flow(0, link_credit=10)
    server = broker.client("server")
    server.attach_sender(0, reply_to)
    server.detach(0, closed=True)  # the responder's link to the reply address closes
    server.attach_sender(1, reply_to)
    publish(server, 1, b"reply")
    assert bodies(client.read()) == [b"reply"]


def test_the_owner_closing_deletes_the_temporary_queue_and_detaches_others() -> None:
    broker = Broker()
    client = broker.client("client")
    reply_to = one(client.attach_receiver(0, None, source=Source(dynamic=True)),
                   Attach).source.address
    other = broker.client("other")
    other.attach_receiver(0, reply_to)
    client.detach(0, closed=True)
    assert condition(one(other.read(), Detach)) == "amqp:resource-deleted"
    late = broker.client("late")
    refused = late.attach_sender(0, reply_to)
    assert condition(one(refused, Detach)) == "amqp:not-found", (
        "a deleted temporary queue is not re-created by name")


def test_consuming_and_publishing_on_one_session_keep_their_delivery_ids_apart() -> None:
    broker = Broker()
    feeder = broker.client("feeder")
    publisher(feeder, 0, "q")
    publish(feeder, 0, b"for-me")
    peer = broker.client()
    consumer(peer, 1, "q", credit=10)  # the broker's delivery id 0 goes to the peer
    peer.attach_sender(0, "other-q")
    # the peer's own first delivery also has id 0; its link closes in the same write
    peer.feed(peer.transfer_frame(0, msg(b"x").payload) + frame(Detach(handle=0, closed=True)))
    peer.disposition(0, settled=True, state=Accepted())  # accepts what the broker sent
    peer.detach(1, closed=True)
    again = broker.client("again")
    assert bodies(consumer(again, 0, "q", credit=10)) == [], (
        "an accepted message must not be redelivered")


def test_attach_and_detach_in_one_write_are_answered_in_order() -> None:
    broker = Broker()
    peer = broker.client()
    request = Attach(name="l", handle=0, role=Role.RECEIVER, source=Source(address="q"),
                     target=Target())
    out = peer.feed(frame(request) + frame(Detach(handle=0, closed=True)))
    assert kinds(out) == [Attach, Detach]


def test_attach_and_end_in_one_write_send_nothing_after_end() -> None:
    broker = Broker()
    peer = broker.client()
    request = Attach(name="l", handle=0, role=Role.RECEIVER, source=Source(address="q"),
                     target=Target())
    out = peer.feed(frame(request) + frame(End()))
    assert kinds(out)[-1] is End


def test_transfer_before_credit_in_the_attach_write_detaches_cleanly() -> None:
    broker = Broker()
    peer = broker.client()
    request = Attach(name="p", handle=0, role=Role.SENDER, source=Source(),
                     target=Target(address="q"), initial_delivery_count=0)
    out = peer.feed(frame(request) + peer.transfer_frame(0, msg(b"early").payload))
    assert condition(one(out, Detach)) == "amqp:link:transfer-limit-exceeded"
    assert kinds(out)[:1] == [Attach]


def test_our_detach_does_not_leak_session_deliveries() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, b"a")
    consumer(peer, 1, credit=1)  # one unsettled delivery to the peer
    out = peer.transfer(1, msg(b"wrong way").payload)  # a transfer on our sending link
    assert condition(one(out, Detach)) == "amqp:not-allowed", "the broker detaches first"
    peer.detach(1, closed=True)
    (session,) = next(iter(broker.container.connections)).conn.sessions.values()
    assert session.outgoing_unsettled == {} and session.incoming_unsettled == {}


def test_consumers_never_get_messages_above_their_max_message_size() -> None:
    broker = Broker()
    small = broker.client("small")
    consumer(small, 0, credit=10, max_message_size=1000)
    big = broker.client("big")
    consumer(big, 0, credit=10)
    pub = broker.client("pub")
    publisher(pub, 0)
    publish(pub, 0, b"x" * 5000)
    assert bodies(small.read()) == []
    assert bodies(big.read()) == [b"x" * 5000]


def test_housekeeping_drops_expired_messages_nobody_reads() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0)
    publish(peer, 0, msg(b"short", header=Header(ttl=1000)), msg(b"long"))
    broker.wall.t += 2
    assert broker.queue("q").depth == 2
    broker.container.housekeeping()
    assert broker.queue("q").depth == 1


def stream_reader(broker: Broker, **attach: Any) -> tuple[Peer, list[Out]]:
    """A client that published 3 messages to stream s and reads it from first."""
    peer = broker.client()
    publisher(peer, 0, "s")
    publish(peer, 0, b"m0", b"m1", b"m2")
    spec = Described(Symbol("rabbitmq:stream-offset-spec"), "first")
    out = consumer(peer, 1, "s", credit=5, **attach,
                   source=Source(address="s", filter={Symbol("rabbitmq:stream-offset-spec"): spec}))
    return peer, of(out, Transfer)


def test_a_stream_reader_settling_first_leaves_nothing_tracked() -> None:
    """A stream keeps every message whatever its readers say, so their
    deliveries are not followed: their outcomes are dropped in the engine."""
    broker = Broker(streams=(StreamConfig("s"),))
    peer, transfers = stream_reader(broker)
    assert [(t.delivery_id, t.settled) for t in transfers] == [(0, False), (1, False), (2, False)]
    links = [link for conn in broker.container.connections for s in conn.conn.sessions.values()
             for link in s.links.values() if link.is_sender]
    assert [link.unsettled for link in links] == [{}]
    assert peer.disposition(0, 2, settled=True, state=Accepted()) == []
    # mode first: the reader settles its deliveries itself; we answer nothing
    assert peer.disposition(0, settled=False, state=Accepted()) == []
    assert bodies(peer.send(0, b"m3")) == [b"m3"]  # and the reader reads on


def test_a_stream_reader_settling_second_gets_our_settlement() -> None:
    broker = Broker(streams=(StreamConfig("s"),))
    peer, transfers = stream_reader(broker, rcv_settle_mode=RcvSettleMode.SECOND)
    assert len(transfers) == 3
    out = peer.disposition(0, 2, settled=False, state=Accepted())
    assert out == [Out(0, Disposition(role=Role.SENDER, first=0, last=2, settled=True,
                                      state=Accepted()), b"")]


def test_a_presettled_stream_reader_gets_settled_transfers() -> None:
    broker = Broker(streams=(StreamConfig("s"),))
    _, transfers = stream_reader(broker, snd_settle_mode=SndSettleMode.SETTLED)
    assert [t.settled for t in transfers] == [True, True, True]


def test_modified_annotations_never_touch_a_streams_shared_message() -> None:
    broker = Broker(streams=(StreamConfig("s"),))
    peer = broker.client()
    publisher(peer, 0, "s")
    publish(peer, 0, b"shared")
    spec = Described(Symbol("rabbitmq:stream-offset-spec"), "first")
    consumer(peer, 1, "s", credit=5,
             source=Source(address="s", filter={Symbol("rabbitmq:stream-offset-spec"): spec}))
    peer.disposition(0, settled=True,
                     state=Modified(message_annotations={Symbol("x-mine"): "changed"}))
    other = broker.client("other")
    out = consumer(other, 0, "s", credit=5,
                   source=Source(address="s", filter={Symbol("rabbitmq:stream-offset-spec"): spec}))
    (m,) = messages(out)
    assert Symbol("x-mine") not in (m.message_annotations or {})
