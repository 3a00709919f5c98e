"""A scripted AMQP client for engine and container tests: bytes in, bytes out, no I/O.

`Peer` builds client frames (protocol headers, SASL, every performative),
feeds them to an engine `Connection` (or a container `ConnectionHandle`) and
decodes everything the engine wrote into `Out(channel, performative,
payload)` tuples with the broker's own `FrameReader` and
`decode_frame_body`.  Each sending method returns what the engine answered
to that input, so a test reads as a dialogue:

    out = peer.attach_receiver(0, "/queues/q")
    assert kinds(out) == [Attach]

The peer keeps just enough session state (transfer ids, delivery ids, the
broker's transfers received) to fill in flow and transfer fields correctly;
every field can still be given explicitly to provoke errors.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any, NamedTuple

from broker.codec.messaging import Message, Source, Target
from broker.codec.performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Open,
    Role,
    SaslInit,
    SaslOutcome,
    Transfer,
)
from broker.codec.types import Symbol
from broker.engine.connection import Connection
from broker.engine.events import Event
from broker.framing import (
    AMQP_HEADER,
    NEED_DATA,
    SASL_HEADER,
    FrameReader,
    ProtocolHeader,
    decode_frame_body,
    encode_frame,
)

AUTO: Any = object()  # "let the peer fill this in"


class Out(NamedTuple):
    """One thing the engine wrote.

    `channel` is None for a protocol header (then `performative` is its 8
    raw bytes); `performative` is None for a heartbeat (an empty frame).
    """

    channel: int | None
    performative: object
    payload: bytes


# -- frame builders ------------------------------------------------------------


def frame(performative: object, channel: int = 0, payload: bytes = b"", ftype: int = 0) -> bytes:
    out = bytearray()
    encode_frame(out, channel, performative, payload, ftype)
    return bytes(out)


def sasl_frame(performative: object) -> bytes:
    return frame(performative, 0, b"", 1)


def raw_frame(body: bytes, channel: int = 0, ftype: int = 0) -> bytes:
    """A frame around arbitrary body bytes (for malformed-body tests)."""
    return struct.pack(">IBBH", 8 + len(body), 2, ftype, channel) + body


HEARTBEAT = raw_frame(b"")


def frame_sizes(data: bytes) -> list[int]:
    """Sizes of the frames in a byte stream, read straight from the frame
    headers (independent of FrameReader) and skipping protocol headers."""
    sizes = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 4] == b"AMQP":
            pos += 8
            continue
        (size,) = struct.unpack_from(">I", data, pos)
        sizes.append(size)
        pos += size
    assert pos == len(data), "the stream must end on a frame boundary"
    return sizes


# -- reading what the engine wrote ----------------------------------------------


def kinds(outs: Iterable[Out]) -> list[type]:
    """The performative classes, in order (bytes for a header, NoneType for a heartbeat)."""
    return [type(o.performative) for o in outs]


def of(outs: Iterable[Out], kind: type) -> list[Any]:
    """The performatives of one class, in order."""
    return [o.performative for o in outs if isinstance(o.performative, kind)]


def one(outs: Iterable[Out], kind: type) -> Any:
    found = of(outs, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {found!r}"
    return found[0]


def condition(performative: Any) -> str | None:
    """The error condition of a detach/end/close (None when there is no error)."""
    error = performative.error
    return None if error is None else str(error.condition)


def deliveries(outs: Iterable[Out]) -> list[tuple[Transfer, bytes]]:
    """Reassemble transfers into (first transfer frame, whole payload), in order.

    Checks that continuation frames carry the same delivery id as the first.
    """
    done: list[tuple[Transfer, bytes]] = []
    partial: dict[tuple[int | None, int], tuple[Transfer, list[bytes]]] = {}
    for o in outs:
        t = o.performative
        if not isinstance(t, Transfer):
            continue
        key = (o.channel, t.handle)
        if key in partial:
            first, chunks = partial[key]
            if t.delivery_id is not None:
                assert t.delivery_id == first.delivery_id
        else:
            first, chunks = t, []
            partial[key] = (first, chunks)
        chunks.append(o.payload)
        if t.aborted:
            del partial[key]
        elif not t.more:
            del partial[key]
            done.append((first, b"".join(chunks)))
    assert not partial, f"incomplete deliveries: {partial!r}"
    return done


def messages(outs: Iterable[Out]) -> list[Message]:
    return [Message.parse(payload) for _, payload in deliveries(outs)]


def bodies(outs: Iterable[Out]) -> list[object]:
    """The body of each delivered message (the bytes of a single data section)."""
    result = []
    for m in messages(outs):
        (section,) = m.body
        result.append(section.value)  # type: ignore[attr-defined]
    return result


# -- the peer ------------------------------------------------------------------


class Peer:
    """A client talking to one engine `Connection` or container `ConnectionHandle`."""

    def __init__(self, conn: Any, *, now: float = 0.0) -> None:
        self.conn = conn
        self.engine: Connection = conn if isinstance(conn, Connection) else conn.conn
        self.now = now
        self.reader = FrameReader()
        self.raw = bytearray()  # every byte the engine ever wrote
        self.received: list[Out] = []  # everything decoded so far
        self.events: list[Event] = []  # engine events drained (bare Connection only)
        # our session state, by our channel
        self.next_outgoing_id: dict[int, int] = {}
        self.next_delivery_id: dict[int, int] = {}
        self.incoming_window: dict[int, int] = {}
        self.broker_channel: dict[int, int] = {}  # our channel → the broker's
        self.transfers_in: dict[int, int] = {}  # transfer frames received, by broker channel
        self.broker_next_outgoing_id: dict[int, int] = {}
        self.our_handle: dict[tuple[int, str], int] = {}  # (our channel, link name) → our handle
        self.broker_handle: dict[tuple[int, int], int] = {}  # (broker ch, broker handle) → ours
        # the sender's delivery-count as this peer knows it, by (our channel, our handle)
        self.delivery_count: dict[tuple[int, int], int] = {}
        self._continuing: set[tuple[int, int]] = set()
        self._tags = 0

    # -- plumbing ----------------------------------------------------------------

    def feed(self, data: bytes) -> list[Out]:
        """Give the engine bytes; return what it wrote in answer."""
        if isinstance(self.conn, Connection):
            self.conn.receive_data(data, self.now)
            while (event := self.conn.next_event()) is not None:
                self.events.append(event)
        else:
            self.conn.receive_data(data)
        return self.read()

    def read(self) -> list[Out]:
        """Decode whatever the engine has written since the last read."""
        data = self.conn.data_to_send()
        self.raw += data
        self.reader.feed(data)
        outs = []
        while True:
            item = self.reader.next()
            if item is NEED_DATA:
                break
            if isinstance(item, ProtocolHeader):
                out = Out(None, item.raw, b"")
            elif not item.body:  # type: ignore[union-attr]
                out = Out(item.channel, None, b"")  # type: ignore[union-attr]
            else:
                performative, payload = decode_frame_body(item.body)  # type: ignore[union-attr]
                out = Out(item.channel, performative, payload)  # type: ignore[union-attr]
                self._track(out)
            outs.append(out)
        self.received += outs
        return outs

    def _track(self, out: Out) -> None:
        p = out.performative
        assert out.channel is not None
        if isinstance(p, SaslOutcome) and p.code == 0:
            self.reader.expect_header()
        elif isinstance(p, Begin) and p.remote_channel is not None:
            for ours, theirs in list(self.broker_channel.items()):
                if theirs == out.channel:  # an ended session of ours had this channel
                    del self.broker_channel[ours]
            self.broker_channel[p.remote_channel] = out.channel
            self.transfers_in[out.channel] = 0
            self.broker_next_outgoing_id[out.channel] = p.next_outgoing_id
        elif isinstance(p, Attach):
            ch = self._our_channel(out.channel)
            ours = self.our_handle.get((ch, p.name))
            if ours is not None:
                self.broker_handle[(out.channel, p.handle)] = ours
                if p.initial_delivery_count is not None:
                    self.delivery_count[(ch, ours)] = p.initial_delivery_count
        elif isinstance(p, Transfer):
            self.transfers_in[out.channel] = self.transfers_in.get(out.channel, 0) + 1
            key = (self._our_channel(out.channel),
                   self.broker_handle.get((out.channel, p.handle), -1))
            if key not in self._continuing:
                self.delivery_count[key] = self.delivery_count.get(key, 0) + 1
            if p.more and not p.aborted:
                self._continuing.add(key)
            else:
                self._continuing.discard(key)
        elif isinstance(p, Flow) and p.handle is not None and p.delivery_count is not None:
            key = (self._our_channel(out.channel),
                   self.broker_handle.get((out.channel, p.handle), -1))
            if key in self.delivery_count:  # the broker is the sender on this link
                self.delivery_count[key] = p.delivery_count

    def _our_channel(self, broker_channel: int) -> int:
        for ours, theirs in self.broker_channel.items():
            if theirs == broker_channel:
                return ours
        return broker_channel

    def take_events(self) -> list[Event]:
        """Engine events seen since the last call (bare Connection only)."""
        if isinstance(self.conn, Connection):
            while (event := self.conn.next_event()) is not None:
                self.events.append(event)
        events, self.events = self.events, []
        return events

    def tick(self, now: float) -> float | None:
        """Run the engine's timers at `now` (a ConnectionHandle reads its container's clock)."""
        self.now = now
        if isinstance(self.conn, Connection):
            deadline = self.conn.tick(now)
            while (event := self.conn.next_event()) is not None:
                self.events.append(event)
            return deadline
        return self.conn.tick()  # type: ignore[no-any-return]

    def lost(self) -> list[Out]:
        """The transport went away (EOF)."""
        return self.feed(b"")

    @property
    def done(self) -> bool:
        return bool(self.conn.done)

    # -- connection ----------------------------------------------------------------

    def header(self, raw: bytes = AMQP_HEADER) -> list[Out]:
        return self.feed(raw)

    def sasl_init(self, mechanism: str, initial_response: bytes | None = None) -> list[Out]:
        return self.feed(sasl_frame(SaslInit(mechanism=Symbol(mechanism),
                                             initial_response=initial_response)))

    def plain(self, user: str, password: str) -> list[Out]:
        return self.sasl_init("PLAIN", b"\x00" + user.encode() + b"\x00" + password.encode())

    def open(self, container_id: str = "peer", **kwargs: Any) -> list[Out]:
        return self.feed(frame(Open(container_id=container_id, **kwargs)))

    def connect(self, *, sasl: tuple[str, ...] | None = None, **open_kwargs: Any) -> list[Out]:
        """Protocol header(s), optional SASL (("ANONYMOUS",) or ("PLAIN", user, password)),
        then open.  Returns everything the engine answered."""
        out = []
        if sasl is not None:
            out += self.header(SASL_HEADER)
            if sasl[0] == "PLAIN":
                out += self.plain(sasl[1], sasl[2])
            else:
                out += self.sasl_init(sasl[0])
        out += self.header(AMQP_HEADER)
        out += self.open(**open_kwargs)
        return out

    def close(self, error: Error | None = None) -> list[Out]:
        return self.feed(frame(Close(error=error)))

    # -- sessions ------------------------------------------------------------------

    def begin(self, channel: int = 0, *, next_outgoing_id: int = 0,
              incoming_window: int = 2048, outgoing_window: int = 2048,
              **kwargs: Any) -> list[Out]:
        self.next_outgoing_id[channel] = next_outgoing_id
        self.next_delivery_id.setdefault(channel, 0)
        self.incoming_window[channel] = incoming_window
        return self.feed(frame(Begin(next_outgoing_id=next_outgoing_id,
                                     incoming_window=incoming_window,
                                     outgoing_window=outgoing_window, **kwargs), channel))

    def end(self, channel: int = 0, error: Error | None = None) -> list[Out]:
        return self.feed(frame(End(error=error), channel))

    def session_flow_fields(self, channel: int) -> dict[str, int]:
        """next-incoming-id, windows and next-outgoing-id as this peer knows them."""
        bch = self.broker_channel.get(channel, channel)
        return {
            "next_incoming_id": self.broker_next_outgoing_id.get(bch, 0)
            + self.transfers_in.get(bch, 0),
            "incoming_window": self.incoming_window.get(channel, 2048),
            "next_outgoing_id": self.next_outgoing_id.get(channel, 0),
            "outgoing_window": 2048,
        }

    # -- links -------------------------------------------------------------------------

    def attach(self, handle: int, role: bool, *, name: str | None = None,
               source: object = None, target: object = None, channel: int = 0,
               **kwargs: Any) -> list[Out]:
        if role is Role.SENDER:
            kwargs.setdefault("initial_delivery_count", 0)
        name = name or f"link-{channel}-{handle}"
        self.our_handle[(channel, name)] = handle
        return self.feed(frame(Attach(name=name, handle=handle,
                                      role=role, source=source, target=target, **kwargs),
                               channel))

    def attach_receiver(self, handle: int, address: object = "q", **kwargs: Any) -> list[Out]:
        """We receive (the broker sends): a consumer of `address`."""
        kwargs.setdefault("source", Source(address=address))
        kwargs.setdefault("target", Target())
        return self.attach(handle, Role.RECEIVER, **kwargs)

    def attach_sender(self, handle: int, address: object = "q", **kwargs: Any) -> list[Out]:
        """We send (the broker receives): a publisher to `address` (None: anonymous relay)."""
        kwargs.setdefault("source", Source())
        kwargs.setdefault("target", Target(address=address))
        return self.attach(handle, Role.SENDER, **kwargs)

    def flow(self, handle: int | None = None, *, link_credit: int | None = None,
             delivery_count: int | None = AUTO, channel: int = 0, drain: bool = False,
             echo: bool = False, **kwargs: Any) -> list[Out]:
        """A flow frame; session fields are filled in from what the peer has seen.

        With a handle, delivery_count defaults to the sender's delivery-count
        as this peer knows it: the broker's initial-delivery-count plus the
        deliveries received since (or the count from the broker's last flow)
        on a link where we receive, 0 on a link where we send."""
        fields: dict[str, Any] = self.session_flow_fields(channel)
        fields.update(kwargs)
        if handle is not None:
            if delivery_count is AUTO:
                delivery_count = self.delivery_count.get((channel, handle), 0)
            fields.update(handle=handle, link_credit=link_credit, delivery_count=delivery_count)
        return self.feed(frame(Flow(drain=drain, echo=echo, **fields), channel))

    def detach(self, handle: int, *, closed: bool = True, error: Error | None = None,
               channel: int = 0) -> list[Out]:
        return self.feed(frame(Detach(handle=handle, closed=closed, error=error), channel))

    # -- deliveries ------------------------------------------------------------------------

    def transfer_frame(self, handle: int, payload: bytes = b"", *, channel: int = 0,
                       delivery_id: int | None = AUTO, delivery_tag: bytes | None = AUTO,
                       settled: bool | None = False, more: bool = False,
                       aborted: bool = False, message_format: int | None = 0,
                       continuation: bool = False) -> bytes:
        """Bytes of one transfer frame; advances our transfer id (and delivery id,
        unless this continues a delivery)."""
        if continuation:
            delivery_id = None if delivery_id is AUTO else delivery_id
            delivery_tag = None if delivery_tag is AUTO else delivery_tag
        else:
            if delivery_id is AUTO:
                delivery_id = self.next_delivery_id.get(channel, 0)
                self.next_delivery_id[channel] = delivery_id + 1
            if delivery_tag is AUTO:
                delivery_tag = self._tags.to_bytes(4, "big")
                self._tags += 1
        self.next_outgoing_id[channel] = self.next_outgoing_id.get(channel, 0) + 1
        return frame(Transfer(handle=handle, delivery_id=delivery_id, delivery_tag=delivery_tag,
                              message_format=message_format, settled=settled, more=more,
                              aborted=aborted), channel, payload)

    def transfer(self, handle: int, payload: bytes = b"", **kwargs: Any) -> list[Out]:
        return self.feed(self.transfer_frame(handle, payload, **kwargs))

    def send(self, handle: int, message: Message | bytes, *, chunk: int | None = None,
             channel: int = 0, settled: bool = False, message_format: int = 0) -> list[Out]:
        """Send one message (a Message or bytes body), split into frames of
        `chunk` payload bytes when given; all frames are fed in one piece.
        With a `message_format`, bytes are sent as they are (an Azure batch)."""
        payload = message.payload if isinstance(message, Message) else \
            message if message_format else Message.create(message).payload
        if chunk is None or len(payload) <= chunk:
            return self.feed(self.transfer_frame(handle, payload, channel=channel,
                                                 settled=settled,
                                                 message_format=message_format))
        pieces = [payload[i : i + chunk] for i in range(0, len(payload), chunk)]
        data = b"".join(
            self.transfer_frame(handle, piece, channel=channel, settled=settled,
                                more=i < len(pieces) - 1, continuation=i > 0)
            for i, piece in enumerate(pieces)
        )
        return self.feed(data)

    def disposition(self, first: int, last: int | None = None, *, settled: bool = True,
                    state: object = None, role: bool = Role.RECEIVER,
                    channel: int = 0) -> list[Out]:
        return self.feed(frame(Disposition(role=role, first=first, last=last, settled=settled,
                                           state=state), channel))
