"""The store meets the registry: recovery at start, and from then on the hooks
that make each new queue and stream durable and the snapshot of what the
topology file keeps.

What is durable: every stream; a queue declared durable (the default, as
RabbitMQ's) that is neither temporary (a dynamic node) nor exclusive; the
exchanges declared durable other than the predeclared ones; the bindings
between those.  A durable queue keeps the messages whose header says
`durable: true`; a stream keeps every message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.admin import Admin
from broker.codec.messaging import Message
from broker.nodes.azure import rule_of
from broker.nodes.base import Entry
from broker.nodes.queue import Queue
from broker.nodes.registry import PREDECLARED, Node, Registry
from broker.nodes.stream import Stream
from broker.store.durable import Store
from broker.store.journal import Recovered

log = logging.getLogger("broker.store")


@dataclass(slots=True)
class RecoveryReport:
    queues: int = 0
    streams: int = 0
    messages: int = 0  # queued messages brought back
    stream_messages: int = 0  # offsets retained on disk


def recover(store: Store, admin: Admin, now: float) -> RecoveryReport:
    """Declare what the data directory holds, with its messages, and make the
    registry tell the store of every node from now on."""
    registry = admin.registry
    report = RecoveryReport()
    topology = store.read_topology()
    waiting = store.recover_queues()  # name → its live messages, until the queue exists

    def added(node: Node) -> None:
        if isinstance(node, Stream):
            attach_stream(store, node, report)
        elif not node.temporary:
            node.journal = store.queue_journal(node)
            found = waiting.pop(node.name, None)
            if found:
                _restore(store, node, found, now)
                report.messages += len(found)
            node.resume_sequence(store.recovered_sequence(node.name))

    def removed(node: Node) -> None:
        if isinstance(node, Stream):
            store.stream_deleted(node.name)
        else:
            store.queue_deleted(node.name)

    registry.on_node_added = added
    registry.on_node_removed = removed
    for node in list(registry.nodes.values()):  # any made before the store was there
        added(node)
    for x in topology["exchanges"]:
        admin.declare_exchange(x["name"], type=x["type"], durable=True,
                               auto_delete=x.get("auto_delete", False),
                               internal=x.get("internal", False),
                               arguments=x.get("arguments") or None)
    for q in topology["queues"]:
        admin.declare_queue(q["name"], arguments=q.get("arguments") or None,
                            auto_delete=q.get("auto_delete", False), now=now)
        report.queues += 1
    for s in topology["streams"]:
        if s.get("arguments"):  # declared with arguments: declared again with them
            admin.declare_queue(s["name"], arguments=s["arguments"], now=now)
        else:
            registry.declare_stream(s["name"], max_age=s.get("max_age"),
                                    max_length_bytes=s.get("max_length_bytes"))
        stream = registry.get(s["name"])
        if isinstance(stream, Stream) and s.get("max_length_messages") is not None:
            stream.max_length_messages = s["max_length_messages"]
        report.streams += 1
    for b in topology["bindings"]:
        admin.bind(b["source"], b["destination"], destination_kind=b["destination_kind"],
                   key=b.get("key", ""), arguments=b.get("arguments") or None)
    for subscription, rules in topology.get("rules", {}).items():  # Azure's, if any
        if registry.get(subscription) is not None:
            registry.azure.set_rules(subscription, [
                rule_of(r["name"], r["kind"], r.get("definition")) for r in rules])
    if waiting:
        log.warning("store: messages of %d queue(s) not in the topology file were dropped: "
                    "%s", len(waiting), ", ".join(sorted(waiting)))
    store.watch(lambda: durable_topology(registry, store), lambda: registry.topology_version)
    return report


def attach_stream(store: Store, stream: Stream, report: RecoveryReport | None = None) -> None:
    log_ = store.stream_log(stream.name)
    first, end = log_.recover()
    stream.backing = store.stream_backing(stream, log_)
    if end:
        stream.restore(first, end, log_.stored_bytes, log_.last_index_time)
        if report is not None:
            report.stream_messages += end - first


def _restore(store: Store, queue: Queue, found: list[Recovered], now: float) -> None:
    """Put a queue's recovered messages back, in order, without recording them
    again and without its limits; one that had gone out to a consumer counts
    as a failed delivery."""
    queue_id = store.queue_id(queue.name)
    for r in found:
        entry = Entry(Message.trusted(r.payload), r.expires_at)
        entry.sequence = r.sequence
        if r.delivered:
            entry.delivery_count = 1
            entry.acquired_before = True
        queue.restore(entry, now)
        if queue_id is not None:
            store.journal.attach(queue_id, r.sequence, entry)


def durable_topology(registry: Registry, store: Store) -> dict[str, Any]:
    """What the topology file keeps (see the top).  A queue found not durable
    after all (declared `durable: false`, or made exclusive) stops being
    journaled here."""
    queues, streams = [], []
    for name, node in registry.nodes.items():
        info = registry.info[name]
        if isinstance(node, Stream):
            streams.append({"name": name, "max_age": node.max_age,
                            "max_length_bytes": node.max_length_bytes,
                            "max_length_messages": node.max_length_messages,
                            "arguments": _plain(info.arguments)})
        elif node.temporary or not info.durable or info.exclusive_owner is not None:
            if node.journal is not None:
                store.queue_deleted(name)
                node.journal = None
        else:
            queues.append({"name": name, "arguments": _plain(info.arguments),
                           "auto_delete": info.auto_delete})
    kept = {q["name"] for q in queues} | {s["name"] for s in streams}
    exchanges = [{"name": x.name, "type": x.type, "auto_delete": x.auto_delete,
                  "internal": x.internal, "arguments": _plain(x.arguments)}
                 for x in registry.exchanges.values()
                 if x.name and x.name not in PREDECLARED and x.durable]
    kept_exchanges = {x["name"] for x in exchanges} | set(PREDECLARED)
    bindings = [{"source": b.source, "destination": b.destination,
                 "destination_kind": b.destination_kind, "key": b.key,
                 "arguments": _plain(b.arguments)}
                for b in registry.bindings()
                if b.source in kept_exchanges and
                (b.destination in (kept if b.destination_kind == "queue" else kept_exchanges))]
    rules = {name: [{"name": r.name, "kind": r.kind, "definition": r.definition}
                    for r in found]
             for name, found in registry.azure.custom_rules().items() if name in kept}
    return {"version": 1, "queues": queues, "streams": streams, "exchanges": exchanges,
            "bindings": bindings, "rules": rules}


def _plain(arguments: Mapping[str, object] | None) -> dict[str, Any]:
    """Arguments as JSON keeps them (strings, numbers, booleans; others as text)."""
    return {str(k): v if v is None or isinstance(v, str | int | float | bool) else str(v)
            for k, v in (arguments or {}).items()}
