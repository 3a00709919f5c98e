"""Consumer outcomes, redelivery of unsettled messages, and drain."""

from __future__ import annotations

import pytest
from clients import clients_for, run_case


@pytest.mark.parametrize("client", clients_for("dispositions"))
def test_dispositions(client, broker, queue):
    """released comes back as it was; rejected is gone; modified with
    delivery-failed comes back with delivery-count + 1."""
    result = run_case(client, "dispositions", broker, queue=queue)
    assert [m["body"] for m in result["first"]] == ["release-me", "reject-me", "modify-me"]
    assert all(m["delivery_count"] == 0 for m in result["first"])
    again = {m["body"]: m for m in result["again"]}
    assert set(again) == {"release-me", "modify-me"}, "released and modified come back"
    assert again["release-me"]["delivery_count"] == 0
    assert again["modify-me"]["delivery_count"] == 1
    assert result["extra"] is None, f"the rejected message came back: {result['extra']}"


@pytest.mark.parametrize("client", clients_for("redelivery_detach"))
def test_redelivery_detach(client, broker, queue):
    """An unsettled message goes back to the queue when its consumer detaches."""
    result = run_case(client, "redelivery_detach", broker, queue=queue)
    assert result["first"]["body"] == "redeliver-me"
    assert result["second"]["body"] == "redeliver-me"
    assert result["second"]["delivery_count"] == result["first"]["delivery_count"] + 1


@pytest.mark.parametrize("client", clients_for("redelivery_drop"))
def test_redelivery_drop(client, broker, queue):
    """...and when its consumer's connection drops without an AMQP close."""
    result = run_case(client, "redelivery_drop", broker, queue=queue)
    assert result["first"]["body"] == "redeliver-me"
    assert result["second"]["body"] == "redeliver-me"
    assert result["second"]["delivery_count"] == result["first"]["delivery_count"] + 1


@pytest.mark.parametrize("client", clients_for("drain"))
def test_drain(client, broker, queue):
    """Drain sends what is queued, then spends the rest of the credit."""
    result = run_case(client, "drain", broker, queue=queue)
    assert result["drained"] == ["d1", "d2", "d3"]
    assert result["credit_after"] == 0
    assert result["empty_drain_messages"] == 0
    assert result["credit_after_empty"] == 0
