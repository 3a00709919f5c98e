"""Connection engine: protocol headers, SASL, open/close, timers and connection errors.

Bytes in, bytes out: every test feeds frames built by `Peer` and asserts on
the engine's events and on the decoded performatives it wrote.
"""

from __future__ import annotations

from typing import Any

import pytest

from broker.codec.performatives import (
    Begin,
    Close,
    Error,
    Open,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
)
from broker.codec.types import Symbol
from broker.engine.connection import CLOSE_TIMEOUT, Connection
from broker.engine.events import ConnectionClosed, ConnectionOpened
from broker.framing import AMQP_HEADER, SASL_HEADER, TLS_HEADER

from .peer import HEARTBEAT, Out, Peer, condition, frame, kinds, one, raw_frame, sasl_frame


def make_conn(**kwargs: Any) -> Connection:
    kwargs.setdefault("container_id", "broker")
    kwargs.setdefault("users", {"guest": "secret"})
    kwargs.setdefault("allow_anonymous", True)
    return Connection(**kwargs)


def opened_peer(**kwargs: Any) -> Peer:
    open_kwargs = kwargs.pop("open", {})
    peer = Peer(make_conn(**kwargs))
    out = peer.connect(**open_kwargs)
    assert kinds(out) == [bytes, Open]
    return peer


def closed_events(peer: Peer) -> list[ConnectionClosed]:
    return [e for e in peer.take_events() if isinstance(e, ConnectionClosed)]


# -- protocol headers -----------------------------------------------------------


def test_sasl_header_is_answered_with_sasl_header_and_mechanisms() -> None:
    peer = Peer(make_conn())
    out = peer.header(SASL_HEADER)
    assert out[0] == Out(None, SASL_HEADER, b"")
    mechs = one(out, SaslMechanisms)
    assert mechs.sasl_server_mechanisms == (Symbol("PLAIN"), Symbol("ANONYMOUS"))
    assert len(out) == 2
    assert peer.raw[8 + 5] == 1, "mechanisms must travel in a SASL frame (type 1)"
    assert not peer.done


def test_mechanisms_follow_the_configuration() -> None:
    peer = Peer(make_conn(allow_anonymous=False))
    assert one(peer.header(SASL_HEADER), SaslMechanisms).sasl_server_mechanisms == (
        Symbol("PLAIN"),)
    peer = Peer(make_conn(users={}))
    assert one(peer.header(SASL_HEADER), SaslMechanisms).sasl_server_mechanisms == (
        Symbol("ANONYMOUS"),)


def test_amqp_header_without_sasl_when_anonymous_is_allowed() -> None:
    peer = Peer(make_conn())
    assert peer.header(AMQP_HEADER) == [Out(None, AMQP_HEADER, b"")]
    out = peer.open("client-1", hostname="example.org")
    assert kinds(out) == [Open]
    assert peer.take_events() == [ConnectionOpened("client-1", "example.org", "anonymous")]


def test_amqp_header_without_sasl_when_anonymous_is_disabled_gets_the_sasl_header() -> None:
    peer = Peer(make_conn(allow_anonymous=False))
    assert peer.header(AMQP_HEADER) == [Out(None, SASL_HEADER, b"")]
    assert peer.done
    assert closed_events(peer) == [ConnectionClosed(None, abrupt=True)]
    assert peer.open() == [], "nothing is read once the header was refused"


@pytest.mark.parametrize("header", [
    b"HTTP/1.1",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"AMQP\x00\x00\x09\x01",  # AMQP 0-9-1
    b"AMQP\x01\x01\x00\x00",  # unknown protocol id
    b"AMQP\x00\x01\x00\x01",  # AMQP 1.0.1
    b"AMQP\x00\x02\x00\x00",  # AMQP 2.0.0
    TLS_HEADER,
], ids=repr)
def test_unsupported_header_gets_our_header_and_the_end(header: bytes) -> None:
    peer = Peer(make_conn())
    out = peer.header(header)
    assert out == [Out(None, SASL_HEADER, b"")]
    assert peer.done
    assert closed_events(peer) == [ConnectionClosed(None, abrupt=True)]


def test_garbage_is_refused_at_the_first_byte() -> None:
    peer = Peer(make_conn())
    assert peer.feed(b"G") == [Out(None, SASL_HEADER, b"")]
    assert peer.done


def test_header_arriving_byte_by_byte() -> None:
    peer = Peer(make_conn())
    for b in SASL_HEADER[:-1]:
        assert peer.feed(bytes([b])) == []
    out = peer.feed(SASL_HEADER[-1:])
    assert kinds(out) == [bytes, SaslMechanisms]


# -- SASL -------------------------------------------------------------------------


def test_sasl_plain_success_then_amqp() -> None:
    peer = Peer(make_conn())
    peer.header(SASL_HEADER)
    out = peer.plain("guest", "secret")
    assert out == [Out(0, SaslOutcome(code=0), b"")]
    assert peer.header(AMQP_HEADER) == [Out(None, AMQP_HEADER, b"")]
    assert kinds(peer.open("c")) == [Open]
    assert peer.take_events() == [ConnectionOpened("c", None, "guest")]


@pytest.mark.parametrize(("authzid", "code"), [(b"guest", 0), (b"admin", 1)])
def test_sasl_plain_authzid_must_be_the_user(authzid: bytes, code: int) -> None:
    # guest may not act as admin (RFC 4616 §2: the server decides; we grant nothing)
    peer = Peer(make_conn())
    peer.header(SASL_HEADER)
    out = peer.sasl_init("PLAIN", authzid + b"\x00guest\x00secret")
    assert one(out, SaslOutcome).code == code


@pytest.mark.parametrize("response", [
    b"\x00guest\x00wrong",
    b"\x00nobody\x00secret",
    b"\x00guest\x00",
    b"guest\x00secret",  # no separator for the authzid
    b"\x00guest\x00sec\x00ret",
    b"\x00gu\xffest\x00secret",  # not UTF-8
    None,
], ids=repr)
def test_sasl_plain_failure_is_outcome_auth_then_done(response: bytes | None) -> None:
    peer = Peer(make_conn())
    peer.header(SASL_HEADER)
    out = peer.sasl_init("PLAIN", response)
    assert out == [Out(0, SaslOutcome(code=1), b"")]
    assert peer.done
    assert closed_events(peer) == [ConnectionClosed(None, abrupt=True)]
    assert peer.header(AMQP_HEADER) == []


def test_sasl_anonymous_allowed() -> None:
    peer = Peer(make_conn())
    out = peer.connect(sasl=("ANONYMOUS",))
    assert kinds(out) == [bytes, SaslMechanisms, SaslOutcome, bytes, Open]
    assert one(out, SaslOutcome).code == 0
    assert peer.take_events() == [ConnectionOpened("peer", None, "anonymous")]


def test_sasl_anonymous_disabled() -> None:
    peer = Peer(make_conn(allow_anonymous=False))
    peer.header(SASL_HEADER)
    assert peer.sasl_init("ANONYMOUS") == [Out(0, SaslOutcome(code=1), b"")]
    assert peer.done


def test_sasl_unknown_mechanism() -> None:
    peer = Peer(make_conn())
    peer.header(SASL_HEADER)
    assert peer.sasl_init("SCRAM-SHA-256", b"n,,n=guest,r=abc") == [
        Out(0, SaslOutcome(code=1), b"")]
    assert peer.done


def test_sasl_whole_dialogue_pipelined_in_one_chunk() -> None:
    peer = Peer(make_conn())
    data = (SASL_HEADER + sasl_frame(SaslInit(mechanism=Symbol("PLAIN"),
                                              initial_response=b"\x00guest\x00secret"))
            + AMQP_HEADER + frame(Open(container_id="fast")))
    out = peer.feed(data)
    assert kinds(out) == [bytes, SaslMechanisms, SaslOutcome, bytes, Open]
    assert one(out, SaslOutcome).code == 0


def test_amqp_frame_during_sasl_ends_the_connection() -> None:
    peer = Peer(make_conn())
    peer.header(SASL_HEADER)
    assert peer.open() == []
    assert peer.done


def test_malformed_sasl_frame_ends_the_connection() -> None:
    peer = Peer(make_conn())
    peer.header(SASL_HEADER)
    assert peer.feed(raw_frame(b"\x00\x53\x41\x45", ftype=1)) == []  # sasl-init without mechanism
    assert peer.done


def test_sasl_header_again_after_sasl_is_refused_with_the_amqp_header() -> None:
    peer = Peer(make_conn())
    peer.header(SASL_HEADER)
    peer.plain("guest", "secret")
    assert peer.header(SASL_HEADER) == [Out(None, AMQP_HEADER, b"")]
    assert peer.done


# -- open ---------------------------------------------------------------------------


def test_open_is_answered_with_our_open() -> None:
    peer = Peer(make_conn(max_frame_size=65536, channel_max=9, idle_time_out=30.0,
                          offered_capabilities=("ANONYMOUS-RELAY",),
                          properties={Symbol("product"): "x"}))
    out = peer.connect(container_id="client-7", max_frame_size=4096)
    ours = one(out, Open)
    assert ours.container_id == "broker"
    assert ours.max_frame_size == 65536
    assert ours.channel_max == 9
    assert ours.idle_time_out == 15000, "we advertise half our real idle limit, in ms"
    assert ours.offered_capabilities == (Symbol("ANONYMOUS-RELAY"),)
    assert ours.properties == {Symbol("product"): "x"}
    assert peer.take_events() == [ConnectionOpened("client-7", None, "anonymous")]
    assert peer.engine.remote_max_frame_size == 4096


def test_open_without_idle_time_out_advertises_none() -> None:
    peer = Peer(make_conn())
    assert one(peer.connect(), Open).idle_time_out is None


def test_open_with_max_frame_size_below_512_is_invalid_field() -> None:
    peer = Peer(make_conn())
    peer.header()
    out = peer.open(max_frame_size=511)
    assert kinds(out) == [Open, Close], "exactly one open, then the close"
    assert condition(one(out, Close)) == "amqp:invalid-field"
    assert not peer.done
    assert peer.close() == []
    assert peer.done


def test_frame_before_open_is_illegal_state() -> None:
    peer = Peer(make_conn())
    peer.header()
    out = peer.begin()
    assert kinds(out) == [Open, Close]
    assert condition(one(out, Close)) == "amqp:illegal-state"


def test_second_open_is_illegal_state() -> None:
    peer = opened_peer()
    out = peer.open()
    assert kinds(out) == [Close]
    assert condition(out[0].performative) == "amqp:illegal-state"


def test_peer_close_is_echoed_and_ends_the_connection() -> None:
    peer = opened_peer()
    peer.take_events()
    out = peer.close()
    assert out == [Out(0, Close(), b"")]
    assert peer.done
    assert peer.take_events() == [ConnectionClosed(None, abrupt=False)]


def test_peer_close_with_error_is_reported() -> None:
    peer = opened_peer()
    peer.take_events()
    error = Error(condition=Symbol("amqp:internal-error"), description="client bug")
    assert peer.close(error) == [Out(0, Close(), b"")]
    assert peer.take_events() == [ConnectionClosed(error, abrupt=False)]


def test_local_close_waits_for_the_peer_close() -> None:
    peer = opened_peer()
    peer.take_events()
    error = Error(condition=Symbol("amqp:connection:forced"), description="shutdown")
    peer.engine.close(error)
    out = peer.read()
    assert out == [Out(0, Close(error=error), b"")]
    assert not peer.done
    assert peer.take_events() == [ConnectionClosed(error, abrupt=True)]
    assert peer.begin() == [], "frames other than close are discarded after our close"
    assert peer.close() == []
    assert peer.done
    assert peer.take_events() == [], "ConnectionClosed is reported once"


def test_local_close_gives_up_on_a_silent_peer() -> None:
    peer = opened_peer()
    peer.engine.close(None)
    peer.read()
    assert peer.tick(1.0) == CLOSE_TIMEOUT
    assert not peer.done
    assert peer.tick(CLOSE_TIMEOUT) is None
    assert peer.done


def test_local_close_before_open_sends_open_then_close() -> None:
    peer = Peer(make_conn())
    peer.header()
    peer.engine.close(Error(condition=Symbol("amqp:connection:forced")))
    assert kinds(peer.read()) == [Open, Close]


def test_local_close_before_the_header_just_ends() -> None:
    peer = Peer(make_conn())
    peer.engine.close(None)
    assert peer.read() == []
    assert peer.done


def test_eof_ends_the_connection() -> None:
    peer = opened_peer()
    peer.take_events()
    assert peer.lost() == []
    assert peer.done
    assert peer.take_events() == [ConnectionClosed(None, abrupt=True)]
    assert peer.lost() == []
    assert peer.take_events() == []


# -- channel-max ------------------------------------------------------------------------


def test_begin_above_our_channel_max_is_a_framing_error() -> None:
    # §2.7.1: "a peer that receives a channel number outside the supported range
    # MUST close the connection with the framing-error error-code"
    peer = opened_peer(channel_max=1)
    assert kinds(peer.begin(1)) == [Begin]
    out = peer.begin(2)
    assert kinds(out) == [Close]
    assert condition(out[0].performative) == "amqp:connection:framing-error"


def test_we_never_use_a_channel_above_the_peers_channel_max() -> None:
    peer = opened_peer(open={"channel_max": 0})
    out = peer.begin(0)
    assert out[0].channel == 0
    out = peer.begin(1)  # legal for the peer (our channel-max is 65535), but we have no channel
    assert all(o.channel == 0 for o in out), f"we answered on a channel above 0: {out!r}"
    assert condition(one(out, Close)) == "amqp:not-allowed"


# -- idle time-out and heartbeats ---------------------------------------------------------


def test_heartbeats_are_sent_in_time_for_the_peers_idle_time_out() -> None:
    peer = opened_peer(open={"idle_time_out": 1000})  # the peer wants traffic every 1 s
    deadline = peer.tick(0.1)
    assert deadline is not None and deadline <= 0.5
    assert peer.read() == []
    peer.tick(deadline)
    assert peer.read() == [Out(0, None, b"")]
    assert bytes(peer.raw[-8:]) == HEARTBEAT
    deadline2 = peer.tick(deadline)
    assert deadline2 is not None and deadline < deadline2 <= deadline + 0.5
    assert peer.read() == []


def test_no_heartbeat_while_other_frames_flow() -> None:
    peer = opened_peer(open={"idle_time_out": 1000})
    peer.now = 0.4
    peer.begin()  # our begin goes out at 0.4
    assert peer.tick(0.6) == pytest.approx(0.9)
    assert peer.read() == []


def test_no_timers_without_idle_time_outs() -> None:
    peer = opened_peer()
    assert peer.tick(1e9) is None
    assert peer.read() == []
    assert not peer.done


def test_silent_peer_is_closed_with_resource_limit_exceeded() -> None:
    peer = opened_peer(idle_time_out=10.0)
    peer.take_events()
    assert peer.tick(1.0) == 10.0
    peer.now = 5.0
    assert peer.feed(HEARTBEAT) == []
    assert peer.tick(9.0) == 15.0, "any bytes from the peer restart the idle clock"
    assert peer.read() == []
    peer.tick(15.0)
    out = peer.read()
    assert kinds(out) == [Close]
    assert condition(out[0].performative) == "amqp:resource-limit-exceeded"
    assert [type(e) for e in peer.take_events()] == [ConnectionClosed]
    assert not peer.done
    peer.tick(15.0 + CLOSE_TIMEOUT)
    assert peer.done


# -- connection errors ---------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"\xff",  # no such format code
    b"\x00\x53\x11\xc0\x10",  # truncated list
    b"\x00\x53\x11\x45",  # begin without its mandatory fields
    b"\x00\x53\x11\xc0\x04\x03\x43\x43\x43",  # begin whose remote-channel is a uint, not ushort
    b"\x00\x53\x11\xc0\x04\x03\xa1\x01x\x43\x43",  # a string where a ushort belongs
], ids=lambda b: b.hex())
def test_malformed_frame_body_closes_with_decode_error(body: bytes) -> None:
    peer = opened_peer()
    out = peer.feed(raw_frame(body))
    assert kinds(out) == [Close]
    assert condition(out[0].performative) == "amqp:decode-error"


@pytest.mark.parametrize("body", [
    b"\xa1\x05hello",  # a string, not a performative
    b"\x00\x53\x70\x45",  # a message header, not a performative
], ids=lambda b: b.hex())
def test_frame_body_that_is_not_a_performative_is_decode_error(body: bytes) -> None:
    peer = opened_peer()
    peer.begin()
    out = peer.feed(raw_frame(body, channel=0))
    assert kinds(out) == [Close]
    assert condition(out[0].performative) == "amqp:decode-error"
    peer2 = opened_peer()
    out = peer2.feed(raw_frame(body, channel=3))  # and on a channel without a session
    assert condition(one(out, Close)) == "amqp:decode-error"


def test_frame_on_a_channel_without_a_session_closes_the_connection() -> None:
    peer = opened_peer()
    peer.begin(0)
    out = peer.flow(channel=4)
    assert kinds(out) == [Close]
    assert condition(out[0].performative) == "amqp:not-found"


def test_sasl_frame_after_open_is_a_framing_error() -> None:
    peer = opened_peer()
    out = peer.feed(sasl_frame(SaslInit(mechanism=Symbol("ANONYMOUS"))))
    assert condition(one(out, Close)) == "amqp:connection:framing-error"


@pytest.mark.parametrize("header", [
    b"\x00\x00\x00\x04\x02\x00\x00\x00",  # size smaller than the frame header
    b"\x00\x00\x00\x10\x01\x00\x00\x00",  # data offset 1
    b"\x00\x00\x00\x10\x02\x07\x00\x00",  # unknown frame type
], ids=lambda b: b.hex())
def test_bad_frame_header_closes_with_framing_error_and_stops_reading(header: bytes) -> None:
    peer = opened_peer()
    out = peer.feed(header + b"\x00" * 8)
    assert condition(one(out, Close)) == "amqp:connection:framing-error"
    assert peer.done, "the byte stream is unusable: no close from the peer will be read"


def test_frame_larger_than_our_max_frame_size_is_a_framing_error() -> None:
    peer = opened_peer(max_frame_size=1024)
    peer.begin()
    out = peer.feed(raw_frame(b"\x40" * 1100))
    assert condition(one(out, Close)) == "amqp:connection:framing-error"
    assert peer.done


def test_heartbeats_from_the_peer_are_ignored() -> None:
    peer = opened_peer()
    assert peer.feed(HEARTBEAT * 3) == []
    assert not peer.done


def test_a_heartbeats_bytes_inside_a_frame_are_the_frames() -> None:
    """Empty frames skip the frame reader only between frames: the same 8
    bytes completing a frame whose header came first are that frame's body."""
    whole = opened_peer()
    body_is_heartbeat_bytes = b"\x00\x00\x00\x10\x02\x00\x00\x00" + HEARTBEAT
    expected = whole.feed(body_is_heartbeat_bytes)
    assert kinds(expected) == [Close]  # not a performative: the peer hears why
    split = opened_peer()
    assert split.feed(body_is_heartbeat_bytes[:8]) == []
    assert split.feed(HEARTBEAT) == expected


def test_only_bare_heartbeats_between_frames_tell_the_driver_to_skip_its_tick() -> None:
    """receive_data's True lets the driver skip its tick and write: only for
    one or two empty frames between frames (two: the socket pump let the
    kernel hold one back), on an open connection, with nothing to send."""
    peer = opened_peer()
    conn = peer.engine
    assert conn.receive_data(HEARTBEAT, 1.0) is True
    assert conn.last_received == 1.0, "the idle timer still hears of it"
    assert conn.receive_data(HEARTBEAT * 2, 2.0) is True
    assert conn.last_received == 2.0
    assert conn.receive_data(HEARTBEAT * 3, 2.5) is False  # more: the reader's
    assert conn.receive_data(b"\x00\x00\x00\x10\x02\x00\x00\x00", 3.0) is False
    assert conn.receive_data(HEARTBEAT, 3.0) is False, "inside a frame: that frame's body"
    assert peer.read() != []  # (the close that body earned)

    waiting = opened_peer()
    waiting.engine.write_frame(0, Close())  # output nobody has collected yet
    assert waiting.engine.receive_data(HEARTBEAT, 1.0) is False

    handshake = Peer(make_conn())
    handshake.feed(AMQP_HEADER)
    assert handshake.engine.receive_data(HEARTBEAT, 1.0) is False  # not open yet


def test_heartbeat_deadline_is_never_in_the_past_while_output_is_pending() -> None:
    peer = opened_peer(open={"idle_time_out": 1000})  # heartbeat due every 0.5 s
    # the engine answers a begin, but nobody collects the output yet
    peer.engine.receive_data(frame(Begin(next_outgoing_id=0, incoming_window=1,
                                         outgoing_window=1)), 0.6)
    deadline = peer.tick(0.7)
    assert deadline is not None and deadline > 0.7, "a past deadline makes the driver spin"
    assert kinds(peer.read()) == [Begin], "no heartbeat needed: the begin is traffic"


@pytest.mark.parametrize("stage", ["nothing", "sasl-header", "sasl-mechanisms-only", "amqp-header"])
def test_a_peer_silent_during_the_handshake_is_dropped(stage: str) -> None:
    peer = Peer(make_conn(idle_time_out=10.0))
    if stage == "sasl-header":
        peer.header(SASL_HEADER)
    elif stage == "sasl-mechanisms-only":
        peer.header(SASL_HEADER)
        peer.plain("guest", "secret")
    elif stage == "amqp-header":
        peer.header(AMQP_HEADER)
    assert peer.tick(1.0) == 10.0
    peer.tick(10.0)
    out = peer.read()
    if stage == "amqp-header":  # the peer awaits our open: it gets one, then the close
        assert kinds(out) == [Open, Close]
        assert condition(out[1].performative) == "amqp:resource-limit-exceeded"
        peer.tick(10.0 + CLOSE_TIMEOUT)
    else:
        assert out == []
    assert peer.done


def test_no_timers_once_done() -> None:
    peer = opened_peer(idle_time_out=10.0, open={"idle_time_out": 1000})
    peer.close()
    assert peer.done
    assert peer.tick(5.0) is None
    assert peer.read() == []
