"""What a node needs from a consumer, and what it hands out."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Protocol

from broker.codec.messaging import Message
from broker.filters.fields import Filter, MessageFields


class Consumer(Protocol):
    """A link reading from a node (implemented by the container)."""

    @property
    def credit(self) -> int:
        """How many more messages may be delivered right now."""
        ...

    # The largest message the consumer takes (its link's max-message-size); 0: any.
    max_message_size: int
    # What a message must match to go to this consumer (its source's filters);
    # None: everything.
    filter: Filter | None

    def deliver(self, entry: Entry, message: Message | None) -> None:
        """Send `message` (already rewritten for this delivery) to the peer; None:
        the entry's bytes as stored (most deliveries, which need no view)."""
        ...

    def deliver_run(self, entries: list[Entry]) -> None:
        """`deliver(entry, None)` for each of `entries`, in order, in one call
        (a stream reader's window); `credit` allowed them all.  Only a node
        that keeps its entries whatever their outcome (a stream) calls it, so
        the consumer need not follow these deliveries' outcomes."""
        ...

    def node_deleted(self) -> None:
        """The node this consumer reads from was deleted: end the link."""
        ...


@dataclass(slots=True)
class NodeInfo:
    """What a queue or stream was declared with, as `/management` reports it.

    Kept beside the node rather than in it: the per-message path never reads it."""

    durable: bool = True
    auto_delete: bool = False
    exclusive_owner: object = None  # the connection that owns an exclusive queue
    queue_type: str = "classic"  # classic | quorum | stream (quorum is served as classic)
    arguments: dict[str, object] = field(default_factory=dict)
    expires: float | None = None  # x-expires: seconds unused before deletion
    last_used: float = 0.0  # wall clock: declare, get, consumer attach/detach
    had_consumer: bool = False  # auto-delete waits for a first consumer


# Bytes of bookkeeping per stored message beyond its own bytes (the Entry, its
# sequence number, the deque slot, allocator slack), as measured for a queued
# 100-byte message: what the memory alarm counts along with the message bytes.
ENTRY_OVERHEAD = 300


class Entry:
    """One stored message and its delivery bookkeeping.

    An entry keeps the message's bytes, not a `Message` view of them: a queued
    message is read again only when it is redelivered, filtered or inspected,
    and a view per stored message would cost as much again as this bookkeeping
    (88 bytes per message at a backlog of millions).  `message` makes a view
    when one is needed."""

    __slots__ = (
        "acquired_before",
        "delivery_count",
        "excluded",
        "expires_at",
        "fields",
        "gone",
        "key",
        "offset",
        "payload",
        "priority",
        "returns",
        "sequence",
        "size",
        "timestamp",
    )

    def __init__(self, message: Message, expires_at: float | None = None) -> None:
        self.payload = message.encode()  # the bytes a delivery sends
        self.size = len(self.payload)
        self.expires_at = expires_at  # wall-clock seconds
        self.delivery_count = 0  # failed deliveries we added to the header's own count
        self.acquired_before = False
        # consumers that must not get it (undeliverable-here): weak references, so
        # the entry neither keeps a closed connection's objects alive nor confuses
        # a new consumer with a freed one at the same address
        self.excluded: weakref.WeakSet[object] | None = None
        self.priority = 0  # priority queues only: the header's priority, capped
        self.returns = 0  # times it came back to the queue (quorum's x-delivery-count)
        self.offset = -1  # streams only
        self.timestamp = 0.0  # arrival time, wall clock seconds (streams; queues too)
        self.sequence = 0  # queues: its number in the queue's order of arrival, from 1
        # no longer on its queue (accepted, dead-lettered, expired, purged, replaced):
        # browsers that have not reached it yet skip it
        self.gone = False
        self.key: object = None  # last-value queues: the value of its key, if it has one
        self.fields: MessageFields | None = None  # decoded for consumers' selectors

    @property
    def message(self) -> Message:
        """A view of the stored bytes, made anew on each call (callers that read
        several sections keep theirs); set `payload` to change the message."""
        return Message.trusted(self.payload)

    def __repr__(self) -> str:
        return f"Entry({self.size} bytes, delivery_count={self.delivery_count})"


def expiry_of(message: Message, now: float) -> float | None:
    """When a message expires (wall-clock seconds): header ttl or absolute-expiry-time."""
    expires: float | None = None
    ttl = message.section_field(0x70, 2)
    if isinstance(ttl, int) and ttl > 0:
        expires = now + ttl / 1000.0
    absolute = message.section_field(0x73, 8)
    if isinstance(absolute, int) and absolute > 0:
        expires = absolute / 1000.0 if expires is None else min(expires, absolute / 1000.0)
    return expires
