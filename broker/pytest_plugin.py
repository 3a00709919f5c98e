"""pytest fixtures: a real AMQP 1.0 broker per test or per session.

Installed through the `pytest11` entry point, so `pip install amqpws-broker`
is enough.  `amqp_broker` and `amqp_broker_session` run the broker on a
background thread with its own trio loop: they work from sync tests and
from async (trio, asyncio) tests alike.  `amqp_broker_trio` runs it inside a
pytest-trio test's own nursery instead.

Options (command line, or the same name with underscores in the ini file):
`--amqp-broker-user NAME:PASSWORD` (repeatable), `--amqp-broker-no-anonymous`,
`--amqp-broker-queue NAME` and `--amqp-broker-stream NAME` (repeatable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from broker.config import Config, StreamConfig, parse_user
from broker.embedded import BrokerView, EmbeddedBroker, embedded_config


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("amqp-broker", "amqpws-broker fixtures")
    group.addoption("--amqp-broker-user", action="append", default=None, metavar="NAME:PASSWORD",
                    help="SASL PLAIN user for the broker fixtures (repeatable)")
    group.addoption("--amqp-broker-no-anonymous", action="store_true", default=None,
                    help="refuse SASL ANONYMOUS in the broker fixtures")
    group.addoption("--amqp-broker-queue", action="append", default=None,
                    metavar="NAME[:ARG=VALUE,...]",
                    help="queue to declare in the broker fixtures, with RabbitMQ arguments "
                         "(repeatable)")
    group.addoption("--amqp-broker-stream", action="append", default=None, metavar="NAME",
                    help="stream to declare in the broker fixtures (repeatable)")
    parser.addini("amqp_broker_users", "NAME:PASSWORD users", type="linelist", default=[])
    parser.addini("amqp_broker_no_anonymous", "refuse ANONYMOUS", type="bool", default=False)
    parser.addini("amqp_broker_queues", "queues to declare", type="linelist", default=[])
    parser.addini("amqp_broker_streams", "streams to declare", type="linelist", default=[])


def _fixture_config(config: pytest.Config) -> Config:
    users = config.getoption("--amqp-broker-user") or config.getini("amqp_broker_users")
    overrides: dict[str, object] = {}
    if users:
        overrides["users"] = dict(parse_user(u) for u in users)
    if config.getoption("--amqp-broker-no-anonymous") or config.getini("amqp_broker_no_anonymous"):
        overrides["allow_anonymous"] = False
    queues = config.getoption("--amqp-broker-queue") or config.getini("amqp_broker_queues")
    streams = config.getoption("--amqp-broker-stream") or config.getini("amqp_broker_streams")
    overrides["queues"] = tuple(queues)
    overrides["streams"] = tuple(StreamConfig(s) for s in streams)
    return embedded_config(**overrides)


@pytest.fixture
def amqp_broker(pytestconfig: pytest.Config) -> Iterator[EmbeddedBroker]:
    """A fresh broker for one test (background thread, free ports)."""
    with EmbeddedBroker(_fixture_config(pytestconfig)) as b:
        yield b


@pytest.fixture(scope="session")
def amqp_broker_session(pytestconfig: pytest.Config) -> Iterator[EmbeddedBroker]:
    """One broker shared by the whole session (background thread, free ports)."""
    with EmbeddedBroker(_fixture_config(pytestconfig)) as b:
        yield b


@pytest.fixture
async def amqp_broker_trio(pytestconfig: pytest.Config) -> AsyncIterator[BrokerView]:
    """A broker in the pytest-trio test's own trio loop (requires pytest-trio)."""
    import trio

    from broker.server import serve

    async with trio.open_nursery() as nursery:
        info = await nursery.start(serve, _fixture_config(pytestconfig))
        yield BrokerView(info, lambda fn: fn())
        info.shutdown()
