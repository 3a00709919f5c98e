"""Messages go through intact, in order, whole when large, and to the right consumers."""

from __future__ import annotations

import pytest
from clients import clients_for, run_case
from proton_cases import untag

HEADER = ("delivery_count", "first_acquirer")
# Annotations a broker may add on delivery (RabbitMQ's address v2 model).
BROKER_ANNOTATIONS = ("x-exchange", "x-routing-key")


def _comparable(desc):
    desc = {k: v for k, v in desc.items() if k not in HEADER}
    desc["message_annotations"] = {
        k: v for k, v in desc["message_annotations"].items() if k not in BROKER_ANNOTATIONS
    }
    return desc


@pytest.mark.parametrize("client", clients_for("roundtrip"))
def test_roundtrip(client, broker, queue, tag):
    """Properties, application properties, annotations and every body kind
    (data, amqp-value of many types, amqp-sequence) come back exactly as the
    client itself decodes its own encoding."""
    result = run_case(client, "roundtrip", broker, queue=queue, tag=tag)
    assert set(result["outcomes"]) == {"accepted"}
    got, expected = result["messages"], result["expected"]
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert _comparable(g) == _comparable(e), f"message {i} changed in transit"
        assert g["delivery_count"] == 0
    kinds = [g["body_kind"] for g in got]
    assert "data" in kinds and "sequence" in kinds and "value" in kinds
    first = untag(got[0])
    assert first["message_id"] == f"{tag}-0"
    assert first["subject"] == "subject-0"
    assert first["correlation_id"] == "corr-0"
    assert first["reply_to"] == f"/queues/reply-{tag}"
    assert first["group_id"] == "group-1"
    assert first["durable"] is True and first["priority"] == 7
    assert first["application_properties"]["str"] == "text"
    assert first["application_properties"]["int"] == 42
    assert first["application_properties"]["long"] == 1099511627776
    assert first["message_annotations"]["x-opt-conf"] == "annotated"
    assert [untag(g)["application_properties"]["i"] for g in got] == list(range(len(got)))


@pytest.mark.parametrize("client", clients_for("many_in_order"))
def test_many_in_order(client, broker, queue):
    """1,000 messages arrive in the order they were sent."""
    result = run_case(client, "many_in_order", broker, queue=queue, count=1000)
    assert result["accepted"] == 1000
    assert result["seqs"] == list(range(1000))
    assert result["bodies_ok"] is True


@pytest.mark.parametrize("client", clients_for("large_message"))
def test_large_message(client, small_frame_broker, queue):
    """A 1 MiB message crosses in transfer frames of at most 4 KiB both ways:
    the client asks for 4096, and this broker's max-frame-size is 4096."""
    size = 1024 * 1024
    result = run_case(
        client,
        "large_message",
        small_frame_broker,
        queue=queue,
        size=size,
        max_frame_size=4096,
        timeout=60,
    )
    assert result["remote_max_frame_size"] == 4096
    assert result["outcome"] == "accepted"
    assert result["received_size"] == size
    assert result["intact"] is True


@pytest.mark.parametrize("client", clients_for("competing_consumers"))
def test_competing_consumers(client, broker, queue):
    """Two consumers on one queue share its messages: each gets some, none twice."""
    n = 20
    result = run_case(client, "competing_consumers", broker, queue=queue, count=n)
    a, b = result["a"], result["b"]
    assert sorted(a + b) == list(range(n)), "every message exactly once"
    assert a and b, f"both consumers must get messages (got {len(a)} and {len(b)})"


@pytest.mark.parametrize("client", clients_for("request_response"))
def test_request_response(client, broker, queue):
    """A dynamic receiver gets a temporary reply queue; the responder replies to it."""
    result = run_case(client, "request_response", broker, queue=queue)
    assert result["reply_to"], "the broker must name the dynamic node"
    assert result["request_outcome"] == "accepted"
    assert result["reply_outcome"] == "accepted"
    assert result["reply"]["body"] == "pong:ping"
    assert result["reply"]["correlation_id"] == "req-1"


@pytest.mark.parametrize("client", clients_for("anonymous_relay"))
def test_anonymous_relay(client, broker, tag):
    """A sender with a null target routes each message by its `to`."""
    # Queue names are percent-encoded in addresses (RabbitMQ address v2).
    qa, qb = f"/queues/conf-{tag}-a", f"/queues/conf-{tag}-b%20%C3%A9"
    result = run_case(
        client, "anonymous_relay", broker, queue_a=qa, queue_b=qb, bad_to="/unsupported/x"
    )
    assert "ANONYMOUS-RELAY" in result["offered_capabilities"]
    assert result["outcomes"] == ["accepted", "accepted"]
    # An unusable `to` is rejected, not silently dropped (NOTES: outcomes).
    assert result["bad_to_outcome"] == "rejected"
    assert result["a"]["body"] == "to-a" and result["a"]["to"] == qa
    assert result["b"]["body"] == "to-b" and result["b"]["to"] == qb
