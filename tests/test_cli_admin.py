"""The client-side admin commands (`broker/cli_admin.py`) against a real broker
running in-process on free ports, over amqp://, ws://, amqps:// and wss://."""

from __future__ import annotations

import itertools
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from broker import cli_admin
from broker.cli_admin import NEEDS_PROTON, parse_target, register, table
from broker.embedded import EmbeddedBroker, running

pytest.importorskip("proton")


@click.group()
def cli() -> None:
    """The commands as the lead's `register(main)` adds them."""


register(cli)

_names = itertools.count()


def fresh(prefix: str = "q") -> str:
    """A queue name no other test uses (the broker is shared by the module)."""
    return f"{prefix}-{next(_names)}"


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with running(streams=["log"]) as b:
        yield b


@pytest.fixture(params=["amqp", "ws"])
def url(request: pytest.FixtureRequest, broker: EmbeddedBroker) -> str:
    return str(broker.amqp_url if request.param == "amqp" else broker.ws_url)


def run(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def ok(*args: str, input: bytes | None = None) -> Result:
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def one_error_line(result: Result, exit_code: int) -> str:
    """The command failed with `exit_code` and said why in one line on stderr,
    without a traceback."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- list --------------------------------------------------------------------------------


def test_list_queues_as_an_aligned_table(broker: EmbeddedBroker, url: str) -> None:
    name = fresh("orders")
    broker.declare_queue(name, arguments={"x-max-length": 10})
    for body in ("a", "b"):
        ok("publish", f"/queues/{name}", body, "--url", url)
    lines = ok("list", "queues", "--url", url).stdout.splitlines()
    assert lines[0].split() == ["name", "type", "messages", "consumers", "durable", "arguments"]
    (row,) = [line for line in lines if line.startswith(name + " ")]
    assert row.split() == [name, "classic", "2", "0", "true", "x-max-length=10"]
    # the columns line up: every name starts at 0, every type at one column
    type_at = lines[0].index("type")
    assert all(line[type_at - 2:type_at] == "  " for line in lines[1:])
    assert any(line.split()[:2] == ["log", "stream"] for line in lines)
    # numbers to the right: the messages count ends where its heading does
    assert row.index("2") + 1 == lines[0].index("messages") + len("messages")


def test_list_json_is_the_management_answer(broker: EmbeddedBroker, url: str) -> None:
    name = fresh()
    broker.declare_queue(name, arguments={"x-overflow": "drop-head"})
    queues = json.loads(ok("list", "queues", "--json", "--url", url).stdout)
    (q,) = [q for q in queues if q["name"] == name]
    assert q["message_count"] == 0 and q["consumer_count"] == 0  # plain numbers
    assert q["arguments"] == {"x-overflow": "drop-head", "x-queue-type": "classic"}
    assert q["replicas"] == ["amqpws-broker"] and q["type"] == "classic"
    exchanges = json.loads(ok("list", "exchanges", "--json", "--url", url).stdout)
    assert {"name": "amq.topic", "type": "topic", "durable": True, "auto_delete": False,
            "internal": False, "arguments": {}} in exchanges


def test_list_exchanges_and_bindings(broker: EmbeddedBroker, url: str) -> None:
    name = fresh()
    broker.declare_queue(name)
    broker.bind("amq.topic", name, key=f"{name}.#")
    lines = ok("list", "exchanges", "--url", url).stdout.splitlines()
    assert lines[0].split() == ["name", "type", "durable", "auto_delete", "internal",
                                "arguments"]
    assert ["(AMQP", "default)", "direct", "true", "false", "false"] in \
        [line.split() for line in lines]
    assert ["amq.topic", "topic", "true", "false", "false"] in [line.split() for line in lines]
    lines = ok("list", "bindings", "--url", url).stdout.splitlines()
    assert lines[0].split() == ["source", "destination", "destination_type", "routing_key",
                                "arguments"]
    assert ["amq.topic", name, "queue", f"{name}.#"] in [line.split() for line in lines]
    bindings = json.loads(ok("list", "bindings", "--json", "--url", url).stdout)
    (b,) = [b for b in bindings if b.get("destination_queue") == name]
    assert b["location"].startswith("/bindings/src=amq.topic;dstq=")


def test_list_connections_shows_our_own(url: str) -> None:
    transport = url.split(":")[0].replace("amqp", "tcp")
    lines = ok("list", "connections", "--url", url).stdout.splitlines()
    assert lines[0].split()[:4] == ["name", "user", "transport", "mechanism"]
    mine = [line.split() for line in lines[1:] if "amqpws-broker-admin-" in line]
    assert any(row[1:4] == ["anonymous", transport, "ANONYMOUS"] for row in mine)
    (c, *_) = [c for c in json.loads(ok("list", "connections", "--json", "--url", url).stdout)
               if c["transport"] == transport]
    assert c["user"] == "anonymous" and c["sessions"] >= 1


# -- declare, purge, delete ------------------------------------------------------------------


def test_declare_queue_with_arguments(broker: EmbeddedBroker, url: str) -> None:
    name = fresh()
    out = ok("declare", "queue", name, "--arg", "x-max-length=10", "--arg",
             "x-overflow=drop-head", "--arg", "x-single-active-consumer=true", "--url", url)
    assert out.stdout == f"declared queue '{name}' (classic)\n"
    info = broker._call(lambda: broker.admin.queue_info(name))
    assert info["arguments"] == {"x-max-length": 10, "x-overflow": "drop-head",
                                 "x-single-active-consumer": True, "x-queue-type": "classic"}
    assert type(info["arguments"]["x-max-length"]) is not str  # the config's rules
    again = ok("declare", "queue", name, "--arg", "x-max-length=10", "--arg",
               "x-overflow=drop-head", "--arg", "x-single-active-consumer=true", "--url", url)
    assert again.stdout == f"queue '{name}' already exists (classic, 0 messages)\n"
    line = one_error_line(run("declare", "queue", name, "--url", url), 1)
    assert line.startswith("Error: 409 Conflict: inequivalent arg 'x-max-length'")


def test_declare_stream_json_and_no_durable(broker: EmbeddedBroker, url: str) -> None:
    name = fresh("stream")
    info = json.loads(ok("declare", "queue", name, "--type", "stream", "--arg",
                         "x-max-age=7D", "--json", "--url", url).stdout)
    assert info["type"] == "stream" and info["arguments"]["x-max-age"] == "7D"
    other = fresh()
    info = json.loads(ok("declare", "queue", other, "--no-durable", "--json", "--url",
                         url).stdout)
    assert info["durable"] is False


def test_declare_bad_arguments_are_one_line(url: str) -> None:
    line = one_error_line(run("declare", "queue", fresh(), "--arg", "x-max-length", "--url",
                              url), 2)
    assert line == "Error: --arg 'x-max-length': expected NAME=VALUE"
    line = one_error_line(run("declare", "queue", "amq.mine", "--url", url), 1)
    assert line.startswith("Error: 403 Forbidden: ")
    line = one_error_line(run("declare", "queue", fresh(), "--arg", "x-max-length=-3",
                              "--url", url), 1)
    assert line.startswith("Error: 400 Bad Request: ")


def test_purge_prints_the_count(broker: EmbeddedBroker, url: str) -> None:
    name = fresh()
    broker.declare_queue(name)
    for body in "abc":
        ok("publish", f"/queues/{name}", body, "--url", url)
    assert ok("purge", name, "--url", url).stdout == f"purged 3 messages from queue '{name}'\n"
    assert broker.queue_depth(name) == 0
    assert json.loads(ok("purge", name, "--json", "--url", url).stdout) == \
        {"queue": name, "message_count": 0}
    line = one_error_line(run("purge", "no-such-queue", "--url", url), 1)
    assert line == "Error: 400 Bad Request: no queue 'no-such-queue' in vhost '/'"


def test_delete_prints_the_count_and_unknown_queue_is_404(broker: EmbeddedBroker,
                                                          url: str) -> None:
    name = fresh()
    broker.declare_queue(name)
    ok("publish", f"/queues/{name}", "x", "--url", url)
    assert ok("delete", name, "--url", url).stdout == f"deleted queue '{name}' (1 message)\n"
    assert name not in broker.queues()
    line = one_error_line(run("delete", name, "--url", url), 1)
    assert line == f"Error: 404 Not Found: queue '{name}' in vhost '/' not found"
    out = ok("delete", name, "--if-exists", "--json", "--url", url)
    assert json.loads(out.stdout) == {"queue": name, "message_count": 0}


# -- publish, peek --------------------------------------------------------------------------


def test_publish_and_peek(broker: EmbeddedBroker, url: str) -> None:
    name = fresh()
    broker.declare_queue(name)
    out = ok("publish", f"/queues/{name}", "hello world", "--property", "n=5", "--property",
             "region=eu", "--property", "vip=true", "--subject", "greeting", "--content-type",
             "text/plain", "--message-id", "m-1", "--url", url)
    assert out.stdout == "accepted\n"
    ok("publish", f"/queues/{name}", "-", "--transient", "--url", url, input=b"\x00\xff\x10")
    text = ok("peek", name, "--url", url).stdout
    assert text == (
        "message 1\n"
        "  header: durable=true\n"  # the default: a broker with --data-dir keeps it
        f"  annotations: x-exchange=\"\" x-routing-key={name}\n"
        "  properties: message_id=m-1 subject=greeting content_type=text/plain\n"
        "  application properties: n=5 region=eu vip=true\n"
        "  body: hello world\n"
        "message 2\n"
        f"  annotations: x-exchange=\"\" x-routing-key={name}\n"
        "  body: (hex, 3 bytes) 00ff10\n")
    assert broker.queue_depth(name) == 2, "peeking takes nothing"
    (first,) = json.loads(ok("peek", name, "-n", "1", "--json", "--url", url).stdout)
    assert first["application_properties"] == {"n": 5, "region": "eu", "vip": True}
    assert first["properties"]["subject"] == "greeting"
    assert first["body"]["text"] == "hello world" and first["body"]["kind"] == "data"
    stored = broker.messages(name)[0].application_properties
    assert stored == {"n": 5, "region": "eu", "vip": True}


def test_peek_a_stream_from_an_offset(broker: EmbeddedBroker, url: str) -> None:
    name = fresh("stream")
    broker.declare_queue(name, arguments={"x-queue-type": "stream"})
    for i in range(4):
        ok("publish", f"/queues/{name}", f"event {i}", "--url", url)
    shown = json.loads(ok("peek", name, "--offset", "2", "--json", "--url", url).stdout)
    assert [(m["offset"], m["body"]["text"]) for m in shown] == [(2, "event 2"), (3, "event 3")]
    text = ok("peek", name, "-n", "1", "--url", url).stdout
    assert text.splitlines()[0] == "message 1 (offset 0)"


def test_peek_unknown_queue_is_one_404_line(url: str) -> None:
    line = one_error_line(run("peek", "nope", "--url", url), 1)
    assert line == "Error: 404 Not Found: queue 'nope' in vhost '/' not found"


def test_peek_an_empty_queue_says_so(broker: EmbeddedBroker, url: str) -> None:
    name = fresh()
    broker.declare_queue(name)
    result = ok("peek", name, "--url", url)
    assert result.stdout == "" and result.stderr == f"queue '{name}' has no messages to show\n"


def test_publish_outcomes_other_than_accepted_exit_1(broker: EmbeddedBroker, url: str) -> None:
    unroutable = run("publish", "/exchanges/amq.direct/nobody-listens", "x", "--url", url)
    assert (unroutable.exit_code, unroutable.stdout) == (1, "released\n")
    name = fresh("small")
    broker.declare_queue(name, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ok("publish", f"/queues/{name}", "1", "--url", url)
    full = run("publish", f"/queues/{name}", "2", "--json", "--url", url)
    assert full.exit_code == 1
    assert json.loads(full.stdout) == {
        "outcome": "rejected", "condition": f"amqp:resource-limit-exceeded: queue '{name}' is full"}
    line = one_error_line(run("publish", "/exchanges/no-such/key", "x", "--url", url), 1)
    assert line == "Error: /exchanges/no-such/key: amqp:not-found: no exchange 'no-such' in " \
                   "vhost '/'"


def test_publish_through_a_topic_exchange(broker: EmbeddedBroker, url: str) -> None:
    name = fresh()
    broker.declare_queue(name)
    broker.bind("amq.topic", name, key="orders.*")
    assert ok("publish", "/exchanges/amq.topic/orders.eu", "x", "--url", url).stdout == \
        "accepted\n"
    assert broker.queue_depth(name) == 1


# -- consume --------------------------------------------------------------------------------


def test_consume_count_takes_only_that_many(broker: EmbeddedBroker, url: str) -> None:
    name = fresh()
    broker.declare_queue(name)
    for i in range(5):
        ok("publish", f"/queues/{name}", f"m{i}", "--url", url)
    out = ok("consume", f"/queues/{name}", "-n", "2", "--url", url).stdout
    assert [line for line in out.splitlines() if line.startswith("  body")] == \
        ["  body: m0", "  body: m1"]
    assert broker.queue_depth(name) == 3, "accepted, and nothing more taken"
    lines = ok("consume", f"/queues/{name}", "-n", "3", "--json", "--url", url).stdout
    assert [json.loads(line)["body"]["text"] for line in lines.splitlines()] == \
        ["m2", "m3", "m4"]
    assert broker.queue_depth(name) == 0


def test_consume_tops_up_credit_past_one_window(broker: EmbeddedBroker, url: str) -> None:
    from proton import Message as ProtonMessage
    from proton.utils import BlockingConnection

    name = fresh()
    broker.declare_queue(name)
    conn = BlockingConnection(broker.amqp_url, timeout=10)
    try:
        sender = conn.create_sender(f"/queues/{name}")
        for i in range(cli_admin.CREDIT_WINDOW * 2 + 5):
            sender.send(ProtonMessage(body=f"m{i}".encode(), inferred=True))
    finally:
        conn.close()
    out = ok("consume", f"/queues/{name}", "-n", "24", "--json", "--url", url).stdout
    assert [json.loads(line)["body"]["text"] for line in out.splitlines()] == \
        [f"m{i}" for i in range(24)]
    assert broker.queue_depth(name) == 1


def test_consume_stops_after_the_timeout(broker: EmbeddedBroker, url: str) -> None:
    name = fresh()
    broker.declare_queue(name)
    ok("publish", f"/queues/{name}", "only", "--url", url)
    result = ok("consume", f"/queues/{name}", "-n", "5", "--timeout", "0.3", "--url", url)
    assert result.stdout.splitlines()[-1] == "  body: only"
    assert result.stderr == "1 message (no more in 0.3 s)\n"
    quiet = ok("consume", f"/queues/{name}", "--timeout", "0.2", "--url", url)
    assert (quiet.stdout, quiet.stderr) == ("", "")


def test_consume_a_stream_from_offsets(broker: EmbeddedBroker, url: str) -> None:
    name = fresh("stream")
    broker.declare_queue(name, arguments={"x-queue-type": "stream"})
    for i in range(3):
        ok("publish", f"/queues/{name}", f"e{i}", "--url", url)

    def bodies(*args: str) -> list[tuple[int, str]]:
        out = ok("consume", f"/queues/{name}", "--timeout", "0.3", "--json", *args,
                 "--url", url).stdout
        got = [json.loads(line) for line in out.splitlines()]
        return [(m["message_annotations"]["x-stream-offset"], m["body"]["text"]) for m in got]

    assert bodies("--offset", "first") == [(0, "e0"), (1, "e1"), (2, "e2")]
    assert bodies("--offset", "1", "-n", "1") == [(1, "e1")]
    assert bodies("--offset", "last") == [(2, "e2")]
    assert bodies("--offset", "next") == []
    assert bodies("--offset", "1h") == [(0, "e0"), (1, "e1"), (2, "e2")]
    text = ok("consume", f"/queues/{name}", "--offset", "2", "-n", "1", "--url", url).stdout
    assert text.splitlines()[0] == "message 1 (offset 2)"
    line = one_error_line(run("consume", f"/queues/{name}", "--offset", "soon", "--url", url), 2)
    assert line == ("Error: --offset 'soon': expected first, last, next, an offset (0, 1, …) "
                    "or an interval such as 10m, 1h, 7D")


def when_consumed(b: EmbeddedBroker, name: str, then: Callable[[], object]) -> None:
    """In a thread: once `name` has a consumer, call `then`."""

    def watch() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if b._call(lambda: b.admin.queue_info(name)["consumer_count"]):
                then()
                return
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()


def test_a_queue_deleted_while_consuming_is_one_line(broker: EmbeddedBroker, url: str) -> None:
    name = fresh()
    broker.declare_queue(name)
    when_consumed(broker, name, lambda: broker.delete_queue(name))
    line = one_error_line(run("consume", f"/queues/{name}", "--timeout", "10", "--url", url), 1)
    assert line == f"Error: /queues/{name}: amqp:resource-deleted: queue '{name}' was deleted"


@pytest.mark.parametrize("kind", ["amqp", "ws"])
def test_the_broker_stopping_while_consuming_is_one_line(kind: str) -> None:
    with running(queues=["q"]) as b:
        url = str(b.amqp_url if kind == "amqp" else b.ws_url)
        when_consumed(b, "q", lambda: b._call(b.info.shutdown))
        line = one_error_line(run("consume", "/queues/q", "--timeout", "10", "--url", url), 1)
    assert line == ("Error: connection closed by the broker: amqp:connection:forced: broker is "
                    "shutting down")


def test_consume_refused_address_is_one_line(url: str) -> None:
    line = one_error_line(run("consume", "/exchanges/amq.topic", "--timeout", "1", "--url",
                              url), 1)
    assert line.startswith("Error: /exchanges/amq.topic: amqp:")


# -- connecting -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["amqp", "ws"])
def test_broker_not_running_is_one_line(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}"
    line = one_error_line(run("list", "queues", "--url", url), 3)
    assert line.startswith(f"Error: cannot connect to {url}: ")
    assert "refused" in line.lower() or "failed" in line


def test_usage_errors_are_one_line_too() -> None:
    line = one_error_line(run("purge"), 2)
    assert line == "Error: Missing argument 'QUEUE' (see 'cli purge --help')"
    line = one_error_line(run("peek", "q", "-n", "0"), 2)
    assert line.startswith("Error: Invalid value for '-n' / '--count': 0 is not in the range")
    line = one_error_line(run("declare", "exchange", "x"), 2)
    assert line == "Error: No such command 'exchange' (see 'cli declare --help')"
    assert "--durable / --no-durable" in ok("declare", "queue", "--help").stdout


def test_bad_url_is_a_usage_error() -> None:
    line = one_error_line(run("list", "queues", "--url", "http://127.0.0.1:1"), 2)
    assert line == ("Error: --url 'http://127.0.0.1:1': expected amqp://, amqps://, ws:// or "
                    "wss:// and a host")


def test_without_proton_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "proton", None)  # `import proton` raises ImportError
    line = one_error_line(run("list", "queues"), 2)
    assert line == f"Error: {NEEDS_PROTON}"


def test_parse_target_takes_credentials_from_the_url() -> None:
    t = parse_target("amqp://bob:p%40ss@broker.example:5672", None, None, None)
    assert (t.url, t.user, t.password) == ("amqp://broker.example:5672", "bob", "p@ss")
    t = parse_target("WS://bob:pw@[::1]:15678/ws", "alice", "secret", None)
    assert (t.url, t.user, t.password, t.websocket) == ("ws://[::1]:15678/ws", "alice",
                                                        "secret", True)


def test_table_aligns_and_right_aligns_numbers() -> None:
    assert table(["name", "n", "ok"], [["a", 1, True], ["long-name", 100, None]]) == (
        "name         n  ok\n"
        "a            1  true\n"
        "long-name  100")
    assert table(["name", "n"], []) == "name  n"


# -- users and permissions --------------------------------------------------------------------


@pytest.fixture(scope="module")
def secure() -> Iterator[EmbeddedBroker]:
    with running(users={"bob": "pw", "admin": "root"}, allow_anonymous=False,
                 permissions={"bob": ("", "", "^public$")},
                 queues=["public", "private"]) as b:
        yield b


def test_permissions_refuse_with_403(secure: EmbeddedBroker) -> None:
    bob = ["--url", secure.amqp_url, "--user", "bob", "--password", "pw"]
    line = one_error_line(run("delete", "public", *bob), 1)
    assert line == ("Error: 403 Forbidden: configure access to queue 'public' in vhost '/' "
                    "refused for user 'bob'")
    assert "public" in secure.queues()
    line = one_error_line(run("peek", "private", *bob), 1)
    assert line.startswith("Error: 403 Forbidden: read access to queue 'private'")
    assert ok("peek", "public", *bob).stderr == "queue 'public' has no messages to show\n"
    assert "public" in ok("list", "queues", *bob).stdout  # listings need no permission
    line = one_error_line(run("publish", "/queues/public", "x", *bob), 1)
    assert line.startswith("Error: /queues/public: amqp:unauthorized-access: ")


def test_credentials_in_the_url_and_over_websocket(secure: EmbeddedBroker) -> None:
    ws = secure.ws_url.replace("ws://", "ws://admin:root@")
    assert "private" in ok("list", "queues", "--url", ws).stdout
    amqp = secure.amqp_url.replace("amqp://", "amqp://bob:pw@")
    line = one_error_line(run("delete", "private", "--url", amqp), 1)
    assert line.startswith("Error: 403 Forbidden: configure access to queue 'private'")


@pytest.mark.parametrize("kind", ["amqp", "ws"])
def test_wrong_password_or_anonymous_refused_is_one_line(secure: EmbeddedBroker,
                                                         kind: str) -> None:
    url = secure.amqp_url if kind == "amqp" else secure.ws_url
    line = one_error_line(run("list", "queues", "--url", url, "--user", "bob", "--password",
                              "wrong"), 3)
    assert line.startswith(f"Error: cannot connect to {url}: ")
    assert "amqp:unauthorized-access" in line
    one_error_line(run("list", "queues", "--url", url), 3)


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    trustme = pytest.importorskip("trustme")
    ca, stranger = trustme.CA(), trustme.CA()
    d = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.private_key_pem.write_to_path(str(d / "key.pem"))
    server.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    stranger.cert_pem.write_to_path(str(d / "stranger.pem"))
    return {"cert": d / "cert.pem", "key": d / "key.pem", "ca": d / "ca.pem",
            "stranger": d / "stranger.pem"}


@pytest.fixture(scope="module")
def tls_broker(pki: dict[str, Path]) -> Iterator[EmbeddedBroker]:
    with running(tls_cert=str(pki["cert"]), tls_key=str(pki["key"]), tls_port=0, wss_port=0,
                 queues=["secured"]) as b:
        yield b


@pytest.mark.parametrize("kind", ["amqps", "wss"])
def test_tls_with_ca_file(tls_broker: EmbeddedBroker, pki: dict[str, Path], kind: str) -> None:
    url = str(tls_broker.amqps_url if kind == "amqps" else tls_broker.wss_url)
    url = url.replace("127.0.0.1", "localhost")  # proton checks names, not IP addresses
    assert "secured" in ok("list", "queues", "--url", url, "--ca-file", str(pki["ca"])).stdout
    line = one_error_line(run("list", "queues", "--url", url, "--ca-file",
                              str(pki["stranger"])), 3)
    assert line.startswith(f"Error: cannot connect to {url}: ")
    assert "certificate verify failed" in line.lower()


def test_amqps_to_an_ip_address_says_why_it_fails(tls_broker: EmbeddedBroker,
                                                  pki: dict[str, Path]) -> None:
    line = one_error_line(run("list", "queues", "--url", str(tls_broker.amqps_url),
                              "--ca-file", str(pki["ca"])), 3)
    assert "connect to a name the certificate lists, such as localhost" in line


def test_commands_are_registered_once() -> None:
    group = click.Group()
    register(group)
    assert sorted(group.commands) == ["consume", "declare", "delete", "list", "peek", "publish",
                                      "purge"]
    assert sorted(cli_admin.declare.commands) == ["queue"]
