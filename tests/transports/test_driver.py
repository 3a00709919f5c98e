"""The driver's two pumps: pumping, coalescing, timers, endings.

Tests taking `pair` run twice: over in-memory streams (`StreamPump`, the two
tasks any stream gets) and over a socket pair (`SocketPump`, the one task a
plain socket gets)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import pytest
import trio
import trio.testing
from fakes import (
    CountingStream,
    EchoHandle,
    FakeContainer,
    Trickle,
    read_to_eof,
    read_until,
    tcp_pair,
)

from broker.framing import BARE_HEARTBEATS, HEARTBEAT
from broker.transports import pump, socketpump
from broker.transports.driver import FEED_SIZE, RECEIVE_SIZE, Wakeup, drive, serve_stream

Pair = tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]


def socket_pair() -> Pair:
    import socket

    ours, theirs = socket.socketpair()
    return (trio.SocketStream(trio.socket.from_stdlib_socket(theirs)),
            trio.SocketStream(trio.socket.from_stdlib_socket(ours)))


@pytest.fixture(params=["memory", "socket"])
def pair(request: pytest.FixtureRequest) -> Pair:
    """(client, server): what the test plays the peer on, and what the driver gets."""
    if request.param == "memory":
        return trio.testing.memory_stream_pair()  # type: ignore[return-value]
    return socket_pair()


def start_drive(nursery: trio.Nursery, stream: trio.abc.Stream, handle: EchoHandle,
                wakeup: Wakeup) -> list[str]:
    """`drive` started in `nursery`; the list gets the reason it returns."""
    reasons: list[str] = []

    async def run() -> None:
        reasons.append(await drive(stream, handle, wakeup))

    nursery.start_soon(run)
    return reasons


def _handle(wakeup: Wakeup, **options: object) -> EchoHandle:
    return EchoHandle(wakeup.wake, **options)  # type: ignore[arg-type]


async def test_echo_then_close(pair: Pair) -> None:
    client, server = pair
    wakeup = Wakeup()
    handle = _handle(wakeup)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            reasons = start_drive(nursery, server, handle, wakeup)
            await client.send_all(b"hello")
            assert await read_until(client, b"hello") == b"hello"
            await client.send_all(b"BYE")
            assert await read_to_eof(client) == b"BYE"  # flushed, then half-closed
            await client.aclose()
    assert reasons == ["closed"]
    assert handle.received == b"helloBYE"


async def test_one_byte_at_a_time() -> None:
    client, server = trio.testing.memory_stream_pair()
    wakeup = Wakeup()
    handle = _handle(wakeup)
    payload = bytes(range(256)) * 4
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drive, Trickle(server), handle, wakeup)
            await client.send_all(payload + b"BYE")
            echoed = await read_to_eof(client)
            await client.aclose()
    assert handle.received == payload + b"BYE"
    assert set(handle.chunks) == {1}
    assert echoed == payload + b"BYE"


async def test_output_is_coalesced_into_one_send() -> None:
    client, server = trio.testing.memory_stream_pair()
    counting = CountingStream(server)
    wakeup = Wakeup()
    handle = _handle(wakeup, echo=False)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drive, counting, handle, wakeup)
            await client.send_all(b"BURST")
            expected = b"".join(b"F%03d" % i for i in range(100))
            assert await read_until(client, expected) == expected
            assert counting.sends == [expected]  # 100 wakes, one send_all
            nursery.cancel_scope.cancel()


async def test_eof_reaches_the_handle_as_empty_data(pair: Pair) -> None:
    client, server = pair
    wakeup = Wakeup()
    handle = _handle(wakeup)
    with trio.fail_after(5):
        await client.send_all(b"abc")
        await client.send_eof()
        reason = await drive(server, handle, wakeup)
    assert reason == "peer disconnected"
    assert handle.eof and handle.received == b"abc"
    assert await read_to_eof(client) == b"abc"  # pending output still went out


async def test_broken_transport_becomes_connection_lost() -> None:
    client, server = trio.testing.memory_stream_pair()
    wakeup = Wakeup()
    handle = _handle(wakeup)
    await client.receive_stream.aclose()  # our echo will have nowhere to go
    with trio.fail_after(5):
        await client.send_all(b"ping")
        reason = await drive(server, handle, wakeup)
    assert reason.startswith("transport error: BrokenResourceError")
    assert handle.eof and handle.lost_calls >= 1


async def test_timer_deadline_appears_after_a_receive(pair: Pair, autojump_clock: trio.abc.Clock) -> None:
    client, server = pair
    wakeup = Wakeup()
    handle = _handle(wakeup, echo=False, heartbeat=5.0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drive, server, handle, wakeup)
            await trio.sleep(30)  # no deadline yet: nothing happens
            assert not handle.out
            await client.send_all(b"OPEN")
            start = trio.current_time()
            assert await client.receive_some() == b"HB"
            assert trio.current_time() - start == pytest.approx(5.0)
            assert await client.receive_some() == b"HB"
            assert trio.current_time() - start == pytest.approx(10.0)
            nursery.cancel_scope.cancel()


async def test_stuck_peer_gets_close_timeout(autojump_clock: trio.abc.Clock) -> None:
    # lockstep: send_all blocks until the peer reads, and this peer never does
    client, server = trio.testing.lockstep_stream_pair()
    wakeup = Wakeup()
    handle = _handle(wakeup)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"BYE")
            start = trio.current_time()
            reason = await drive(server, handle, wakeup, close_timeout=2.0)
            nursery.cancel_scope.cancel()
    assert reason == "closed; flush timed out"
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_graceful_close_half_closes_and_drains(pair: Pair) -> None:
    client, server = pair
    wakeup = Wakeup()
    handle = _handle(wakeup)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drive, server, handle, wakeup)
            await client.send_all(b"BYE")
            assert await read_to_eof(client) == b"BYE"
            await client.send_all(b"late data")  # read and dropped: no reset
            await client.aclose()
    assert handle.received == b"BYE"


async def test_cancellation_closes_and_reports_lost(pair: Pair) -> None:
    client, server = pair
    wakeup = Wakeup()
    handle = _handle(wakeup)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drive, server, handle, wakeup)
            await client.send_all(b"x")
            await read_until(client, b"x")
            nursery.cancel_scope.cancel()
        assert await read_to_eof(client) == b""
    assert handle.eof and handle.lost_calls == 1


async def test_a_read_that_was_only_a_heartbeat_gets_no_tick_and_no_write(pair: Pair) -> None:
    """The handle's True from receive_data (a bare heartbeat) spares the pump
    its tick and its write; the next read gets both again."""
    client, server = pair
    wakeup = Wakeup()
    handle = _handle(wakeup)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            start_drive(nursery, server, handle, wakeup)
            await client.send_all(b"ab")
            assert await read_until(client, b"ab") == b"ab"
            ticks, sends = handle.ticks, handle.sends
            await client.send_all(b"HUSH")
            while not handle.received.endswith(b"HUSH"):
                await trio.sleep(0.01)
            await trio.sleep(0.05)  # anything the pump did after that read is done
            assert (handle.ticks, handle.sends) == (ticks, sends)
            await client.send_all(b"cd")
            assert await read_until(client, b"cd") == b"cd"
            assert handle.ticks > ticks and handle.sends > sends
            await client.send_all(b"BYE")
            await read_to_eof(client)


async def test_serve_stream_survives_engine_bugs(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="broker.transport")
    client, server = pair
    container = FakeContainer(fail=True)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:  # would fail if the bug escaped
            nursery.start_soon(lambda: serve_stream(server, container, peer="p", transport="tcp"))
            await client.send_all(b"boom")
            assert await read_to_eof(client) == b""
            await client.aclose()
    assert "tcp p disconnected: internal error" in caplog.text
    assert "RuntimeError: bug in the engine" in caplog.text


async def test_serve_stream_logs_connect_and_disconnect(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="broker.transport")
    client, server = pair
    container = FakeContainer()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: serve_stream(server, container, peer="1.2.3.4:5", transport="tcp")
            )
            await client.send_all(b"BYE")
            await read_to_eof(client)
            await client.aclose()
    assert container.handles[0].peer == "1.2.3.4:5"
    assert container.handles[0].transport == "tcp"
    assert "tcp 1.2.3.4:5 connected" in caplog.text
    assert "tcp 1.2.3.4:5 disconnected: closed" in caplog.text


# -- fairness: a big read is fed in pieces, yielding between them ---------------


class PieceRecorder(EchoHandle):
    """Records, per receive_data call, how often another task has run by then."""

    def __init__(self, wake: Callable[[], None], others: list[int]) -> None:
        super().__init__(wake, echo=False)
        self.others = others
        self.seen: list[int] = []

    def receive_data(self, data: bytes) -> bool:
        if data:
            self.seen.append(self.others[0])
        return super().receive_data(data)


async def _feed_one_big_read(handle_factory: Callable[[Wakeup, list[int]], PieceRecorder],
                             size: int, pair: Pair) -> PieceRecorder:
    client, server = pair
    wakeup = Wakeup()
    others = [0]
    handle = handle_factory(wakeup, others)

    async def other_connection() -> None:
        while True:
            others[0] += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(5):
        await client.send_all(b"x" * size)  # one receive_some gets all of it
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_connection)
            nursery.start_soon(drive, server, handle, wakeup)
            while len(handle.received) < size:
                await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
    return handle


async def test_a_long_read_yields_between_pieces(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pump, "TURN_BUDGET", 0.0)  # every piece uses up the budget
    handle = await _feed_one_big_read(lambda w, o: PieceRecorder(w.wake, o), RECEIVE_SIZE,
                                     pair)
    assert handle.chunks == [FEED_SIZE] * (RECEIVE_SIZE // FEED_SIZE)
    # One piece per scheduler batch, and the other task runs once per batch
    # (before or after us: trio may shuffle a batch), so it ran in all the
    # batches strictly between the first piece and the last at least.
    assert handle.seen[-1] - handle.seen[0] >= len(handle.seen) - 2


async def test_a_cheap_read_is_fed_in_one_turn(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pump, "TURN_BUDGET", 60.0)
    handle = await _feed_one_big_read(lambda w, o: PieceRecorder(w.wake, o), RECEIVE_SIZE,
                                     pair)
    # pieces double while within budget: a few calls, and no yield
    sizes = [FEED_SIZE, 2 * FEED_SIZE, 4 * FEED_SIZE]
    assert handle.chunks == [*sizes, RECEIVE_SIZE - sum(sizes)]
    assert len(set(handle.seen)) == 1  # throughput keeps its whole-read batching


async def test_small_reads_go_whole(pair: Pair) -> None:
    handle = await _feed_one_big_read(lambda w, o: PieceRecorder(w.wake, o), FEED_SIZE, pair)
    assert handle.chunks == [FEED_SIZE]


async def test_close_mid_read_stops_feeding(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pump, "TURN_BUDGET", 0.0)
    client, server = pair
    wakeup = Wakeup()
    handle = _handle(wakeup, echo=False)
    with trio.fail_after(5):
        await client.send_all(b"x" * (FEED_SIZE - 3) + b"BYE" + b"y" * 3 * FEED_SIZE)
        await client.send_eof()
        reason = await drive(server, handle, wakeup)
    assert reason == "closed"
    assert handle.chunks == [FEED_SIZE]  # the rest was never handed over


# -- a bug in the handle: its last frames go out before the socket is dropped -----


class BuggyHandle(EchoHandle):
    """Like the engine's error boundary: on `BUG` (or at the first tick after
    it, with `in_tick`), queue a close frame, wake, then raise."""

    def __init__(self, wake: Callable[[], None], *, in_tick: bool = False) -> None:
        super().__init__(wake, echo=False)
        self.in_tick = in_tick
        self.bug_received = False
        self.failed = False
        self.calls_after_bug = 0  # input or ticks handed to us after we raised

    def _fail(self) -> None:
        self.failed = True
        self.out += b"CLOSE(amqp:internal-error)"
        self.wake()
        raise RuntimeError("bug in the engine")

    def receive_data(self, data: bytes) -> bool:
        if self.failed and data:
            self.calls_after_bug += 1
        if data.startswith(b"BUG"):
            self.bug_received = True
            if not self.in_tick:
                self._fail()
        return super().receive_data(data)

    def tick(self) -> float | None:
        if self.failed:
            self.calls_after_bug += 1
        elif self.bug_received:
            self._fail()
        return super().tick()


@pytest.mark.parametrize("in_tick", [False, True])
async def test_a_bug_flushes_the_close_then_raises(pair: Pair, in_tick: bool) -> None:
    client, server = pair
    wakeup = Wakeup()
    handle = BuggyHandle(wakeup.wake, in_tick=in_tick)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                with pytest.raises(RuntimeError, match="bug in the engine"):
                    await drive(server, handle, wakeup)

            nursery.start_soon(run)
            await client.send_all(b"BUG")
            # the close frame, then EOF: the frame went out before the socket closed
            assert await read_to_eof(client) == b"CLOSE(amqp:internal-error)"
            await client.send_all(b"more after the bug")  # read and dropped, never fed
            await client.aclose()
    assert handle.calls_after_bug == 0


async def test_a_bug_while_the_peer_floods_still_gets_the_close_out(pair: Pair) -> None:
    client, server = pair
    wakeup = Wakeup()
    handle = BuggyHandle(wakeup.wake)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                with pytest.raises(RuntimeError):
                    await drive(server, handle, wakeup)

            async def flood() -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while True:
                        await client.send_all(b"z" * 1000)

            nursery.start_soon(run)
            await client.send_all(b"BUG")
            nursery.start_soon(flood)
            assert await read_to_eof(client) == b"CLOSE(amqp:internal-error)"
            await client.aclose()
            nursery.cancel_scope.cancel()


async def test_a_bug_with_a_stuck_peer_is_bounded_by_the_close_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    client, server = trio.testing.lockstep_stream_pair()  # and nobody ever reads
    wakeup = Wakeup()
    handle = BuggyHandle(wakeup.wake)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"BUG")
            start = trio.current_time()
            with pytest.raises(RuntimeError):
                await drive(server, handle, wakeup, close_timeout=2.0)
            assert trio.current_time() - start == pytest.approx(2.0)
            nursery.cancel_scope.cancel()


async def test_serve_stream_logs_a_bug_once_after_the_close_went_out(pair: Pair, 
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="broker.transport")

    class BuggyContainer(FakeContainer):
        def connection_made(self, peer: str, transport: str, wake: Callable[[], None]) -> EchoHandle:
            handle = BuggyHandle(wake)
            self.handles.append(handle)
            return handle

    client, server = pair
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: serve_stream(server, BuggyContainer(), peer="p", transport="tcp")
            )
            await client.send_all(b"BUG")
            assert await read_to_eof(client) == b"CLOSE(amqp:internal-error)"
            await client.aclose()
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    assert tracebacks[0].getMessage() == "tcp p disconnected: internal error"
    assert caplog.text.count("RuntimeError: bug in the engine") == 1


async def test_a_plain_socket_is_read_directly_waiting_or_eagerly() -> None:
    """`_receive_socket` returns what arrived, whether it waits first or tries
    at once, and a reset peer is the BrokenResourceError trio's stream gives."""
    import socket

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        for eager in (False, True):
            async with trio.open_nursery() as nursery:
                got: list[bytes] = []

                async def read(eager: bool = eager, got: list[bytes] = got) -> None:
                    got.append(await pump.receive_socket(ours.fileno(), eager))

                nursery.start_soon(read)
                await trio.sleep(0.05)  # the reader is waiting: nothing has arrived
                assert got == []
                theirs.send(b"frame")
            assert got == [b"frame"]
        theirs.send(b"already there")
        assert await pump.receive_socket(ours.fileno(), True) == b"already there"
        theirs.close()
        assert await pump.receive_socket(ours.fileno(), False) == b""  # EOF
    finally:
        ours.close()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    try:
        ours.send(b"unread")  # closing with unread data and linger 0: a reset
        theirs.close()
        with pytest.raises(trio.BrokenResourceError):
            while await pump.receive_socket(ours.fileno(), False):
                pass
    finally:
        ours.close()


async def test_the_timers_write_a_heartbeat_without_a_task(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a plain socket, output a deadline queued (a heartbeat) is written
    from the timers' call; what the socket does not take at once goes out
    when the poller finds it writable again, in order."""
    import socket

    drains: list[int] = []
    on_writable = socketpump.SocketPump.on_writable

    def counted(self: socketpump.SocketPump) -> None:
        drains.append(1)
        on_writable(self)

    monkeypatch.setattr(socketpump.SocketPump, "on_writable", counted)
    blob = bytes(range(256)) * 4096  # 1 MiB: more than a socket buffer takes at once

    class Heartbeats(EchoHandle):
        def tick(self) -> float | None:
            before = len(self.out)
            deadline = super().tick()
            if len(self.out) > before and self.received.endswith(b"BLOB") and \
                    not self.blob_sent:
                self.out += blob  # with a heartbeat: queued by tick, no wake()
                self.blob_sent = True
            return deadline

    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    peer = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
    wakeup = Wakeup()
    handle = Heartbeats(wakeup.wake, heartbeat=0.05)
    handle.blob_sent = False  # type: ignore[attr-defined]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drive, stream, handle, wakeup)
            await peer.send_all(b"OPEN")
            got = await read_until(peer, b"OPEN" + b"HB" * 3)
            assert got.startswith(b"OPEN") and set(got[4:].split(b"HB")) == {b""}
            assert not drains  # written at once, by the timers' call
            await peer.send_all(b"BLOB")
            got = await read_until(peer, blob)
            assert blob in got  # whole and in order, though the socket took it in parts
            assert drains, "the socket took 1 MiB at once: the wait to write was not tested"
            await peer.send_all(b"BYE")
            await read_to_eof(peer)


# -- the one-task pump of a plain socket --------------------------------------------


def _count_writes(monkeypatch: pytest.MonkeyPatch, fd: int) -> list[bytes]:
    """What the pump wrote to `fd`, one entry per os.write."""
    writes: list[bytes] = []
    write = socketpump.os.write

    def counted(to: int, data: bytes) -> int:
        if to == fd:
            writes.append(bytes(data))
        return write(to, data)

    monkeypatch.setattr(socketpump.os, "write", counted)
    return writes


async def test_a_socket_writes_a_burst_once_whoever_woke_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """100 wakes during the connection's own read, or from another task (the
    flusher's case: a publisher's messages for a consumer), are one write."""
    client, server = socket_pair()
    writes = _count_writes(monkeypatch, server.socket.fileno())
    wakeup = Wakeup()
    handle = _handle(wakeup, echo=False)
    expected = b"".join(b"F%03d" % i for i in range(100))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drive, server, handle, wakeup)
            await client.send_all(b"BURST")
            assert await read_until(client, expected) == expected
            assert writes == [expected]
            for i in range(100):  # another connection's turn queues output for us
                handle.out += b"G%03d" % i
                wakeup.wake()
            again = b"".join(b"G%03d" % i for i in range(100))
            assert await read_until(client, again) == again
            assert writes == [expected, again]
            nursery.cancel_scope.cancel()


async def test_a_socket_pump_ends_when_another_task_ends_the_handle() -> None:
    """The handle may end outside the connection's own read (the server
    stopping, another connection closing it): the wake-up ends the read,
    and the last output still goes out before the graceful close."""
    client, server = socket_pair()
    wakeup = Wakeup()
    handle = _handle(wakeup, echo=False)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            reasons = start_drive(nursery, server, handle, wakeup)
            await trio.sleep(0.05)  # the pump waits to read
            handle.out += b"CLOSE"
            handle._finish()
            wakeup.wake()
            assert await read_to_eof(client) == b"CLOSE"
            await client.aclose()
    assert reasons == ["closed"]
    wakeup.wake()  # a late wake-up writes nothing: the descriptor is no longer ours
    await trio.sleep(0.01)


async def test_a_socket_stuck_peer_gets_close_timeout() -> None:
    import socket

    client, server = socket_pair()
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    wakeup = Wakeup()
    handle = _handle(wakeup)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            async def flood() -> None:  # echoed back to a peer that never reads
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await client.send_all(b"x" * (1 << 20) + b"BYE")

            nursery.start_soon(flood)
            start = trio.current_time()
            reason = await drive(server, handle, wakeup, close_timeout=0.3)
            nursery.cancel_scope.cancel()
    assert reason == "closed; flush timed out"
    assert trio.current_time() - start < 5
    assert handle.received.endswith(b"BYE")


async def test_a_socket_reset_becomes_connection_lost() -> None:
    import socket

    client, server = socket_pair()
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")
    wakeup = Wakeup()
    handle = _handle(wakeup, echo=False)
    with trio.fail_after(5):
        await server.send_all(b"unread")  # closing with unread data and linger 0: a reset
        client.socket.close()
        reason = await drive(server, handle, wakeup)
    assert reason.startswith("transport error: BrokenResourceError")
    assert handle.lost_calls >= 1


async def test_a_socket_full_at_the_end_still_gets_everything_out(
        caplog: pytest.LogCaptureFixture) -> None:
    """The socket is full when the handle ends (the poller watches it for
    writing): the end's flush writes the rest itself, in order, and nothing
    fails."""
    import socket

    client, server = socket_pair()
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    wakeup = Wakeup()
    handle = _handle(wakeup)
    payload = bytes(range(256)) * 1024  # echoed back: more than the socket takes at once
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            reasons = start_drive(nursery, server, handle, wakeup)
            await client.send_all(payload + b"BYE")
            await trio.sleep(0.1)  # nobody reads meanwhile: the echo fills the socket
            assert await read_to_eof(client) == payload + b"BYE"
            await client.aclose()
    assert reasons == ["closed"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_partial_write_keeps_a_view_of_the_rest_not_a_copy() -> None:
    """A big output the socket takes in many partial writes: copying the rest
    after each one made a 64 KiB WebSocket consumer cost twice the CPU."""
    import socket

    client, server = socket_pair()
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    wakeup = Wakeup()
    handle = _handle(wakeup, echo=False)
    handle.out += bytes(1 << 20)
    pump = socketpump.SocketPump(server, handle, wakeup, 1.0)
    try:
        assert not pump._write_out()  # the socket is full
        rest = pump.unsent
        assert isinstance(rest, memoryview)
        assert len(rest.obj) == 1 << 20  # type: ignore[arg-type]  # the handle's buffer itself
        assert 0 < len(rest) < 1 << 20
    finally:
        await client.aclose()
        await server.aclose()


async def test_a_reset_while_the_socket_is_full_is_a_transport_error(
        caplog: pytest.LogCaptureFixture) -> None:
    """The poller watches a full socket for writing; the peer resets it: the
    connection ends as lost, with no internal error logged."""
    import socket

    client, server = socket_pair()
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")
    wakeup = Wakeup()
    handle = _handle(wakeup, echo=False)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            reasons = start_drive(nursery, server, handle, wakeup)
            handle.out += bytes(1 << 20)  # more than the socket takes: the poller waits
            wakeup.wake()
            await trio.sleep(0.1)
            await client.send_all(b"unread")  # unread data and linger 0: a reset
            client.socket.close()
    assert reasons and reasons[0].startswith("transport error"), reasons
    assert handle.lost_calls >= 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- an idle TCP socket holds back a lone heartbeat ---------------------------------


class AmqpHeartbeats(EchoHandle):
    """An EchoHandle for which AMQP's own empty frames (one or two, as the
    engine's receive_data says) are the quiet read."""

    def receive_data(self, data: bytes) -> bool:
        if data in BARE_HEARTBEATS and not self.finished:
            self.chunks.append(len(data))
            self.received += data
            return True
        return super().receive_data(data)


def _lowat(stream: trio.abc.Stream) -> int:
    import socket

    assert isinstance(stream, trio.SocketStream)
    return int(stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await trio.sleep(0.01)


async def test_after_a_bare_heartbeat_the_kernel_holds_back_the_next_one() -> None:
    """A quiet read sets the socket's SO_RCVLOWAT past one heartbeat: the next
    lone heartbeat wakes nobody, anything more does (both are read then),
    and that read sets it back."""
    client, server = tcp_pair()
    wakeup = Wakeup()
    handle = AmqpHeartbeats(wakeup.wake)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            start_drive(nursery, server, handle, wakeup)
            await client.send_all(b"ab")
            assert await read_until(client, b"ab") == b"ab"
            assert _lowat(server) == 1
            await client.send_all(HEARTBEAT)
            await _until(lambda: handle.received.endswith(HEARTBEAT))
            assert _lowat(server) == socketpump.HOLD_BACK_LOWAT == len(HEARTBEAT) + 1
            await client.send_all(HEARTBEAT)
            await trio.sleep(0.2)
            assert handle.received == b"ab" + HEARTBEAT, "the lone heartbeat was held back"
            await client.send_all(HEARTBEAT)  # two waiting: readable, one quiet read
            await _until(lambda: handle.received.endswith(HEARTBEAT * 3))
            assert handle.chunks[-1] == 2 * len(HEARTBEAT)
            assert _lowat(server) == socketpump.HOLD_BACK_LOWAT
            await client.send_all(HEARTBEAT)
            await trio.sleep(0.05)
            await client.send_all(b"c")  # a frame's first byte, say: readable again
            assert await read_until(client, HEARTBEAT + b"c") == HEARTBEAT + b"c"
            assert _lowat(server) == 1
            await client.send_all(b"BYE")
            await read_to_eof(client)


async def test_the_timers_read_what_the_kernel_held_back_before_ticking() -> None:
    """The deadline's call reads a held-back heartbeat first, so the handle's
    tick (the idle limit) has heard of it."""
    client, server = tcp_pair()
    wakeup = Wakeup()
    handle = AmqpHeartbeats(wakeup.wake, heartbeat=0.1)
    seen_at_tick: list[bytes] = []
    tick = handle.tick

    def recording_tick() -> float | None:
        seen_at_tick.append(bytes(handle.received))
        return tick()

    handle.tick = recording_tick  # type: ignore[method-assign]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            start_drive(nursery, server, handle, wakeup)
            await client.send_all(b"OPEN")  # from now on a deadline every 0.1 s
            await read_until(client, b"OPEN")
            await client.send_all(HEARTBEAT)
            await _until(lambda: handle.received.endswith(HEARTBEAT))
            await client.send_all(HEARTBEAT)  # held back, until the next deadline
            await _until(lambda: handle.received.endswith(HEARTBEAT * 2))
            assert any(seen.endswith(HEARTBEAT * 2) for seen in seen_at_tick), \
                "read at the deadline, before the tick"
            await client.send_all(b"BYE")
            await read_to_eof(client)


async def test_the_peers_eof_is_never_held_back() -> None:
    client, server = tcp_pair()
    wakeup = Wakeup()
    handle = AmqpHeartbeats(wakeup.wake)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            reasons = start_drive(nursery, server, handle, wakeup)
            await client.send_all(HEARTBEAT)
            await _until(lambda: handle.received.endswith(HEARTBEAT))
            await client.send_all(HEARTBEAT)
            await client.send_eof()
            await _until(lambda: bool(reasons))
    assert reasons == ["peer disconnected"]
    assert handle.received == HEARTBEAT * 2 and handle.eof


class IdleLimited(AmqpHeartbeats):
    """An idle limit kept as the engine keeps it: done once nothing was read
    for `limit` seconds when a tick comes."""

    def __init__(self, wake: Callable[[], None], limit: float) -> None:
        super().__init__(wake)
        self.limit = limit
        self.last = trio.current_time()
        self.timed_out = False

    def receive_data(self, data: bytes) -> bool:
        self.last = trio.current_time()
        return super().receive_data(data)

    def tick(self) -> float | None:
        super().tick()
        if self.finished:
            return None
        if trio.current_time() >= self.last + self.limit:
            self.timed_out = True
            self._finish()
            return None
        return self.last + self.limit


async def test_a_wake_reads_what_the_kernel_held_back_before_ticking() -> None:
    """A peer heartbeating at half our idle limit (what the engine asks for),
    on a connection that others wake often: the flusher's tick, like the
    timers', first reads what the kernel held back, so the limit never
    closes a live connection."""
    client, server = tcp_pair()
    wakeup = Wakeup()
    handle = IdleLimited(wakeup.wake, limit=0.4)

    async def wake_often() -> None:
        while True:
            await trio.sleep(0.005)
            wakeup.wake()  # as another connection's message for this one does

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            reasons = start_drive(nursery, server, handle, wakeup)
            nursery.start_soon(wake_often)
            for _ in range(10):  # 2 s: five idle limits
                await client.send_all(HEARTBEAT)
                await trio.sleep(0.2)
            assert not handle.timed_out and not reasons
            nursery.cancel_scope.cancel()
