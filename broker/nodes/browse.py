"""Browsing a queue (`distribution-mode: copy`), and the key of a last-value queue.

Theory of operation.  A browser sees every message queued when it attaches
and every one published after, without acquiring any: acquiring consumers
still get each message once.  Each browser keeps its own FIFO of the queue's
entries still to show, the very `Entry` objects the queue holds (a message is
stored once, however many browsers), and a publish appends to each browser's
FIFO.  A message that leaves the queue (accepted, dead-lettered, expired,
purged, replaced in a last-value queue) is marked `gone`, and a browser skips
it when it gets there; messages acquired but not yet settled are still shown.
A browser that stops granting credit holds only references: its FIFO is
compacted of gone entries when it grows well past the queue's depth.

Messages a consumer acquired before a browser attached and then released are
not shown to that browser (it never saw them queued).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from broker.codec.messaging import Message
from broker.filters.fields import MessageFields
from broker.nodes.base import Consumer, Entry

COMPACT_SLACK = 1024  # pending entries beyond twice the depth before gone ones are dropped

# properties fields by name (§3.2.4), for a last-value key named `properties.NAME`
_PROPERTY_INDEX = {name: i for i, name in enumerate((
    "message_id", "user_id", "to", "subject", "reply_to", "correlation_id", "content_type",
    "content_encoding", "absolute_expiry_time", "creation_time", "group_id", "group_sequence",
    "reply_to_group_id"))}


class QueueBrowser:
    def __init__(self, consumer: Consumer, entries: Iterable[Entry]) -> None:
        self.consumer = consumer
        self.pending: deque[Entry] = deque(entries)

    def offer(self, entry: Entry, depth: int, now: float) -> None:
        pending = self.pending
        pending.append(entry)
        if len(pending) > 2 * depth + COMPACT_SLACK:
            self.pending = deque(e for e in pending if not e.gone)
        self.feed(now)

    def feed(self, now: float) -> None:
        """Show what the browser may see: not gone, within its max-message-size,
        matching its selector (the same rules as for acquiring consumers)."""
        consumer, pending = self.consumer, self.pending
        limit, match = consumer.max_message_size, consumer.filter
        while pending and consumer.credit > 0:
            entry = pending.popleft()
            if entry.gone or (limit and entry.size > limit):
                continue
            if match is not None:
                fields = entry.fields
                if fields is None:
                    fields = entry.fields = MessageFields(entry.message)
                if not match.matches(fields, now):
                    continue
            consumer.deliver(entry, None)

    @property
    def caught_up(self) -> bool:
        """Nothing left to show (for drain)."""
        return not any(not e.gone for e in self.pending)


def last_value_key(spec: str) -> Callable[[Message], object]:
    """The key of a last-value queue as a function of a message: an
    application property by name, or `properties.NAME` for a message
    property.  None (no key): the message is never replaced."""
    if spec.startswith("properties."):
        index = _PROPERTY_INDEX.get(spec[len("properties."):])
        if index is None:
            raise ValueError(f"{spec!r} is not a message property "
                             f"({', '.join(_PROPERTY_INDEX)})")
        return lambda message: message.section_field(0x73, index)
    name = spec.removeprefix("application_properties.")

    def application_property(message: Message) -> object:
        properties = message.application_properties
        return None if properties is None else properties.get(name)

    return application_property
