"""TCP: accepted sockets reach the driver with Nagle off."""

from __future__ import annotations

import socket

import trio
import trio.testing
from fakes import FakeContainer, read_to_eof, read_until

from broker.transports.tcp import handle_tcp_stream, serve_tcp


async def test_serve_tcp_echo_and_close() -> None:
    container = FakeContainer()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_tcp, listeners, container)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            client_port = client.socket.getsockname()[1]
            await client.send_all(b"hello")
            assert await read_until(client, b"hello") == b"hello"
            await client.send_all(b"BYE")
            assert await read_to_eof(client) == b"BYE"
            await client.aclose()
            nursery.cancel_scope.cancel()
    handle = container.handles[0]
    assert handle.transport == "tcp"
    assert handle.peer == f"127.0.0.1:{client_port}"


async def test_nodelay_is_set() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            client = await trio.open_tcp_stream("127.0.0.1", port)
            server = await listeners[0].accept()
            nursery.start_soon(handle_tcp_stream, server, FakeContainer())
            await trio.testing.wait_all_tasks_blocked()
            assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            await client.send_all(b"BYE")
            await read_to_eof(client)
            await client.aclose()
        await listeners[0].aclose()
