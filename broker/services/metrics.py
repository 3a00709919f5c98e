"""`/metrics` in Prometheus' text format, written by `prometheus-client`.

Nothing is counted here: the nodes and the container keep plain integer
totals (cheap on the per-message path), and at each scrape `render` turns a
snapshot of them into metric families.  Names follow RabbitMQ's exporter
(rabbitmq_prometheus) where it has one, so dashboards built for RabbitMQ
work; the rest are `amqpws_*`.  Per-queue series carry `vhost` and `queue`
labels, as RabbitMQ's per-object metrics do.

prometheus-client is imported when `/metrics` is first asked for, so a broker
nobody scrapes does not load it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

VHOST = "/"

# per-queue series: (name, help, kind, the key in admin.queue_stats)
QUEUE_SERIES = (
    ("rabbitmq_queue_messages_ready", "Messages ready to be delivered", "gauge", "message_count"),
    ("rabbitmq_queue_messages_unacked", "Messages delivered, not yet settled", "gauge",
     "unacked"),
    ("rabbitmq_queue_messages_bytes", "Payload bytes of ready messages", "gauge", "bytes"),
    ("rabbitmq_queue_consumers", "Consumers", "gauge", "consumer_count"),
    ("rabbitmq_queue_messages_published", "Messages stored", "counter", "published"),
    ("rabbitmq_queue_messages_delivered", "Deliveries", "counter", "delivered"),
    ("rabbitmq_queue_messages_acked", "Deliveries accepted", "counter", "acked"),
    ("rabbitmq_queue_messages_redelivered", "Messages returned for another delivery",
     "counter", "redelivered"),
    ("amqpws_queue_messages_dead_lettered", "Messages dead-lettered", "counter",
     "dead_lettered"),
    ("amqpws_queue_messages_expired", "Messages expired", "counter", "expired"),
    ("amqpws_queue_messages_dropped", "Messages dropped (overflow, delivery limit)", "counter",
     "dropped"),
)


@dataclass
class Snapshot:
    """What the container knows at one scrape."""

    connections_by_transport: Mapping[str, int] = field(default_factory=dict)
    sessions: int = 0
    links: int = 0
    queues: Sequence[Mapping[str, Any]] = field(default_factory=list)  # admin.queue_stats each
    bytes_in: int = 0
    bytes_out: int = 0
    connections_opened: int = 0
    auth_failures: int = 0
    connection_errors: Mapping[str, int] = field(default_factory=dict)  # by condition
    held_bytes: int = 0
    memory_high_watermark: int = 0
    memory_alarm: bool = False
    resident_bytes: int | None = None


def render(snapshot: Snapshot) -> tuple[bytes, str]:
    """The text exposition format and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, snapshot: Snapshot) -> None:
        self.s = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.s
        conns = GaugeMetricFamily("rabbitmq_connections", "Open connections, by transport",
                                  labels=["transport"])
        for transport, n in sorted(s.connections_by_transport.items()):
            conns.add_metric([transport], n)
        yield conns
        yield GaugeMetricFamily("rabbitmq_channels", "Sessions (AMQP 1.0's channels)",
                                value=s.sessions)
        yield GaugeMetricFamily("amqpws_links", "Attached links", value=s.links)
        yield CounterMetricFamily("rabbitmq_connections_opened", "Connections accepted",
                                  value=s.connections_opened)
        yield CounterMetricFamily("rabbitmq_connection_incoming_bytes", "Bytes received",
                                  value=s.bytes_in)
        yield CounterMetricFamily("rabbitmq_connection_outgoing_bytes", "Bytes sent",
                                  value=s.bytes_out)
        yield CounterMetricFamily("rabbitmq_auth_attempts_failed", "Failed authentications",
                                  value=s.auth_failures)
        errors = CounterMetricFamily("amqpws_connection_errors",
                                     "Connections closed with an error, by condition",
                                     labels=["condition"])
        for condition, n in sorted(s.connection_errors.items()):
            errors.add_metric([condition], n)
        yield errors
        families = {}
        for name, text, kind, _key in QUEUE_SERIES:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            families[name] = family(name, text, labels=["vhost", "queue"])
        totals = {key: 0 for *_, key in QUEUE_SERIES}
        for q in s.queues:
            for name, _text, _kind, key in QUEUE_SERIES:
                value = int(q.get(key, 0))
                families[name].add_metric([VHOST, str(q["name"])], value)
                totals[key] += value
        yield from families.values()
        yield GaugeMetricFamily("rabbitmq_queues", "Queues and streams", value=len(s.queues))
        for name, text, key in (
            ("rabbitmq_global_messages_received", "Messages stored in queues", "published"),
            ("rabbitmq_global_messages_delivered", "Deliveries", "delivered"),
            ("rabbitmq_global_messages_acknowledged", "Deliveries accepted", "acked"),
            ("rabbitmq_global_messages_redelivered", "Messages returned for another delivery",
             "redelivered"),
            ("rabbitmq_global_messages_dead_lettered", "Messages dead-lettered",
             "dead_lettered"),
            ("amqpws_global_messages_expired", "Messages expired", "expired"),
            ("amqpws_global_messages_dropped", "Messages dropped", "dropped"),
        ):
            yield CounterMetricFamily(name, text + " (queues alive now)", value=totals[key])
        yield GaugeMetricFamily("amqpws_messages_held_bytes",
                                "What queued messages hold, as the memory alarm counts it",
                                value=s.held_bytes)
        yield GaugeMetricFamily("rabbitmq_resident_memory_limit_bytes",
                                "The memory high watermark", value=s.memory_high_watermark)
        yield GaugeMetricFamily("rabbitmq_alarms_memory_used_watermark",
                                "1 while the memory alarm holds publishers back",
                                value=int(s.memory_alarm))
        if s.resident_bytes is not None:
            yield GaugeMetricFamily("rabbitmq_process_resident_memory_bytes",
                                    "Resident set size of the broker process",
                                    value=s.resident_bytes)
