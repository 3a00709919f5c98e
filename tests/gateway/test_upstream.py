"""The upstream side's decisions without sockets: URLs, failover order,
backoff, and where a new session goes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from broker.cli import main
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
    wanted = pool.wanted
    assert pool.place() is None
    assert pool.wanted == wanted + 1, "one more connection is asked for"


def test_the_gateway_command_needs_an_upstream() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["gateway", "--port", "0", "--ws-port", "0"])
    assert result.exit_code == 2 and "--upstream" in result.output
    result = runner.invoke(main, ["gateway", "--upstream", "http://h"])
    assert result.exit_code == 2 and "scheme must be amqp or amqps" in result.output
    result = runner.invoke(main, ["gateway", "--upstream", "amqp://h", "--upstream-auth", "x"])
    assert result.exit_code == 2
