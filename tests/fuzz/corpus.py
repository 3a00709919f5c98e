"""The seed corpus: valid frame sequences a client sends after header, open and begin.

Each seed is a list of frames (bytes) that a correct client could send on
the fuzzed connection once its session on channel 0 is begun (see
`harness.prelude`).  They are built with the broker's own performative and
message classes, so they are valid by construction; the mutators in
`mutate.py` then break them.  Between them they reach every node kind and
service: queues, the topic exchange, the anonymous relay, a stream with an
offset filter, a dynamic queue, the `/management` pair (`paired`), link
resumption, multi-frame and aborted transfers, drain, every outcome.
"""

from __future__ import annotations

import random
import struct

from broker.codec.messaging import (
    Accepted,
    AmqpValue,
    Header,
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
    Role,
    SaslInit,
    Transfer,
    amqp_error,
)
from broker.codec.types import Described, Symbol, ULong
from broker.errors import Condition
from broker.framing import HEARTBEAT, encode_frame

from . import wire

PAIRED = {Symbol("paired"): True}


def _frame(performative: object, channel: int = 0, payload: bytes = b"", ftype: int = 0) -> bytes:
    out = bytearray()
    encode_frame(out, channel, performative, payload, ftype)
    return bytes(out)


def _as_list32(frame: bytes) -> bytes:
    """A transfer frame of ours with its fields in a list32, as rhea writes them."""
    body = frame[8:]
    assert body[:4] == b"\x00\x53\x14\xc0"
    end = 5 + body[4]
    fields = body[6:end]
    body = b"\x00\x53\x14\xd0" + struct.pack(">II", len(fields) + 4, body[5]) + fields + \
        body[end:]
    return struct.pack(">I", 8 + len(body)) + frame[4:8] + body


class Script:
    """Frames of one client session, with transfer and delivery ids filled in."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.delivery_id: dict[int, int] = {}
        self.outgoing_id: dict[int, int] = {}

    def add(self, performative: object, channel: int = 0, payload: bytes = b"") -> Script:
        self.frames.append(_frame(performative, channel, payload))
        return self

    def begin(self, channel: int) -> Script:
        return self.add(Begin(next_outgoing_id=0, incoming_window=2048, outgoing_window=2048),
                        channel)

    def sender(self, handle: int, address: str | None, *, name: str | None = None,
               channel: int = 0, **kwargs: object) -> Script:
        kwargs.setdefault("source", Source())
        kwargs.setdefault("target", Target(address=address))
        return self.add(Attach(name=name or f"fz-{handle}", handle=handle, role=Role.SENDER,
                               initial_delivery_count=0, **kwargs), channel)  # type: ignore[arg-type]

    def receiver(self, handle: int, address: str | None, *, name: str | None = None,
                 channel: int = 0, credit: int | None = 10, **kwargs: object) -> Script:
        kwargs.setdefault("source", Source(address=address))
        kwargs.setdefault("target", Target())
        self.add(Attach(name=name or f"fz-{handle}", handle=handle, role=Role.RECEIVER,
                        **kwargs), channel)  # type: ignore[arg-type]
        if credit is not None:
            self.flow(handle, credit, channel=channel)
        return self

    def flow(self, handle: int | None, credit: int | None = None, *, channel: int = 0,
             delivery_count: int = 0, drain: bool = False, echo: bool = False) -> Script:
        fields: dict[str, object] = {}
        if handle is not None:
            fields = {"handle": handle, "link_credit": credit, "delivery_count": delivery_count}
        return self.add(Flow(next_incoming_id=0, incoming_window=2048,
                             next_outgoing_id=self.outgoing_id.get(channel, 0),
                             outgoing_window=2048, drain=drain, echo=echo,
                             **fields), channel)  # type: ignore[arg-type]

    def transfer(self, handle: int, payload: bytes, *, channel: int = 0,
                 settled: bool = False, chunk: int | None = None, aborted: bool = False,
                 list32: bool = False) -> Script:
        did = self.delivery_id.get(channel, 0)
        self.delivery_id[channel] = did + 1
        tag = did.to_bytes(4, "big")
        pieces = [payload] if chunk is None else \
            [payload[i : i + chunk] for i in range(0, len(payload), chunk)] or [b""]
        for i, piece in enumerate(pieces):
            first = i == 0
            last = i == len(pieces) - 1
            self.outgoing_id[channel] = self.outgoing_id.get(channel, 0) + 1
            self.add(Transfer(handle=handle, delivery_id=did if first else None,
                              delivery_tag=tag if first else None,
                              message_format=0 if first else None, settled=settled,
                              more=not last or aborted, aborted=aborted and last),
                     channel, piece)
            if list32:
                self.frames[-1] = _as_list32(self.frames[-1])
        return self

    def disposition(self, first: int, state: object, *, last: int | None = None,
                    settled: bool = True, role: bool = Role.RECEIVER, channel: int = 0) -> Script:
        return self.add(Disposition(role=role, first=first, last=last, settled=settled,
                                    state=state), channel)

    def detach(self, handle: int, *, closed: bool = True, channel: int = 0,
               error: object = None) -> Script:
        return self.add(Detach(handle=handle, closed=closed, error=error), channel)  # type: ignore[arg-type]

    def end(self, channel: int = 0) -> Script:
        return self.add(End(), channel)

    def close(self) -> Script:
        return self.add(Close())


def message(body: object = b"hello", **kwargs: object) -> bytes:
    return Message.create(body, **kwargs).payload  # type: ignore[arg-type]


def management_request(path: str, method: str, body: object = None, mid: object = "r1") -> bytes:
    return Message.create(AmqpValue(body), properties=Properties(
        message_id=mid, to=path, subject=method, reply_to="$me")).payload


def management_pair(s: Script, name: str = "fz-mgmt") -> Script:
    mgmt = "/management"
    s.sender(0, mgmt, name=name, source=Source(address=mgmt), snd_settle_mode=1,
             properties=PAIRED)
    s.receiver(1, mgmt, name=name, target=Target(address=mgmt), snd_settle_mode=1,
               properties=PAIRED, credit=20)
    return s


def seeds() -> list[list[bytes]]:
    """Every seed, in a fixed order."""
    out: list[list[bytes]] = []

    # publish, consume, settle with each outcome
    s = Script().sender(0, "/queues/fz").transfer(0, message(b"one")) \
        .transfer(0, message(b"two", header=Header(durable=True, ttl=1000)), settled=True) \
        .receiver(1, "/queues/fz", credit=5)
    s.disposition(0, Accepted()).disposition(1, Rejected(error=amqp_error(
        Condition.NOT_ALLOWED, "no"))).detach(0).detach(1).end().close()
    out.append(s.frames)
    for state in (Released(), Modified(delivery_failed=True, undeliverable_here=True),
                  Modified(delivery_failed=False, message_annotations={Symbol("x-a"): 1}),
                  Received(section_number=0, section_offset=0), None):
        s = Script().sender(0, "fz").transfer(0, message(b"m")).transfer(0, message(b"n")) \
            .receiver(1, "fz", credit=2)
        s.disposition(0, state, last=1, settled=state is not None).flow(1, 2, delivery_count=2)
        s.disposition(0, Accepted(), last=3).detach(1, closed=False).receiver(1, "fz")
        out.append(s.frames)

    # a large message in several frames, an aborted one, a settled one
    big = message(b"x" * 3000, properties=Properties(message_id="big", subject="s"))
    out.append(Script().sender(0, "/queues/fz2").transfer(0, big, chunk=700)
               .transfer(0, message(b"gone"), chunk=5, aborted=True)
               .transfer(0, message(b"p"), settled=True).receiver(1, "/queues/fz2", credit=3)
               .flow(1, 0, drain=True).frames)

    # transfers as rhea writes them (their fields a list32), one in two frames
    out.append(Script().sender(0, "/queues/fz3").transfer(0, message(b"rhea"), list32=True)
               .transfer(0, message(b"y" * 300), chunk=200, list32=True)
               .receiver(1, "/queues/fz3", credit=2).disposition(0, Accepted(), last=1).frames)

    # the topic exchange, the anonymous relay, the default exchange
    out.append(Script().sender(0, "/exchanges/amq.topic/k").transfer(0, message(b"t"))
               .sender(1, None, name="relay").transfer(1, message(b"r", properties=Properties(
                   to="/exchanges/amq.topic/k.x"))).transfer(1, message(b"q", properties=Properties(
                       to="/queues/fz"))).transfer(1, message(b"none")).frames)

    # a dynamic queue: publish to it on a second link, read it, drop it
    s = Script().receiver(0, None, source=Source(dynamic=True), credit=4) \
        .sender(1, "/queues/amq.gen-1").transfer(1, message(b"d")).detach(0)
    out.append(s.frames)

    # management: declare, bind, publish through the binding, list, purge, delete
    s = management_pair(Script())
    for path, method, body in (
        ("/queues/fzm", "PUT", {"durable": True, "arguments": {"x-queue-type": "quorum",
                                                                "x-max-length": 3}}),
        ("/exchanges/fzx", "PUT", {"type": "topic", "durable": True, "auto_delete": False,
                                   "internal": False, "arguments": {}}),
        ("/bindings", "POST", {"source": "fzx", "destination_queue": "fzm", "binding_key": "k",
                               "arguments": {}}),
        ("/bindings?src=fzx&dstq=fzm&key=k", "GET", None),
        ("/queues", "GET", None),
        ("/queues/fzm/messages", "DELETE", None),
        ("/bindings/src=fzx;dstq=fzm;key=k;args=", "DELETE", None),
        ("/exchanges/fzx", "DELETE", None),
        ("/queues/fzm", "DELETE", None),
        ("/auth/tokens", "PUT", b"jwt"),
        ("/connections", "GET", None),
    ):
        s.transfer(0, management_request(path, method, body), settled=True)
    s.sender(2, "/exchanges/fzx/k").transfer(2, message(b"via-binding"))
    s.flow(1, 20, delivery_count=11).detach(0).detach(1)
    out.append(s.frames)

    # a stream declared through management, read from the first offset
    s = management_pair(Script(), "fz-mgmt-s")
    s.transfer(0, management_request("/queues/fzs", "PUT",
                                      {"arguments": {"x-queue-type": "stream"}}), settled=True)
    s.sender(2, "/queues/fzs").transfer(2, message(b"s1")).transfer(2, message(b"s2"))
    offset = Described(Symbol("rabbitmq:stream-offset-spec"), "first")
    s.receiver(3, "/queues/fzs", source=Source(address="/queues/fzs", filter={
        Symbol("rabbitmq:stream-offset-spec"): offset}), credit=10)
    s.receiver(4, "/queues/fzs", name="fz-4", source=Source(address="/queues/fzs", filter={
        Symbol("rabbitmq:stream-offset-spec"): Described(Symbol("rabbitmq:stream-offset-spec"),
                                                         ULong(1))}), credit=1)
    s.disposition(0, Accepted(), last=2)
    out.append(s.frames)

    # a queue with limits and a dead-letter exchange, declared and overflowed
    s = management_pair(Script(), "fz-mgmt-l")
    s.transfer(0, management_request("/queues/fzm", "PUT", {"arguments": {
        "x-max-length": 1, "x-overflow": "drop-head", "x-dead-letter-exchange": "amq.topic",
        "x-message-ttl": 0, "x-max-priority": 5, "x-single-active-consumer": True}}),
        settled=True)
    s.sender(2, "/queues/fzm").transfer(2, message(b"a", header=Header(priority=9)))
    s.transfer(2, message(b"b")).receiver(3, "/queues/fzm", credit=1).receiver(
        4, "/queues/fzm", name="fz-4b", credit=1).disposition(0, Modified(
            delivery_failed=True, undeliverable_here=True))
    out.append(s.frames)

    # several sessions; links on the second; ends in either order
    s = Script().begin(1).begin(2).sender(0, "/queues/fz", channel=1) \
        .transfer(0, message(b"c1"), channel=1).receiver(0, "/queues/fz", channel=2) \
        .end(1).flow(None, channel=2, echo=True).end(2).end(0)
    out.append(s.frames)

    # link resumption: detach without closing, re-attach with unsettled state
    s = Script().sender(0, "/queues/fz", name="resume").transfer(0, message(b"u")) \
        .detach(0, closed=False).sender(0, "/queues/fz", name="resume",
                                        unsettled={b"\x00\x00\x00\x00": Accepted()})
    s.receiver(5, "/queues/fz", name="rcv", credit=1).detach(5, closed=False) \
        .receiver(5, "/queues/fz", name="rcv", unsettled={b"\x00\x00\x00\x00": None})
    out.append(s.frames)

    # heartbeats, session flow, echo, a detach with an error, a close with one
    s = Script()
    s.frames.append(HEARTBEAT)
    s.flow(None, echo=True).receiver(0, "/queues/fz", credit=100).flow(0, 100, echo=True)
    s.detach(0, error=amqp_error(Condition.DETACH_FORCED, "bye"))
    s.add(Close(error=amqp_error(Condition.CONNECTION_FORCED, "bye")))
    out.append(s.frames)

    # every handle up to a small handle-max, attached and detached
    s = Script()
    for h in range(12):
        s.sender(h, f"/queues/fz{h % 3}")
    for h in range(12):
        s.detach(h)
    out.append(s.frames)

    # SASL frames (for the preludes that stop after the SASL header)
    out.append([_frame(SaslInit(mechanism=Symbol("PLAIN"),
                                initial_response=b"\x00guest\x00guest"), ftype=1)])
    out.append([_frame(SaslInit(mechanism=Symbol("ANONYMOUS")), ftype=1)])

    # nearly valid frames, generated (no wrong types): a fixed seed, a fixed list
    gen = wire.Gen(random.Random(1234))
    for _ in range(40):
        out.append([gen.performative_frame() for _ in range(gen.rng.randint(1, 6))])
    s = management_pair(Script(), "fz-gen")
    for _ in range(8):
        s.transfer(0, gen.management_request(), settled=True)
    out.append(s.frames)
    return out
