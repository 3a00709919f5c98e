"""The broker inside another program: a thread with its own trio loop.

`running(...)` is for plain Python and unittest; the pytest plugin uses the
same `EmbeddedBroker`.  Trio code should call `broker.server.serve` in its
own nursery instead.  Every call that reads broker state runs on the broker's
loop (`trio.from_thread.run_sync`), so tests see a consistent snapshot.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, Self, TypeVar

import trio

from broker.codec.messaging import Message
from broker.config import Config, StreamConfig, parse_queue_spec
from broker.server import ServerInfo, serve

T = TypeVar("T")


def embedded_config(**overrides: object) -> Config:
    """`Config` for an embedded broker: loopback, and a free port for both the
    AMQP and the WebSocket listener (port 0) unless `overrides` say otherwise.
    Everything else keeps the `Config` default; `streams` may be given as
    names and `queues` as any iterable."""
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "ws_port": 0}
    base.update(overrides)
    if "streams" in base:
        base["streams"] = tuple(
            s if isinstance(s, StreamConfig) else StreamConfig(str(s)) for s in base["streams"]
        )
    if "queues" in base:  # names, or NAME:ARG=VALUE,... as on the command line
        specs = [parse_queue_spec(str(q)) for q in base["queues"]]
        base["queues"] = tuple(name for name, _ in specs)
        base["queue_arguments"] = {**base.get("queue_arguments", {}),
                                   **{name: args for name, args in specs if args}}
    return Config(**base)


class CallOnLoop(Protocol):
    """Runs `fn` on the broker's trio loop and returns its result."""

    def __call__(self, fn: Callable[[], T], /) -> T: ...


class BrokerView:
    """Read-only introspection plus declarations; shared by both runners."""

    def __init__(self, info: ServerInfo, call: CallOnLoop) -> None:
        self.info = info
        self._call_on_loop = call

    def _call(self, fn: Callable[[], T]) -> T:
        return self._call_on_loop(fn)

    amqp_url = property(lambda self: self.info.amqp_url)
    ws_url = property(lambda self: self.info.ws_url)
    amqps_url = property(lambda self: self.info.amqps_url)  # with a TLS certificate
    wss_url = property(lambda self: self.info.wss_url)
    host = property(lambda self: self.info.host)
    port = property(lambda self: self.info.port)
    ws_port = property(lambda self: self.info.ws_port)

    @property
    def container(self) -> Any:
        """The broker's container (`broker.container.Container`)."""
        return self.info.container

    # -- declarations, through the admin API (as /management and the config) ----------

    @property
    def admin(self) -> Any:
        """The broker's administrative API (`broker.admin.Admin`); call it on the loop."""
        return self.container.admin

    def declare_queue(self, name: str, *, arguments: dict[str, object] | None = None,
                      durable: bool = True, auto_delete: bool = False) -> dict[str, object]:
        """Declare a queue (or, with `x-queue-type: stream`, a stream) with RabbitMQ
        arguments; returns its info as `/management` reports it."""
        return self._call(lambda: self.admin.declare_queue(
            name, arguments=arguments, durable=durable, auto_delete=auto_delete,
            now=self.container.wall_clock())[0])

    def declare_stream(self, name: str, *, max_age: float | None = None,
                       max_length_bytes: int | None = None,
                       max_length_messages: int | None = None) -> None:
        self._call(lambda: self.container.registry.declare_stream(
            name, max_age=max_age, max_length_bytes=max_length_bytes,
            max_length_messages=max_length_messages))

    def declare_exchange(self, name: str, type: str = "direct") -> None:
        self._call(lambda: self.admin.declare_exchange(name, type=type))

    def bind(self, exchange: str, queue: str, key: str = "",
             arguments: dict[str, object] | None = None) -> None:
        """Bind `queue` to `exchange` with a binding key (and headers arguments)."""
        self._call(lambda: self.admin.bind(exchange, queue, key=key, arguments=arguments))

    def delete_queue(self, name: str) -> int:
        return self._call(lambda: self.admin.delete_queue(name))  # type: ignore[no-any-return]

    def purge_queue(self, name: str) -> int:
        return self._call(lambda: self.admin.purge_queue(name))  # type: ignore[no-any-return]

    def bindings(self) -> list[dict[str, object]]:
        return self._call(lambda: self.admin.list_bindings())

    def queue_depth(self, name: str) -> int:
        """Messages waiting in a queue (streams: messages retained); 0 if it does not exist."""
        def depth() -> int:
            node = self.container.registry.get(name)
            return 0 if node is None else node.depth
        return self._call(depth)

    def messages(self, name: str) -> list[Message]:
        """The messages waiting in a queue (or retained by a stream), oldest first."""
        def snapshot() -> list[Message]:
            node = self.container.registry.get(name)
            if node is None:
                return []
            if node.kind == "stream":
                return [node.entry(o).message for o in range(node.first_offset, node.next_offset)]
            return [e.message for e in node.ready]
        return self._call(snapshot)

    def queues(self) -> list[str]:
        return self._call(lambda: [q["name"] for q in self.admin.list_queues()])

    def connections(self) -> list[str]:
        """Peers (host:port and transport) of the open connections."""
        return self._call(lambda: sorted(f"{h.peer} ({h.transport})"
                                         for h in self.container.connections))


class EmbeddedBroker(BrokerView):
    """A broker on a background thread; `start()` returns once it listens."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._error: BaseException | None = None
        self.info = None  # type: ignore[assignment]

    def _call(self, fn: Callable[[], T]) -> T:
        # Not trio.from_thread.run_sync: that refuses callers inside any trio loop,
        # and tests running under pytest-trio or an asyncio loop must work too.
        assert self._token is not None, "broker not started"
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                future.set_exception(exc)

        self._token.run_sync_soon(run)
        return future.result(timeout=10)

    def start(self, timeout: float = 10.0) -> Self:
        self._thread = threading.Thread(target=self._main, name="amqpws-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("embedded broker did not start in time")
        if self._error is not None:
            raise RuntimeError("embedded broker failed to start") from self._error
        return self

    def _main(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self.info = await nursery.start(serve, self.config)
                self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - reported to start() or stop()
            self._error = exc
        finally:
            self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (connections closed with amqp:connection:forced); joins the thread."""
        if self._thread is None:
            return
        if self._thread.is_alive() and self.info is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._call(self.info.shutdown)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("embedded broker did not stop in time")
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(config: Config | None = None, **overrides: object) -> Iterator[EmbeddedBroker]:
    """`with broker.running(queues=["q"]) as b: ... b.amqp_url ...` — free ports by default."""
    if config is not None and overrides:
        config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
    with EmbeddedBroker(config or embedded_config(**overrides)) as b:
        yield b
