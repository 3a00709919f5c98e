"""In-memory FIFO queue with competing consumers.

Theory of operation.  Messages wait in `ready` (a deque) until a consumer with
credit takes them; they then wait in the consumer's unsettled map (owned by the
container) until it settles them.  Consumers are served round-robin, one
message at a time, so competing consumers share the load by credit.
`accepted`/`rejected` remove a message; `released`, `modified` and messages
left unsettled by a link or connection that went away return to the *head* of
the queue, in their original order, so ordering survives redelivery.
`modified(undeliverable-here)` keeps the message from that one consumer.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Iterable

from broker.codec.messaging import Header, Message
from broker.nodes.base import Consumer, Entry

log = logging.getLogger("broker.queue")


class QueueFull(Exception):
    """Publishing would exceed the queue's limits and the overflow is reject-publish."""


class Queue:
    kind = "queue"

    def __init__(
        self,
        name: str,
        *,
        max_length: int | None = None,
        max_length_bytes: int | None = None,
        overflow: str = "reject-publish",
        temporary: bool = False,
    ) -> None:
        self.name = name
        self.ready: deque[Entry] = deque()
        self.ready_bytes = 0
        self.consumers: list[Consumer] = []
        self._rr = 0
        self.max_length = max_length
        self.max_length_bytes = max_length_bytes
        self.overflow = overflow
        self.temporary = temporary
        self.unacked = 0  # delivered, not yet settled
        self.dropped = 0
        self.expired = 0
        self._expiring = 0  # entries with an expiry time ever stored (a hint for expire())

    # -- introspection ----------------------------------------------------------

    @property
    def depth(self) -> int:
        """Messages waiting to be delivered."""
        return len(self.ready)

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, depth={self.depth}, consumers={len(self.consumers)})"

    # -- publishing ---------------------------------------------------------------

    def publish(self, entry: Entry, now: float) -> None:
        """Store a message; raises QueueFull under reject-publish overflow."""
        if self._over_limit(entry.size):
            if self.max_length_bytes is not None and entry.size > self.max_length_bytes:
                raise QueueFull(f"message larger than queue {self.name!r}'s max-length-bytes")
            if self.overflow == "drop-head":
                while self.ready and self._over_limit(entry.size):
                    old = self.ready.popleft()
                    self.ready_bytes -= old.size
                    self.dropped += 1
            if self._over_limit(entry.size):
                raise QueueFull(f"queue {self.name!r} is full")
        self.ready.append(entry)
        self.ready_bytes += entry.size
        if entry.expires_at is not None:
            self._expiring += 1
        if self.consumers:
            self.dispatch(now)

    def _over_limit(self, extra: int) -> bool:
        if self.max_length is not None and len(self.ready) + 1 > self.max_length:
            return True
        return self.max_length_bytes is not None and self.ready_bytes + extra > self.max_length_bytes

    # -- consuming ----------------------------------------------------------------

    def add_consumer(self, consumer: Consumer, now: float) -> None:
        self.consumers.append(consumer)
        self.dispatch(now)

    def consumer_ready(self, consumer: Consumer, now: float) -> None:
        """A consumer gained credit."""
        if self.ready:
            self.dispatch(now)

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)

    def dispatch(self, now: float) -> None:
        """Hand ready messages to consumers with credit, round-robin."""
        ready = self.ready
        consumers = self.consumers
        skipped: list[Entry] = []
        while ready and consumers:
            entry = ready[0]
            if entry.expires_at is not None and entry.expires_at <= now:
                ready.popleft()
                self.ready_bytes -= entry.size
                self.expired += 1
                continue
            consumer = self._next_consumer(entry)
            if consumer is None:
                if not any(c.credit > 0 for c in consumers):
                    break
                skipped.append(ready.popleft())  # only excluded consumers have credit
                continue
            ready.popleft()
            self.ready_bytes -= entry.size
            self.unacked += 1
            consumer.deliver(entry, self._message_for_delivery(entry))
            entry.acquired_before = True
        if skipped:  # never left ready_bytes: put back in place, not counted again
            ready.extendleft(reversed(skipped))

    def _next_consumer(self, entry: Entry) -> Consumer | None:
        consumers = self.consumers
        n = len(consumers)
        for i in range(n):
            c = consumers[(self._rr + i) % n]
            if c.credit > 0 and _may_take(c, entry):
                self._rr = (self._rr + i + 1) % n
                return c
        return None

    def expire(self, now: float) -> int:
        """Drop expired messages anywhere in the queue (dispatch only sees the head)."""
        if not self._expiring:
            return 0
        before = len(self.ready)
        kept = deque(e for e in self.ready if e.expires_at is None or e.expires_at > now)
        removed = before - len(kept)
        if removed:
            self.ready = kept
            self.ready_bytes = sum(e.size for e in kept)
            self.expired += removed
        self._expiring = sum(1 for e in kept if e.expires_at is not None)
        return removed

    @staticmethod
    def _message_for_delivery(entry: Entry) -> Message:
        """Rewrite the header only when this is a redelivery (§3.2.1)."""
        if not entry.acquired_before and entry.delivery_count == 0:
            return entry.message
        old = entry.message.header or Header()
        header = Header(
            durable=old.durable,
            priority=old.priority,
            ttl=old.ttl,
            first_acquirer=False,
            delivery_count=old.delivery_count + entry.delivery_count,
        )
        return entry.message.with_changes(header=header)

    # -- settlement -----------------------------------------------------------------

    def settle(self, entry: Entry) -> None:
        """The consumer accepted or rejected the message: it is gone."""
        self.unacked -= 1

    def requeue(
        self,
        entries: Iterable[Entry],
        now: float,
        *,
        delivery_failed: bool = False,
        exclude: Consumer | None = None,
    ) -> None:
        """Put delivered messages back at the head, keeping their order."""
        back = list(entries)
        for entry in back:
            self.unacked -= 1
            if delivery_failed:
                entry.delivery_count += 1
            if exclude is not None:
                if entry.excluded is None:
                    entry.excluded = weakref.WeakSet()
                entry.excluded.add(exclude)
            self.ready_bytes += entry.size
        self.ready.extendleft(reversed(back))
        self.dispatch(now)

    def purge(self) -> int:
        n = len(self.ready)
        self.ready.clear()
        self.ready_bytes = 0
        return n


def _may_take(consumer: Consumer, entry: Entry) -> bool:
    """Not excluded (undeliverable-here), and within the consumer's max-message-size."""
    if entry.excluded is not None and consumer in entry.excluded:
        return False
    limit = consumer.max_message_size
    return not limit or entry.size <= limit
