"""Which of a receiver's source filters apply to its subscription, and what
the attach reply echoes (§3.5.1: only the filters actually applied).

- On a queue: a JMS selector (`apache.org:selector-filter:string`) or an
  `amqp:sql-filter`, and the property filters.  An invalid one refuses the
  attach with `amqp:invalid-field` and the parse error: the client asked for a
  subset of the queue and would otherwise take everything.
- On a stream (RabbitMQ 4.1/4.2's): the offset spec, `rabbitmq:stream-filter`
  (a value or a list of values, ORed, against the publisher's
  `x-stream-filter-value` annotation, with `rabbitmq:stream-match-unfiltered`
  letting messages without a value through), the property filters and the
  SQL filter.  RabbitMQ leaves an invalid stream filter out of its reply
  rather than refusing the link; so do we, and the log says why once.  Where
  RabbitMQ's Bloom filter lets false positives through, ours is exact.

Filters combine with AND.  Unknown filter types are left out of the echo.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from broker.codec.types import Array, Described, Symbol
from broker.errors import AmqpError, Condition
from broker.filters import AllOf, FilterError, MessageFields, compile_filter
from broker.filters.fields import Filter
from broker.nodes.stream import OFFSET_SPEC, StartAt, parse_offset_spec

log = logging.getLogger("broker.filtering")

STREAM_FILTER = Symbol("rabbitmq:stream-filter")
MATCH_UNFILTERED = Symbol("rabbitmq:stream-match-unfiltered")
FILTER_VALUE = Symbol("x-stream-filter-value")


@dataclass(frozen=True, slots=True)
class Selection:
    start: StartAt | None  # streams: where to begin (None: the default)
    filter: Filter | None  # what a message must match (None: everything)
    applied: dict[object, object]  # the filters to echo


class StreamValueFilter:
    """`rabbitmq:stream-filter`: the message's `x-stream-filter-value` is one
    of `values`, or it has none and unfiltered messages are wanted."""

    __slots__ = ("match_unfiltered", "values")

    def __init__(self, values: frozenset[str], match_unfiltered: bool) -> None:
        self.values = values
        self.match_unfiltered = match_unfiltered

    def matches(self, fields: MessageFields, now: float) -> bool:
        value = fields.message_annotations.get(FILTER_VALUE)
        if value is None:
            return self.match_unfiltered
        return isinstance(value, str) and value in self.values


def select(filters: Mapping[object, object] | None, *, stream: bool, now: float) -> Selection:
    """The filters of a source filter map that apply to a queue or a stream."""
    start: StartAt | None = None
    applied: dict[object, object] = {}
    compiled: list[Filter] = []
    values: frozenset[str] | None = None
    unfiltered_key: object = None
    match_unfiltered = False
    for key, value in (filters or {}).items():
        if not isinstance(value, Described):
            log.info("filter %r = %r is not a described value: not applied", key, value)
            continue
        descriptor = value.descriptor
        if stream and descriptor == OFFSET_SPEC:
            if start is None and (start := parse_offset_spec(value.value, now)) is not None:
                applied[key] = value
            else:
                log.info("stream offset filter %r = %r not applied", key, value.value)
            continue
        if stream and descriptor == STREAM_FILTER:
            values = _values(value.value)
            if values is None:
                log.info("stream filter %r = %r is not a string or list of strings: not "
                         "applied", key, value.value)
            else:
                applied[key] = value
            continue
        if stream and descriptor == MATCH_UNFILTERED:
            if isinstance(value.value, bool):
                match_unfiltered, unfiltered_key = value.value, key
            continue
        try:
            found = compile_filter(value)
        except FilterError as exc:
            if not stream:
                raise AmqpError(f"filter {key!r}: {exc}", condition=Condition.INVALID_FIELD) \
                    from None
            log.info("stream filter %r not applied: %s", key, exc)
            continue
        if found is None:
            log.info("filter %r (%r) not applied", key, descriptor)
            continue
        compiled.append(found)
        applied[key] = value
    if values is not None:
        compiled.append(StreamValueFilter(values, match_unfiltered))
        if unfiltered_key is not None:
            applied[unfiltered_key] = filters[unfiltered_key]  # type: ignore[index]
    match: Filter | None = None
    if len(compiled) == 1:
        match = compiled[0]
    elif compiled:
        match = AllOf(compiled)
    return Selection(start, match, applied)


def _values(value: object) -> frozenset[str] | None:
    items: Sequence[object]
    if isinstance(value, str):
        return frozenset((value,))
    if isinstance(value, Array):
        items = value.items
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return None
    if not items or not all(isinstance(v, str) for v in items):
        return None
    return frozenset(str(v) for v in items)
