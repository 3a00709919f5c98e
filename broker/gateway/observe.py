"""What the gateway shows about itself on its HTTP port: `/healthz`, `/readyz`
(ready once an upstream connection is open), `/metrics` and `/api/gateway`
(JSON: client connections, upstream connections and the node each is on,
routed links, deliveries in flight, the upstream's round-trip time).

The round-trip time is measured on link attaches (our attach to the
upstream's answer), a moving average: no clock is read per message.  Pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from broker.services.http_api import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from broker.gateway.core import Gateway


def overview(gw: Gateway) -> dict[str, object]:
    clients = [h for h in gw.clients if h.opened]
    links = [r for h in clients for s in h.sessions.values() for r in s.links]
    return {
        "mode": "gateway",
        "listeners": gw.listener_urls,
        "client_connections": len(clients),
        "client_connections_by_transport": _count(h.transport for h in clients),
        "upstream_connections": [
            {"node": u.node.label, "peer": u.peer_container, "opened": u.opened,
             "sessions": len(u.routes), "bytes_in": u.bytes_in, "bytes_out": u.bytes_out}
            for u in gw.pool.connections],
        "routed_links": len(links),
        "links_routed_total": gw.links_routed,
        # unsettled deliveries on the client side: each has its upstream twin
        "in_flight_deliveries": sum(len(r.client.unsettled) for r in links),
        "held_deliveries": sum(len(r.pending) for r in links),
        "upstream_rtt_seconds": gw.attach_rtt,
    }


def _count(items: Iterator[str] | Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def http_answer(gw: Gateway, request: HttpRequest) -> HttpResponse:
    path = request.target.partition("?")[0]
    if path == "/healthz":
        return HttpResponse(200, b"ok\n")
    if path == "/readyz":
        ready = any(u.opened for u in gw.pool.connections) and not gw.stopping
        return HttpResponse(200 if ready else 503, b"ok\n" if ready else b"unavailable\n")
    if path == "/metrics":
        return _metrics(overview(gw))
    if path == "/api/gateway":
        return HttpResponse(200, json.dumps(overview(gw), indent=1).encode(),
                            "application/json")
    return HttpResponse(404, b"nothing here: a gateway serves /api/gateway, /metrics, "
                             b"/healthz and /readyz\n")


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
            for node, n in sorted(_count(u["node"] for u in view["upstream_connections"]
                                         if u["opened"]).items()):
                upstream.add_metric([node], n)
            yield upstream
            yield GaugeMetricFamily("amqpws_gateway_routed_links", "Links routed now",
                                    value=view["routed_links"])
            yield CounterMetricFamily("amqpws_gateway_links_routed", "Links routed in all",
                                      value=view["links_routed_total"])
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
