"""Browsing consumers and last-value queues with real clients.

A browser is a receiver whose source asks `distribution-mode: copy`: it sees
every message queued when it attaches and every later one, sent settled, and
takes none; acquiring consumers still get each message once, and the
broker's attach says `copy`.  A queue declared `x-browse-only: true` makes
every consumer a browser.  A queue declared `x-last-value-key: symbol` keeps
only the newest message per value of the application property `symbol`.

- rhea: `source: {address, distribution_mode: 'copy'}` (`node/browse_cases.js`);
- proton: the `proton.reactor.Copy()` link option over TCP
  (`BlockingConnection`), and the same source field set through
  `broker.client.proton_ws`'s `configure` hook over WebSocket.

- `browse_while_consuming`: 25 messages queued, a browser attaches and sees
  them (the depth stays 25), then an acquiring consumer takes while 25 more are
  published one by one: the browser gets all 50, in order and settled, the
  consumer each of the 50 once, and the queue ends empty.
- `last_value_queue`: 3 keys x 100 updates from one sender leave 3 messages; a
  late browser gets exactly the 3 latest and the queue keeps them, it follows a
  further update (which replaces its key's message, at the tail), and a late
  acquiring receiver then gets exactly the 3 latest.
- `browse_attach_reply`: the broker's attach says `copy` for a browser, `move`
  for an ordinary receiver, and `copy` for any receiver of an x-browse-only queue.
- `browse_only_queue`: two ordinary receivers of an x-browse-only queue each
  see every message, and the queue keeps them all.

The module has its own broker, with one last-value queue and one browse-only
queue per client declared at start (`--queue 'conf-prices-rhea-tcp:x-last-value-key=symbol'`,
`--queue 'conf-board-rhea-tcp:x-browse-only=true'`).  Queue depths come from
the broker's HTTP JSON API on the WebSocket port (`GET /api/queues/NAME`:
`message_count`, `unacked`), read while a case runs.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from clients import CaseError, require

if TYPE_CHECKING:
    from conftest import BrokerProcess

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "node" / "browse_cases.js"
CASE_TIMEOUT = 15.0  # seconds, enforced inside the node process too
STEP = 10.0

CLIENTS = ("rhea-tcp", "rhea-ws", "proton-tcp", "proton-ws")
COUNT = 50  # messages browsed and consumed
KEYS = ("AAA", "BBB", "CCC")
UPDATES = 100  # per key


def lvq(client: str) -> str:
    return f"conf-prices-{client}"


def board(client: str) -> str:
    return f"conf-board-{client}"


def _suite_conftest(config: pytest.Config) -> Any:
    """conformance/conftest.py as loaded by pytest (a plain `import conftest`
    may find browser/conftest.py instead)."""
    path = str(HERE / "conftest.py")
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == path:
            return plugin
    raise RuntimeError(f"{path} is not loaded")


@pytest.fixture(scope="module")
def browse_broker(pytestconfig: pytest.Config) -> Iterator[BrokerProcess]:
    """A broker of this module's own, with each client's queues declared at start."""
    suite = _suite_conftest(pytestconfig)
    args: list[str] = []
    for client in CLIENTS:
        args += ["--queue", f"{lvq(client)}:x-last-value-key=symbol"]
        args += ["--queue", f"{board(client)}:x-browse-only=true"]
    proc, info = suite.start_broker(*args)
    yield info
    code = suite.stop_broker(proc)
    assert code == 0, f"broker exited with {code}; log: {info.log_path}"


def api_url(broker: BrokerProcess, name: str) -> str:
    return f"http://{broker.host}:{broker.ws_port}/api/queues/{quote(name, safe='')}"


def queue_stats(broker: BrokerProcess, name: str) -> dict[str, Any]:
    with urllib.request.urlopen(api_url(broker, name), timeout=STEP) as response:
        stats = json.loads(response.read())
    return {k: stats[k] for k in ("message_count", "unacked", "acked", "consumer_count")}


# -- running a case ---------------------------------------------------------------


def run(client: str, case: str, broker: BrokerProcess, **params: Any) -> Any:
    """One case with `client`: rhea through browse_cases.js, proton in process."""
    require(client)
    library, transport = client.rsplit("-", 1)
    if library == "proton":
        return PROTON_CASES[case](transport, broker, params)
    params.setdefault("timeout", CASE_TIMEOUT)
    spec = {
        "case": case,
        "transport": transport,
        "host": broker.host,
        "port": broker.port,
        "ws_url": broker.ws_url,
        "params": params,
    }
    try:
        proc = subprocess.run(
            ["node", str(NODE_SCRIPT), json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=CASE_TIMEOUT + 10,
            cwd=HERE,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CaseError(f"node case {case} hung: {exc.stderr!r}") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise CaseError(
            f"node case {case} printed no result (exit {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    answer = json.loads(lines[-1])
    if not answer.get("ok"):
        raise CaseError(f"{client} {case}: {answer.get('error')}")
    return answer["result"]


# -- the proton side (the same shapes as browse_cases.js) ----------------------------------


def _proton() -> Any:
    import proton_cases  # conformance/ is on sys.path (rootdir conftest)

    return proton_cases


def _mode_name(mode: int) -> str | None:
    from proton import Terminus

    return {Terminus.DIST_MODE_COPY: "copy", Terminus.DIST_MODE_MOVE: "move"}.get(mode)


class ProtonLinks:
    """Browsers and receivers over one proton connection, either transport,
    with what the broker's attach and transfers said."""

    def __init__(self, transport: str, broker: BrokerProcess) -> None:
        self.pc = _proton()
        self.transport = transport
        self.conn = self.pc.CONNECTIONS[transport](broker)

    def receiver(
        self, address: str, *, credit: int, copy: bool = False, auto_credit: bool = False
    ) -> Any:
        from proton.reactor import Copy

        pc, conn = self.pc, self.conn
        if self.transport == "tcp":
            blocking = conn.bc.create_receiver(
                address,
                credit=None,
                name=f"receiver-{uuid.uuid4().hex[:12]}",
                options=[Copy()] if copy else None,
            )
            receiver = pc.TcpReceiver(conn, blocking, auto_credit)
            receiver.flow(credit)
            return receiver
        return pc.WsReceiver(
            conn.bc.create_receiver(
                address,
                credit=credit,
                auto_credit=auto_credit,
                configure=Copy().apply if copy else None,
            )
        )

    def sender(self, address: str) -> Any:
        return self.conn.sender(address)

    def mode(self, receiver: Any, *, remote: bool = True) -> str | None:
        """The distribution mode in the broker's attach (or, `remote=False`, in ours)."""
        if self.transport == "tcp":
            link = receiver.link
            terminus = link.remote_source if remote else link.source
            return _mode_name(terminus.distribution_mode)
        link = receiver.receiver.receiver.link
        return _mode_name(
            self.conn.bc.call_sync(
                lambda: (link.remote_source if remote else link.source).distribution_mode
            )
        )

    def seen(self, got: Any) -> dict[str, Any]:
        """As browse_cases.js `seen`: body, properties, and whether the broker
        sent the transfer settled."""
        if self.transport == "tcp":
            settled = bool(got.delivery.settled)
        else:
            delivery = got.received._received.delivery
            settled = bool(self.conn.bc.call_sync(lambda: delivery.settled))
        props = got.message.properties or {}
        return {
            "body": got.message.body,
            "i": props.get("i"),
            "symbol": props.get("symbol"),
            "settled": settled,
        }

    def take_ready(
        self, receiver: Any, into: list[dict[str, Any]], *, accept: bool = False, wait: float = 0.01
    ) -> None:
        """Everything that has arrived on `receiver` (waiting at most `wait` for the first)."""
        from proton import Timeout

        while True:
            try:
                got = receiver.receive(wait)
            except Timeout:
                return
            into.append(self.seen(got))
            if accept:
                got.accept()
            wait = 0.001

    def close(self) -> None:
        self.conn.close()


def _extras(links: ProtonLinks, receiver: Any, seconds: float) -> list[Any]:
    extra: list[dict[str, Any]] = []
    links.take_ready(receiver, extra, wait=seconds)
    return [e["body"] for e in extra]


def _wait_until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise CaseError(f"timed out after {seconds} s waiting for {what}")


def proton_browse_while_consuming(
    transport: str, broker: BrokerProcess, p: dict[str, Any]
) -> dict[str, Any]:
    from proton import Message

    pc = _proton()
    n, half, name = p["count"], p["count"] // 2, p["name"]

    def message(i: int) -> Message:
        return Message(id=f"{p['tag']}-{i}", properties={"i": i}, body=f"m{i}")

    pub = pc.CONNECTIONS[transport](broker)
    b, c = ProtonLinks(transport, broker), ProtonLinks(transport, broker)
    try:
        sender = pub.sender(p["queue"])
        outcomes = sender.send_all([message(i) for i in range(half)])
        browser = b.receiver(p["queue"], credit=2 * n, copy=True)
        browsed: list[dict[str, Any]] = []
        _wait_until(
            lambda: b.take_ready(browser, browsed) or len(browsed) >= half, STEP, f"{half} browsed"
        )
        after_browse = queue_stats(broker, name)
        consumer = c.receiver(p["queue"], credit=5, auto_credit=True)
        consumed: list[dict[str, Any]] = []
        # One at a time, so that publishing, browsing and consuming interleave.
        for i in range(half, n):
            outcomes.append(sender.send(message(i)))
            c.take_ready(consumer, consumed, accept=True, wait=0.001)
            b.take_ready(browser, browsed, wait=0.001)
        consumed_while_publishing = len(consumed)

        def done() -> bool:
            c.take_ready(consumer, consumed, accept=True)
            b.take_ready(browser, browsed)
            return len(browsed) >= n and len(consumed) >= n

        _wait_until(done, STEP, f"{n} browsed and {n} consumed")
        c.take_ready(consumer, consumed, accept=True, wait=0.3)  # anything more: a duplicate
        b.take_ready(browser, browsed, wait=0.05)
        return {
            "outcomes": outcomes,
            "browser_mode": b.mode(browser),
            "consumer_mode": c.mode(consumer),
            "browsed": browsed,
            "consumed": consumed,
            "after_browse": after_browse,
            "consumed_while_publishing": consumed_while_publishing,
            "final": queue_stats(broker, name),
        }
    finally:
        for conn in (pub, b, c):
            conn.close()


def proton_last_value_queue(
    transport: str, broker: BrokerProcess, p: dict[str, Any]
) -> dict[str, Any]:
    from proton import Message

    name, keys, updates = p["name"], p["keys"], p["updates"]
    links = ProtonLinks(transport, broker)
    try:
        sender = links.sender(p["queue"])
        outcomes = sender.send_all(
            [
                Message(properties={"symbol": k, "u": u}, body=f"{k}={u}")
                for u in range(updates)
                for k in keys
            ]
        )
        after_feed = queue_stats(broker, name)
        browser = links.receiver(p["queue"], credit=100, copy=True)
        browsed = [links.seen(browser.receive(STEP)) for _ in keys]
        browsed_extra = _extras(links, browser, 0.3)
        after_browse = queue_stats(broker, name)
        update_outcome = sender.send(
            Message(properties={"symbol": keys[0], "u": updates}, body=f"{keys[0]}={updates}")
        )
        browsed_update = links.seen(browser.receive(STEP))
        after_update = queue_stats(broker, name)
        consumer = links.receiver(p["queue"], credit=100)
        consumed = []
        for _ in keys:
            got = consumer.receive(STEP)
            consumed.append(links.seen(got))
            got.accept()
        consumed_extra = _extras(links, consumer, 0.3)
        return {
            "outcomes_accepted": outcomes.count("accepted"),
            "after_feed": after_feed,
            "browser_mode": links.mode(browser),
            "browsed": browsed,
            "browsed_extra": browsed_extra,
            "after_browse": after_browse,
            "update_outcome": update_outcome,
            "browsed_update": browsed_update,
            "after_update": after_update,
            "consumed": consumed,
            "consumed_extra": consumed_extra,
            "final": queue_stats(broker, name),
        }
    finally:
        links.close()


def proton_browse_attach_reply(
    transport: str, broker: BrokerProcess, p: dict[str, Any]
) -> dict[str, Any]:
    links = ProtonLinks(transport, broker)
    try:
        browser = links.receiver(p["queue"], credit=0, copy=True)
        plain = links.receiver(p["queue"], credit=0)
        on_board = links.receiver(p["board"], credit=0)
        return {
            "browser": links.mode(browser),
            "receiver": links.mode(plain),
            "browse_only_receiver": links.mode(on_board),
            "asked": {"value": links.mode(browser, remote=False), "type": "symbol"},
        }
    finally:
        links.close()


def proton_browse_only_queue(
    transport: str, broker: BrokerProcess, p: dict[str, Any]
) -> dict[str, Any]:
    from proton import Message

    n = p["count"]
    links = ProtonLinks(transport, broker)
    try:
        outcomes = links.sender(p["board"]).send_all(
            [Message(properties={"i": i}, body=f"n{i}") for i in range(n)]
        )
        got: dict[str, Any] = {}
        modes = {}
        for who in ("a", "b"):
            receiver = links.receiver(p["board"], credit=2 * n)
            modes[who] = links.mode(receiver)
            got[who] = [links.seen(receiver.receive(STEP)) for _ in range(n)]
            got[f"{who}_extra"] = _extras(links, receiver, 0.2)
        return {
            "outcomes": outcomes,
            "modes": modes,
            "got": got,
            "final": queue_stats(broker, p["name"]),
        }
    finally:
        links.close()


PROTON_CASES: dict[str, Callable[[str, BrokerProcess, dict[str, Any]], Any]] = {
    "browse_while_consuming": proton_browse_while_consuming,
    "last_value_queue": proton_last_value_queue,
    "browse_attach_reply": proton_browse_attach_reply,
    "browse_only_queue": proton_browse_only_queue,
}

# -- the tests ------------------------------------------------------------------------


def by_client(clients: tuple[str, ...] = CLIENTS) -> Any:
    return pytest.mark.parametrize("client", [pytest.param(c, id=c) for c in clients])


@by_client()
def test_browse_while_consuming(client: str, browse_broker: BrokerProcess, tag: str) -> None:
    name = f"conf-{tag}"
    r = run(
        client,
        "browse_while_consuming",
        browse_broker,
        queue=f"/queues/{name}",
        name=name,
        api_url=api_url(browse_broker, name),
        count=COUNT,
        tag=tag,
    )
    assert r["outcomes"] == ["accepted"] * COUNT
    assert r["browser_mode"] == "copy"
    assert r["consumer_mode"] == "move"
    everything = list(range(COUNT))
    # The browser: every message once, in order, each sent settled.
    assert [m["i"] for m in r["browsed"]] == everything, "the browser sees each message once"
    assert [m["body"] for m in r["browsed"]] == [f"m{i}" for i in everything]
    assert all(m["settled"] for m in r["browsed"]), "browsed copies are sent settled"
    assert r["after_browse"]["message_count"] == COUNT // 2, "browsing took nothing"
    assert r["after_browse"]["unacked"] == 0
    assert r["consumed_while_publishing"] > 0, "the consumer took messages while others came"
    # The acquiring consumer: each message exactly once, unsettled (it accepted them).
    consumed = [m["i"] for m in r["consumed"]]
    assert sorted(consumed) == everything, "the consumer gets each message exactly once"
    assert consumed == everything, "in order (one consumer)"
    assert not any(m["settled"] for m in r["consumed"]), "acquired messages come unsettled"
    # The queue is empty at the end, nothing waiting for a settlement.
    assert r["final"]["message_count"] == 0
    assert r["final"]["unacked"] == 0


@by_client()
def test_last_value_queue(client: str, browse_broker: BrokerProcess) -> None:
    name = lvq(client)
    r = run(
        client,
        "last_value_queue",
        browse_broker,
        queue=f"/queues/{name}",
        name=name,
        api_url=api_url(browse_broker, name),
        keys=list(KEYS),
        updates=UPDATES,
    )
    assert r["outcomes_accepted"] == len(KEYS) * UPDATES
    latest = [f"{k}={UPDATES - 1}" for k in KEYS]
    assert r["after_feed"]["message_count"] == len(KEYS), "one message per key"
    # A late browser: exactly the latest of each key, and the queue keeps them.
    assert r["browser_mode"] == "copy"
    assert [m["body"] for m in r["browsed"]] == latest
    assert [m["symbol"] for m in r["browsed"]] == list(KEYS)
    assert all(m["settled"] for m in r["browsed"])
    assert r["browsed_extra"] == [], "nothing older than the latest"
    assert r["after_browse"]["message_count"] == len(KEYS)
    # Then it follows updates; the update replaces its key's message, at the tail.
    assert r["update_outcome"] == "accepted"
    assert r["browsed_update"]["body"] == f"{KEYS[0]}={UPDATES}"
    assert r["after_update"]["message_count"] == len(KEYS)
    # A late acquiring receiver: exactly the latest of each key, newest update last.
    assert [m["body"] for m in r["consumed"]] == [*latest[1:], f"{KEYS[0]}={UPDATES}"]
    assert r["consumed_extra"] == []
    assert r["final"]["message_count"] == 0 and r["final"]["unacked"] == 0


@by_client()
def test_browse_attach_reply(client: str, browse_broker: BrokerProcess, tag: str) -> None:
    r = run(
        client,
        "browse_attach_reply",
        browse_broker,
        queue=f"/queues/conf-{tag}",
        board=f"/queues/{board(client)}",
    )
    assert r["asked"]["value"] == "copy", "the client asked copy"
    assert r["asked"]["type"] in ("symbol", "Sym8", "Sym32"), "as a symbol"
    assert r["browser"] == "copy", "the attach reply says the receiver browses"
    assert r["receiver"] == "move", "an ordinary receiver acquires"
    assert r["browse_only_receiver"] == "copy", "every consumer of x-browse-only browses"


@by_client()
def test_browse_only_queue(client: str, browse_broker: BrokerProcess) -> None:
    n = 10
    name = f"{board(client)}"
    r = run(
        client,
        "browse_only_queue",
        browse_broker,
        board=f"/queues/{name}",
        name=name,
        api_url=api_url(browse_broker, name),
        count=n,
    )
    assert r["outcomes"] == ["accepted"] * n
    assert r["modes"] == {"a": "copy", "b": "copy"}
    for who in ("a", "b"):
        assert [m["i"] for m in r["got"][who]] == list(range(n)), f"receiver {who} sees all"
        assert all(m["settled"] for m in r["got"][who])
        assert r["got"][f"{who}_extra"] == []
    assert r["final"]["message_count"] == n, "nothing taken"
