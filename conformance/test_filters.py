"""Selectors seen by python-qpid-proton (client `proton-tcp`): proton's own
`Selector` option (the JMS selector filter) on a queue receiver takes only the
matching messages; the others stay for a receiver without one; an invalid
selector is refused."""

from __future__ import annotations

from typing import Any

import pytest
from proton import Message
from proton.reactor import Selector
from proton.utils import BlockingConnection, LinkDetached

STEP = 10.0
TCP = pytest.param("proton-tcp", id="proton-tcp")


@pytest.mark.parametrize("client", [TCP])
def test_selector(client: str, broker: Any, queue: str) -> None:
    conn = BlockingConnection(broker.amqp_url, timeout=STEP)
    try:
        sender = conn.create_sender(queue)
        for i, region in enumerate(["eu", "us", "eu", "apac"]):
            sender.send(Message(body=f"{region}-{i}", properties={"region": region, "n": i}))
        eu = conn.create_receiver(queue, credit=10, name="eu",
                                  options=Selector("region = 'eu' AND n >= 0"))
        got = []
        for _ in range(2):
            got.append(eu.receive(timeout=STEP).body)
            eu.accept()
        assert got == ["eu-0", "eu-2"]
        rest = conn.create_receiver(queue, credit=10, name="rest")
        others = []
        for _ in range(2):
            others.append(rest.receive(timeout=STEP).body)
            rest.accept()
        assert others == ["us-1", "apac-3"], "what the selector did not take stayed"
        with pytest.raises(LinkDetached) as info:
            conn.create_receiver(queue, name="bad", options=Selector("region = = 'eu'"))
        assert info.value.link.remote_condition.name == "amqp:invalid-field"
    finally:
        conn.close()
