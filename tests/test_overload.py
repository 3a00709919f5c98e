"""Limits a hostile or runaway peer meets in the container: connections in all
and per user, the memory alarm on publishers, and failures logged once per peer."""

from __future__ import annotations

import logging

import pytest
from engine.peer import Peer, condition, deliveries, kinds, of, one
from test_container import Broker, consumer, msg, publish, publisher

from broker.codec.messaging import Accepted
from broker.codec.performatives import Close, Flow, Open
from broker.container import printable
from broker.peerlog import PeerLog


def test_connections_per_user_are_limited() -> None:
    broker = Broker(max_connections_per_user=2, users={"bob": "pw"}, allow_anonymous=True)
    outs = []
    for i in range(3):
        bob = Peer(broker.container.connection_made(f"b{i}", "test", lambda: None))
        outs.append(bob.connect(sasl=("PLAIN", "bob", "pw")))
    assert not of(outs[0], Close) and not of(outs[1], Close)
    assert kinds(outs[2])[-2:] == [Open, Close]
    assert condition(one(outs[2], Close)) == "amqp:resource-limit-exceeded"
    broker.client()  # another user (anonymous) is not affected


def test_connections_in_all_are_limited() -> None:
    broker = Broker(max_connections=1)
    broker.client()
    second = Peer(broker.container.connection_made("y", "test", lambda: None))
    out = second.connect()
    assert condition(one(out, Close)) == "amqp:resource-limit-exceeded"


def test_memory_alarm_stalls_publishers_and_lets_them_resume() -> None:
    # 10 messages of ~600 bytes held trip a 5,000-byte watermark
    broker = Broker(memory_high_watermark=5000.0)
    container = broker.container
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    states = publish(peer, 0, *[msg(b"x" * 100) for _ in range(12)])
    assert states == [Accepted()] * 12, "nothing granted is refused"
    assert container.memory_alarm
    # no more credit: draining the granted credit brings no top-up flow
    flows = []
    for _ in range(600):
        flows += of(peer.send(0, msg(b"y")), Flow)
    assert not [f for f in flows if f.handle == 0], "no credit while the alarm is on"
    late = broker.client("late")
    out = late.attach_sender(0, "/queues/q")
    assert not [f for f in of(out, Flow) if f.link_credit], "a new publisher gets none either"
    # a consumer drains the queue; the next housekeeping clears the alarm
    consumer(peer, 1, "/queues/q", credit=1000)
    assert len(deliveries(peer.received)) == 612, "every accepted message is delivered"
    peer.disposition(0, 1000, state=Accepted())
    container.housekeeping()
    assert not container.memory_alarm
    assert of(late.read(), Flow), "credit flows again"
    assert broker.queue("q").depth == 0


def test_peer_log_says_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    t = [0.0]
    plog = PeerLog(lambda: t[0], logging.getLogger("broker.container"), interval=60.0)
    with caplog.at_level(logging.INFO, logger="broker.container"):
        for _ in range(1000):
            plog.info("10.0.0.1:5000", "authentication failed: %s", "bad password")
        t[0] = 61.0
        plog.info("10.0.0.1:6000", "authentication failed: %s", "bad password")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "999 more" in lines[1]


def test_printable_names() -> None:
    assert printable("a\x00b") == "'a?b'"
    assert len(printable("x" * 1000)) < 110


def test_memory_alarm_rss_backstop_stalls_publishers_without_sticking() -> None:
    broker = Broker(memory_high_watermark=1_000_000.0)
    container = broker.container
    peer = broker.client()
    publisher(peer, 0, "/queues/q")
    assert publish(peer, 0, *[msg(b"x" * 100) for _ in range(300)]) == [Accepted()] * 300
    assert not container.memory_alarm, "300 small messages are far below the watermark"
    container.housekeeping(rss=900_000)
    container.housekeeping(rss=2_000_000)  # the process grew past it all the same
    assert container.memory_alarm
    late = broker.client("late")
    out = late.attach_sender(0, "/queues/q")
    assert not [f for f in of(out, Flow) if f.link_credit], "a new publisher gets no credit"
    consumer(peer, 1, "/queues/q", credit=1000)
    peer.disposition(0, 1000, state=Accepted())
    container.housekeeping(rss=2_000_000)  # RSS does not fall: CPython keeps its memory
    assert not container.memory_alarm, "drained below the cap: the alarm clears"
    assert of(late.read(), Flow), "credit flows again"
