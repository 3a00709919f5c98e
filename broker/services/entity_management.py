"""Azure's per-entity management node, `ENTITY/$management`: the operations the
Azure Service Bus SDKs call beyond send and receive.

A request carries application-property `operation` and an amqp-value map; the
answer carries `statusCode` (an int) and `statusDescription`, its
correlation-id the request's message-id, and a map with symbol keys.

- `com.microsoft:peek-message` {from-sequence-number, message-count}: ready
  messages from that sequence number on, each as its encoded bytes; 204 when
  there are none.
- `com.microsoft:renew-lock` {lock-tokens}: the lock of each delivery (its
  tag, read as a UUID) moves on by the lock duration; an unknown or lapsed
  lock is 410, MessageLockLost.
- `com.microsoft:schedule-message` {messages: [{message-id, message}]}: each
  message enqueued at its `x-opt-scheduled-enqueue-time` (the registry's
  housekeeping, to the second); answers their sequence numbers.
- `com.microsoft:cancel-scheduled-message` {sequence-numbers}.
- Anything else: 501 with the operation named, never silence.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence

from broker.access import READ, WRITE, AccessRefused, Identity
from broker.codec.messaging import AmqpValue, Message, Properties
from broker.codec.types import AmqpType, Array, Int, Long, Symbol, Timestamp
from broker.nodes.base import Entry
from broker.nodes.queue import Queue
from broker.nodes.registry import Registry
from broker.services.cbs import read_request

log = logging.getLogger("broker.entity_management")

SUFFIX = "/$management"
LOCK_DURATION = 60.0  # seconds: what renew-lock reports
SCHEDULED_AT = Symbol("x-opt-scheduled-enqueue-time")
X_SEQUENCE = Symbol("x-opt-sequence-number")
X_ENQUEUED = Symbol("x-opt-enqueued-time")
X_LOCKED_UNTIL = Symbol("x-opt-locked-until")


class EntityManagement:
    """The `$management` node of one entity (a queue)."""

    def __init__(self, registry: Registry, entity: str,
                 renew: Callable[[object, list[bytes], float], list[float | None]] | None = None
                 ) -> None:
        self.registry = registry
        self.entity = entity
        self.renew = renew  # the container's: locks by delivery tag, per connection

    def handle(self, payload: bytes, *, owner: object, now: float,
               identity: object = None) -> tuple[object, bytes]:
        properties, application, body = read_request(payload, f"{self.entity}{SUFFIX}")
        operation = str(application.get("operation", ""))
        fields = body if isinstance(body, Mapping) else {}
        try:
            self._check(operation, identity)
            status, description, value = self._dispatch(operation, fields, now, owner)
        except AccessRefused as exc:
            status, description, value = 403, str(exc), None
        except _BadRequest as exc:
            status, description, value = 400, str(exc), None
        if status >= 300:
            log.info("%s%s %s: %d %s", self.entity, SUFFIX, operation, status, description)
        response = Message.create(
            AmqpValue(value), properties=Properties(correlation_id=properties.message_id,
                                                    to=properties.reply_to),
            application_properties={"statusCode": Int(status),
                                    "statusDescription": description})
        return properties.message_id, response.payload

    def _check(self, operation: str, identity: object) -> None:
        """Peeking reads the queue; scheduling and cancelling write it."""
        if not isinstance(identity, Identity):
            return  # a trusted caller
        if operation == "com.microsoft:peek-message":
            identity.check(READ, "queue", self.entity)
        elif operation in ("com.microsoft:schedule-message",
                           "com.microsoft:cancel-scheduled-message"):
            identity.check(WRITE, "queue", self.entity)

    def _dispatch(self, operation: str, fields: Mapping[object, object],
                  now: float, owner: object) -> tuple[int, str, object]:
        queue = self.registry.get(self.entity)
        if operation == "com.microsoft:renew-lock":
            tags = [t.bytes_le for t in _items(fields.get("lock-tokens"))
                    if isinstance(t, uuid.UUID)]
            expiries = self.renew(owner, tags, now) if self.renew is not None else []
            if not tags or len(expiries) != len(tags) or None in expiries:
                return 410, "MessageLockLost: the lock is unknown or has expired", None
            return 200, "OK", {Symbol("expirations"): Array(
                AmqpType.TIMESTAMP, [Timestamp(int(e * 1000)) for e in expiries  # type: ignore[operator]
                                     ])}
        if not isinstance(queue, Queue):
            return 404, f"no queue {self.entity!r}", None
        if operation == "com.microsoft:peek-message":
            return self._peek(queue, fields)
        if operation == "com.microsoft:schedule-message":
            return self._schedule(queue, fields, now)
        if operation == "com.microsoft:cancel-scheduled-message":
            numbers = {int(n) for n in _items(fields.get("sequence-numbers")) if isinstance(n, int)}
            self.registry.cancel_scheduled(queue.name, numbers)
            return 200, "OK", None
        return 501, f"operation {operation!r} is not implemented by this broker", None

    def _peek(self, queue: Queue, fields: Mapping[object, object]) -> tuple[int, str, object]:
        start = _integer(fields, "from-sequence-number", 0)
        count = max(1, min(_integer(fields, "message-count", 1), 100))
        found = []
        for entry in queue.ready:
            if entry.sequence >= start:
                found.append({Symbol("message"): azure_annotated(entry.message,
                                                                 entry).encode()})
                if len(found) == count:
                    break
        if not found:
            return 204, "No messages", None
        return 200, "OK", {Symbol("messages"): found}

    def _schedule(self, queue: Queue, fields: Mapping[object, object],
                  now: float) -> tuple[int, str, object]:
        numbers = []
        for item in _items(fields.get("messages")):
            raw = item.get("message") if isinstance(item, Mapping) else None
            if not isinstance(raw, (bytes, bytearray)):
                return 400, "each scheduled message needs its encoded 'message'", None
            message = Message.parse(bytes(raw))
            at = (message.message_annotations or {}).get(SCHEDULED_AT)
            when = int(at) / 1000 if isinstance(at, int) else now
            entry = Entry(message)
            entry.sequence = queue.next_sequence()
            self.registry.schedule(queue.name, entry, when)
            numbers.append(Long(entry.sequence))
        return 200, "OK", {Symbol("sequence-numbers"): Array(AmqpType.LONG, numbers)}


class _BadRequest(Exception):
    """A request field of the wrong type (answered 400)."""


def _integer(fields: Mapping[object, object], name: str, default: int) -> int:
    value = fields.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRequest(f"{name!r} must be an integer, got {type(value).__name__}")
    return int(value)


def _items(value: object) -> Sequence[object]:
    if isinstance(value, Array):
        return value.items
    if isinstance(value, (list, tuple)):
        return value
    return ()


def azure_annotated(message: Message, entry: Entry,
                    locked_until: float | None = None) -> Message:
    """What the Azure SDKs read from a delivery or a peeked message: the
    entity's sequence number (a stream's offset), the enqueue time, and for a
    peek-lock delivery when its lock ends."""
    annotations = dict(message.message_annotations or {})
    sequence = entry.offset if entry.offset >= 0 else entry.sequence
    annotations[X_SEQUENCE] = Long(sequence)
    annotations[X_ENQUEUED] = Timestamp(int(entry.timestamp * 1000))
    if locked_until is not None:
        annotations[X_LOCKED_UNTIL] = Timestamp(int(locked_until * 1000))
    return message.with_changes(message_annotations=annotations)
