"""Wrongly typed fields from a peer: bytes in, bytes out.

The codec checks every field against its declared type, so a frame with a
wrongly typed field is a decode error before the engine sees it: the peer
gets `close(amqp:decode-error)` naming the field, and nothing raises (no
traceback, no `amqp:internal-error`).  Each frame is built by hand, since
our encoder would refuse these values: the fields of a valid performative as
a generic decode reads them, one of them replaced.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from broker.codec import decode, encode
from broker.codec.messaging import Source, Target
from broker.codec.performatives import (
    Attach,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Role,
)
from broker.codec.types import Described, Int, Symbol, UInt, ULong
from broker.engine.connection import Connection
from broker.engine.events import ConnectionClosed, LinkAttached

from .peer import Peer, condition, kinds, one, raw_frame

ERR = Error(condition=Symbol("amqp:internal-error"), description="peer trouble")
BAD_ERRORS = [True, UInt(0), {}]


def with_field(performative: object, name: str, value: object) -> bytes:
    """The frame body of `performative` with field `name` replaced by `value`."""
    encoded = encode(performative)
    items, _ = decode(encoded[3:])  # the field list, wrapper types kept
    assert isinstance(items, list)
    names = [fl.name for fl in dataclasses.fields(performative)]  # type: ignore[arg-type]
    items += [None] * (len(names) - len(items))
    items[names.index(name)] = value
    code = type(performative).DESCRIPTOR_CODE  # type: ignore[attr-defined]
    return encode(Described(ULong(code), items))


@pytest.fixture
def peer(caplog: pytest.LogCaptureFixture) -> Peer:
    """An opened connection with one session (channel 0) and one attached link (handle 0)."""
    caplog.set_level(logging.INFO)
    p = Peer(Connection(container_id="broker", users={}, allow_anonymous=True))
    p.connect()
    p.begin()
    p.attach_receiver(0, "q")
    (event,) = [e for e in p.take_events() if isinstance(e, LinkAttached)]
    link = event.link
    link.accept(source=link.remote_attach.source, target=link.remote_attach.target)
    p.read()
    return p


def assert_closed_with_decode_error(peer: Peer, out: list, field: str,
                                    caplog: pytest.LogCaptureFixture) -> None:
    assert kinds(out) == [Close]
    close = one(out, Close)
    assert condition(close) == "amqp:decode-error"
    assert close.error.description.startswith(f"{field}: expected ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback logged"
    # the connection then waits for the peer's close, as after any connection error
    assert not peer.done
    assert peer.close() == []
    assert peer.done


@pytest.mark.parametrize("bad", BAD_ERRORS, ids=repr)
def test_close_with_a_bad_error_gets_decode_error(
    peer: Peer, bad: object, caplog: pytest.LogCaptureFixture
) -> None:
    out = peer.feed(raw_frame(with_field(Close(error=ERR), "error", bad)))
    assert_closed_with_decode_error(peer, out, "close.error", caplog)
    # the event reports our decode error, never the peer's bad value
    errors = [e.error for e in peer.take_events() if isinstance(e, ConnectionClosed)]
    assert errors and all(type(e) is Error and e.condition == "amqp:decode-error" for e in errors)


@pytest.mark.parametrize("bad", BAD_ERRORS, ids=repr)
def test_end_with_a_bad_error_gets_decode_error(
    peer: Peer, bad: object, caplog: pytest.LogCaptureFixture
) -> None:
    out = peer.feed(raw_frame(with_field(End(error=ERR), "error", bad)))
    assert_closed_with_decode_error(peer, out, "end.error", caplog)


@pytest.mark.parametrize("bad", BAD_ERRORS, ids=repr)
def test_detach_with_a_bad_error_gets_decode_error(
    peer: Peer, bad: object, caplog: pytest.LogCaptureFixture
) -> None:
    detach = Detach(handle=0, closed=True, error=ERR)
    out = peer.feed(raw_frame(with_field(detach, "error", bad)))
    assert_closed_with_decode_error(peer, out, "detach.error", caplog)


def test_attach_whose_source_is_a_string_gets_decode_error(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    attach = Attach(name="l2", handle=1, role=Role.RECEIVER, source=Source(address="q"),
                    target=Target())
    out = peer.feed(raw_frame(with_field(attach, "source", "q")))
    assert_closed_with_decode_error(peer, out, "attach.source", caplog)
    assert not [e for e in peer.take_events() if isinstance(e, LinkAttached)]


def test_flow_whose_link_credit_is_a_string_gets_decode_error(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    flow = Flow(next_incoming_id=0, incoming_window=2048, next_outgoing_id=0,
                outgoing_window=2048, handle=0, delivery_count=0, link_credit=10)
    out = peer.feed(raw_frame(with_field(flow, "link_credit", "10")))
    assert_closed_with_decode_error(peer, out, "flow.link-credit", caplog)


def test_disposition_whose_state_is_an_int_gets_decode_error(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    disposition = Disposition(role=Role.RECEIVER, first=0, settled=True)
    out = peer.feed(raw_frame(with_field(disposition, "state", Int(1))))
    assert_closed_with_decode_error(peer, out, "disposition.state", caplog)


# -- the same frames, well typed, are handled as usual ----------------------------------------


def test_well_typed_close_end_and_detach_errors_reach_the_engine(peer: Peer) -> None:
    detach = Detach(handle=0, closed=True, error=ERR)
    out = peer.feed(raw_frame(with_field(detach, "error", ERR)))
    assert kinds(out) == [Detach]
    out = peer.feed(raw_frame(with_field(End(), "error", ERR)))
    assert kinds(out) == [End]
    peer.take_events()
    out = peer.feed(raw_frame(with_field(Close(), "error", ERR)))
    assert kinds(out) == [Close] and one(out, Close).error is None
    (closed,) = [e for e in peer.take_events() if isinstance(e, ConnectionClosed)]
    assert closed.error == ERR
    assert peer.done


def test_well_typed_flow_and_disposition_keep_the_connection(peer: Peer) -> None:
    flow = Flow(next_incoming_id=0, incoming_window=2048, next_outgoing_id=0,
                outgoing_window=2048, handle=0, delivery_count=0, link_credit=10)
    assert Close not in kinds(peer.feed(raw_frame(with_field(flow, "link_credit", UInt(10)))))
    disposition = Disposition(role=Role.RECEIVER, first=0, settled=True)
    assert Close not in kinds(peer.feed(raw_frame(with_field(disposition, "state", None))))
    assert not peer.done
