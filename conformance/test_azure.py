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
a topic with two subscriptions, SAS keys right and wrong, deferral
(`defer_message`, `receive_deferred_messages` by sequence number in both
receive modes, settling a deferred message through `ENTITY/$management`'s
update-disposition) and a subscription's SQL rule.

The module starts its own brokers: one without Azure keys (every token is
accepted), one with `--azure-key` for the SAS key checks, and one with
`--config` declaring a topic, its subscriptions and a rule (the Python SDK
manages rules only through ServiceBusAdministrationClient, which is HTTP).  Every SDK call
has a short timeout (`try_timeout`, `max_wait_time`, `timeout=`), no retries,
and each case runs under a hard deadline as well.
"""

from __future__ import annotations

import datetime
import json
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


# topic_broker's config declares one topic per client, so that the two
# transports' cases do not share subscriptions: `billing` keeps the `$Default`
# rule (everything), `audit`'s `$Default` becomes AUDIT_RULE.
AUDIT_RULE = "user.priority > 3 OR sys.Label = 'audit'"


def _declared_topic(client: str) -> str:
    return f"conf-orders-{client}"


def _topics_toml() -> str:
    tables = []
    for param in CLIENTS:
        topic = json.dumps(_declared_topic(param.values[0]))  # a TOML basic string
        tables.append(f'[azure.topics.{topic}]\n'
                      f'subscriptions = ["billing", "audit"]\n'
                      f'[azure.topics.{topic}.rules]\n'
                      f'audit = {json.dumps(AUDIT_RULE)}\n')
    return "\n".join(tables)


@pytest.fixture(scope="module")
def topic_broker(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Any]:
    """Started with `--config` declaring the topics of _topics_toml()."""
    config = tmp_path_factory.mktemp("azure-topics") / "topics.toml"
    config.write_text(_topics_toml())
    yield from _broker(pytestconfig, "--config", str(config))


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


# -- sequence numbers, management operations, topics and deferral ---------------------


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


LEAD = 6.0  # seconds: how far ahead test_azure_schedule schedules its message


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_schedule(client: str, azure_broker: Any, entity: str) -> None:
    """A message scheduled ahead is not there before, and is after.  The lead
    (LEAD s) covers opening the sender and the receiver on a loaded machine,
    which happens after `when` is fixed."""
    from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode

    def case() -> None:
        with _client(azure_broker, client) as sb:
            when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=LEAD)
            with sb.get_queue_sender(entity) as sender:
                seqs = sender.schedule_messages(ServiceBusMessage("later"), when, timeout=STEP)
            assert len(seqs) == 1 and isinstance(seqs[0], int)
            with sb.get_queue_receiver(entity, max_wait_time=STEP,
                                       receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
                                       ) as receiver:
                early = receiver.receive_messages(max_message_count=1, max_wait_time=0.5)
                assert early == []
                got = _receive(receiver, 1, wait=LEAD + 3.0)
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


# -- deferral and subscription rules -----------------------------------------------------


def _defer_one(sb: Any, entity: str, body: str, message_id: str) -> tuple[int, int]:
    """Send one message, receive it in peek-lock and defer it: its sequence
    number and the delivery count it arrived with."""
    from azure.servicebus import ServiceBusMessage

    _send(sb, entity, ServiceBusMessage(body, message_id=message_id))
    with sb.get_queue_receiver(entity, max_wait_time=STEP) as receiver:
        got = _receive(receiver, 1)
        assert [m.message_id for m in got] == [message_id]
        receiver.defer_message(got[0])
        # deferred: out of the queue, a plain receive no longer finds it
        assert _receive(receiver, 1, wait=1.0) == []
    return got[0].sequence_number, got[0].delivery_count or 0


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_defer(client: str, azure_broker: Any, entity: str) -> None:
    """defer_message (modified, delivery-failed + undeliverable-here) sets the
    message aside; peek shows it DEFERRED; receive_deferred_messages by its
    sequence number (receive-by-sequence-number, peek-lock) gives it back with
    a lock token and a higher delivery count; its lock renews; completed (via
    update-disposition), a second receive_deferred_messages for that number is
    MessageNotFoundError (404, com.microsoft:message-not-found)."""
    from azure.servicebus import ServiceBusMessageState
    from azure.servicebus.exceptions import MessageNotFoundError

    def case() -> None:
        with _client(azure_broker, client) as sb:
            seq, first_count = _defer_one(sb, entity, "set aside", "df-1")
            # a fresh receiver, so peek starts at sequence number 1 (the SDK
            # peeks from the last sequence number a receiver has seen)
            with sb.get_queue_receiver(entity, max_wait_time=STEP) as browser:
                peeked = browser.peek_messages(max_message_count=5, timeout=STEP)
            assert [(_body(m), m.sequence_number) for m in peeked] == [(b"set aside", seq)]
            assert peeked[0].state == ServiceBusMessageState.DEFERRED
            with sb.get_queue_receiver(entity, max_wait_time=STEP) as receiver:
                deferred = receiver.receive_deferred_messages([seq], timeout=STEP)
                assert [(_body(m), m.message_id) for m in deferred] == [(b"set aside", "df-1")]
                m = deferred[0]
                assert m.sequence_number == seq
                assert (m.delivery_count or 0) > first_count
                assert isinstance(m.lock_token, uuid.UUID)
                assert m.locked_until_utc is not None
                before = m.locked_until_utc
                time.sleep(0.5)
                assert receiver.renew_message_lock(m, timeout=STEP) > before
                receiver.complete_message(m)
                with pytest.raises(MessageNotFoundError):
                    receiver.receive_deferred_messages([seq], timeout=STEP)
            assert _rad(sb, entity, 1, wait=1.0) == []

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_defer_receive_and_delete(client: str, azure_broker: Any, entity: str) -> None:
    """receive_deferred_messages from a RECEIVE_AND_DELETE receiver takes the
    deferred message away (settle mode 0): no lock token, not there to peek,
    and asking again is MessageNotFoundError."""
    from azure.servicebus import ServiceBusReceiveMode
    from azure.servicebus.exceptions import MessageNotFoundError

    def case() -> None:
        with _client(azure_broker, client) as sb:
            seq, _ = _defer_one(sb, entity, "take away", "dr-1")
            with sb.get_queue_receiver(entity, max_wait_time=STEP,
                                       receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
                                       ) as receiver:
                deferred = receiver.receive_deferred_messages(seq, timeout=STEP)
                assert [(_body(m), m.message_id, m.sequence_number) for m in deferred] == [
                    (b"take away", "dr-1", seq)]
                assert deferred[0].lock_token is None
                with pytest.raises(MessageNotFoundError):
                    receiver.receive_deferred_messages([seq], timeout=STEP)
            with sb.get_queue_receiver(entity, max_wait_time=STEP) as browser:
                assert browser.peek_messages(max_message_count=5, timeout=STEP) == []

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_defer_dead_letter(client: str, azure_broker: Any, entity: str) -> None:
    """A deferred message dead-lettered (update-disposition `suspended` with
    deadletter-reason and deadletter-description) lands in
    ENTITY/$DeadLetterQueue with its reason; the deferred store no longer has it."""
    from azure.servicebus import ServiceBusSubQueue
    from azure.servicebus.exceptions import MessageNotFoundError

    def case() -> None:
        with _client(azure_broker, client) as sb:
            seq, _ = _defer_one(sb, entity, "too late", "dd-1")
            with sb.get_queue_receiver(entity, max_wait_time=STEP) as receiver:
                deferred = receiver.receive_deferred_messages([seq], timeout=STEP)
                assert [m.message_id for m in deferred] == ["dd-1"]
                receiver.dead_letter_message(deferred[0], reason="expired-order",
                                             error_description="deferred, then given up")
                with pytest.raises(MessageNotFoundError):
                    receiver.receive_deferred_messages([seq], timeout=STEP)
            dead = _rad(sb, entity, 2, wait=2.0, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
            assert _rad(sb, entity, 1, wait=1.0) == []
        assert [m.message_id for m in dead] == ["dd-1"]
        assert _body(dead[0]) == b"too late"
        assert dead[0].dead_letter_reason == "expired-order"
        assert dead[0].dead_letter_error_description == "deferred, then given up"

    _bounded(case)


@pytest.mark.parametrize("client", CLIENTS)
def test_azure_topic_rules_config(client: str, topic_broker: Any) -> None:
    """A topic declared in the config file exists before anyone attaches: sent
    to first, its subscriptions then hold what their rules let in.  `billing`
    ($Default true filter) gets all four; `audit` (AUDIT_RULE) gets the one
    with priority 5 and the one labelled `audit` that has no priority at all
    (unknown OR true is true), not priority 1 nor the one with neither."""
    from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode

    topic = _declared_topic(client)
    messages = [
        ServiceBusMessage("urgent", application_properties={"priority": 5}),
        ServiceBusMessage("routine", application_properties={"priority": 1}),
        ServiceBusMessage("flagged", subject="audit"),
        ServiceBusMessage("plain", subject="other"),
    ]

    def case() -> None:
        rad = ServiceBusReceiveMode.RECEIVE_AND_DELETE
        with _client(topic_broker, client) as sb:
            with sb.get_topic_sender(topic) as sender:
                sender.send_messages(messages, timeout=STEP)
            got: dict[str, list[bytes]] = {}
            for sub in ("billing", "audit"):
                with sb.get_subscription_receiver(topic, sub, receive_mode=rad,
                                                  max_wait_time=STEP) as receiver:
                    got[sub] = [_body(m) for m in _receive(receiver, 5, wait=2.0)]
        assert got["billing"] == [b"urgent", b"routine", b"flagged", b"plain"]
        assert got["audit"] == [b"urgent", b"flagged"]

    _bounded(case)
