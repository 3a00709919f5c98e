"""Source filters through the container: selectors on queues, RabbitMQ's
stream filters, property filters and SQL on streams; what the attach echoes."""

from __future__ import annotations

from engine.peer import Peer, bodies, condition, one
from test_container import NOW, Broker, msg, publish, publisher

from broker.codec.messaging import Properties, Source, Target
from broker.codec.performatives import Attach, Detach
from broker.codec.types import Described, Symbol, ULong

SELECTOR = Symbol("apache.org:selector-filter:string")


def receiver(peer: Peer, handle: int, address: str, filters: dict[object, object],
             credit: int = 100) -> tuple[Attach, list[object]]:
    out = peer.attach_receiver(handle, address, source=Source(address=address, filter=filters),
                               target=Target())
    attach = one(out, Attach)
    if attach.source is None:
        return attach, out
    return attach, bodies(peer.flow(handle, link_credit=credit))


def test_a_selector_takes_only_what_matches_and_leaves_the_rest() -> None:
    broker = Broker(queues=("q",))
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    publish(peer, 0, *(msg(f"{r}-{i}".encode(), application_properties={"region": r})
                       for i in range(2) for r in ("eu", "us")))
    attach, got = receiver(peer, 1, "/queues/q",
                           {Symbol("jms-selector"): Described(SELECTOR, "region = 'eu'")})
    assert got == [b"eu-0", b"eu-1"]
    assert attach.source.filter == {Symbol("jms-selector"): Described(SELECTOR, "region = 'eu'")}
    assert broker.queue("q").depth == 2, "the others stay"
    _, rest = receiver(peer, 2, "/queues/q", {})
    assert rest == [b"us-0", b"us-1"]


def test_the_numeric_selector_descriptor_and_header_fields() -> None:
    broker = Broker(queues=("q",))
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    publish(peer, 0, msg(b"low", properties=Properties(subject="a")),
            msg(b"high", properties=Properties(subject="b")))
    _, got = receiver(peer, 1, "/queues/q", {Symbol("s"): Described(
        ULong(0x0000468C00000004), "properties.subject = 'b'")})
    assert got == [b"high"]


def test_an_invalid_selector_refuses_the_attach() -> None:
    broker = Broker(queues=("q",))
    peer = broker.client()
    attach, out = receiver(peer, 1, "/queues/q",
                           {Symbol("s"): Described(SELECTOR, "region = = 'eu'")})
    assert attach.source is None
    detach = one(out, Detach)
    assert condition(detach) == "amqp:invalid-field"
    assert "position" in detach.error.description


def stream_broker() -> tuple[Broker, Peer]:
    broker = Broker()
    broker.container.admin.declare_queue("s", arguments={"x-queue-type": "stream"}, now=NOW)
    peer = broker.client()
    publisher(peer, 0, "/queues/s")
    for value in ("red", "blue", None, "red"):
        annotations = {Symbol("x-stream-filter-value"): value} if value else None
        publish(peer, 0, msg(str(value).encode(), message_annotations=annotations,
                             application_properties={"n": len(str(value))},
                             properties=Properties(subject=str(value))))
    return broker, peer


FIRST = Described(Symbol("rabbitmq:stream-offset-spec"), "first")


def test_rabbitmq_stream_filters_are_exact() -> None:
    _broker, peer = stream_broker()
    filters = {Symbol("offset"): FIRST,
               Symbol("values"): Described(Symbol("rabbitmq:stream-filter"), ["red"])}
    attach, got = receiver(peer, 1, "/queues/s", filters)
    assert got == [b"red", b"red"], "no false positives, unlike a Bloom filter"
    assert set(attach.source.filter) == {Symbol("offset"), Symbol("values")}
    filters[Symbol("unfiltered")] = Described(Symbol("rabbitmq:stream-match-unfiltered"), True)
    attach, got = receiver(peer, 2, "/queues/s", filters)
    assert got == [b"red", b"None", b"red"]
    assert Symbol("unfiltered") in attach.source.filter


def test_property_and_sql_filters_on_a_stream() -> None:
    _broker, peer = stream_broker()
    _, got = receiver(peer, 1, "/queues/s", {
        Symbol("offset"): FIRST,
        Symbol("props"): Described(ULong(0x173), {Symbol("subject"): "&p:bl"})})
    assert got == [b"blue"]
    _, got = receiver(peer, 2, "/queues/s", {
        Symbol("offset"): FIRST,
        Symbol("app"): Described(Symbol("amqp:application-properties-filter"), {"n": 3})})
    assert got == [b"red", b"red"]
    attach, got = receiver(peer, 3, "/queues/s", {
        Symbol("offset"): FIRST,
        Symbol("sql-filter"): Described(Symbol("amqp:sql-filter"),
                                        "a.n > 3 AND p.subject <> 'None'")})
    assert got == [b"blue"]
    assert Symbol("sql-filter") in attach.source.filter


def test_an_invalid_stream_filter_is_left_out_not_refused() -> None:
    """RabbitMQ's rule for streams: the link is served; the echo tells."""
    _broker, peer = stream_broker()
    attach, got = receiver(peer, 1, "/queues/s", {
        Symbol("offset"): FIRST,
        Symbol("sql-filter"): Described(Symbol("amqp:sql-filter"), "a.n >")})
    assert attach.source is not None and set(attach.source.filter) == {Symbol("offset")}
    assert len(got) == 4
