"""The driver over in-memory streams: pumping, coalescing, timers, endings."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from fakes import CountingStream, EchoHandle, FakeContainer, Trickle, read_to_eof, read_until

from broker.transports.driver import Wakeup, drive, serve_stream


def _handle(wakeup: Wakeup, **options: object) -> EchoHandle:
    return EchoHandle(wakeup.wake, **options)  # type: ignore[arg-type]


async def test_echo_then_close() -> None:
    client, server = trio.testing.memory_stream_pair()
    wakeup = Wakeup()
    handle = _handle(wakeup)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            reasons: list[str] = []

            async def run() -> None:
                reasons.append(await drive(server, handle, wakeup))

            nursery.start_soon(run)
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


async def test_eof_reaches_the_handle_as_empty_data() -> None:
    client, server = trio.testing.memory_stream_pair()
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


async def test_timer_deadline_appears_after_a_receive(autojump_clock: trio.abc.Clock) -> None:
    client, server = trio.testing.memory_stream_pair()
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


async def test_graceful_close_half_closes_and_drains() -> None:
    client, server = trio.testing.memory_stream_pair()
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


async def test_cancellation_closes_and_reports_lost() -> None:
    client, server = trio.testing.memory_stream_pair()
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


async def test_serve_stream_survives_engine_bugs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="broker.transport")
    client, server = trio.testing.memory_stream_pair()
    container = FakeContainer(fail=True)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:  # would fail if the bug escaped
            nursery.start_soon(lambda: serve_stream(server, container, peer="p", transport="tcp"))
            await client.send_all(b"boom")
            assert await read_to_eof(client) == b""
    assert "tcp p disconnected: internal error" in caplog.text
    assert "RuntimeError: bug in the engine" in caplog.text


async def test_serve_stream_logs_connect_and_disconnect(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="broker.transport")
    client, server = trio.testing.memory_stream_pair()
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
