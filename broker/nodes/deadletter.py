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

from broker.codec.messaging import Message, rewrite_header
from broker.codec.types import AmqpType, Array, Symbol, Timestamp, UInt, ULong

X_OPT_DEATHS = Symbol("x-opt-deaths")
X_EXCHANGE = Symbol("x-exchange")
X_ROUTING_KEY = Symbol("x-routing-key")
X_CC = Symbol("x-cc")

_QUEUE, _REASON, _COUNT = Symbol("queue"), Symbol("reason"), Symbol("count")
_FIRST, _LAST = Symbol("first-time"), Symbol("last-time")
_EXCHANGE, _KEYS, _TTL = Symbol("exchange"), Symbol("routing-keys"), Symbol("ttl")


def cc_keys(message: Message) -> list[str]:
    """The extra routing keys of RabbitMQ's `x-cc` annotation (a list or an array
    of strings; anything else in it is ignored)."""
    if not message.has_section(0x72):  # most messages: nothing to decode
        return []
    cc = (message.message_annotations or {}).get(X_CC)
    items = cc.items if isinstance(cc, Array) else cc if isinstance(cc, list) else ()
    return [k for k in items if isinstance(k, str)]


def routing_keys_of(message: Message, default: str) -> list[str]:
    """The keys a message was routed with: `x-routing-key` and any `x-cc` keys."""
    key = (message.message_annotations or {}).get(X_ROUTING_KEY)
    return [key if isinstance(key, str) else default, *cc_keys(message)]


def deaths_of(message: Message) -> list[dict[object, object]]:
    annotations = message.message_annotations or {}
    deaths = annotations.get(X_OPT_DEATHS)
    if isinstance(deaths, Array):
        return [d for d in deaths.items if isinstance(d, dict)]
    if isinstance(deaths, list):
        return [d for d in deaths if isinstance(d, dict)]
    return []


def dead_lettered(message: Message, *, queue: str, reason: str, now_ms: int,
                  exchange: str, routing_key: str) -> Message:
    """`message` as it leaves `queue` for `reason`, to be routed through the
    dead-letter `exchange` with `routing_key`: its death history updated, its
    routing annotations replaced, its header's ttl dropped and first-acquirer
    false (as RabbitMQ delivers dead-lettered messages).  One encode."""
    annotations = dict(message.message_annotations or {})
    original_exchange = annotations.get(X_EXCHANGE)
    if not isinstance(original_exchange, str):
        original_exchange = ""
    ttl = message.section_field(0x70, 2)
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
            _EXCHANGE: original_exchange,
            _KEYS: Array(AmqpType.STRING, routing_keys_of(message, queue)),
        }
        if isinstance(ttl, int) and 0 <= ttl <= 0xFFFFFFFF:
            death[_TTL] = UInt(ttl)
        deaths = [death, *deaths]
    annotations[X_OPT_DEATHS] = Array(AmqpType.MAP, deaths)
    if Symbol("x-first-death-queue") not in annotations:
        annotations[Symbol("x-first-death-queue")] = queue
        annotations[Symbol("x-first-death-reason")] = reason
        annotations[Symbol("x-first-death-exchange")] = original_exchange
    annotations[Symbol("x-last-death-queue")] = queue
    annotations[Symbol("x-last-death-reason")] = reason
    annotations[Symbol("x-last-death-exchange")] = original_exchange
    annotations[X_EXCHANGE] = exchange
    annotations[X_ROUTING_KEY] = routing_key
    raw = message.section_bytes(0x70)
    header = rewrite_header(raw, first_acquirer=False, drop_ttl=True) if raw else None
    return message.annotate(annotations, header=header)


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
