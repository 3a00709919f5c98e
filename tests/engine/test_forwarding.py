"""Forwarding on a bare engine: deliveries received on a link of one connection
sent on by a link of another as they arrive (`Link.forward_to`; a one-frame
delivery by `Session._cut_through`, any other by `Link.forward`), and the
outcome our peer gives the copy settling the original.  The gateway's routes
rest on it; here two engine connections stand for its two sides."""

from __future__ import annotations

from collections import deque
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.codec.messaging import Accepted, Modified, Received, Rejected, Released
from broker.codec.performatives import Detach, Disposition, Role, Transfer
from broker.engine.events import Event, MessageReceived
from broker.engine.link import Delivery, Link

from .peer import condition, deliveries, of, one
from .test_link import receiving_link, sending_link, session_peer


class Owner:
    """What the gateway's routes do with what the engine hands over: hold it
    while the other side cannot take it, send it on when it can, re-arm."""

    def __init__(self, source: Link, target: Link, *, armed: bool) -> None:
        self.source, self.target, self.armed = source, target, armed
        self.pending: deque[Delivery] = deque()
        self.handed_over = 0
        self.arm()

    def arm(self) -> None:
        if self.armed and not self.pending:
            self.source.forward_to = self.target

    def take(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, MessageReceived):
                self.handed_over += 1
                self.pending.append(event.delivery)
        self.flush()

    def flush(self) -> None:
        while self.pending and self.target.can_send:
            self.target.forward(self.pending.popleft())
        self.arm()


class Pair:
    """A producer on connection A (our link `source` receives) and a consumer
    on connection B (our link `target` sends), `source` forwarding to `target`."""

    def __init__(self, *, credit: int = 100, armed: bool = True,
                 consumer_frame_size: int = 65536, producer_credit: int = 1000) -> None:
        self.producer = session_peer()
        self.source = receiving_link(self.producer, credit_window=0)
        self.source.flow(producer_credit)
        self.producer.read()
        self.consumer = session_peer(max_frame_size=consumer_frame_size)
        self.target = sending_link(self.consumer, credit=credit)
        self.owner = Owner(self.source, self.target, armed=armed)

    def publish(self, payload: bytes, *, settled: bool = False, chunk: int | None = None) -> None:
        self.producer.send(0, payload, settled=settled, chunk=chunk)
        self.owner.take(self.producer.take_events())
        self.consumer.read()

    def grant(self, credit: int) -> None:
        self.consumer.flow(0, link_credit=credit)
        self.consumer.take_events()
        self.owner.flush()
        self.consumer.read()

    def settle(self, first: int, last: int | None = None, state: object = None, *,
               settled: bool = True) -> list[Disposition]:
        """The consumer settles copies `first`..`last`; what A wrote for the originals."""
        self.consumer.disposition(first, last, state=state, settled=settled)
        self.consumer.take_events()
        return of(self.producer.read(), Disposition)

    def transfers(self) -> list[tuple[Transfer, bytes]]:
        return deliveries(self.consumer.received)


def test_a_one_frame_delivery_is_sent_on_as_it_arrives() -> None:
    pair = Pair()
    pair.publish(b"hello", chunk=None)
    assert pair.owner.handed_over == 0, "no event: the engine sent it on"
    assert pair.producer.engine.take_touched() == {pair.consumer.engine}, "its writer woken"
    ((transfer, payload),) = pair.transfers()
    (original,) = pair.source.unsettled.values()
    (copy,) = pair.target.unsettled.values()
    assert payload == original.payload
    assert transfer.delivery_tag == original.tag == copy.tag
    assert transfer.handle == pair.target.handle and transfer.delivery_id == copy.delivery_id
    assert transfer.settled is False
    assert copy.origin is original
    assert pair.target.link_credit == 99 and pair.target.delivery_count == 1
    assert pair.source.delivery_count == 1 and pair.source.link_credit == 999


def test_the_copys_outcome_settles_the_original_with_it_in_one_range() -> None:
    pair = Pair()
    for _ in range(3):
        pair.publish(b"m")
    originals = [pair.source.unsettled[did] for did in sorted(pair.source.unsettled)]
    ids = sorted(pair.target.unsettled)
    pair.consumer.engine.take_touched()
    rejected = Rejected()
    (disposition,) = pair.settle(ids[0], ids[-1], rejected)
    assert pair.consumer.engine.take_touched() == {pair.producer.engine}, "its writer woken"
    assert (disposition.first, disposition.last) == (originals[0].delivery_id,
                                                     originals[-1].delivery_id)
    assert disposition.role is Role.RECEIVER and disposition.settled
    assert disposition.state == rejected
    assert all(o.settled and o.state == rejected for o in originals)
    assert not pair.source.unsettled and not pair.target.unsettled
    assert not pair.source.session.incoming_unsettled
    assert not pair.target.session.outgoing_unsettled
    assert pair.consumer.take_events() == [] and pair.producer.take_events() == []


def test_an_outcome_without_settlement_settles_the_original_then_the_copy() -> None:
    """A receiver settling second says its outcome and waits for the sender:
    the original is settled with that outcome, then we settle the copy; a
    state that is no outcome yet (received) settles nothing."""
    pair = Pair()
    pair.publish(b"m")
    (copy_id,) = pair.target.unsettled
    (original_id,) = pair.source.unsettled
    assert pair.settle(copy_id, state=Received(section_number=0, section_offset=0),
                       settled=False) == []
    assert of(pair.consumer.received, Disposition) == []
    (disposition,) = pair.settle(copy_id, state=Modified(delivery_failed=True), settled=False)
    assert disposition.first == original_id and disposition.settled
    assert isinstance(disposition.state, Modified)
    (ours,) = of(pair.consumer.received, Disposition)  # what we wrote to the consumer
    assert (ours.role, ours.first, ours.settled) == (Role.SENDER, copy_id, True)
    assert isinstance(ours.state, Modified)
    assert not pair.target.unsettled and not pair.source.unsettled
    assert pair.settle(copy_id, state=Modified(delivery_failed=True)) == [], "settled already"


def test_a_presettled_delivery_stays_presettled_and_leaves_nothing_behind() -> None:
    pair = Pair()
    pair.publish(b"m", settled=True)
    ((transfer, _),) = pair.transfers()
    assert transfer.settled is True
    assert not pair.source.unsettled and not pair.target.unsettled
    assert not pair.source.session.incoming_unsettled
    assert not pair.target.session.outgoing_unsettled


def test_with_no_credit_there_the_delivery_is_handed_over_and_forwarding_stops() -> None:
    """What the other side cannot take now goes to the owner as an event, and
    so does everything after it, until the owner has sent on what it holds:
    nothing overtakes what is held."""
    pair = Pair(credit=1)
    for body in (b"1", b"2", b"3"):
        pair.publish(body)
    assert pair.owner.handed_over == 2
    assert [p for _, p in pair.transfers()] == [pair.source.unsettled[0].payload]
    pair.grant(5)
    sent = [p for _, p in pair.transfers()]
    assert len(sent) == 3 and sent[1].endswith(b"2") and sent[2].endswith(b"3")
    assert pair.source.forward_to is pair.target, "re-armed once nothing is held"
    pair.publish(b"4")
    assert pair.owner.handed_over == 2 and len(pair.transfers()) == 4


def test_deliveries_of_several_frames_either_side_go_the_general_way() -> None:
    """Split by the producer or too big for one frame to the consumer: sent
    on by `Link.forward` once whole, frames as the consumer's size allows."""
    pair = Pair(consumer_frame_size=512)
    pair.publish(b"a" * 2000, chunk=700)
    pair.publish(b"b" * 2000)
    pair.publish(b"c")
    assert pair.owner.handed_over == 0
    frames = of(pair.consumer.received, Transfer)
    assert len(frames) > 3 and any(t.more for t in frames)
    sent = pair.transfers()
    assert len(sent) == 3 and sent[2][1].endswith(b"c")
    ids = sorted(pair.target.unsettled)
    (disposition,) = pair.settle(ids[0], ids[-1], Accepted())
    assert (disposition.first, disposition.last) == (0, 2)


def test_the_receiving_links_rules_hold_on_the_cut_through() -> None:
    """A transfer beyond the credit we granted is the receiving link's error
    whether or not it is being forwarded."""
    pair = Pair(producer_credit=1)
    pair.publish(b"within")
    detach = one(pair.producer.send(0, b"beyond"), Detach)
    assert condition(detach) == "amqp:link:transfer-limit-exceeded"
    assert len(pair.transfers()) == 1


def test_a_target_whose_connection_is_gone_gets_nothing() -> None:
    pair = Pair()
    pair.consumer.lost()
    pair.consumer.take_events()
    pair.publish(b"m")
    assert pair.owner.handed_over == 1, "handed over: the owner decides what it means"
    assert pair.target.unsettled == {}


OPS = st.lists(st.one_of(
    st.tuples(st.just("publish"), st.sampled_from([10, 600, 3000]), st.booleans(),
              st.sampled_from([None, 250])),
    st.tuples(st.just("grant"), st.integers(0, 4)),
    st.tuples(st.just("settle"), st.sampled_from([Accepted(), Released(), Rejected()])),
), max_size=25)


def run(ops: list[tuple[Any, ...]], *, armed: bool) -> tuple[Any, ...]:
    pair = Pair(credit=2, armed=armed, consumer_frame_size=1024)
    settled_to = 0
    for n, op in enumerate(ops):
        if op[0] == "publish":
            _, size, presettled, chunk = op
            pair.publish(bytes([n % 256]) * size, settled=presettled, chunk=chunk)
        elif op[0] == "grant":
            pair.grant(op[1])
        else:
            sent = len(pair.transfers())
            if sent > settled_to:
                pair.settle(settled_to, sent - 1, op[1])
                settled_to = sent
    src, dst = pair.source, pair.target
    state = (src.link_credit, src.delivery_count, sorted(src.unsettled),
             sorted(src.session.incoming_unsettled), dst.link_credit, dst.delivery_count,
             sorted(dst.unsettled), sorted(dst.session.outgoing_unsettled),
             dst.session.next_outgoing_id, dst.session.remote_incoming_window)
    return bytes(pair.producer.raw), bytes(pair.consumer.raw), state, pair.owner.handed_over


@settings(max_examples=200, deadline=None)
@given(ops=OPS)
def test_the_cut_through_writes_what_the_general_path_writes(ops: list[tuple[Any, ...]]) -> None:
    """The same traffic (one-frame and split deliveries, presettled or not,
    credit that runs out and comes back, ranged outcomes) with forwarding
    armed and with every delivery handed to the owner: the same bytes on
    both connections and the same link and session state."""
    cut_a, cut_b, cut_state, handed_over = run(ops, armed=True)
    general_a, general_b, general_state, _ = run(ops, armed=False)
    assert cut_b == general_b
    assert cut_a == general_a
    assert cut_state == general_state
    published = sum(1 for op in ops if op[0] == "publish")
    assert handed_over <= published


def test_the_differential_test_sees_the_cut_through_taken() -> None:
    """Without this, the property above could hold with nothing cut through."""
    ops: list[tuple[Any, ...]] = [("publish", 10, False, None)] * 2
    *_, handed_over = run(ops, armed=True)
    assert handed_over == 0
    *_, handed_over = run(ops, armed=False)
    assert handed_over == 2
