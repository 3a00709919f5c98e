"""Limits a hostile peer meets in the engine: the handshake deadline, channel
and handle numbers from free lists within advertised maxima, and flow frames
that touch only the link they name.  Bytes in, bytes out."""

from __future__ import annotations

from typing import Any

from broker.codec.messaging import Source, Target
from broker.codec.performatives import Begin, Close, Detach, End, Open, Role, SaslCode, SaslOutcome
from broker.engine.connection import Connection
from broker.engine.events import CreditChanged, LinkAttached
from broker.engine.session import NumberPool
from broker.framing import AMQP_HEADER, SASL_HEADER

from .peer import Peer, condition, kinds, of, one


def make_conn(**kwargs: Any) -> Connection:
    kwargs.setdefault("container_id", "broker")
    kwargs.setdefault("users", {})
    kwargs.setdefault("allow_anonymous", True)
    return Connection(**kwargs)


def opened(**kwargs: Any) -> Peer:
    peer = Peer(make_conn(**kwargs))
    peer.connect()
    return peer


def consumers(peer: Peer, n: int, credit: int, channel: int = 0, **flow: Any) -> None:
    """n receiving links of ours (the engine sends), accepted as the container would."""
    for h in range(n):
        peer.attach(h, Role.RECEIVER, name=f"c{h}", source=Source(address="q"), target=Target(),
                    channel=channel)
        for event in peer.take_events():
            if isinstance(event, LinkAttached):
                event.link.accept(source=Source(address="q"), target=Target())
        peer.flow(h, link_credit=credit, channel=channel, **flow)
    peer.take_events()


# -- number pools ------------------------------------------------------------------------


def test_number_pool_gives_the_lowest_free_number() -> None:
    pool = NumberPool()
    assert [pool.take() for _ in range(4)] == [0, 1, 2, 3]
    pool.give(2)
    pool.give(0)
    assert pool.peek() == 0
    assert [pool.take(), pool.take(), pool.take()] == [0, 2, 4]


def test_channels_and_handles_are_reused_lowest_first() -> None:
    peer = opened()
    for ch in range(3):
        peer.begin(ch)
    peer.end(1)
    out = peer.begin(7)
    assert one(out, Begin).remote_channel == 7
    assert peer.broker_channel[7] == 1, "our freed channel 1 is used again"
    consumers(peer, 3, credit=0, channel=7)
    peer.detach(0, channel=7)
    peer.attach(5, Role.RECEIVER, name="again", source=Source(address="q"), target=Target(),
                channel=7)
    (attached,) = [e.link for e in peer.take_events() if isinstance(e, LinkAttached)]
    assert attached.handle == 0, "our freed handle 0 is used again"


# -- advertised maxima ------------------------------------------------------------------------


def test_channel_max_and_handle_max_are_advertised_and_enforced() -> None:
    peer = Peer(make_conn(channel_max=63, handle_max=255))
    out = peer.connect()
    assert one(out, Open).channel_max == 63
    assert one(peer.begin(0), Begin).handle_max == 255
    out = peer.attach_receiver(256, "q")
    assert kinds(out) == [Close]
    assert condition(out[0].performative) == "amqp:connection:framing-error"
    peer = Peer(make_conn(channel_max=63))
    peer.connect()
    out = peer.begin(64)
    assert condition(one(out, Close)) == "amqp:connection:framing-error"


# -- the handshake deadline ------------------------------------------------------------------


def test_a_trickling_handshake_is_cut_at_the_deadline() -> None:
    peer = Peer(make_conn(handshake_timeout=10.0, idle_time_out=5.0))
    for i, byte in enumerate(AMQP_HEADER[:-1]):  # one byte every 4 s: never idle
        peer.now = 4.0 * i
        peer.feed(bytes([byte]))
        peer.tick(peer.now)
        if peer.done:
            break
    assert peer.done, "closed by the handshake deadline, not kept alive by each byte"
    assert peer.conn.handshake_timed_out


def test_the_deadline_closes_with_an_open_and_a_close_after_the_header() -> None:
    peer = Peer(make_conn(handshake_timeout=10.0))
    peer.header(AMQP_HEADER)
    assert peer.tick(1.0) == 10.0
    peer.tick(10.0)
    out = peer.read()
    assert kinds(out) == [Open, Close]
    assert condition(out[1].performative) == "amqp:resource-limit-exceeded"


def test_an_opened_connection_has_no_handshake_deadline() -> None:
    peer = Peer(make_conn(handshake_timeout=10.0))
    peer.connect()
    assert peer.tick(5.0) is None
    peer.tick(60.0)
    assert not peer.done


# -- one flow, one link -------------------------------------------------------------------


def credit_events(peer: Peer) -> list[int]:
    return [e.link.handle for e in peer.take_events() if isinstance(e, CreditChanged)]


def test_a_flow_for_one_link_wakes_only_that_link() -> None:
    peer = opened()
    peer.begin(0)
    consumers(peer, 50, credit=10)
    peer.flow(7, link_credit=20)
    assert credit_events(peer) == [7]


def test_a_flow_that_reopens_the_session_window_wakes_every_link_with_credit() -> None:
    peer = opened()
    peer.begin(0, incoming_window=0)
    consumers(peer, 3, credit=5, incoming_window=0)
    peer.flow(incoming_window=100)  # a session flow: the window opens
    assert sorted(credit_events(peer)) == [0, 1, 2]
    peer.flow(incoming_window=200)  # already open: nobody was waiting on it
    assert credit_events(peer) == []


def test_detach_and_end_free_their_numbers() -> None:
    peer = opened()
    peer.begin(0)
    peer.attach_receiver(0, "q", name="a")
    out = peer.detach(0)
    assert of(out, Detach)
    out = peer.end(0)
    assert of(out, End)
    assert one(peer.begin(3), Begin).remote_channel == 3
    assert peer.broker_channel[3] == 0


def test_an_oversized_sasl_frame_gets_a_sys_outcome_before_the_close() -> None:
    peer = Peer(make_conn(max_frame_size=1024, users={"guest": "secret"}))
    peer.header(SASL_HEADER)
    out = peer.sasl_init("PLAIN", b"\x00guest\x00" + b"x" * 4000)
    assert one(out, SaslOutcome).code == SaslCode.SYS
    assert peer.done


def test_fuzz_finding_credit_beyond_a_uint_stays_a_uint() -> None:
    # found by `make fuzz`: a receiver's flow with its delivery-count ahead of ours
    # and credit near 2**32 made our echo unencodable (an internal error, whose
    # close then followed a half-written frame)
    peer = opened()
    peer.begin(0)
    consumers(peer, 1, credit=1)
    out = peer.flow(0, link_credit=0xFFFFFFFF, delivery_count=127, drain=True, echo=True)
    flows = [o.performative for o in out if type(o.performative).__name__ == "Flow"]
    assert flows and all(f.link_credit <= 0xFFFFFFFF for f in flows)
    assert not peer.done
