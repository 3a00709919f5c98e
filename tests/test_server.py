"""The server on loopback sockets: bound ports, both transports, shutdown."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest
import trio
from trio_websocket import open_websocket

from broker import container as container_mod
from broker.codec.performatives import Close, Open
from broker.config import Config
from broker.framing import NEED_DATA, Frame, FrameReader, decode_frame_body, encode_frame
from broker.server import ServerInfo, serve

HEADER = b"AMQP\x00\x01\x00\x00"
FREE = Config(port=0, ws_port=0)


class SpyContainer(container_mod.Container):
    """The real container, counting shutdown() calls."""

    shutdown_calls = 0

    def housekeeping(self) -> None:
        pass

    def shutdown(self) -> None:
        self.shutdown_calls += 1
        super().shutdown()


def spy(config: Config) -> SpyContainer:
    return SpyContainer(config, clock=trio.current_time)


class AmqpClient:
    """Just enough of a client: header, open, read performatives, close."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = FrameReader()

    async def open(self) -> Open:
        out = bytearray(HEADER)
        encode_frame(out, 0, Open(container_id="test-client"))
        await self.stream.send_all(bytes(out))
        assert await self.next() == HEADER
        opened = await self.next()
        assert isinstance(opened, Open)
        return opened

    async def next(self) -> object:
        while (item := self.reader.next()) is NEED_DATA:
            data = await self.stream.receive_some()
            assert data, "unexpected EOF"
            self.reader.feed(data)
        if isinstance(item, Frame):
            return decode_frame_body(item.body)[0]
        return item.raw  # type: ignore[union-attr]

    async def close(self) -> None:
        out = bytearray()
        encode_frame(out, 0, Close())
        await self.stream.send_all(bytes(out))


async def start(
    nursery: trio.Nursery,
    config: Config = FREE,
    factory: Callable[[Config], object] = spy,
    **kw: object,
) -> ServerInfo:
    info: ServerInfo = await nursery.start(
        lambda task_status: serve(config, container_factory=factory, task_status=task_status, **kw)  # type: ignore[arg-type]
    )
    return info


async def test_reports_bound_ports_and_urls() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery)
            assert info.port and info.ws_port and info.port != info.ws_port
            assert info.amqp_url == f"amqp://127.0.0.1:{info.port}"
            assert info.ws_url == f"ws://127.0.0.1:{info.ws_port}/ws"
            info.shutdown()


async def test_listeners_can_be_disabled_and_ws_path_shows() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, Config(port=None, ws_port=0, ws_path="/amqp"))
            assert info.port is None and info.amqp_url is None
            assert info.ws_url == f"ws://127.0.0.1:{info.ws_port}/amqp"
            info.shutdown()


async def test_port_in_use_raises_plainly() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    taken = listeners[0].socket.getsockname()[1]
    with pytest.raises(OSError) as info:
        await serve(Config(port=0, ws_port=taken), container_factory=spy)
    assert info.value.errno == errno.EADDRINUSE
    await listeners[0].aclose()


async def test_amqp_over_tcp_and_websocket() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery)
            tcp = AmqpClient(await trio.open_tcp_stream("127.0.0.1", info.port))  # type: ignore[arg-type]
            assert (await tcp.open()).container_id == "amqpws-broker"
            await tcp.close()
            assert isinstance(await tcp.next(), Close)
            assert await tcp.stream.receive_some() == b""  # the server half-closes
            await tcp.stream.aclose()
            async with open_websocket(
                "127.0.0.1",
                info.ws_port,
                "/ws",
                use_ssl=False,
                subprotocols=["amqp"],  # type: ignore[arg-type]
            ) as ws:
                out = bytearray(HEADER)
                encode_frame(out, 0, Open(container_id="ws-client"))
                await ws.send_message(bytes(out))
                reply = bytearray()
                while len(reply) <= 8:
                    reply += await ws.get_message()  # type: ignore[operator]
                assert reply.startswith(HEADER)
            info.shutdown()


@pytest.mark.parametrize("how", ["shutdown", "cancel"])
async def test_graceful_shutdown_closes_with_forced(how: str) -> None:
    server_scope = trio.CancelScope()
    returned = trio.Event()

    async def run_server(task_status: trio.TaskStatus[ServerInfo]) -> None:
        with server_scope:
            await serve(FREE, container_factory=spy, task_status=task_status)
        returned.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info: ServerInfo = await nursery.start(run_server)
            client = AmqpClient(await trio.open_tcp_stream("127.0.0.1", info.port))  # type: ignore[arg-type]
            await client.open()
            if how == "shutdown":
                info.shutdown()
            else:
                server_scope.cancel()
            close = await client.next()
            assert isinstance(close, Close) and close.error is not None
            assert close.error.condition == "amqp:connection:forced"
            await client.close()
            assert await client.stream.receive_some() == b""  # then the server closes
            await client.stream.aclose()
            await returned.wait()
    assert info.container.shutdown_calls == 1  # type: ignore[attr-defined]
    assert server_scope.cancelled_caught == (how == "cancel")


async def test_shutdown_grace_bounds_stragglers() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, shutdown_grace=0.3)
            client = AmqpClient(await trio.open_tcp_stream("127.0.0.1", info.port))  # type: ignore[arg-type]
            await client.open()
            started = trio.current_time()
            info.shutdown()
            assert isinstance(await client.next(), Close)  # and we never answer it
        assert trio.current_time() - started < 1.5  # the grace, not the engine's 2 s
        assert await client.stream.receive_some() == b""
