"""RabbitMQ 4's management over AMQP (`/management`, "HTTP over AMQP" v2).

A request is one message: `to` is the percent-encoded path, `subject` the HTTP
method, `message-id` the request id and the body one `amqp-value`.  The answer
echoes the id as `correlation-id`, puts the status code (a string) in
`subject`, carries `http:response = "1.1"` and an `amqp-value` body: a map, a
list, null, or for errors a string (never a map: the Go client returns any map
body as a success without looking at the status).  Field by field this matches
a capture of RabbitMQ 4.0.5 (`shared/rabbitmq4/wire-transcript.md`).

RabbitMQ's Python client sends GET and DELETE with the body section *before*
the properties, against §3.2's order; `parse_request` takes sections in any
order, here only.

Pure: bytes in, bytes out, over `admin.Admin`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from broker.access import CONFIGURE, READ, WRITE, AccessRefused, Identity
from broker.admin import EXCHANGE, QUEUE, Admin, AdminError
from broker.codec.decode import decode
from broker.codec.encode import encode, encode_into
from broker.codec.messaging import AmqpValue, ApplicationProperties, Properties
from broker.codec.types import AmqpType, Array, UInt, ULong
from broker.errors import DecodeError
from broker.services.describe import peek_described

log = logging.getLogger("broker.management")

ADDRESS = "/management"
_QUEUE_KEYS = frozenset({"durable", "exclusive", "auto_delete", "arguments"})
_EXCHANGE_KEYS = frozenset({"type", "durable", "auto_delete", "internal", "arguments"})
_BINDING_KEYS = frozenset({"source", "destination_queue", "destination_exchange",
                           "binding_key", "arguments"})


@dataclass(frozen=True, slots=True)
class Request:
    message_id: object
    path: str
    method: str
    body: object


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: object = None


def read_sections(payload: bytes) -> tuple[Properties | None, Mapping[object, object], object]:
    """A request message's properties, application-properties (a map, else
    empty) and amqp-value body, its sections in any order: what every
    request/response service here reads (`/management`, `$cbs`,
    `ENTITY/$management`)."""
    properties: Properties | None = None
    application: Mapping[object, object] = {}
    body: object = None
    pos, end = 0, len(payload)
    while pos < end:
        section, pos = decode(payload, pos, end)
        if isinstance(section, Properties):
            properties = section
        elif isinstance(section, ApplicationProperties):
            value = section.value
            application = value if isinstance(value, Mapping) else {}
        elif isinstance(section, AmqpValue):
            body = section.value
    return properties, application, body


def parse_request(payload: bytes) -> Request:
    """The request in a message, its sections in any order; DecodeError if it is
    not a message or lacks `to`/`subject`."""
    properties, _, body = read_sections(payload)
    if properties is None or not isinstance(properties.to, str) or not properties.subject:
        raise DecodeError("a management request needs properties with 'to' and 'subject'", 0)
    return Request(properties.message_id, properties.to, properties.subject.upper(), body)


_APPLICATION_PROPERTIES = b"\x00\x53\x74" + encode({"http:response": "1.1"})


def encode_response(request_id: object, response: Response) -> bytes:
    """The answer's bytes, as RabbitMQ 4.0.5 writes them (byte for byte against
    the capture): all thirteen properties fields, booleans as `0x56` with a
    byte, arrays of strings with `str32` elements; everything else in the most
    compact encoding, as both brokers choose it."""
    fields = [b"\x40"] * 13
    fields[3] = encode(str(response.status))  # subject
    fields[5] = encode(request_id)  # correlation-id, in the request's own type
    out = bytearray(b"\x00\x53\x73")
    _compound(out, b"".join(fields), 13, 0xC0, 0xD0)
    out += _APPLICATION_PROPERTIES
    out += b"\x00\x53\x77"
    _encode_value(out, response.body)
    return bytes(out)


def _compound(out: bytearray, body: bytes, count: int, code8: int, code32: int) -> None:
    if len(body) + 1 < 256 and count < 256:
        out += bytes((code8, len(body) + 1, count))
    else:
        out += bytes((code32,)) + (len(body) + 4).to_bytes(4, "big") + count.to_bytes(4, "big")
    out += body


def _encode_value(out: bytearray, value: object) -> None:
    """One answer value in RabbitMQ's encoding choices (see encode_response)."""
    if value is True or value is False:
        out += b"\x56\x01" if value else b"\x56\x00"
    elif isinstance(value, dict):
        body = bytearray()
        for key, item in value.items():
            _encode_value(body, key)
            _encode_value(body, item)
        _compound(out, bytes(body), 2 * len(value), 0xC1, 0xD1)
    elif isinstance(value, list):
        body = bytearray()
        for item in value:
            _encode_value(body, item)
        _compound(out, bytes(body), len(value), 0xC0, 0xD0)
    elif isinstance(value, Array) and value.element_type is AmqpType.STRING \
            and value.descriptor is None:
        body = bytearray(b"\xb1")
        for item in value.items:
            data = str(item).encode()
            body += len(data).to_bytes(4, "big") + data
        _compound(out, bytes(body), len(value.items), 0xE0, 0xF0)
    else:
        encode_into(out, value)


def _wire_queue(info: Mapping[str, object]) -> dict[object, object]:
    """A queue map with the AMQP types RabbitMQ uses (ulong count, uint consumers,
    an array of strings for replicas)."""
    out: dict[object, object] = {k: v for k, v in info.items()}
    out["replicas"] = Array(AmqpType.STRING, info["replicas"])  # type: ignore[arg-type]
    out["message_count"] = ULong(info["message_count"])  # type: ignore[arg-type]
    out["consumer_count"] = UInt(info["consumer_count"])  # type: ignore[arg-type]
    return out


def _count(n: int) -> dict[object, object]:
    return {"message_count": ULong(n)}


def check_permissions(request: Request, identity: Identity) -> None:
    """What each operation needs, RabbitMQ's way: configure to declare or delete
    a queue or exchange, read to purge, write on the destination and read on
    the source to bind or unbind.  Listings and token updates need nothing."""
    path = request.path.partition("?")[0]
    segments = [unquote(p) for p in path.split("/")[1:]]
    method = request.method
    if segments[:1] == ["queues"] and len(segments) == 3 and segments[2] == "messages" \
            and method == "GET":
        identity.check(READ, "queue", segments[1])  # peeking reads
        return
    if len(segments) < 2 or method == "GET":
        if segments[:1] == ["bindings"] and method == "POST":
            fields = request.body if isinstance(request.body, dict) else {}
            _check_binding(identity, fields.get("source"), fields.get("destination_queue"),
                           fields.get("destination_exchange"))
        return
    head, name = segments[0], segments[1]
    if head == "queues":
        if len(segments) == 3 and segments[2] == "messages":
            identity.check(READ, "queue", name)
        else:
            identity.check(CONFIGURE, "queue", name)
    elif head == "exchanges":
        identity.check(CONFIGURE, "exchange", name)
    elif head == "bindings" and method == "DELETE":
        try:
            fields = parse_binding_path(path.split("/")[2])
        except AdminError:
            return  # dispatch answers 400
        _check_binding(identity, fields["src"], fields.get("dstq"), fields.get("dste"))


def _check_binding(identity: Identity, source: object, queue: object, exchange: object) -> None:
    if isinstance(queue, str):
        identity.check(WRITE, "queue", queue)
    if isinstance(exchange, str):
        identity.check(WRITE, "exchange", exchange)
    if isinstance(source, str):
        identity.check(READ, "exchange", source)


class Management:
    """Answers management requests for any connection; `owner` identifies the
    connection (exclusive queues, tokens)."""

    def __init__(self, admin: Admin, *,
                 on_token: Callable[[object, bytes], None] | None = None) -> None:
        self.admin = admin
        self.on_token = on_token

    def handle(self, payload: bytes, *, owner: object, now: float,
               identity: Identity | None = None) -> tuple[object, bytes]:
        """(request id, encoded response) for one request message.  `identity`:
        the connection's user, whose permissions each operation needs (403
        otherwise); None for trusted callers."""
        request = parse_request(payload)
        try:
            if identity is not None:
                check_permissions(request, identity)
            response = self.dispatch(request, owner=owner, now=now)
        except AccessRefused as exc:
            response = Response(403, str(exc))
        except AdminError as exc:
            response = Response(exc.status, exc.message)
        if response.status >= 400:
            log.info("management %s %s: %d %s", request.method, request.path, response.status,
                     response.body)
        return request.message_id, encode_response(request.message_id, response)

    def dispatch(self, request: Request, *, owner: object, now: float) -> Response:
        path, _, query = request.path.partition("?")
        parts = path.split("/")
        if len(parts) < 2 or parts[0] != "":
            return Response(400, f"invalid path '{request.path}'")
        segments = [unquote(p) for p in parts[1:]]
        method = request.method
        body = request.body
        admin = self.admin
        head = segments[0]
        if head == "queues":
            if len(segments) == 1 and method == "GET":
                return Response(200, [_wire_queue(q) for q in admin.list_queues()])
            if len(segments) == 2:
                return self._queue(method, segments[1], body, owner, now)
            if len(segments) == 3 and segments[2] == "messages" and method == "DELETE":
                return Response(200, _count(admin.purge_queue(segments[1], owner=owner)))
            if len(segments) == 3 and segments[2] == "messages" and method == "GET":
                return self._peek(segments[1], query)
        elif head == "exchanges":
            if len(segments) == 1 and method == "GET":
                return Response(200, admin.list_exchanges())
            if len(segments) == 2:
                return self._exchange(method, segments[1], body)
        elif head == "bindings":
            if len(segments) == 1 and method == "POST":
                return self._bind(body)
            if len(segments) == 1 and method == "GET":
                return self._list_bindings(query)
            if len(segments) == 2 and method == "DELETE":
                return self._unbind(parts[2])
        elif head == "auth" and segments[1:] == ["tokens"] and method == "PUT":
            if not isinstance(body, bytes):
                return Response(400, "the token must be binary")
            if self.on_token is not None:
                self.on_token(owner, body)  # AdminError(401) for a token refused
            return Response(204)
        elif head == "connections" and len(segments) == 1 and method == "GET":
            return Response(200, admin.list_connections())
        return Response(404 if method in ("GET", "PUT", "POST", "DELETE") else 405,
                        f"no such resource or method: {method} {request.path}")

    def _queue(self, method: str, name: str, body: object, owner: object,
               now: float) -> Response:
        admin = self.admin
        if method == "GET":
            return Response(200, _wire_queue(admin.queue_info(name, now=now)))
        if method == "DELETE":
            return Response(200, _count(admin.delete_queue(name, owner=owner)))
        if method != "PUT":
            return Response(405, f"method {method} not allowed on a queue")
        fields = _body_map(body, _QUEUE_KEYS, "queue")
        info, created = admin.declare_queue(
            name,
            durable=_bool(fields, "durable", True),
            exclusive=_bool(fields, "exclusive", False),
            auto_delete=_bool(fields, "auto_delete", False),
            arguments=_arguments(fields),
            owner=owner,
            now=now,
        )
        return Response(201 if created else 200, _wire_queue(info))

    def _peek(self, name: str, query: str) -> Response:
        """Our extension (RabbitMQ has no peek): `GET /queues/Q/messages?count=N
        [&offset=K]`, messages described as maps without taking them."""
        return Response(200, peek_described(self.admin, name, dict(parse_qsl(query))))

    def _exchange(self, method: str, name: str, body: object) -> Response:
        if method == "DELETE":
            self.admin.delete_exchange(name)
            return Response(204)
        if method != "PUT":
            return Response(405, f"method {method} not allowed on an exchange")
        fields = _body_map(body, _EXCHANGE_KEYS, "exchange")
        kind = fields.get("type", "direct")
        if not isinstance(kind, str):
            raise AdminError(400, "exchange 'type' must be a string")
        self.admin.declare_exchange(
            name, type=kind, durable=_bool(fields, "durable", True),
            auto_delete=_bool(fields, "auto_delete", False),
            internal=_bool(fields, "internal", False), arguments=_arguments(fields))
        return Response(204)

    def _bind(self, body: object) -> Response:
        fields = _body_map(body, _BINDING_KEYS, "binding")
        source, key = fields.get("source"), fields.get("binding_key", "")
        queue, exchange = fields.get("destination_queue"), fields.get("destination_exchange")
        if (queue is None) == (exchange is None):
            raise AdminError(400, "a binding needs exactly one of 'destination_queue' and "
                                  "'destination_exchange'")
        destination = queue if queue is not None else exchange
        if not isinstance(source, str) or not isinstance(destination, str) or \
                not isinstance(key, str):
            raise AdminError(400, "binding 'source', destination and 'binding_key' must be "
                                  "strings")
        self.admin.bind(source, destination, destination_kind=QUEUE if queue is not None
                        else EXCHANGE, key=key, arguments=_arguments(fields))
        return Response(204)

    def _list_bindings(self, query: str) -> Response:
        q = dict(parse_qsl(query, keep_blank_values=True))
        unknown = set(q) - {"src", "dstq", "dste", "key"}
        if unknown or ("dstq" in q and "dste" in q):
            raise AdminError(400, f"invalid binding query '{query}'")
        kind = QUEUE if "dstq" in q else EXCHANGE if "dste" in q else None
        found = self.admin.list_bindings(source=q.get("src"),
                                         destination=q.get("dstq", q.get("dste")),
                                         destination_kind=kind, key=q.get("key"))
        return Response(200, found)

    def _unbind(self, segment: str) -> Response:
        fields = parse_binding_path(segment)
        kind = QUEUE if "dstq" in fields else EXCHANGE
        self.admin.unbind(fields["src"], fields.get("dstq", fields.get("dste", "")),
                          destination_kind=kind, key=fields["key"], args_hash=fields["args"])
        return Response(204)


def parse_binding_path(segment: str) -> dict[str, str]:
    """`src=S;dstq=D;key=K;args=H` (or `dste=`), each value percent-encoded."""
    fields: dict[str, str] = {}
    for item in segment.split(";"):
        name, sep, value = item.partition("=")
        if not sep or name in fields:
            raise AdminError(400, f"invalid binding path segment '{segment}'")
        fields[name] = unquote(value)
    if set(fields) not in ({"src", "dstq", "key", "args"}, {"src", "dste", "key", "args"}):
        raise AdminError(400, f"invalid binding path segment '{segment}'")
    return fields


def _body_map(body: object, allowed: frozenset[str], what: str) -> dict[str, object]:
    if body is None:
        return {}
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        raise AdminError(400, f"the {what} body must be a map with string keys")
    unknown = set(body) - allowed
    if unknown:
        raise AdminError(400, f"unknown {what} field(s): {', '.join(sorted(unknown))}")
    return body


def _bool(fields: Mapping[str, object], name: str, default: bool) -> bool:
    value = fields.get(name, default)
    if not isinstance(value, bool):
        raise AdminError(400, f"'{name}' must be true or false, got {value!r}")
    return value


def _arguments(fields: Mapping[str, object]) -> dict[str, object]:
    args = fields.get("arguments") or {}
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise AdminError(400, "'arguments' must be a map with string keys")
    return args
