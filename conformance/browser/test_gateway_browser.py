"""rhea's browser build in headless Chromium through an `amqpws-broker
gateway`: the page's own WebSocket goes to the gateway's ws port, every link
is routed to the upstream (GATEWAY_UPSTREAM: our `serve`, or RabbitMQ 4; see
conformance/gateway_support.py).

- the harness page (`page/harness.js`) sends and receives on a queue and reads
  a stream from `first`, all declared first through the gateway's /management;
- the bunny demo (`examples/bunny/`) draws on a stream through the gateway:
  its page is served with serve.py's own `Handler`, its `/config.json` naming
  the gateway's WebSocket port and the stream (declared through the gateway),
  as test_bunny_restart.py serves it; serve.py itself always starts a broker of
  its own, so it is not run.
"""

# ruff: noqa: F401, F811 - the fixtures imported from gateway_support are test arguments

from __future__ import annotations

import importlib.util
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from bunny_page import BLUE, RED, SWOOSH, ZIGZAG, assert_shows, at, draw, open_bunny, rgba
from gateway_support import (  # the fixtures among them: used as arguments
    GatewayProcess,
    declare,
    gateway,
    gateway_process,
    gw_upstream,
    make_upstream,
    management,
    qpath,
    queue_args,
    start_gateway,
    stop_process,
    wait_ready,
)

pytestmark = pytest.mark.parametrize("client", ["rhea-browser"])

HERE = Path(__file__).resolve().parent
BUNNY = HERE.parent.parent / "examples" / "bunny"
OFFSET_SPEC = "rabbitmq:stream-offset-spec"

MESSAGE: dict[str, Any] = {
    "durable": True,
    "priority": 7,
    "message_id": "msg-1",
    "correlation_id": "corr-1",
    "subject": "greeting",
    "reply_to": "/queues/replies",
    "content_type": "text/plain",
    "creation_time": {"$timestamp": 1700000000123},
    "group_id": "group-a",
    "application_properties": {
        "text": "héllo ✓", "int": 42, "negative": -7, "double": 1.5, "flag": True,
        "long": {"$long": 2**40}, "bytes": {"$binary": "00ff10"}, "nothing": None,
    },
    "message_annotations": {"x-opt-origin": "browser", "x-opt-count": 3},
    "body": "hello from the browser, through the gateway",
}


def test_gateway_roundtrip(client: str, gateway: GatewayProcess, declare: Any,
                           harness: Any) -> None:
    address = qpath(declare())
    result = harness.call("harness.roundtrip",
                          {"url": gateway.ws_url, "address": address, "messages": [MESSAGE]})
    assert result["outcomes"] == ["accepted"]
    got = result["received"][0]
    expected = dict(MESSAGE, application_properties=dict(MESSAGE["application_properties"],
                                                        long=2**40))
    for field, value in expected.items():
        if field == "message_annotations":
            assert {k: got[field].get(k) for k in value} == value  # the upstream may add its own
        else:
            assert got.get(field) == value, field


def test_gateway_many_in_order(client: str, gateway: GatewayProcess, declare: Any,
                               harness: Any) -> None:
    result = harness.call("harness.many",
                          {"url": gateway.ws_url, "address": qpath(declare()), "count": 500})
    assert result["outcomes"] == {"accepted": 500}
    assert result["bodies"] == list(range(500))


def test_gateway_stream_first(client: str, gateway: GatewayProcess, declare: Any,
                              harness: Any) -> None:
    stream = declare("stream")
    tag = uuid.uuid4().hex
    result = harness.call("harness.streamRead", {"url": gateway.ws_url, "address": qpath(stream),
                                                 "tag": tag, "count": 5, "offset": "first"})
    assert result["outcomes"] == ["accepted"] * 5
    echoed = [tuple(v["$described"]) for v in (result["filter"] or {}).values()
              if isinstance(v, dict) and "$described" in v]
    assert (OFFSET_SPEC, "first") in echoed, result["filter"]
    assert result["first"]["offset"] == 0 and result["contiguous"]
    assert [d["body"] for d in result["tagged"]] == [f"{tag}-{i}" for i in range(5)]
    for d in result["tagged"]:
        ann = d["message_annotations"]
        assert ann["x-stream-offset"] == d["offset"]
        assert ann["x-routing-key"] == stream


def test_gateway_management_from_the_browser(client: str, gateway: GatewayProcess,
                                             gw_upstream: Any, harness: Any) -> None:
    """Browser code declares, binds, inspects and deletes a queue with RabbitMQ's
    /management, through the gateway, on the upstream."""
    name = f"gw-browser-mgmt-{uuid.uuid4().hex[:6]}"
    path = qpath(name)
    answers = harness.call("harness.management", {"url": gateway.ws_url, "requests": [
        ["PUT", path, {"durable": True, "arguments": {"x-queue-type": "classic"}}],
        ["POST", "/bindings", {"source": "amq.topic", "destination_queue": name,
                               "binding_key": "browser.#", "arguments": {}}],
        ["GET", path, None],
        ["DELETE", path, None],
        ["GET", path, None],
    ]})
    assert [a["status"] for a in answers] == [201, 204, 200, 200, 404], answers
    assert answers[2]["body"]["name"] == name
    assert answers[3]["body"] == {"message_count": 0}
    # and the upstream itself agrees: the queue is gone there
    [upstream_answer] = management(gw_upstream, ("GET", path, None))
    assert upstream_answer["status"] == 404


# -- the bunny demo on a stream, through the gateway ---------------------------------------


def _serve_module() -> Any:
    """examples/bunny/serve.py as a module (its main() is not run)."""
    spec = importlib.util.spec_from_file_location("bunny_serve_gateway", BUNNY / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bunny_via_gateway(pytestconfig: pytest.Config, node: str, gateway: GatewayProcess,
                      declare: Any) -> Iterator[dict[str, Any]]:
    """The bunny page, its config.json pointing at the gateway and a fresh stream."""
    if not (BUNNY / "node_modules" / "browserify" / "package.json").exists():
        plugin = pytestconfig.pluginmanager.get_plugin(str(HERE / "conftest.py"))
        plugin.missing("npm packages of examples/bunny are not installed")
    serve = _serve_module()
    serve.ensure_bundle()  # what serve.py does first (a no-op once built)
    stream = declare("stream")

    class Handler(serve.Handler):  # type: ignore[misc, name-defined]
        config = serve.json.dumps({"ws_port": gateway.ws_port, "ws_path": "/ws",
                                   "address": qpath(stream), "stream": stream}).encode()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(BUNNY)))
    threading.Thread(target=httpd.serve_forever, name="bunny-gateway-http", daemon=True).start()
    try:
        yield {"http_url": f"http://127.0.0.1:{httpd.server_address[1]}/", "stream": stream}
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_gateway_bunny(client: str, bunny_via_gateway: dict[str, Any], gateway: GatewayProcess,
                       gw_upstream: Any, open_page: Any) -> None:
    url = bunny_via_gateway["http_url"]
    a = open_bunny(open_page, url)
    assert a.eval("bunny.url") == f"ws://127.0.0.1:{gateway.ws_port}/ws"
    b = open_bunny(open_page, url)
    red, red_points = draw(a, RED, ZIGZAG)
    assert red_points > len(ZIGZAG)
    assert_shows(b, red, red_points, RED, at(*ZIGZAG[1]))  # live, through the gateway
    assert_shows(a, red, red_points, RED, at(*ZIGZAG[1]))  # its own echo
    chunks = a.wait_for(f"bunny.strokes[{red!r}].chunks")
    a.wait_for(f"bunny.published === {chunks}")  # every chunk accepted upstream

    c = open_bunny(open_page, url)  # opened afterwards: replays the stream from `first`
    assert_shows(c, red, red_points, RED, at(*ZIGZAG[3]))
    c.wait_for(f"bunny.lastOffset === {chunks - 1}")

    blue, blue_points = draw(b, BLUE, SWOOSH)
    for page in (a, c):
        assert_shows(page, blue, blue_points, BLUE, at(*SWOOSH[2]))
    for page in (a, b, c):
        assert page.eval("bunny.errors") == []

    # The drawing is in the upstream's stream: python-qpid-proton reads it there
    # (straight, not through the gateway: see test_gateway.py's
    # test_receiver_credit_with_attach for proton through it) from `first`.
    from proton import Described, Timeout, symbol
    from proton.reactor import Filter
    from proton.utils import BlockingConnection

    spec = symbol("rabbitmq:stream-offset-spec")
    conn = BlockingConnection(gw_upstream.url, timeout=20)
    got = []
    try:
        receiver = conn.create_receiver(qpath(bunny_via_gateway["stream"]), credit=1000,
                                        options=Filter({spec: Described(spec, "first")}))
        while True:
            try:
                got.append(receiver.receive(timeout=1.0))
            except Timeout:
                break
            receiver.accept()
    finally:
        conn.close()
    blue_chunks = c.eval(f"bunny.strokes[{blue!r}].chunks")
    assert [int(m.annotations[symbol("x-stream-offset")]) for m in got] == \
        list(range(chunks + blue_chunks))
    assert [m.body["stroke"] for m in got] == [red] * chunks + [blue] * blue_chunks


# -- the bunny demo across an upstream restart, through the gateway --------------------------


@pytest.fixture
def bunny_restart_rig(pytestconfig: pytest.Config, node: str, gw_upstream: Any,
                      tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An upstream the test may kill (a `serve` of its own on a data directory;
    RabbitMQ only when its restart is allowed), a gateway of its own in front,
    a stream declared through it and the bunny page pointing at it."""
    why = gw_upstream.restart_skip()
    if why:
        pytest.skip(why)
    if not (BUNNY / "node_modules" / "browserify" / "package.json").exists():
        plugin = pytestconfig.pluginmanager.get_plugin(str(HERE / "conftest.py"))
        plugin.missing("npm packages of examples/bunny are not installed")
    own = gw_upstream.kind == "self"
    upstream = make_upstream(pytestconfig, tmp_path / "data") if own else gw_upstream
    proc, gw = start_gateway([upstream.url], "--upstream-connections", "2")
    httpd = None
    try:
        wait_ready(gw)
        stream = f"bunny-restart-{uuid.uuid4().hex[:6]}"
        [answer] = management(gw, ("PUT", qpath(stream), queue_args("stream")))
        assert answer["status"] == 201, answer
        serve = _serve_module()
        serve.ensure_bundle()

        class Handler(serve.Handler):  # type: ignore[misc, name-defined]
            config = serve.json.dumps({"ws_port": gw.ws_port, "ws_path": "/ws",
                                       "address": qpath(stream), "stream": stream}).encode()

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(BUNNY)))
        threading.Thread(target=httpd.serve_forever, name="bunny-restart-http",
                         daemon=True).start()
        yield {"http_url": f"http://127.0.0.1:{httpd.server_address[1]}/", "stream": stream,
               "upstream": upstream, "gateway": gw}
    finally:
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        stop_process(proc)
        if own:
            upstream.close()


def test_gateway_bunny_upstream_restart(client: str, bunny_restart_rig: dict[str, Any],
                                        open_page: Any) -> None:
    """The upstream is killed under a drawing tab and started again: the tab
    (its links not asking to be re-attached) sees its links end, reconnects
    through the gateway by itself and resumes after the offset it had; nothing
    accepted is lost, nothing is drawn twice."""
    rig = bunny_restart_rig
    upstream, gw = rig["upstream"], rig["gateway"]
    a = open_bunny(open_page, rig["http_url"] + "?reattach=0")
    assert a.eval("bunny.reattach") is False
    red, red_points = draw(a, RED, ZIGZAG)
    assert_shows(a, red, red_points, RED, at(*ZIGZAG[1]))
    red_chunks = a.wait_for(f"bunny.strokes[{red!r}].chunks")
    a.wait_for(f"bunny.published === {red_chunks}")  # every chunk accepted upstream

    upstream.kill()
    a.wait_for("!bunny.ready")  # its links ended (amqp:connection:forced): it noticed
    upstream.start_again()
    wait_ready(gw)
    a.wait_for("bunny.ready", timeout=30)  # back by itself, through the same gateway
    errors = a.eval("bunny.errors")
    # clean errors: the gateway said why (amqp:connection:forced, "... went away"),
    # and attaches made while the upstream was down were refused the same way
    assert errors and all("went away" in e or "no upstream broker" in e for e in errors), errors

    c = open_bunny(open_page, rig["http_url"])  # replays the stream from the upstream
    assert_shows(c, red, red_points, RED, at(*ZIGZAG[3]))
    blue, blue_points = draw(a, BLUE, SWOOSH)
    assert_shows(c, blue, blue_points, BLUE, at(*SWOOSH[2]))
    blue_chunks = a.wait_for(f"bunny.strokes[{blue!r}].chunks")
    # A resumed just past what it had: each stroke's chunks counted once
    assert a.eval(f"bunny.strokes[{red!r}].chunks") == red_chunks
    c.wait_for(f"bunny.lastOffset === {red_chunks + blue_chunks - 1}")
    assert c.eval("bunny.errors") == []


def test_gateway_bunny_rides_out_an_upstream_restart(client: str,
                                                    bunny_restart_rig: dict[str, Any],
                                                    open_page: Any) -> None:
    """As above, with the page's default: both links desire amqpws:reattach.
    The tab never notices the restart (no error, no second connection); a
    stroke drawn while the upstream is down is published once it is back, and
    the stream is read on from just past the last offset: each chunk once."""
    rig = bunny_restart_rig
    upstream, gw = rig["upstream"], rig["gateway"]
    a = open_bunny(open_page, rig["http_url"])
    assert a.eval("bunny.reattach") is True, "the gateway offered to re-attach both links"
    red, red_points = draw(a, RED, ZIGZAG)
    assert_shows(a, red, red_points, RED, at(*ZIGZAG[1]))
    red_chunks = a.wait_for(f"bunny.strokes[{red!r}].chunks")
    a.wait_for(f"bunny.published === {red_chunks}")

    upstream.kill()
    blue, blue_points = draw(a, BLUE, SWOOSH)  # while nothing is upstream
    upstream.start_again()
    wait_ready(gw)
    blue_chunks = a.wait_for(f"bunny.strokes[{blue!r}] && bunny.strokes[{blue!r}].chunks",
                             timeout=40)
    a.wait_for(f"bunny.published === {red_chunks + blue_chunks}", timeout=40)
    assert_shows(a, blue, blue_points, BLUE, at(*SWOOSH[2]))
    assert a.eval("bunny.errors") == [] and a.eval("bunny.connects") == 1, \
        "the tab saw nothing of the restart"
    assert a.eval(f"bunny.strokes[{red!r}].chunks") == red_chunks, "nothing read twice"
    assert a.eval("bunny.lastOffset") == red_chunks + blue_chunks - 1
    c = open_bunny(open_page, rig["http_url"])  # the stream as the upstream keeps it
    c.wait_for(f"bunny.lastOffset === {red_chunks + blue_chunks - 1}")
    assert_shows(c, blue, blue_points, BLUE, at(*SWOOSH[2]))
