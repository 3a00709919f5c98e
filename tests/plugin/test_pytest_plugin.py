"""The pytest plugin, exercised the way users use it: through pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SYNC_TEST = '''
import threading
from proton import Message
from proton.utils import BlockingConnection

def test_roundtrip(amqp_broker):
    assert amqp_broker.amqp_url.startswith("amqp://127.0.0.1:")
    assert amqp_broker.ws_url.startswith("ws://127.0.0.1:")
    conn = BlockingConnection(amqp_broker.amqp_url)
    conn.create_sender("/queues/orders").send(Message(body="o-1"))
    assert amqp_broker.queue_depth("orders") == 1
    assert [m.body[0].value for m in amqp_broker.messages("orders")] == ["o-1"]
    assert len(amqp_broker.connections()) == 1
    receiver = conn.create_receiver("/queues/orders")
    assert receiver.receive(timeout=5).body == "o-1"
    receiver.accept()
    conn.close()

def test_declared_from_options(amqp_broker):
    assert "pre" in amqp_broker.queues()
    assert "events" in amqp_broker.queues()

def test_session_broker_is_shared(amqp_broker_session, request):
    amqp_broker_session.declare_queue("shared")
    assert "shared" in amqp_broker_session.queues()
'''

TRIO_TEST = '''
import trio
from proton import Message
from proton.utils import BlockingConnection

def _publish(url):
    conn = BlockingConnection(url)
    conn.create_sender("/queues/t").send(Message(body="from-trio"))
    conn.close()

async def test_in_nursery(amqp_broker_trio):
    await trio.to_thread.run_sync(_publish, amqp_broker_trio.amqp_url)
    assert amqp_broker_trio.queue_depth("t") == 1

async def test_threaded_fixture_from_trio(amqp_broker):
    await trio.to_thread.run_sync(_publish, amqp_broker.amqp_url)
    assert amqp_broker.queue_depth("t") == 1
'''


def test_sync_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sync=SYNC_TEST)
    result = pytester.runpytest_subprocess(
        "--amqp-broker-queue", "pre", "--amqp-broker-stream", "events", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3)


def test_trio_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_trio=TRIO_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_sasl_options_refuse_anonymous(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_auth='''
import pytest
from proton import ConnectionException
from proton.utils import BlockingConnection

def test_plain_only(amqp_broker):
    with pytest.raises(ConnectionException):
        BlockingConnection(amqp_broker.amqp_url, allowed_mechs="ANONYMOUS", timeout=5)
    conn = BlockingConnection(amqp_broker.amqp_url.replace("amqp://", "amqp://bob:pw@"),
                              allowed_mechs="PLAIN", timeout=5)
    conn.close()
''')
    result = pytester.runpytest_subprocess(
        "--amqp-broker-user", "bob:pw", "--amqp-broker-no-anonymous", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)


def test_shutdown_leaves_no_thread_or_port() -> None:
    import socket
    import threading

    from broker.embedded import running

    before = set(threading.enumerate())
    with running() as b:
        port = b.port
        assert any(t.name == "amqpws-broker" for t in threading.enumerate())
    assert set(threading.enumerate()) <= before
    with socket.socket() as s:  # the port is free again: binding it succeeds
        s.bind(("127.0.0.1", port))


def test_fixture_declares_exchanges_bindings_and_queue_arguments(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_topology='''
import pytest
from proton import Message
from proton.utils import BlockingConnection, SendException

def test_topic_route(amqp_broker):
    info = amqp_broker.declare_queue("eu", arguments={"x-queue-type": "quorum"})
    assert info["type"] == "quorum"
    amqp_broker.bind("amq.topic", "eu", "orders.eu.*")
    conn = BlockingConnection(amqp_broker.amqp_url)
    conn.create_sender("/exchanges/amq.topic/orders.eu.fr").send(Message(body="o-1"))
    with pytest.raises(SendException):  # routes to no queue: released, as RabbitMQ does
        conn.create_sender("/exchanges/amq.topic/orders.us.ny").send(Message(body="o-2"))
    conn.close()
    assert amqp_broker.queue_depth("eu") == 1
    assert [b["binding_key"] for b in amqp_broker.bindings()] == ["orders.eu.*"]
    assert amqp_broker.purge_queue("eu") == 1

def test_queue_arguments_from_options(amqp_broker):
    assert amqp_broker.admin.queue_info("capped")["arguments"]["x-max-length"] == 1
''')
    result = pytester.runpytest_subprocess(
        "--amqp-broker-queue", "capped:x-max-length=1", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
