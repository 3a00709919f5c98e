"""Properties of the engine: chunking never matters, and no frame sequence is a crash.

Any exception other than a protocol error is a bug that the engine re-raises
(after closing with amqp:internal-error), so "feeding X does not raise" is a
real assertion here.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.codec.messaging import (
    Accepted,
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
    Role,
    SaslInit,
    Transfer,
)
from broker.codec.types import Symbol
from broker.config import Config
from broker.container import Container
from broker.engine.connection import Connection
from broker.framing import AMQP_HEADER, SASL_HEADER

from .peer import Peer, frame, raw_frame, sasl_frame


def script() -> bytes:
    """A whole client conversation, as one byte string."""
    m = Message.create(b"x" * 300, properties=Properties(to="q")).payload
    frames = [
        SASL_HEADER,
        sasl_frame(SaslInit(mechanism=Symbol("PLAIN"), initial_response=b"\x00guest\x00secret")),
        AMQP_HEADER,
        frame(Open(container_id="c", max_frame_size=512, idle_time_out=1000)),
        frame(Begin(next_outgoing_id=0, incoming_window=10, outgoing_window=10)),
        frame(Attach(name="in", handle=0, role=Role.SENDER, source=Source(),
                     target=Target(address="q"), initial_delivery_count=0)),
        frame(Attach(name="out", handle=1, role=Role.RECEIVER, source=Source(address="q"),
                     target=Target())),
        frame(Flow(next_incoming_id=0, incoming_window=10, next_outgoing_id=0,
                   outgoing_window=10, handle=1, delivery_count=0, link_credit=5, echo=True)),
        frame(Transfer(handle=0, delivery_id=0, delivery_tag=b"a", message_format=0,
                       more=True), 0, m[:100]),
        frame(Transfer(handle=0, more=False), 0, m[100:]),
        frame(Disposition(role=Role.RECEIVER, first=0, last=3, settled=True, state=Accepted())),
        raw_frame(b""),  # heartbeat
        frame(Detach(handle=1, closed=True)),
        frame(End()),
        frame(Close()),
    ]
    return b"".join(frames)


SCRIPT = script()


def describe(event: Any) -> tuple[object, ...]:
    """An event without object identities, for comparing two runs."""
    fields: list[object] = [type(event).__name__]
    for name in ("container_id", "error", "abrupt", "closed", "state", "settled"):
        if hasattr(event, name):
            fields.append(getattr(event, name))
    if hasattr(event, "link"):
        fields.append(event.link.name)
    if hasattr(event, "delivery"):
        fields.append((event.delivery.delivery_id, event.delivery.payload))
    return tuple(fields)


def run(chunks: list[bytes]) -> tuple[bytes, list[tuple[object, ...]]]:
    conn = Connection(container_id="broker", users={"guest": "secret"}, allow_anonymous=False)
    out = bytearray()
    events = []
    for chunk in chunks:
        conn.receive_data(chunk, 0.0)
        while (event := conn.next_event()) is not None:
            events.append(describe(event))
    out += conn.data_to_send()
    assert conn.done
    return bytes(out), events


WHOLE = run([SCRIPT])


def test_the_script_goes_all_the_way() -> None:
    out, events = WHOLE
    names = [e[0] for e in events]
    assert names[0] == "ConnectionOpened" and names[-1] == "ConnectionClosed"
    assert "LinkAttached" in names and "LinkDetached" in names
    assert out.count(b"\x00\x53\x18") == 1, "one close: ours, in answer to the peer's"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SCRIPT)), max_size=30))
def test_any_chunking_gives_the_same_bytes_and_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [SCRIPT[a:b] for a, b in zip([0, *points], [*points, len(SCRIPT)]) if b > a]
    assert run(chunks) == WHOLE


def test_byte_by_byte_gives_the_same_bytes_and_events() -> None:
    assert run([SCRIPT[i : i + 1] for i in range(len(SCRIPT))]) == WHOLE


def test_trailing_data_after_the_close_is_ignored() -> None:
    assert run([SCRIPT + frame(Begin(next_outgoing_id=0, incoming_window=1,
                                     outgoing_window=1))]) == WHOLE


# -- fuzzing the container with frame sequences ----------------------------------------

uints = st.one_of(st.integers(0, 4), st.just(0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
handles = st.one_of(st.integers(0, 1), st.integers(0, 3))
addresses = st.sampled_from([None, "q", "/queues/q", "/queues/r", "/queues/%ff", "/x/y", ""])
messages = st.one_of(
    st.builds(lambda body, to: Message.create(body, properties=Properties(to=to)).payload,
              st.binary(max_size=50), addresses),
    st.binary(max_size=40),
)
states = st.sampled_from([None, Accepted(), Rejected(), Released(), Modified(),
                          Modified(delivery_failed=True, undeliverable_here=True),
                          Received(section_number=0, section_offset=0)])
sources = st.one_of(st.none(), st.builds(Source, address=addresses, dynamic=st.booleans()),
                    st.builds(Target, address=addresses))
targets = st.one_of(st.none(), st.builds(Target, address=addresses, dynamic=st.booleans()))

performatives = st.one_of(
    st.builds(Attach, name=st.sampled_from(["a", "b", "c"]), handle=handles, role=st.booleans(),
              snd_settle_mode=st.integers(0, 2), source=sources, target=targets,
              initial_delivery_count=st.one_of(st.none(), uints),
              max_message_size=st.one_of(st.none(), st.integers(0, 100))),
    st.builds(Flow, next_incoming_id=st.one_of(st.none(), uints), incoming_window=uints,
              next_outgoing_id=uints, outgoing_window=uints,
              handle=st.one_of(st.none(), handles), delivery_count=st.one_of(st.none(), uints),
              link_credit=st.one_of(st.none(), st.integers(0, 5)), drain=st.booleans(),
              echo=st.booleans()),
    st.builds(Disposition, role=st.booleans(), first=st.integers(0, 6),
              last=st.one_of(st.none(), st.integers(0, 6)), settled=st.booleans(), state=states),
    st.builds(Detach, handle=handles, closed=st.booleans()),
    st.builds(End),
)


@st.composite
def client_frames(draw: st.DrawFn) -> bytes:
    channel = 1 if draw(st.integers(0, 19)) == 0 else 0
    kind = draw(st.integers(0, 19))
    if kind <= 9:
        return frame(Transfer(handle=draw(handles),
                              delivery_id=draw(st.one_of(st.none(), st.integers(0, 6))),
                              delivery_tag=draw(st.one_of(st.none(), st.binary(max_size=4))),
                              message_format=0, settled=draw(st.booleans()),
                              more=draw(st.booleans()), aborted=draw(st.integers(0, 9)) == 0),
                     channel, draw(messages))
    if kind == 10:
        return raw_frame(draw(st.binary(max_size=12)), channel)
    return frame(draw(performatives), channel)


def start(container: Container, name: str) -> Peer:
    peer = Peer(container.connection_made(name, "test", lambda: None))
    peer.connect(container_id=name, max_frame_size=512)
    peer.begin(0)
    peer.attach_sender(0, "q", name="pub")
    peer.attach_receiver(1, "q", name="sub")
    peer.flow(1, link_credit=3)
    peer.send(0, b"seed")
    return peer


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), client_frames()), max_size=25))
def test_no_frame_sequence_crashes_the_container(script: list[tuple[bool, bytes]]) -> None:
    container = Container(Config(max_message_size=200, queue_max_length=5),
                          clock=lambda: 0.0, wall_clock=lambda: 1000.0)
    peers = [start(container, "a"), start(container, "b")]
    for to_b, data in script:
        peer = peers[to_b]
        if not peer.done:
            peer.feed(data)  # raises on an internal error
        other = peers[not to_b]
        other.read()
    for peer in peers:
        peer.lost()
    for node in container.registry.nodes.values():
        assert node.unacked == 0, f"{node!r}: deliveries outlived their connections"
        assert node.ready_bytes == sum(e.size for e in node.ready)
