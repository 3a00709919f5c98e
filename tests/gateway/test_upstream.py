"""The upstream side's decisions without sockets: URLs, failover order,
backoff, and where a new session goes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from broker.cli import main
from broker.engine.connection import Connection
from broker.engine.events import LinkDetached
from broker.errors import Condition
from broker.gateway.core import ATTACH_WAIT
from broker.gateway.upstream import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    UpstreamNode,
    UpstreamPool,
    parse_upstream,
)

from .test_routes import Net


def test_upstream_urls() -> None:
    node = parse_upstream("amqps://svc:p%40ss@rabbit-1:5671/prod")
    assert node == UpstreamNode("rabbit-1", 5671, tls=True, user="svc", password="p@ss",
                                vhost="prod")
    assert node.label == "amqps://rabbit-1:5671", "never the password"
    assert node.hostname == "vhost:prod", "RabbitMQ reads the vhost from open.hostname"
    assert parse_upstream("amqp://rabbit-2") == UpstreamNode("rabbit-2", 5672)
    assert parse_upstream("amqps://h").port == 5671


@pytest.mark.parametrize(("url", "why"), [
    ("http://h:5672", "scheme"), ("amqp://", "no host"), ("amqp://h:port", "port"),
])
def test_bad_upstream_urls(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_upstream(url)


def test_failover_goes_round_the_nodes_with_a_doubling_backoff() -> None:
    a, b, c = (UpstreamNode(h, 5672) for h in "abc")
    pool = UpstreamPool([a, b, c], size=2)
    assert pool.next_node(None) is a
    assert [pool.next_node(n) for n in (a, b, c)] == [b, c, a]
    assert [pool.backoff(n) for n in range(5)] == [
        0.0, BACKOFF_FIRST, 2 * BACKOFF_FIRST, 4 * BACKOFF_FIRST, 8 * BACKOFF_FIRST]
    assert pool.backoff(100) == BACKOFF_MAX


def test_a_pool_needs_a_node() -> None:
    with pytest.raises(ValueError):
        UpstreamPool([], size=1)


def test_sessions_go_to_the_least_loaded_connection_and_the_pool_grows_when_full() -> None:
    net = Net()
    pool = net.gw.pool
    first = net.up
    second, _ = net.connect_upstream()
    net.pump()
    assert pool.place() in (first, second)
    first.conn.begin()
    assert pool.place() is second, "the one carrying fewer sessions"
    # the upstream (this broker: channel-max 63) takes 64 sessions per connection
    for _ in range(63):
        first.conn.begin()
    for _ in range(64):
        second.conn.begin()
    assert not first.has_room and not second.has_room
    assert pool.place() is None
    assert pool.wanted == 3, "one more connection is asked for"
    assert pool.place() is None
    assert pool.wanted == 3, "and only one while it is being opened"


def test_a_burst_of_sessions_asks_for_all_the_connections_it_needs_at_once() -> None:
    """Sessions waiting for room ask for as many connections as they need,
    counted once each however often they ask: 200 sessions on top of two
    full connections of 64 need four more, dialled side by side."""
    net = Net()
    pool = net.gw.pool
    second, _ = net.connect_upstream()
    net.pump()
    for upstream in (net.up, second):
        for _ in range(64):
            upstream.conn.begin()
    for waiting in range(1, 201):
        assert pool.place(waiting) is None
        assert pool.place(waiting) is None
    assert pool.wanted == 2 + 4


def test_the_gateway_command_needs_an_upstream() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["gateway", "--port", "0", "--ws-port", "0"])
    assert result.exit_code == 2 and "--upstream" in result.output
    result = runner.invoke(main, ["gateway", "--upstream", "http://h"])
    assert result.exit_code == 2 and "scheme must be amqp or amqps" in result.output
    result = runner.invoke(main, ["gateway", "--upstream", "amqp://h", "--upstream-auth", "x"])
    assert result.exit_code == 2
    result = runner.invoke(main, ["gateway", "--upstream", "amqp://h", "--reattach-wait", "0"])
    assert result.exit_code == 2 and "reattach_wait must be > 0" in result.output


def test_a_waiting_session_is_counted_once_however_many_links_it_attaches() -> None:
    """33 client sessions of two links each, waiting behind a full connection
    of 64: one more connection, not two (66 attaches, but 33 sessions)."""
    net = Net()
    for _ in range(64):
        net.up.conn.begin()
    net.pump()
    assert not net.up.has_room
    for n in range(33):
        session = net.session()
        net.receiver(session, f"/queues/q{n}")
        net.sender(session, f"/queues/q{n}")
    assert len(net.gw.waiting) == 66
    assert net.gw.pool.wanted == 2


def forced_refusals(net: Net) -> int:
    return sum(1 for e in net.events() if isinstance(e, LinkDetached) and e.error is not None
               and e.error.condition == Condition.CONNECTION_FORCED.value)


def test_attaches_wait_while_the_pool_keeps_opening_connections() -> None:
    """Behind a full pool, 16 sessions wait; one more connection (with room
    for 10) opens after 4 s, and the other 6 wait on while connections keep
    opening: they are refused only once none has opened for ATTACH_WAIT."""
    net = Net()
    for _ in range(64):
        net.up.conn.begin()
    net.pump()
    for n in range(16):
        net.receiver(net.session(), f"/queues/q{n}")
    net.later(ATTACH_WAIT - 1)
    assert len(net.gw.waiting) == 16 and forced_refusals(net) == 0
    # the pool opened the connection it asked for, to a node allowing 10 sessions
    net.connect_upstream(Connection(container_id="small", users={"svc": "secret"},
                                    allow_anonymous=False, channel_max=9))
    net.pump()
    assert len(net.gw.waiting) == 6
    net.later(ATTACH_WAIT - 1)  # waiting for 8 s, 4 s since a connection opened
    assert len(net.gw.waiting) == 6 and forced_refusals(net) == 0
    net.later(1)
    assert net.gw.waiting == [] and forced_refusals(net) == 6
