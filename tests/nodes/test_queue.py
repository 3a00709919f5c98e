"""The in-memory queue as a plain object, with fake consumers."""

from __future__ import annotations

import pytest

from broker.codec.messaging import Header, Message
from broker.codec.types import Symbol
from broker.nodes.base import Entry
from broker.nodes.queue import Queue, QueueFull


class FakeConsumer:
    max_message_size = 0  # takes any size
    filter = None  # takes every message

    def __init__(self, credit: int = 0) -> None:
        self.credit = credit
        self.got: list[tuple[Entry, Message]] = []

    def deliver(self, entry: Entry, message: Message | None) -> None:
        assert self.credit > 0, "delivered without credit"
        self.credit -= 1
        self.got.append((entry, message or entry.message))

    @property
    def bodies(self) -> list[bytes]:
        return [body(m) for _, m in self.got]

    @property
    def entries(self) -> list[Entry]:
        return [e for e, _ in self.got]


def body(message: Message) -> bytes:
    (section,) = message.body
    return section.value  # type: ignore[attr-defined,no-any-return]


def entry(data: bytes, expires_at: float | None = None, **kwargs: object) -> Entry:
    return Entry(Message.create(data, **kwargs), expires_at)  # type: ignore[arg-type]


def fill(q: Queue, *bodies: bytes) -> None:
    for b in bodies:
        q.publish(entry(b), 0.0)


def test_fifo() -> None:
    q = Queue("q")
    fill(q, b"1", b"2", b"3")
    assert q.depth == 3
    c = FakeConsumer(credit=10)
    q.add_consumer(c, 0.0)
    assert c.bodies == [b"1", b"2", b"3"]
    assert (q.depth, q.unacked) == (0, 3)


def test_no_delivery_without_credit() -> None:
    q = Queue("q")
    c = FakeConsumer(credit=0)
    q.add_consumer(c, 0.0)
    fill(q, b"1", b"2")
    assert c.got == []
    c.credit = 1
    q.consumer_ready(c, 0.0)
    assert c.bodies == [b"1"]
    assert q.depth == 1


def test_first_delivery_is_the_message_untouched() -> None:
    q = Queue("q")
    e = entry(b"x", header=Header(delivery_count=5))
    q.publish(e, 0.0)
    c = FakeConsumer(credit=1)
    q.add_consumer(c, 0.0)
    assert c.got[0][1].payload is e.payload


def test_competing_consumers_round_robin() -> None:
    q = Queue("q")
    a, b, c = FakeConsumer(10), FakeConsumer(10), FakeConsumer(10)
    for consumer in (a, b, c):
        q.add_consumer(consumer, 0.0)
    fill(q, *[b"%d" % i for i in range(7)])
    assert a.bodies == [b"0", b"3", b"6"]
    assert b.bodies == [b"1", b"4"]
    assert c.bodies == [b"2", b"5"]


def test_round_robin_skips_consumers_without_credit() -> None:
    q = Queue("q")
    a, b = FakeConsumer(1), FakeConsumer(5)
    q.add_consumer(a, 0.0)
    q.add_consumer(b, 0.0)
    fill(q, b"0", b"1", b"2", b"3")
    assert a.bodies == [b"0"]
    assert b.bodies == [b"1", b"2", b"3"]


def test_remove_consumer() -> None:
    q = Queue("q")
    a = FakeConsumer(5)
    q.add_consumer(a, 0.0)
    q.remove_consumer(a)
    q.remove_consumer(a)  # twice is harmless
    fill(q, b"x")
    assert a.got == []
    assert q.depth == 1


def test_settle_forgets_the_message() -> None:
    q = Queue("q")
    c = FakeConsumer(5)
    q.add_consumer(c, 0.0)
    fill(q, b"1", b"2")
    q.settle(c.entries[0])
    assert (q.depth, q.unacked) == (0, 1)


def test_requeue_puts_messages_back_at_the_head_in_order() -> None:
    q = Queue("q")
    c = FakeConsumer(3)
    q.add_consumer(c, 0.0)
    fill(q, b"1", b"2", b"3", b"4", b"5")
    got = c.entries
    q.requeue(got, 0.0)
    assert (q.depth, q.unacked) == (5, 0)
    d = FakeConsumer(10)
    q.add_consumer(d, 0.0)
    assert d.bodies == [b"1", b"2", b"3", b"4", b"5"]


def test_released_redelivery_rewrites_the_header_without_counting() -> None:
    q = Queue("q")
    c = FakeConsumer(1)
    q.add_consumer(c, 0.0)
    q.publish(entry(b"x", header=Header(durable=True, priority=9, ttl=5000, delivery_count=1)),
              0.0)
    q.requeue(c.entries, 0.0)
    c.credit = 1
    q.consumer_ready(c, 0.0)
    header = c.got[1][1].header
    assert header == Header(durable=True, priority=9, ttl=5000, first_acquirer=False,
                            delivery_count=1)


def test_failed_redelivery_counts_in_the_header() -> None:
    q = Queue("q")
    c = FakeConsumer(1)
    q.add_consumer(c, 0.0)
    fill(q, b"x")
    for expected in (1, 2, 3):
        q.requeue([c.entries[-1]], 0.0, delivery_failed=True)
        c.credit = 1
        q.consumer_ready(c, 0.0)
        redelivered = c.got[-1][1]
        assert redelivered.header is not None
        assert redelivered.header.delivery_count == expected
        assert body(redelivered) == b"x"
        encoded = Message.parse(redelivered.encode())
        assert encoded.header.delivery_count == expected
        assert body(encoded) == b"x"


def test_requeue_excluding_a_consumer() -> None:
    q = Queue("q")
    a = FakeConsumer(5)
    q.add_consumer(a, 0.0)
    fill(q, b"x")
    q.requeue(a.entries, 0.0, exclude=a)
    assert a.bodies == [b"x"], "not redelivered to the excluded consumer"
    assert q.depth == 1
    fill(q, b"y")
    assert a.bodies == [b"x", b"y"], "the excluded message does not block the next"
    b = FakeConsumer(5)
    q.add_consumer(b, 0.0)
    assert b.bodies == [b"x"]
    assert q.depth == 0


def test_excluded_messages_keep_their_place_and_the_byte_count() -> None:
    q = Queue("q")
    a = FakeConsumer(1)
    q.add_consumer(a, 0.0)
    fill(q, b"x" * 10)
    q.requeue(a.entries, 0.0, exclude=a)
    fill(q, b"y" * 10, b"z" * 10)
    a.credit = 1
    q.consumer_ready(a, 0.0)  # skips x, takes y
    assert a.bodies == [b"x" * 10, b"y" * 10]
    assert q.ready_bytes == sum(e.size for e in q.ready)
    b = FakeConsumer(5)
    q.add_consumer(b, 0.0)
    assert b.bodies == [b"x" * 10, b"z" * 10]
    assert q.ready_bytes == 0


def test_exclusion_does_not_outlive_the_consumer() -> None:
    q = Queue("q")
    a = FakeConsumer(1)
    q.add_consumer(a, 0.0)
    fill(q, b"x")
    q.requeue(a.entries, 0.0, exclude=a)
    q.remove_consumer(a)
    del a
    b = FakeConsumer(1)  # often at a's old address: exclusions must hold objects, not ids
    q.add_consumer(b, 0.0)
    assert b.bodies == [b"x"]


def test_expired_messages_are_dropped_never_delivered() -> None:
    q = Queue("q")
    q.publish(entry(b"old", expires_at=100.0), 0.0)
    q.publish(entry(b"fresh", expires_at=300.0), 0.0)
    q.publish(entry(b"forever"), 0.0)
    c = FakeConsumer(10)
    q.add_consumer(c, 200.0)
    assert c.bodies == [b"fresh", b"forever"]
    assert q.expired == 1
    assert q.ready_bytes == 0


def test_a_message_expires_once_its_time_has_passed() -> None:
    # at exactly its expiry time it is still delivered: a queue ttl of 0 means
    # "only to a consumer that takes it at once", as RabbitMQ's does
    q = Queue("q")
    q.publish(entry(b"x", expires_at=5.0), 0.0)
    q.publish(entry(b"y", expires_at=5.0), 0.0)
    c = FakeConsumer(1)
    q.add_consumer(c, 5.0)
    assert c.bodies == [b"x"] and q.expired == 0
    c.credit = 1
    q.dispatch(5.001)
    assert c.bodies == [b"x"] and q.expired == 1


def test_queue_ttl_zero_delivers_only_at_once() -> None:
    q = Queue("q", message_ttl=0.0)
    c = FakeConsumer(1)
    q.add_consumer(c, 0.0)
    fill(q, b"taken", b"nobody")
    assert c.bodies == [b"taken"]
    assert q.expire(0.001) == 1 and q.depth == 0


def test_requeued_messages_can_expire() -> None:
    q = Queue("q")
    c = FakeConsumer(1)
    q.add_consumer(c, 0.0)
    q.publish(entry(b"x", expires_at=10.0), 0.0)
    q.requeue(c.entries, 20.0)
    assert q.depth == 0 and q.expired == 1


def test_max_length_reject_publish() -> None:
    q = Queue("q", max_length=2)
    fill(q, b"1", b"2")
    with pytest.raises(QueueFull):
        q.publish(entry(b"3"), 0.0)
    assert q.depth == 2
    c = FakeConsumer(10)
    q.add_consumer(c, 0.0)
    assert c.bodies == [b"1", b"2"]
    fill(q, b"4")  # delivered messages do not count against the limit


def test_max_length_drop_head() -> None:
    q = Queue("q", max_length=2, overflow="drop-head")
    fill(q, b"1", b"2", b"3", b"4")
    assert (q.depth, q.dropped) == (2, 2)
    c = FakeConsumer(10)
    q.add_consumer(c, 0.0)
    assert c.bodies == [b"3", b"4"]


def test_max_length_bytes() -> None:
    one_size = entry(b"x").size
    q = Queue("q", max_length_bytes=2 * one_size)
    fill(q, b"a", b"b")
    with pytest.raises(QueueFull):
        fill(q, b"c")
    q = Queue("q", max_length_bytes=2 * one_size, overflow="drop-head")
    fill(q, b"a", b"b", b"c")
    assert q.ready_bytes == 2 * one_size
    c = FakeConsumer(10)
    q.add_consumer(c, 0.0)
    assert c.bodies == [b"b", b"c"]


def test_drop_head_cannot_make_room_for_a_message_larger_than_the_limit() -> None:
    q = Queue("q", max_length_bytes=10, overflow="drop-head")
    with pytest.raises(QueueFull):
        fill(q, b"x" * 100)
    assert q.depth == 0


def test_purge() -> None:
    q = Queue("q")
    fill(q, b"1", b"2")
    assert q.purge() == 2
    assert (q.depth, q.ready_bytes) == (0, 0)


# -- RabbitMQ queue arguments ----------------------------------------------------------


def dead_letters(q: Queue) -> list[tuple[bytes, str]]:
    """Install a recording dead-letter hook; returns the list it fills."""
    seen: list[tuple[bytes, str]] = []
    q.dead_letter = lambda queue, e, reason, now: seen.append((body(e.message), reason))
    return seen


def test_priority_queue_serves_higher_priority_first_fifo_within() -> None:
    q = Queue("q", max_priority=5)
    for data, priority in ((b"low1", 1), (b"high", 9), (b"low2", 1), (b"none", None),
                           (b"mid", 3)):
        header = Header(priority=priority) if priority is not None else None
        q.publish(entry(data, header=header), 0.0)
    c = FakeConsumer(credit=10)
    q.add_consumer(c, 0.0)
    # 9 is capped at the max (5); no header means 0, as RabbitMQ does
    assert c.bodies == [b"high", b"mid", b"low1", b"low2", b"none"]


def test_priority_redelivery_returns_to_the_head_of_its_level() -> None:
    q = Queue("q", max_priority=2)
    q.publish(entry(b"a", header=Header(priority=2)), 0.0)
    q.publish(entry(b"b", header=Header(priority=1)), 0.0)
    c = FakeConsumer(credit=1)
    q.add_consumer(c, 0.0)
    q.requeue(c.entries, 0.0)
    c.credit = 5
    q.dispatch(0.0)
    assert c.bodies == [b"a", b"a", b"b"]


def test_single_active_consumer_serves_only_the_first() -> None:
    q = Queue("q", single_active_consumer=True)
    a, b = FakeConsumer(credit=1), FakeConsumer(credit=10)
    q.add_consumer(a, 0.0)
    q.add_consumer(b, 0.0)
    fill(q, b"1", b"2", b"3")
    assert (a.bodies, b.bodies) == ([b"1"], [])
    q.remove_consumer(a)
    q.dispatch(0.0)
    assert b.bodies == [b"2", b"3"]


def test_message_ttl_expires_and_dead_letters() -> None:
    q = Queue("q", message_ttl=1.0, dead_letter_exchange="dlx")
    seen = dead_letters(q)
    fill(q, b"old")
    q.publish(entry(b"new"), 5.0)
    assert q.expire(5.5) == 1
    assert seen == [(b"old", "expired")]
    assert q.depth == 1


def test_drop_head_and_reject_publish_dlx_dead_letter_as_maxlen() -> None:
    q = Queue("q", max_length=1, overflow="drop-head", dead_letter_exchange="dlx")
    seen = dead_letters(q)
    fill(q, b"1", b"2")
    assert seen == [(b"1", "maxlen")]
    r = Queue("r", max_length=1, overflow="reject-publish-dlx", dead_letter_exchange="dlx")
    seen = dead_letters(r)
    fill(r, b"1")
    with pytest.raises(QueueFull):
        fill(r, b"2")
    assert seen == [(b"2", "maxlen")]


def test_reject_dead_letters_only_with_a_dead_letter_exchange() -> None:
    for dlx, expected in ((None, []), ("dlx", [(b"x", "rejected")])):
        q = Queue("q", dead_letter_exchange=dlx)
        seen = dead_letters(q)
        fill(q, b"x")
        c = FakeConsumer(credit=1)
        q.add_consumer(c, 0.0)
        q.reject(c.entries[0], 0.0)
        assert (seen, q.unacked, q.depth) == (expected, 0, 0)


def test_delivery_limit() -> None:
    q = Queue("q", delivery_limit=2, dead_letter_exchange="dlx")
    seen = dead_letters(q)
    fill(q, b"x")
    c = FakeConsumer(credit=10)
    q.add_consumer(c, 0.0)
    for _ in range(2):
        q.requeue([c.entries[-1]], 0.0, delivery_failed=True)
    assert len(c.got) == 3 and seen == []
    q.requeue([c.entries[-1]], 0.0, delivery_failed=True)
    assert seen == [(b"x", "delivery_limit")] and q.depth == 0 and q.unacked == 0


def test_quorum_queues_annotate_how_often_a_message_came_back() -> None:
    q = Queue("q", count_returns=True)
    fill(q, b"x")
    c = FakeConsumer(credit=10)
    q.add_consumer(c, 0.0)
    assert c.got[0][1].message_annotations is None  # first delivery untouched
    q.requeue(c.entries, 0.0)  # released: no failure, but a return
    q.requeue([c.entries[-1]], 0.0, delivery_failed=True)
    annotations = [m.message_annotations for _, m in c.got[1:]]
    assert annotations == [{Symbol("x-delivery-count"): 1}, {Symbol("x-delivery-count"): 2}]
    assert [m.header.delivery_count for _, m in c.got[1:]] == [0, 1]


def test_single_active_consumer_skips_what_the_active_one_may_not_take() -> None:
    q = Queue("q", single_active_consumer=True)
    a = FakeConsumer(credit=1)
    q.add_consumer(a, 0.0)
    fill(q, b"1", b"2", b"3")
    q.requeue(a.entries, 0.0, exclude=a)  # modified(undeliverable-here): not for a
    a.credit = 5
    q.dispatch(0.0)
    assert a.bodies == [b"1", b"2", b"3"] and q.depth == 1  # "1" waits for another consumer
