"""The queue journal and the record framing: random publishes, deliveries,
acks, commits, restarts and crashes against a model of what must survive."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.codec.messaging import Message
from broker.nodes.base import Entry
from broker.store.journal import MAGIC, Journal
from broker.store.records import ScanResult, append_record, encode_record, scan


def test_scan_stops_at_a_torn_or_garbled_record() -> None:
    data = bytearray(b"HEADER!!")
    append_record(data, 1, b"first")
    good = len(data)
    data += encode_record(2, b"second")
    for cut in range(good + 1, len(data)):
        result = ScanResult(0)
        assert [bytes(r.body) for r in scan(bytes(data[:cut]), 8, result)] == [b"first"]
        assert result.good_end == good and result.problem is not None
    garbled = bytearray(data)
    garbled[-1] ^= 0xFF
    result = ScanResult(0)
    assert len(list(scan(bytes(garbled), 8, result))) == 1 and "checksum" in result.problem


def entry(sequence: int, payload: bytes) -> Entry:
    e = Entry(Message.trusted(payload))
    e.sequence = sequence
    return e


def commit(journal: Journal) -> None:
    batch = journal.take_batch()
    if batch is not None:
        journal.write(batch)
        journal.sync()
        journal.delete(batch)


operations = st.lists(st.one_of(
    st.tuples(st.just("publish"), st.integers(1, 3)),
    st.tuples(st.just("ack"), st.integers(0, 50)),
    st.tuples(st.just("deliver"), st.integers(0, 50)),
    st.tuples(st.just("commit"), st.just(0)),
    st.tuples(st.just("restart"), st.just(0)),  # clean: pending written first
    st.tuples(st.just("crash"), st.just(0)),  # pending lost
    st.tuples(st.just("drop"), st.integers(1, 3)),  # a queue deleted
), max_size=80)


@settings(max_examples=600, deadline=None)
@given(operations)
def test_the_journal_brings_back_exactly_what_was_committed(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        journal = Journal(directory, segment_bytes=300)
        queues = {1, 2, 3}
        # the model: what a restart must find (committed), and what is pending
        committed: dict[tuple[int, int], tuple[bytes, bool]] = {}
        current: dict[tuple[int, int], tuple[bytes, bool]] = {}
        entries: dict[tuple[int, int], Entry] = {}
        sequence = 0
        for op, arg in ops:
            if op == "publish":
                sequence += 1
                payload = os.urandom(arg * 20)
                e = entries[(arg, sequence)] = entry(sequence, payload)
                journal.publish(arg, e)
                current[(arg, sequence)] = (payload, False)
            elif op in ("ack", "deliver") and current:
                key = sorted(current)[arg % len(current)]
                if op == "ack":
                    journal.removed(*key)
                    del current[key]
                else:
                    journal.delivered(*key)
                    current[key] = (current[key][0], True)
            elif op == "drop" and arg in queues:
                journal.drop_queue(arg)
                queues.discard(arg)
                current = {k: v for k, v in current.items() if k[0] != arg}
            elif op == "commit":
                commit(journal)
                committed = dict(current)
            elif op in ("restart", "crash"):
                if op == "restart":
                    commit(journal)
                    committed = dict(current)
                journal.close()
                journal = Journal(directory, segment_bytes=300)
                found = journal.recover(queues)
                got = {(q, r.sequence): (r.payload, r.delivered)
                       for q, rs in found.items() for r in rs}
                assert got == {k: v for k, v in committed.items() if k[0] in queues}
                for (q, s), (payload, delivered) in got.items():  # as the store reattaches
                    e = entries[(q, s)] = entry(s, payload)
                    e.acquired_before = delivered
                    journal.attach(q, s, e)
                current = dict(committed)
        journal.close()
        segments = list(directory.glob("*.log"))
        assert len(segments) <= 2 + len(ops) // 5, "dead segments are deleted"


def test_a_torn_tail_is_cut_and_a_foreign_file_moved_aside(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.publish(1, entry(1, b"whole"))
    commit(journal)
    journal.publish(1, entry(2, b"torn"))
    commit(journal)
    journal.close()
    path = tmp_path / "00000001.log"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 2)  # the crash came mid-write
    (tmp_path / "00000000.log").write_bytes(b"not a journal at all")
    journal = Journal(tmp_path)
    found = journal.recover({1})
    assert [r.payload for r in found[1]] == [b"whole"]
    assert path.read_bytes()[:8] == MAGIC and path.stat().st_size < size - 2
    assert (tmp_path / "00000000.log.unreadable").exists(), "moved aside, never deleted"
    journal.publish(1, entry(3, b"after"))
    commit(journal)
    journal.close()
    assert [r.payload for r in Journal(tmp_path).recover({1})[1]] == [b"whole", b"after"]


def test_compaction_frees_segments_a_long_lived_message_pins(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=1000)
    old = entry(1, b"old" * 10)
    journal.publish(1, old)
    sequence = 1
    for _ in range(200):  # many short-lived messages behind the old one
        sequence += 1
        e = entry(sequence, bytes(100))
        journal.publish(1, e)
        commit(journal)
        journal.removed(1, sequence)
        commit(journal)
    assert len(list(tmp_path.glob("*.log"))) <= 3, "the old message was moved forward"
    journal.close()
    assert [r.sequence for r in Journal(tmp_path).recover({1})[1]] == [1]
