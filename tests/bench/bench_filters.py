"""Filter benchmark (part of `make bench`): a stream read by 10 consumers, each
with a different filter, against the same stream read without filters.

Prints CPU per delivered message and per message examined, with the share of
sections decoded: each stored message must be decoded once for all the
filtering readers near it (FieldsCache), not once per reader.  A benchmark,
not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import statistics
import time

from broker.codec.messaging import Message, Properties
from broker.codec.types import Described, Symbol
from broker.filtering import select
from broker.nodes.base import Entry
from broker.nodes.stream import StartAt, Stream

MESSAGES = 20_000
READERS = 10
REGIONS = [f"r{i}" for i in range(READERS)]


class Reader:
    max_message_size = 0

    def __init__(self, match: object) -> None:
        self.filter = match
        self.credit = 10**9
        self.got = 0

    def deliver(self, entry: Entry, message: Message | None) -> None:
        self.got += 1

    def deliver_run(self, entries: list[Entry]) -> None:
        self.got += len(entries)

    def node_deleted(self) -> None:
        pass


def filled() -> Stream:
    stream = Stream("bench")
    for i in range(MESSAGES):
        region = REGIONS[i % READERS]
        message = Message.create(b"x" * 100, properties=Properties(subject=region),
                                 application_properties={"region": region, "n": i})
        stream.publish(Entry(message), 0.0)
    return stream


def messages() -> list[Message]:
    return [Message.create(b"x" * 100, properties=Properties(subject=REGIONS[i % READERS]),
                           application_properties={"region": REGIONS[i % READERS], "n": i})
            for i in range(MESSAGES)]


def readers_for(kind: str) -> list[Reader]:
    readers = []
    for region in REGIONS:
        if kind == "none":
            match = None
        elif kind == "sql":
            match = select({Symbol("sql-filter"): Described(
                Symbol("amqp:sql-filter"), f"a.region = '{region}' AND a.n >= 0")},
                stream=True, now=0.0).filter
        else:
            match = select({Symbol("app"): Described(
                Symbol("amqp:application-properties-filter"), {"region": region})},
                stream=True, now=0.0).filter
        readers.append(Reader(match))
    return readers


def catch_up(kind: str) -> tuple[float, int]:
    """Readers far apart: each reads the whole stream from first, one after another."""
    stream = filled()
    readers = readers_for(kind)
    start = time.process_time()
    for reader in readers:
        stream.subscribe(reader, StartAt("first"), 0.0)
    seconds = time.process_time() - start
    return seconds, sum(r.got for r in readers)


def live(kind: str) -> tuple[float, int]:
    """Readers at the tail: every publish is offered to all of them at once.
    The time is what filtering and delivering cost beyond publishing alone."""
    batch = messages()
    baseline = Stream("baseline")
    start = time.process_time()
    for message in batch:
        baseline.publish(Entry(message), 0.0)
    alone = time.process_time() - start
    stream = Stream("bench")
    readers = readers_for(kind)
    for reader in readers:
        stream.subscribe(reader, StartAt("next"), 0.0)
    batch = messages()
    start = time.process_time()
    for message in batch:
        stream.publish(Entry(message), 0.0)
    seconds = time.process_time() - start - alone
    return seconds, sum(r.got for r in readers)


def main() -> None:
    print(f"\nfilter benchmark: {MESSAGES} messages on a stream, {READERS} readers from "
          "first (median of 5)")
    for mode, run in (("live, at the tail", live), ("catching up, far apart", catch_up)):
        print(f" {mode}:")
        for kind, label in (("none", "no filter"), ("app", "application-properties filter"),
                            ("sql", "SQL filter")):
            runs = [run(kind) for _ in range(5)]
            seconds = statistics.median(r[0] for r in runs)
            delivered = runs[0][1]
            examined = MESSAGES * READERS
            print(f"  {label:32s} {delivered:7d} delivered  "
                  f"{seconds / delivered * 1e6:6.2f} us CPU per delivered message  "
                  f"{seconds / examined * 1e6:5.2f} us per message examined")


if __name__ == "__main__":
    main()
