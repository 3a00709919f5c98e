"""What the gateway shows about itself on its HTTP port: `/healthz`, `/readyz`
(ready once an upstream connection is open), `/metrics`, `/api/gateway`
(JSON: client connections, upstream connections and the node each is on,
routed links, deliveries in flight, the upstream's round-trip time) and, at
`/`, its console page (`broker/console/gateway.html`, which polls
`/api/gateway`; the console's other files are shared with `serve`'s).

`/api/gateway` is asked as `serve`'s JSON API is (`services/http_api.py`): a
page from a foreign Origin is refused, and when anonymous access is off it
needs HTTP Basic credentials or a bearer token; `/metrics` and the health
routes need nothing.  It lists at most `CLIENT_ROWS` client connections, so
its cost stays bounded with thousands of clients.

The round-trip time is measured on link attaches (our attach to the
upstream's answer), a moving average: no clock is read per message.  Pure.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from broker import __version__
from broker.access import CredentialsRefused, origin_allowed
from broker.config import listens_on_loopback
from broker.observe import console_files
from broker.services.http_api import HttpRequest, HttpResponse, identify

if TYPE_CHECKING:
    from broker.gateway.core import ClientHandle, Gateway

CLIENT_ROWS = 500  # client connections listed by /api/gateway (all are counted)
PAGE = "/gateway.html"  # what `/` is on a gateway
# the broker's own console pages: they need its API, which a gateway has not
_BROKER_PAGES = frozenset({"/index.html", "/console.js"})


@functools.cache
def static_files() -> dict[str, tuple[bytes, str]]:
    """The console's files a gateway serves, by URL path, read once: `/` is
    the gateway's page."""
    files = {path: item for path, item in console_files().items() if path not in _BROKER_PAGES}
    if PAGE in files:
        files["/"] = files[PAGE]
    return files


def overview(gw: Gateway) -> dict[str, object]:
    clients = [h for h in gw.clients if h.opened]
    links = [r for h in clients for s in h.sessions.values() for r in s.links]
    rtt = gw.attach_rtt
    return {
        "mode": "gateway",
        "product": "amqpws-broker", "version": __version__, "node": gw.config.container_id,
        "now": gw.wall_clock(),
        "ready": _ready(gw),
        "listeners": gw.listener_urls,
        "client_connections": len(clients),
        "client_connections_by_transport": dict(Counter(h.transport for h in clients)),
        "upstream_nodes": [n.label for n in gw.pool.nodes],  # never with a password
        "upstream_pool": {"size": gw.pool.size, "wanted": gw.pool.wanted},
        "upstream_connections": [
            {"node": u.node.label, "peer": u.peer_container, "opened": u.opened,
             "sessions": len(u.routes), "links": sum(len(r.links) for r in u.routes.values()),
             "bytes_in": u.bytes_in, "bytes_out": u.bytes_out}
            for u in gw.upstreams()],
        "routed_links": len(links),
        "links_routed_total": gw.links_routed,
        # links an upstream failure left waiting to be re-attached (reattach.py)
        "links_waiting_reattach": gw.links_waiting_reattach,
        "links_reattached_total": gw.links_reattached,
        # unsettled deliveries on the client side: each has its upstream twin
        "in_flight_deliveries": sum(len(r.client.unsettled) for r in links),
        "held_deliveries": sum(len(r.pending) for r in links),
        "upstream_rtt_seconds": rtt,
        "upstream_rtt_ms": None if rtt is None else round(rtt * 1000, 3),
    }


def client_rows(gw: Gateway, limit: int = CLIENT_ROWS) -> list[dict[str, object]]:
    """Open client connections (at most `limit` of them), as the console lists them."""
    rows: list[dict[str, object]] = []
    for handle in gw.clients:
        if len(rows) >= limit:
            break
        if handle.opened:
            rows.append(_client_row(handle))
    return rows


def _client_row(handle: ClientHandle) -> dict[str, object]:
    identity = handle.identity
    routes = [r for s in handle.sessions.values() for r in s.links]
    return {
        "name": handle.peer, "container_id": handle.container_id or "",
        "user": handle.user or "", "transport": handle.transport,
        "mechanism": identity.mechanism if identity is not None else "",
        "sessions": len(handle.conn.sessions), "links": len(routes),
        "in_flight": sum(len(r.client.unsettled) for r in routes),
        "bytes_in": handle.bytes_in, "bytes_out": handle.bytes_out,
    }


def _ready(gw: Gateway) -> bool:
    """Ready once an upstream connection is open; in passthrough mode, users'
    connections open on demand and none stands by, so ready while serving."""
    return (gw.passthrough or any(u.opened for u in gw.pool.connections)) and not gw.stopping


def http_answer(gw: Gateway, request: HttpRequest) -> HttpResponse:
    path = request.target.partition("?")[0]
    if path == "/healthz":
        return HttpResponse(200, b"ok\n")
    if path == "/readyz":
        ready = _ready(gw)
        return HttpResponse(200 if ready else 503, b"ok\n" if ready else b"unavailable\n")
    if path == "/metrics":
        return _metrics(overview(gw))
    if path == "/api/gateway":
        return _api(gw, request)
    static = static_files().get(path)
    if static is not None and request.method in ("GET", "HEAD"):
        return HttpResponse(200, static[0], static[1], (("cache-control", "no-cache"),))
    return HttpResponse(404, b"nothing here: a gateway serves its console at /, /api/gateway, "
                             b"/metrics, /healthz and /readyz\n")


# -- /api/gateway ---------------------------------------------------------------------


def _api(gw: Gateway, request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return _json(405, {"error": f"method {request.method} not allowed on /api/gateway"},
                     (("allow", "GET, HEAD"),))
    origin = request.headers.get("origin")
    if not origin_allowed(origin, gw.config.allowed_origins,
                          loopback_listener=listens_on_loopback(gw.config)):
        return _json(403, {"error": f"origin {origin[:200] if origin else origin} may not use "
                                    "this gateway's API (--allowed-origin)"})
    try:
        identity = identify(gw.access, request, gw.wall_clock())
    except CredentialsRefused as exc:
        return _json(401, {"error": str(exc)}, _CHALLENGE)
    view = overview(gw)
    clients = client_rows(gw)
    truncated = len(clients) < cast(int, view["client_connections"])
    return _json(200, {**view, "user": identity.user, "clients": clients,
                       "clients_truncated": truncated})


_CHALLENGE = (("www-authenticate", 'Basic realm="amqpws-broker gateway", charset="UTF-8"'),)


def _json(status: int, value: object,
          headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, json.dumps(value, indent=1).encode(), "application/json",
                        (("cache-control", "no-store"), *headers))


# -- /metrics -------------------------------------------------------------------------


def _metrics(view: dict[str, Any]) -> HttpResponse:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class Collector:
        def collect(self) -> Iterator[Any]:
            clients = GaugeMetricFamily("amqpws_gateway_client_connections",
                                        "Client connections, by transport", labels=["transport"])
            for transport, n in sorted(view["client_connections_by_transport"].items()):
                clients.add_metric([transport], n)
            yield clients
            upstream = GaugeMetricFamily("amqpws_gateway_upstream_connections",
                                         "Open upstream connections, by node", labels=["node"])
            for node, n in sorted(Counter(u["node"] for u in view["upstream_connections"]
                                         if u["opened"]).items()):
                upstream.add_metric([node], n)
            yield upstream
            yield GaugeMetricFamily("amqpws_gateway_routed_links", "Links routed now",
                                    value=view["routed_links"])
            yield CounterMetricFamily("amqpws_gateway_links_routed", "Links routed in all",
                                      value=view["links_routed_total"])
            yield GaugeMetricFamily("amqpws_gateway_links_waiting_reattach",
                                    "Client links waiting to be re-attached upstream",
                                    value=view["links_waiting_reattach"])
            yield CounterMetricFamily("amqpws_gateway_links_reattached",
                                      "Client links re-attached after an upstream failure",
                                      value=view["links_reattached_total"])
            yield GaugeMetricFamily("amqpws_gateway_in_flight_deliveries",
                                    "Deliveries sent to clients and not yet settled",
                                    value=view["in_flight_deliveries"])
            yield GaugeMetricFamily("amqpws_gateway_held_deliveries",
                                    "Deliveries held for lowered credit",
                                    value=view["held_deliveries"])
            rtt = view["upstream_rtt_seconds"]
            if rtt is not None:
                yield GaugeMetricFamily("amqpws_gateway_upstream_rtt_seconds",
                                        "Upstream round-trip time (link attaches, averaged)",
                                        value=rtt)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return HttpResponse(200, generate_latest(registry), CONTENT_TYPE_LATEST)
