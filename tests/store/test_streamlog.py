"""Stream segments and their indexes: rolls, reads back, times, retention by
whole segments, and recovery from a crash between or in the middle of writes."""

from __future__ import annotations

from pathlib import Path

from broker.codec.messaging import Message
from broker.nodes.base import Entry
from broker.store.streamlog import StreamLog


def fill(log: StreamLog, count: int, *, start: int = 0, size: int = 50,
         times: list[float] | None = None, head: int = 0) -> None:
    index_time = float("-inf")
    for i in range(start, start + count):
        e = Entry(Message.trusted(b"%06d" % i + bytes(size)))
        e.offset = i
        e.timestamp = times[i] if times else float(i)
        index_time = max(index_time, e.timestamp)
        log.append(e, index_time)
    batch = log.take_batch(head)
    assert batch is not None
    log.write(batch)
    log.sync()
    log.delete(batch)
    log.committed(batch)


def body(log: StreamLog, offset: int) -> bytes:
    e = log.load(offset)
    assert e is not None and e.offset == offset
    return bytes(e.message.payload[:6])


def test_messages_are_read_back_across_segment_rolls(tmp_path: Path) -> None:
    log = StreamLog(tmp_path, segment_bytes=1000)
    fill(log, 100)
    assert len(list(tmp_path.glob("*.seg"))) > 3
    assert [body(log, i) for i in (0, 37, 99)] == [b"000000", b"000037", b"000099"]
    assert log.load(100) is None
    log.close()
    again = StreamLog(tmp_path, segment_bytes=1000)
    assert again.recover() == (0, 100)
    assert body(again, 63) == b"000063" and again.size(5) == 56


def test_times_are_found_even_when_the_clock_stepped_back(tmp_path: Path) -> None:
    log = StreamLog(tmp_path, segment_bytes=600)
    times = [10.0, 11.0, 12.0, 5.0, 13.0, 14.0, 20.0, 21.0]
    fill(log, len(times), times=times)
    assert log.find_time(12.0) == 2
    assert log.find_time(12.5) == 4, "the stepped-back arrival is indexed at 12"
    assert log.find_time(100.0) == 8
    assert log.load(3).timestamp == 5.0, "the record keeps its own arrival time"


def test_retention_deletes_whole_segments_below_the_head(tmp_path: Path) -> None:
    log = StreamLog(tmp_path, segment_bytes=1000)
    fill(log, 60)
    before = sorted(p.name for p in tmp_path.glob("*.seg"))
    fill(log, 1, start=60, head=30)
    after = sorted(p.name for p in tmp_path.glob("*.seg"))
    assert after[0] > before[0] and log.first <= 30 and log.load(30) is not None
    assert not (tmp_path / before[0]).exists()
    assert not (tmp_path / before[0].replace(".seg", ".idx")).exists()


def test_recovery_cuts_a_torn_record_and_rebuilds_a_short_index(tmp_path: Path) -> None:
    log = StreamLog(tmp_path)
    fill(log, 10)
    log.close()
    (segment,) = tmp_path.glob("*.seg")
    index = segment.with_suffix(".idx")
    with open(segment, "r+b") as f:  # the last record torn
        f.truncate(segment.stat().st_size - 3)
    with open(index, "r+b") as f:  # and the index two entries short
        f.truncate(16 * 7)
    again = StreamLog(tmp_path)
    assert again.recover() == (0, 9)
    assert body(again, 8) == b"000008"
    assert index.stat().st_size == 16 * 9, "the index as checked"
    fill(again, 1, start=9)
    again.close()
    assert StreamLog(tmp_path).recover() == (0, 10)


def test_an_index_pointing_past_its_segment_is_cut(tmp_path: Path) -> None:
    log = StreamLog(tmp_path)
    fill(log, 5)
    log.close()
    (segment,) = tmp_path.glob("*.seg")
    with open(segment, "r+b") as f:  # the segment lost its last two records
        f.truncate(segment.stat().st_size - 2 * (9 + 16 + 56))
    again = StreamLog(tmp_path)
    assert again.recover() == (0, 3)
    assert again.load(2) is not None and again.load(3) is None


def test_a_foreign_segment_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / f"{0:020d}.seg").write_bytes(b"garbage!" * 4)
    log = StreamLog(tmp_path)
    assert log.recover() == (0, 0)
    assert (tmp_path / f"{0:020d}.seg.unreadable").exists()
