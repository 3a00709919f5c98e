"""An engine pair with a real peer: Qpid Proton's sans-io engine against our container.

Proton's `Transport` is pumped by hand against a `ConnectionHandle` (bytes
both ways, no sockets, a fake clock), so these tests check interoperability
of the whole conversation with an independent AMQP 1.0 implementation.
"""

from __future__ import annotations

from typing import Any

import proton
from proton import Delivery, Message

from broker.config import Config
from broker.container import Container


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Pair:
    """A Proton client connection wired to a fresh container."""

    def __init__(self, *, user: str | None = "guest", max_frame_size: int | None = None,
                 client_idle_time_out: float | None = None, **config: Any) -> None:
        self.clock = Clock()
        self.container = Container(Config(**config), clock=self.clock,
                                   wall_clock=lambda: 1_700_000_000.0)
        self.handle = self.container.connection_made("proton", "memory", lambda: None)
        self.to_proton = bytearray()
        self.conn = proton.Connection()
        self.conn.container = "proton-client"
        self.transport = proton.Transport()
        if max_frame_size is not None:
            self.transport.max_frame_size = max_frame_size
        if client_idle_time_out is not None:
            self.transport.idle_timeout = client_idle_time_out
        sasl = self.transport.sasl()
        if user is None:
            sasl.allowed_mechs("ANONYMOUS")
        else:
            sasl.allowed_mechs("PLAIN")
            sasl.allow_insecure_mechs = True
            self.conn.user = user
            self.conn.password = "guest"
        self.sasl = sasl
        self.transport.bind(self.conn)
        self.conn.open()
        self.session = self.conn.session()
        self.session.open()
        self.pump()

    def pump(self) -> None:
        """Move bytes both ways until neither side has anything more to say."""
        for _ in range(10_000):
            moved = False
            pending = self.transport.pending()
            if pending > 0:
                data = bytes(self.transport.peek(pending))
                self.transport.pop(len(data))
                self.handle.receive_data(data)
                moved = True
            elif pending < 0 and not self.handle.done:  # proton closed its output
                self.handle.receive_data(b"")
            self.to_proton += self.handle.data_to_send()
            capacity = self.transport.capacity()
            if self.to_proton and capacity > 0:
                chunk = bytes(self.to_proton[:capacity])
                del self.to_proton[:capacity]
                self.transport.push(chunk)
                moved = True
            if self.handle.done and not self.to_proton and capacity > 0:
                self.transport.close_tail()
            if not moved:
                return
        raise AssertionError("the conversation does not settle down")

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """Let time pass, running both sides' timers."""
        end = self.clock.t + seconds
        while self.clock.t < end:
            self.clock.t = min(end, self.clock.t + step)
            self.transport.tick(self.clock.t)
            self.handle.tick()
            self.pump()

    def sender(self, address: str | None) -> proton.Sender:
        snd = self.session.sender(f"sender-{address}")
        snd.target.address = address
        snd.open()
        self.pump()
        return snd

    def receiver(self, address: str, credit: int = 0) -> proton.Receiver:
        rcv = self.session.receiver(f"receiver-{address}")
        rcv.source.address = address
        rcv.open()
        if credit:
            rcv.flow(credit)
        self.pump()
        return rcv

    def send(self, snd: proton.Sender, *messages: Message) -> list[Delivery]:
        sent = []
        for i, m in enumerate(messages):
            d = snd.delivery(b"tag-%d-%d" % (snd.queued, i))
            snd.send(m.encode())
            snd.advance()
            sent.append(d)
        self.pump()
        return sent

    def receive(self, rcv: proton.Receiver, outcome: int | None = Delivery.ACCEPTED,
                **modified: Any) -> list[Message]:
        """Take every complete delivery, settling each with `outcome`."""
        got = []
        while (d := rcv.current) is not None and not d.partial:
            m = Message()
            m.decode(rcv.recv(d.pending))
            rcv.advance()
            got.append(m)
            if outcome is not None:
                for name, value in modified.items():
                    setattr(d.local, name, value)
                d.update(outcome)
                d.settle()
        self.pump()
        return got


def test_publish_and_consume_with_sasl_plain() -> None:
    pair = Pair()
    assert pair.sasl.outcome == proton.SASL.OK
    assert pair.conn.remote_container == "amqpws-broker"
    snd = pair.sender("q")
    assert snd.credit > 0
    deliveries = pair.send(snd, *[Message(body=f"m{i}") for i in range(3)])
    assert [d.remote_state for d in deliveries] == [Delivery.ACCEPTED] * 3
    assert all(d.settled for d in deliveries), "settled by the broker"
    rcv = pair.receiver("q", credit=10)
    assert [m.body for m in pair.receive(rcv)] == ["m0", "m1", "m2"]
    queue = pair.container.registry.get("q")
    assert queue is not None and (queue.depth, queue.unacked) == (0, 0)


def test_anonymous_login_and_sasl_failure() -> None:
    pair = Pair(user=None)
    assert pair.sasl.outcome == proton.SASL.OK
    bad = Pair(user="nobody")
    assert bad.sasl.outcome == proton.SASL.AUTH
    assert bad.handle.done


def test_large_message_to_a_small_max_frame_size() -> None:
    pair = Pair(max_frame_size=512)
    snd = pair.sender("q")
    body = "x" * 20_000
    pair.send(snd, Message(body=body))
    rcv = pair.receiver("q", credit=1)
    assert [m.body for m in pair.receive(rcv)] == [body]


def test_drain() -> None:
    pair = Pair()
    snd = pair.sender("q")
    pair.send(snd, Message(body="only"))
    rcv = pair.receiver("q")
    rcv.drain(5)
    pair.pump()
    assert [m.body for m in pair.receive(rcv)] == ["only"]
    assert rcv.credit == 0
    assert not rcv.draining()


def test_release_and_modified_redelivery() -> None:
    pair = Pair()
    snd = pair.sender("q")
    pair.send(snd, Message(body="again"))
    rcv = pair.receiver("q", credit=1)
    (first,) = pair.receive(rcv, outcome=Delivery.RELEASED)
    assert first.delivery_count == 0
    rcv.flow(1)
    pair.pump()
    (second,) = pair.receive(rcv, outcome=Delivery.MODIFIED, failed=True)
    assert (second.delivery_count, second.first_acquirer) == (0, False)
    rcv.flow(1)
    pair.pump()
    (third,) = pair.receive(rcv)
    assert third.delivery_count == 1


def test_anonymous_relay() -> None:
    pair = Pair()
    snd = pair.sender(None)
    ok, bad = pair.send(snd, Message(address="/queues/routed", body=1), Message(body=2))
    assert ok.remote_state == Delivery.ACCEPTED
    assert bad.remote_state == Delivery.REJECTED
    assert bad.remote.condition.name == "amqp:invalid-field"
    assert snd.state & proton.Endpoint.REMOTE_ACTIVE


def test_unknown_queue_is_refused_with_not_found() -> None:
    pair = Pair(auto_create=False)
    rcv = pair.receiver("missing")
    assert rcv.state & proton.Endpoint.REMOTE_CLOSED
    assert rcv.remote_condition.name == "amqp:not-found"


def test_idle_connections_stay_up_on_heartbeats_both_ways() -> None:
    pair = Pair(client_idle_time_out=2.0, idle_time_out=4.0)
    pair.advance(30.0)
    assert pair.conn.state & proton.Endpoint.REMOTE_ACTIVE
    assert not pair.handle.done
    assert pair.transport.condition is None


def test_close() -> None:
    pair = Pair()
    pair.conn.close()
    pair.pump()
    assert pair.conn.state & proton.Endpoint.REMOTE_CLOSED
    assert pair.handle.done


def test_presettled_both_ways() -> None:
    pair = Pair()
    snd = pair.session.sender("fire-and-forget")
    snd.target.address = "q"
    snd.snd_settle_mode = proton.Link.SND_SETTLED
    snd.open()
    pair.pump()
    for i in range(5):
        d = snd.delivery(b"t%d" % i)
        snd.send(Message(body=i).encode())
        snd.advance()
        d.settle()
    pair.pump()
    queue = pair.container.registry.get("q")
    assert queue is not None and queue.depth == 5
    rcv = pair.session.receiver("at-most-once")
    rcv.source.address = "q"
    rcv.snd_settle_mode = proton.Link.SND_SETTLED
    rcv.open()
    rcv.flow(10)
    pair.pump()
    assert rcv.remote_snd_settle_mode == proton.Link.SND_SETTLED
    assert [m.body for m in pair.receive(rcv, outcome=None)] == [0, 1, 2, 3, 4]
    assert (queue.depth, queue.unacked) == (0, 0)


def test_many_messages_through_small_credit_and_session_windows() -> None:
    pair = Pair(max_frame_size=512)
    pair.session.close()
    pair.pump()
    pair.session = pair.conn.session()
    pair.session.incoming_capacity = 4096  # a few frames of session window
    pair.session.open()
    snd = pair.sender("bulk")
    pair.send(snd, *[Message(body=f"{i:04d}" + "y" * 700) for i in range(300)])
    rcv = pair.receiver("bulk", credit=7)
    got: list[str] = []
    for _ in range(1000):
        got += [m.body[:4] for m in pair.receive(rcv)]
        if len(got) == 300:
            break
        rcv.flow(7 - rcv.credit)
        pair.pump()
    assert got == [f"{i:04d}" for i in range(300)]
