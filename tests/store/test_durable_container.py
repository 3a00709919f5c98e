"""The store through the container: what `accepted` waits for, what a
restart brings back, and what a failed write does.  Commits are driven by
hand (`commit`), as the server's commit loop would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine.peer import of
from test_container import NOW, Broker, Clock, msg

from broker.codec.messaging import Accepted, Header, Rejected
from broker.codec.performatives import Disposition, Transfer
from broker.config import Config, normalize
from broker.container import Container
from broker.store.durable import Store

DURABLE = Header(durable=True)


class DurableBroker(Broker):
    """A Broker whose container keeps its data in `directory`."""

    def __init__(self, directory: Path, **config: Any) -> None:
        self.clock = Clock(0.0)
        self.wall = Clock(NOW)
        self.wakes = {}
        self.store = Store(directory, fsync=config.pop("fsync", "never"))
        self.container = Container(Config(**normalize(config)), clock=self.clock,
                                   wall_clock=self.wall, store=self.store)

    def commit(self) -> None:
        while (batch := self.container.take_durable_batch()) is not None:
            self.store.commit(batch)
            self.container.durable_committed(batch)

    def restart(self, directory: Path, **config: Any) -> DurableBroker:
        self.commit()
        self.store.close()
        return DurableBroker(directory, **config)


def states(out: list[Any]) -> list[object]:
    return [o.performative.state for o in out if isinstance(o.performative, Disposition)]


def test_accepted_waits_for_the_message_to_be_written(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q1")
    out = peer.send(0, msg(b"kept", header=DURABLE))
    assert not states(out), "no outcome before the write"
    broker.commit()
    assert states(peer.read()) == [Accepted()]


def test_a_transient_message_is_accepted_at_once_and_not_kept(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q1")
    assert states(peer.send(0, msg(b"transient"))) == [Accepted()]
    broker = broker.restart(tmp_path, queues=["q1"])
    assert broker.queue("q1").depth == 0


def test_a_restart_brings_back_what_was_not_settled(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q1")
    for body in (b"a", b"b", b"c"):
        peer.send(0, msg(body, header=DURABLE))
    broker.commit()
    out = peer.attach_receiver(1, "q1") + peer.flow(1, link_credit=2)
    first, _ = of(out, Transfer)
    peer.disposition(first.delivery_id, state=Accepted())  # a settled; b out, unsettled
    broker = broker.restart(tmp_path, queues=["q1"])
    assert broker.container.recovered.messages == 2
    b, c = broker.queue("q1").ready
    assert (b.message.body[0].value, b.delivery_count) == (b"b", 1), "out at the crash: +1"
    assert (c.message.body[0].value, c.delivery_count) == (b"c", 0)
    peer = broker.client()
    peer.attach_sender(0, "q1")
    peer.send(0, msg(b"d", header=DURABLE))
    assert broker.queue("q1").ready[-1].sequence == 4, "numbering goes on"


def test_declared_topology_comes_back(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path)
    admin = broker.container.admin
    admin.declare_queue("orders", arguments={"x-max-length": 5}, now=NOW)
    admin.declare_queue("scratch", durable=False, now=NOW)
    admin.declare_exchange("events", type="topic")
    admin.bind("events", "orders", key="order.*")
    admin.declare_queue("log", arguments={"x-queue-type": "stream"}, now=NOW)
    broker = broker.restart(tmp_path)
    registry = broker.container.registry
    assert broker.queue("orders").max_length == 5
    assert registry.get("scratch") is None, "durable: false is not kept"
    assert [(b.source, b.destination, b.key) for b in registry.bindings()
            if b.source == "events"] == [("events", "orders", "order.*")]
    assert registry.get("log").kind == "stream"


def test_a_deleted_queue_stays_deleted(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q2")
    peer.send(0, msg(b"x", header=DURABLE))
    broker.commit()
    broker.container.admin.delete_queue("q2")
    broker = broker.restart(tmp_path, queues=["q1"])
    assert broker.container.registry.get("q2") is None


def test_streams_keep_offsets_and_times_across_a_restart(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, streams=["s"])
    peer = broker.client()
    peer.attach_sender(0, "s")
    for i in range(10):
        broker.wall.t = NOW + i
        peer.send(0, msg(b"m%d" % i))
    broker = broker.restart(tmp_path, streams=["s"])
    stream = broker.container.registry.get("s")
    assert (stream.first_offset, stream.next_offset) == (0, 10)
    assert stream.entry(7).message.body[0].value == b"m7", "read back from disk"
    from broker.nodes.stream import StartAt
    assert stream.resolve(StartAt("timestamp", NOW + 4)) == 4
    assert stream.resolve(StartAt("last")) == 9


def test_a_stream_keeps_only_recent_messages_in_memory(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, streams=["s"])
    stream = broker.container.registry.get("s")
    stream.resident_limit = 10_000
    peer = broker.client()
    peer.attach_sender(0, "s")
    for i in range(100):
        peer.send(0, msg(b"%03d" % i + bytes(500)))
        broker.commit()
    assert stream.held_bytes < 10_000 + 200 * 600
    assert stream.entry(3).message.body[0].value.startswith(b"003"), "from disk"
    peer.attach_receiver(1, "s", source=_offset_source("s", "first"))
    out = peer.flow(1, link_credit=100)
    assert len(of(out, Transfer)) == 100, "a reader from the start gets everything"


def _offset_source(address: str, spec: str) -> Any:
    from broker.codec.messaging import Source
    from broker.codec.types import Described, Symbol

    return Source(address=address, filter={Symbol("rabbitmq:stream-offset-spec"): Described(
        Symbol("rabbitmq:stream-offset-spec"), spec)})


class FullDisk(Exception):
    pass


def test_a_failed_write_refuses_publishers_and_loses_nothing_accepted(tmp_path: Path,
                                                                      monkeypatch: Any) -> None:
    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q1")
    peer.send(0, msg(b"safe", header=DURABLE))
    broker.commit()
    assert states(peer.read()) == [Accepted()]
    journal_write = broker.store.journal.write

    def no_space(batch: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(broker.store.journal, "write", no_space)
    peer.send(0, msg(b"unlucky", header=DURABLE))
    batch = broker.container.take_durable_batch()
    with pytest.raises(OSError):
        broker.store.commit(batch)
    broker.container.durable_failed(batch, OSError(28, "No space left on device"))
    (refused,) = states(peer.read())
    assert isinstance(refused, Rejected)
    assert refused.error.condition == "amqp:resource-limit-exceeded"
    assert [e.message.body[0].value for e in broker.queue("q1").ready] == [b"safe"], \
        "a refused message not yet delivered is taken back"
    (later,) = states(peer.send(0, msg(b"later", header=DURABLE)))
    assert isinstance(later, Rejected), "refused at once while the disk is full"
    monkeypatch.setattr(broker.store.journal, "write", journal_write)
    broker.commit()  # the failed batch is written now
    assert broker.store.failed is None
    assert states(peer.send(0, msg(b"again", header=DURABLE))) == []
    broker = broker.restart(tmp_path, queues=["q1"])
    bodies = [e.message.body[0].value for e in broker.queue("q1").ready]
    assert bodies == [b"safe", b"again"], "nothing refused came back"


def test_a_retried_batch_releases_only_what_it_holds(tmp_path: Path, monkeypatch: Any) -> None:
    """A second-mode consumer's settlement made while a batch is failing waits
    for its own ack's batch, not the retry of the failed one."""
    from broker.codec.performatives import RcvSettleMode

    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q1")
    peer.send(0, msg(b"one", header=DURABLE))
    broker.commit()
    out = peer.attach_receiver(1, "q1", rcv_settle_mode=RcvSettleMode.SECOND)
    (transfer,) = of(out + peer.flow(1, link_credit=1), Transfer)
    journal_write = broker.store.journal.write
    monkeypatch.setattr(broker.store.journal, "write",
                        lambda batch: (_ for _ in ()).throw(OSError(28, "full")))
    peer.send(0, msg(b"two", header=DURABLE))  # pending: will fail
    failing = broker.container.take_durable_batch()
    with pytest.raises(OSError):
        broker.store.commit(failing)
    broker.container.durable_failed(failing, OSError(28, "full"))
    peer.read()
    out = peer.disposition(transfer.delivery_id, state=Accepted(), settled=False)
    assert not states(out), "the ack is not written yet"
    monkeypatch.setattr(broker.store.journal, "write", journal_write)
    retry = broker.container.take_durable_batch()
    broker.store.commit(retry)
    broker.container.durable_committed(retry)
    assert not states(peer.read()), "the retry did not hold this ack"
    broker.commit()
    assert states(peer.read()) == [Accepted()], "its own batch did"


def test_a_deleted_stream_leaves_no_files_and_its_name_starts_afresh(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, streams=["s"])
    peer = broker.client()
    peer.attach_sender(0, "s")
    peer.send(0, msg(b"old"))
    broker.commit()
    (directory,) = (tmp_path / "streams").iterdir()
    broker.container.admin.delete_queue("s")
    broker.commit()
    assert not directory.exists()
    broker.container.admin.declare_queue("s", arguments={"x-queue-type": "stream"}, now=NOW)
    peer.attach_sender(2, "s")
    peer.send(2, msg(b"new"))
    broker = broker.restart(tmp_path)
    stream = broker.container.registry.get("s")
    assert (stream.first_offset, stream.next_offset) == (0, 1)
    assert stream.entry(0).message.body[0].value == b"new"


def test_a_stream_declared_with_arguments_is_declared_the_same_after_a_restart(
        tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path)
    arguments = {"x-queue-type": "stream", "x-max-age": "1h", "x-max-length-bytes": 1_000_000}
    broker.container.admin.declare_queue("sa", arguments=arguments, now=NOW)
    broker = broker.restart(tmp_path)
    broker.container.admin.declare_queue("sa", arguments=arguments, now=NOW)  # no 409
    assert broker.container.registry.get("sa").max_length_bytes == 1_000_000


def test_a_delivery_alone_is_written_and_counted_after_a_crash(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q1")
    peer.send(0, msg(b"held", header=DURABLE))
    broker.commit()
    peer.attach_receiver(1, "q1")
    woken: list[int] = []
    broker.store.on_pending = lambda: woken.append(1)
    assert of(peer.flow(1, link_credit=1), Transfer)
    assert woken, "the delivery alone wakes the commit loop"
    broker = broker.restart(tmp_path, queues=["q1"])
    (entry,) = broker.queue("q1").ready
    assert entry.delivery_count == 1


def test_numbering_goes_on_after_a_restart_without_messages_kept(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q1")
    woken: list[int] = []
    broker.store.on_pending = lambda: woken.append(1)
    for body in (b"a", b"b", b"c"):
        peer.send(0, msg(body))  # transient: not kept, but numbered
    assert woken, "numbering alone wakes the commit loop"
    broker = broker.restart(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q1")
    peer.send(0, msg(b"d"))
    assert broker.queue("q1").ready[-1].sequence == 4


def test_numbering_survives_the_segments_that_held_it(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, queues=["q1"])
    broker.store.journal.segment_bytes = 200
    peer = broker.client()
    peer.attach_sender(0, "q1")
    peer.attach_receiver(1, "q1")
    for i in range(30):
        out = peer.send(0, msg(b"%02d" % i + bytes(50), header=DURABLE))
        broker.commit()
        out += peer.flow(1, link_credit=1)
        for t in of(out, Transfer):
            peer.disposition(t.delivery_id, state=Accepted())
        broker.commit()
    assert broker.queue("q1").depth == 0
    assert not (tmp_path / "queues" / "00000001.log").exists(), "old segments went"
    broker = broker.restart(tmp_path, queues=["q1"])
    assert broker.queue("q1").last_sequence == 30


def test_an_azure_clients_messages_are_kept(tmp_path: Path) -> None:
    from test_cbs import cbs_pair, put_token

    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    cbs_pair(peer)
    put_token(peer, "anything", "sb://127.0.0.1/q1")
    peer.attach_sender(2, "q1")
    peer.send(2, msg(b"no header"))  # Service Bus keeps every message
    broker = broker.restart(tmp_path, queues=["q1"])
    assert [e.message.body[0].value for e in broker.queue("q1").ready] == [b"no header"]


# -- found by review: each of these failed before its fix ---------------------------------


def test_recovery_brings_back_everything_whatever_the_queue_limit(tmp_path: Path) -> None:
    args = {"queues": {"q": {"x-max-length": 2, "x-overflow": "drop-head"}}}
    broker = DurableBroker(tmp_path, **args)
    peer = broker.client()
    peer.attach_sender(0, "q")
    peer.send(0, msg(b"m1", header=DURABLE))
    peer.send(0, msg(b"m2", header=DURABLE))
    peer.attach_receiver(1, "q")
    peer.flow(1, link_credit=2)  # both out, unsettled
    peer.send(0, msg(b"m3", header=DURABLE))
    peer.send(0, msg(b"m4", header=DURABLE))
    broker = broker.restart(tmp_path, **args)
    assert [e.message.body[0].value for e in broker.queue("q").ready] == [
        b"m1", b"m2", b"m3", b"m4"], "kept means kept: no limit at recovery"
    peer = broker.client()
    out = peer.attach_receiver(1, "q") + peer.flow(1, link_credit=10)
    for t in of(out, Transfer):
        peer.disposition(t.delivery_id, state=Accepted())
    broker = broker.restart(tmp_path, **args)
    assert broker.queue("q").depth == 0, "and what was consumed stays consumed"


def test_a_last_segment_moved_aside_does_not_stop_the_next_commit(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q1")
    peer.send(0, msg(b"lost", header=DURABLE))
    broker.commit()
    broker.store.close()
    (tmp_path / "queues" / "00000001.log").write_bytes(b"garbage!")
    broker = DurableBroker(tmp_path, queues=["q1"])
    peer = broker.client()
    peer.attach_sender(0, "q1")
    peer.send(0, msg(b"new", header=DURABLE))
    broker.commit()
    assert (tmp_path / "queues" / "00000001.log.unreadable").exists()
    broker = broker.restart(tmp_path, queues=["q1"])
    assert [e.message.body[0].value for e in broker.queue("q1").ready] == [b"new"]


def test_compaction_still_measures_old_segments_after_a_restart(tmp_path: Path) -> None:
    from broker.store.journal import Journal
    from store.test_journal import commit, entry

    journal = Journal(tmp_path)
    for sequence in range(1, 11):
        journal.publish(1, entry(sequence, b"x"))
    commit(journal)
    for sequence in range(2, 11):
        journal.removed(1, sequence)
    commit(journal)
    journal.close()
    again = Journal(tmp_path)
    again.recover({1})
    assert again._written_in[1] == 10 and again._live_in[1] == 1


def test_subscription_rules_are_kept(tmp_path: Path) -> None:
    from broker.nodes.azure import sql_rule

    broker = DurableBroker(tmp_path)
    registry = broker.container.registry
    queue = registry.declare_subscription("orders", "red")
    registry.azure.set_rules(queue.name, [sql_rule("reds", "sys.Label = 'red'")])
    broker = broker.restart(tmp_path)
    (rule,) = broker.container.registry.azure.rules("orders/Subscriptions/red")
    assert (rule.name, rule.kind, rule.definition) == ("reds", "sql", "sys.Label = 'red'")


def test_scheduling_numbers_are_never_given_out_again(tmp_path: Path) -> None:
    broker = DurableBroker(tmp_path, queues=["q1"])
    assert broker.queue("q1").next_sequence() == 1  # as schedule-message takes one
    broker = broker.restart(tmp_path, queues=["q1"])
    assert broker.queue("q1").next_sequence() == 2


def test_a_stream_publish_is_not_refused_by_a_failed_write_but_kept_waiting(
        tmp_path: Path, monkeypatch: Any) -> None:
    broker = DurableBroker(tmp_path, streams=["s"])
    peer = broker.client()
    peer.attach_sender(0, "s")
    stream_log = broker.container.registry.get("s").backing.log
    write = stream_log.write
    monkeypatch.setattr(stream_log, "write",
                        lambda batch: (_ for _ in ()).throw(OSError(28, "full")))
    peer.send(0, msg(b"appended"))
    failing = broker.container.take_durable_batch()
    with pytest.raises(OSError):
        broker.store.commit(failing)
    broker.container.durable_failed(failing, OSError(28, "full"))
    assert not states(peer.read()), "an append cannot be taken back: it waits"
    monkeypatch.setattr(stream_log, "write", write)
    broker.commit()
    assert states(peer.read()) == [Accepted()]


def test_a_deferred_lock_token_works_only_on_its_own_entity(tmp_path: Path) -> None:
    import uuid

    broker = DurableBroker(tmp_path, queues=["q1", "q2"])
    azure = broker.container.registry.azure
    from broker.codec.messaging import Message
    from broker.nodes.base import Entry

    queue = broker.queue("q1")
    e = Entry(Message.create(b"d"))
    queue.publish(e, NOW)
    queue.ready.popleft()
    queue.unacked += 1
    azure.defer(queue, e)
    ((_, token, _),) = azure.receive_deferred("q1", [e.sequence], NOW, lock=True)
    assert isinstance(token, uuid.UUID)
    assert not azure.settle_deferred("q2", token, "completed", NOW), "another entity's token"
    assert azure.renew("q2", token, NOW) is None
    assert azure.settle_deferred("q1", token, "completed", NOW)
