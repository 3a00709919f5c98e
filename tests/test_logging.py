"""What --log-level debug tells: links with their addresses and settle modes,
credit, sessions, queues created and deleted; refusals with their condition."""

from __future__ import annotations

import logging

import pytest
from test_container import Broker, consumer, publisher


def test_debug_tells_links_credit_and_queues(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker = Broker()
    peer = broker.client()
    publisher(peer, 0, "/queues/orders")
    consumer(peer, 1, "/queues/orders", credit=5)
    peer.detach(1)
    broker.container.admin.delete_queue("orders")
    lines = [r.getMessage() for r in caplog.records]
    assert any("session begun on channel 0" in line for line in lines)
    assert any("queue 'orders' created" in line for line in lines)
    assert any("publisher to '/queues/orders'" in line and "rcv-settle-mode" in line
               for line in lines)
    assert any("consumer of '/queues/orders'" in line for line in lines)
    assert any(": credit 5" in line for line in lines)
    assert any("detached (closed)" in line for line in lines)
    assert any("queue 'orders' deleted" in line for line in lines)


def test_refusals_name_their_condition(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="broker.container")
    broker = Broker(auto_create=False)
    peer = broker.client()
    peer.attach_receiver(1, "/queues/nowhere")
    (line,) = [r.getMessage() for r in caplog.records if "refusing link" in r.getMessage()]
    assert "amqp:not-found" in line and "nowhere" in line
