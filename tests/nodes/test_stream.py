"""The stream node as a plain object, with fake consumers (no engine, no trio)."""

from __future__ import annotations

import pytest

from broker.codec.messaging import Message
from broker.codec.types import (
    Byte,
    Described,
    Float,
    Int,
    Long,
    Short,
    Symbol,
    Timestamp,
    UByte,
    UInt,
    ULong,
    UShort,
)
from broker.nodes.base import Entry
from broker.nodes.stream import (
    OFFSET_SPEC,
    StartAt,
    Stream,
    parse_interval,
    parse_offset_spec,
)

X_OFFSET = Symbol("x-stream-offset")


class FakeConsumer:
    max_message_size = 0
    filter = None  # takes every message

    def __init__(self, credit: int = 0) -> None:
        self.credit = credit
        self.got: list[tuple[Entry, Message]] = []

    def deliver(self, entry: Entry, message: Message | None) -> None:
        assert self.credit > 0, "delivered without credit"
        self.credit -= 1
        self.got.append((entry, message or entry.message))

    def deliver_run(self, entries: list[Entry]) -> None:
        assert len(entries) <= self.credit, "delivered without credit"
        for entry in entries:
            self.deliver(entry, None)

    @property
    def offsets(self) -> list[int]:
        """The x-stream-offset annotation of each delivery, read back from its bytes."""
        out = []
        for entry, message in self.got:
            annotations = Message.parse(message.payload).message_annotations
            assert annotations is not None
            offset = annotations[X_OFFSET]
            assert offset == entry.offset
            out.append(int(offset))  # type: ignore[call-overload]
        return out

    @property
    def bodies(self) -> list[bytes]:
        return [body(m) for _, m in self.got]


def body(message: Message) -> bytes:
    (section,) = message.body
    return section.value  # type: ignore[attr-defined,no-any-return]


def entry(data: bytes = b"x", **kwargs: object) -> Entry:
    return Entry(Message.create(data, **kwargs))  # type: ignore[arg-type]


def fill(stream: Stream, count: int, now: float = 0.0) -> None:
    for _ in range(count):
        stream.publish(entry(b"%d" % stream.next_offset), now)


def spec(value: object) -> Described:
    return Described(OFFSET_SPEC, value)


def index_offsets(stream: Stream) -> list[int]:
    return [offset for _, offset in stream.time_index]


# -- offsets -------------------------------------------------------------------------


def test_offsets_count_from_zero() -> None:
    s = Stream("s")
    fill(s, 3)
    c = FakeConsumer(10)
    assert s.subscribe(c, StartAt("first"), 0.0) == 0
    assert c.offsets == [0, 1, 2]
    assert c.bodies == [b"0", b"1", b"2"]
    assert (s.first_offset, s.next_offset, s.depth) == (0, 3, 3)


def test_offsets_are_never_reused_after_trimming() -> None:
    s = Stream("s", max_length_messages=2)
    fill(s, 3)
    assert (s.first_offset, s.next_offset) == (1, 3)
    fill(s, 2)
    assert (s.first_offset, s.next_offset) == (3, 5)
    c = FakeConsumer(10)
    s.subscribe(c, StartAt("first"), 0.0)
    assert c.offsets == [3, 4]
    assert c.bodies == [b"3", b"4"]


def test_reading_removes_nothing() -> None:
    s = Stream("s")
    fill(s, 3)
    s.subscribe(FakeConsumer(10), StartAt("first"), 0.0)
    assert s.depth == 3
    assert s.ready


# -- start positions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "position", "offsets"),
    [
        (StartAt("first"), 0, [0, 1, 2, 3]),
        (StartAt("last"), 3, [3]),
        (StartAt("next"), 4, []),
        (StartAt("offset", 2), 2, [2, 3]),
        (StartAt("offset", 0), 0, [0, 1, 2, 3]),
    ],
)
def test_start_positions(start: StartAt, position: int, offsets: list[int]) -> None:
    s = Stream("s")
    fill(s, 4)
    c = FakeConsumer(10)
    assert s.subscribe(c, start, 0.0) == position
    assert c.offsets == offsets
    fill(s, 1)
    assert c.offsets == [*offsets, 4], "then every new message"


@pytest.mark.parametrize(
    "start",
    [StartAt("first"), StartAt("last"), StartAt("next"), StartAt("offset", 0),
     StartAt("timestamp", 5.0)],
)
def test_start_positions_on_an_empty_stream(start: StartAt) -> None:
    s = Stream("s")
    c = FakeConsumer(10)
    assert s.subscribe(c, start, 0.0) == 0
    assert c.got == []
    fill(s, 2, now=10.0)
    assert c.offsets == [0, 1]


def test_last_on_a_stream_trimmed_empty_waits_for_the_next_message() -> None:
    s = Stream("s", max_age=10)
    fill(s, 3, now=0.0)
    assert s.trim(100.0) == 3
    assert (s.first_offset, s.next_offset, s.depth) == (3, 3, 0)
    c = FakeConsumer(10)
    assert s.subscribe(c, StartAt("last"), 100.0) == 3
    fill(s, 1, now=100.0)
    assert c.offsets == [3]


def test_add_consumer_starts_at_next() -> None:
    s = Stream("s")
    fill(s, 2)
    c = FakeConsumer(10)
    s.add_consumer(c, 0.0)
    assert c.got == []
    fill(s, 1)
    assert c.offsets == [2]


def test_numeric_offset_is_clamped_to_the_oldest_retained() -> None:
    s = Stream("s", max_length_messages=2)
    fill(s, 5)
    c = FakeConsumer(10)
    assert s.subscribe(c, StartAt("offset", 1), 0.0) == 3
    assert c.offsets == [3, 4]


def test_future_offset_is_waited_for_and_delivered_when_it_arrives() -> None:
    s = Stream("s")
    fill(s, 2)
    c = FakeConsumer(10)
    assert s.subscribe(c, StartAt("offset", 5), 0.0) == 5
    fill(s, 3)  # offsets 2, 3, 4
    assert c.got == []
    fill(s, 2)  # offsets 5, 6
    assert c.offsets == [5, 6]


def test_timestamp_start_is_the_first_message_at_or_after_it() -> None:
    s = Stream("s")
    for t in (10.0, 20.0, 30.0):
        s.publish(entry(), t)
    for at, first in ((0.0, 0), (10.0, 0), (15.0, 1), (20.0, 1), (30.0, 2), (31.0, 3)):
        assert s.resolve(StartAt("timestamp", at)) == first, at
    c = FakeConsumer(10)
    assert s.subscribe(c, StartAt("timestamp", 31.0), 40.0) == 3, "after the last: waits"
    s.publish(entry(), 40.0)
    assert c.offsets == [3]


def test_timestamp_start_is_clamped_to_the_oldest_retained() -> None:
    s = Stream("s", max_length_messages=2)
    for t in (10.0, 20.0, 30.0, 40.0):
        s.publish(entry(), t)
    assert s.resolve(StartAt("timestamp", 0.0)) == 2
    assert s.resolve(StartAt("timestamp", 35.0)) == 3


def test_interval_start_through_the_filter() -> None:
    now = 10_000.0
    s = Stream("s")
    for age in (7200, 1800, 300, 0):  # seconds before now
        s.publish(entry(), now - age)
    for text, first in (("3h", 0), ("1h", 1), ("10m", 2), ("1m", 3), ("7D", 0)):
        start, applied = select_offset_filter({Symbol("offset"): spec(text)}, now)
        assert start is not None
        c = FakeConsumer(10)
        s.subscribe(c, start, now)
        assert c.offsets[0] == first, text
        assert applied == {Symbol("offset"): spec(text)}


# -- parsing offset specs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10m", 600),
        ("1h", 3600),
        ("7D", 7 * 86400),
        ("2M", 2 * 30 * 86400),
        ("1Y", 365 * 86400),
        ("30s", 30),
        ("0s", 0),
    ],
)
def test_parse_interval(text: str, seconds: int) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "10", "m", "10x", "10d", "10H", "1.5h", "-1h", "10 m", " 10m", "10m ", "1h30m"]
)
def test_parse_interval_rejects(text: str) -> None:
    assert parse_interval(text) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("first", StartAt("first")),
        ("last", StartAt("last")),
        ("next", StartAt("next")),
        (Symbol("first"), StartAt("first")),
        (0, StartAt("offset", 0)),
        (42, StartAt("offset", 42)),
        (ULong(7), StartAt("offset", 7)),
        (Long(7), StartAt("offset", 7)),
        (UInt(7), StartAt("offset", 7)),
        (Int(7), StartAt("offset", 7)),
        (UShort(7), StartAt("offset", 7)),
        (Short(7), StartAt("offset", 7)),
        (UByte(7), StartAt("offset", 7)),
        (Byte(7), StartAt("offset", 7)),
        (Timestamp(1_500), StartAt("timestamp", 1.5)),
        ("10m", StartAt("timestamp", 1000.0 - 600)),
        ("1h", StartAt("timestamp", 1000.0 - 3600)),
        ("7D", StartAt("timestamp", 1000.0 - 7 * 86400)),
    ],
)
def test_parse_offset_spec(value: object, expected: StartAt) -> None:
    assert parse_offset_spec(value, 1000.0) == expected


INVALID_SPECS = [
    -1,
    Long(-1),
    Int(-5),
    Byte(-1),
    "bogus",
    "First",
    "",
    "10",
    1.5,
    Float(1.0),
    2.0,
    [1],
    ["first"],
    {"first": 1},
    b"first",
    True,
    False,
    None,
]


@pytest.mark.parametrize("value", INVALID_SPECS)
def test_invalid_offset_spec_is_not_applied(value: object) -> None:
    assert parse_offset_spec(value, 1000.0) is None
    assert select_offset_filter({Symbol("offset"): spec(value)}, 1000.0) == (None, {})


def test_no_filters() -> None:
    assert select_offset_filter(None, 0.0) == (None, {})
    assert select_offset_filter({}, 0.0) == (None, {})


def test_only_the_offset_spec_descriptor_is_applied_under_any_key() -> None:
    filters: dict[object, object] = {
        Symbol("rabbitmq:stream-offset-spec"): Described(Symbol("other:filter"), "last"),
        Symbol("x-opt-anything"): spec("first"),
        Symbol("plain"): "next",
        Symbol("numeric-descriptor"): Described(ULong(0x0000_1234_0000_0001), "last"),
    }
    start, applied = select_offset_filter(filters, 0.0)
    assert start == StartAt("first")
    assert applied == {Symbol("x-opt-anything"): spec("first")}


def test_first_valid_offset_spec_wins() -> None:
    filters: dict[object, object] = {
        Symbol("a"): spec("bogus"),
        Symbol("b"): spec(5),
        Symbol("c"): spec("first"),
    }
    start, applied = select_offset_filter(filters, 0.0)
    assert start == StartAt("offset", 5)
    assert applied == {Symbol("b"): spec(5)}


def select_offset_filter(filters: dict[object, object] | None,
                         now: float) -> tuple[StartAt | None, dict[object, object]]:
    """The offset part of filtering.select, as these cases check it."""
    from broker.filtering import select

    selection = select(filters, stream=True, now=now)
    return selection.start, selection.applied


# -- what is stored ------------------------------------------------------------------------


def test_stored_message_carries_the_rabbitmq_annotations() -> None:
    s = Stream("events")
    s.publish(entry(b"a"), 0.0)
    s.publish(entry(b"b", message_annotations={Symbol("x-opt-kept"): "yes"}), 0.0)
    c = FakeConsumer(10)
    s.subscribe(c, StartAt("first"), 0.0)
    for i, (_, message) in enumerate(c.got):
        annotations = Message.parse(message.payload).message_annotations
        assert annotations is not None
        assert annotations[X_OFFSET] == i
        assert type(annotations[X_OFFSET]) is Long
        assert annotations[Symbol("x-exchange")] == ""
        assert annotations[Symbol("x-routing-key")] == "events"
    second = Message.parse(c.got[1][1].payload)
    assert second.message_annotations is not None
    assert second.message_annotations[Symbol("x-opt-kept")] == "yes"
    assert c.bodies == [b"a", b"b"]


def test_the_stored_bytes_are_shared_by_every_consumer() -> None:
    s = Stream("s")
    a, b = FakeConsumer(10), FakeConsumer(10)
    s.subscribe(a, StartAt("first"), 0.0)
    fill(s, 2)
    s.subscribe(b, StartAt("first"), 0.0)
    for i in range(2):
        stored = s.entry(i).payload
        assert a.got[i][1].payload is b.got[i][1].payload is stored
        assert s.entry(i).size == len(stored)
    assert s.bytes == sum(s.entry(i).size for i in range(2))


def test_consumers_read_everything_each_at_its_own_pace() -> None:
    s = Stream("s")
    slow, fast, late = FakeConsumer(2), FakeConsumer(10), FakeConsumer(1)
    s.subscribe(slow, StartAt("first"), 0.0)
    s.subscribe(fast, StartAt("first"), 0.0)
    fill(s, 5)
    s.subscribe(late, StartAt("first"), 0.0)
    assert slow.offsets == [0, 1]
    assert fast.offsets == [0, 1, 2, 3, 4]
    assert late.offsets == [0]
    slow.credit = 1
    s.consumer_ready(slow, 0.0)
    assert slow.offsets == [0, 1, 2]
    late.credit = 10
    s.consumer_ready(late, 0.0)
    assert late.offsets == [0, 1, 2, 3, 4]
    slow.credit = 10
    s.dispatch(0.0)
    assert slow.offsets == [0, 1, 2, 3, 4]
    assert s.depth == 5


def test_removed_consumer_gets_nothing_more() -> None:
    s = Stream("s")
    c = FakeConsumer(10)
    s.subscribe(c, StartAt("first"), 0.0)
    s.remove_consumer(c)
    s.remove_consumer(c)  # twice is harmless
    fill(s, 2)
    s.consumer_ready(c, 0.0)
    assert c.got == []


# -- retention --------------------------------------------------------------------------


def test_retention_by_age_trims_oldest_first() -> None:
    s = Stream("s", max_age=60)
    for t in (0.0, 30.0, 61.0):
        s.publish(entry(), t)
    assert (s.first_offset, s.depth) == (1, 2), "the one older than 60 s went at publish"
    assert s.trim(80.0) == 0
    assert s.trim(91.0) == 1
    assert (s.first_offset, s.depth) == (2, 1)
    assert s.trim(200.0) == 1
    assert (s.first_offset, s.next_offset, s.depth, s.bytes) == (3, 3, 0, 0)
    assert not s.ready


def test_retention_by_bytes_trims_oldest_first() -> None:
    probe = Stream("s")
    probe.publish(entry(b"0123456789"), 0.0)
    size = probe.entry(0).size  # every message below has the same stored size
    s = Stream("s", max_length_bytes=2 * size)
    for i in range(2):
        s.publish(entry(b"%010d" % i), 0.0)
    assert (s.first_offset, s.bytes) == (0, 2 * size)
    s.publish(entry(b"%010d" % 2), 0.0)
    assert (s.first_offset, s.depth, s.bytes) == (1, 2, 2 * size)
    c = FakeConsumer(10)
    s.subscribe(c, StartAt("first"), 0.0)
    assert c.bodies == [b"0000000001", b"0000000002"]


def test_retention_by_message_count_trims_oldest_first() -> None:
    s = Stream("s", max_length_messages=3)
    fill(s, 7)
    assert (s.first_offset, s.next_offset, s.depth) == (4, 7, 3)
    c = FakeConsumer(10)
    s.subscribe(c, StartAt("first"), 0.0)
    assert c.bodies == [b"4", b"5", b"6"]
    assert s.bytes == sum(e.size for e, _ in c.got)


def test_cursor_left_behind_the_head_continues_from_the_oldest_retained() -> None:
    s = Stream("s", max_length_messages=2)
    c = FakeConsumer(1)
    s.subscribe(c, StartAt("first"), 0.0)
    fill(s, 6)  # c read offset 0, then ran out of credit; 4 and 5 remain
    assert c.offsets == [0]
    c.credit = 10
    s.consumer_ready(c, 0.0)
    assert c.offsets == [0, 4, 5]


def test_log_compaction_keeps_offsets_right() -> None:
    s = Stream("s", max_length_messages=10)
    behind = FakeConsumer(1)
    s.subscribe(behind, StartAt("first"), 0.0)
    for i in range(3000):
        s.publish(entry(b"%d" % i), float(i))
    assert (s.first_offset, s.next_offset, s.depth) == (2990, 3000, 10)
    assert s._log_base > 1024, "the trimmed slots were compacted"
    assert len(s._log) < 3000 - 1024
    assert [s.entry(o).offset for o in range(2990, 3000)] == list(range(2990, 3000))
    assert index_offsets(s) == list(range(2990, 3000))
    c = FakeConsumer(20)
    s.subscribe(c, StartAt("first"), 0.0)
    assert c.offsets == list(range(2990, 3000))
    assert c.bodies == [b"%d" % i for i in range(2990, 3000)]
    assert s.resolve(StartAt("timestamp", 2995.0)) == 2995
    behind.credit = 20
    s.consumer_ready(behind, 0.0)
    assert behind.offsets == [0, *range(2990, 3000)]
    s.publish(entry(b"3000"), 3000.0)
    assert c.offsets[-1] == behind.offsets[-1] == 3000


# -- a wall clock that steps back -----------------------------------------------------------


def test_time_index_is_trimmed_right_when_the_clock_steps_back() -> None:
    s = Stream("s", max_length_messages=2)
    for t in (100.0, 200.0, 50.0, 60.0, 70.0):  # the clock stepped back after 200
        s.publish(entry(), t)
    assert (s.first_offset, s.next_offset) == (3, 5)
    assert index_offsets(s) == [3, 4], "no index item left for a trimmed offset"
    assert s.resolve(StartAt("timestamp", 0.0)) == 3
    assert s.resolve(StartAt("timestamp", 150.0)) == 3
    assert s.resolve(StartAt("timestamp", 250.0)) == 5


def test_timestamp_start_after_the_clock_steps_back() -> None:
    s = Stream("s")
    for t in (100.0, 200.0, 50.0, 60.0, 300.0):
        s.publish(entry(), t)
    # the first offset that arrived at or after T, whatever came later
    for at, first in ((0.0, 0), (55.0, 0), (100.0, 0), (150.0, 1), (200.0, 1), (250.0, 4)):
        assert s.resolve(StartAt("timestamp", at)) == first, at
    assert index_offsets(s) == [0, 1, 2, 3, 4]


def test_retention_by_age_after_the_clock_steps_back() -> None:
    s = Stream("s", max_age=60)
    for t in (1000.0, 1010.0, 500.0, 510.0):  # stepped back by about 500 s
        s.publish(entry(), t)
    # Trimming goes oldest first and stops at the first message still young
    # enough, even with older arrival times behind it.
    assert s.trim(1065.0) == 1
    assert (s.first_offset, s.depth) == (1, 3)
    assert index_offsets(s) == [1, 2, 3]
    assert s.resolve(StartAt("timestamp", 0.0)) == 1
    assert s.trim(1071.0) == 3
    assert (s.first_offset, s.next_offset, s.depth) == (4, 4, 0)
    assert index_offsets(s) == []
    assert s.resolve(StartAt("timestamp", 0.0)) == 4


# -- settlement ---------------------------------------------------------------------------------


def test_settle_and_requeue_do_nothing() -> None:
    s = Stream("s")
    c = FakeConsumer(2)
    s.subscribe(c, StartAt("first"), 0.0)
    fill(s, 3)
    got = [e for e, _ in c.got]
    s.settle(got[0])
    s.requeue(got, 0.0)
    s.requeue(got, 0.0, delivery_failed=True)
    assert (s.first_offset, s.next_offset, s.depth) == (0, 3, 3)
    c.credit = 10
    s.consumer_ready(c, 0.0)
    assert c.offsets == [0, 1, 2], "nothing redelivered"
