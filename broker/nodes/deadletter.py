"""What a dead-lettered message carries (RabbitMQ 4's AMQP 1.0 form), and when a
dead-letter route is a cycle.

RabbitMQ records each dead-lettering in the message annotation `x-opt-deaths`:
an array of maps, most recent first, one per (queue, reason) pair with a
count, so the history does not grow without bound.  The first and latest
events are also summarised in `x-first-death-*` (never changed once set) and
`x-last-death-*`.  The header's `ttl` is recorded in the death and removed from
the message, so that it does not expire again in the queue it is routed to.

Pure: message in, message out; the registry routes the result.
"""

from __future__ import annotations

from collections.abc import Iterable

from broker.codec.messaging import Header, Message
from broker.codec.types import AmqpType, Array, Symbol, Timestamp, UInt, ULong

X_OPT_DEATHS = Symbol("x-opt-deaths")
X_EXCHANGE = Symbol("x-exchange")
X_ROUTING_KEY = Symbol("x-routing-key")
X_CC = Symbol("x-cc")

_QUEUE, _REASON, _COUNT = Symbol("queue"), Symbol("reason"), Symbol("count")
_FIRST, _LAST = Symbol("first-time"), Symbol("last-time")
_EXCHANGE, _KEYS, _TTL = Symbol("exchange"), Symbol("routing-keys"), Symbol("ttl")


def routing_keys_of(message: Message, default: str) -> list[str]:
    """The keys a message was routed with: `x-routing-key` and any `x-cc` keys."""
    annotations = message.message_annotations or {}
    key = annotations.get(X_ROUTING_KEY)
    keys = [key if isinstance(key, str) else default]
    cc = annotations.get(X_CC)
    items = cc.items if isinstance(cc, Array) else cc if isinstance(cc, list) else ()
    keys.extend(k for k in items if isinstance(k, str))
    return keys


def deaths_of(message: Message) -> list[dict[object, object]]:
    annotations = message.message_annotations or {}
    deaths = annotations.get(X_OPT_DEATHS)
    if isinstance(deaths, Array):
        return [d for d in deaths.items if isinstance(d, dict)]
    if isinstance(deaths, list):
        return [d for d in deaths if isinstance(d, dict)]
    return []


def dead_lettered(message: Message, *, queue: str, reason: str, now_ms: int) -> Message:
    """`message` as it leaves `queue` for `reason`: its death history updated."""
    annotations = dict(message.message_annotations or {})
    exchange = annotations.get(X_EXCHANGE)
    header = message.header
    deaths = deaths_of(message)
    for i, death in enumerate(deaths):
        if death.get(_QUEUE) == queue and death.get(_REASON) == reason:
            death = dict(death)
            count = death.get(_COUNT)
            death[_COUNT] = ULong((count if isinstance(count, int) else 0) + 1)
            death[_LAST] = Timestamp(now_ms)
            deaths = [death, *deaths[:i], *deaths[i + 1:]]
            break
    else:
        death = {
            _QUEUE: queue,
            _REASON: Symbol(reason),
            _COUNT: ULong(1),
            _FIRST: Timestamp(now_ms),
            _LAST: Timestamp(now_ms),
            _EXCHANGE: exchange if isinstance(exchange, str) else "",
            _KEYS: Array(AmqpType.STRING, routing_keys_of(message, queue)),
        }
        if header is not None and header.ttl is not None:
            death[_TTL] = UInt(header.ttl)
        deaths = [death, *deaths]
    annotations[X_OPT_DEATHS] = Array(AmqpType.MAP, deaths)
    if Symbol("x-first-death-queue") not in annotations:
        annotations[Symbol("x-first-death-queue")] = queue
        annotations[Symbol("x-first-death-reason")] = reason
        annotations[Symbol("x-first-death-exchange")] = exchange if isinstance(exchange, str) else ""
    annotations[Symbol("x-last-death-queue")] = queue
    annotations[Symbol("x-last-death-reason")] = reason
    annotations[Symbol("x-last-death-exchange")] = exchange if isinstance(exchange, str) else ""
    if header is not None:  # delivered from the dead-letter queue as RabbitMQ does:
        header = Header(durable=header.durable, priority=header.priority, ttl=None,
                        first_acquirer=False, delivery_count=header.delivery_count)
    changed = message.with_changes(header=header, message_annotations=annotations)
    return Message.trusted(changed.encode())


def is_cycle(message: Message, queue: str) -> bool:
    """Would dead-lettering `message` into `queue` close a cycle with no rejection
    in it?  RabbitMQ drops such a message instead of looping it forever: walking
    the history from the latest death back to the last time the message left
    `queue`, a `rejected` death anywhere on the way means a consumer took part,
    and the route is allowed."""
    for death in deaths_of(message):
        if death.get(_REASON) == "rejected":
            return False
        if death.get(_QUEUE) == queue:
            return True
    return False


def keys_for_dead_letter(message: Message, queue: str,
                         dead_letter_routing_key: str | None) -> Iterable[str]:
    """RabbitMQ's rule: the queue's dead-letter routing key if set, else every key
    the message was routed with (CC included)."""
    if dead_letter_routing_key is not None:
        return [dead_letter_routing_key]
    return routing_keys_of(message, queue)
