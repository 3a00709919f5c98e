"""Azure's Python SDK, azure-servicebus 7.15.0 (its own pure-Python `_pyamqp`),
against our broker: `azure-py-tcp` (plain AMQP, what the connection string's
`UseDevelopmentEmulator=true` gives) and `azure-py-ws` (`TransportType.
AmqpOverWebsocket`; `custom_endpoint_address=sb://127.0.0.1:WS_PORT` plus the
emulator flag make it dial `ws://127.0.0.1:WS_PORT/$servicebus/websocket`
with subprotocol `AMQPWSB10`; without `custom_endpoint_address` it drops the
port and dials port 80).

Every connection puts a SAS token on `$cbs` first.  The cases: send one and a
batch, receive-and-delete, peek-lock complete and abandon, dead-letter, the
lock token, sequence numbers and enqueue times, peek, renew-lock, scheduling,
a topic with two subscriptions, and SAS keys right and wrong.

The module starts its own brokers: one without Azure keys (every token is
accepted) and one with `--azure-key` for the SAS key checks.  Every SDK call
has a short timeout (`try_timeout`, `max_wait_time`, `timeout=`), no retries,
and each case runs under a hard deadline as well.
"""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clients import IN_CI

HERE = Path(__file__).resolve().parent

KEY_NAME = "RootManageSharedAccessKey"
KEY = "SAS_KEY_VALUE"
STEP = 4.0  # seconds: each SDK step (link open, receive wait, management request)
CASE_DEADLINE = 45.0  # seconds: a whole case, should the SDK block somewhere unbounded

CLIENTS = [pytest.param("azure-py-tcp", id="azure-py-tcp"),
           pytest.param("azure-py-ws", id="azure-py-ws")]


# -- brokers and clients ----------------------------------------------------------------


def _require(client: str) -> None:
    """Skip (locally) or fail (in CI) when the SDK is not installed."""
    try:
        import azure.servicebus  # noqa: F401

        if client.endswith("-ws"):
            import websocket  # noqa: F401  (websocket-client: the SDK's sync WebSocket transport)
    except ImportError as exc:
        reason = f"{client}: {exc} (pip install azure-servicebus==7.15.0 websocket-client)"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def _suite(config: pytest.Config) -> Any:
    """conformance/conftest.py as pytest loaded it (a plain `import conftest`
    may find browser/conftest.py instead)."""
    plugin = config.pluginmanager.get_plugin(str(HERE / "conftest.py"))
    if plugin is None:
        raise RuntimeError(f"{HERE / 'conftest.py'} is not loaded")
    return plugin


def _broker(config: pytest.Config, *args: str) -> Iterator[Any]:
    suite = _suite(config)
    proc, info = suite.start_broker("--trace-frames", *args)
    yield info
    code = suite.stop_broker(proc)
    assert code == 0, f"broker exited with {code}; log: {info.log_path}"


@pytest.fixture(scope="module")
def azure_broker(pytestconfig: pytest.Config) -> Iterator[Any]:
    """No Azure keys: $cbs accepts every token."""
    yield from _broker(pytestconfig)


@pytest.fixture(scope="module")
def keyed_broker(pytestconfig: pytest.Config) -> Iterator[Any]:
    """Verifies SAS tokens against KEY_NAME=KEY."""
    yield from _broker(pytestconfig, "--azure-key", f"{KEY_NAME}={KEY}")


@pytest.fixture
def entity(tag: str) -> str:
    """A fresh entity name for this test."""
    return f"az-{tag}"


def _client(broker: Any, client: str, key: str = KEY) -> Any:
    from azure.servicebus import ServiceBusClient, TransportType

    _require(client)
    ws = client.endswith("-ws")
    port = broker.ws_port if ws else broker.port
    conn_str = (f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName={KEY_NAME};"
                f"SharedAccessKey={key};UseDevelopmentEmulator=true")
    kwargs: dict[str, Any] = {"retry_total": 0, "try_timeout": STEP}
    if ws:
        kwargs.update(transport_type=TransportType.AmqpOverWebsocket,
                      custom_endpoint_address=f"sb://127.0.0.1:{port}")
    return ServiceBusClient.from_connection_string(conn_str, **kwargs)


def _bounded(body: Callable[[], None]) -> None:
    """Run one case in a thread under CASE_DEADLINE (the SDK is blocking, and a
    few of its waits have no timeout of their own)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True, name="azure-case")
    worker.start()
    worker.join(CASE_DEADLINE)
    if worker.is_alive():
        pytest.fail(f"the case did not finish within {CASE_DEADLINE:.0f} s", pytrace=False)
    if failure:
        raise failure[0]


def _body(message: Any) -> bytes:
    return b"".join(message.body)


def _receive(receiver: Any, count: int, wait: float = STEP) -> list[Any]:
    """Up to `count` messages, waiting at most `wait` seconds in all."""
    got: list[Any] = []
    deadline = time.monotonic() + wait
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        got += receiver.receive_messages(max_message_count=count - len(got),
                                         max_wait_time=max(left, 0.2))
    return got


def _send(sb: Any, queue: str, *messages: Any) -> None:
    with sb.get_queue_sender(queue) as sender:
        for message in messages:
            sender.send_messages(message, timeout=STEP)


def _rad(sb: Any, queue: str, count: int, wait: float = STEP, **kwargs: Any) -> list[Any]:
    from azure.servicebus import ServiceBusReceiveMode

    with sb.get_queue_receiver(queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE,
                               max_wait_time=wait, **kwargs) as receiver:
        return _receive(receiver, count, wait)


# -- what works -------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_send_receive(client: str, azure_broker: Any, entity: str) -> None:
    """Connect (SASL ANONYMOUS, then put-token on $cbs), send one message,
    receive it in RECEIVE_AND_DELETE mode with its properties."""
    from azure.servicebus import ServiceBusMessage

    def case() -> None:
        with _client(azure_broker, client) as sb:
            _send(sb, entity, ServiceBusMessage(
                "hello", message_id="m-1", subject="greeting", content_type="text/plain",
                application_properties={"colour": "blue", "n": 7}))
            got = _rad(sb, entity, 2, wait=2.0)
        assert [_body(m) for m in got] == [b"hello"]
        m = got[0]
        assert m.message_id == "m-1"
        assert m.subject == "greeting"
        assert m.content_type == "text/plain"
        assert m.application_properties == {b"colour": b"blue", b"n": 7}

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_peek_lock_complete(client: str, azure_broker: Any, entity: str) -> None:
    """PEEK_LOCK (the receiver asks rcv-settle-mode second) and complete: the
    message is gone afterwards."""
    from azure.servicebus import ServiceBusMessage

    def case() -> None:
        with _client(azure_broker, client) as sb:
            _send(sb, entity, ServiceBusMessage("to complete", message_id="c-1"))
            with sb.get_queue_receiver(entity, max_wait_time=STEP) as receiver:
                got = _receive(receiver, 1)
                assert [_body(m) for m in got] == [b"to complete"]
                receiver.complete_message(got[0])
            assert _rad(sb, entity, 1, wait=1.5) == []

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_abandon(client: str, azure_broker: Any, entity: str) -> None:
    """Abandon (modified, delivery-failed) puts the message back with its
    delivery count raised; received again, then completed."""
    from azure.servicebus import ServiceBusMessage

    def case() -> None:
        with _client(azure_broker, client) as sb:
            _send(sb, entity, ServiceBusMessage("again", message_id="a-1"))
            with sb.get_queue_receiver(entity, max_wait_time=STEP) as receiver:
                first = _receive(receiver, 1)
                assert [m.message_id for m in first] == ["a-1"]
                # the header's delivery-count is omitted when 0: the SDK then reads None
                assert (first[0].delivery_count or 0) == 0
                receiver.abandon_message(first[0])
                second = _receive(receiver, 1)
                assert [m.message_id for m in second] == ["a-1"]
                assert second[0].delivery_count == 1
                receiver.complete_message(second[0])
            assert _rad(sb, entity, 1, wait=1.5) == []

    _bounded(case)


# -- what does not work yet ------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_send_batch(client: str, azure_broker: Any, entity: str) -> None:
    """A batch of 100 arrives as 100 messages, in order."""
    from azure.servicebus import ServiceBusMessage

    def case() -> None:
        with _client(azure_broker, client) as sb:
            with sb.get_queue_sender(entity) as sender:
                batch = sender.create_message_batch()
                for i in range(100):
                    batch.add_message(ServiceBusMessage(f"b{i}", message_id=f"b-{i}"))
                sender.send_messages(batch, timeout=STEP)
            got = _rad(sb, entity, 101, wait=3.0)
        assert [_body(m) for m in got] == [f"b{i}".encode() for i in range(100)]
        assert [m.message_id for m in got] == [f"b-{i}" for i in range(100)]

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_lock_token(client: str, azure_broker: Any, entity: str) -> None:
    """A peek-lock message's lock token is a UUID (its 16-byte delivery tag)."""
    from azure.servicebus import ServiceBusMessage

    def case() -> None:
        with _client(azure_broker, client) as sb:
            _send(sb, entity, ServiceBusMessage("locked"))
            with sb.get_queue_receiver(entity, max_wait_time=STEP) as receiver:
                got = _receive(receiver, 1)
                assert len(got) == 1
                token = got[0].lock_token
                receiver.complete_message(got[0])
        assert isinstance(token, uuid.UUID)

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_message_annotations(client: str, azure_broker: Any, entity: str) -> None:
    """Delivered messages carry a sequence number (increasing) and their enqueued time."""
    from azure.servicebus import ServiceBusMessage

    def case() -> None:
        before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5)
        with _client(azure_broker, client) as sb:
            _send(sb, entity, ServiceBusMessage("one"), ServiceBusMessage("two"))
            got = _rad(sb, entity, 2)
        assert len(got) == 2
        seqs = [m.sequence_number for m in got]
        assert all(isinstance(s, int) for s in seqs), seqs
        assert seqs[0] < seqs[1]
        for m in got:
            assert m.enqueued_time_utc is not None and m.enqueued_time_utc >= before

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_dead_letter(client: str, azure_broker: Any, entity: str) -> None:
    """dead_letter_message moves the message to ENTITY/$DeadLetterQueue with
    its reason and description."""
    from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue

    def case() -> None:
        with _client(azure_broker, client) as sb:
            _send(sb, entity, ServiceBusMessage("poison", message_id="d-1"))
            with sb.get_queue_receiver(entity, max_wait_time=STEP) as receiver:
                got = _receive(receiver, 1)
                assert len(got) == 1
                receiver.dead_letter_message(got[0], reason="bad-input",
                                             error_description="cannot parse")
            dead = _rad(sb, entity, 1, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
            assert _rad(sb, entity, 1, wait=1.0) == []
        assert [m.message_id for m in dead] == ["d-1"]
        assert _body(dead[0]) == b"poison"
        assert dead[0].dead_letter_reason == "bad-input"
        assert dead[0].dead_letter_error_description == "cannot parse"

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_peek(client: str, azure_broker: Any, entity: str) -> None:
    """peek_messages shows the queued messages in order without taking them."""
    from azure.servicebus import ServiceBusMessage

    def case() -> None:
        with _client(azure_broker, client) as sb:
            _send(sb, entity, *(ServiceBusMessage(f"p{i}") for i in range(3)))
            with sb.get_queue_receiver(entity, max_wait_time=STEP) as receiver:
                peeked = receiver.peek_messages(max_message_count=5, timeout=STEP)
            assert [_body(m) for m in peeked] == [b"p0", b"p1", b"p2"]
            assert [_body(m) for m in _rad(sb, entity, 3)] == [b"p0", b"p1", b"p2"]

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_renew_lock(client: str, azure_broker: Any, entity: str) -> None:
    """renew_message_lock returns a later lock expiry; the message can then be completed."""
    from azure.servicebus import ServiceBusMessage

    def case() -> None:
        with _client(azure_broker, client) as sb:
            _send(sb, entity, ServiceBusMessage("keep"))
            with sb.get_queue_receiver(entity, max_wait_time=STEP) as receiver:
                got = _receive(receiver, 1)
                assert len(got) == 1
                before = got[0].locked_until_utc
                assert before is not None
                time.sleep(0.5)
                after = receiver.renew_message_lock(got[0], timeout=STEP)
                assert after > before
                receiver.complete_message(got[0])
            assert _rad(sb, entity, 1, wait=1.0) == []

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_schedule(client: str, azure_broker: Any, entity: str) -> None:
    """A message scheduled 2 s ahead is not there before, and is after."""
    from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode

    def case() -> None:
        with _client(azure_broker, client) as sb:
            when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
            with sb.get_queue_sender(entity) as sender:
                seqs = sender.schedule_messages(ServiceBusMessage("later"), when, timeout=STEP)
            assert len(seqs) == 1 and isinstance(seqs[0], int)
            with sb.get_queue_receiver(entity, max_wait_time=STEP,
                                       receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
                                       ) as receiver:
                early = receiver.receive_messages(max_message_count=1, max_wait_time=0.5)
                assert early == []
                got = _receive(receiver, 1, wait=5.0)
                arrived = datetime.datetime.now(datetime.UTC)
        assert [_body(m) for m in got] == [b"later"]
        assert arrived >= when - datetime.timedelta(seconds=0.5)

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_topic_subscriptions(client: str, azure_broker: Any, entity: str) -> None:
    """Each of a topic's two subscriptions gets its own copy of a message."""
    from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode

    def case() -> None:
        rad = ServiceBusReceiveMode.RECEIVE_AND_DELETE
        # the subscription receivers attach first, as subscriptions exist before a send
        with (
            _client(azure_broker, client) as sb,
            sb.get_subscription_receiver(entity, "s1", receive_mode=rad,
                                         max_wait_time=STEP) as r1,
            sb.get_subscription_receiver(entity, "s2", receive_mode=rad,
                                         max_wait_time=STEP) as r2,
        ):
            with sb.get_topic_sender(entity) as sender:
                sender.send_messages(ServiceBusMessage("fan-out"), timeout=STEP)
            got1 = _receive(r1, 2, wait=2.0)
            got2 = _receive(r2, 2, wait=2.0)
        assert [_body(m) for m in got1] == [b"fan-out"]
        assert [_body(m) for m in got2] == [b"fan-out"]

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_wrong_sas_key(client: str, keyed_broker: Any, entity: str) -> None:
    """With --azure-key, the right key works and a wrong key is refused."""
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.exceptions import (
        ServiceBusAuthenticationError,
        ServiceBusConnectionError,
    )

    def case() -> None:
        with _client(keyed_broker, client) as sb:
            _send(sb, entity, ServiceBusMessage("signed"))
            assert [_body(m) for m in _rad(sb, entity, 2, wait=1.5)] == [b"signed"]
        # the SDK reports the $cbs 401 as an authentication error over TCP and
        # as a connection error over WebSocket
        with (
            _client(keyed_broker, client, key="d3JvbmcgS2V5") as sb,
            pytest.raises((ServiceBusAuthenticationError, ServiceBusConnectionError)),
        ):
            _send(sb, entity, ServiceBusMessage("forged"))
        with _client(keyed_broker, client) as sb:
            assert _rad(sb, entity, 1, wait=1.0) == []  # the forged one never got in

    _bounded(case)
