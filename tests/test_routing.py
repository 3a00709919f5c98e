"""Exchanges, dead-lettering, queue lifecycles and the /management link pair,
through the bytes a client sends (the container's Broker/Peer helpers)."""

from __future__ import annotations

import uuid

from engine.peer import Peer, bodies, condition, kinds, messages, of, one
from test_container import NOW, Broker, consumer, msg, publish, publisher

from broker.codec.messaging import (
    Accepted,
    AmqpValue,
    Header,
    Message,
    Modified,
    Properties,
    Rejected,
    Released,
    Source,
    Target,
)
from broker.codec.performatives import Attach, Detach, Open, Transfer
from broker.codec.types import AmqpType, Array, Described, Symbol, UInt, ULong

X_EXCHANGE, X_ROUTING_KEY = Symbol("x-exchange"), Symbol("x-routing-key")


def setup(broker: Broker, *queues: str, **arguments: dict[str, object]) -> None:
    for name in queues:
        broker.container.admin.declare_queue(name, arguments=arguments.get(name), now=NOW)


# -- exchanges -------------------------------------------------------------------------


def test_topic_exchange_routes_by_pattern_and_annotates() -> None:
    broker = Broker()
    setup(broker, "eu", "all")
    admin = broker.container.admin
    admin.bind("amq.topic", "eu", key="orders.eu.*")
    admin.bind("amq.topic", "all", key="orders.#")
    peer = broker.client()
    publisher(peer, 0, "/exchanges/amq.topic/orders.eu.fr")
    assert publish(peer, 0, b"1") == [Accepted()]
    consumer(peer, 1, "/queues/eu", credit=5)
    consumer(peer, 2, "/queues/all", credit=5)
    got = messages(peer.received)
    assert [m.message_annotations for m in got] == [
        {X_EXCHANGE: "amq.topic", X_ROUTING_KEY: "orders.eu.fr"}] * 2


def test_a_message_reaching_a_queue_twice_is_stored_once() -> None:
    broker = Broker()
    setup(broker, "q")
    admin = broker.container.admin
    admin.declare_exchange("fan", type="fanout")
    admin.bind("amq.topic", "q", key="a.*")
    admin.bind("amq.topic", "q", key="#")
    admin.bind("amq.topic", "fan", destination_kind="exchange", key="a.b")
    admin.bind("fan", "q")
    peer = broker.client()
    publisher(peer, 0, "/exchanges/amq.topic/a.b")
    assert publish(peer, 0, b"x") == [Accepted()]
    assert broker.queue("q").depth == 1


def test_unroutable_message_is_released_and_unknown_exchange_refused() -> None:
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0, "/exchanges/amq.direct/nobody")
    assert publish(peer, 0, b"x") == [Released()]
    out = peer.attach_sender(1, "/exchanges/no-such-exchange/k")
    assert kinds(out) == [Attach, Detach]
    assert condition(out[1].performative) == "amqp:not-found"


def test_exchange_without_key_and_fanout_to_several_queues() -> None:
    broker = Broker()
    setup(broker, "a", "b")
    admin = broker.container.admin
    admin.declare_exchange("fan", type="fanout")
    admin.bind("fan", "a")
    admin.bind("fan", "b")
    peer = broker.client()
    publisher(peer, 0, "/exchanges/fan")
    assert publish(peer, 0, b"x") == [Accepted()]
    assert (broker.queue("a").depth, broker.queue("b").depth) == (1, 1)
    consumer(peer, 1, "/queues/a", credit=1)
    (m,) = messages(peer.received)
    assert m.message_annotations == {X_EXCHANGE: "fan", X_ROUTING_KEY: ""}


def test_relay_to_an_exchange_and_x_cc() -> None:
    broker = Broker()
    setup(broker, "main", "copy")
    admin = broker.container.admin
    admin.bind("amq.direct", "main", key="k1")
    admin.bind("amq.direct", "copy", key="k2")
    peer = broker.client()
    publisher(peer, 0, None)
    cc = {Symbol("x-cc"): Array(AmqpType.STRING, ["k2"])}
    m = msg(b"x", properties=Properties(to="/exchanges/amq.direct/k1"), message_annotations=cc)
    assert publish(peer, 0, m) == [Accepted()]
    assert (broker.queue("main").depth, broker.queue("copy").depth) == (1, 1)


def test_full_queue_rejects_with_queue_and_reason() -> None:
    broker = Broker()
    setup(broker, "small", small={"x-max-length": 1, "x-overflow": "reject-publish"})
    peer = broker.client()
    publisher(peer, 0, "/queues/small")
    first, second = publish(peer, 0, b"1", b"2")
    assert first == Accepted()
    assert isinstance(second, Rejected)
    assert second.error.condition == "amqp:resource-limit-exceeded"
    assert second.error.info == {Symbol("queue"): "small", Symbol("reason"): "maxlen"}


def test_deleted_exchange_rejects_later_publishes() -> None:
    broker = Broker()
    broker.container.admin.declare_exchange("gone")
    peer = broker.client()
    publisher(peer, 0, "/exchanges/gone/k")
    broker.container.admin.delete_exchange("gone")
    (state,) = publish(peer, 0, b"x")
    assert isinstance(state, Rejected) and state.error.condition == "amqp:not-found"


def test_deleting_a_queue_detaches_its_consumers() -> None:
    broker = Broker()
    setup(broker, "q")
    peer = broker.client()
    consumer(peer, 1, "/queues/q", credit=5)
    assert broker.container.admin.delete_queue("q") == 0
    detach = one(peer.read(), Detach)
    assert condition(detach) == "amqp:resource-deleted"


# -- dead-lettering --------------------------------------------------------------------


def dlx_broker() -> Broker:
    broker = Broker()
    admin = broker.container.admin
    admin.declare_exchange("dlx", type="fanout")
    setup(broker, "dlq", "work", work={"x-dead-letter-exchange": "dlx",
                                       "x-dead-letter-routing-key": "dead"})
    admin.bind("dlx", "dlq")
    return broker


def test_rejected_message_is_dead_lettered_with_its_history() -> None:
    broker = dlx_broker()
    peer = broker.client()
    publisher(peer, 0, "/queues/work")
    publish(peer, 0, msg(b"x", header=Header(durable=True, ttl=60000)))
    consumer(peer, 1, "/queues/work", credit=1)
    peer.disposition(0, state=Rejected())
    assert broker.queue("dlq").depth == 1
    consumer(peer, 2, "/queues/dlq", credit=1)
    dead = messages(peer.received)[-1]
    ann = dead.message_annotations
    assert ann[X_EXCHANGE] == "dlx" and ann[X_ROUTING_KEY] == "dead"
    (death,) = ann[Symbol("x-opt-deaths")].items
    assert death[Symbol("queue")] == "work"
    assert death[Symbol("reason")] == Symbol("rejected")
    assert death[Symbol("count")] == ULong(1)
    assert death[Symbol("exchange")] == ""
    assert list(death[Symbol("routing-keys")].items) == ["work"]
    assert death[Symbol("ttl")] == UInt(60000)
    assert dead.header.ttl is None, "the ttl moves into the death record"
    assert dead.header.first_acquirer is False, "as RabbitMQ delivers dead-lettered messages"
    first = messages(peer.received)[0]
    assert (first.header.first_acquirer, first.header.durable) == (True, True)
    assert ann[Symbol("x-first-death-reason")] == "rejected"
    assert ann[Symbol("x-last-death-queue")] == "work"


def test_modified_undeliverable_here_dead_letters_on_a_queue_with_a_dlx() -> None:
    broker = dlx_broker()
    peer = broker.client()
    publisher(peer, 0, "/queues/work")
    publish(peer, 0, b"x")
    consumer(peer, 1, "/queues/work", credit=1)
    peer.disposition(0, state=Modified(delivery_failed=True, undeliverable_here=True))
    assert (broker.queue("work").depth, broker.queue("dlq").depth) == (0, 1)


def test_expired_message_is_dead_lettered_by_housekeeping() -> None:
    broker = dlx_broker()
    admin = broker.container.admin
    admin.declare_queue("ttl", arguments={"x-message-ttl": 1000,
                                          "x-dead-letter-exchange": "dlx"}, now=NOW)
    peer = broker.client()
    publisher(peer, 0, "/queues/ttl")
    publish(peer, 0, b"x")
    broker.wall.t = NOW + 2
    broker.container.housekeeping()
    assert (broker.queue("ttl").depth, broker.queue("dlq").depth) == (0, 1)
    dead = broker.queue("dlq").ready[0].message
    (death,) = dead.message_annotations[Symbol("x-opt-deaths")].items
    assert death[Symbol("reason")] == Symbol("expired")


def test_delivery_limit_dead_letters_after_too_many_failures() -> None:
    broker = dlx_broker()
    broker.container.admin.declare_queue(
        "limited", arguments={"x-queue-type": "quorum", "x-delivery-limit": 1,
                              "x-dead-letter-exchange": "dlx"}, now=NOW)
    peer = broker.client()
    publisher(peer, 0, "/queues/limited")
    publish(peer, 0, b"x")
    consumer(peer, 1, "/queues/limited", credit=10)
    peer.disposition(0, state=Modified(delivery_failed=True))
    assert broker.queue("limited").unacked == 1, "one failure is within the limit"
    peer.disposition(1, state=Modified(delivery_failed=True))
    assert (broker.queue("limited").depth, broker.queue("dlq").depth) == (0, 1)


def test_dead_letter_cycle_without_rejection_is_dropped() -> None:
    broker = Broker()
    # expired messages go back to the same queue through the default exchange
    broker.container.admin.declare_queue("loop", arguments={
        "x-message-ttl": 1000, "x-dead-letter-exchange": ""}, now=NOW)
    peer = broker.client()
    publisher(peer, 0, "/queues/loop")
    publish(peer, 0, b"x")
    broker.wall.t = NOW + 2
    broker.container.housekeeping()
    assert broker.queue("loop").depth == 0


# -- queue lifecycles ------------------------------------------------------------------


def test_exclusive_queue_is_locked_to_its_connection_and_goes_with_it() -> None:
    broker = Broker()
    owner = broker.client("owner")
    handle = next(iter(broker.container.connections))
    broker.container.admin.declare_queue("mine", exclusive=True, owner=handle, now=NOW)
    other = broker.client("other")
    out = other.attach_receiver(0, "/queues/mine")
    assert condition(one(out, Detach)) == "amqp:resource-locked"
    admin = broker.client("admin")
    management_pair(admin, credit=10)
    reply = request(admin, "/queues/mine", "PUT", {"exclusive": True})
    assert reply.properties.subject == "400", "RabbitMQ 4.0.5's status for another's declare"
    assert reply.body[0].value.startswith(
        "cannot obtain exclusive access to locked queue 'mine' in vhost '/'. It could be "
        "originally declared on another connection")
    owner.close()
    assert broker.container.registry.get("mine") is None


def test_auto_delete_queue_goes_with_its_last_consumer() -> None:
    broker = Broker()
    broker.container.admin.declare_queue("temp", auto_delete=True, now=NOW)
    peer = broker.client()
    consumer(peer, 1, "/queues/temp", credit=1)
    consumer(peer, 2, "/queues/temp", credit=1)
    peer.detach(1)
    assert broker.container.registry.get("temp") is not None
    peer.detach(2)
    assert broker.container.registry.get("temp") is None


def test_unused_queue_expires() -> None:
    broker = Broker()
    broker.container.admin.declare_queue("idle", arguments={"x-expires": 5000}, now=NOW)
    broker.wall.t = NOW + 4
    broker.container.housekeeping()
    assert broker.container.registry.get("idle") is not None
    broker.wall.t = NOW + 6
    broker.container.housekeeping()
    assert broker.container.registry.get("idle") is None


def test_direct_reply_to_queue() -> None:
    broker = Broker()
    peer = broker.client("rpc")
    out = peer.attach_receiver(0, None, source=Source(
        dynamic=True, capabilities=Symbol("rabbitmq:volatile-queue")))
    address = one(out, Attach).source.address
    assert address.startswith("/queues/amq.rabbitmq.reply-to.")
    peer.flow(0, link_credit=1)
    server = broker.client("server")
    publisher(server, 0, None)
    assert publish(server, 0, msg(b"answer", properties=Properties(to=address))) == \
        [Accepted()]
    assert bodies(peer.read()) == [b"answer"]


# -- identity ----------------------------------------------------------------------------


def test_open_advertises_identity_and_link_pairs() -> None:
    for compat, product in ((False, "amqpws-broker"), (True, "RabbitMQ")):
        peer = Peer(Broker(rabbitmq_compat=compat).container.connection_made(
            "c", "test", lambda: None))
        opened = one(peer.connect(container_id="c", hostname="vhost:ws"), Open)
        assert opened.properties[Symbol("product")] == product
        assert "amqpws-broker" in opened.properties[Symbol("information")]
        assert Symbol("LINK_PAIR_V1_0") in opened.offered_capabilities
        if compat:
            assert opened.properties[Symbol("version")].startswith("4.")


# -- /management link pair ---------------------------------------------------------------


PAIRED = {Symbol("paired"): True}


def management_pair(peer: Peer, name: str = "client-/management", credit: int = 10) -> None:
    """Requests on our handle 0, answers on handle 1 (`credit` granted; 0: none yet)."""
    mgmt = "/management"
    out = peer.attach_sender(0, mgmt, name=name, source=Source(address=mgmt),
                             snd_settle_mode=1, properties=PAIRED)
    attach = one(out, Attach)
    assert attach.properties == PAIRED and attach.target.address == mgmt
    out = peer.attach_receiver(1, mgmt, name=name, target=Target(address=mgmt),
                               snd_settle_mode=1, properties=PAIRED)
    assert one(out, Attach).properties == PAIRED
    if credit:
        peer.flow(1, link_credit=credit)


def request_message(path: str, method: str, body: object = None,
                    message_id: object = "req-1") -> Message:
    return Message.create(AmqpValue(body), properties=Properties(
        message_id=message_id, to=path, subject=method, reply_to="$me"))


def request(peer: Peer, path: str, method: str, body: object = None,
            message_id: object = "req-1") -> Message:
    out = peer.send(0, request_message(path, method, body, message_id), settled=True)
    (reply,) = messages(out)
    (transfer,) = [t for t in of(out, Transfer)]
    assert transfer.settled and transfer.delivery_tag == b""
    return reply


def test_management_declares_and_reports_a_queue() -> None:
    broker = Broker()
    peer = broker.client()
    management_pair(peer)
    rid = uuid.uuid4()
    reply = request(peer, "/queues/orders", "PUT",
                    {"durable": True, "arguments": {"x-queue-type": "quorum"}}, message_id=rid)
    assert reply.properties.subject == "201"
    assert reply.properties.correlation_id == rid, "a uuid id comes back as a uuid"
    assert reply.application_properties == {"http:response": "1.1"}
    (body,) = reply.body
    assert body.value["type"] == "quorum"
    assert type(body.value["message_count"]) is ULong
    assert request(peer, "/queues/orders", "GET").properties.subject == "200"
    missing = request(peer, "/queues/nope", "GET")
    assert missing.properties.subject == "404"
    assert missing.body[0].value == "queue 'nope' in vhost '/' not found"


def test_management_link_needs_paired() -> None:
    broker = Broker()
    peer = broker.client()
    out = peer.attach_sender(0, "/management", source=Source(address="/management"))
    assert condition(one(out, Detach)) == "amqp:invalid-field"


def test_management_replies_wait_for_credit() -> None:
    broker = Broker()
    peer = broker.client()
    management_pair(peer, credit=0)
    m = request_message("/queues/x", "GET")
    assert messages(peer.send(0, m, settled=True)) == []
    (reply,) = messages(peer.flow(1, link_credit=1))
    assert reply.properties.subject == "404"


def test_a_stream_is_bindable_like_a_queue() -> None:
    broker = Broker()
    admin = broker.container.admin
    admin.declare_queue("log", arguments={"x-queue-type": "stream"}, now=NOW)
    admin.bind("amq.topic", "log", key="audit.#")
    peer = broker.client()
    publisher(peer, 0, "/exchanges/amq.topic/audit.login")
    assert publish(peer, 0, b"x") == [Accepted()]
    consumer(peer, 1, "/queues/log", credit=1, source=Source(address="/queues/log", filter={
        Symbol("rabbitmq:stream-offset-spec"): Described(Symbol("rabbitmq:stream-offset-spec"),
                                                         "first")}))
    (m,) = messages(peer.received)
    ann = m.message_annotations
    assert (ann[X_EXCHANGE], ann[X_ROUTING_KEY]) == ("amq.topic", "audit.login")
    assert ann[Symbol("x-stream-offset")] == 0


def test_management_requests_without_reading_answers_lose_the_request_link() -> None:
    broker = Broker()
    peer = broker.client()
    management_pair(peer, credit=0)
    m = request_message("/queues/x", "GET")
    out = []
    for _ in range(70):
        out += peer.send(0, m, settled=True)  # the broker tops up the request credit
        if of(out, Detach):
            break
    assert condition(one(out, Detach)) == "amqp:resource-limit-exceeded"


def test_cached_routes_follow_every_topology_change() -> None:
    broker = Broker()
    setup(broker, "a", "b")
    admin = broker.container.admin
    peer = broker.client()
    publisher(peer, 0, "/exchanges/amq.topic/k.1")
    assert publish(peer, 0, b"0") == [Released()]
    admin.bind("amq.topic", "a", key="k.*")
    assert publish(peer, 0, b"1") == [Accepted()]
    admin.bind("amq.topic", "b", key="#")
    publish(peer, 0, b"2")
    admin.unbind("amq.topic", "a", key="k.*")
    publish(peer, 0, b"3")
    admin.delete_queue("b")
    assert publish(peer, 0, b"4") == [Released()]
    assert broker.queue("a").depth == 2  # 1 and 2
    admin.declare_queue("b", now=NOW)
    admin.bind("amq.topic", "b", key="#")
    assert publish(peer, 0, b"5") == [Accepted()]
    assert broker.queue("b").depth == 1


def test_routes_through_a_headers_exchange_depend_on_each_message() -> None:
    broker = Broker()
    setup(broker, "red")
    admin = broker.container.admin
    admin.bind("amq.topic", "amq.headers", destination_kind="exchange", key="#")
    admin.bind("amq.headers", "red", arguments={"color": "red"})
    peer = broker.client()
    publisher(peer, 0, "/exchanges/amq.topic/k")
    blue = msg(b"b", application_properties={"color": "blue"})
    red = msg(b"r", application_properties={"color": "red"})
    assert publish(peer, 0, blue, red, blue) == [Released(), Accepted(), Released()]


# -- review regressions ------------------------------------------------------------------


def test_unreadable_message_dead_lettered_through_headers_is_dropped_not_fatal() -> None:
    broker = Broker()
    broker.container.admin.declare_queue("ttl", arguments={
        "x-message-ttl": 1000, "x-dead-letter-exchange": "amq.headers"}, now=NOW)
    peer = broker.client()
    publisher(peer, 0, "/queues/ttl")
    bad_app_properties = b"\x00\x53\x74\xc1\x03\x02\xff\xff"  # sizes right, contents not
    payload = bad_app_properties + Message.create(b"x").payload
    assert publish(peer, 0, Message.parse(payload)) == [Accepted()]
    broker.wall.t = NOW + 2
    broker.container.housekeeping()  # must not raise
    assert broker.queue("ttl").depth == 0


def test_explicit_priority_4_survives_routing() -> None:
    broker = Broker()
    setup(broker, "p", p={"x-max-priority": 9})
    peer = broker.client()
    publisher(peer, 0, "/queues/p")
    # proton sends priority 4 explicitly; our encoder would write it as null (0 here)
    four = Message.create(b"four", header=Header(durable=True))
    raw = b"\x00\x53\x70\xc0\x04\x02\x41\x50\x04" + four.payload[len(four.section_bytes(0x70)):]
    publish(peer, 0, msg(b"one", header=Header(priority=1)), Message.parse(raw))
    consumer(peer, 1, "/queues/p", credit=2)
    assert bodies(peer.received) == [b"four", b"one"]
    assert messages(peer.received)[0].header.priority == 4


def test_routing_keys_are_at_most_255_bytes() -> None:
    broker = Broker()
    peer = broker.client()
    out = peer.attach_sender(0, "/exchanges/amq.topic/" + "a" * 256)
    assert condition(one(out, Detach)) == "amqp:invalid-field"
    publisher(peer, 1, "/exchanges/amq.topic/k")
    cc = {Symbol("x-cc"): ["b" * 256]}
    (state,) = publish(peer, 1, msg(b"x", message_annotations=cc))
    assert isinstance(state, Rejected) and state.error.condition == "amqp:invalid-field"


def test_publisher_to_a_redeclared_exchange_keeps_publishing() -> None:
    broker = Broker()
    setup(broker, "q")
    admin = broker.container.admin
    admin.declare_exchange("x", type="fanout")
    peer = broker.client()
    publisher(peer, 0, "/exchanges/x")
    admin.delete_exchange("x")
    admin.declare_exchange("x", type="fanout")
    admin.bind("x", "q")
    assert publish(peer, 0, b"again") == [Accepted()]


def test_single_active_consumer_hands_over_when_the_active_one_leaves() -> None:
    broker = Broker()
    setup(broker, "sac", sac={"x-single-active-consumer": True})
    peer = broker.client()
    consumer(peer, 1, "/queues/sac", credit=1)
    consumer(peer, 2, "/queues/sac", credit=10)
    publisher(peer, 0, "/queues/sac")
    publish(peer, 0, b"1", b"2", b"3")
    peer.disposition(0, state=Accepted())
    peer.detach(1)
    assert bodies(peer.received) == [b"1", b"2", b"3"]
