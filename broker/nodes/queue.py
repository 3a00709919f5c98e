"""In-memory FIFO queue with competing consumers and RabbitMQ's queue arguments.

Theory of operation.  Messages wait in `ready` until a consumer with credit
takes them; they then wait in the consumer's unsettled map (owned by the
container) until it settles them.  Consumers are served round-robin, one
message at a time, so competing consumers share the load by credit; with
single-active-consumer only the oldest consumer is served.
`accepted` removes a message; `rejected` removes it too, through the dead-letter
hook when the queue has a dead-letter exchange.  `released`, `modified` and
messages left unsettled by a link or connection that went away return to the
*head* of the queue, in their original order, so ordering survives redelivery;
a message that failed more than `delivery_limit` times is dead-lettered
instead.  `modified(undeliverable-here)` keeps the message from that one
consumer.

Limits (RabbitMQ's `x-max-length`, `x-max-length-bytes`, `x-overflow`) apply at
publish: `reject-publish` refuses the new message, `reject-publish-dlx` also
dead-letters it, `drop-head` drops (and dead-letters) the oldest.  A per-queue
message TTL is folded into each entry's expiry time at publish; expired
messages are dropped at the head by dispatch and anywhere by `expire()`.

Browsers (`distribution-mode: copy`, or every consumer of a queue declared
browse-only) see messages without taking them; see browse.py.  A last-value
queue keeps one message per value of its key: a new message with the same
key goes to the tail and the queued one is dropped (Artemis' order: the
newest is last), unless the old one is out for delivery, in which case it
goes on and is dropped if it comes back.  Replacing searches the ready
messages, which in a last-value queue are about one per key.

The queue knows nothing of exchanges: `dead_letter` is a hook the registry
installs, called with the entry and RabbitMQ's reason (`rejected`, `expired`,
`maxlen`, `delivery_limit`) after the entry has left the queue.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from broker.codec.messaging import Header, Message
from broker.codec.types import Long, Symbol
from broker.filters.fields import MessageFields
from broker.nodes.base import ENTRY_OVERHEAD, Consumer, Entry
from broker.nodes.browse import QueueBrowser, last_value_key

log = logging.getLogger("broker.queue")

OVERFLOWS = ("drop-head", "reject-publish", "reject-publish-dlx")

X_DELIVERY_COUNT = Symbol("x-delivery-count")

DeadLetterHook = Callable[["Queue", Entry, str, float], None]


class QueueJournalHook(Protocol):
    def numbered(self, sequence: int) -> None: ...
    def published(self, entry: Entry) -> None: ...
    def delivered(self, entry: Entry) -> None: ...
    def removed(self, entry: Entry) -> None: ...


class QueueFull(Exception):
    """Publishing would exceed the queue's limits and the overflow rejects publishes."""

    def __init__(self, queue: str, reason: str) -> None:
        super().__init__(reason)
        self.queue = queue


class _PriorityReady:
    """The ready list of a priority queue: one FIFO per priority, highest served
    first.  It offers the few deque operations the queue uses; `top` is the
    highest level that may hold anything, so serving does not scan empty ones."""

    __slots__ = ("count", "levels", "top")

    def __init__(self, max_priority: int) -> None:
        self.levels: list[deque[Entry]] = [deque() for _ in range(max_priority + 1)]
        self.count = 0
        self.top = 0

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[Entry]:
        for level in reversed(self.levels):
            yield from level

    def _highest(self) -> deque[Entry]:
        levels = self.levels
        while self.top > 0 and not levels[self.top]:
            self.top -= 1
        return levels[self.top]

    def __getitem__(self, index: int) -> Entry:
        if index == 0 and self.count:
            return self._highest()[0]
        raise IndexError(index)

    def append(self, entry: Entry) -> None:
        self.levels[entry.priority].append(entry)
        self.count += 1
        self.top = max(self.top, entry.priority)

    def popleft(self) -> Entry:
        if not self.count:
            raise IndexError("pop from an empty queue")
        self.count -= 1
        return self._highest().popleft()

    def extendleft(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.levels[entry.priority].appendleft(entry)
            self.count += 1
            self.top = max(self.top, entry.priority)

    def clear(self) -> None:
        for level in self.levels:
            level.clear()
        self.count = 0
        self.top = 0

    def remove(self, entry: Entry) -> bool:
        """Take `entry` out wherever it is (by identity); whether it was there."""
        if _remove(self.levels[entry.priority], entry):
            self.count -= 1
            return True
        return False


def _remove(ready: deque[Entry], entry: Entry) -> bool:
    """Take `entry` out of a FIFO by identity (not equality); O(len)."""
    for i, queued in enumerate(ready):
        if queued is entry:
            del ready[i]
            return True
    return False


class Queue:
    kind = "queue"

    def __init__(
        self,
        name: str,
        *,
        max_length: int | None = None,
        max_length_bytes: int | None = None,
        overflow: str = "reject-publish",
        message_ttl: float | None = None,
        dead_letter_exchange: str | None = None,
        dead_letter_routing_key: str | None = None,
        single_active_consumer: bool = False,
        max_priority: int | None = None,
        delivery_limit: int | None = None,
        count_returns: bool = False,
        temporary: bool = False,
        last_value_key: str | None = None,
        browse_only: bool = False,
    ) -> None:
        if overflow not in OVERFLOWS:
            raise ValueError(f"unknown overflow {overflow!r}")
        self.name = name
        self.ready: deque[Entry] | _PriorityReady = (
            deque() if max_priority is None else _PriorityReady(max_priority))
        self.ready_bytes = 0
        self.consumers: list[Consumer] = []
        self._rr = 0
        self.max_length = max_length
        self.max_length_bytes = max_length_bytes
        self.overflow = overflow
        self.message_ttl = message_ttl  # seconds
        self.dead_letter_exchange = dead_letter_exchange
        self.dead_letter_routing_key = dead_letter_routing_key
        self.single_active_consumer = single_active_consumer
        self.max_priority = max_priority
        self.delivery_limit = delivery_limit
        # quorum queues tell consumers how often a message came back (x-delivery-count)
        self.count_returns = count_returns
        self.temporary = temporary
        self.browse_only = browse_only  # every consumer browses (Qpid's non-destructive)
        self.browsers: dict[int, QueueBrowser] = {}  # by id(consumer)
        self._key_of = _key_function(last_value_key)
        self._latest: dict[object, Entry] = {}  # last-value queues: key value → newest entry
        self.dead_letter: DeadLetterHook | None = None  # installed by the registry
        # a durable queue's (--data-dir): told of each message arriving, going
        # out the first time and leaving (store/durable.py's QueueJournal)
        self.journal: QueueJournalHook | None = None
        self.deleted = False
        self.unacked = 0  # delivered, not yet settled
        self.unacked_bytes = 0
        # totals since declaration, for metrics and the console (plain ints: cheap)
        self.published = 0
        self._sequence = 0  # the last sequence number given (Azure's, per entity)
        self.delivered = 0
        self.acked = 0
        self.redelivered = 0  # returned to the queue for another delivery
        self.dropped = 0
        self.expired = 0
        self.dead_lettered = 0
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
        """Store a message; raises QueueFull when the overflow rejects it."""
        if self.message_ttl is not None:
            expires = now + self.message_ttl
            if entry.expires_at is None or expires < entry.expires_at:
                entry.expires_at = expires
        if self.max_priority is not None:
            priority = entry.message.section_field(0x70, 1)
            entry.priority = min(priority, self.max_priority) if isinstance(priority, int) else 0
        if (self.max_length is not None or self.max_length_bytes is not None) and \
                self._over_limit(entry.size):
            self._overflow(entry, now)  # QueueFull before a last value is replaced
        if self._key_of is not None:
            self._replace(entry)
        self.ready.append(entry)
        self.ready_bytes += entry.size
        self.published += 1
        if not entry.sequence:  # a scheduled message has had its number since scheduling
            entry.sequence = self.next_sequence()  # Azure's sequence number, per entity
        entry.timestamp = now
        if self.journal is not None:
            self.journal.published(entry)
        if entry.expires_at is not None:
            self._expiring += 1
        if self.browsers:
            depth = len(self.ready)
            for browser in list(self.browsers.values()):
                browser.offer(entry, depth, now)
        if self.consumers:
            self.dispatch(now)

    def _replace(self, entry: Entry) -> None:
        """Last-value queues: `entry` supersedes the queued message with its key."""
        key = self._key_of(entry.message)  # type: ignore[misc]
        if key is None:
            return
        try:
            hash(key)
        except TypeError:
            return  # a list or map as the key's value: never replaced
        entry.key = key
        old = self._latest.get(key)
        self._latest[key] = entry
        if old is None or old.gone:
            return
        self.withdraw(old)  # if it is out for delivery: dropped if it comes back (requeue)

    def _overflow(self, entry: Entry, now: float) -> None:
        """Make room for `entry` by the overflow rule, or raise QueueFull."""
        if self.max_length_bytes is not None and entry.size > self.max_length_bytes:
            raise QueueFull(self.name, f"message larger than queue {self.name!r}'s max-length-bytes")
        if self.overflow == "drop-head":
            while self.ready and self._over_limit(entry.size):
                old = self.ready.popleft()
                self.ready_bytes -= old.size
                self.dropped += 1
                self._to_dead_letter(old, "maxlen", now)
        if self._over_limit(entry.size):
            if self.overflow == "reject-publish-dlx":
                self._to_dead_letter(entry, "maxlen", now)
            raise QueueFull(self.name, f"queue {self.name!r} is full")

    def next_sequence(self) -> int:
        self._sequence += 1
        if self.journal is not None:  # numbers never go back, even across a restart
            self.journal.numbered(self._sequence)
        return self._sequence

    def restore(self, entry: Entry, now: float) -> None:
        """Recovery: a message back from the store, at the tail, in its old
        order.  No limit applies (everything that was kept comes back, as
        RabbitMQ brings it back), nothing is recorded again, and nothing is
        dispatched yet."""
        if self.max_priority is not None:
            priority = entry.message.section_field(0x70, 1)
            entry.priority = min(priority, self.max_priority) if isinstance(priority, int) else 0
        if self._key_of is not None:
            journal, self.journal = self.journal, None
            try:
                self._replace(entry)  # an older value recovered with it is superseded
            finally:
                self.journal = journal
        self.ready.append(entry)
        self.ready_bytes += entry.size
        entry.timestamp = now
        if entry.expires_at is not None:
            self._expiring += 1
        self._sequence = max(self._sequence, entry.sequence)

    def withdraw(self, entry: Entry) -> bool:
        """Take a message not yet delivered off the queue (a last value
        superseded; a publish the store could not keep, so refused); False if
        it is no longer waiting here."""
        ready = self.ready
        if not (ready.remove(entry) if isinstance(ready, _PriorityReady) else _remove(ready, entry)):
            return False
        self.ready_bytes -= entry.size
        self._forget(entry)
        return True

    @property
    def last_sequence(self) -> int:
        """The last sequence number given out (0: none yet)."""
        return self._sequence

    def resume_sequence(self, last: int) -> None:
        """Recovery: numbering goes on after the recovered messages' `last`."""
        self._sequence = max(self._sequence, last)

    def has_room(self, count: int, size: int) -> bool:
        """Whether `count` more messages of `size` bytes in all would be stored
        (a drop-head queue always makes room)."""
        if self.overflow == "drop-head":
            return True
        if self.max_length is not None and len(self.ready) + count > self.max_length:
            return False
        return self.max_length_bytes is None or self.ready_bytes + size <= self.max_length_bytes

    def _over_limit(self, extra: int) -> bool:
        if self.max_length is not None and len(self.ready) + 1 > self.max_length:
            return True
        return self.max_length_bytes is not None and self.ready_bytes + extra > self.max_length_bytes

    def _to_dead_letter(self, entry: Entry, reason: str, now: float) -> None:
        """`entry` has left the queue for good (rejected, expired, dropped)."""
        self._forget(entry)
        hook = self.dead_letter
        if hook is not None and self.dead_letter_exchange is not None:
            self.dead_lettered += 1
            hook(self, entry, reason, now)

    # -- consuming ----------------------------------------------------------------

    def add_consumer(self, consumer: Consumer, now: float) -> None:
        self.consumers.append(consumer)
        self.dispatch(now)

    def add_browser(self, consumer: Consumer, now: float) -> None:
        """A consumer that sees every message queued now and later, taking none."""
        browser = self.browsers[id(consumer)] = QueueBrowser(consumer, self.ready)
        browser.feed(now)

    def browser_caught_up(self, consumer: Consumer) -> bool:
        browser = self.browsers.get(id(consumer))
        return browser is None or browser.caught_up

    def consumer_ready(self, consumer: Consumer, now: float) -> None:
        """A consumer gained credit."""
        browser = self.browsers.get(id(consumer))
        if browser is not None:
            browser.feed(now)
        elif self.ready:
            self.dispatch(now)

    def remove_consumer(self, consumer: Consumer, now: float | None = None) -> None:
        """Forget a consumer.  With single-active-consumer, the next one takes
        over at once (given `now`): it may have credit and nothing to wake it."""
        if self.browsers.pop(id(consumer), None) is not None:
            return
        consumers = self.consumers
        if consumer in consumers:
            was_active = consumers[0] is consumer
            consumers.remove(consumer)
            if was_active and self.single_active_consumer and now is not None and consumers:
                self.dispatch(now)

    def dispatch(self, now: float) -> None:
        """Hand ready messages to consumers with credit, round-robin."""
        ready = self.ready
        consumers = self.consumers
        skipped: list[Entry] = []
        while ready and consumers:
            entry = ready[0]
            # `<`, not `<=`: a message with ttl 0 still goes to a consumer that
            # can take it at once, as RabbitMQ's does
            if entry.expires_at is not None and entry.expires_at < now:
                ready.popleft()
                self.ready_bytes -= entry.size
                self.expired += 1
                self._to_dead_letter(entry, "expired", now)
                continue
            consumer = self._next_consumer(entry, now)
            if consumer is None:
                serving = consumers[:1] if self.single_active_consumer else consumers
                if not any(c.credit > 0 for c in serving):
                    break
                skipped.append(ready.popleft())  # not for the consumers with credit
                continue
            ready.popleft()
            self.ready_bytes -= entry.size
            self.unacked += 1
            self.unacked_bytes += entry.size
            self.delivered += 1
            if not entry.acquired_before and self.journal is not None:
                self.journal.delivered(entry)
            consumer.deliver(entry, self._message_for_delivery(entry)
                             if entry.acquired_before or entry.delivery_count else None)
            entry.acquired_before = True
        if skipped:  # never left ready_bytes: put back in place, not counted again
            ready.extendleft(reversed(skipped))

    def _next_consumer(self, entry: Entry, now: float) -> Consumer | None:
        consumers = self.consumers
        if self.single_active_consumer:
            active = consumers[0]
            return active if active.credit > 0 and _may_take(active, entry, now) else None
        n = len(consumers)
        for i in range(n):
            c = consumers[(self._rr + i) % n]
            if c.credit > 0 and _may_take(c, entry, now):
                self._rr = (self._rr + i + 1) % n
                return c
        return None

    def expire(self, now: float) -> int:
        """Drop expired messages anywhere in the queue (dispatch only sees the head)."""
        if not self._expiring:
            return 0
        kept: list[Entry] = []
        gone: list[Entry] = []
        for e in self.ready:
            (gone if e.expires_at is not None and e.expires_at < now else kept).append(e)
        if gone:
            self.ready.clear()
            for e in kept:
                self.ready.append(e)
            self.ready_bytes = sum(e.size for e in kept)
            self.expired += len(gone)
            for e in gone:
                self._to_dead_letter(e, "expired", now)
        self._expiring = sum(1 for e in kept if e.expires_at is not None)
        return len(gone)

    def _message_for_delivery(self, entry: Entry) -> Message:
        """A redelivery's message (§3.2.1): the header says it is not the first
        acquirer and counts the failed attempts; a quorum queue also annotates how
        often it came back (`x-delivery-count`, released included, as RabbitMQ's)."""
        if self.count_returns and entry.returns:
            message = entry.message
            annotations = dict(message.message_annotations or {})
            annotations[X_DELIVERY_COUNT] = Long(entry.returns)
            return message.with_changes(header=_redelivery_header(entry, message),
                                        message_annotations=annotations)
        return redelivered(entry)

    # -- settlement -----------------------------------------------------------------

    def settle(self, entry: Entry) -> None:
        """The consumer accepted the message: it is gone."""
        self.unacked -= 1
        self.unacked_bytes -= entry.size
        self.acked += 1
        self._forget(entry)

    def _forget(self, entry: Entry) -> None:
        entry.gone = True
        if self.journal is not None:
            self.journal.removed(entry)
        if entry.key is not None and self._latest.get(entry.key) is entry:
            del self._latest[entry.key]

    def reject(self, entry: Entry, now: float) -> None:
        """The consumer rejected the message: gone, or to the dead-letter exchange."""
        self.unacked -= 1
        self.unacked_bytes -= entry.size
        self._to_dead_letter(entry, "rejected", now)

    def requeue(
        self,
        entries: Iterable[Entry],
        now: float,
        *,
        delivery_failed: bool = False,
        exclude: Consumer | None = None,
    ) -> None:
        """Put delivered messages back at the head, keeping their order."""
        back: list[Entry] = []
        limit = self.delivery_limit
        for entry in entries:
            self.unacked -= 1
            self.unacked_bytes -= entry.size
            if entry.key is not None and self._latest.get(entry.key) is not entry:
                self._forget(entry)  # a newer value arrived while it was out: it is stale
                continue
            entry.returns += 1
            if delivery_failed:
                entry.delivery_count += 1
                if limit is not None and entry.delivery_count > limit:
                    self.dropped += 1
                    self._to_dead_letter(entry, "delivery_limit", now)
                    continue
            if exclude is not None:
                if entry.excluded is None:
                    entry.excluded = weakref.WeakSet()
                entry.excluded.add(exclude)
            self.ready_bytes += entry.size
            back.append(entry)
        self.redelivered += len(back)
        self.ready.extendleft(reversed(back))
        self.dispatch(now)

    def modify(self, entry: Entry, now: float, consumer: Consumer, *, delivery_failed: bool,
               undeliverable_here: bool, annotations: dict[object, object] | None) -> None:
        """The consumer answered `modified` (§3.4.5).  With a dead-letter exchange,
        undeliverable-here dead-letters the message (RabbitMQ's rule); without
        one it only keeps the message from that consumer (the spec's, Qpid's and
        Artemis's).  Otherwise it comes back, its annotations merged."""
        if undeliverable_here and self.dead_letter_exchange is not None:
            self.reject(entry, now)
            return
        if annotations:
            message = entry.message
            merged = dict(message.message_annotations or {})
            merged.update(annotations)
            entry.payload = message.with_changes(message_annotations=merged).encode()
        self.requeue([entry], now, delivery_failed=delivery_failed,
                     exclude=consumer if undeliverable_here else None)

    def housekeeping(self, now: float) -> None:
        self.expire(now)

    @property
    def held_bytes(self) -> int:
        """What the queue holds, ready and unsettled, counting each message's
        bookkeeping (`ENTRY_OVERHEAD`) as well as its bytes: the memory alarm's
        measure."""
        return self.ready_bytes + self.unacked_bytes + ENTRY_OVERHEAD * (len(self.ready)
                                                                           + self.unacked)

    def purge(self) -> int:
        n = len(self.ready)
        for entry in self.ready:
            self._forget(entry)
        self.ready.clear()
        self.ready_bytes = 0
        return n


def _key_function(spec: str | None) -> Callable[[Message], object] | None:
    return last_value_key(spec) if spec is not None else None


def _may_take(consumer: Consumer, entry: Entry, now: float) -> bool:
    """Not excluded (undeliverable-here), within the consumer's max-message-size,
    and matching its selector, if it has one (the message's sections decoded
    once, on its entry, for every selector that looks at it)."""
    if entry.excluded is not None and consumer in entry.excluded:
        return False
    limit = consumer.max_message_size
    if limit and entry.size > limit:
        return False
    match = consumer.filter
    if match is None:
        return True
    fields = entry.fields
    if fields is None:
        fields = entry.fields = MessageFields(entry.message)
    return match.matches(fields, now)


def _redelivery_header(entry: Entry, message: Message) -> Header:
    old = message.header or Header()
    return Header(durable=old.durable, priority=old.priority, ttl=old.ttl,
                  first_acquirer=False,
                  delivery_count=old.delivery_count + entry.delivery_count)


def redelivered(entry: Entry) -> Message:
    """The message as a redelivery shows it (§3.2.1): not the first acquirer,
    its failed attempts counted in the header."""
    message = entry.message
    return message.with_changes(header=_redelivery_header(entry, message))
