"""The server on loopback sockets: bound ports, both transports, shutdown."""

from __future__ import annotations

import errno
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket

from broker import container as container_mod
from broker.codec.messaging import Source, Target
from broker.codec.performatives import Attach, Begin, Close, Open, Role
from broker.config import Config
from broker.engine.connection import Connection
from broker.framing import NEED_DATA, Frame, FrameReader, decode_frame_body, encode_frame
from broker.server import ServerInfo, serve

HEADER = b"AMQP\x00\x01\x00\x00"
FREE = Config(port=0, ws_port=0)


class SpyContainer(container_mod.Container):
    """The real container, counting shutdown() calls."""

    shutdown_calls = 0

    def housekeeping(self, rss: int | None = None) -> None:
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


# -- the error boundary holds on the wire ----------------------------------------


async def _attach_and_expect_internal_error(info: ServerInfo) -> None:
    client = AmqpClient(await trio.open_tcp_stream("127.0.0.1", info.port))  # type: ignore[arg-type]
    await client.open()
    out = bytearray()
    encode_frame(out, 0, Begin(next_outgoing_id=0, incoming_window=100, outgoing_window=100))
    encode_frame(out, 0, Attach(name="l", handle=0, role=Role.SENDER, source=Source(),
                                target=Target(address="/queues/q"), initial_delivery_count=0))
    await client.stream.send_all(bytes(out))
    got = await client.next()
    while not isinstance(got, Close):
        got = await client.next()
    assert got.error is not None and got.error.condition == "amqp:internal-error"
    await client.close()
    assert await client.stream.receive_some() == b""  # the close came before the socket went
    await client.stream.aclose()


async def test_an_engine_bug_reaches_the_peer_as_internal_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dispatch = Connection._dispatch_frame

    def buggy(self: Connection, frame: Frame) -> None:
        if frame.body and isinstance(decode_frame_body(frame.body)[0], Attach):
            raise RuntimeError("bug in the engine")
        dispatch(self, frame)

    monkeypatch.setattr(Connection, "_dispatch_frame", buggy)
    caplog.set_level(logging.INFO)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery)
            await _attach_and_expect_internal_error(info)
            info.shutdown()
    driver_tracebacks = [r for r in caplog.records if r.exc_info and r.name == "broker.transport"]
    assert len(driver_tracebacks) == 1
    assert "disconnected: internal error" in driver_tracebacks[0].getMessage()


async def test_a_container_bug_reaches_the_peer_as_internal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def buggy(*args: object) -> None:
        raise RuntimeError("bug in the container")

    monkeypatch.setattr(SpyContainer, "on_attach", buggy)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery)
            await _attach_and_expect_internal_error(info)
            info.shutdown()


# -- the open-files limit -----------------------------------------------------------


def _serve_in_a_process(workdir: Path, nofile: tuple[int, int]) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m broker serve` with RLIMIT_NOFILE set to `nofile` before it starts
    (by the child itself: preexec_fn is unsafe in a threaded parent)."""
    ready = workdir / "ready.json"
    args = ["serve", "--port", "0", "--ws-port", "0", "--ready-file", str(ready),
            "--log-level", "info"]
    launcher = (
        "import resource, runpy, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, {nofile!r})\n"
        f"sys.argv = ['broker', *{args!r}]\n"
        "runpy.run_module('broker', run_name='__main__', alter_sys=True)\n"
    )
    with open(workdir / "broker.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", launcher], stdout=log,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, (
            (workdir / "broker.log").read_text())
        time.sleep(0.02)
    return proc, json.loads(ready.read_text())["port"]


def _amqp_header_answered(port: int, timeout: float = 5.0) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(HEADER)
        try:
            return sock.recv(8) == HEADER
        except TimeoutError:
            return False


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE and /proc as on Linux")
def test_at_the_open_files_limit_the_broker_backs_off_and_recovers(tmp_path: Path) -> None:
    proc, port = _serve_in_a_process(tmp_path, (48, 64))  # run() raises the soft 48 to 64
    log = tmp_path / "broker.log"
    clients: list[socket.socket] = []
    try:
        assert "open-files limit: soft 64 (was 48), hard 64" in log.read_text()
        for _ in range(80):  # more than 64 descriptors' worth; the rest wait in the backlog
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(HEADER)
            clients.append(sock)
        assert _wait_for(lambda: "cannot accept connections: EMFILE" in log.read_text(), 10)
        time.sleep(2.5)  # several backed-off retries, all failing
        assert log.read_text().count("cannot accept connections") == 1
        for sock in clients:
            sock.close()
        clients.clear()
        assert _amqp_header_answered(port)  # served again without a restart
        assert _wait_for(lambda: "accepting connections again" in log.read_text(), 5)
    finally:
        for sock in clients:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert text.count("cannot accept connections") == 1


async def test_plain_http_on_the_websocket_port() -> None:
    """Non-upgrade requests on the WebSocket listener are the HTTP routes."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, factory=lambda c: container_mod.Container(
                c, clock=trio.current_time))
            for target, status in (("/healthz", b"200"), ("/metrics", b"200"),
                                   ("/api/overview", b"200"), ("/nothing", b"404")):
                stream = await trio.open_tcp_stream("127.0.0.1", info.ws_port)  # type: ignore[arg-type]
                await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                answer = b""
                while chunk := await stream.receive_some():
                    answer += chunk
                assert answer.split(b" ", 2)[1] == status, (target, answer[:200])
                await stream.aclose()
            stream = await trio.open_tcp_stream("127.0.0.1", info.ws_port)  # type: ignore[arg-type]
            await stream.send_all(b"HEAD /api/overview HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK") and body == b"", "HEAD: headers only"
            await stream.aclose()
            assert info.container.listener_urls == info.urls  # type: ignore[attr-defined]
            info.shutdown()
