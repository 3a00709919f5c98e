"""AMQP over WebSocket: the handshake rules of NOTES.md, message/stream
adaptation, and closing; over memory streams and over a loopback socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from fakes import FakeContainer, read_to_eof, read_until, tcp_pair
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket,
    wrap_client_stream,
)

from broker.config import Config
from broker.transports.driver import ContainerLike
from broker.transports.websocket import (
    handle_websocket_stream,
    pick_subprotocol,
    serve_websocket,
)

MiB = 1024 * 1024


@pytest.fixture(params=["memory", "socket"])
def over(request: pytest.FixtureRequest) -> str:
    """What carries the tests' WebSockets (see ws_client)."""
    return str(request.param)


@asynccontextmanager
async def ws_client(
    container: ContainerLike,
    config: Config | None = None,
    *,
    path: str = "/ws",
    subprotocols: Sequence[str] = ("amqp",),
    over: str = "memory",
) -> AsyncIterator[WebSocketConnection]:
    """A client WebSocket connected to our handler over memory streams (the
    driver's StreamPump) or, `over="socket"`, a socket pair (its SocketPump)."""
    client_stream: trio.abc.Stream
    server_stream: trio.abc.Stream
    if over == "memory":
        client_stream, server_stream = trio.testing.memory_stream_pair()
    else:
        import socket

        a, b = socket.socketpair()
        client_stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
        server_stream = trio.SocketStream(trio.socket.from_stdlib_socket(b))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle_websocket_stream, server_stream, container, config or Config())
        ws = await wrap_client_stream(
            nursery,
            client_stream,  # type: ignore[arg-type]
            "localhost",
            path,
            subprotocols=list(subprotocols),
            max_message_size=4 * MiB,
        )
        yield ws
        nursery.cancel_scope.cancel()


async def raw_upgrade(config: Config, path: str, protocols: Sequence[str]) -> bytes:
    """Send a hand-written upgrade request; return the whole response."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle_websocket_stream, server, FakeContainer(), config)
        await client.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        return await read_to_eof(client)


@pytest.mark.parametrize(
    ("offered", "picked"),
    [
        (["binary", "AMQPWSB10", "amqp"], "amqp"),  # rhea in the browser
        (["AMQPWSB10"], "AMQPWSB10"),  # pyamqp, uAMQP
        (["binary"], "binary"),  # websockify-style tools
        (["mqtt", "binary"], "binary"),
        ([], None),  # rhea's Node example
    ],
)
def test_pick_subprotocol(offered: list[str], picked: str | None) -> None:
    assert pick_subprotocol(offered) == picked


def test_pick_subprotocol_refuses_unknown_only() -> None:
    with pytest.raises(ValueError, match="mqtt"):
        pick_subprotocol(["mqtt", "AMQP"])  # tokens are case-sensitive


@pytest.mark.parametrize(
    ("offered", "echoed"),
    [(["binary", "AMQPWSB10", "amqp"], "amqp"), (["AMQPWSB10"], "AMQPWSB10"), ([], None)],
)
async def test_handshake_echoes_the_pick(over: str, offered: list[str], echoed: str | None) -> None:
    container = FakeContainer()
    with trio.fail_after(5):
        async with ws_client(container, subprotocols=offered, over=over) as ws:
            assert ws.subprotocol == echoed
            await ws.send_message(b"hi")
            assert await ws.get_message() == b"hi"
    assert container.handles[0].transport == "ws"


async def test_unknown_subprotocols_get_400_with_reason() -> None:
    with trio.fail_after(5):
        response = await raw_upgrade(Config(), "/", ["mqtt", "stomp"])
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b"unsupported WebSocket subprotocol(s) mqtt, stomp" in response


async def test_ws_path_restricts_paths(over: str) -> None:
    config = Config(ws_path="/ws")
    with trio.fail_after(5):
        response = await raw_upgrade(config, "/other", ["amqp"])
        assert response.startswith(b"HTTP/1.1 404 ")
        assert b"no AMQP endpoint at /other" in response
        async with ws_client(FakeContainer(), config, path="/ws?x=1", over=over) as ws:
            assert ws.subprotocol == "amqp"


async def test_any_path_when_ws_path_unset(over: str) -> None:
    with trio.fail_after(5):
        async with ws_client(FakeContainer(), path="/$servicebus/websocket", over=over) as ws:
            assert ws.subprotocol == "amqp"


async def test_messages_are_a_byte_stream(over: str) -> None:
    container = FakeContainer(echo=False)
    frame = bytes(range(256)) * 3
    with trio.fail_after(5):
        async with ws_client(container, over=over) as ws:
            for i in range(0, len(frame), 7):  # one frame over many messages
                await ws.send_message(frame[i : i + 7])
            await ws.send_message(b"")  # an empty message is not EOF
            await ws.send_message(frame * 3)  # several frames in one message
            await ws.send_message(b"BYE")
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
    assert container.handles[0].received == frame * 4 + b"BYE"


async def test_amqp_close_then_websocket_close(over: str) -> None:
    container = FakeContainer()
    with trio.fail_after(5):
        async with ws_client(container, over=over) as ws:
            await ws.send_message(b"BYE")
            assert await ws.get_message() == b"BYE"
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
            assert ws.closed is not None and ws.closed.code == 1000  # closing handshake


async def test_text_message_closes_with_1003(over: str) -> None:
    container = FakeContainer()
    with trio.fail_after(5):
        async with ws_client(container, over=over) as ws:
            await ws.send_message("AMQP as text")
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason is not None and info.value.reason.code == 1003
            await container.handles[0].closed.wait()
    assert container.handles[0].eof


async def test_websocket_close_is_eof_for_the_engine(over: str) -> None:
    container = FakeContainer()
    with trio.fail_after(5):
        async with ws_client(container, over=over) as ws:
            await ws.send_message(b"x")
            await ws.get_message()
            await ws.aclose()
            await container.handles[0].closed.wait()
    assert container.handles[0].eof


async def test_large_message_accepted(over: str) -> None:
    container = FakeContainer(echo=False)
    big = bytes(range(256)) * (2 * MiB // 256)
    with trio.fail_after(10):
        async with ws_client(container, over=over) as ws:
            await ws.send_message(big + b"BYE")
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
            assert ws.closed is not None and ws.closed.code == 1000
    assert container.handles[0].received == big + b"BYE"


async def test_a_big_answer_arrives_whole(over: str) -> None:
    """Output from 16 KiB on goes out beside its frame header (writev) over a
    socket, in many partial writes: the client reads exactly what was sent."""
    container = FakeContainer()
    big = bytes(range(256)) * (MiB // 256) + b"!"
    got = b""
    with trio.fail_after(10):
        async with ws_client(container, over=over) as ws:
            await ws.send_message(big)
            while len(got) < len(big):
                got += await ws.get_message()  # type: ignore[operator]
    assert got == big


async def test_a_write_that_stops_inside_a_frame_header_goes_on_from_there(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The socket takes one byte of a big frame's header: the rest of the
    header, then the payload, follow, and the client reads one whole frame."""
    import os

    from broker.transports import socketpump

    real_writev = os.writev
    heads: list[bytes] = []

    def stingy_once(fd: int, buffers: Sequence[bytes]) -> int:
        if not heads:
            heads.append(bytes(buffers[0]))
            return os.write(fd, bytes(buffers[0][:1]))
        return real_writev(fd, buffers)

    monkeypatch.setattr(socketpump.os, "writev", stingy_once)
    container = FakeContainer()
    big = b"x" * socketpump.WRITEV_FROM * 2
    got = b""
    with trio.fail_after(10):
        async with ws_client(container, over="socket") as ws:
            await ws.send_message(big)
            while len(got) < len(big):
                got += await ws.get_message()  # type: ignore[operator]
    assert heads and len(heads[0]) > 1  # the stingy write did cut a header short
    assert got == big


async def test_pings_are_answered(over: str) -> None:
    with trio.fail_after(5):
        async with ws_client(FakeContainer(), over=over) as ws:
            await ws.ping(b"are you there")


# A raw client's upgrade and frames (masked, as a client must, by XOR with zeros)
RAW_UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: amqp\r\n\r\n")
ZERO_MASK = b"\x00\x00\x00\x00"
HUSH_FRAME = b"\x82\x84" + ZERO_MASK + b"HUSH"  # FakeContainer's stand-in for a heartbeat
PING_FRAME = b"\x89\x81" + ZERO_MASK + b"p"  # 7 bytes: smaller than a heartbeat's frame


async def test_a_ping_read_with_a_heartbeat_is_still_answered() -> None:
    """A read holding a heartbeat's payload (which spares the pump its tick and
    write) and a ping: the pong still goes out at once."""
    import socket

    a, b = socket.socketpair()
    client = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    server = trio.SocketStream(trio.socket.from_stdlib_socket(b))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_websocket_stream, server, FakeContainer(), Config())
            await client.send_all(RAW_UPGRADE)
            response = await read_until(client, b"\r\n\r\n")
            assert response.startswith(b"HTTP/1.1 101")
            await client.send_all(HUSH_FRAME + PING_FRAME)  # one write: one read on the other side
            assert (await read_until(client, b"\x8a\x01p")).endswith(b"\x8a\x01p")  # the pong
            nursery.cancel_scope.cancel()


async def test_a_websocket_never_lets_the_kernel_hold_back_a_small_frame() -> None:
    """After a quiet read, a plain AMQP socket lets the kernel hold back
    anything no bigger than a heartbeat (socketpump.py); a WebSocket's must
    not: a client's ping or close can be smaller than its heartbeat."""
    import socket

    client, server = tcp_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_websocket_stream, server, FakeContainer(), Config())
            await client.send_all(RAW_UPGRADE)
            assert (await read_until(client, b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
            await client.send_all(HUSH_FRAME)
            await trio.sleep(0.1)  # read, and found quiet
            assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
            await client.send_all(PING_FRAME)
            assert (await read_until(client, b"\x8a\x01p")).endswith(b"\x8a\x01p")
            nursery.cancel_scope.cancel()


async def test_over_a_loopback_socket() -> None:
    container = FakeContainer()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_websocket, listeners, container, Config(ws_path="/ws"))
            async with open_websocket(
                "127.0.0.1", port, "/ws", use_ssl=False, subprotocols=["AMQPWSB10"]
            ) as ws:
                assert ws.subprotocol == "AMQPWSB10"
                await ws.send_message(b"hello")
                assert await ws.get_message() == b"hello"
                await ws.send_message(b"BYE")
                assert await ws.get_message() == b"BYE"
                with pytest.raises(ConnectionClosed):
                    await ws.get_message()
            assert container.handles[0].peer.startswith("127.0.0.1:")
            with pytest.raises(ConnectionRejected) as info:
                async with open_websocket(
                    "127.0.0.1", port, "/ws", use_ssl=False, subprotocols=["mqtt"]
                ):
                    pass
            assert info.value.status_code == 400
            assert info.value.body is not None and b"unsupported" in info.value.body
            nursery.cancel_scope.cancel()


async def test_real_engine_reads_a_frame_split_over_messages(over: str) -> None:
    from broker import container as container_mod
    from broker.codec.performatives import Open
    from broker.framing import NEED_DATA, Frame, FrameReader, decode_frame_body, encode_frame

    container = container_mod.Container(Config(), clock=trio.current_time)
    request = bytearray(b"AMQP\x00\x01\x00\x00")
    encode_frame(request, 0, Open(container_id="ws-test"))
    reader = FrameReader()
    with trio.fail_after(5):
        async with ws_client(container, subprotocols=["binary", "AMQPWSB10", "amqp"],
                             over=over) as ws:
            for i in range(0, len(request), 3):
                await ws.send_message(bytes(request[i : i + 3]))
            items: list[object] = []
            while len(items) < 2:
                reader.feed(await ws.get_message())  # type: ignore[arg-type]
                while (item := reader.next()) is not NEED_DATA:
                    items.append(item)
    header, frame = items[:2]
    assert header.raw == b"AMQP\x00\x01\x00\x00"  # type: ignore[attr-defined]
    assert isinstance(frame, Frame)
    opened, _ = decode_frame_body(frame.body)
    assert isinstance(opened, Open) and opened.container_id == "amqpws-broker"


async def test_silent_client_is_dropped_after_handshake_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_websocket_stream, server, FakeContainer(), Config())
            start = trio.current_time()
            assert await read_to_eof(client) == b""
    assert trio.current_time() - start == pytest.approx(10.0)


async def test_plain_http_goes_to_the_containers_http_handler() -> None:
    client, server = trio.testing.memory_stream_pair()
    container = FakeContainer()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_websocket_stream, server, container, Config())
            await client.send_all(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await read_to_eof(client)
            assert answer.startswith(b"HTTP/1.1 404")
            assert answer.endswith(b"nothing here in the fake\n")
            assert b"connection: close" in answer.lower()
            nursery.cancel_scope.cancel()
    (request,) = container.http_requests
    assert (request.method, request.target, request.headers["host"]) == ("GET", "/metrics?x=1",
                                                                         "x")


async def test_plain_http_post_bodies_arrive_and_are_bounded() -> None:
    container = FakeContainer()
    for body, status in ((b'{"a": 1}', b"404"), (b"x" * (1024 * 1024 + 1), b"413")):
        client, server = trio.testing.memory_stream_pair()
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(handle_websocket_stream, server, container, Config())
                await client.send_all(b"POST /api/publish HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: " + str(len(body)).encode() +
                                      b"\r\n\r\n" + body)
                assert (await read_to_eof(client)).startswith(b"HTTP/1.1 " + status)
                nursery.cancel_scope.cancel()
    assert [r.body for r in container.http_requests] == [b'{"a": 1}']


async def test_a_huge_request_head_gets_431() -> None:
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_websocket_stream, server, FakeContainer(), Config())
            await client.send_all(b"GET / HTTP/1.1\r\nX-Junk: " + b"j" * 70000)
            assert (await read_to_eof(client)).startswith(b"HTTP/1.1 431")
            nursery.cancel_scope.cancel()


async def test_64_bit_length_with_the_top_bit_set_closes_with_1002() -> None:
    lines = [
        "GET /ws HTTP/1.1",
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: amqp",
    ]
    container = FakeContainer()
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_websocket_stream, server, container, Config())
            await client.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
            response = await read_until(client, b"\r\n\r\n")
            assert response.startswith(b"HTTP/1.1 101")
            bad = bytes((0x82, 0xFF)) + (1 << 63).to_bytes(8, "big") + b"mask" + b"data"
            await client.send_all(bad)
            closing = await read_to_eof(client)
            await client.aclose()
    assert closing[:2] == b"\x88\x10"  # a close frame: status 1002, reason "protocol error"
    assert closing[2:4] == (1002).to_bytes(2, "big")
    assert container.handles[0].received == b""  # nothing of the bad frame reached AMQP
    assert container.handles[0].eof


async def test_a_pong_is_not_starved_by_a_busy_writer(autojump_clock: trio.abc.Clock) -> None:
    """Senders take turns first come, first served: the reader's pong goes out
    after the writer's current message, however much the writer has queued."""
    from broker.transports.websocket import WebSocketStream

    class SlowSocket(trio.abc.Stream):
        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            await trio.sleep(0.001)

        async def wait_send_all_might_not_block(self) -> None:
            pass

        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            await trio.sleep_forever()
            return b""

        async def aclose(self) -> None:
            pass

    ws = WebSocketStream(SlowSocket())
    writes = 0
    pong_after: list[int] = []

    async def writer() -> None:
        nonlocal writes
        while True:
            await ws.send_all(b"x" * 100)
            writes += 1

    async def reader() -> None:
        await trio.sleep(0.01)
        start = writes
        await ws._send_raw(b"\x8a\x00")  # a pong
        pong_after.append(writes - start)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        nursery.start_soon(reader)
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert pong_after and pong_after[0] <= 1
