"""Fixtures and helpers of the gateway suite (test_gateway.py,
browser/test_gateway_browser.py): an upstream broker, an `amqpws-broker
gateway` in front of it, and the Node runner for node/gateway_cases.js.

The upstream is chosen by `GATEWAY_UPSTREAM`:

- `self` (the default, what CI runs): a second `amqpws-broker serve` on free
  ports, with `--data-dir` in a temporary directory (accepted messages survive
  a SIGKILL) and `--no-auto-create` (queues are declared first, as on
  RabbitMQ), user guest:guest;
- `rabbitmq4`: the RabbitMQ 4.0.5 of `../shared/rabbitmq4` on
  127.0.0.1:$RMQ4_PORT (default 45672), guest/guest (`make gateway-parity`);
- `rabbitmq310`: Debian's RabbitMQ 3.10 with its AMQP 1.0 plugin, the private
  node of conformance/rabbitmq310.sh on 127.0.0.1:$RMQ310_PORT (default 27672),
  guest/guest over PLAIN (`make gateway-rabbitmq310`, which CI runs).  Its
  plugin knows only the v1 addresses: the cases use `/amq/queue/NAME` (the
  queue must exist, as with `/queues/NAME` on the other two), declare classic
  queues by attaching to `/queue/NAME` through the gateway (durable target),
  quorum queues with `rabbitmqctl eval`, and read queue depths with
  `rabbitmqctl list_queues`; there is no `/management`, no anonymous relay, no
  `modified` outcome, and a stream delivers nothing over AMQP 1.0
  (test_gateway.py skips those or leaves them out, saying why).  The node is the
  suite's own, so the upstream-restart case kills it (SIGKILL) and starts it.

The upstream-restart case stops and starts RabbitMQ, so against it it runs only
with GATEWAY_RMQ4_RESTART=1, meant for a node of your own: rabbitmq4.sh takes
RMQ4_CHROOT, RMQ4_PORT, RMQ4_DIST_PORT and RMQ4_EPMD_PORT, so a copy of the
chroot (`cp -ax`) on other ports runs beside the shared node.  Delete the copy's
var/lib/rabbitmq/rabbit4.pid (and mnesia) first: a copied pid file names the
shared node, and `rabbitmq4.sh stop` would stop that one.

The test modules import the fixtures from here (`from gateway_support import
...`); the suite's own `start_broker` is taken from conformance/conftest.py as
pytest loaded it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_SCRIPT = HERE / "node" / "gateway_cases.js"
NODE_TIMEOUT = 30.0
TARGET = os.environ.get("GATEWAY_UPSTREAM", "").strip().lower() or "self"
RMQ4_PORT = int(os.environ.get("RMQ4_PORT", "45672"))
RMQ4_SCRIPT = Path(os.environ.get("RMQ4", str(ROOT.parent / "shared" / "rabbitmq4" / "rabbitmq4.sh")))
# Restarting RabbitMQ 4 stops a node other people may be using: only on request.
RMQ4_RESTART = os.environ.get("GATEWAY_RMQ4_RESTART", "").lower() in ("1", "true", "yes")
RMQ310_PORT = int(os.environ.get("RMQ310_PORT", "27672"))
RMQ310_SCRIPT = HERE / "rabbitmq310.sh"
TARGETS = ("self", "rabbitmq4", "rabbitmq310")
#: RabbitMQ 3.x's v1 addresses (`/amq/queue/NAME`, `/exchange/X/KEY`) instead of v2.
ADDRESS_V1 = TARGET == "rabbitmq310"
UPSTREAM_CONNECTIONS = 2  # --upstream-connections of the suite's gateway


def suite_conftest(config: pytest.Config) -> Any:
    """conformance/conftest.py as loaded by pytest (`import conftest` may find
    browser/conftest.py instead)."""
    path = str(HERE / "conftest.py")
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == path:
            return plugin
    raise RuntimeError(f"{path} is not loaded")


# -- the gateway process ----------------------------------------------------------------


@dataclass(frozen=True)
class GatewayProcess:
    """A running gateway: its listeners (the fields clients.py reads too)."""

    amqp_url: str
    ws_url: str
    host: str
    port: int
    ws_port: int
    pid: int
    log_path: Path

    @property
    def http_url(self) -> str:
        """The WebSocket port's plain HTTP side: /readyz, /api/gateway, /metrics."""
        return f"http://{self.host}:{self.ws_port}"


def start_gateway(upstreams: list[str], *args: str,
                  timeout: float = 15.0) -> tuple[subprocess.Popen[bytes], GatewayProcess]:
    """`python -m broker gateway --upstream ...` on free ports; waits for its ready file."""
    workdir = Path(tempfile.mkdtemp(prefix="amqpws-gateway-"))
    ready, log_path = workdir / "ready.json", workdir / "gateway.log"
    cmd = [sys.executable, "-m", "broker", "gateway", "--port", "0", "--ws-port", "0",
           "--ready-file", str(ready), "--log-level", "info"]
    for url in upstreams:
        cmd += ["--upstream", url]
    cmd += list(args)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"gateway did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    return proc, GatewayProcess(amqp_url=info["amqp_url"], ws_url=info["ws_url"],
                                host="127.0.0.1", port=info["port"], ws_port=info["ws_port"],
                                pid=proc.pid, log_path=log_path)


def stop_process(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(gw: GatewayProcess, timeout: float = 20.0) -> float:
    """Poll the gateway's /readyz until an upstream connection is open; seconds waited."""
    started = time.monotonic()
    while True:
        try:
            status, _ = http_get(f"{gw.http_url}/readyz", timeout=2)
        except OSError:
            status = 0
        if status == 200:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"gateway not ready within {timeout} s; log: {gw.log_path}")
        time.sleep(0.05)


def api_gateway(gw: GatewayProcess) -> dict[str, Any]:
    status, body = http_get(f"{gw.http_url}/api/gateway")
    assert status == 200, (status, body)
    return json.loads(body)


# -- the upstream -----------------------------------------------------------------------


class Upstream:
    """The broker behind the gateway, as the tests see it."""

    kind = ""
    host = "127.0.0.1"
    port = 0
    user = "guest"
    password = "guest"
    ws_url: str | None = None

    @property
    def url(self) -> str:
        """What the gateway's --upstream says."""
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}"

    def restart_skip(self) -> str | None:
        """Why this upstream cannot be restarted by a test, or None."""
        return None

    def kill(self) -> None:
        raise NotImplementedError

    def start_again(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return f"{self.kind} at {self.host}:{self.port}"


class OwnUpstream(Upstream):
    """`amqpws-broker serve` on a data directory, restartable on the same ports."""

    kind = "self"

    def __init__(self, suite: Any, data_dir: Path) -> None:
        self.suite = suite
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: Any = None
        self.logs: list[Path] = []
        self.start_again()

    def start_again(self) -> None:
        # start_broker puts --port 0 --ws-port 0 first; the last value wins
        ports = [] if self.info is None else ["--port", str(self.info.port),
                                              "--ws-port", str(self.info.ws_port)]
        self.proc, self.info = self.suite.start_broker(
            "--user", "guest:guest", "--no-auto-create", "--data-dir", str(self.data_dir), *ports)
        self.port = self.info.port
        self.ws_url = self.info.ws_url
        self.logs.append(self.info.log_path)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            code = stop_process(self.proc)
            self.proc = None
            assert code == 0, f"upstream broker exited with {code}; log: {self.logs[-1]}"


class RabbitMQ4(Upstream):
    """The shared RabbitMQ 4.0.5 (../shared/rabbitmq4)."""

    kind = "rabbitmq4"

    def __init__(self, port: int) -> None:
        self.port = port
        self.timings: dict[str, float] = {}

    def restart_skip(self) -> str | None:
        if not RMQ4_RESTART:
            return ("restarting RabbitMQ 4 stops a node others may be using: set "
                    "GATEWAY_RMQ4_RESTART=1 with RMQ4_PORT/RMQ4_CHROOT naming a node of your "
                    "own (gateway_support.py says how)")
        if not RMQ4_SCRIPT.exists():
            return f"{RMQ4_SCRIPT} not found"
        return None

    def _script(self, *args: str) -> None:
        started = time.monotonic()
        subprocess.run(["bash", str(RMQ4_SCRIPT), *args], check=True, capture_output=True,
                       timeout=120, env=dict(os.environ, RMQ4_PORT=str(self.port)))
        self.timings[args[0]] = time.monotonic() - started

    def kill(self) -> None:
        self._script("stop")

    def start_again(self) -> None:
        self._script("start")


class RabbitMQ310(Upstream):
    """Debian's RabbitMQ 3.10, the private node of conformance/rabbitmq310.sh
    (its own node name, ports and data directory: the suite may kill it)."""

    kind = "rabbitmq310"

    def __init__(self, port: int) -> None:
        self.port = port
        self.timings: dict[str, float] = {}

    def restart_skip(self) -> str | None:
        return None if RMQ310_SCRIPT.exists() else f"{RMQ310_SCRIPT} not found"

    def _script(self, *args: str, timeout: float = 120) -> str:
        started = time.monotonic()
        done = subprocess.run(["bash", str(RMQ310_SCRIPT), *args], capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env=dict(os.environ, RMQ310_PORT=str(self.port)))
        self.timings[args[0]] = time.monotonic() - started
        if done.returncode:
            raise RuntimeError(f"rabbitmq310.sh {' '.join(args)} exited {done.returncode}: "
                               f"{done.stdout[-1000:]}{done.stderr[-2000:]}")
        return done.stdout

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against the node (about 0.4 s a call)."""
        return self._script("ctl", *args, timeout=60)

    def kill(self) -> None:
        self._script("kill")  # SIGKILL

    def start_again(self) -> None:
        self._script("start")

    def _depths(self) -> dict[str, int]:
        out = self.ctl("list_queues", "-q", "--no-table-headers", "name", "messages")
        return {parts[0]: int(parts[1]) for parts in (line.split("\t") for line in out.splitlines())
                if len(parts) == 2}

    def depth(self, name: str) -> int:
        depths = self._depths()
        assert name in depths, f"no queue {name!r} on RabbitMQ 3.10: {sorted(depths)}"
        return depths[name]

    def has_queue(self, name: str) -> bool:
        return name in self._depths()

    def declare_queue(self, name: str, kind: str) -> None:
        """A durable queue of any type (3.10 has no /management: rabbitmqctl eval)."""
        resource = f'rabbit_misc:r(<<"/">>, queue, <<"{name}">>)'
        arguments = f'[{{<<"x-queue-type">>, longstr, <<"{kind}">>}}]'
        self.ctl("eval", f'{{new, _}} = rabbit_amqqueue:declare({resource}, true, false, '
                 f'{arguments}, none, <<"guest">>), ok.')

    def delete_queues(self, names: list[str]) -> None:
        for name in names:
            self.ctl("delete_queue", name)


def _rabbitmq310() -> RabbitMQ310:
    try:
        socket.create_connection(("127.0.0.1", RMQ310_PORT), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ 3.10 is not listening on 127.0.0.1:{RMQ310_PORT} ({exc}); start "
                    "it with `bash conformance/rabbitmq310.sh start` (or run "
                    "`make gateway-rabbitmq310`)", pytrace=False)
    return RabbitMQ310(RMQ310_PORT)


def _rabbitmq4() -> RabbitMQ4:
    try:
        socket.create_connection(("127.0.0.1", RMQ4_PORT), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ 4 is not listening on 127.0.0.1:{RMQ4_PORT} ({exc}); start it "
                    "with `bash ../shared/rabbitmq4/rabbitmq4.sh start` (or `make gateway-parity`)",
                    pytrace=False)
    return RabbitMQ4(RMQ4_PORT)


def make_upstream(config: pytest.Config, data_dir: Path) -> Upstream:
    if TARGET == "rabbitmq4":
        return _rabbitmq4()
    if TARGET == "rabbitmq310":
        return _rabbitmq310()
    if TARGET != "self":
        pytest.fail(f"GATEWAY_UPSTREAM={TARGET!r}: expected one of {', '.join(TARGETS)}",
                    pytrace=False)
    return OwnUpstream(suite_conftest(config), data_dir)


# -- Node ---------------------------------------------------------------------------------


class NodeCaseError(AssertionError):
    pass


def require_rhea() -> None:
    from clients import require

    require("rhea-ws")


def _spec(case: str, to: Any, transport: str, params: dict[str, Any]) -> str:
    if isinstance(to, Upstream):  # straight to the upstream, over TCP, as guest
        params = {"login_user": to.user, "login_password": to.password, **params}
        transport = "tcp"
    if ADDRESS_V1:
        params = {"address_v1": True, **params}
    return json.dumps({"case": case, "transport": transport, "host": to.host, "port": to.port,
                       "ws_url": getattr(to, "ws_url", None), "params": params})


def run_node(case: str, to: Any, *, transport: str = "ws", **params: Any) -> Any:
    """node gateway_cases.js CASE against `to` (a GatewayProcess, or an
    Upstream directly): the case's result, or NodeCaseError."""
    require_rhea()
    limit = float(params.get("timeout", NODE_TIMEOUT))
    try:
        proc = subprocess.run(["node", str(NODE_SCRIPT), _spec(case, to, transport, params)],
                              capture_output=True, text=True, timeout=limit + 10, cwd=HERE,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise NodeCaseError(f"node case {case} hung (killed after {limit + 10:.0f} s): "
                            f"{exc.stderr!r}") from None
    return _answer(case, proc.stdout, proc.stderr, proc.returncode)


def _answer(case: str, stdout: str, stderr: str, code: int | None) -> Any:
    lines = [line for line in stdout.splitlines() if line.startswith('{"ok"')]
    if not lines:
        raise NodeCaseError(f"node case {case} printed no result (exit {code}):\n"
                            f"{stdout[-2000:]}\n{stderr[-2000:]}")
    answer = json.loads(lines[-1])
    if not answer.get("ok"):
        raise NodeCaseError(f"rhea-ws {case}: {answer.get('error')}")
    return answer["result"]


def run_node_with_events(case: str, to: Any, on_event: Callable[[dict[str, Any]], None], *,
                         transport: str = "ws", **params: Any) -> Any:
    """run_node, calling on_event(obj) for each {"event": ...} line the case
    prints while it runs (the restart case asks for the kill this way)."""
    require_rhea()
    limit = float(params.get("timeout", NODE_TIMEOUT))
    proc = subprocess.Popen(["node", str(NODE_SCRIPT), _spec(case, to, transport, params)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
    deadline = time.monotonic() + limit + 10
    out: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if line.startswith('{"event"'):
                on_event(json.loads(line))
            if time.monotonic() > deadline:
                raise NodeCaseError(f"node case {case} ran over {limit + 10:.0f} s")
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    return _answer(case, "".join(out), proc.stderr.read(), proc.returncode)


# -- /management, through the gateway or straight to the upstream ------------------------


def qpath(name: str) -> str:
    """A queue's address: `/queues/NAME`, on RabbitMQ 3.x `/amq/queue/NAME`."""
    if ADDRESS_V1:
        return "/amq/queue/" + name
    return "/queues/" + quote(name, safe="")


def management(to: Any, *requests: tuple[str, str, Any]) -> list[dict[str, Any]]:
    """RabbitMQ 4's HTTP-over-AMQP requests, in order, on one link pair."""
    return run_node("requests", to, requests=[list(r) for r in requests])  # type: ignore[no-any-return]


def queue_depth(upstream: Upstream, name: str) -> int:
    """message_count of a queue, asked of the upstream itself (not the gateway)."""
    if isinstance(upstream, RabbitMQ310):
        return upstream.depth(name)
    [answer] = management(upstream, ("GET", qpath(name), None))
    assert answer["status"] == 200, answer
    return int(answer["body"]["message_count"])


def queue_args(kind: str) -> dict[str, Any]:
    return {"durable": True, "arguments": {"x-queue-type": kind}}


def declare_queue(via: Any, upstream: Upstream, name: str, kind: str = "classic") -> None:
    """A durable queue `name` on the upstream: through `via` (the gateway, or the
    upstream itself) with `/management`; on RabbitMQ 3.x a classic queue by
    attaching to `/queue/NAME` with a durable target, others with rabbitmqctl."""
    if isinstance(upstream, RabbitMQ310):
        if kind == "classic":
            r = run_node("declare_v1", via, queue=name, durable=True)
            assert r == {"address": f"/queue/{name}", "durable": 2}, r
        else:
            upstream.declare_queue(name, kind)
        return
    [answer] = management(via, ("PUT", qpath(name), queue_args(kind)))
    assert answer["status"] == 201, answer


def delete_queues(upstream: Upstream, names: list[str]) -> None:
    """Delete queues on the upstream itself (cleanup)."""
    if not names:
        return
    if isinstance(upstream, RabbitMQ310):
        upstream.delete_queues(names)
        return
    management(upstream, *[("DELETE", qpath(n), None) for n in names])


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gw_upstream(pytestconfig: pytest.Config,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """The suite's upstream broker (GATEWAY_UPSTREAM)."""
    upstream = make_upstream(pytestconfig, tmp_path_factory.mktemp("gw-upstream") / "data")
    yield upstream
    upstream.close()


@pytest.fixture(scope="session")
def gateway_process(gw_upstream: Upstream) -> Iterator[GatewayProcess]:
    """The suite's gateway in front of gw_upstream, anonymous clients allowed."""
    proc, info = start_gateway([gw_upstream.url], "--upstream-connections",
                               str(UPSTREAM_CONNECTIONS))
    wait_ready(info)
    yield info
    code = stop_process(proc)
    assert code == 0, f"gateway exited with {code}; log: {info.log_path}"


@pytest.fixture
def gateway(gateway_process: GatewayProcess) -> GatewayProcess:
    """gateway_process, ready (an upstream connection is open) when the test starts."""
    wait_ready(gateway_process)
    return gateway_process


@pytest.fixture
def declare(gateway: GatewayProcess, gw_upstream: Upstream,
            request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """declare(kind="classic") -> a fresh queue (or stream) name, declared
    through the gateway's /management (RabbitMQ 3.x: declare_queue); deleted on
    the upstream afterwards."""
    names: list[str] = []
    case = request.node.name.replace("[", "-").replace("]", "").removeprefix("test_")

    def _declare(kind: str = "classic") -> str:
        name = f"gw-{case}-{uuid.uuid4().hex[:6]}"
        declare_queue(gateway, gw_upstream, name, kind)
        names.append(name)
        return name

    yield _declare
    # cleanup only: the upstream may be down after a failure
    with contextlib.suppress(Exception):
        delete_queues(gw_upstream, names)
