"""What the gateway shows about itself on its HTTP port (gateway/observe.py):
its console page at `/` and the console's shared files, `/api/gateway`,
`/metrics`, `/healthz` and `/readyz`; all asked of `Gateway.http` with the
gateway, an application and the upstream wired in memory (test_routes.Net)."""

from __future__ import annotations

import base64
import json
from typing import Any

from broker.codec.messaging import Accepted
from broker.config import Config
from broker.container import Container
from broker.gateway.core import Gateway
from broker.gateway.observe import client_rows, static_files
from broker.services.http_api import HttpRequest, HttpResponse

from .test_routes import NODE, Net, body, received


def get(gw: Gateway, target: str, method: str = "GET", **headers: str) -> HttpResponse:
    return gw.http(HttpRequest(method, target, headers))


def api(gw: Gateway, **headers: str) -> dict[str, Any]:
    response = get(gw, "/api/gateway", **headers)
    assert response.status == 200, response.body
    assert response.content_type == "application/json"
    assert ("cache-control", "no-store") in response.headers
    answer: dict[str, Any] = json.loads(response.body)
    return answer


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_root_is_the_gateway_page_and_the_console_files_are_shared() -> None:
    gw = Net().gw
    page = get(gw, "/")
    assert page.status == 200 and page.content_type.startswith("text/html")
    assert page.body == get(gw, "/gateway.html").body
    assert b'src="gateway.js"' in page.body and b"console.css" in page.body
    assert ("cache-control", "no-cache") in page.headers
    css = get(gw, "/console.css")
    assert css.status == 200 and css.content_type.startswith("text/css")
    for script in ("/gateway.js", "/view-gateway.js", "/widgets.js", "/dom.js", "/fmt.js",
                   "/live.js", "/api.js"):
        answer = get(gw, script)
        assert answer.status == 200, script
        assert answer.content_type.startswith("text/javascript"), script
    assert get(gw, "/", "HEAD").status == 200
    assert get(gw, "/", "POST").status == 404
    # the broker's own console needs the broker's API: a gateway does not serve it
    assert get(gw, "/index.html").status == 404
    assert get(gw, "/console.js").status == 404
    assert get(gw, "/api/overview").status == 404
    assert get(gw, "/../pyproject.toml").status == 404


def test_the_page_loads_only_files_the_gateway_serves() -> None:
    files = static_files()
    page = files["/gateway.html"][0].decode()
    for name in ("console.css", "favicon.svg", "gateway.js"):
        assert name in page and f"/{name}" in files
    for script in ("/gateway.js", "/view-gateway.js"):
        source = files[script][0].decode()
        for line in source.splitlines():
            if line.startswith("import ") and " from './" in line:
                module = line.split("from '.")[1].split("'")[0]
                assert module in files, f"{script} imports {module}, which is not served"


def test_the_api_shows_clients_upstreams_links_and_deliveries() -> None:
    net = Net()
    empty = api(net.gw)
    assert empty["mode"] == "gateway" and empty["ready"] is True
    assert empty["client_connections"] == 1 and empty["routed_links"] == 0
    assert empty["upstream_nodes"] == ["amqp://rabbit-1:5672"]
    assert "secret" not in json.dumps(empty), "never the upstream's password"
    assert empty["upstream_rtt_seconds"] is None and empty["upstream_rtt_ms"] is None
    assert empty["user"] == "anonymous"

    session = net.session()
    sender = net.sender(session, "/queues/q")
    sender.send(body("one"), settled=True)
    net.pump()
    receiver = net.receiver(session, "/queues/q")
    receiver.flow(5)
    net.now += 0.25
    net.pump()
    (delivery,) = received(net.events())

    view = api(net.gw)
    assert view["client_connections"] == 1
    assert view["client_connections_by_transport"] == {"ws": 1}
    assert view["routed_links"] == 2 and view["links_routed_total"] == 2
    assert view["in_flight_deliveries"] == 1, "delivered to the application, not settled"
    assert view["held_deliveries"] == 0
    assert view["upstream_rtt_seconds"] is not None
    assert view["upstream_rtt_ms"] == round(view["upstream_rtt_seconds"] * 1000, 3)
    (upstream,) = view["upstream_connections"]
    assert upstream["node"] == "amqp://rabbit-1:5672" and upstream["opened"] is True
    assert upstream["peer"] == net.broker.config.container_id
    assert (upstream["sessions"], upstream["links"]) == (1, 2)
    assert upstream["bytes_in"] > 0 and upstream["bytes_out"] > 0
    assert view["upstream_pool"] == {"size": 1, "wanted": 1}
    (client,) = view["clients"]
    assert client["name"] == "browser" and client["transport"] == "ws"
    assert client["container_id"] == "app" and client["user"] == "anonymous"
    assert client["mechanism"] == "ANONYMOUS"
    assert (client["sessions"], client["links"], client["in_flight"]) == (1, 2, 1)
    assert client["bytes_in"] > 0 and client["bytes_out"] > 0
    assert view["clients_truncated"] is False

    receiver.settle(delivery, Accepted())
    receiver.detach(closed=True)
    net.pump()
    after = api(net.gw)
    assert after["in_flight_deliveries"] == 0
    assert after["routed_links"] == 1 and after["links_routed_total"] == 2


def test_client_rows_are_bounded() -> None:
    net = Net()
    for i in range(3):  # client connections beyond the first, said to be open
        handle = net.gw.connection_made(f"peer-{i}", "tcp", lambda: None)
        handle.opened = True
    assert len(client_rows(net.gw, limit=2)) == 2
    view = api(net.gw)
    assert view["client_connections"] == 4 and len(view["clients"]) == 4
    assert view["client_connections_by_transport"] == {"tcp": 3, "ws": 1}


def test_metrics_are_the_gateway_families() -> None:
    net = Net()
    session = net.session()
    net.receiver(session, "/queues/q")
    response = get(net.gw, "/metrics")
    assert response.status == 200 and response.content_type.startswith("text/plain")
    text = response.body.decode()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert families == {
        "amqpws_gateway_client_connections", "amqpws_gateway_upstream_connections",
        "amqpws_gateway_routed_links", "amqpws_gateway_links_routed_total",
        "amqpws_gateway_links_waiting_reattach", "amqpws_gateway_links_reattached_total",
        "amqpws_gateway_in_flight_deliveries", "amqpws_gateway_held_deliveries",
        "amqpws_gateway_upstream_rtt_seconds"}
    assert 'amqpws_gateway_client_connections{transport="ws"} 1.0' in text
    assert 'amqpws_gateway_upstream_connections{node="amqp://rabbit-1:5672"} 1.0' in text
    assert "amqpws_gateway_routed_links 1.0" in text
    assert "amqpws_gateway_links_routed_total 1.0" in text
    assert "amqpws_gateway_links_waiting_reattach 0.0" in text
    assert "secret" not in text


def _carry(a: Any, b: Any) -> None:
    """Bytes back and forth between two handles until both are quiet."""
    for _ in range(100):
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = src.data_to_send()
            if data:
                dst.receive_data(bytes(data))
                moved = True
        if not moved:
            return
    raise AssertionError("never quiet")


def test_ready_once_an_upstream_connection_opens() -> None:
    broker = Container(Config(users={"svc": "secret"}, allow_anonymous=False))
    gw = Gateway(Config(), [NODE], connections=1)
    assert get(gw, "/healthz").status == 200
    assert get(gw, "/readyz").status == 503, "no upstream connection yet"
    assert api(gw)["ready"] is False
    upstream = gw.upstream_made(NODE, lambda: None)
    assert get(gw, "/readyz").status == 503, "dialed, not open yet"
    _carry(upstream, broker.connection_made("gw", "tcp", lambda: None))
    assert upstream.opened
    ready = get(gw, "/readyz")
    assert (ready.status, ready.body) == (200, b"ok\n")
    assert api(gw)["ready"] is True
    gw.shutdown()
    assert get(gw, "/readyz").status == 503, "shutting down"
    assert get(gw, "/healthz").status == 200


def test_the_api_asks_for_credentials_when_anonymous_access_is_off() -> None:
    net = Net(gateway_config=Config(users={"alice": "pw"}, allow_anonymous=False))
    gw = net.gw
    refused = get(gw, "/api/gateway")
    assert refused.status == 401
    assert "anonymous access is off" in json.loads(refused.body)["error"]
    assert any(name == "www-authenticate" for name, _ in refused.headers)
    assert get(gw, "/api/gateway", authorization=basic("alice", "wrong")).status == 401
    assert get(gw, "/api/gateway", authorization="Basic !!!").status == 401
    assert api(gw, authorization=basic("alice", "pw"))["user"] == "alice"
    # the page, /metrics and the health routes need nothing
    assert get(gw, "/").status == 200 and get(gw, "/metrics").status == 200
    assert get(gw, "/readyz").status == 200


def test_the_api_refuses_foreign_pages_and_changes() -> None:
    gw = Net().gw
    refused = get(gw, "/api/gateway", origin="https://evil.example")
    assert refused.status == 403 and "origin" in json.loads(refused.body)["error"]
    assert api(gw, origin="http://localhost:8080")["mode"] == "gateway", "a loopback page"
    assert get(gw, "/api/gateway", "POST").status == 405
    assert get(gw, "/api/gateway", "HEAD").status == 200
