"""The server: one container, the TCP and WebSocket listeners, every connection.

Shutdown (a `ServerInfo.shutdown()` call, cancellation of `serve`, or a
signal under `run`) is graceful: stop accepting, let the container close every
connection with amqp:connection:forced, give them `shutdown_grace` seconds to
flush and close, then cancel whatever is left. The connections run under a
shield so that cancelling `serve` still gets that grace period.

Every connection costs a file descriptor, and the default soft limit (often
1024) is far below what the hard limit allows, so `run` raises the soft limit
to the hard one and logs both.  At whatever limit remains, the listeners back
off and log one line per interval (transports/accept.py); `ServerInfo.accept`
counts the refused accepts.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from broker.config import Config
from broker.transports import AcceptGuard, ContainerLike, serve_tcp, serve_websocket, tls
from broker.transports.http import serve_http

if sys.platform != "win32":
    import resource

log = logging.getLogger("broker.server")

SHUTDOWN_GRACE = 2.0
HOUSEKEEPING_INTERVAL = 1.0  # seconds
ContainerFactory = Callable[[Config], ContainerLike]


def default_container(config: Config) -> ContainerLike:
    """The real engine container, on trio's clock (the driver's deadlines), with
    the store of `--data-dir` (its recovery timed and logged)."""
    from broker.container import Container  # imported late: transports run without an engine

    if not config.data_dir:
        log.info("no --data-dir: everything is kept in memory, and durable queues lose "
                 "their messages when the broker stops")
        container: ContainerLike = Container(config, clock=trio.current_time)
        return container
    from broker.store.durable import Store

    store = Store(config.data_dir, fsync=config.fsync)
    started = time.perf_counter()
    built = Container(config, clock=trio.current_time, store=store)
    report = built.recovered
    assert report is not None
    log.info("store %s (fsync %s): recovered %d queue(s) with %s messages and %d stream(s) "
             "with %s messages in %.2f s", config.data_dir, config.fsync, report.queues,
             f"{report.messages:,}", report.streams, f"{report.stream_messages:,}",
             time.perf_counter() - started)
    return built


@dataclass
class ServerInfo:
    """What `serve` bound, reported through `task_status`."""

    host: str
    port: int | None  # None when that listener is disabled
    ws_port: int | None
    amqp_url: str | None
    ws_url: str | None
    container: ContainerLike = field(repr=False)
    tls_port: int | None = None  # amqps, with a TLS certificate
    wss_port: int | None = None
    amqps_url: str | None = None
    wss_url: str | None = None
    tls_contexts: list[ssl.SSLContext] = field(default_factory=list, repr=False)
    http_port: int | None = None  # --http-port: the console and /metrics on their own
    http_url: str | None = None
    accept: AcceptGuard = field(default_factory=AcceptGuard, repr=False)  # .refused: a metric
    _stop: trio.Event = field(default_factory=trio.Event, repr=False)

    def shutdown(self) -> None:
        """Start a graceful shutdown; `serve` returns once it is over."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def urls(self) -> list[str]:
        return [u for u in (self.amqp_url, self.ws_url, self.amqps_url, self.wss_url,
                            self.http_url) if u]

    def reload_tls(self, config: Config) -> None:
        """Load the certificate files again (SIGHUP): new connections get them,
        open ones carry on.  A bad file keeps the old certificate, and says so."""
        try:
            for context in self.tls_contexts:
                tls.reload(context, config)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS certificate NOT reloaded (keeping the old one): %s", exc)


async def serve(
    config: Config,
    *,
    container_factory: ContainerFactory | None = None,
    shutdown_grace: float = SHUTDOWN_GRACE,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the broker until `shutdown()` or cancellation (see module doc)."""
    container = (container_factory or default_container)(config)
    tls_context = tls.server_context(config, config.tls_verify_client) \
        if config.tls_cert else None
    wss_context = tls.server_context(config, config.wss_verify_client) \
        if config.tls_cert else None
    tcp, ws, amqps, wss, plain_http = await _bind(config)
    ws_path = config.ws_path or "/ws"
    info = ServerInfo(
        config.host,
        _port(tcp),
        _port(ws),
        _url("amqp", config.host, _port(tcp), ""),
        _url("ws", config.host, _port(ws), ws_path),
        container,
        tls_port=_port(amqps),
        wss_port=_port(wss),
        amqps_url=_url("amqps", config.host, _port(amqps), ""),
        wss_url=_url("wss", config.host, _port(wss), ws_path),
        tls_contexts=[c for c in (tls_context, wss_context) if c is not None],
        http_port=_port(plain_http),
        http_url=_url("http", config.host, _port(plain_http), "/"),
    )
    if hasattr(container, "listener_urls"):
        container.listener_urls = info.urls  # the console's overview shows them
    store = getattr(container, "store", None)
    async with trio.open_nursery() as outer:
        outer.start_soon(_stop_when_cancelled, info)
        outer.start_soon(_housekeeping, container)
        background = getattr(container, "background", None)
        if background is not None:  # the gateway's upstream connections
            outer.start_soon(background)
        if store is not None:
            outer.start_soon(_commit_loop, container, store)
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as listening:
                    for listeners, serve_fn in (
                        (tcp, functools.partial(serve_tcp, tcp, container)),
                        (ws, functools.partial(serve_websocket, ws, container, config)),
                        (amqps, functools.partial(
                            serve_tcp, amqps, container, tls_context=tls_context,
                            tls_handshake_timeout=config.handshake_timeout,
                            tls_identity=config.tls_identity)),
                        (wss, functools.partial(serve_websocket, wss, container, config,
                                                tls_context=wss_context)),
                        (plain_http, functools.partial(serve_http, plain_http, container)),
                    ):
                        if listeners:
                            await listening.start(functools.partial(
                                serve_fn, handler_nursery=connections, guard=info.accept))
                    log.info("listening: %s", ", ".join(info.urls))
                    task_status.started(info)
                    await info._stop.wait()
                    listening.cancel_scope.cancel()
                log.info("shutting down")
                container.shutdown()
                connections.cancel_scope.deadline = trio.current_time() + shutdown_grace
        outer.cancel_scope.cancel()
    if store is not None:
        _final_commit(container, store)


async def _commit_loop(container: Any, store: Any) -> None:
    """Group commit (store/durable.py): woken when the container recorded
    something, it writes everything pending on a worker thread, so records
    made meanwhile form the next batch, and then lets the held outcomes go.
    A failed write (a full disk) is tried again every second."""
    from broker.store.durable import BATCH_WINDOW

    pending = trio.Event()

    def wake() -> None:
        pending.set()

    store.on_pending = wake
    while True:
        await pending.wait()
        pending = trio.Event()
        if store.fsync == "batch":
            await trio.sleep(BATCH_WINDOW)
        try:
            while (batch := container.take_durable_batch()) is not None:
                try:
                    await trio.to_thread.run_sync(store.commit, batch)
                except OSError as exc:
                    container.durable_failed(batch, exc)
                    await trio.sleep(1.0)
                    pending.set()
                    break
                container.durable_committed(batch)
        except Exception:  # a bug in the store: say so, refuse publishes, keep serving
            log.exception("store: a commit failed; publishers are refused from now on")
            store.failed = "internal error in the store (see the log)"
            return


def _final_commit(container: Any, store: Any) -> None:
    """At shutdown: what is still pending goes to disk before the files close."""
    try:
        while (batch := container.take_durable_batch()) is not None:
            store.commit(batch)
            container.durable_committed(batch)
    except OSError as exc:
        log.error("store: the last batch could not be written: %s", exc)
    store.close()


async def _housekeeping(container: ContainerLike) -> None:
    """Periodic container work that no message triggers (stream retention by
    age, the memory alarm's RSS backstop)."""
    while True:
        await trio.sleep(HOUSEKEEPING_INTERVAL)
        container.housekeeping(process_rss())


def process_rss() -> int | None:
    """The process's resident set size in bytes, or None where /proc cannot tell."""
    try:
        with open("/proc/self/statm", "rb") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * _PAGE_SIZE


try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):
    _PAGE_SIZE = 4096


async def _stop_when_cancelled(info: ServerInfo) -> None:
    try:
        await trio.sleep_forever()
    finally:
        info.shutdown()


Listeners = list[trio.SocketListener]


class ListenError(OSError):
    """A listener could not bind; the message names it, the host and the port
    (the CLI prints it as the one line a user needs)."""

    def __str__(self) -> str:
        return str(self.strerror)


async def _bind(config: Config) -> tuple[Listeners, Listeners, Listeners, Listeners, Listeners]:
    """Bind every listener before serving (TCP, WebSocket, with a TLS
    certificate amqps and wss, and plain HTTP if asked), so that errors (port
    in use) come out of `serve` plainly instead of inside an exception group."""
    secure = config.tls_cert is not None
    ports = (("amqp", config.port), ("ws", config.ws_port),
             ("amqps", config.tls_port if secure else None),
             ("wss", config.wss_port if secure else None), ("http", config.http_port))
    bound: list[Listeners] = []
    try:
        for name, port in ports:
            try:
                bound.append(await _listen(config.host, port))
            except OSError as exc:
                raise ListenError(exc.errno, f"cannot listen for {name} on {config.host}:{port}: "
                                             f"{exc.strerror or exc}") from exc
    except BaseException:
        for listeners in bound:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
        raise
    return bound[0], bound[1], bound[2], bound[3], bound[4]


async def _listen(host: str, port: int | None) -> list[trio.SocketListener]:
    if port is None:
        return []
    listeners = await trio.open_tcp_listeners(port, host=host or None)
    if port == 0:
        # Each address would get its own free port; keep one, so one URL holds.
        for extra in listeners[1:]:
            await trio.aclose_forcefully(extra)
        listeners = listeners[:1]
    return listeners


def _port(listeners: list[trio.SocketListener]) -> int | None:
    return int(listeners[0].socket.getsockname()[1]) if listeners else None


def _url(scheme: str, host: str, port: int | None, path: str) -> str | None:
    if port is None:
        return None
    host = host or "0.0.0.0"
    return f"{scheme}://[{host}]:{port}{path}" if ":" in host else f"{scheme}://{host}:{port}{path}"


def run(
    config: Config,
    *,
    container_factory: ContainerFactory | None = None,
    on_ready: Callable[[ServerInfo], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, shut down gracefully, and return.

    `on_ready` is called once the listeners are bound (the CLI prints URLs).
    Must run in the main thread (signal handling).
    """
    tune_gc()
    raise_open_files_limit()
    trio.run(functools.partial(_run, config, container_factory, on_ready))


def tune_gc() -> None:
    """Make the cyclic GC cheap for a broker process.

    Every message in flight is a handful of young objects that survive several
    collections (it lives from its transfer in to its settlement), and the
    default thresholds rescanned them so often that GC took a third of the
    broker's CPU per message (measured: 69 → 44 µs/msg).  Freezing what exists
    at start-up and collecting the young generation less often fixes that; the
    engine breaks its own cycles (a delivery leaves its link's unsettled map
    when settled), so little garbage is cyclic anyway.  Only for the broker's
    own process: embedding programs keep their GC settings.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; log both; return (soft, hard).

    Each connection holds a descriptor, and the usual soft limit of 1024 is a
    cap on connections that nobody chose; the hard limit is what the
    administrator allows.  Only for the broker's own process (like `tune_gc`):
    an embedding program keeps its limits.  None where there are no rlimits.
    """
    if sys.platform == "win32":
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    was = soft
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as exc:  # e.g. macOS refuses RLIM_INFINITY
            log.warning(
                "could not raise the open-files limit from %s to %s: %s",
                _limit(soft),
                _limit(hard),
                exc,
            )
    log.info("open-files limit: soft %s (was %s), hard %s", _limit(soft), _limit(was), _limit(hard))
    return soft, hard


def _limit(value: int) -> str:
    if sys.platform != "win32" and value == resource.RLIM_INFINITY:
        return "unlimited"
    return str(value)


async def _run(
    config: Config,
    container_factory: ContainerFactory | None,
    on_ready: Callable[[ServerInfo], None] | None,
) -> None:
    wanted = [signal.SIGINT, signal.SIGTERM]
    if hasattr(signal, "SIGHUP"):
        wanted.append(signal.SIGHUP)  # reload the TLS certificate files
    with trio.open_signal_receiver(*wanted) as signals:
        async with trio.open_nursery() as nursery:
            info: ServerInfo = await nursery.start(
                functools.partial(serve, config, container_factory=container_factory)
            )
            if on_ready is not None:
                on_ready(info)
            async for signum in signals:
                log.info("%s received", signal.Signals(signum).name)
                if signum == getattr(signal, "SIGHUP", None):
                    info.reload_tls(config)
                    continue
                break
            info.shutdown()  # the nursery ends when serve has finished
