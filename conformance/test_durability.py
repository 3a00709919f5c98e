"""Durability (`serve --data-dir DIR`) with real clients across broker restarts.

Each test has a broker of its own on a fresh data directory (`tmp_path`).  A
client publishes; the broker is stopped (SIGTERM, exit code 0 required) or
killed (SIGKILL) and started again on the same directory with the same
command line; the client then consumes.  The publish and consume steps are
separate client runs: rhea's in `node/durability_cases.js` (one Node process
per step), proton's below, through the suite's connection interface
(`proton_cases.CONNECTIONS`).  What is durable is docs/storage.md's:

- `durable_queue_restart`: 60 durable messages (header `durable: true`) with
  10 transient ones among them go to a queue auto-created by the attach.
  After a restart the queue gives back exactly the 60 durable ones, in order,
  with their message-id, subject, application properties and body, never
  delivered before (delivery-count 0).  The consumer accepts the first 30 and
  leaves 30 unsettled (released when it closes); after a second restart only
  those 30 come back, in order, with delivery-count 1 and first-acquirer
  false (docs/storage.md: "it went out once").
- `durable_stream_restart`: batches A (20) and B (20) go to a stream declared
  with `--stream`, with wall-clock marks before A, between A and B and after
  B.  After a restart: `first` gives offsets 0..39 in order, a numeric offset,
  the timestamp between A and B (first of B), `last`, an interval, and the
  timestamp after B (nothing old) all still work; batch C (10) then gets
  offsets 40..49.  After a second restart, this time without `--stream` (the
  topology file declares it), `first` gives all 50 and the timestamp after B
  gives the first of C.
- `durable_queue_kill`: the broker is SIGKILLed while 2,000 durable messages
  are in flight, once 200 are accepted (the client sends the signal itself, so
  the kill lands mid-stream); after the restart every accepted message is
  there, nothing that was not sent, no duplicate, in publish order.
- `durable_stream_kill`: the same on a stream; read from `first` after the
  restart, the offsets are 0..n-1 with no gap, holding a prefix of what was
  sent that covers every accepted message, and the next publish gets offset n.
- `durable_queue_kill_delivered`: a consumer takes 10 messages and settles
  none; the broker is SIGKILLed; after the restart all 10 come back, in order,
  as delivered once (delivery-count 1, first-acquirer false).
- `management_durable_queue` (`rmq-python`, `--rabbitmq-compat`): a classic
  queue with `x-max-length`, a direct exchange bound to it and a stream,
  declared through `/management`, and a classic queue declared `durable:
  false`; after a restart the durable ones are there with their arguments and
  messages, declaring the queue and the exchange again is accepted, and the
  binding still routes; the transient queue is gone.
- `management_stream_redeclare` (`rmq-python`): a stream declared with
  `max_len_bytes` and `max_age`, declared again after a restart: accepted, with
  its arguments.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from clients import IN_CI, NODE_DIR, CaseError, require

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = NODE_DIR / "durability_cases.js"
NODE_TIMEOUT = 30.0  # seconds per Node step, enforced inside the node process too
STEP = 10.0

RESTART_CLIENTS = ("proton-tcp", "proton-ws", "rhea-tcp", "rhea-ws")
KILL_CLIENTS = ("proton-tcp", "rhea-tcp", "rhea-ws")  # proton-ws: no way to send without waiting
STREAM = "conf-durable-stream"
STREAM_ADDRESS = f"/queues/{STREAM}"
RECOVERED = re.compile(r"recovered (\d+) queue\(s\) with ([\d,]+) messages and (\d+) "
                       r"stream\(s\) with ([\d,]+) messages in ([\d.]+) s")


def params(clients: tuple[str, ...]) -> list[Any]:
    return [pytest.param(c, id=c) for c in clients]


# -- a broker on a data directory, restarted ------------------------------------------


def _suite_conftest(config: pytest.Config) -> Any:
    """conformance/conftest.py as loaded by pytest (a plain `import conftest`
    may find browser/conftest.py instead)."""
    path = str(HERE / "conftest.py")
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == path:
            return plugin
    raise RuntimeError(f"{path} is not loaded")


class DurableBroker:
    """`serve --data-dir DIR ARGS` (the suite's `start_broker`), restartable on
    the same directory.  `info` is the running broker's BrokerProcess; every
    start's log is kept for the failure messages."""

    def __init__(self, suite: Any, data_dir: Path, *args: str) -> None:
        self.suite = suite
        self.data_dir = data_dir
        self.args = args
        self.logs: list[Path] = []
        self.proc: Any = None
        self.info: Any = None

    def start(self, *args: str) -> Any:
        assert self.proc is None
        self.proc, self.info = self.suite.start_broker(
            "--data-dir", str(self.data_dir), *(args or self.args))
        self.logs.append(self.info.log_path)
        return self.info

    def stop(self) -> None:
        code = self.suite.stop_broker(self.proc)
        self.proc = None
        assert code == 0, f"broker exited with {code} on SIGTERM; log: {self.logs[-1]}\n" \
                          f"{self.tail()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, *args: str) -> Any:
        self.stop()
        return self.start(*args)

    def recovered(self) -> dict[str, float] | None:
        """What the last start's "recovered ..." log line says."""
        found = RECOVERED.search(self.logs[-1].read_text(errors="replace"))
        if found is None:
            return None
        q, qm, s, sm, secs = found.groups()
        return {"queues": int(q), "messages": int(qm.replace(",", "")), "streams": int(s),
                "stream_messages": int(sm.replace(",", "")), "seconds": float(secs)}

    def tail(self, n: int = 3000) -> str:
        return "".join(f"--- {p}\n{p.read_text(errors='replace')[-n:]}\n" for p in self.logs)

    def close(self) -> None:
        if self.proc is not None:
            with suppress(Exception):
                self.suite.stop_broker(self.proc)
            self.proc = None


@pytest.fixture
def durable(pytestconfig: pytest.Config, tmp_path: Path) -> Iterator[Any]:
    """Factory: durable(*args) -> a started DurableBroker on tmp_path/data."""
    suite = _suite_conftest(pytestconfig)
    made: list[DurableBroker] = []

    def make(*args: str) -> DurableBroker:
        b = DurableBroker(suite, tmp_path / "data", *args)
        made.append(b)
        b.start()
        return b

    yield make
    for b in made:
        b.close()


# -- the steps, with each client ------------------------------------------------------


def step(client: str, case: str, broker: Any, **p: Any) -> Any:
    """One step (`publish`, `consume`, `kill_during_publish`) with `client`."""
    require(client)
    library, transport = client.rsplit("-", 1)
    if library == "proton":
        return PROTON_STEPS[case](transport, broker, **p)
    p.setdefault("timeout", NODE_TIMEOUT)
    spec = {"case": case, "transport": transport, "host": broker.host, "port": broker.port,
            "ws_url": broker.ws_url, "params": p}
    try:
        proc = subprocess.run(["node", str(NODE_SCRIPT), json.dumps(spec)], capture_output=True,
                              text=True, timeout=NODE_TIMEOUT + 10, cwd=HERE, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CaseError(f"node step {case} hung: {exc.stderr!r}") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise CaseError(f"node step {case} printed no result (exit {proc.returncode}):\n"
                        f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    answer = json.loads(lines[-1])
    if not answer.get("ok"):
        raise CaseError(f"{client} {case}: {answer.get('error')}")
    return answer["result"]


def _proton() -> Any:
    import proton_cases  # conformance/ is on sys.path (rootdir conftest)

    return proton_cases


def _proton_message(m: dict[str, Any]) -> Any:
    from proton import Message

    return Message(id=m["id"], body=m["body"], durable=bool(m.get("durable")),
                   subject=m.get("subject"), properties=m.get("props"))


def _proton_describe(m: Any) -> dict[str, Any]:
    from proton import symbol

    offset = (m.annotations or {}).get(symbol("x-stream-offset"))
    return {"id": m.id, "body": m.body, "subject": m.subject, "durable": bool(m.durable),
            "props": {str(k): v for k, v in (m.properties or {}).items()},
            "delivery_count": int(m.delivery_count or 0),
            "first_acquirer": bool(m.first_acquirer),
            "offset": None if offset is None else int(offset)}


def proton_publish(transport: str, broker: Any, *, address: str,
                   batches: list[list[dict[str, Any]]], gap_ms: int = 60) -> dict[str, Any]:
    pc = _proton()
    conn = pc.CONNECTIONS[transport](broker)
    sender = conn.sender(address)
    outcomes, marks = [], []
    gap = gap_ms / 2000
    for batch in batches:
        time.sleep(gap)
        marks.append(int(time.time() * 1000))
        time.sleep(gap)
        outcomes.append(sender.send_all([_proton_message(m) for m in batch]))
    time.sleep(gap)
    marks.append(int(time.time() * 1000))
    time.sleep(gap)
    conn.close()
    return {"outcomes": outcomes, "marks": marks}


def proton_consume(transport: str, broker: Any, *, address: str, count: int,
                   spec: Any = None, accept: int | None = None, rest_max: int = 0,
                   rest_ms: int = 500, extra_ms: int = 0) -> dict[str, Any]:
    """The same as durability_cases.js's `consume`."""
    from proton import Timeout

    pc = _proton()
    conn = pc.CONNECTIONS[transport](broker)
    receiver = conn.receiver(address, credit=count + rest_max + 5,
                             filter=None if spec is None else pc.offset_filter(spec))
    accept = count if accept is None else accept
    messages = []
    for i in range(count):
        got = receiver.receive(STEP)
        messages.append(_proton_describe(got.message))
        if i < accept:
            got.accept()
    rest = []
    while len(rest) < rest_max:
        try:
            got = receiver.receive(rest_ms / 1000)
        except Timeout:
            break
        rest.append(_proton_describe(got.message))
        got.accept()
    extra = None
    if extra_ms:
        with suppress(Timeout):
            extra = _proton_describe(receiver.receive(extra_ms / 1000).message)
    conn.close()
    return {"messages": messages, "rest": rest, "extra": extra}


def proton_kill_during_publish(transport: str, broker: Any, *, address: str,
                               generate: dict[str, Any], kill_after: int,
                               pid: int) -> dict[str, Any]:
    """proton's own I/O: every message handed to the link at once (proton sends
    them as credit comes), SIGKILL once `kill_after` are accepted, then what
    the broker had said before it died."""
    from proton import Disposition

    assert transport == "tcp"
    pc = _proton()
    conn = pc.TcpConn(broker)
    sender = conn.sender(address)
    sent = messages(generate["tag"], generate["prefix"], generate["n"])
    deliveries = [(m["id"], sender.link.send(_proton_message(m))) for m in sent]

    def accepted() -> int:
        return sum(d.remote_state == Disposition.ACCEPTED for _, d in deliveries)

    conn.bc.wait(lambda: accepted() >= kill_after, timeout=3 * STEP, msg="accepted outcomes")
    os.kill(pid, signal.SIGKILL)
    # Outcomes the broker wrote before it died may still be in the socket.
    with suppress(Exception):
        conn.bc.wait(lambda: False, timeout=1.0)
    result = {
        "sent": [i for i, _ in deliveries],
        "accepted": [i for i, d in deliveries if d.remote_state == Disposition.ACCEPTED],
        "other": {i: pc.STATES.get(d.remote_state, str(d.remote_state))
                  for i, d in deliveries if d.remote_state not in (0, Disposition.ACCEPTED)},
        "killed": True,
    }
    with suppress(Exception):
        conn.bc.close()
    return result


def proton_kill_while_holding(transport: str, broker: Any, *, address: str, count: int,
                              pid: int, hold_ms: int = 500) -> dict[str, Any]:
    pc = _proton()
    conn = pc.CONNECTIONS[transport](broker)
    receiver = conn.receiver(address, credit=count)
    held = [_proton_describe(receiver.receive(STEP).message) for _ in range(count)]
    conn.idle(hold_ms / 1000)  # none settled; the connection's I/O goes on
    os.kill(pid, signal.SIGKILL)
    with suppress(Exception):
        conn.abort()
    return {"held": held, "killed": True}


PROTON_STEPS = {"publish": proton_publish, "consume": proton_consume,
                "kill_during_publish": proton_kill_during_publish,
                "kill_while_holding": proton_kill_while_holding}


def messages(tag: str, prefix: str, n: int, transient_every: int = 0) -> list[dict[str, Any]]:
    """n messages `TAG-PREFIX-i`; with transient_every=k every k-th is transient."""
    return [{"id": f"{tag}-{prefix}{i}", "body": f"{prefix}{i}", "subject": f"s-{prefix}",
             "props": {"i": i, "batch": prefix},
             "durable": not (transient_every and i % transient_every == transient_every - 1)}
            for i in range(n)]


def bodies(result: dict[str, Any]) -> list[Any]:
    return [m["body"] for m in result["messages"]]


# -- queues ----------------------------------------------------------------------------


@pytest.mark.parametrize("client", params(RESTART_CLIENTS))
def test_durable_queue_restart(client, durable, tag):
    b = durable()
    queue = f"/queues/conf-durable-{tag}"
    sent = messages(tag, "m", 70, transient_every=7)
    kept = [m for m in sent if m["durable"]]
    assert len(kept) == 60
    pub = step(client, "publish", b.info, address=queue, batches=[sent], gap_ms=0)
    assert pub["outcomes"] == [["accepted"] * 70]

    b.restart()
    recovered = b.recovered()
    first = step(client, "consume", b.info, address=queue, count=60, accept=30, extra_ms=400)
    assert first["extra"] is None, (
        f"a message beyond the 60 durable ones came back: {first['extra']} "
        f"(recovered: {recovered})")
    got = first["messages"]
    assert [m["id"] for m in got] == [m["id"] for m in kept], f"recovered: {recovered}"
    assert [m["body"] for m in got] == [m["body"] for m in kept]
    assert all(m["subject"] == "s-m" for m in got)
    assert [m["props"] for m in got] == [m["props"] for m in kept]
    assert all(m["durable"] is True for m in got)
    assert [m["delivery_count"] for m in got] == [0] * 60, "never delivered before the restart"

    b.restart()
    recovered = b.recovered()
    again = step(client, "consume", b.info, address=queue, count=30, extra_ms=400)
    assert again["extra"] is None, (
        f"an accepted message came back after a clean stop: {again['extra']} "
        f"(recovered: {recovered})")
    assert [m["id"] for m in again["messages"]] == [m["id"] for m in kept[30:]]
    # docs/storage.md: a message that went out unsettled comes back as "delivered once"
    assert [m["delivery_count"] for m in again["messages"]] == [1] * 30
    assert [m["first_acquirer"] for m in again["messages"]] == [False] * 30

    b.restart()
    empty = step(client, "consume", b.info, address=queue, count=0, extra_ms=400)
    assert empty["extra"] is None, "the queue is empty after everything was accepted"


@pytest.mark.parametrize("client", params(KILL_CLIENTS))
def test_durable_queue_kill(client, durable, tag):
    b = durable()
    queue = f"/queues/conf-durable-{tag}"
    sent = messages(tag, "k", 2000)
    r = step(client, "kill_during_publish", b.info, address=queue,
             generate={"tag": tag, "prefix": "k", "n": len(sent)}, kill_after=200,
             pid=b.info.pid)
    assert r["sent"] == [m["id"] for m in sent[: len(r["sent"])]]
    assert r["killed"]
    b.kill()
    accepted = r["accepted"]
    assert len(accepted) >= 200
    assert not r["other"], f"outcomes other than accepted before the kill: {r['other']}"
    order = {m["id"]: i for i, m in enumerate(sent)}

    b.start()
    recovered = b.recovered()
    got = step(client, "consume", b.info, address=queue, count=0, rest_max=len(sent) + 10,
               rest_ms=600)
    ids = [m["id"] for m in got["rest"]]
    assert len(set(ids)) == len(ids), "no duplicates"
    assert set(ids) <= set(r["sent"]), "nothing that was not sent"
    missing = [i for i in accepted if i not in set(ids)]
    assert not missing, (
        f"{len(missing)} accepted message(s) lost after SIGKILL (first {missing[:5]}); "
        f"{len(accepted)} accepted, {len(ids)} consumed, recovered: {recovered}\n{b.tail()}")
    assert [order[i] for i in ids] == sorted(order[i] for i in ids), "in publish order"
    assert all(m["delivery_count"] == 0 for m in got["rest"])




@pytest.mark.parametrize("client", [
    pytest.param(c, id=c)
    for c in RESTART_CLIENTS])
def test_durable_queue_kill_delivered(client, durable, tag):
    """Messages a consumer holds unsettled when the broker is SIGKILLed come
    back after the restart, as delivered once (docs/storage.md)."""
    b = durable()
    queue = f"/queues/conf-durable-{tag}"
    sent = messages(tag, "h", 10)
    pub = step(client, "publish", b.info, address=queue, batches=[sent], gap_ms=0)
    assert pub["outcomes"] == [["accepted"] * 10]
    r = step(client, "kill_while_holding", b.info, address=queue, count=10, hold_ms=500,
             pid=b.info.pid)
    assert [m["id"] for m in r["held"]] == [m["id"] for m in sent]
    b.kill()
    b.start()
    got = step(client, "consume", b.info, address=queue, count=10, extra_ms=300)
    assert [m["id"] for m in got["messages"]] == [m["id"] for m in sent], "all back, in order"
    assert got["extra"] is None
    assert [(m["delivery_count"], m["first_acquirer"]) for m in got["messages"]] == \
        [(1, False)] * 10, "they had gone out once"


# -- streams ---------------------------------------------------------------------------


def offsets(result: dict[str, Any]) -> list[int | None]:
    return [m["offset"] for m in result["messages"]]


@pytest.mark.parametrize("client", params(RESTART_CLIENTS))
def test_durable_stream_restart(client, durable, tag):
    b = durable("--stream", STREAM)
    a, bb = messages(tag, "a", 20), messages(tag, "b", 20)
    pub = step(client, "publish", b.info, address=STREAM_ADDRESS, batches=[a, bb])
    assert pub["outcomes"] == [["accepted"] * 20, ["accepted"] * 20]
    _before_a, between, after_b = pub["marks"]

    b.restart()
    recovered = b.recovered()

    def read(spec: Any, count: int, extra_ms: int = 0) -> dict[str, Any]:
        return step(client, "consume", b.info, address=STREAM_ADDRESS, count=count,
                    spec=spec, extra_ms=extra_ms)

    everything = read("first", 40, extra_ms=300)
    assert offsets(everything) == list(range(40)), f"recovered: {recovered}"
    assert bodies(everything) == [m["body"] for m in a + bb]
    assert [m["id"] for m in everything["messages"]] == [m["id"] for m in a + bb]
    assert [m["props"] for m in everything["messages"]] == [m["props"] for m in a + bb]
    assert everything["extra"] is None
    numeric = read({"offset": 25}, 1)
    assert (offsets(numeric), bodies(numeric)) == ([25], ["b5"])
    at = read({"timestamp": between}, 1)
    assert (offsets(at), bodies(at)) == ([20], ["b0"]), "timestamp between A and B"
    last = read("last", 1)
    assert (offsets(last), bodies(last)) == ([39], ["b19"])
    interval = read("10m", 1)
    assert offsets(interval) == [0]
    late = read({"timestamp": after_b}, 0, extra_ms=300)
    assert late["extra"] is None, "a timestamp after everything gives nothing old"

    c = messages(tag, "c", 10)
    more = step(client, "publish", b.info, address=STREAM_ADDRESS, batches=[c], gap_ms=0)
    assert more["outcomes"] == [["accepted"] * 10]
    tail = read({"offset": 40}, 10, extra_ms=300)
    assert offsets(tail) == list(range(40, 50)), "offsets go on after the recovered ones"
    assert bodies(tail) == [m["body"] for m in c]

    b.restart("--log-level", "debug")  # no --stream: the topology file declares it
    recovered = b.recovered()
    everything = read("first", 50, extra_ms=300)
    assert offsets(everything) == list(range(50)), f"recovered: {recovered}"
    assert bodies(everything) == [m["body"] for m in a + bb + c]
    assert everything["extra"] is None
    at = read({"timestamp": after_b}, 1)
    assert (offsets(at), bodies(at)) == ([40], ["c0"]), "timestamp between B and C"
    at = read({"timestamp": between}, 1)
    assert (offsets(at), bodies(at)) == ([20], ["b0"])


@pytest.mark.parametrize("client", params(KILL_CLIENTS))
def test_durable_stream_kill(client, durable, tag):
    b = durable("--stream", STREAM)
    sent = messages(tag, "k", 2000)
    r = step(client, "kill_during_publish", b.info, address=STREAM_ADDRESS,
             generate={"tag": tag, "prefix": "k", "n": len(sent)}, kill_after=200,
             pid=b.info.pid)
    assert r["killed"]
    b.kill()
    accepted = r["accepted"]
    assert len(accepted) >= 200
    assert not r["other"], f"outcomes other than accepted before the kill: {r['other']}"

    b.start()
    recovered = b.recovered()
    got = step(client, "consume", b.info, address=STREAM_ADDRESS, spec="first", count=0,
               rest_max=len(sent) + 10, rest_ms=600)
    n = len(got["rest"])
    assert [m["offset"] for m in got["rest"]] == list(range(n)), f"recovered: {recovered}"
    assert [m["id"] for m in got["rest"]] == [m["id"] for m in sent[:n]], \
        "the stream holds a prefix of what was sent, in order"
    assert n >= len(accepted), (
        f"{len(accepted) - n} accepted message(s) lost after SIGKILL: {len(accepted)} "
        f"accepted, {n} read back, recovered: {recovered}\n{b.tail()}")
    more = step(client, "publish", b.info, address=STREAM_ADDRESS,
                batches=[messages(tag, "after", 5)], gap_ms=0)
    assert more["outcomes"] == [["accepted"] * 5]
    tail = step(client, "consume", b.info, address=STREAM_ADDRESS, spec={"offset": n},
                count=5, extra_ms=300)
    assert [m["offset"] for m in tail["messages"]] == list(range(n, n + 5))
    assert bodies(tail) == [f"after{i}" for i in range(5)]
    assert tail["extra"] is None


# -- /management (rabbitmq-amqp-python-client) -------------------------------------------


def _require_rmq() -> None:
    try:
        import rabbitmq_amqp_python_client  # noqa: F401
    except ImportError as exc:
        reason = f"rmq-python: rabbitmq-amqp-python-client not installed ({exc}); " \
                 "run `make conformance`"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.mark.parametrize("client", [pytest.param("rmq-python", id="rmq-python")])
def test_management_durable_queue(client, durable, tag):
    _require_rmq()
    import rabbitmq_client_cases as rc
    from rabbitmq_amqp_python_client import (
        AddressHelper,
        ClassicQueueSpecification,
        ExchangeSpecification,
        ExchangeToQueueBindingSpecification,
        ExchangeType,
        Message,
        OffsetSpecification,
        StreamConsumerOptions,
        StreamSpecification,
    )

    b = durable("--rabbitmq-compat", "--user", "guest:guest")
    classic, transient, stream, exchange = (f"rmq-{tag}-{p}" for p in
                                            ("classic", "transient", "stream", "x"))

    def target() -> Any:
        return rc.Target("ours", b.info.host, b.info.port, "guest", "guest")

    def session() -> tuple[Any, Any]:
        conn = rc.connect(target())
        return conn, conn.management()

    def done(conn: Any, mgmt: Any) -> None:
        with suppress(*rc.CLIENT_ERRORS):
            mgmt.close()
        with suppress(*rc.CLIENT_ERRORS):
            conn.close()

    def publish(conn: Any, address: str, texts: list[str]) -> list[Any]:
        p = conn.publisher(address)
        try:
            return [rc.publish(p, Message(body=t.encode(), durable=True))["outcome"]
                    for t in texts]
        finally:
            p.close()

    with rc._watchdog(rc.CASE_LIMIT, "management_durable_queue"):
        conn, mgmt = session()
        try:
            mgmt.declare_queue(ClassicQueueSpecification(name=classic, max_len=100))
            mgmt.declare_queue(ClassicQueueSpecification(name=transient, is_durable=False))
            mgmt.declare_queue(StreamSpecification(name=stream))
            mgmt.declare_exchange(ExchangeSpecification(name=exchange,
                                                        exchange_type=ExchangeType.direct))
            mgmt.bind(ExchangeToQueueBindingSpecification(
                source_exchange=exchange, destination_queue=classic, binding_key="k"))
            before = {"classic": rc.queue_info(mgmt.queue_info(classic)),
                      "transient": rc.queue_info(mgmt.queue_info(transient)),
                      "stream": rc.queue_info(mgmt.queue_info(stream))}
            outcomes = {
                "via_exchange": publish(conn, AddressHelper.exchange_address(exchange, "k"),
                                        ["x0", "x1", "x2"]),
                "direct": publish(conn, AddressHelper.queue_address(classic), ["q0", "q1"]),
                "transient": publish(conn, AddressHelper.queue_address(transient), ["t0"]),
                "stream": publish(conn, AddressHelper.queue_address(stream),
                                  [f"s{i}" for i in range(5)]),
            }
        finally:
            done(conn, mgmt)
        assert {o for v in outcomes.values() for o in v} == {"accepted"}, outcomes
        assert before["classic"]["durable"] is True
        assert before["transient"]["durable"] is False

        b.restart()
        recovered = b.recovered()
        conn, mgmt = session()
        try:
            after = {"classic": rc.queue_info(mgmt.queue_info(classic)),
                     "stream": rc.queue_info(mgmt.queue_info(stream))}
            transient_after = rc.attempt(lambda: mgmt.queue_info(transient))
            # what an application does at start: declare its topology again
            redeclared = {
                "classic": rc.attempt(lambda: mgmt.declare_queue(
                    ClassicQueueSpecification(name=classic, max_len=100))),
                "exchange": rc.attempt(lambda: mgmt.declare_exchange(
                    ExchangeSpecification(name=exchange, exchange_type=ExchangeType.direct))),
            }
            routed = publish(conn, AddressHelper.exchange_address(exchange, "k"), ["x3"])
        finally:
            done(conn, mgmt)
        got = rc.consume(target(), AddressHelper.queue_address(classic), 6)
        streamed = rc.consume(target(), AddressHelper.queue_address(stream), 5,
                              options=StreamConsumerOptions(
                                  offset_specification=OffsetSpecification.first))

    assert after["classic"]["durable"] is True, f"recovered: {recovered}"
    assert after["classic"]["arguments"] == before["classic"]["arguments"]
    assert after["classic"]["type"] == before["classic"]["type"] == "classic"
    assert after["classic"]["message_count"]["value"] == 5, after["classic"]
    assert after["stream"]["type"] == "stream"
    assert after["stream"]["arguments"] == before["stream"]["arguments"]
    assert transient_after["ok"] is False, "a queue declared durable: false is gone"
    assert redeclared == {"classic": {"ok": True}, "exchange": {"ok": True}}, redeclared
    assert routed == ["accepted"], "the binding survived the restart"
    assert [m["body"] for m in got["messages"]] == ["x0", "x1", "x2", "q0", "q1", "x3"], got
    assert not got["timed_out"]
    assert [m["body"] for m in streamed["messages"]] == [f"s{i}" for i in range(5)], streamed
    assert [m["annotations"]["value"]["x-stream-offset"]["value"]
            for m in streamed["messages"]] == list(range(5))




@pytest.mark.parametrize("client", [pytest.param(
    "rmq-python", id="rmq-python")])
def test_management_stream_redeclare(client, durable, tag):
    """A stream declared with retention through /management, declared again
    with the same specification after a restart (as an application does at
    start) is accepted, and keeps its arguments."""
    _require_rmq()
    from datetime import timedelta

    import rabbitmq_client_cases as rc
    from rabbitmq_amqp_python_client import StreamSpecification

    b = durable("--rabbitmq-compat", "--user", "guest:guest")
    spec = StreamSpecification(name=f"rmq-{tag}-stream", max_len_bytes=10_000_000,
                               max_age=timedelta(hours=1))

    def declare() -> tuple[dict[str, Any], dict[str, Any] | None]:
        conn = rc.connect(rc.Target("ours", b.info.host, b.info.port, "guest", "guest"))
        mgmt = conn.management()
        try:
            outcome = rc.attempt(lambda: mgmt.declare_queue(spec))
            info = rc.queue_info(mgmt.queue_info(spec.name)) if outcome["ok"] else None
        finally:
            with suppress(*rc.CLIENT_ERRORS):
                mgmt.close()
            with suppress(*rc.CLIENT_ERRORS):
                conn.close()
        return outcome, info

    with rc._watchdog(rc.CASE_LIMIT, "management_stream_redeclare"):
        first, before = declare()
        again, _ = declare()
        b.restart()
        after_restart, after = declare()
    assert first == {"ok": True} and again == {"ok": True}
    assert before is not None
    assert after_restart == {"ok": True}, f"declaring it again after the restart: {after_restart}"
    assert after is not None and after["arguments"] == before["arguments"]
