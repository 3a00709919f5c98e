"""Hosted connections (hosting.py): a plain socket accepted by a listener has
no task while it is open; its end gets one; the listeners' nursery still
waits for it, and cancelling that nursery still closes it."""

from __future__ import annotations

import functools
import logging

import pytest
import trio
import trio.testing
from fakes import FakeContainer, read_to_eof, read_until

from broker.transports import poller
from broker.transports.tcp import serve_tcp

pytestmark = pytest.mark.skipif(not poller.supported(), reason="the poller needs epoll")


async def _listen() -> tuple[list[trio.SocketListener], int]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    return listeners, listeners[0].socket.getsockname()[1]


async def test_an_open_connection_holds_no_task() -> None:
    container = FakeContainer()
    listeners, port = await _listen()
    with trio.fail_after(10):
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as listening:
                await listening.start(functools.partial(
                    serve_tcp, listeners, container, handler_nursery=connections))
                clients = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
                for i, client in enumerate(clients):
                    await client.send_all(b"hello%d" % i)
                    assert await read_until(client, b"hello%d" % i) == b"hello%d" % i
                await trio.testing.wait_all_tasks_blocked()
                names = [t.name for t in connections.child_tasks]
                assert len(names) == 1 and names[0].endswith("Host.keep"), names
                # the end gets a task of its own, which flushes and closes
                await clients[0].send_all(b"BYE")
                assert await read_to_eof(clients[0]) == b"BYE"
                await clients[0].aclose()
                listening.cancel_scope.cancel()
            # the listeners are gone; the nursery waits for the open connections
            await trio.testing.wait_all_tasks_blocked()
            assert len(connections.child_tasks) == 1
            for client in clients[1:]:
                await client.send_all(b"BYE")
                assert await read_to_eof(client) == b"BYE"
                await client.aclose()
    assert len(container.handles) == 3
    assert all(h.done for h in container.handles)  # each closed by its BYE


async def test_cancelling_the_nursery_closes_hosted_connections(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="broker.transport")
    container = FakeContainer()
    listeners, port = await _listen()
    with trio.fail_after(10):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as connections:
                await connections.start(serve_tcp, listeners, container)
                client = await trio.open_tcp_stream("127.0.0.1", port)
                await client.send_all(b"hello")
                assert await read_until(client, b"hello") == b"hello"
                connections.cancel_scope.cancel()
            assert await read_to_eof(client) == b""  # closed without ceremony
            await client.aclose()
            outer.cancel_scope.cancel()
    handle = container.handles[0]
    assert handle.lost_calls >= 1
    assert "disconnected: server stopped" in caplog.text


async def test_after_the_listeners_stop_a_handler_drives_its_own_connection() -> None:
    """A handler still running when the listeners stopped (an upgrade that
    finished during the grace) is not adopted: the Host's keep may be gone;
    it drives the connection in its own task, to the end."""
    import socket

    from broker.transports import hosting
    from broker.transports.driver import serve_stream

    container = FakeContainer()
    ours, theirs = socket.socketpair()
    client = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
    server = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            host = hosting.Host(nursery)
            host.close()
            token = hosting.set_current(host)
            try:
                async def serve() -> None:
                    handed_over.append(await serve_stream(
                        server, container, peer="p", transport="tcp"))

                handed_over: list[bool] = []
                nursery.start_soon(serve)
                await client.send_all(b"BYE")
                assert await read_to_eof(client) == b"BYE"
                await client.aclose()
            finally:
                hosting.reset_current(token)
    assert handed_over == [False]
    assert container.handles[0].done
