"""Conformance cases for rabbitmq-amqp-python-client 1.0.1 (client id `rmq-python`).

RabbitMQ's own Python client for AMQP 1.0 drives its public API end to end:
`Connection.dial()`, `Management` (HTTP over AMQP on `/management`),
`Publisher.publish`, and `Consumer.run()` with an `AMQPMessagingHandler`
whose `delivery_context` settles each delivery.  The same cases run against
our broker (started with `--rabbitmq-compat`, since the client refuses any
peer whose `open` does not say `product: RabbitMQ`, version >= 4) and against
a real RabbitMQ 4 (`make parity`); `test_rabbitmq_client.py` asserts.

Each `case_<name>(target, tag)` uses names derived from `tag`, deletes what
it declared (also when it fails), and returns JSON-shaped data.  Values the
broker chose are described with their AMQP type (`tagged`), so type fidelity
(ulong vs uint vs long, symbol vs string) is part of what the tests compare.

How the client is driven, and why:

- Recovery is off (`RecoveryConfiguration(active_recovery=False)`): with it
  on, a connection the broker closes is redialled for minutes.
- The client has no per-call timeout; its blocking waits default to 60 s.
  `connect` lowers that to `STEP` on the one object it lives on, and `run`
  caps a whole case with a SIGALRM watchdog, so a silent broker fails a case
  instead of hanging the suite.
- `Consumer.run()` only returns by an exception out of the handler (its
  `stop()` stops the connection's whole container), so every consumer gets a
  dedicated connection, as the client's own tests do: the handler raises
  `_Stop` once it has what it wants, or when its timer (`STEP`) fires, and
  that connection is then closed.  proton re-dispatches the event that
  raised, so the handler ignores everything after its stop.
- The client's exception classes derive from `BaseException`, not
  `Exception`; `CLIENT_ERRORS` catches them explicitly.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Self
from urllib.parse import quote

from rabbitmq_amqp_python_client import (
    AddressHelper,
    AmqpMessageRejectedException,
    AMQPMessagingHandler,
    ArgumentOutOfRangeException,
    ClassicQueueSpecification,
    Connection,
    Delivery,
    ExchangeSpecification,
    ExchangeToExchangeBindingSpecification,
    ExchangeToQueueBindingSpecification,
    ExchangeType,
    InvalidOperationException,
    Message,
    MessageProperties,
    OffsetSpecification,
    QuorumQueueSpecification,
    RecoveryConfiguration,
    StreamConsumerOptions,
    StreamFilterOptions,
    StreamSpecification,
    ValidationCodeException,
    symbol,
)
from rabbitmq_amqp_python_client.qpid.proton import Data
from rabbitmq_amqp_python_client.qpid.proton.utils import SendException

STEP = 10.0  # seconds for one wait
CASE_LIMIT = 90.0  # seconds for a whole case
OUTCOMES = {
    Delivery.ACCEPTED: "accepted",
    Delivery.REJECTED: "rejected",
    Delivery.RELEASED: "released",
    Delivery.MODIFIED: "modified",
}
CLIENT_ERRORS = (
    Exception,  # proton's SendException, LinkDetached, Timeout, ...
    ValidationCodeException,
    ArgumentOutOfRangeException,
    InvalidOperationException,
    AmqpMessageRejectedException,
)


@dataclass(frozen=True)
class Target:
    """The broker a case runs against: ours, or a real RabbitMQ 4."""

    name: str
    host: str
    port: int
    user: str
    password: str

    @property
    def url(self) -> str:
        return (
            f"amqp://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/"
        )


class CaseTimeout(AssertionError):
    """A whole case ran past CASE_LIMIT."""


def run(case: str, target: Target, params: dict[str, Any]) -> Any:
    with _watchdog(CASE_LIMIT, case):
        return CASES[case](target, **params)


@contextmanager
def _watchdog(seconds: float, what: str) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"case {what} still running after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- describing what the client hands us -------------------------------------------

# proton decodes an AMQP long as a plain int and a double as a float; the
# other numeric types keep their own classes (ulong, uint, int32, ...).
_TYPE_NAMES = {
    "str": "string",
    "int": "long",
    "bool": "boolean",
    "float": "double",
    "float32": "float",
    "int32": "int",
    "NoneType": "null",
    "bytes": "binary",
    "memoryview": "binary",
    "UUID": "uuid",
}


def type_name(value: Any) -> str:
    name = type(value).__name__
    return _TYPE_NAMES.get(name, name)


def tagged(value: Any) -> Any:
    """`value` as JSON, with its AMQP type: {"type": ..., "value": ...}."""
    kind = type_name(value)
    if isinstance(value, dict):
        return {
            "type": "map",
            "key_types": sorted({type_name(k) for k in value}),
            "value": {str(k): tagged(v) for k, v in value.items()},
        }
    if kind == "Array":
        return {
            "type": "array",
            "of": Data.type_name(value.type),
            "value": [tagged(v) for v in value.elements],
        }
    if kind == "Described":
        return {
            "type": "described",
            "descriptor": tagged(value.descriptor),
            "value": tagged(value.value),
        }
    if isinstance(value, list | tuple):
        return {"type": "list", "value": [tagged(v) for v in value]}
    if isinstance(value, bytes | memoryview):
        return {"type": "binary", "value": bytes(value).hex()}
    if isinstance(value, bool | int | float | str) or value is None:
        return {"type": kind, "value": value}
    return {"type": kind, "value": str(value)}


def describe(message: Message) -> dict[str, Any]:
    body = message.body
    if isinstance(body, bytes | memoryview):
        body_kind, text = "data", bytes(body).decode("utf-8", "replace")
    else:
        body_kind, text = type_name(body), body
    annotations = dict(message.annotations or {})
    return {
        "body": text,
        "body_kind": body_kind,
        "annotations": tagged(annotations),
        "application_properties": tagged(dict(message.application_properties or {})),
        "subject": message.subject,
        "priority": message.priority,
        "durable": message.durable,
        "delivery_count": message.delivery_count,
        "first_acquirer": message.first_acquirer,
    }


def error(exc: BaseException) -> dict[str, Any]:
    """What the client raised: its class and its text."""
    text = getattr(exc, "msg", None)
    if text is None:
        text = str(exc)
    out: dict[str, Any] = {"raised": type(exc).__name__, "text": text}
    if isinstance(exc, SendException):
        out["state"] = OUTCOMES.get(exc.state, str(exc.state))
    return out


def attempt(fn: Callable[[], Any]) -> dict[str, Any]:
    """Call `fn`: {"ok": True} or what it raised."""
    try:
        fn()
    except CLIENT_ERRORS as exc:
        return {"ok": False, **error(exc)}
    return {"ok": True}


# -- connections, management, publishing ------------------------------------------


def connect(target: Target) -> Connection:
    conn = Connection(
        target.url, recovery_configuration=RecoveryConfiguration(active_recovery=False)
    )
    conn.dial()
    # The client passes no timeout to its BlockingConnection (60 s per wait).
    blocking = getattr(conn, "_conn", None)
    if blocking is not None:
        blocking.timeout = STEP
    return conn


class Scope:
    """One connection with its management link; deletes what the case declared.

    Publishers are closed before queues are deleted: deleting a queue detaches
    the links attached to it (RabbitMQ: `amqp:resource-deleted`), and the
    client raises that from whatever it waits for next on the connection."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.conn = connect(target)
        self.mgmt = self.conn.management()
        self.queues: list[str] = []
        self.exchanges: list[str] = []
        self.publishers: list[Any] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for publisher in self.publishers:
            with suppress(*CLIENT_ERRORS):
                publisher.close()
        for name in self.queues:
            with suppress(*CLIENT_ERRORS):
                self.mgmt.delete_queue(name)
        for name in self.exchanges:
            with suppress(*CLIENT_ERRORS):
                self.mgmt.delete_exchange(name)
        with suppress(*CLIENT_ERRORS):
            self.mgmt.close()
        with suppress(*CLIENT_ERRORS):
            self.conn.close()

    def queue(self, spec: Any) -> str:
        self.queues.append(spec.name)
        self.mgmt.declare_queue(spec)
        return spec.name

    def exchange(self, name: str, kind: ExchangeType) -> str:
        self.exchanges.append(name)
        self.mgmt.declare_exchange(ExchangeSpecification(name=name, exchange_type=kind))
        return name

    def bind(self, exchange: str, queue: str, key: str | None = None) -> str:
        return self.mgmt.bind(
            ExchangeToQueueBindingSpecification(
                source_exchange=exchange, destination_queue=queue, binding_key=key
            )
        )

    def publisher(self, address: str = "") -> Any:
        publisher = self.conn.publisher(address)
        self.publishers.append(publisher)
        return publisher

    def info(self, queue: str) -> dict[str, Any]:
        return queue_info(self.mgmt.queue_info(queue))

    def raw(self, body: Any, path: str, method: str) -> dict[str, Any]:
        """A request through `Management.request`, any status accepted (the
        client raises for 409 whatever the list says)."""
        try:
            reply = self.mgmt.request(body, path, method, [200, 201, 204, 400, 403, 404])
        except CLIENT_ERRORS as exc:
            return error(exc)
        return {"status": reply.subject, "body": tagged(reply.body)}


def queue_info(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "type": info.queue_type.value,
        "durable": info.is_durable,
        "auto_delete": info.is_auto_delete,
        "exclusive": info.is_exclusive,
        "message_count": tagged(info.message_count),
        "consumer_count": tagged(info.consumer_count),
        "leader": tagged(info.leader),
        "members": tagged(info.members),
        "arguments": tagged(info.arguments),
    }


def publish(publisher: Any, message: Message) -> dict[str, Any]:
    """Publish and report the outcome: `Publisher.publish` returns on
    accepted and raises for rejected and released."""
    try:
        delivery = publisher.publish(message)
    except AmqpMessageRejectedException as exc:
        return {"outcome": "rejected", **error(exc)}
    except SendException as exc:
        return {"outcome": OUTCOMES.get(exc.state, str(exc.state)), **error(exc)}
    return {"outcome": OUTCOMES.get(delivery.remote_state, str(delivery.remote_state))}


def body(text: str) -> bytes:
    return text.encode()


# -- consuming ------------------------------------------------------------------------

Settle = Callable[[int, dict[str, Any]], Any]


def accept_all(index: int, record: dict[str, Any]) -> str:
    return "accept"


def first_time(actions: dict[str, Any]) -> Settle:
    """Settle a body's first delivery as `actions` says, accept it after
    that; marks each record with `again` (our own count, not the header's)."""
    seen: set[str] = set()

    def settle(index: int, record: dict[str, Any]) -> Any:
        text = record["body"]
        record["again"] = text in seen
        seen.add(text)
        return "accept" if record["again"] else actions.get(text, "accept")

    return settle


class _Stop(BaseException):
    """Ends Consumer.run() from inside the handler."""


class _Collector(AMQPMessagingHandler):
    """Takes up to `want` deliveries, settling each as `settle` says: a
    DeliveryContext method name, or (name, annotations)."""

    def __init__(self, want: int, settle: Settle, limit: float) -> None:
        super().__init__(auto_accept=False, auto_settle=True)
        self.want = want
        self.settle = settle
        self.limit = limit
        self.got: list[dict[str, Any]] = []
        self.timed_out = False
        self.finished = False
        self.errors: list[dict[str, Any]] = []
        self._timer: Any = None

    def on_link_opened(self, event: Any) -> None:
        if self._timer is None:
            self._timer = event.container.schedule(self.limit, self)

    def on_timer_task(self, event: Any) -> None:
        if self.finished:
            return
        self.finished = True
        self.timed_out = True
        raise _Stop()

    def on_amqp_message(self, event: Any) -> None:
        if self.finished:
            return  # left unsettled: the broker takes it back when the link closes
        record = describe(event.message)
        decision = self.settle(len(self.got), record)
        name, args = (decision, ()) if isinstance(decision, str) else (decision[0], decision[1:])
        try:
            getattr(self.delivery_context, name)(event, *args)
            record["settled_as"] = name
        except CLIENT_ERRORS as exc:
            record["settled_as"] = {"failed": name, **error(exc)}
        self.got.append(record)
        if len(self.got) >= self.want:
            self.finished = True
            if self._timer is not None:
                self._timer.cancel()
            raise _Stop()

    def on_link_error(self, event: Any) -> None:
        condition = event.link.remote_condition
        self.errors.append({"scope": "link", "condition": condition and condition.name})

    def on_session_error(self, event: Any) -> None:
        # A link or connection error raises out of run() by itself (the
        # client's BlockingConnection); an ended session would leave it waiting.
        condition = event.session.remote_condition
        self.errors.append({"scope": "session", "condition": condition and condition.name})
        if not self.finished:
            self.finished = True
            raise _Stop()


def consume(
    target: Target,
    address: str,
    want: int,
    settle: Settle = accept_all,
    options: Any = None,
    limit: float = STEP,
) -> dict[str, Any]:
    """Run a consumer on its own connection until it has `want` deliveries
    or `limit` seconds have passed."""
    conn = connect(target)
    collector = _Collector(want, settle, limit)
    try:
        consumer = conn.consumer(address, message_handler=collector, consumer_options=options)
        with suppress(_Stop):
            consumer.run()
    finally:
        with suppress(*CLIENT_ERRORS):
            conn.close()
    return {"messages": collector.got, "timed_out": collector.timed_out, "errors": collector.errors}


def _names(tag: str, *parts: str) -> list[str]:
    return [f"rmq-{tag}-{p}" for p in parts]


# -- 1. management ---------------------------------------------------------------------


def case_queue_management(target: Target, tag: str) -> dict[str, Any]:
    classic, quorum, stream, missing = _names(tag, "classic", "quorum", "stream", "missing")
    r: dict[str, Any] = {}
    with Scope(target) as s:
        returned = s.mgmt.declare_queue(ClassicQueueSpecification(name=classic))
        s.queues.append(classic)
        r["declare_returns"] = type(returned).__name__
        r["classic"] = s.info(classic)
        r["redeclare_same"] = attempt(
            lambda: s.mgmt.declare_queue(ClassicQueueSpecification(name=classic))
        )
        r["redeclare_quorum"] = attempt(
            lambda: s.mgmt.declare_queue(QuorumQueueSpecification(name=classic))
        )
        r["info_missing"] = attempt(lambda: s.mgmt.queue_info(missing))

        # message_count and consumer_count move
        publisher = s.publisher(AddressHelper.queue_address(classic))
        r["publish"] = [publish(publisher, Message(body=body(f"m{i}"))) for i in range(3)]
        r["after_publish"] = s.info(classic)
        r["purge"] = s.mgmt.purge_queue(classic)
        r["after_purge"] = s.info(classic)
        # a consumer attached to the (empty) queue on another connection, not run
        other = connect(target)
        idle = _Collector(0, accept_all, STEP)
        idle.finished = True
        try:
            other.consumer(AddressHelper.queue_address(classic), message_handler=idle)
            r["with_consumer"] = s.info(classic)
        finally:
            with suppress(*CLIENT_ERRORS):
                other.close()
        r["consumer_closed"] = s.info(classic)
        r["publish_more"] = [publish(publisher, Message(body=body(f"n{i}"))) for i in range(2)]
        publisher.close()
        s.publishers.remove(publisher)
        # Management.delete_queue drops the reply's body; request() shows it.
        r["delete"] = s.raw(None, AddressHelper.queue_address(classic), "DELETE")
        r["delete_again"] = attempt(lambda: s.mgmt.delete_queue(classic))
        r["delete_missing"] = s.raw(None, AddressHelper.queue_address(classic), "DELETE")
        r["info_deleted"] = attempt(lambda: s.mgmt.queue_info(classic))

        s.queue(QuorumQueueSpecification(name=quorum))
        r["quorum"] = s.info(quorum)
        s.queue(StreamSpecification(name=stream))
        r["stream"] = s.info(stream)
        r["purge_stream"] = attempt(lambda: s.mgmt.purge_queue(stream))

        # the wire statuses behind those calls
        raw_name = f"rmq-{tag}-raw"
        s.queues.append(raw_name)
        path = AddressHelper.queue_address(raw_name)
        spec = {"durable": True, "arguments": {"x-queue-type": "classic"}}
        r["raw"] = {
            "put_new": s.raw(spec, path, "PUT"),
            "put_same": s.raw(spec, path, "PUT"),
            "put_inequivalent": s.raw(
                {"durable": True, "arguments": {"x-queue-type": "quorum"}}, path, "PUT"
            ),
            "get": s.raw(None, path, "GET"),
            "get_missing": s.raw(None, AddressHelper.queue_address(missing), "GET"),
            "purge": s.raw(None, AddressHelper.purge_queue_address(raw_name), "DELETE"),
            "purge_missing": s.raw(None, AddressHelper.purge_queue_address(missing), "DELETE"),
            "put_reserved": s.raw(spec, AddressHelper.queue_address(f"amq.rmq-{tag}"), "PUT"),
        }
    return r


def case_exchange_management(target: Target, tag: str) -> dict[str, Any]:
    q, qx = _names(tag, "q", "missing")
    r: dict[str, Any] = {"declare": {}, "redeclare": {}}
    with Scope(target) as s:
        names = {}
        for kind in (
            ExchangeType.direct,
            ExchangeType.fanout,
            ExchangeType.topic,
            ExchangeType.headers,
        ):
            name = f"rmq-{tag}-{kind.value}"
            names[kind.value] = name
            s.exchanges.append(name)
            spec = ExchangeSpecification(name=name, exchange_type=kind)
            r["declare"][kind.value] = attempt(lambda spec=spec: s.mgmt.declare_exchange(spec))
            r["redeclare"][kind.value] = attempt(lambda spec=spec: s.mgmt.declare_exchange(spec))
        r["redeclare_other_type"] = attempt(
            lambda: s.mgmt.declare_exchange(
                ExchangeSpecification(name=names["fanout"], exchange_type=ExchangeType.topic)
            )
        )
        s.queue(ClassicQueueSpecification(name=q))

        # queue <- direct, with a key
        qpath = s.bind(names["direct"], q, "k1")
        r["queue_binding_path"] = qpath
        query_q = f"/bindings?src={names['direct']}&dstq={q}&key=k1"
        r["list_queue_binding"] = s.raw(None, query_q, "GET")
        # fanout <- topic, exchange to exchange
        epath = s.mgmt.bind(
            ExchangeToExchangeBindingSpecification(
                source_exchange=names["topic"],
                destination_exchange=names["fanout"],
                binding_key="a.#",
            )
        )
        r["exchange_binding_path"] = epath
        query_e = f"/bindings?src={names['topic']}&dste={names['fanout']}&key=a.%23"
        r["list_exchange_binding"] = s.raw(None, query_e, "GET")
        s.bind(names["fanout"], q)
        publisher = s.publisher()
        r["route_through_e2e"] = publish(
            publisher,
            Message(
                body=body("via-e2e"), address=AddressHelper.exchange_address(names["topic"], "a.b")
            ),
        )

        r["unbind_queue"] = attempt(lambda: s.mgmt.unbind(qpath))
        r["list_after_unbind_queue"] = s.raw(None, query_q, "GET")
        r["unbind_exchange"] = attempt(lambda: s.mgmt.unbind(epath))
        r["list_after_client_unbind_exchange"] = s.raw(None, query_e, "GET")
        # the path with dste= does remove it
        e2e = f"/bindings/src={names['topic']};dste={names['fanout']};key=a.%23;args="
        r["unbind_exchange_dste"] = s.raw(None, e2e, "DELETE")
        r["list_after_unbind_dste"] = s.raw(None, query_e, "GET")
        r["route_after_unbind"] = publish(
            publisher,
            Message(
                body=body("after"), address=AddressHelper.exchange_address(names["topic"], "a.b")
            ),
        )
        r["unbind_absent"] = s.raw(
            None, f"/bindings/src={names['direct']};dstq={q};key=nope;args=", "DELETE"
        )
        r["bind_missing_queue"] = s.raw(
            {
                "source": names["direct"],
                "destination_queue": qx,
                "binding_key": "k",
                "arguments": {},
            },
            "/bindings",
            "POST",
        )
        r["consumed"] = [
            m["body"] for m in consume(target, AddressHelper.queue_address(q), 1)["messages"]
        ]

        r["raw"] = {
            "put": s.raw(
                {"type": "direct", "durable": True},
                AddressHelper.exchange_address(names["direct"]),
                "PUT",
            ),
            "put_bad_type": s.raw(
                {"type": "nope", "durable": True}, AddressHelper.exchange_address(qx), "PUT"
            ),
            "delete_reserved": s.raw(None, AddressHelper.exchange_address("amq.topic"), "DELETE"),
            "put_reserved": s.raw(
                {"type": "direct"}, AddressHelper.exchange_address(f"amq.rmq-{tag}"), "PUT"
            ),
        }
        r["delete"] = {}
        for kind, name in names.items():
            r["delete"][kind] = attempt(lambda name=name: s.mgmt.delete_exchange(name))
        r["delete_again"] = s.raw(None, AddressHelper.exchange_address(names["direct"]), "DELETE")
    return r


# -- 2. publishing to exchanges and queues ----------------------------------------------

TOPIC_KEYS = ["orders.new", "orders.eu.new", "orders", "misc.thing"]


def topic_setup(target: Target, tag: str) -> dict[str, str]:
    """Two queues bound to amq.topic by `orders.*` and `orders.#`."""
    star, hash_ = _names(tag, "star", "hash")
    with Scope(target) as s:
        for name, key in ((star, "orders.*"), (hash_, "orders.#")):
            s.mgmt.declare_queue(ClassicQueueSpecification(name=name))
            s.bind("amq.topic", name, key)
    return {"star": star, "hash": hash_}


def topic_teardown(target: Target, queues: dict[str, str]) -> dict[str, Any]:
    """Counts left in the queues, then deletes them (bindings go with them)."""
    with Scope(target) as s:
        s.queues.extend(queues.values())
        return {role: s.info(name)["message_count"]["value"] for role, name in queues.items()}


def case_topic_routing(target: Target, tag: str) -> dict[str, Any]:
    queues = topic_setup(target, tag)
    try:
        with Scope(target) as s:
            outcomes = {}
            # the first key on a publisher bound to its address, the others
            # through the anonymous publisher (message.address, ANONYMOUS-RELAY)
            first = s.publisher(AddressHelper.exchange_address("amq.topic", TOPIC_KEYS[0]))
            anonymous = s.publisher()
            for i, key in enumerate(TOPIC_KEYS):
                if i == 0:
                    outcomes[key] = publish(first, Message(body=body(key)))
                else:
                    address = AddressHelper.exchange_address("amq.topic", key)
                    outcomes[key] = publish(anonymous, Message(body=body(key), address=address))
            # /exchanges/NAME without a key: the routing key is empty, whatever
            # the subject says
            bare = s.publisher(AddressHelper.exchange_address("amq.topic"))
            subject_only = publish(bare, Message(body=body("subject-only"), subject=TOPIC_KEYS[0]))
        got = {
            role: consume(target, AddressHelper.queue_address(name), want)["messages"]
            for role, name, want in (("star", queues["star"], 1), ("hash", queues["hash"], 3))
        }
    finally:
        left = topic_teardown(target, queues)
    return {
        "outcomes": outcomes,
        "subject_only": subject_only,
        "received": got,
        "left": left,
        "queues": queues,
    }


def case_exchange_types(target: Target, tag: str) -> dict[str, Any]:
    r: dict[str, Any] = {}
    with Scope(target) as s:
        direct = s.exchange(f"rmq-{tag}-direct", ExchangeType.direct)
        fanout = s.exchange(f"rmq-{tag}-fanout", ExchangeType.fanout)
        headers = s.exchange(f"rmq-{tag}-headers", ExchangeType.headers)
        lonely = s.exchange(f"rmq-{tag}-unbound", ExchangeType.direct)
        red, f1, f2, h_all, h_any, plain = (
            s.queue(ClassicQueueSpecification(name=n))
            for n in _names(tag, "red", "fan1", "fan2", "hall", "hany", "plain")
        )
        s.bind(direct, red, "red")
        s.bind(fanout, f1)
        s.bind(fanout, f2, "ignored-by-fanout")
        # Management.bind sends no binding arguments; headers bindings need
        # them, so these go through Management.request.
        for queue, match in ((h_all, "all"), (h_any, "any")):
            r[f"bind_{match}"] = s.raw(
                {
                    "source": headers,
                    "destination_queue": queue,
                    "binding_key": "",
                    "arguments": {"x-match": match, "color": "red", "size": "big"},
                },
                "/bindings",
                "POST",
            )
        r["list_headers_binding"] = s.raw(None, f"/bindings?src={headers}&dstq={h_all}&key=", "GET")

        p = s.publisher()

        def to(exchange: str, key: str = "", text: str = "", **kw: Any) -> dict[str, Any]:
            address = AddressHelper.exchange_address(exchange, key)
            return publish(p, Message(body=body(text), address=address, **kw))

        r["direct"] = {"red": to(direct, "red", "d-red"), "blue": to(direct, "blue", "d-blue")}
        r["fanout"] = to(fanout, "anything", "f-1")
        r["headers"] = {
            "both": to(
                headers, "", "h-both", application_properties={"color": "red", "size": "big"}
            ),
            "one": to(headers, "", "h-one", application_properties={"color": "red"}),
            "none": to(headers, "", "h-none", application_properties={"size": "small"}),
        }
        r["unbound_exchange"] = to(lonely, "k", "nobody")
        r["queue"] = publish(
            p, Message(body=body("q-1"), address=AddressHelper.queue_address(plain))
        )
        r["received"] = {
            role: consume(target, AddressHelper.queue_address(name), want)["messages"]
            for role, name, want in (
                ("red", red, 1),
                ("fan1", f1, 1),
                ("fan2", f2, 1),
                ("hall", h_all, 1),
                ("hany", h_any, 2),
                ("plain", plain, 1),
            )
        }
        r["left"] = {
            n: s.info(q)["message_count"]["value"]
            for n, q in (("red", red), ("hall", h_all), ("hany", h_any))
        }
        r["names"] = {"direct": direct, "fanout": fanout, "headers": headers, "plain": plain}
    return r


# -- 3. consuming, with every outcome ---------------------------------------------------

# first delivery of each body -> how the consumer settles it
FIRST_SETTLE: dict[str, Any] = {
    "accept": "accept",
    "requeue": "requeue",
    "discard": "discard",
    "requeue-annotated": (
        "requeue_with_annotations",
        {symbol("x-opt-retry"): "yes", symbol("x-opt-n"): 7},
    ),
    "discard-annotated": ("discard_with_annotations", {symbol("x-opt-why"): "bad"}),
}


def case_consume_outcomes(target: Target, tag: str) -> dict[str, Any]:
    """Classic and quorum queues: accept, released (requeue), rejected
    (discard), modified requeue with annotations, modified undeliverable.

    Annotation keys are symbols.  The client takes plain `str` keys too and
    proton then encodes them as AMQP strings: RabbitMQ 4.0.5 fails on that
    (function_clause in rabbit_amqp_session:settle_op_from_outcome) and ends
    the session with amqp:internal-error."""
    r: dict[str, Any] = {}
    with Scope(target) as s:
        for label, spec in (
            ("classic", ClassicQueueSpecification),
            ("quorum", QuorumQueueSpecification),
        ):
            name = s.queue(spec(name=f"rmq-{tag}-{label}"))
            p = s.publisher(AddressHelper.queue_address(name))
            published = [publish(p, Message(body=body(text))) for text in FIRST_SETTLE]
            settle = first_time(FIRST_SETTLE)
            got = consume(target, AddressHelper.queue_address(name), len(FIRST_SETTLE) + 2, settle)
            r[label] = {"published": published, **got, "after": s.info(name)}
    return r


# -- 4. queue arguments ------------------------------------------------------------------


def case_queue_arguments(target: Target, tag: str) -> dict[str, Any]:
    r: dict[str, Any] = {}
    with Scope(target) as s:
        # x-max-length + x-overflow reject-publish
        capped = s.queue(
            ClassicQueueSpecification(
                name=f"rmq-{tag}-capped", max_len=2, overflow_behaviour="reject-publish"
            )
        )
        p = s.publisher(AddressHelper.queue_address(capped))
        r["capped"] = {
            "info": s.info(capped),
            "publish": [publish(p, Message(body=body(f"c{i}"))) for i in range(3)],
        }
        r["capped"]["after"] = s.info(capped)
        r["capped"]["consumed"] = [
            m["body"] for m in consume(target, AddressHelper.queue_address(capped), 2)["messages"]
        ]
        r["capped"]["publish_after_consume"] = publish(p, Message(body=body("c3")))

        # x-message-ttl
        ttl = s.queue(
            ClassicQueueSpecification(
                name=f"rmq-{tag}-ttl", message_ttl=timedelta(milliseconds=400)
            )
        )
        p = s.publisher(AddressHelper.queue_address(ttl))
        r["ttl"] = {"info": s.info(ttl), "publish": publish(p, Message(body=body("short-lived")))}
        r["ttl"]["count_at_once"] = s.info(ttl)["message_count"]["value"]
        time.sleep(1.5)
        r["ttl"]["count_later"] = s.info(ttl)["message_count"]["value"]
        late = consume(target, AddressHelper.queue_address(ttl), 1, limit=1.0)
        r["ttl"]["consumed_later"] = {
            "bodies": [m["body"] for m in late["messages"]],
            "timed_out": late["timed_out"],
        }

        # per-message ttl (header) in a queue without x-message-ttl
        plain = s.queue(ClassicQueueSpecification(name=f"rmq-{tag}-hdr-ttl"))
        p = s.publisher(AddressHelper.queue_address(plain))
        r["header_ttl"] = {
            "publish": [
                publish(p, Message(body=body("expires"), ttl=0.3)),
                publish(p, Message(body=body("stays"))),
            ]
        }
        time.sleep(1.2)
        r["header_ttl"]["count_later"] = s.info(plain)["message_count"]["value"]
        r["header_ttl"]["consumed"] = [
            m["body"] for m in consume(target, AddressHelper.queue_address(plain), 1)["messages"]
        ]

        # x-max-priority
        prio = s.queue(ClassicQueueSpecification(name=f"rmq-{tag}-prio", max_priority=10))
        p = s.publisher(AddressHelper.queue_address(prio))
        # proton leaves a priority of 4 (the AMQP default) out of the header
        sent = [("p1", 1), ("p9", 9), ("p-default", None), ("p5", 5), ("p0", 0)]
        r["priority"] = {
            "info": s.info(prio),
            "publish": [
                publish(
                    p,
                    Message(body=body(text))
                    if pr is None
                    else Message(body=body(text), priority=pr),
                )
                for text, pr in sent
            ],
        }
        got = consume(target, AddressHelper.queue_address(prio), len(sent))["messages"]
        r["priority"]["consumed"] = [{"body": m["body"], "priority": m["priority"]} for m in got]
    return r


# -- 5. dead-lettering ---------------------------------------------------------------------


def case_dead_lettering(target: Target, tag: str) -> dict[str, Any]:
    r: dict[str, Any] = {}
    with Scope(target) as s:
        dlx = s.exchange(f"rmq-{tag}-dlx", ExchangeType.direct)
        dlq = s.queue(ClassicQueueSpecification(name=f"rmq-{tag}-dlq"))
        s.bind(dlx, dlq, "dead")
        src = s.queue(
            ClassicQueueSpecification(
                name=f"rmq-{tag}-src", dead_letter_exchange=dlx, dead_letter_routing_key="dead"
            )
        )
        # without x-dead-letter-routing-key the message keeps its routing key
        expiring = s.queue(
            ClassicQueueSpecification(
                name=f"rmq-{tag}-expiring",
                dead_letter_exchange=dlx,
                message_ttl=timedelta(milliseconds=200),
            )
        )
        s.bind(dlx, dlq, expiring)
        capped = s.queue(
            ClassicQueueSpecification(
                name=f"rmq-{tag}-capped",
                dead_letter_exchange=dlx,
                dead_letter_routing_key="dead",
                max_len=1,
            )
        )
        r["src_info"] = s.info(src)
        p = s.publisher()

        def put(queue: str, text: str) -> dict[str, Any]:
            return publish(p, Message(body=body(text), address=AddressHelper.queue_address(queue)))

        r["publish"] = [
            put(capped, "maxlen-old"),
            put(capped, "maxlen-new"),  # drop-head: the old one is dead-lettered
            put(src, "to-reject"),
            put(src, "to-modify"),
            put(src, "to-release"),
        ]
        settle = first_time(
            {
                "to-reject": "discard",
                "to-modify": ("discard_with_annotations", {symbol("x-opt-why"): "bad"}),
                "to-release": "requeue",
            }
        )
        r["src_consumed"] = consume(target, AddressHelper.queue_address(src), 4, settle)["messages"]
        r["publish"].append(put(expiring, "expire-me"))
        r["t0_ms"] = int(time.time() * 1000)
        got = consume(target, AddressHelper.queue_address(dlq), 4)
        r["dead"] = {m["body"]: m for m in got["messages"]}
        r["dead_timed_out"] = got["timed_out"]
        r["t1_ms"] = int(time.time() * 1000)
        r["left"] = {
            "src": s.info(src)["message_count"]["value"],
            "capped": s.info(capped)["message_count"]["value"],
            "expiring": s.info(expiring)["message_count"]["value"],
            "dlq": s.info(dlq)["message_count"]["value"],
        }
        r["names"] = {"dlx": dlx, "dlq": dlq, "src": src, "expiring": expiring, "capped": capped}
    return r


# -- 6. streams --------------------------------------------------------------------------------


def case_stream_consume(target: Target, tag: str, count: int = 5) -> dict[str, Any]:
    r: dict[str, Any] = {}
    with Scope(target) as s:
        stream = s.queue(StreamSpecification(name=f"rmq-{tag}-stream"))
        address = AddressHelper.queue_address(stream)
        r["info"] = s.info(stream)
        p = s.publisher(address)
        r["publish"] = [publish(p, Message(body=body(f"s{i}"))) for i in range(count)]

        def offsets(spec: Any, want: int, limit: float = STEP) -> dict[str, Any]:
            got = consume(
                target,
                address,
                want,
                options=StreamConsumerOptions(offset_specification=spec),
                limit=limit,
            )
            return {
                "bodies": [m["body"] for m in got["messages"]],
                "offsets": [
                    m["annotations"]["value"].get("x-stream-offset") for m in got["messages"]
                ],
                "messages": got["messages"],
                "timed_out": got["timed_out"],
            }

        r["first"] = offsets(OffsetSpecification.first, count)
        start = r["first"]["offsets"][2]["value"] if len(r["first"]["offsets"]) > 2 else 2
        r["numeric"] = offsets(start, count - 2)
        r["last"] = offsets(OffsetSpecification.last, 1)
        r["next"] = offsets(OffsetSpecification.next, 1, limit=1.0)
        r["after_publish"] = s.info(stream)
        p.close()
        s.publishers.remove(p)
        r["delete"] = s.raw(None, address, "DELETE")
    return r


def case_stream_filters(target: Target, tag: str) -> dict[str, Any]:
    """RabbitMQ 4.1/4.2's stream filters, as the client builds them: values with
    and without match-unfiltered, message properties, application properties,
    and SQL; each consumer reads the stream from first."""
    r: dict[str, Any] = {}
    rows = [("red", "apple", 1), ("blue", "sky", 2), (None, "plain", 3), ("red", "cherry", 4)]
    with Scope(target) as s:
        stream = s.queue(StreamSpecification(name=f"rmq-{tag}-filtered"))
        address = AddressHelper.queue_address(stream)
        p = s.publisher(address)
        for value, subject, n in rows:
            annotations = {"x-stream-filter-value": value} if value else None
            p.publish(Message(body=body(subject), subject=subject, annotations=annotations,
                              application_properties={"n": n}))

        def read(want: int, **options: Any) -> list[str]:
            got = consume(target, address, want, options=StreamConsumerOptions(
                offset_specification=OffsetSpecification.first,
                filter_options=StreamFilterOptions(**options)), limit=3.0)
            return [m["body"] for m in got["messages"]]

        r["values"] = read(2, values=["red"])
        r["match_unfiltered"] = read(3, values=["red"], match_unfiltered=True)
        r["message_properties"] = read(1, message_properties=MessageProperties(subject="sky"))
        r["application_properties"] = read(1, application_properties={"n": 3})
        r["sql"] = read(2, sql="a.n > 1 AND p.subject <> 'plain'")
        p.close()
        s.publishers.remove(p)
    return r


CASES: dict[str, Callable[..., Any]] = {
    name.removeprefix("case_"): fn for name, fn in globals().items() if name.startswith("case_")
}
