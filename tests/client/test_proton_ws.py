"""broker.client.proton_ws against a real broker on loopback (in-process; the
`server` fixture is in conftest.py)."""

from __future__ import annotations

import os

import proton
import pytest
import trio
import trio_websocket
from proton import Condition, Handler, Message, symbol

from broker.client import proton_ws
from broker.server import ServerInfo


def q(name: str) -> str:
    return f"/queues/proton-ws-{name}-{os.urandom(3).hex()}"


class Spy:
    """Records the WebSocket messages a connection sends."""

    def __init__(self, conn: proton_ws.AsyncConnection) -> None:
        self.sizes: list[int] = []
        original = conn.ws.send_message

        async def send_message(message: bytes | str) -> None:
            self.sizes.append(len(message))
            await original(message)

        conn.ws.send_message = send_message  # type: ignore[method-assign]


async def test_send_and_receive(server: ServerInfo) -> None:
    address = q("basic")
    with trio.fail_after(10):
        async with proton_ws.connect(server.ws_url) as conn:
            assert conn.ws.subprotocol == "amqp"
            assert "ANONYMOUS-RELAY" in conn.remote_offered_capabilities
            sender = await conn.open_sender(address)
            outcome = await sender.send(
                Message(
                    id="m1",
                    subject="s",
                    properties={"k": "v"},
                    annotations={symbol("x-opt-a"): 1},
                    body=[1, "two"],
                    inferred=True,
                )
            )
            assert outcome == proton_ws.Outcome("accepted")
            receiver = await conn.open_receiver(address, credit=5)
            got = await receiver.receive(timeout=5)
            got.accept()
            assert got.message.id == "m1"
            assert got.message.properties == {"k": "v"}
            assert got.message.annotations[symbol("x-opt-a")] == 1
            assert got.message.body == [1, "two"] and got.message.inferred  # amqp-sequence
            assert got.delivery_count == 0


async def test_sasl_plain_and_wrong_password(server: ServerInfo) -> None:
    with trio.fail_after(10):
        async with proton_ws.connect(server.ws_url, user="alice", password="secret") as conn:
            sender = await conn.open_sender(q("plain"))
            assert (await sender.send(Message(body="x"))).accepted
        with pytest.raises(proton.ConnectionException):
            async with proton_ws.connect(server.ws_url, user="alice", password="wrong"):
                pass


async def test_one_frame_split_over_many_websocket_messages(server: ServerInfo) -> None:
    """chunk_size=7: every frame we send (open, attach, a 3 KB transfer...) is
    cut into 7-byte WebSocket messages; the broker must reassemble them."""
    address = q("split")
    body = os.urandom(3000)
    with trio.fail_after(15):
        async with proton_ws.connect(server.ws_url, chunk_size=7) as conn:
            spy = Spy(conn)
            sender = await conn.open_sender(address)
            assert (await sender.send(Message(body=body, inferred=True))).accepted
            receiver = await conn.open_receiver(address, credit=1)
            got = await receiver.receive(timeout=5)
            got.accept()
            assert got.message.body == body
            assert max(spy.sizes) == 7
            assert len(spy.sizes) > 3000 // 7


async def test_many_frames_in_one_websocket_message(server: ServerInfo) -> None:
    """chunk_size=None: a burst of 50 transfers goes out in a few messages."""
    address = q("batch")
    with trio.fail_after(15):
        async with proton_ws.connect(server.ws_url, chunk_size=None) as conn:
            sender = await conn.open_sender(address)
            spy = Spy(conn)
            deliveries = [await sender.send_nowait(Message(body=i)) for i in range(50)]
            outcomes = [await sender.settled(d) for d in deliveries]
            assert all(o.accepted for o in outcomes)
            assert len(spy.sizes) < 10, spy.sizes  # transfers, then dispositions
            receiver = await conn.open_receiver(address, credit=50)
            bodies = []
            for _ in range(50):
                got = await receiver.receive(timeout=5)
                got.accept()
                bodies.append(got.message.body)
            assert bodies == list(range(50))


async def _chunking_relay(
    broker_port: int, chunk: int, *, task_status: trio.TaskStatus[int]
) -> None:
    """A WebSocket server that relays to the broker's TCP port and cuts
    everything the broker says into `chunk`-byte WebSocket messages."""

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="amqp")
        tcp = await trio.open_tcp_stream("127.0.0.1", broker_port)

        async def up() -> None:
            try:
                while True:
                    await tcp.send_all(await ws.get_message())
            except trio_websocket.ConnectionClosed:
                await tcp.aclose()

        async def down() -> None:
            try:
                while data := await tcp.receive_some(65536):
                    for i in range(0, len(data), chunk):
                        await ws.send_message(data[i : i + chunk])
            except trio_websocket.ConnectionClosed:
                return  # the client closed first: what the broker still says has nowhere to go
            await ws.aclose()

        async with tcp, trio.open_nursery() as nursery:  # tcp closed when cancelled, too
            nursery.start_soon(up)
            nursery.start_soon(down)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    ws_server = trio_websocket.WebSocketServer(handler, listeners, max_message_size=2**24)
    task_status.started(port)
    await ws_server.run()


async def test_reader_reassembles_frames_from_tiny_messages(
    server: ServerInfo, nursery: trio.Nursery
) -> None:
    """The broker's frames reach us in 5-byte WebSocket messages (through a
    relay): proton's transport must get them as one byte stream."""
    assert server.port is not None
    port = await nursery.start(_chunking_relay, server.port, 5)
    address = q("tiny")
    body = os.urandom(20000)
    with trio.fail_after(20):
        async with proton_ws.connect(f"ws://127.0.0.1:{port}/") as conn:
            sender = await conn.open_sender(address)
            assert (await sender.send(Message(body=body, inferred=True))).accepted
            receiver = await conn.open_receiver(address, credit=1)
            got = await receiver.receive(timeout=10)
            got.accept()
            assert got.message.body == body


async def test_large_message_with_small_max_frame_size(server: ServerInfo) -> None:
    address = q("large")
    body = os.urandom(1024 * 1024)
    with trio.fail_after(30):
        async with proton_ws.connect(server.ws_url, max_frame_size=4096) as conn:
            assert conn.transport.max_frame_size == 4096
            sender = await conn.open_sender(address)
            assert (await sender.send(Message(body=body, inferred=True), timeout=20)).accepted
            receiver = await conn.open_receiver(address, credit=1)
            got = await receiver.receive(timeout=20)
            got.accept()
            assert got.message.body == body


async def test_outcomes_redelivery_and_drain(server: ServerInfo) -> None:
    address = q("outcomes")
    with trio.fail_after(15):
        async with proton_ws.connect(server.ws_url) as conn:
            sender = await conn.open_sender(address)
            for body in ("a", "b", "c"):
                assert (await sender.send(Message(body=body))).accepted
            receiver = await conn.open_receiver(address, credit=3, auto_credit=False)
            a, b, c = [await receiver.receive() for _ in range(3)]
            a.release()
            b.reject(Condition("amqp:internal-error", "test"))
            c.modify(delivery_failed=True)
            receiver.flow(5)
            again = {}
            for _ in range(2):
                got = await receiver.receive()
                again[got.message.body] = got.delivery_count
                got.accept()
            assert again == {"a": 0, "c": 1}
            await receiver.drain()
            assert receiver.credit == 0
            assert not receiver.queue


async def test_dynamic_receiver_and_anonymous_relay(server: ServerInfo) -> None:
    with trio.fail_after(10):
        async with proton_ws.connect(server.ws_url) as conn:
            replies = await conn.open_receiver(dynamic=True, credit=1)
            assert replies.address
            relay = await conn.open_sender(None)
            outcome = await relay.send(Message(address=replies.address, body="reply"))
            assert outcome.accepted
            got = await replies.receive()
            got.accept()
            assert got.message.body == "reply"


async def test_heartbeats_keep_an_idle_connection_open(server: ServerInfo) -> None:
    """idle_timeout=0.5 s: the broker must send something every 0.25 s, and
    proton (ticked by the writer) would close the connection otherwise."""
    address = q("idle")
    with trio.fail_after(10):
        async with proton_ws.connect(server.ws_url, idle_timeout=0.5) as conn:
            sender = await conn.open_sender(address)
            await trio.sleep(1.3)
            assert (await sender.send(Message(body="still here"))).accepted


async def test_abort_returns_unsettled_messages(server: ServerInfo) -> None:
    address = q("abort")
    with trio.fail_after(10):
        async with proton_ws.connect(server.ws_url) as conn:
            sender = await conn.open_sender(address)
            assert (await sender.send(Message(body="again"))).accepted
        async with proton_ws.connect(server.ws_url) as lost:
            receiver = await lost.open_receiver(address, credit=1)
            assert (await receiver.receive()).message.body == "again"
            await lost.abort()  # no AMQP close: the delivery goes back
        async with proton_ws.connect(server.ws_url) as conn:
            receiver = await conn.open_receiver(address, credit=1)
            got = await receiver.receive()
            got.accept()
            assert got.message.body == "again"
            assert got.delivery_count == 1


async def test_detach_without_close(server: ServerInfo) -> None:
    """A plain detach (closed=false) is answered, and the unsettled message
    goes back to the queue."""
    address = q("detach")
    with trio.fail_after(10):
        async with proton_ws.connect(server.ws_url) as conn:
            sender = await conn.open_sender(address)
            assert (await sender.send(Message(body="d"))).accepted
            receiver = await conn.open_receiver(address, credit=1)
            await receiver.receive()
            await receiver.detach()
            assert receiver.remote_detached
            again = await conn.open_receiver(address, credit=1)
            got = await again.receive()
            got.accept()
            assert (got.message.body, got.delivery_count) == ("d", 1)


async def test_broker_shutdown_ends_waits(server: ServerInfo) -> None:
    with trio.fail_after(10):
        with pytest.raises(proton.ConnectionException):
            async with proton_ws.connect(server.ws_url) as conn:
                receiver = await conn.open_receiver(q("shutdown"), credit=1)
                server.shutdown()
                await receiver.receive(timeout=5)


async def test_handler_sees_events(server: ServerInfo) -> None:
    seen: list[str] = []

    class Recorder(Handler):
        def on_connection_remote_open(self, event: proton.Event) -> None:
            seen.append("open")

        def on_link_remote_open(self, event: proton.Event) -> None:
            seen.append(f"link:{event.link.name}")

    with trio.fail_after(10):
        async with proton_ws.connect(server.ws_url, handler=Recorder()) as conn:
            sender = await conn.open_sender(q("handler"), name="spied")
    assert seen == ["open", "link:spied"]
    assert sender.name == "spied"


def test_stream_offset_filter() -> None:
    key = symbol("rabbitmq:stream-offset-spec")
    f = proton_ws.stream_offset_filter("first")
    assert list(f) == [key]
    assert f[key].descriptor == key and f[key].value == "first"


async def test_blocking_connection(server: ServerInfo) -> None:
    """The blocking wrapper from a worker thread (as plain code would use it)."""
    address = q("blocking")

    def work() -> tuple[str, str, str | None]:
        with proton_ws.BlockingConnection(
            server.ws_url, user="guest", password="guest", timeout=5
        ) as conn:
            sender = conn.create_sender(address)
            outcome = sender.send(Message(body="blocking"))
            receiver = conn.create_receiver(address, credit=1)
            got = receiver.receive()
            got.accept()
            replies = conn.create_receiver(None, dynamic=True)
            return outcome.state, got.message.body, replies.address

    with trio.fail_after(20):
        state, body, dynamic_address = await trio.to_thread.run_sync(work)
    assert (state, body) == ("accepted", "blocking")
    assert dynamic_address

    def refused() -> None:
        proton_ws.BlockingConnection(server.ws_url, user="guest", password="nope", timeout=5)

    with trio.fail_after(20), pytest.raises(proton.ConnectionException):
        await trio.to_thread.run_sync(refused)


def test_a_missing_proton_names_the_extra() -> None:
    """Without python-qpid-proton the import says which extra to install."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['proton'] = None\n"
            "try:\n    import broker.client.proton_ws\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "pip install 'amqpws-broker[client]'" in out
