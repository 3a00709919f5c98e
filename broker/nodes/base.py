"""What a node needs from a consumer, and what it hands out."""

from __future__ import annotations

import weakref
from typing import Protocol

from broker.codec.messaging import Message


class Consumer(Protocol):
    """A link reading from a node (implemented by the container)."""

    @property
    def credit(self) -> int:
        """How many more messages may be delivered right now."""
        ...

    # The largest message the consumer takes (its link's max-message-size); 0: any.
    max_message_size: int

    def deliver(self, entry: Entry, message: Message) -> None:
        """Send `message` (already rewritten for this delivery) to the peer."""
        ...


class Entry:
    """One stored message and its delivery bookkeeping."""

    __slots__ = (
        "acquired_before",
        "delivery_count",
        "excluded",
        "expires_at",
        "message",
        "offset",
        "size",
        "timestamp",
    )

    def __init__(self, message: Message, expires_at: float | None = None) -> None:
        self.message = message
        self.size = len(message.payload)
        self.expires_at = expires_at  # wall-clock seconds
        self.delivery_count = 0  # failed deliveries we added to the header's own count
        self.acquired_before = False
        # consumers that must not get it (undeliverable-here): weak references, so
        # the entry neither keeps a closed connection's objects alive nor confuses
        # a new consumer with a freed one at the same address
        self.excluded: weakref.WeakSet[object] | None = None
        self.offset = -1  # streams only
        self.timestamp = 0.0  # streams only: arrival time, wall clock seconds

    def __repr__(self) -> str:
        return f"Entry({self.size} bytes, delivery_count={self.delivery_count})"
