"""Links on a bare engine: attach/detach, credit and delivery-count, drain,
transfers (multi-frame, aborted, settled), dispositions and link errors."""

from __future__ import annotations

from typing import Any

import pytest

from broker.codec.messaging import Accepted, Rejected, Released, Source, Target
from broker.codec.performatives import (
    Attach,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Role,
    SndSettleMode,
    Transfer,
)
from broker.codec.types import Symbol
from broker.engine.connection import Connection
from broker.engine.events import (
    CreditChanged,
    DeliveriesUpdated,
    DeliveryUpdated,
    LinkAttached,
    LinkDetached,
    MessageReceived,
)
from broker.engine.link import Link
from broker.errors import LocalProtocolError

from .peer import Out, Peer, condition, deliveries, frame_sizes, kinds, of, one


def session_peer(**open_kwargs: Any) -> Peer:
    peer = Peer(Connection(container_id="broker", users={}, allow_anonymous=True))
    peer.connect(**open_kwargs)
    peer.begin()
    peer.take_events()
    return peer


def attached(peer: Peer) -> Link:
    (event,) = peer.take_events()
    assert isinstance(event, LinkAttached)
    return event.link


def sending_link(peer: Peer, handle: int = 0, credit: int | None = None) -> Link:
    """The peer attaches as receiver; we accept: our link sends."""
    peer.attach_receiver(handle, "q")
    link = attached(peer)
    link.accept(source=Source(address="q"), target=Target())
    peer.read()
    if credit is not None:
        peer.flow(handle, link_credit=credit)
        peer.take_events()
    return link


def receiving_link(peer: Peer, handle: int = 0, *, credit_window: int = 10,
                   max_message_size: int = 0) -> Link:
    """The peer attaches as sender; we accept: our link receives."""
    peer.attach_sender(handle, "q")
    link = attached(peer)
    link.accept(source=Source(), target=Target(address="q"), credit_window=credit_window,
                max_message_size=max_message_size)
    peer.read()
    return link


def received(peer: Peer) -> list[bytes]:
    return [e.delivery.payload for e in peer.take_events() if isinstance(e, MessageReceived)]


# -- attach / detach -------------------------------------------------------------------


def test_attach_as_receiver_makes_us_the_sender() -> None:
    peer = session_peer()
    peer.attach_receiver(3, "q", name="consumer")
    link = attached(peer)
    assert link.is_sender and link.name == "consumer" and link.remote_handle == 3
    link.accept(source=Source(address="q", dynamic=False), target=Target(address="me"))
    out = peer.read()
    attach = one(out, Attach)
    assert (attach.name, attach.handle, attach.role) == ("consumer", 0, Role.SENDER)
    assert attach.source == Source(address="q")
    assert attach.target == Target(address="me")
    assert attach.initial_delivery_count == 0
    assert attach.max_message_size == 0, "no limit, said explicitly (as RabbitMQ says it)"
    assert kinds(out) == [Attach], "a sender grants no credit"


def test_attach_as_sender_makes_us_the_receiver_granting_credit() -> None:
    peer = session_peer()
    peer.attach_sender(0, "q", name="producer", initial_delivery_count=41)
    link = attached(peer)
    assert not link.is_sender
    link.accept(source=Source(), target=Target(address="q"), credit_window=100,
                max_message_size=1000)
    out = peer.read()
    assert kinds(out) == [Attach, Flow]
    attach, flow = out[0].performative, out[1].performative
    assert attach.role == Role.RECEIVER and attach.initial_delivery_count is None
    assert attach.max_message_size == 1000
    assert (flow.handle, flow.delivery_count, flow.link_credit) == (0, 41, 100)


def test_settle_modes_are_echoed_unless_overridden() -> None:
    peer = session_peer()
    peer.attach_receiver(0, "q", snd_settle_mode=SndSettleMode.SETTLED, rcv_settle_mode=1)
    link = attached(peer)
    link.accept(source=Source(address="q"), target=Target(), rcv_settle_mode=0)
    attach = one(peer.read(), Attach)
    assert (attach.snd_settle_mode, attach.rcv_settle_mode) == (SndSettleMode.SETTLED, 0)


def test_refuse_sends_a_null_terminus_then_the_detach() -> None:
    peer = session_peer()
    peer.attach_receiver(0, "nowhere")
    link = attached(peer)
    link.refuse(Error(condition=Symbol("amqp:not-found"), description="no such queue"))
    out = peer.read()
    assert kinds(out) == [Attach, Detach]
    attach, detach = out[0].performative, out[1].performative
    assert attach.source is None and attach.target == Target()
    assert detach.closed and condition(detach) == "amqp:not-found"
    with pytest.raises(LocalProtocolError):
        link.accept(source=None, target=None)
    assert peer.detach(0) == []
    assert peer.take_events() == [], "a refused link reports no detach"


def test_refusing_a_sender_nulls_the_target() -> None:
    peer = session_peer()
    peer.attach_sender(0, "nowhere")
    link = attached(peer)
    link.refuse(Error(condition=Symbol("amqp:not-found")))
    attach = one(peer.read(), Attach)
    assert attach.target is None and attach.source == Source()


@pytest.mark.parametrize("closed", [True, False])
def test_peer_detach_is_echoed(closed: bool) -> None:
    peer = session_peer()
    link = sending_link(peer, 4)
    error = Error(condition=Symbol("amqp:internal-error"))
    out = peer.detach(4, closed=closed, error=error)
    assert out == [Out(0, Detach(handle=0, closed=closed), b"")]
    assert peer.take_events() == [LinkDetached(link, error, closed)]
    assert not link.usable
    assert kinds(peer.attach_receiver(4)) == [], "the handle is free again"
    assert isinstance(peer.take_events()[0], LinkAttached)


def test_local_detach_waits_for_the_peers_detach() -> None:
    peer = session_peer()
    link = sending_link(peer, 2, credit=5)
    link.detach(Error(condition=Symbol("amqp:link:detach-forced")))
    out = peer.read()
    assert condition(one(out, Detach)) == "amqp:link:detach-forced"
    assert peer.flow(2, link_credit=3) == [], "the handle stays known until the peer detaches"
    assert peer.detach(2) == []
    assert peer.take_events() == []
    out = peer.flow(2, link_credit=3)
    assert condition(one(out, End)) == "amqp:session:unattached-handle"


def test_detach_before_answering_sends_an_attach_first() -> None:
    peer = session_peer()
    peer.attach_receiver(0)
    link = attached(peer)
    link.detach(Error(condition=Symbol("amqp:internal-error")))
    assert kinds(peer.read()) == [Attach, Detach]


def test_our_handles_are_allocated_from_zero() -> None:
    peer = session_peer()
    handles = []
    for remote in (7, 3, 9):
        peer.attach_receiver(remote)
        link = attached(peer)
        link.accept(source=Source(address="q"), target=Target())
        handles.append(one(peer.read(), Attach).handle)
    assert handles == [0, 1, 2]


# -- flow: credit and delivery-count ---------------------------------------------------


def test_credit_is_delivery_count_plus_link_credit_minus_ours() -> None:
    peer = session_peer()
    link = sending_link(peer)
    assert peer.flow(0, link_credit=5, delivery_count=0) == []
    assert peer.take_events() == [CreditChanged(link)]
    assert link.link_credit == 5
    link.send(b"1", settled=True)
    link.send(b"2", settled=True)
    out = peer.read()
    assert [o.performative.delivery_id for o in out] == [0, 1]
    assert (link.link_credit, link.delivery_count) == (3, 2)
    # the peer's flow crossed our transfers: it saw only one of them
    peer.flow(0, link_credit=5, delivery_count=1)
    assert link.link_credit == 4
    # a stale flow granting less than what is already spent gives no credit
    peer.flow(0, link_credit=1, delivery_count=0)
    assert link.link_credit == 0
    with pytest.raises(LocalProtocolError):
        link.send(b"3", settled=True)


def test_delivery_count_wraps_around() -> None:
    peer = session_peer()
    link = sending_link(peer)
    link.delivery_count = 0xFFFFFFFF
    peer.flow(0, link_credit=3, delivery_count=0xFFFFFFFF)
    link.send(b"x", settled=True)
    assert link.delivery_count == 0
    peer.flow(0, link_credit=3, delivery_count=0)
    assert link.link_credit == 3


def test_flow_echo_reports_our_link_state() -> None:
    peer = session_peer()
    link = sending_link(peer, 0, credit=4)
    link.send(b"x", settled=True)
    peer.read()
    out = peer.flow(0, link_credit=4, delivery_count=0, echo=True)
    flow = one(out, Flow)
    assert (flow.handle, flow.delivery_count, flow.link_credit, flow.drain) == (0, 1, 3, False)
    assert flow.next_outgoing_id == 1 and flow.next_incoming_id == 0


def test_flow_echo_on_a_receiving_link() -> None:
    peer = session_peer()
    receiving_link(peer, 0, credit_window=8)
    out = peer.flow(0, delivery_count=0, link_credit=0, echo=True)
    flow = one(out, Flow)
    assert (flow.handle, flow.delivery_count, flow.link_credit) == (0, 0, 8)


def test_drain_without_messages_spends_all_credit() -> None:
    peer = session_peer()
    link = sending_link(peer)
    peer.flow(0, link_credit=7, drain=True)
    assert peer.take_events() == [CreditChanged(link)]
    assert link.drain
    link.drained()
    flow = one(peer.read(), Flow)
    assert (flow.handle, flow.delivery_count, flow.link_credit, flow.drain) == (0, 7, 0, True)
    assert (link.link_credit, link.drain) == (0, False)
    link.drained()
    assert peer.read() == [], "nothing more to report"


def test_drain_after_some_messages() -> None:
    peer = session_peer()
    link = sending_link(peer)
    peer.flow(0, link_credit=5, drain=True)
    link.send(b"a", settled=True)
    link.send(b"b", settled=True)
    link.drained()
    out = peer.read()
    assert kinds(out) == [Transfer, Transfer, Flow]
    flow = out[2].performative
    assert (flow.delivery_count, flow.link_credit, flow.drain) == (5, 0, True)


def test_drained_without_drain_keeps_the_credit() -> None:
    peer = session_peer()
    link = sending_link(peer, 0, credit=5)
    link.drained()
    assert peer.read() == []
    assert link.link_credit == 5


def test_drain_advanced_by_the_sending_peer_lowers_our_credit() -> None:
    peer = session_peer()
    link = receiving_link(peer, credit_window=10)
    peer.flow(0, delivery_count=10, link_credit=0, drain=True)
    assert (link.delivery_count, link.link_credit) == (10, 0)
    # the sender answered a drain: reported, so that the gateway can pass it on
    # (the container's publishers ignore it)
    assert peer.take_events() == [CreditChanged(link)]
    peer.flow(0, delivery_count=10, link_credit=0)
    assert peer.take_events() == [], "a flow that changes nothing is not reported"


# -- transfers we receive ------------------------------------------------------------------


def test_single_frame_transfer() -> None:
    peer = session_peer()
    link = receiving_link(peer)
    peer.transfer(0, b"hello", delivery_tag=b"t1", message_format=0)
    (event,) = peer.take_events()
    assert isinstance(event, MessageReceived) and event.link is link
    d = event.delivery
    assert (d.delivery_id, d.tag, d.payload, d.settled) == (0, b"t1", b"hello", False)
    assert link.unsettled == {0: d}
    assert (link.delivery_count, link.link_credit) == (1, 9)


def test_multi_frame_transfer_is_one_message() -> None:
    peer = session_peer()
    link = receiving_link(peer)
    peer.transfer(0, b"he", more=True)
    peer.transfer(0, b"ll", more=True, continuation=True)
    assert peer.take_events() == []
    peer.transfer(0, b"o", continuation=True)
    assert received(peer) == [b"hello"]
    assert link.delivery_count == 1, "one delivery, however many frames"


def test_multi_frame_transfer_fed_byte_by_byte() -> None:
    peer = session_peer()
    receiving_link(peer)
    data = (peer.transfer_frame(0, b"abc", more=True)
            + peer.transfer_frame(0, b"def", continuation=True))
    for i in range(len(data)):
        assert peer.feed(data[i : i + 1]) == []
    assert received(peer) == [b"abcdef"]


def test_aborted_transfer_is_dropped() -> None:
    peer = session_peer()
    link = receiving_link(peer)
    peer.transfer(0, b"partial", more=True)
    peer.transfer(0, b"", aborted=True, continuation=True)
    assert peer.take_events() == []
    assert link.unsettled == {}
    peer.transfer(0, b"next")
    assert received(peer) == [b"next"]


def test_settled_transfer_needs_no_disposition() -> None:
    peer = session_peer()
    link = receiving_link(peer)
    peer.transfer(0, b"x", settled=True)
    (event,) = peer.take_events()
    assert event.delivery.settled and event.delivery.remote_settled
    link.settle(event.delivery, Accepted())
    assert peer.read() == []
    assert link.unsettled == {}


def test_settled_on_the_last_frame_settles_the_delivery() -> None:
    peer = session_peer()
    receiving_link(peer)
    peer.transfer(0, b"a", more=True, settled=False)
    peer.transfer(0, b"b", settled=True, continuation=True)
    (event,) = peer.take_events()
    assert event.delivery.remote_settled


def test_credit_is_topped_up_at_half_the_window() -> None:
    peer = session_peer()
    link = receiving_link(peer, credit_window=4)
    assert peer.transfer(0, b"1") == []
    out = peer.transfer(0, b"2")
    flow = one(out, Flow)
    assert (flow.handle, flow.delivery_count, flow.link_credit) == (0, 2, 4)
    assert link.link_credit == 4


def test_transfer_without_credit_is_transfer_limit_exceeded() -> None:
    peer = session_peer()
    link = receiving_link(peer, credit_window=0)
    out = peer.transfer(0, b"x")
    assert kinds(out) == [Detach]
    assert out[0].performative.closed
    assert condition(out[0].performative) == "amqp:link:transfer-limit-exceeded"
    (event,) = peer.take_events()
    assert isinstance(event, LinkDetached) and event.link is link and event.closed
    assert str(event.error.condition) == "amqp:link:transfer-limit-exceeded"
    assert peer.transfer(0, b"y") == [], "transfers on a detaching link are dropped"
    assert peer.take_events() == []
    assert peer.detach(0) == []


def test_transfers_sent_under_a_credit_since_lowered_are_no_violation() -> None:
    """§2.6.7: the sender may not have seen the lower credit yet (the gateway
    lowers a receiving client's credit upstream while transfers are on the wire)."""
    peer = session_peer()
    link = receiving_link(peer, credit_window=0)
    link.flow(3)
    link.flow(1)
    peer.read()
    for n in range(3):
        assert peer.transfer(0, bytes([n])) == []
    assert received(peer) == [b"\x00", b"\x01", b"\x02"]
    assert link.link_credit == 0, "our credit never goes below zero"
    out = peer.transfer(0, b"beyond any credit we granted")
    assert condition(one(out, Detach)) == "amqp:link:transfer-limit-exceeded"


def test_message_exceeding_max_message_size_detaches_the_link() -> None:
    peer = session_peer()
    link = receiving_link(peer, max_message_size=10)
    peer.transfer(0, b"0123456789")
    assert received(peer) == [b"0123456789"], "exactly the limit is fine"
    assert peer.transfer(0, b"01234", more=True) == []
    out = peer.transfer(0, b"567890", continuation=True)
    assert kinds(out) == [Detach]
    assert condition(out[0].performative) == "amqp:link:message-size-exceeded"
    assert [type(e) for e in peer.take_events()] == [LinkDetached]
    assert not link.usable


def test_transfer_on_a_link_where_we_send_is_not_allowed() -> None:
    peer = session_peer()
    sending_link(peer, 0, credit=1)
    out = peer.transfer(0, b"x")
    assert condition(one(out, Detach)) == "amqp:not-allowed"


def test_first_transfer_without_delivery_id_is_invalid_field() -> None:
    peer = session_peer()
    receiving_link(peer)
    out = peer.transfer(0, b"x", delivery_id=None)
    assert condition(one(out, Detach)) == "amqp:invalid-field"


def test_transfers_on_two_links_interleave() -> None:
    peer = session_peer()
    receiving_link(peer, 0)
    receiving_link(peer, 1)
    peer.transfer(0, b"a1", more=True)
    peer.transfer(1, b"b", settled=True)
    peer.transfer(0, b"a2", continuation=True)
    assert received(peer) == [b"b", b"a1a2"]


# -- dispositions we send -----------------------------------------------------------------------


def test_settlements_are_sent_as_ranges_on_flush() -> None:
    peer = session_peer()
    link = receiving_link(peer, credit_window=100)
    for i in range(6):
        peer.transfer(0, bytes([i]))
    ds = [e.delivery for e in peer.take_events()]
    rejected = Rejected(error=Error(condition=Symbol("amqp:not-allowed")))
    for d, state in zip(ds, [Accepted(), Accepted(), Accepted(), rejected, rejected, Accepted()]):
        link.settle(d, state)
    out = peer.read()
    assert [o.performative for o in out] == [
        Disposition(role=Role.RECEIVER, first=0, last=2, settled=True, state=Accepted()),
        Disposition(role=Role.RECEIVER, first=3, last=4, settled=True, state=rejected),
        Disposition(role=Role.RECEIVER, first=5, last=None, settled=True, state=Accepted()),
    ]
    assert link.unsettled == {}
    link.settle(ds[0], Released())
    assert peer.read() == [], "settling twice does nothing"


def test_pending_dispositions_go_out_before_later_frames() -> None:
    peer = session_peer()
    link = receiving_link(peer, credit_window=100)
    peer.transfer(0, b"x")
    (event,) = peer.take_events()
    link.settle(event.delivery, Accepted())
    link.flow(50)
    assert kinds(peer.read()) == [Disposition, Flow]


# -- dispositions the peer sends -------------------------------------------------------------------


def test_peer_disposition_range_updates_each_delivery() -> None:
    peer = session_peer()
    link = sending_link(peer, 0, credit=10)
    ds = [link.send(bytes([i]), settled=False) for i in range(4)]
    peer.read()
    assert set(link.unsettled) == {0, 1, 2, 3}
    peer.disposition(1, 2, settled=True, state=Accepted())
    assert peer.take_events() == [DeliveriesUpdated([ds[1], ds[2]], Accepted(), True)]
    assert set(link.unsettled) == {0, 3}
    assert ds[1].remote_settled
    peer.disposition(0, 3, settled=False, state=Released())
    assert peer.take_events() == [DeliveriesUpdated([ds[0], ds[3]], Released(), False)]
    assert set(link.unsettled) == {0, 3}, "unsettled outcomes keep the deliveries"
    link.settle(ds[0], Released())
    assert one(peer.read(), Disposition) == Disposition(
        role=Role.SENDER, first=0, settled=True, state=Released())
    peer.disposition(3, 3, settled=True, state=Accepted())  # one delivery: its own event
    assert peer.take_events() == [DeliveryUpdated(link, ds[3], Accepted(), True)]


def test_peer_disposition_for_unknown_or_reversed_ids_is_ignored() -> None:
    peer = session_peer()
    sending_link(peer, 0, credit=10)
    assert peer.disposition(100, 200, state=Accepted()) == []
    assert peer.disposition(5, 2, state=Accepted()) == []
    assert peer.take_events() == []


def test_peer_settling_what_it_sent() -> None:
    peer = session_peer()
    link = receiving_link(peer)
    peer.transfer(0, b"x")
    (event,) = peer.take_events()
    peer.disposition(0, settled=True, role=Role.SENDER)
    assert event.delivery.settled
    assert link.unsettled == {}


# -- transfers we send ------------------------------------------------------------------------------


def test_send_respects_the_peers_max_frame_size() -> None:
    peer = session_peer(max_frame_size=512)
    link = sending_link(peer, 0, credit=2)
    payload = bytes(range(256)) * 20
    link.send(payload, settled=False, tag=b"tag-one")
    link.send(b"small", settled=True)
    out = peer.read()
    sizes = frame_sizes(bytes(peer.raw))
    assert max(sizes) <= 512
    transfers = of(out, Transfer)
    assert len(transfers) > 10
    assert all(t.delivery_id == 0 and t.delivery_tag == b"tag-one" for t in transfers[:-1])
    assert [(t.delivery_id, p) for t, p in deliveries(out)] == [(0, payload), (1, b"small")]


def test_send_without_credit_is_a_local_error_never_on_the_wire() -> None:
    peer = session_peer()
    link = sending_link(peer)
    with pytest.raises(LocalProtocolError):
        link.send(b"x", settled=True)
    assert peer.read() == []


def test_send_on_a_receiving_link_is_a_local_error() -> None:
    peer = session_peer()
    link = receiving_link(peer)
    with pytest.raises(LocalProtocolError):
        link.send(b"x", settled=True)


def test_delivery_tags_are_generated_unique() -> None:
    peer = session_peer()
    link = sending_link(peer, 0, credit=3)
    tags = [link.send(b"x", settled=True).tag for _ in range(3)]
    assert len(set(tags)) == 3
    assert [t.delivery_tag for t in of(peer.read(), Transfer)] == tags


# -- after our detach --------------------------------------------------------------------------------


def test_no_transfer_frames_after_our_detach() -> None:
    peer = session_peer(max_frame_size=512)
    peer.begin(1, incoming_window=1)
    peer.attach_receiver(0, "q", channel=1)
    link = attached(peer)
    link.accept(source=Source(address="q"), target=Target())
    peer.flow(0, link_credit=5, channel=1)
    link.send(b"z" * 2000, settled=True)  # 5 frames; the window lets one through
    assert kinds(peer.read()) == [Transfer]
    link.detach(Error(condition=Symbol("amqp:link:detach-forced")))
    assert kinds(peer.read()) == [Detach]
    out = peer.flow(channel=1, incoming_window=100)
    assert Transfer not in kinds(out), "the rest of the delivery must not follow our detach"


def test_no_flow_echo_after_our_detach() -> None:
    peer = session_peer()
    link = sending_link(peer, 0, credit=1)
    link.detach(None)
    peer.read()
    assert peer.flow(0, link_credit=5, echo=True) == []
    assert peer.take_events() == []


def test_we_never_use_a_handle_above_the_peers_handle_max() -> None:
    peer = Peer(Connection(container_id="broker", users={}, allow_anonymous=True))
    peer.connect()
    peer.begin(0, handle_max=0)
    peer.take_events()
    peer.attach_receiver(0)
    attached(peer).accept(source=Source(address="q"), target=Target())
    assert one(peer.read(), Attach).handle == 0
    out = peer.attach_receiver(1)  # legal for the peer (our handle-max is 2**32-1)
    assert Attach not in kinds(out), "we have no handle left within the peer's handle-max"
    assert condition(one(out, End)) == "amqp:not-allowed"


@pytest.mark.parametrize("credit", [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
def test_huge_link_credit(credit: int) -> None:
    peer = session_peer()
    link = sending_link(peer)
    peer.flow(0, link_credit=credit)
    assert link.link_credit == credit
    link.send(b"x", settled=True)
    peer.flow(0, link_credit=credit, delivery_count=0)  # stale: does not count our transfer
    assert link.link_credit == credit - 1


def test_pending_dispositions_never_follow_our_close() -> None:
    peer = session_peer()
    link = receiving_link(peer)
    peer.transfer(0, b"x")
    (event,) = peer.take_events()
    link.settle(event.delivery, Accepted())  # queued for the next flush
    peer.engine.close(Error(condition=Symbol("amqp:connection:forced")))
    out = peer.read()
    assert kinds(out)[-1] is Close, f"nothing may follow the close: {kinds(out)}"


def test_pending_dispositions_never_follow_our_close_answer() -> None:
    peer = session_peer()
    link = receiving_link(peer)
    peer.transfer(0, b"x")
    (event,) = peer.take_events()
    link.settle(event.delivery, Accepted())
    out = peer.close()
    assert kinds(out)[-1] is Close, f"nothing may follow the close: {kinds(out)}"
