"""Sessions: begin/end, channel allocation, transfer windows and session errors."""

from __future__ import annotations

from typing import Any

import pytest

from broker.codec.messaging import Accepted, Source, Target
from broker.codec.performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    End,
    Error,
    Flow,
    RcvSettleMode,
    Role,
    Transfer,
)
from broker.codec.types import Described, Symbol, ULong
from broker.engine import session as session_module
from broker.engine.connection import Connection
from broker.engine.events import (
    DeliveriesUpdated,
    LinkAttached,
    LinkDetached,
    MessageReceived,
    SessionEnded,
)
from broker.errors import LocalProtocolError

from .peer import Out, Peer, condition, deliveries, kinds, one


def opened_peer(**open_kwargs: Any) -> Peer:
    peer = Peer(Connection(container_id="broker", users={}, allow_anonymous=True))
    peer.connect(**open_kwargs)
    peer.take_events()
    return peer


def attach_link(peer: Peer, handle: int = 0, *, role: bool = Role.RECEIVER, channel: int = 0,
                credit_window: int = 0, **attach: Any) -> Any:
    """The peer attaches (with `attach`'s fields, as a receiver); the test
    accepts; returns our Link."""
    if role is Role.RECEIVER:
        peer.attach_receiver(handle, "q", channel=channel, **attach)
    else:
        peer.attach_sender(handle, "q", channel=channel)
    (event,) = peer.take_events()
    assert isinstance(event, LinkAttached)
    link = event.link
    link.accept(source=link.remote_attach.source, target=link.remote_attach.target,
                credit_window=credit_window)
    peer.read()
    return link


# -- begin / end ---------------------------------------------------------------------


def test_begin_is_answered_with_our_begin() -> None:
    peer = opened_peer()
    out = peer.begin(0, next_outgoing_id=17, incoming_window=100, outgoing_window=50)
    assert out == [Out(0, Begin(remote_channel=0, next_outgoing_id=0,
                                incoming_window=session_module.INCOMING_WINDOW,
                                outgoing_window=session_module.OUTGOING_WINDOW), b"")]
    session = peer.engine.sessions[0]
    assert session.next_incoming_id == 17
    assert session.remote_incoming_window == 100


def test_channels_are_allocated_from_zero_and_reused() -> None:
    peer = opened_peer()
    out = peer.begin(5)
    assert (out[0].channel, out[0].performative.remote_channel) == (0, 5)
    out = peer.begin(7)
    assert (out[0].channel, out[0].performative.remote_channel) == (1, 7)
    assert peer.end(5) == [Out(0, End(), b"")], "end is echoed on our channel"
    out = peer.begin(9)
    assert (out[0].channel, out[0].performative.remote_channel) == (0, 9)


def test_begin_on_a_channel_in_use_closes_the_connection() -> None:
    peer = opened_peer()
    peer.begin(3)
    out = peer.begin(3)
    assert condition(one(out, Close)) == "amqp:not-allowed"


def test_begin_with_remote_channel_closes_the_connection() -> None:
    peer = opened_peer()
    out = peer.begin(0, remote_channel=0)
    assert condition(one(out, Close)) == "amqp:not-allowed"


def test_end_detaches_the_sessions_links() -> None:
    peer = opened_peer()
    peer.begin()
    link = attach_link(peer)
    error = Error(condition=Symbol("amqp:internal-error"))
    assert peer.end(0, error) == [Out(0, End(), b"")]
    session = link.session
    assert peer.take_events() == [LinkDetached(link, error, True), SessionEnded(session, error)]
    assert peer.engine.sessions == {} and session.links == {}
    out = peer.flow(channel=0)
    assert condition(one(out, Close)) == "amqp:not-found", "the channel is free again"


def test_session_error_ends_then_discards_until_the_peers_end() -> None:
    peer = opened_peer()
    peer.begin()
    out = peer.transfer(9, b"x")
    assert kinds(out) == [End]
    assert condition(out[0].performative) == "amqp:session:unattached-handle"
    assert peer.transfer(9, b"x") == [], "frames after our end are discarded"
    assert peer.attach_receiver(0) == []
    assert peer.take_events() == []
    assert peer.end() == [], "our end was already sent"
    assert peer.engine.sessions == {}
    assert kinds(peer.begin(0)) == [Begin], "the channel can be begun again"


# -- session errors ---------------------------------------------------------------------


@pytest.mark.parametrize("action", ["transfer", "flow", "detach"])
def test_frame_for_an_unknown_handle_is_unattached_handle(action: str) -> None:
    peer = opened_peer()
    peer.begin()
    attach_link(peer, 0)
    if action == "transfer":
        out = peer.transfer(5, b"x")
    elif action == "flow":
        out = peer.flow(5, link_credit=1)
    else:
        out = peer.detach(5)
    assert kinds(out) == [End]
    assert condition(out[0].performative) == "amqp:session:unattached-handle"
    assert not peer.done, "a session error leaves the connection open"


def test_attach_reusing_a_handle_is_handle_in_use() -> None:
    peer = opened_peer()
    peer.begin()
    link = attach_link(peer, 0)
    out = peer.attach_receiver(0, name="another")
    assert kinds(out) == [End]
    assert condition(out[0].performative) == "amqp:session:handle-in-use"
    assert [type(e) for e in peer.take_events()] == [LinkDetached]
    assert link.detach_sent


def test_handles_are_per_session() -> None:
    peer = opened_peer()
    peer.begin(0)
    peer.begin(1)
    attach_link(peer, 0, channel=0)
    attach_link(peer, 0, channel=1)
    assert len(peer.engine.sessions[0].links) == len(peer.engine.sessions[1].links) == 1


def test_transfer_beyond_the_incoming_window_is_window_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_module, "INCOMING_WINDOW", 0)
    peer = opened_peer()
    assert one(peer.begin(), Begin).incoming_window == 0
    attach_link(peer, 0, role=Role.SENDER, credit_window=10)
    out = peer.transfer(0, b"x")
    assert kinds(out) == [End]
    assert condition(out[0].performative) == "amqp:session:window-violation"
    assert not any(isinstance(e, MessageReceived) for e in peer.take_events())


def test_incoming_window_is_reopened_when_half_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "INCOMING_WINDOW", 4)
    peer = opened_peer()
    peer.begin(0, next_outgoing_id=100)
    attach_link(peer, 0, role=Role.SENDER, credit_window=100)
    assert peer.transfer(0, b"a") == []
    out = peer.transfer(0, b"b")
    flow = one(out, Flow)
    assert flow.handle is None
    assert (flow.next_incoming_id, flow.incoming_window) == (102, 4)
    for payload in (b"c", b"d", b"e", b"f", b"g"):  # never beyond what we advertised
        out = peer.transfer(0, payload)
        assert Close not in kinds(out) and End not in kinds(out)
    received = [e for e in peer.take_events() if isinstance(e, MessageReceived)]
    assert [e.delivery.payload for e in received] == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]


def test_session_flow_echo() -> None:
    peer = opened_peer()
    peer.begin(0, next_outgoing_id=5)
    out = peer.flow(echo=True, next_outgoing_id=5)
    flow = one(out, Flow)
    assert flow.handle is None
    assert (flow.next_incoming_id, flow.incoming_window, flow.next_outgoing_id) == (
        5, session_module.INCOMING_WINDOW, 0)
    assert peer.flow() == [], "no echo unless asked"


# -- our outgoing window: the peer's incoming window --------------------------------------


def test_we_respect_the_peers_incoming_window() -> None:
    peer = opened_peer(max_frame_size=512)
    peer.begin(0, incoming_window=3)
    link = attach_link(peer, 0)
    peer.flow(0, link_credit=10)
    peer.take_events()
    link.send(b"a" * 1000, settled=False)  # 3 frames at max-frame-size 512
    link.send(b"b", settled=False)
    out = peer.read()
    assert kinds(out) == [Transfer, Transfer, Transfer]
    assert [o.performative.more for o in out] == [True, True, False]
    assert not link.can_send, "the session window is closed"
    out = peer.flow(incoming_window=1)
    assert kinds(out) == [Transfer]
    assert out[0].performative.delivery_id == 1
    out = peer.flow(incoming_window=10)
    assert out == []
    assert link.can_send
    assert [p for _, p in deliveries(peer.received)] == [b"a" * 1000, b"b"]


def test_a_backlogged_delivery_resumes_mid_message() -> None:
    peer = opened_peer(max_frame_size=512)
    peer.begin(0, incoming_window=1)
    link = attach_link(peer, 0)
    peer.flow(0, link_credit=10)
    payload = bytes(range(250)) * 8  # 2000 bytes: 5 frames at max-frame-size 512
    link.send(payload, settled=True)
    assert [o.performative.more for o in peer.read()] == [True]
    for _ in range(3):
        out = peer.flow(incoming_window=1)
        assert [o.performative.more for o in out] == [True]
    out = peer.flow(incoming_window=5)
    assert [o.performative.more for o in out] == [False]
    assert [p for _, p in deliveries(peer.received)] == [payload]


def test_window_reopening_tells_waiting_senders() -> None:
    peer = opened_peer()
    peer.begin(0, incoming_window=1)
    link = attach_link(peer, 0)
    peer.flow(0, link_credit=5)
    peer.take_events()
    link.send(b"x", settled=True)
    assert not link.can_send
    peer.flow(incoming_window=10)
    events = peer.take_events()
    assert [type(e).__name__ for e in events] == ["CreditChanged"]
    assert link.can_send


def test_two_sessions_are_independent() -> None:
    peer = opened_peer()
    peer.begin(0)
    peer.begin(1)
    a = attach_link(peer, 0, channel=0)
    b = attach_link(peer, 0, channel=1)
    peer.flow(0, link_credit=1, channel=0)
    peer.flow(0, link_credit=1, channel=1)
    a.send(b"A", settled=True)
    b.send(b"B", settled=True)
    out = peer.read()
    assert [(o.channel, o.performative.delivery_id, o.payload) for o in out] == [
        (0, 0, b"A"), (1, 0, b"B")]
    out = peer.transfer(7, b"x", channel=1)
    assert out == [Out(1, End(error=one(out, End).error), b"")]
    assert a.usable and not b.usable


def test_detach_on_one_session_does_not_touch_the_other() -> None:
    peer = opened_peer()
    peer.begin(0)
    peer.begin(1)
    a = attach_link(peer, 0, channel=0)
    attach_link(peer, 0, channel=1)
    out = peer.detach(0, channel=1)
    assert out == [Out(1, Detach(handle=0, closed=True), b"")]
    assert a.usable


def test_attach_with_a_terminus_of_the_wrong_type_is_a_decode_error() -> None:
    # the codec checks field types (source requires a source): a connection error
    peer = opened_peer()
    peer.begin()
    out = peer.attach(0, Role.RECEIVER, source=Target(address="q"), target=Target())
    assert kinds(out) == [Close]
    assert condition(out[0].performative) == "amqp:decode-error"


def test_attach_to_a_coordinator_is_refused_link_by_link() -> None:
    # a transaction coordinator is a well-typed target we do not serve: only the link goes
    peer = opened_peer()
    peer.begin()
    coordinator = Described(ULong(0x30), [None])
    out = peer.attach(0, Role.SENDER, source=Source(), target=coordinator)
    assert kinds(out) == [Attach, Detach]
    assert condition(out[1].performative) == "amqp:not-implemented"
    assert peer.take_events() == []
    assert peer.detach(0) == [], "the refused link is freed by the peer's detach"
    assert kinds(peer.attach_receiver(0, source=Source(address="q"))) == []


@pytest.mark.parametrize("window", [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
def test_huge_incoming_windows_from_a_flow(window: int) -> None:
    peer = opened_peer()
    peer.begin(0, incoming_window=10)
    link = attach_link(peer, 0)
    peer.flow(0, link_credit=5, incoming_window=window)
    assert link.can_send
    link.send(b"x", settled=True)
    assert kinds(peer.read()) == [Transfer]
    peer.flow(0, link_credit=5, delivery_count=1, incoming_window=window)
    assert link.can_send


def test_a_flow_that_crossed_our_transfers_counts_them_against_the_window() -> None:
    peer = opened_peer()
    peer.begin(0, incoming_window=10)
    link = attach_link(peer, 0)
    peer.flow(0, link_credit=10, incoming_window=3)
    for _ in range(2):
        link.send(b"x", settled=True)
    peer.read()
    peer.flow(0, link_credit=10, incoming_window=3, next_incoming_id=0)  # stale: saw none
    assert peer.engine.sessions[0].remote_incoming_window == 1


def test_attach_above_our_handle_max_is_a_framing_error() -> None:
    peer = opened_peer()
    peer.begin()
    peer.engine.sessions[0].handle_max = 3  # as if we had advertised 3
    out = peer.attach_receiver(4)
    assert condition(one(out, Close)) == "amqp:connection:framing-error"


def test_a_link_error_without_a_link_ends_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    from broker.errors import TransferLimitExceeded

    def fail(self: object, disposition: object) -> None:
        raise TransferLimitExceeded("a link error raised for a frame that names no link")

    monkeypatch.setattr(session_module.Session, "on_disposition", fail)
    peer = opened_peer()
    peer.begin()
    out = peer.disposition(0)
    assert condition(one(out, End)) == "amqp:link:transfer-limit-exceeded"
    assert not peer.done


# -- a run of messages in one call (a stream reader's window) ---------------------------


@pytest.mark.parametrize("before", [0, 300])  # delivery ids in smalluint and uint form
@pytest.mark.parametrize("handle", [0, 7])  # uint0 and smalluint handles
def test_send_run_writes_what_send_writes(before: int, handle: int) -> None:
    one, run = opened_peer(), opened_peer()
    links = []
    for peer in (one, run):
        peer.begin(0)
        links.append(attach_link(peer, handle))
        peer.flow(handle, link_credit=before + 10)
        for _ in range(before):
            links[-1].send(b"earlier", settled=True)
        peer.read()
        peer.take_events()
    payloads = [b"a", b"bb" * 100, b"c"]
    sent = [links[0].send(p, settled=False) for p in payloads]
    ran = links[1].send_run(payloads, settled=False)
    assert one.conn.data_to_send() == run.conn.data_to_send()
    assert [(d.delivery_id, d.tag) for d in ran] == [(d.delivery_id, d.tag) for d in sent]
    assert links[1].link_credit == links[0].link_credit == 7
    assert links[1].delivery_count == links[0].delivery_count
    assert set(links[1].unsettled) == set(links[0].unsettled) == {before, before + 1, before + 2}
    links[1].send(b"d", settled=True)  # after a run, ids and tags go on from it
    links[0].send(b"d", settled=True)
    assert one.conn.data_to_send() == run.conn.data_to_send()


@pytest.mark.parametrize("settled, track", [(True, True), (False, False)])
def test_send_run_holds_what_the_peers_window_does_not_take(settled: bool, track: bool) -> None:
    peer = opened_peer(max_frame_size=512)
    peer.begin(0, incoming_window=2)
    link = attach_link(peer, 0)
    peer.flow(0, link_credit=10)
    peer.take_events()
    payloads = [b"a", b"b" * 1000, b"c", b"d"]  # the second takes 3 frames at 512
    link.send_run(payloads, settled=settled, track=track)
    out = peer.read()
    assert [(o.performative.settled, o.performative.more) for o in out] == [
        (settled, False), (settled, True)]
    assert not link.can_send
    out = peer.flow(incoming_window=10)
    assert [(o.performative.delivery_id, o.performative.more) for o in out] == [
        (1, True), (1, False), (2, False), (3, False)]
    assert [p for _, p in deliveries(peer.received)] == payloads
    if not track:  # held and resumed all the same, and nothing kept afterwards
        assert link.unsettled == {} and peer.engine.sessions[0].outgoing_unsettled == {}


def test_send_run_beyond_the_credit_sends_nothing() -> None:
    peer = opened_peer()
    peer.begin(0)
    link = attach_link(peer, 0)
    peer.flow(0, link_credit=1)
    peer.take_events()
    with pytest.raises(LocalProtocolError):
        link.send_run([b"a", b"b"], settled=True)
    assert peer.read() == []
    assert link.link_credit == 1


def test_an_untracked_run_writes_the_same_bytes_and_keeps_nothing() -> None:
    tracked, untracked = opened_peer(), opened_peer()
    links = []
    for peer in (tracked, untracked):
        peer.begin(0)
        links.append(attach_link(peer, 0))
        peer.flow(0, link_credit=10)
        peer.take_events()
    payloads = [b"a", b"bb" * 100, b"c"]
    assert len(links[0].send_run(payloads, settled=False)) == 3
    assert links[1].send_run(payloads, settled=False, track=False) == []
    assert tracked.conn.data_to_send() == untracked.conn.data_to_send()  # unsettled on the wire
    session = untracked.engine.sessions[0]
    assert links[1].unsettled == {} and session.outgoing_unsettled == {}
    assert (links[1].link_credit, links[1].delivery_count) == (7, 3)
    # the reader's ranged outcome finds nothing to update: no event, no answer
    assert untracked.disposition(0, 2, settled=True, state=Accepted()) == []
    assert untracked.take_events() == []
    links[1].send(b"d", settled=False)  # ids and tags go on from the run, tracked again
    links[0].send(b"d", settled=False)
    assert tracked.conn.data_to_send() == untracked.conn.data_to_send()
    assert set(links[1].unsettled) == {3}


def test_an_untracked_run_to_a_receiver_settling_second_is_tracked_all_the_same() -> None:
    """§2.7.3: that receiver waits for our settlement, so the engine keeps what
    it must settle, whatever the caller asked."""
    peer = opened_peer()
    peer.begin(0)
    link = attach_link(peer, 0, rcv_settle_mode=RcvSettleMode.SECOND)
    peer.flow(0, link_credit=10)
    peer.take_events()
    ran = link.send_run([b"a", b"b"], settled=False, track=False)
    assert [d.delivery_id for d in ran] == [0, 1] and set(link.unsettled) == {0, 1}
    peer.read()
    peer.disposition(0, 1, settled=False, state=Accepted())
    (event,) = peer.take_events()
    assert isinstance(event, DeliveriesUpdated) and not event.settled
    # sent settled, there is nothing to wait for: untracked as asked
    assert link.send_run([b"c"], settled=True, track=False) == []
