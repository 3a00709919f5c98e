"""Browsing consumers (distribution-mode copy) and last-value queues, through
the container: bytes in, bytes out."""

from __future__ import annotations

from engine.peer import Peer, bodies, deliveries, of, one
from test_container import NOW, Broker, consumer, msg, publish, publisher

from broker.codec.messaging import Accepted, Properties, Released, Source, Target
from broker.codec.performatives import Attach, Detach, Disposition, Flow
from broker.codec.types import Symbol

COPY = Symbol("copy")


def browser(peer: Peer, handle: int, address: str, credit: int = 100, **kwargs: object) -> list:
    out = peer.attach_receiver(handle, address, source=Source(address=address,
                                                              distribution_mode=COPY),
                               target=Target(), **kwargs)
    assert one(out, Attach).source.distribution_mode == COPY, "the reply says copy"
    return out + peer.flow(handle, link_credit=credit)


def test_a_browser_sees_everything_and_takes_nothing() -> None:
    broker = Broker(queues=("q",))
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    publish(peer, 0, msg(b"a"), msg(b"b"), msg(b"c"))
    out = browser(peer, 1, "/queues/q")
    got = deliveries(out)
    assert [p for _, p in got] and bodies(out) == [b"a", b"b", b"c"]
    assert all(t.settled for t, _ in got), "browsed copies are sent settled"
    assert broker.queue("q").depth == 3, "nothing taken"
    out = peer.send(0, msg(b"d"))
    assert bodies(out) == [b"d"], "later messages too"
    # an acquiring consumer still gets each message once
    out = consumer(peer, 2, "/queues/q", credit=10)
    assert bodies(out) == [b"a", b"b", b"c", b"d"]
    assert broker.queue("q").depth == 0


def test_messages_gone_from_the_queue_are_not_shown() -> None:
    broker = Broker(queues=("q",))
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    publish(peer, 0, msg(b"a"), msg(b"b"))
    out = consumer(peer, 2, "/queues/q", credit=1)
    (transfer, _), = deliveries(out)
    peer.disposition(transfer.delivery_id, state=Accepted())  # "a" is gone
    out = browser(peer, 1, "/queues/q", credit=10)
    assert bodies(out) == [b"b"]
    broker.container.admin.purge_queue("q")
    publish(peer, 0, msg(b"c"))
    assert broker.queue("q").depth == 1


def test_unacked_messages_are_still_shown_and_browsers_obey_credit() -> None:
    broker = Broker(queues=("q",))
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    publish(peer, 0, msg(b"a"), msg(b"b"), msg(b"c"))
    consumer(peer, 2, "/queues/q", credit=1)  # "a" out for delivery, unsettled
    out = browser(peer, 1, "/queues/q", credit=2)
    assert bodies(out) == [b"b", b"c"], "what is queued when it attaches"
    out = peer.send(0, msg(b"d"))
    assert not [p for t, p in deliveries(out) if t.handle == 1], "no credit: waits"
    out = peer.flow(1, link_credit=1)
    assert bodies(out) == [b"d"]


def test_a_browse_only_queue_makes_every_consumer_a_browser() -> None:
    broker = Broker(queue_arguments={"board": {"x-browse-only": True}}, queues=("board",))
    peer = broker.client()
    publisher(peer, 0, "/queues/board")
    publish(peer, 0, msg(b"a"))
    for handle in (1, 2):
        out = peer.attach_receiver(handle, "/queues/board")
        assert one(out, Attach).source.distribution_mode == COPY
        assert bodies(peer.flow(handle, link_credit=5)) == [b"a"]
    assert broker.queue("board").depth == 1


def test_qpids_spelling_of_browse_only() -> None:
    broker = Broker()
    broker.container.admin.declare_queue(
        "qq", arguments={"qpid.ensure_nondestructive_consumers": True}, now=NOW)
    assert broker.queue("qq").browse_only


def test_outcomes_on_unsettled_browsed_copies_change_nothing() -> None:
    broker = Broker(queues=("q",))
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    publish(peer, 0, msg(b"a"))
    out = browser(peer, 1, "/queues/q", snd_settle_mode=0)  # the receiver wants unsettled
    (transfer, _), = deliveries(out)
    assert not transfer.settled
    out = peer.disposition(transfer.delivery_id, state=Accepted(), settled=False)
    assert [d for d in of(out, Disposition) if d.settled], "we settle it"
    assert broker.queue("q").depth == 1, "accepting a copy removes nothing"


def test_browsing_drains() -> None:
    broker = Broker(queues=("q",))
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    publish(peer, 0, msg(b"a"))
    browser(peer, 1, "/queues/q", credit=0)
    out = peer.flow(1, link_credit=5, drain=True)
    assert bodies(out) == [b"a"]
    (flow,) = [f for f in of(out, Flow) if f.handle == 1]
    assert flow.drain and flow.link_credit == 0, "credit drained, as for consumers"


# -- last-value queues ------------------------------------------------------------------


def lvq(broker: Broker, name: str = "prices", key: str = "symbol", argument: str =
        "x-last-value-key") -> None:
    broker.container.admin.declare_queue(name, arguments={argument: key}, now=NOW)


def tick(symbol: str | None, price: int) -> object:
    props = {"symbol": symbol} if symbol is not None else {}
    return msg(f"{symbol}={price}".encode(), application_properties=props)


def test_a_last_value_queue_keeps_the_newest_per_key() -> None:
    broker = Broker()
    lvq(broker)
    peer = broker.client()
    publisher(peer, 0, "/queues/prices")
    for price in range(5):
        publish(peer, 0, *(tick(s, price) for s in ("AAA", "BBB", "CCC")))
    assert broker.queue("prices").depth == 3, "depth counts keys"
    out = consumer(peer, 1, "/queues/prices", credit=10)
    assert bodies(out) == [b"AAA=4", b"BBB=4", b"CCC=4"]


def test_a_late_browser_sees_the_latest_then_each_update() -> None:
    broker = Broker()
    lvq(broker, argument="qpid.last_value_queue_key")
    peer = broker.client()
    publisher(peer, 0, "/queues/prices")
    for price in range(3):
        publish(peer, 0, tick("AAA", price), tick("BBB", price))
    out = browser(peer, 1, "/queues/prices")
    assert bodies(out) == [b"AAA=2", b"BBB=2"]
    out = peer.send(0, tick("AAA", 9))
    assert bodies(out) == [b"AAA=9"]
    out = browser(peer, 2, "/queues/prices")
    assert bodies(out) == [b"BBB=2", b"AAA=9"], "the newest goes to the tail"


def test_messages_without_the_key_are_never_replaced() -> None:
    broker = Broker()
    lvq(broker, argument="last-value-key")
    peer = broker.client()
    publisher(peer, 0, "/queues/prices")
    publish(peer, 0, tick(None, 1), tick(None, 2), tick("AAA", 1), tick("AAA", 2))
    assert broker.queue("prices").depth == 3


def test_a_replaced_message_out_for_delivery_is_not_lost() -> None:
    broker = Broker()
    lvq(broker)
    peer = broker.client()
    publisher(peer, 0, "/queues/prices")
    publish(peer, 0, tick("AAA", 1))
    out = consumer(peer, 1, "/queues/prices", credit=1)
    (transfer, _), = deliveries(out)
    publish(peer, 0, tick("AAA", 2))  # the replacement waits behind it
    assert broker.queue("prices").depth == 1
    out = peer.disposition(transfer.delivery_id, state=Released())
    assert broker.queue("prices").depth == 1, "the stale value does not come back"
    out = peer.flow(1, link_credit=5)
    assert bodies(out) == [b"AAA=2"]


def test_a_message_property_as_the_key() -> None:
    broker = Broker()
    lvq(broker, key="properties.subject")
    peer = broker.client()
    publisher(peer, 0, "/queues/prices")
    publish(peer, 0, msg(b"1", properties=Properties(subject="AAA")),
            msg(b"2", properties=Properties(subject="AAA")))
    assert broker.queue("prices").depth == 1


def test_a_bad_key_is_a_400() -> None:
    broker = Broker()
    peer = broker.client()
    from test_routing import management_pair, request

    management_pair(peer)
    reply = request(peer, "/queues/x", "PUT", {"arguments": {"x-last-value-key":
                                                              "properties.nope"}})
    assert reply.properties.subject == "400"
    assert "not a message property" in reply.body[0].value


def test_deleting_a_queue_detaches_its_browsers_too() -> None:
    broker = Broker(queues=("d",))
    peer = broker.client()
    browser(peer, 1, "/queues/d")
    broker.container.admin.delete_queue("d")
    out = peer.read()
    detach = one(out, Detach)
    assert detach.error.condition == Symbol("amqp:resource-deleted")


def test_a_queue_read_by_browsers_is_in_use() -> None:
    broker = Broker()
    broker.container.admin.declare_queue("e", arguments={"x-expires": 1000}, now=NOW)
    peer = broker.client()
    browser(peer, 1, "/queues/e")
    broker.wall.t = NOW + 5
    broker.container.housekeeping()
    assert broker.container.registry.get("e") is not None, "a browser is a reader"
    assert broker.container.admin.queue_info("e")["consumer_count"] == 1


def test_redeclaring_with_another_last_value_key_is_refused() -> None:
    from broker.admin import AdminError

    broker = Broker()
    lvq(broker)
    try:
        broker.container.admin.declare_queue("prices", arguments={"x-last-value-key": "other"},
                                             now=NOW)
    except AdminError as exc:
        assert exc.status == 409 and "x-last-value-key" in exc.message
    else:
        raise AssertionError("an inequivalent declare must be refused")
