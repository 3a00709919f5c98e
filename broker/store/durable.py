"""The store the container drives: what durable queues and streams record, the
outcomes held until their batch is safe, and the batches themselves.

Theory of operation (docs/storage.md has the formats and guarantees).  The
container's thread does bookkeeping only: a durable queue's `QueueJournal`
and a durable stream's `StreamBacking` note each message in memory and bump
`recorded`; a publisher's `accepted` (and a second-mode consumer's
settlement) that depends on such a record is `hold`-en.  The server's commit
loop, woken by `on_pending`, calls `take_batch` (container thread: turns the
pending records into bytes, snapshots the topology if it changed, takes the
held outcomes), runs `commit` on a worker thread (writes, fsync per the
policy, deletes what is no longer needed) and then `committed` (container
thread again), which hands back the held outcomes to send.  Records made
while one batch is being written go into the next: that is the group commit,
one fsync for everything that arrived meanwhile.

If a write fails (a full disk), the batch's held outcomes are refused, the
batch itself is kept to be written again (`failed` says why; the container
refuses new publishes meanwhile) and every retry that succeeds clears it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from broker.nodes.base import Entry
from broker.nodes.queue import Queue
from broker.nodes.stream import Stream
from broker.store.journal import Journal, JournalBatch
from broker.store.metadata import empty, encode_topology, read_topology, write_topology
from broker.store.streamlog import StreamBatch, StreamLog

log = logging.getLogger("broker.store")

FSYNC_POLICIES: Final = ("always", "batch", "never")
BATCH_WINDOW: Final = 0.002  # seconds `batch` gathers records before a commit


class QueueJournal:
    """Installed on a durable queue as `queue.journal`: records its durable
    messages (header durable: true) as they arrive, go out and leave."""

    __slots__ = ("id", "journal", "queue", "store")

    def __init__(self, store: Store, queue_id: int, queue: Queue) -> None:
        self.store = store
        self.journal = store.journal
        self.id = queue_id
        self.queue = queue

    def published(self, entry: Entry) -> None:
        if entry.message.section_field(0x70, 0) is True:
            self.journal.publish(self.id, entry)
            self.store.recorded += 1
            if self.store.scope is not None:
                self.store.scope.append((self.queue, entry))

    def numbered(self, sequence: int) -> None:
        """The queue gave out a number: the journal keeps the highest (no
        outcome waits for that)."""
        self.journal.numbered(self.id, sequence)

    def delivered(self, entry: Entry) -> None:
        if self.journal.delivered(self.id, entry.sequence):
            self.store.recorded += 1

    def removed(self, entry: Entry) -> None:
        if self.journal.removed(self.id, entry.sequence):
            self.store.recorded += 1


class StreamBacking:
    """Installed on a stream as `stream.backing`: every message is written to
    the stream's log, and read back from it once it left memory."""

    __slots__ = ("id", "log", "store", "stream")

    def __init__(self, store: Store, stream_id: int, log: StreamLog, stream: Stream) -> None:
        self.store = store
        self.id = stream_id
        self.log = log
        self.stream = stream

    def append(self, entry: Entry, index_time: float) -> None:
        self.log.append(entry, index_time)
        self.store.recorded += 1
        self.store.dirty_streams.add(self)
        if self.store.scope is not None:
            self.store.scope.append((None, entry))  # a stream cannot take it back

    def trimmed(self) -> None:
        self.store.dirty_streams.add(self)

    @property
    def durable_end(self) -> int:
        return self.log.durable_end

    def load(self, offset: int) -> Entry | None:
        return self.log.load(offset)

    def index_time(self, offset: int) -> float | None:
        return self.log.index_time(offset)

    def size(self, offset: int) -> int:
        return self.log.size(offset)

    def find_time(self, when: float) -> int:
        return self.log.find_time(when)


@dataclass(slots=True)
class Held:
    """An outcome that may be sent once its batch is safe: `send(ok)`.  A
    publish's (`refusable`) is refused if its batch cannot be written, and its
    `entries` are then taken back from their queues if still there; a
    consumer's settlement waits for its ack to be written, however long."""

    send: Callable[[bool], None]
    refusable: bool = False
    entries: list[tuple[Queue | None, Entry]] = field(default_factory=list)


@dataclass(slots=True)
class Batch:
    topology: bytes | None = None
    journal: JournalBatch | None = None
    streams: list[tuple[StreamBacking, StreamBatch]] = field(default_factory=list)
    remove: list[StreamLog] = field(default_factory=list)  # deleted streams' logs
    held: list[Held] = field(default_factory=list)
    done: set[str] = field(default_factory=set)  # parts written (a retry skips them)


class Store:
    def __init__(self, directory: str | Path, *, fsync: str = "batch",
                 segment_bytes: int | None = None) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}")
        self.directory = Path(directory)
        self.fsync = fsync
        self._segment_bytes = segment_bytes
        self.journal = Journal(self.directory / "queues",
                               **({"segment_bytes": segment_bytes} if segment_bytes else {}))
        self.journal.sequences = self._sequences
        self._journals: dict[int, QueueJournal] = {}  # by queue id
        self.recorded = 0  # bumped by every record: the container compares it
        self.signalled = 0  # `recorded` when the commit loop was last woken
        self.on_pending: Callable[[], None] = _nothing  # the server's: wake the commit loop
        self.held: list[Held] = []
        # while set, the entries a publish makes in durable queues (what a refusal
        # takes back) and streams (None: appended for good, so never refused)
        self.scope: list[tuple[Queue | None, Entry]] | None = None
        self.dirty_streams: set[StreamBacking] = set()
        self.failed: str | None = None  # why the last write failed, until one succeeds
        self._retry: Batch | None = None
        self._topology: dict[str, Any] = empty()
        self._queue_ids: dict[str, int] = {}
        self._stream_ids: dict[str, int] = {}
        self._streams: dict[str, StreamBacking] = {}
        self._removed_logs: list[StreamLog] = []  # deleted streams, for the next commit
        self._snapshot: Callable[[], dict[str, Any]] | None = None
        self._version: Callable[[], int] = lambda: 0
        self._written_version = -1

    # -- recovery ---------------------------------------------------------------------

    def read_topology(self) -> dict[str, Any]:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._topology = read_topology(self.directory)
        for q in self._topology["queues"]:
            self._queue_ids[q["name"]] = q["id"]
        for s in self._topology["streams"]:
            self._stream_ids[s["name"]] = s["id"]
        return self._topology

    def recover_queues(self) -> dict[str, list[Any]]:
        """The live messages of every saved queue, by name, in sequence order."""
        ids = {i: name for name, i in self._queue_ids.items()}
        found = self.journal.recover(set(ids))
        return {ids[i]: messages for i, messages in found.items()}

    def stream_log(self, name: str) -> StreamLog:
        """A saved or new stream's log (created on first use)."""
        stream_id = self._id_for(name, self._stream_ids)
        kwargs = {"segment_bytes": self._segment_bytes} if self._segment_bytes else {}
        return StreamLog(self.directory / "streams" / str(stream_id), **kwargs)

    def _id_for(self, name: str, ids: dict[str, int]) -> int:
        found = ids.get(name)
        if found is None:
            found = ids[name] = self._topology["next_id"]
            self._topology["next_id"] = found + 1
        return found

    # -- the container's hooks --------------------------------------------------------

    def watch(self, snapshot: Callable[[], dict[str, Any]], version: Callable[[], int]) -> None:
        """How to read the registry's durable topology, and its change counter."""
        self._snapshot = snapshot
        self._version = version

    def queue_journal(self, queue: Queue) -> QueueJournal:
        journal = QueueJournal(self, self._id_for(queue.name, self._queue_ids), queue)
        self._journals[journal.id] = journal
        return journal

    def _sequences(self) -> dict[int, int]:
        return {i: j.queue.last_sequence for i, j in self._journals.items()
                if j.queue.last_sequence}

    def recovered_sequence(self, name: str) -> int:
        """The highest sequence number the journal saw for a queue (0: none)."""
        queue_id = self._queue_ids.get(name)
        return self.journal.recovered_sequences.get(queue_id, 0) if queue_id else 0

    def queue_id(self, name: str) -> int | None:
        return self._queue_ids.get(name)

    def stream_backing(self, stream: Stream, log: StreamLog) -> StreamBacking:
        name = stream.name
        backing = StreamBacking(self, self._id_for(name, self._stream_ids), log, stream)
        self._streams[name] = backing
        return backing

    def queue_deleted(self, name: str) -> None:
        queue_id = self._queue_ids.pop(name, None)
        if queue_id is not None:
            self.journal.drop_queue(queue_id)
            self._journals.pop(queue_id, None)

    def stream_deleted(self, name: str) -> None:
        backing = self._streams.pop(name, None)
        if backing is not None:
            self.dirty_streams.discard(backing)
            backing.log.close_readers()  # its writers are the commit thread's to close
            self._removed_logs.append(backing.log)
        self._stream_ids.pop(name, None)

    def hold(self, send: Callable[[bool], None], *, publish: bool = False,
             entries: list[tuple[Queue | None, Entry]] | None = None) -> None:
        """Send an outcome once its batch is written.  A publish is refused if the
        batch cannot be, unless it reached a stream: an append stays, so its
        publisher waits for the retry instead."""
        found = entries or []
        refusable = publish and all(queue is not None for queue, _ in found)
        self.held.append(Held(send, refusable, found))

    # -- batches ----------------------------------------------------------------------

    def needs_commit(self) -> bool:
        """Whether anything was recorded or changed since the commit loop was
        last woken (the container asks after each input)."""
        return self.recorded != self.signalled or bool(self._removed_logs) or \
            self.journal.numbering_pending or \
            self._version() != self._written_version

    def take_batch(self) -> Batch | None:
        """Container thread: everything pending as one batch (None: nothing).
        After a failure the failed batch comes back, alone, until it is written."""
        if self._retry is not None:
            # alone: what was held since belongs to records not in it
            batch, self._retry = self._retry, None
            return batch
        batch = Batch()
        version = self._version()
        if version != self._written_version and self._snapshot is not None:
            snapshot = self._snapshot()
            for q in snapshot["queues"]:
                q["id"] = self._id_for(q["name"], self._queue_ids)
            for s in snapshot["streams"]:
                s["id"] = self._id_for(s["name"], self._stream_ids)
            snapshot["next_id"] = self._topology["next_id"]
            batch.topology = encode_topology(snapshot)
            self._written_version = version
        batch.journal = self.journal.take_batch()
        for backing in self.dirty_streams:
            taken = backing.log.take_batch(backing.stream.first_offset)
            if taken is not None:
                batch.streams.append((backing, taken))
        self.dirty_streams = set()
        batch.remove, self._removed_logs = self._removed_logs, []
        batch.held, self.held = self.held, []
        if batch.topology is None and batch.journal is None and not batch.streams \
                and not batch.remove and not batch.held:
            return None
        return batch

    def commit(self, batch: Batch) -> None:
        """Worker thread: write the batch, sync it per the policy, then delete what
        it made unnecessary.  OSError (a full disk) leaves the batch to retry."""
        sync = self.fsync != "never"
        if batch.topology is not None and "topology" not in batch.done:
            write_topology(self.directory, batch.topology, sync=sync)
            batch.done.add("topology")
        if batch.journal is not None and "journal" not in batch.done:
            self.journal.write(batch.journal)
            batch.done.add("journal")
        for backing, taken in batch.streams:
            key = f"stream {backing.id}"
            if key not in batch.done:
                backing.log.write(taken)
                batch.done.add(key)
        if sync:
            self.journal.sync()
            for backing, _ in batch.streams:
                backing.log.sync()
        if batch.journal is not None:
            self.journal.delete(batch.journal)
        for backing, taken in batch.streams:
            backing.log.delete(taken)
        for removed in batch.remove:
            removed.close_writers()
            shutil.rmtree(removed.directory, ignore_errors=True)

    def committed(self, batch: Batch) -> Iterable[Held]:
        """Container thread: the batch is safe; the outcomes it held may go."""
        if self.failed is not None:
            log.warning("store: writing works again (%s before)", self.failed)
            self.failed = None
        for backing, taken in batch.streams:
            backing.log.committed(taken)
            backing.stream.evict()
        return batch.held

    def commit_failed(self, batch: Batch, error: OSError) -> Iterable[Held]:
        """Container thread: the write failed.  The batch waits to be written
        again, with the consumers' settlements and the stream publishes it
        holds; its queue publishes are refused, and their messages taken back
        from the queues that have not delivered them yet (one already out
        stays: at least once)."""
        if self.failed is None:
            log.error("store: cannot write to %s: %s; publishers are refused until it "
                      "can", self.directory, error)
        self.failed = str(error.strerror or error)
        refused = [h for h in batch.held if h.refusable]
        batch.held = [h for h in batch.held if not h.refusable]
        for held in refused:
            for queue, entry in held.entries:
                if queue is not None:
                    queue.withdraw(entry)
        self._retry = batch
        return refused

    def close(self) -> None:
        self.journal.close()
        for backing in self._streams.values():
            backing.log.close()


def _nothing() -> None:
    pass
