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


@pytest.mark.parametrize("client", clients_for("heartbeat"))
def test_peer_heartbeat(client, short_idle_broker, queue):
    """The other way round: the broker closes a connection silent for 2 s, and
    the client (no idle-time-out of its own) keeps it up through 5 s of
    silence by its heartbeats alone.  Over TCP the broker lets the kernel
    hold back every other lone heartbeat and reads it at its deadline
    (transports/socketpump.py): this is real clients' heartbeats meeting
    that."""
    result = run_case(client, "heartbeat", short_idle_broker, queue=queue, idle_ms=0,
                      idle_for_ms=5000)
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
