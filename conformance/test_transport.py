"""Heartbeats over idle periods; TCP and WebSocket clients on the same queue."""

from __future__ import annotations

import pytest
from clients import clients_for, run_case


@pytest.mark.parametrize("client", clients_for("heartbeat"))
def test_heartbeat(client, broker, queue):
    """With a 1 s idle-time-out, 2.5 s of silence (two idle periods and more)
    keep the connection up: the broker sends empty frames in time."""
    result = run_case(client, "heartbeat", broker, queue=queue, idle_ms=1000, idle_for_ms=2500)
    assert result["before"] == "accepted"
    assert result["alive_after_idle"] is True
    assert result["after"] == "accepted"
    assert result["body"] == "after"


@pytest.mark.parametrize("client", clients_for("cross_transport"))
def test_cross_transport(client, broker, queue):
    """This client publishes over its transport; the same library consumes
    over the other one (TCP→WebSocket, WebSocket→TCP)."""
    result = run_case(client, "cross_transport", broker, queue=queue)
    transport = client.rsplit("-", 1)[1]
    assert result["publisher"] == transport
    assert result["consumer"] == ("ws" if transport == "tcp" else "tcp")
    assert result["outcomes"] == ["accepted"] * 5
    assert result["bodies"] == [f"via-{transport}-{i}" for i in range(5)]
