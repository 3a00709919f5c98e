"""--trace-frames: every frame in and out, decoded, with payloads cut."""

from __future__ import annotations

import logging

import pytest

from broker.engine.connection import Connection
from broker.engine.events import LinkAttached

from .peer import Peer


def test_every_frame_is_logged_both_ways(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="broker.frames")
    conn = Connection(container_id="broker", users={"guest": "pw"}, trace="tcp 1.2.3.4:5")
    peer = Peer(conn)
    peer.connect(sasl=("PLAIN", "guest", "pw"))  # init and header in one go
    peer.begin()
    peer.attach_sender(0, "q")
    attached = [e for e in peer.events if isinstance(e, LinkAttached)]
    link = attached[0].link
    link.accept(source=link.remote_attach.source, target=link.remote_attach.target,
                credit_window=10)
    peer.read()
    peer.send(0, b"x" * 100)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("tcp 1.2.3.4:5 <- header") for line in lines)
    assert any("<- [0] SaslInit(" in line for line in lines)
    assert any("-> [0] SaslOutcome(" in line for line in lines)
    assert any("-> [0] Open(" in line for line in lines), "the AMQP part is followed after SASL"
    assert any("<- [0] Attach(" in line for line in lines)
    assert any("-> [0] Flow(" in line for line in lines)
    (transfer,) = [line for line in lines if "<- [0] Transfer(" in line]
    assert "(+" in transfer and "bytes)" in transfer, "the payload is cut"
    assert not any("cannot follow" in line for line in lines)


def test_no_tracer_no_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="broker.frames")
    peer = Peer(Connection(container_id="broker", users={"guest": "pw"}))
    peer.connect(sasl=("PLAIN", "guest", "pw"))
    assert not [r for r in caplog.records if r.name == "broker.frames"]
