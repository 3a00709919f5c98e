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
- `com.microsoft:receive-by-sequence-number` {sequence-numbers,
  receiver-settle-mode}: deferred messages, each with its new lock token in
  peek-lock mode (settle mode 1) or taken away (0); 404,
  message-not-found, when any is missing.
- `com.microsoft:update-disposition` {disposition-status, lock-tokens,
  deadletter-reason, deadletter-description}: settles deferred messages
  (completed, abandoned, defered, suspended = dead-lettered).
- `com.microsoft:add-rule`, `remove-rule`, `enumerate-rules` on a
  subscription (`services/subscription_rules.py` has their wire form).
- Anything else: 501 with the operation named, never silence.

Failures carry `errorCondition` too (`com.microsoft:message-lock-lost`,
`com.microsoft:message-not-found`…), which the SDKs turn into their own
exception types.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence

from broker.access import CONFIGURE, READ, WRITE, AccessRefused, Identity
from broker.codec.messaging import AmqpValue, Header, Message, Properties
from broker.codec.types import AmqpType, Array, Int, Long, Symbol, Timestamp
from broker.nodes.azure import (
    DISPOSITIONS,
    SUBSCRIPTIONS,
    SUSPENDED,
    AzureEntities,
    MessagesNotFound,
    RuleError,
)
from broker.nodes.base import Entry
from broker.nodes.queue import Queue, redelivered
from broker.nodes.registry import Registry
from broker.services.cbs import read_request
from broker.services.subscription_rules import described_rule, rule_from_request

log = logging.getLogger("broker.entity_management")

SUFFIX = "/$management"
LOCK_DURATION = 60.0  # seconds: what renew-lock reports
SCHEDULED_AT = Symbol("x-opt-scheduled-enqueue-time")
X_SEQUENCE = Symbol("x-opt-sequence-number")
X_ENQUEUED = Symbol("x-opt-enqueued-time")
X_LOCKED_UNTIL = Symbol("x-opt-locked-until")
X_MESSAGE_STATE = Symbol("x-opt-message-state")
STATE_DEFERRED = Int(1)  # Service Bus's message states: 0 active, 1 deferred, 2 scheduled
LOCK_LOST = "com.microsoft:message-lock-lost"
NOT_FOUND = "com.microsoft:message-not-found"
# what each operation needs of the caller on this entity
_NEEDS = {
    "com.microsoft:peek-message": READ,
    "com.microsoft:renew-lock": READ,
    "com.microsoft:receive-by-sequence-number": READ,
    "com.microsoft:update-disposition": READ,
    "com.microsoft:enumerate-rules": READ,
    "com.microsoft:schedule-message": WRITE,
    "com.microsoft:cancel-scheduled-message": WRITE,
    "com.microsoft:add-rule": CONFIGURE,
    "com.microsoft:remove-rule": CONFIGURE,
}


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
        error_condition = None
        try:
            needed = _NEEDS.get(operation)
            if needed is not None and isinstance(identity, Identity):  # else: trusted
                identity.check(needed, "queue", self.entity)
            status, description, value = self._dispatch(operation, fields, now, owner)
        except AccessRefused as exc:
            status, description, value = 403, str(exc), None
            error_condition = "amqp:unauthorized-access"
        except _BadRequest as exc:
            status, description, value = 400, str(exc), None
        except RuleError as exc:
            status, description, value = exc.status, str(exc), None
            error_condition = exc.condition
        except _Failed as exc:
            status, description, value = exc.status, exc.description, None
            error_condition = exc.condition
        if status >= 300:
            log.info("%s%s %s: %d %s", self.entity, SUFFIX, operation, status, description)
        answer: dict[object, object] = {"statusCode": Int(status),
                                        "statusDescription": description}
        if error_condition is not None:
            answer["errorCondition"] = Symbol(error_condition)
        response = Message.create(
            AmqpValue(value), properties=Properties(correlation_id=properties.message_id,
                                                    to=properties.reply_to),
            application_properties=answer)
        return properties.message_id, response.payload

    def _dispatch(self, operation: str, fields: Mapping[object, object],
                  now: float, owner: object) -> tuple[int, str, object]:
        if operation == "com.microsoft:renew-lock":
            return self._renew(fields, now, owner)
        queue = self.registry.get(self.entity)
        if not isinstance(queue, Queue):
            return 404, f"no queue {self.entity!r}", None
        if operation == "com.microsoft:peek-message":
            return self._peek(queue, fields)
        if operation == "com.microsoft:schedule-message":
            return self._schedule(queue, fields, now)
        if operation == "com.microsoft:cancel-scheduled-message":
            numbers = {int(n) for n in _items(fields.get("sequence-numbers")) if isinstance(n, int)}
            self.azure.cancel_scheduled(queue.name, numbers)
            return 200, "OK", None
        if operation == "com.microsoft:receive-by-sequence-number":
            return self._receive_deferred(queue, fields, now)
        if operation == "com.microsoft:update-disposition":
            return self._update_disposition(fields, now)
        if operation in ("com.microsoft:add-rule", "com.microsoft:remove-rule",
                         "com.microsoft:enumerate-rules"):
            return self._rules(operation, fields)
        return 501, f"operation {operation!r} is not implemented by this broker", None

    @property
    def azure(self) -> AzureEntities:
        return self.registry.azure

    def _renew(self, fields: Mapping[object, object], now: float,
               owner: object) -> tuple[int, str, object]:
        """Locks of deliveries on the caller's links (a delivery tag read as a
        UUID), or of deferred messages (the token receive-by-sequence-number gave)."""
        tokens = [t for t in _items(fields.get("lock-tokens")) if isinstance(t, uuid.UUID)]
        expiries: list[float | None] = (self.renew(owner, [t.bytes_le for t in tokens], now)
                                        if self.renew is not None else [None] * len(tokens))
        expiries = [e if e is not None else self.azure.renew(self.entity, t, now)
                    for t, e in zip(tokens, expiries, strict=True)]
        if not tokens or None in expiries:
            raise _Failed(410, "MessageLockLost: the lock is unknown or has expired", LOCK_LOST)
        return 200, "OK", {Symbol("expirations"): Array(
            AmqpType.TIMESTAMP, [Timestamp(int(e * 1000)) for e in expiries  # type: ignore[operator]
                                 ])}

    def _receive_deferred(self, queue: Queue, fields: Mapping[object, object],
                          now: float) -> tuple[int, str, object]:
        sequences = [int(n) for n in _items(fields.get("sequence-numbers"))
                     if isinstance(n, int) and not isinstance(n, bool)]
        if not sequences:
            raise _BadRequest("'sequence-numbers' must hold at least one sequence number")
        peek_lock = _integer(fields, "receiver-settle-mode", 1) != 0
        try:
            taken = self.azure.receive_deferred(queue.name, sequences, now, lock=peek_lock)
        except MessagesNotFound as exc:
            raise _Failed(404, f"MessageNotFound: {exc}", NOT_FOUND) from None
        found = []
        for entry, token, until in taken:
            message = azure_annotated(redelivered(entry), entry, until, STATE_DEFERRED)
            item: dict[object, object] = {Symbol("message"): message.encode()}
            if token is not None:
                item[Symbol("lock-token")] = token
            found.append(item)
        return 200, "OK", {Symbol("messages"): found}

    def _update_disposition(self, fields: Mapping[object, object],
                            now: float) -> tuple[int, str, object]:
        status = fields.get("disposition-status")
        if status not in DISPOSITIONS:
            raise _BadRequest(f"'disposition-status' must be one of {', '.join(DISPOSITIONS)}")
        tokens = [t for t in _items(fields.get("lock-tokens")) if isinstance(t, uuid.UUID)]
        if not tokens:
            raise _BadRequest("'lock-tokens' must hold at least one lock token (a uuid)")
        reason = fields.get("deadletter-reason") if status == SUSPENDED else None
        description = fields.get("deadletter-description") if status == SUSPENDED else None
        lost = [t for t in tokens if not self.azure.settle_deferred(
            self.entity, t, str(status), now, reason=None if reason is None else str(reason),
            description=None if description is None else str(description))]
        if lost:
            raise _Failed(410, f"MessageLockLost: no live lock {', '.join(map(str, lost))}",
                          LOCK_LOST)
        return 200, "OK", None

    def _rules(self, operation: str, fields: Mapping[object, object]) -> tuple[int, str, object]:
        if SUBSCRIPTIONS not in self.entity:
            raise _BadRequest(f"{self.entity!r} is no subscription: rules belong to "
                              "TOPIC/Subscriptions/NAME")
        if operation == "com.microsoft:add-rule":
            self.azure.add_rule(self.entity, rule_from_request(fields))
            return 200, "OK", None
        if operation == "com.microsoft:remove-rule":
            name = fields.get("rule-name")
            if not isinstance(name, str):
                raise _BadRequest("remove-rule needs a 'rule-name' string")
            self.azure.remove_rule(self.entity, name)
            return 200, "OK", None
        skip = max(0, _integer(fields, "skip", 0))
        top = max(0, _integer(fields, "top", 100))
        rules = self.azure.rules(self.entity)[skip:skip + top]
        if not rules:
            return 204, "No rules", None
        return 200, "OK", {Symbol("rules"): [{Symbol("rule-description"): described_rule(r)}
                                             for r in rules]}

    def _peek(self, queue: Queue, fields: Mapping[object, object]) -> tuple[int, str, object]:
        start = _integer(fields, "from-sequence-number", 0)
        count = max(1, min(_integer(fields, "message-count", 1), 100))
        found = []
        # ready and deferred messages, by sequence number (peek shows both, as
        # Service Bus does; a deferred one says so in x-opt-message-state)
        # the `count` lowest of each (ready is nearly in order: redeliveries go first)
        ready = heapq.nsmallest(count, (e for e in queue.ready if e.sequence >= start),
                                key=_by_sequence)
        deferred = [e for e in self.azure.deferred(queue.name) if e.sequence >= start][:count]
        is_deferred = {id(e) for e in deferred}
        for entry in heapq.nsmallest(count, ready + deferred, key=_by_sequence):
            state = STATE_DEFERRED if id(entry) in is_deferred else None
            found.append({Symbol("message"): azure_annotated(entry.message, entry,
                                                             state=state).encode()})
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
            # kept like any message an Azure client sends (Service Bus keeps all)
            header = message.header or Header()
            entry = Entry(Message.parse(message.with_changes(
                header=dataclasses.replace(header, durable=True)).encode()))
            entry.sequence = queue.next_sequence()
            self.azure.schedule(queue.name, entry, when)
            numbers.append(Long(entry.sequence))
        return 200, "OK", {Symbol("sequence-numbers"): Array(AmqpType.LONG, numbers)}


class _BadRequest(Exception):
    """A request field of the wrong type (answered 400)."""


class _Failed(Exception):
    """An operation that failed with a status and Service Bus's error condition."""

    def __init__(self, status: int, description: str, condition: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.condition = condition


def _by_sequence(entry: Entry) -> int:
    return entry.sequence


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


def azure_annotated(message: Message, entry: Entry, locked_until: float | None = None,
                    state: Int | None = None) -> Message:
    """What the Azure SDKs read from a delivery or a peeked message: the
    entity's sequence number (a stream's offset), the enqueue time, for a
    peek-lock delivery when its lock ends, and a deferred message's state."""
    annotations = dict(message.message_annotations or {})
    sequence = entry.offset if entry.offset >= 0 else entry.sequence
    annotations[X_SEQUENCE] = Long(sequence)
    annotations[X_ENQUEUED] = Timestamp(int(entry.timestamp * 1000))
    if locked_until is not None:
        annotations[X_LOCKED_UNTIL] = Timestamp(int(locked_until * 1000))
    if state is not None:
        annotations[X_MESSAGE_STATE] = state
    return message.with_changes(message_annotations=annotations)
