"""Conformance cases for python-qpid-proton, over TCP and over WebSocket.

Both transports go through one small synchronous interface (`PConn`,
`PSender`, `PReceiver`), so each case is written once:

- `proton-tcp` is proton's own I/O: `proton.utils.BlockingConnection` (its
  container and socket handling), with a few reaches into its `Fetcher` for
  what the blocking API does not offer (manual credit, drain, modified with
  delivery-failed, dropping the socket);
- `proton-ws` is `broker.client.proton_ws.BlockingConnection`, proton's
  engine driven over trio-websocket.

Each case returns JSON-shaped data in the same shape as the rhea cases in
`node/cases.js`; the tests make the assertions.  Values are described with
their proton type (`{"@type": "long", "value": 5}`) so type fidelity is
checked too.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from proton import (
    Condition,
    Delivery,
    Described,
    Disposition,
    Endpoint,
    Message,
    Timeout,
    char,
    int32,
    symbol,
    timestamp,
    ulong,
)
from proton.reactor import DynamicNodeProperties, Filter
from proton.utils import BlockingConnection, SendException

from broker.client import proton_ws

STEP = 10.0  # seconds for one wait
STATES = {
    Disposition.ACCEPTED: "accepted",
    Disposition.REJECTED: "rejected",
    Disposition.RELEASED: "released",
    Disposition.MODIFIED: "modified",
}


# -- the interface, over proton's own TCP I/O -------------------------------------


class TcpReceived:
    def __init__(self, conn: TcpConn, message: Message, delivery: Delivery) -> None:
        self.conn = conn
        self.message = message
        self.delivery = delivery

    def _settle(self, state: int) -> None:
        self.delivery.update(state)
        self.delivery.settle()
        self.conn.pump()

    def accept(self) -> None:
        self._settle(Disposition.ACCEPTED)

    def release(self) -> None:
        self._settle(Disposition.RELEASED)

    def reject(self) -> None:
        self.delivery.local.condition = Condition("amqp:internal-error", "conformance reject")
        self._settle(Disposition.REJECTED)

    def modify(self, delivery_failed: bool = True) -> None:
        self.delivery.local.failed = delivery_failed
        self._settle(Disposition.MODIFIED)


class TcpSender:
    def __init__(self, conn: TcpConn, blocking: Any) -> None:
        self.conn = conn
        self.blocking = blocking
        self.link = blocking.link

    def send(self, message: Message) -> str:
        try:
            delivery = self.blocking.send(message, timeout=STEP)
        except SendException as exc:
            return STATES.get(exc.state, str(exc.state))
        return STATES.get(delivery.remote_state, "settled")

    def send_all(self, messages: list[Message]) -> list[str]:
        deliveries = [self.link.send(m) for m in messages]
        self.conn.bc.wait(
            lambda: all(d.remote_state or d.settled for d in deliveries),
            timeout=3 * STEP,
            msg="outcomes",
        )
        states = [STATES.get(d.remote_state, "settled") for d in deliveries]
        for d in deliveries:
            d.settle()
        return states

    def close(self) -> None:
        self.blocking.close()


class TcpReceiver:
    def __init__(self, conn: TcpConn, blocking: Any, auto_credit: bool) -> None:
        self.conn = conn
        self.blocking = blocking
        self.link = blocking.link
        self.fetcher = blocking.fetcher
        self.auto_credit = auto_credit

    @property
    def address(self) -> str | None:
        return self.link.remote_source.address

    @property
    def applied_filters(self) -> list[str]:
        return _filter_keys(self.link.remote_source.filter)

    @property
    def credit(self) -> int:
        return int(self.link.credit)

    def flow(self, n: int) -> None:
        self.link.flow(n)
        self.conn.pump()

    def receive(self, timeout: float = STEP) -> TcpReceived:
        self.conn.bc.wait(
            lambda: self.fetcher.has_message, timeout=timeout, msg=f"a message on {self.link.name}"
        )
        message, delivery = self.fetcher.incoming.popleft()
        if self.auto_credit:
            self.link.flow(1)
        return TcpReceived(self.conn, message, delivery)

    def drain(self) -> list[TcpReceived]:
        self.link.drain(0)
        # Done when the credit is gone (used by transfers or spent by the
        # broker's drain flow) and the fetcher has taken every transfer: its
        # on_message yields after each, so the transport may be ahead of it.
        self.conn.bc.wait(
            lambda: self.link.credit == 0 and self.link.queued == 0, timeout=STEP, msg="drain"
        )
        self.link.drain_mode = False
        taken = [TcpReceived(self.conn, m, d) for m, d in self.fetcher.incoming]
        self.fetcher.incoming.clear()
        return taken

    def close(self) -> None:
        self.blocking.close()


class TcpConn:
    transport = "tcp"

    def __init__(
        self,
        broker: Any,
        *,
        user: str | None = None,
        password: str | None = None,
        idle_timeout: float | None = None,
        max_frame_size: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {
            "allowed_mechs": "PLAIN" if user else "ANONYMOUS",
            "container_id": f"proton-tcp-{uuid.uuid4()}",
        }
        if user:
            kwargs.update(user=user, password=password, allow_insecure_mechs=True)
        if max_frame_size:
            kwargs["max_frame_size"] = max_frame_size
        self.bc = BlockingConnection(
            f"amqp://{broker.host}:{broker.port}", timeout=STEP, heartbeat=idle_timeout, **kwargs
        )
        if (
            self.bc.conn.state & Endpoint.REMOTE_CLOSED
            or not self.bc.conn.state & Endpoint.REMOTE_ACTIVE
        ):
            raise ConnectionError(f"refused: {self.bc.conn.remote_condition}")

    @property
    def offered_capabilities(self) -> list[str]:
        return [str(c) for c in (self.bc.conn.remote_offered_capabilities or [])]

    @property
    def remote_max_frame_size(self) -> int:
        return int(self.bc.conn.transport.remote_max_frame_size)

    def pump(self) -> None:
        """Let proton write what we just did."""
        self.bc.container.process()

    def idle(self, seconds: float) -> None:
        """Stay idle (no application traffic) while proton's I/O keeps running."""
        deadline = time.monotonic() + seconds
        try:
            self.bc.wait(lambda: time.monotonic() >= deadline, timeout=seconds + STEP)
        except Timeout:
            pass

    def sender(self, address: str | None) -> TcpSender:
        # Unique link names: proton's container derives them from the address,
        # and two links with one name on a connection is a protocol error.
        return TcpSender(self, self.bc.create_sender(address, name=_link_name("sender")))

    def receiver(
        self,
        address: str | None = None,
        *,
        credit: int = 0,
        auto_credit: bool = False,
        dynamic: bool = False,
        filter: dict[Any, Any] | None = None,
    ) -> TcpReceiver:
        options = []
        if filter:
            options.append(Filter(filter))
        if dynamic:
            options.append(DynamicNodeProperties({}))
        blocking = self.bc.create_receiver(
            address,
            credit=None,
            dynamic=dynamic,
            name=_link_name("receiver"),
            options=options or None,
        )
        receiver = TcpReceiver(self, blocking, auto_credit)
        if credit:
            receiver.flow(credit)
        return receiver

    def close(self) -> None:
        self.bc.close()

    def abort(self) -> None:
        """Shut the socket down under proton: no AMQP close is sent."""
        sock = self.bc.conn.transport._selectable._delegate
        sock.shutdown(socket.SHUT_RDWR)
        self.bc.closing = True
        # Let proton notice, then clean up; errors about the lost socket are expected.
        with suppress(Exception):
            self.bc.wait(lambda: False, timeout=0.2)
        with suppress(Exception):
            self.bc.close()


def _link_name(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:12]}"


def _filter_keys(data: Any) -> list[str]:
    data.rewind()
    if data.next() is None:
        return []
    return [str(k) for k in data.get_object()]


# -- the interface, over WebSocket (broker.client.proton_ws) -----------------------


class WsReceived:
    def __init__(self, received: proton_ws.BlockingReceived) -> None:
        self.received = received
        self.message = received.message

    def accept(self) -> None:
        self.received.accept()

    def release(self) -> None:
        self.received.release()

    def reject(self) -> None:
        self.received.reject(Condition("amqp:internal-error", "conformance reject"))

    def modify(self, delivery_failed: bool = True) -> None:
        self.received.modify(delivery_failed=delivery_failed)


class WsSender:
    def __init__(self, sender: proton_ws.BlockingSender) -> None:
        self.sender = sender

    def send(self, message: Message) -> str:
        return self.sender.send(message).state

    def send_all(self, messages: list[Message]) -> list[str]:
        return [o.state for o in self.sender.send_many(messages, timeout=3 * STEP)]

    def close(self) -> None:
        self.sender.close()


class WsReceiver:
    def __init__(self, receiver: proton_ws.BlockingReceiver) -> None:
        self.receiver = receiver

    @property
    def address(self) -> str | None:
        return self.receiver.address

    @property
    def applied_filters(self) -> list[str]:
        return [str(k) for k in self.receiver.remote_filter]

    @property
    def credit(self) -> int:
        return self.receiver.credit

    def flow(self, n: int) -> None:
        self.receiver.flow(n)

    def receive(self, timeout: float = STEP) -> WsReceived:
        return WsReceived(self.receiver.receive(timeout))

    def drain(self) -> list[WsReceived]:
        return [WsReceived(r) for r in self.receiver.drain(STEP)]

    def close(self) -> None:
        self.receiver.close()


class WsConn:
    transport = "ws"

    def __init__(
        self,
        broker: Any,
        *,
        user: str | None = None,
        password: str | None = None,
        idle_timeout: float | None = None,
        max_frame_size: int | None = None,
        chunk_size: int | None = proton_ws.DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.bc = proton_ws.BlockingConnection(
            broker.ws_url,
            timeout=STEP,
            user=user,
            password=password,
            idle_timeout=idle_timeout,
            max_frame_size=max_frame_size,
            chunk_size=chunk_size,
            container_id=f"proton-ws-{uuid.uuid4()}",
        )

    @property
    def offered_capabilities(self) -> list[str]:
        return self.bc.call_sync(lambda: self.bc.connection.remote_offered_capabilities)

    @property
    def remote_max_frame_size(self) -> int:
        return self.bc.call_sync(lambda: int(self.bc.connection.transport.remote_max_frame_size))

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)  # the trio thread keeps heartbeats going

    def sender(self, address: str | None) -> WsSender:
        return WsSender(self.bc.create_sender(address))

    def receiver(
        self,
        address: str | None = None,
        *,
        credit: int = 0,
        auto_credit: bool = False,
        dynamic: bool = False,
        filter: dict[Any, Any] | None = None,
    ) -> WsReceiver:
        return WsReceiver(
            self.bc.create_receiver(
                address, credit=credit, auto_credit=auto_credit, dynamic=dynamic, filter=filter
            )
        )

    def close(self) -> None:
        self.bc.close()

    def abort(self) -> None:
        self.bc.abort()


CONNECTIONS: dict[str, Callable[..., Any]] = {"tcp": TcpConn, "ws": WsConn}


# -- describing messages -------------------------------------------------------------


def tagged(v: Any) -> Any:
    """A JSON-shaped value that keeps proton's type name."""
    if isinstance(v, Described):
        return {"@type": "described", "descriptor": tagged(v.descriptor), "value": tagged(v.value)}
    if isinstance(v, dict):
        return {"@type": "map", "value": [[tagged(k), tagged(x)] for k, x in v.items()]}
    if isinstance(v, list):
        return {"@type": "list", "value": [tagged(x) for x in v]}
    if isinstance(v, (bytes, memoryview)):
        return {"@type": type(v).__name__, "value": bytes(v).hex()}
    if isinstance(v, uuid.UUID):
        return {"@type": "uuid", "value": str(v)}
    if v is None or isinstance(v, (bool, int, float, str)):
        return {"@type": type(v).__name__, "value": v}
    return {"@type": type(v).__name__, "value": repr(v)}


def untag(v: Any) -> Any:
    """Plain values back from `tagged` (for assertions that ignore types)."""
    if isinstance(v, dict) and "@type" in v:
        t, x = v["@type"], v["value"]
        if t == "map":
            return {untag(k) if not isinstance(untag(k), dict) else str(k): untag(i) for k, i in x}
        if t == "list":
            return [untag(i) for i in x]
        if t == "described":
            return {"described": untag(v["descriptor"]), "value": untag(x)}
        return x
    if isinstance(v, dict):
        return {k: untag(i) for k, i in v.items()}
    if isinstance(v, list):
        return [untag(i) for i in v]
    return v


def body_kind(m: Message) -> str:
    if m.inferred and isinstance(m.body, (bytes, memoryview)):
        return "data"
    if m.inferred and isinstance(m.body, list):
        return "sequence"
    return "value"


def describe(m: Message) -> dict[str, Any]:
    kind = body_kind(m)
    body = tagged(m.body)
    if kind in ("data", "sequence"):
        body = [body]
    return {
        "message_id": m.id,
        "correlation_id": m.correlation_id,
        "subject": m.subject,
        "to": m.address,
        "reply_to": m.reply_to,
        "content_type": m.content_type or None,
        "group_id": m.group_id,
        "user_id": bytes(m.user_id).hex() if m.user_id else None,
        "durable": m.durable,
        "priority": m.priority,
        "delivery_count": m.delivery_count,
        "first_acquirer": m.first_acquirer,
        "application_properties": {str(k): tagged(v) for k, v in (m.properties or {}).items()},
        "message_annotations": {str(k): tagged(v) for k, v in (m.annotations or {}).items()},
        "body_kind": kind,
        "body": body,
    }


def local_roundtrip(m: Message) -> Message:
    copy = Message()
    copy.decode(m.encode())
    return copy


# -- cases -----------------------------------------------------------------------------


def rich_messages(tag: str) -> list[Message]:
    bodies: list[tuple[Any, bool]] = [
        (b"\x00\x01\x02\xfd\xfe\xff", True),  # data section
        ("a string value \u2603", False),
        (-1234567890123, False),  # long
        (3.25, False),  # double
        (True, False),
        (None, False),
        (b"binary value", False),  # amqp-value binary
        (symbol("a-symbol"), False),
        ({"nested": {"list": [1, "two", 3.5], "flag": False}}, False),
        ([1, "two", [3]], False),  # amqp-value list
        ([1, "two", 3.5], True),  # amqp-sequence
        (timestamp(1700000000123), False),
        (uuid.UUID("0123456789abcdef0123456789abcdef"), False),
        (int32(-5), False),
        (ulong(2**63 + 5), False),
        (char("x"), False),
        ({symbol("sym-key"): [ulong(1), int32(2)]}, False),
    ]
    messages = []
    for i, (body, inferred) in enumerate(bodies):
        m = Message(
            id=f"{tag}-{i}",
            correlation_id=f"corr-{i}",
            subject=f"subject-{i}",
            reply_to=f"/queues/reply-{tag}",
            content_type="application/octet-stream",
            group_id="group-1",
            user_id=b"anonymous",
            durable=True,
            priority=7,
            properties={
                "str": "text",
                "int": int32(42),
                "neg": -7,
                "dbl": 3.5,
                "bool": True,
                "i": i,
                "long": 1099511627776,
                "ulong": ulong(18014398509481984),
                "ts": timestamp(1700000000000),
            },
            annotations={symbol("x-opt-conf"): "annotated", symbol("x-opt-num"): 99},
            body=body,
            inferred=inferred,
        )
        messages.append(m)
    return messages


def _receive_n(receiver: Any, n: int, timeout: float = STEP) -> list[Any]:
    return [receiver.receive(timeout) for _ in range(n)]


def _nothing_within(receiver: Any, seconds: float) -> dict[str, Any] | None:
    try:
        got = receiver.receive(seconds)
    except Timeout:
        return None
    return {"unexpected": describe(got.message)}


def case_connect_anonymous(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    conn = open_conn()
    caps = conn.offered_capabilities
    conn.close()
    return {"open": True, "offered_capabilities": caps}


def case_connect_plain(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    conn = open_conn(user=p["user"], password=p["password"])
    conn.close()
    return {"open": True}


def case_connect_bad_password(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    try:
        conn = open_conn(user=p["user"], password=p["password"])
    except Exception as exc:  # noqa: BLE001 - any refusal will do; the text is reported
        return {"refused": True, "error": f"{type(exc).__name__}: {exc}"}
    conn.close()
    return {"refused": False}


def case_roundtrip(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    conn = open_conn()
    messages = rich_messages(p["tag"])
    sender = conn.sender(p["queue"])
    outcomes = sender.send_all(messages)
    receiver = conn.receiver(p["queue"], credit=len(messages))
    got = _receive_n(receiver, len(messages))
    for g in got:
        g.accept()
    conn.close()
    return {
        "outcomes": outcomes,
        "messages": [describe(g.message) for g in got],
        "expected": [describe(local_roundtrip(m)) for m in messages],
    }


def case_many_in_order(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    n = p["count"]
    conn = open_conn()
    receiver = conn.receiver(p["queue"], credit=200, auto_credit=True)
    sender = conn.sender(p["queue"])
    outcomes = sender.send_all([Message(properties={"seq": i}, body=f"m{i}") for i in range(n)])
    got = _receive_n(receiver, n)
    for g in got:
        g.accept()
    conn.close()
    return {
        "accepted": outcomes.count("accepted"),
        "seqs": [g.message.properties["seq"] for g in got],
        "bodies_ok": all(g.message.body == f"m{i}" for i, g in enumerate(got)),
    }


def case_large_message(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    import os

    payload = os.urandom(p["size"])
    conn = open_conn(max_frame_size=p["max_frame_size"])
    sender = conn.sender(p["queue"])
    outcome = sender.send(Message(id="big", body=payload, inferred=True))
    receiver = conn.receiver(p["queue"], credit=1)
    got = receiver.receive(30.0)
    got.accept()
    body = bytes(got.message.body)
    remote_max = conn.remote_max_frame_size
    conn.close()
    return {
        "outcome": outcome,
        "received_size": len(body),
        "intact": body == payload,
        "local_max_frame_size": p["max_frame_size"],
        "remote_max_frame_size": remote_max,
    }


def case_competing_consumers(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    n = p["count"]
    c1, c2, pub = open_conn(), open_conn(), open_conn()
    r1 = c1.receiver(p["queue"], credit=5, auto_credit=True)
    r2 = c2.receiver(p["queue"], credit=5, auto_credit=True)
    pub.sender(p["queue"]).send_all([Message(id=f"c{i}", body=i) for i in range(n)])
    seen: dict[str, list[Any]] = {"a": [], "b": []}
    deadline = time.monotonic() + STEP
    while len(seen["a"]) + len(seen["b"]) < n and time.monotonic() < deadline:
        for key, receiver in (("a", r1), ("b", r2)):
            try:
                got = receiver.receive(0.05)
            except Timeout:
                continue
            got.accept()
            seen[key].append(got.message.body)
    for c in (c1, c2, pub):
        c.close()
    return seen


def case_dispositions(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    conn = open_conn()
    conn.sender(p["queue"]).send_all(
        [Message(body=b) for b in ("release-me", "reject-me", "modify-me")]
    )
    receiver = conn.receiver(p["queue"], credit=3)
    a, b, c = _receive_n(receiver, 3)
    first = [describe(x.message) for x in (a, b, c)]
    a.release()
    b.reject()
    c.modify(delivery_failed=True)
    receiver.flow(3)
    again = [describe(receiver.receive().message) for _ in range(2)]
    extra = _nothing_within(receiver, 0.5)
    conn.close()
    return {"first": _plain_bodies(first), "again": _plain_bodies(again), "extra": extra}


def _plain_bodies(descs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for d in descs:
        d["body"] = untag(d["body"])
    return descs


def _redelivery(open_conn: Callable[..., Any], p: dict[str, Any], lose: str) -> dict[str, Any]:
    pub = open_conn()
    pub.sender(p["queue"]).send(Message(body="redeliver-me"))
    c1 = open_conn()
    r1 = c1.receiver(p["queue"], credit=1)
    first = describe(r1.receive().message)
    if lose == "detach":
        r1.close()  # unsettled: goes back to the queue
    else:
        c1.abort()
    c2 = open_conn()
    r2 = c2.receiver(p["queue"], credit=1)
    got = r2.receive()
    got.accept()
    second = describe(got.message)
    pub.close()
    if lose == "detach":
        c1.close()
    c2.close()
    return {"first": _plain_bodies([first])[0], "second": _plain_bodies([second])[0]}


def case_redelivery_detach(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    return _redelivery(open_conn, p, "detach")


def case_redelivery_drop(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    return _redelivery(open_conn, p, "drop")


def case_drain(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    conn = open_conn()
    conn.sender(p["queue"]).send_all([Message(body=f"d{i}") for i in (1, 2, 3)])
    receiver = conn.receiver(p["queue"], credit=10)
    drained = receiver.drain()
    credit_after = receiver.credit
    for d in drained:
        d.accept()
    receiver.flow(5)
    empty = receiver.drain()
    credit_after_empty = receiver.credit
    conn.close()
    return {
        "drained": [d.message.body for d in drained],
        "credit_after": credit_after,
        "empty_drain_messages": len(empty),
        "credit_after_empty": credit_after_empty,
    }


def case_request_response(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    server = open_conn()
    service = server.receiver(p["queue"], credit=1)
    client = open_conn()
    replies = client.receiver(None, dynamic=True, credit=1)
    reply_to = replies.address
    outcome = client.sender(p["queue"]).send(Message(id="req-1", reply_to=reply_to, body="ping"))
    req = service.receive()
    req.accept()
    reply_outcome = server.sender(req.message.reply_to).send(
        Message(correlation_id=req.message.id, body=f"pong:{req.message.body}")
    )
    reply = replies.receive()
    reply.accept()
    server.close()
    client.close()
    return {
        "reply_to": reply_to,
        "request_outcome": outcome,
        "reply_outcome": reply_outcome,
        "reply": _plain_bodies([describe(reply.message)])[0],
    }


def case_anonymous_relay(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    conn = open_conn()
    caps = conn.offered_capabilities
    relay = conn.sender(None)
    outcomes = [
        relay.send(Message(address=p["queue_a"], body="to-a")),
        relay.send(Message(address=p["queue_b"], body="to-b")),
    ]
    bad_to = relay.send(Message(address=p["bad_to"], body="nowhere"))
    a = conn.receiver(p["queue_a"], credit=1).receive()
    b = conn.receiver(p["queue_b"], credit=1).receive()
    a.accept()
    b.accept()
    conn.close()
    return {
        "offered_capabilities": caps,
        "outcomes": outcomes,
        "bad_to_outcome": bad_to,
        "a": _plain_bodies([describe(a.message)])[0],
        "b": _plain_bodies([describe(b.message)])[0],
    }


def offset_filter(spec: Any) -> dict[Any, Any]:
    if isinstance(spec, dict) and "offset" in spec:
        value: Any = ulong(spec["offset"])
    elif isinstance(spec, dict) and "timestamp" in spec:
        value = timestamp(spec["timestamp"])
    else:
        value = spec
    key = symbol("rabbitmq:stream-offset-spec")
    return {key: Described(key, value)}


def _offset(m: Message) -> int | None:
    v = (m.annotations or {}).get(symbol("x-stream-offset"))
    return None if v is None else int(v)


def case_stream_offsets(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    tag, stream = p["tag"], p["stream"]
    conn = open_conn()

    def first_from(spec: Any) -> dict[str, Any]:
        r = conn.receiver(stream, credit=1, filter=offset_filter(spec))
        got = r.receive()
        got.accept()
        applied = r.applied_filters
        r.close()
        return {
            "offset": _offset(got.message),
            "body": got.message.body,
            "applied_filters": applied,
        }

    tail = conn.receiver(stream, credit=100, filter=offset_filter("next"))
    sender = conn.sender(stream)
    outcomes = sender.send_all([Message(body=f"{tag}-{i}") for i in range(5)])
    tailed = []
    for g in _receive_n(tail, 5):
        g.accept()
        tailed.append(
            {
                "offset": _offset(g.message),
                "body": g.message.body,
                "annotations": {
                    str(k): untag(tagged(v)) for k, v in (g.message.annotations or {}).items()
                },
                "offset_type": type(
                    (g.message.annotations or {}).get(symbol("x-stream-offset"))
                ).__name__,
            }
        )
    offsets = [t["offset"] for t in tailed]
    result: dict[str, Any] = {"outcomes": outcomes, "tailed": tailed}
    result["numeric"] = first_from({"offset": offsets[2]})
    result["first"] = first_from("first")
    result["last"] = first_from("last")
    result["interval"] = first_from("10m")
    time.sleep(0.05)
    ts = int(time.time() * 1000)
    time.sleep(0.05)
    sender.send_all([Message(body=f"{tag}-{i}") for i in (5, 6)])
    result["timestamp"] = first_from({"timestamp": ts})
    result["tail_after"] = [
        {"offset": _offset(g.message), "body": g.message.body} for g in _receive_n(tail, 2)
    ]
    late = conn.receiver(stream, credit=5, filter=offset_filter("next"))
    result["next_new_attach"] = _nothing_within(late, 0.3)
    conn.close()
    return result


def case_heartbeat(open_conn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    conn = open_conn(idle_timeout=p["idle_ms"] / 1000)
    sender = conn.sender(p["queue"])
    receiver = conn.receiver(p["queue"], credit=2)
    before = sender.send(Message(body="before"))
    receiver.receive().accept()
    conn.idle(p["idle_for_ms"] / 1000)
    after = sender.send(Message(body="after"))
    got = receiver.receive()
    got.accept()
    conn.close()
    return {"before": before, "alive_after_idle": True, "after": after, "body": got.message.body}


def case_cross_transport(
    open_conn: Callable[..., Any], p: dict[str, Any], open_other: Callable[..., Any]
) -> dict[str, Any]:
    pub = open_conn()
    sub = open_other()
    receiver = sub.receiver(p["queue"], credit=10)
    outcomes = pub.sender(p["queue"]).send_all(
        [Message(id=f"x{i}", body=f"via-{pub.transport}-{i}") for i in range(5)]
    )
    got = _receive_n(receiver, 5)
    for g in got:
        g.accept()
    pub.close()
    sub.close()
    return {
        "outcomes": outcomes,
        "bodies": [g.message.body for g in got],
        "publisher": pub.transport,
        "consumer": sub.transport,
    }


def run(case: str, transport: str, broker: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Run one case with proton over `transport` ("tcp" or "ws")."""
    factory = CONNECTIONS[transport]

    def open_conn(**kw: Any) -> Any:
        return factory(broker, **kw)

    fn = globals()[f"case_{case}"]
    if case == "cross_transport":
        other = CONNECTIONS["ws" if transport == "tcp" else "tcp"]
        return fn(open_conn, params, lambda **kw: other(broker, **kw))
    return fn(open_conn, params)
