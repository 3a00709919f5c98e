"""Azure Service Bus's deferred messages and subscription rules, through the
container: what `receive-by-sequence-number`, `update-disposition` and the
rule operations answer, and what a topic's subscriptions then receive."""

from __future__ import annotations

import uuid

import pytest
from engine.peer import Out, Peer, deliveries, of
from test_cbs import azure_consumer, cbs_pair, entity_pair, operate, put_token
from test_container import NOW, Broker, msg, publish

from broker.admin import AdminError, check_config
from broker.codec.messaging import Accepted, Message, Modified, Properties
from broker.codec.performatives import Detach, Transfer
from broker.codec.types import Described, Long, Symbol, UInt
from broker.config import Config, ConfigError, normalize

DEFER = Modified(delivery_failed=True, undeliverable_here=True)
STATE = Symbol("x-opt-message-state")
SEQUENCE = Symbol("x-opt-sequence-number")


def status(reply: Message) -> int:
    return int(reply.application_properties["statusCode"])  # type: ignore[call-overload]


def deferred_one(broker: Broker) -> Peer:
    """q1's one message, delivered to a peek-lock receiver and deferred."""
    peer, (transfer,) = azure_consumer(broker)
    peer.disposition(transfer.delivery_id, state=DEFER, settled=True)
    entity_pair(peer, "q1")
    return peer


def receive_deferred(peer: Peer, *numbers: int, mode: int = 1) -> Message:
    return operate(peer, 4, "com.microsoft:receive-by-sequence-number",
                   {"sequence-numbers": [Long(n) for n in numbers],
                    "receiver-settle-mode": UInt(mode)})


def found(reply: Message) -> list[tuple[Message, uuid.UUID | None]]:
    items = reply.body[0].value[Symbol("messages")]
    return [(Message.parse(i[Symbol("message")]), i.get(Symbol("lock-token"))) for i in items]


def dispose(peer: Peer, token: object, disposition: str, **extra: object) -> Message:
    return operate(peer, 4, "com.microsoft:update-disposition",
                   {"disposition-status": disposition, "lock-tokens": [token], **extra})


# -- deferral ---------------------------------------------------------------------------


def test_a_deferred_message_leaves_the_queue_and_is_peeked_as_deferred() -> None:
    broker = Broker(queues=("q1",))
    peer = deferred_one(broker)
    queue = broker.queue("q1")
    assert (queue.depth, queue.unacked) == (0, 0), "out of the delivery order"
    assert not of(peer.flow(3, link_credit=5), Transfer), "never delivered on a link again"
    reply = operate(peer, 4, "com.microsoft:peek-message",
                    {"from-sequence-number": Long(1), "message-count": 5})
    ((peeked, _),) = found(reply)
    assert peeked.message_annotations[STATE] == 1 and peeked.message_annotations[SEQUENCE] == 1


def test_receive_by_sequence_number_locks_then_update_disposition_completes() -> None:
    broker = Broker(queues=("q1",))
    peer = deferred_one(broker)
    reply = receive_deferred(peer, 1)
    assert status(reply) == 200
    ((message, token),) = found(reply)
    assert message.body[0].value == b"locked"
    assert message.header.delivery_count == 1, "the deferred delivery counted"
    assert isinstance(token, uuid.UUID)
    assert status(receive_deferred(peer, 1)) == 404, "locked: not for another receiver"
    assert status(operate(peer, 4, "com.microsoft:renew-lock", {"lock-tokens": [token]})) == 200
    assert status(dispose(peer, token, "completed")) == 200
    reply = receive_deferred(peer, 1)
    assert status(reply) == 404, "completed: gone"
    assert reply.application_properties["errorCondition"] == "com.microsoft:message-not-found"
    reply = dispose(peer, token, "completed")
    assert status(reply) == 410 and \
        reply.application_properties["errorCondition"] == "com.microsoft:message-lock-lost"


def test_receive_and_delete_takes_a_deferred_message_away() -> None:
    broker = Broker(queues=("q1",))
    peer = deferred_one(broker)
    ((message, token),) = found(receive_deferred(peer, 1, mode=0))
    assert token is None and message.body[0].value == b"locked"
    assert status(receive_deferred(peer, 1, mode=0)) == 404


def test_missing_numbers_fail_the_whole_request() -> None:
    broker = Broker(queues=("q1",))
    peer = deferred_one(broker)
    assert status(receive_deferred(peer, 1, 7)) == 404
    assert status(receive_deferred(peer, 1)) == 200, "nothing was taken by the failed request"


def test_an_abandoned_deferred_message_stays_deferred_until_the_max_delivery_count() -> None:
    broker = Broker(queues=("q1",), azure_max_delivery_count=3)
    peer = deferred_one(broker)  # delivery 1
    ((_, token),) = found(receive_deferred(peer, 1))  # delivery 2
    assert status(dispose(peer, token, "abandoned")) == 200
    ((message, token),) = found(receive_deferred(peer, 1))
    assert message.header.delivery_count == 2
    assert status(dispose(peer, token, "abandoned")) == 200  # the third: dead-lettered
    assert status(receive_deferred(peer, 1)) == 404
    (dead,) = broker.queue("q1/$DeadLetterQueue").ready
    assert dead.message.application_properties["DeadLetterReason"] == "MaxDeliveryCountExceeded"


def test_suspending_a_deferred_message_dead_letters_it_with_the_reason() -> None:
    broker = Broker(queues=("q1",))
    peer = deferred_one(broker)
    ((_, token),) = found(receive_deferred(peer, 1))
    reply = dispose(peer, token, "suspended", **{"deadletter-reason": "bad",
                                                  "deadletter-description": "very"})
    assert status(reply) == 200
    (dead,) = broker.queue("q1/$DeadLetterQueue").ready
    assert dead.message.application_properties == {"DeadLetterReason": "bad",
                                                   "DeadLetterErrorDescription": "very"}


def test_a_lapsed_deferred_lock_is_lost_and_the_message_can_be_received_again() -> None:
    broker = Broker(queues=("q1",), azure_lock_duration=5.0)
    peer = deferred_one(broker)
    ((_, token),) = found(receive_deferred(peer, 1))
    broker.wall.t = NOW + 6
    assert status(dispose(peer, token, "completed")) == 410
    assert status(operate(peer, 4, "com.microsoft:renew-lock", {"lock-tokens": [token]})) == 410
    ((message, fresh),) = found(receive_deferred(peer, 1))
    assert fresh != token and message.header.delivery_count == 2, "the lapse counted too"


def test_deferral_requests_are_checked() -> None:
    broker = Broker(queues=("q1",))
    peer = deferred_one(broker)
    assert status(operate(peer, 4, "com.microsoft:receive-by-sequence-number", {})) == 400
    assert status(dispose(peer, uuid.uuid4(), "vanished")) == 400
    assert status(operate(peer, 4, "com.microsoft:update-disposition",
                          {"disposition-status": "completed"})) == 400


def test_deleting_the_queue_drops_its_deferred_messages() -> None:
    broker = Broker(queues=("q1",))
    deferred_one(broker)
    azure = broker.container.registry.azure
    assert [e.sequence for e in azure.deferred("q1")] == [1]
    assert azure.held_bytes > 0, "counted for the memory alarm"
    broker.container.registry.delete("q1")
    assert list(azure.deferred("q1")) == [] and azure.held_bytes == 0


# -- subscription rules -----------------------------------------------------------------


def topic_client(broker: Broker, *subscriptions: str) -> Peer:
    """A client with receivers on orders/Subscriptions/SUB (handles 1, 2, …) and a
    sender to the topic on handle 0; management pairs start at handle 10."""
    peer = broker.client()
    cbs_pair(peer)
    put_token(peer, "anything", "sb://127.0.0.1/orders")
    for handle, sub in enumerate(subscriptions, start=2):
        assert not of(peer.attach_receiver(handle, f"orders/Subscriptions/{sub}"), Detach)
        peer.flow(handle, link_credit=20)
    peer.attach_sender(9, "sb://127.0.0.1/orders")
    return peer


def rule_request(name: str, **description: object) -> dict[str, object]:
    return {"rule-name": name, "rule-description": description}


def received(out: list[Out], handle: int) -> list[bytes]:
    """The bodies delivered on link `handle`."""
    return [Message.parse(payload).body[0].value  # type: ignore[attr-defined]
            for transfer, payload in deliveries(out) if transfer.handle == handle]


def test_rules_choose_what_a_subscription_receives() -> None:
    broker = Broker()
    peer = topic_client(broker, "all", "red")
    entity_pair(peer, "orders/Subscriptions/red", first_handle=10)
    reply = operate(peer, 10, "com.microsoft:add-rule", rule_request(
        "reds", **{"sql-filter": {"expression": "sys.Label = 'red' OR user.urgent = true"}}))
    assert status(reply) == 200
    assert status(operate(peer, 10, "com.microsoft:remove-rule", {"rule-name": "$Default"})) == 200
    out = peer.send(9, msg(b"red", properties=Properties(subject="red")))
    out += peer.send(9, msg(b"blue", properties=Properties(subject="blue")))
    out += peer.send(9, msg(b"urgent", application_properties={"urgent": True}))
    assert received(out, 2) == [b"red", b"blue", b"urgent"], "the default rule takes all"
    assert received(out, 3) == [b"red", b"urgent"]


def test_a_correlation_rule_matches_fields_and_properties_exactly() -> None:
    broker = Broker()
    peer = topic_client(broker, "eu")
    entity_pair(peer, "orders/Subscriptions/eu", first_handle=10)
    operate(peer, 10, "com.microsoft:remove-rule", {"rule-name": "$Default"})
    reply = operate(peer, 10, "com.microsoft:add-rule", rule_request(
        "eu", **{"correlation-filter": {"correlation-id": "c1", "to": None,
                                        "properties": {"region": "eu"}}}))
    assert status(reply) == 200
    out = peer.send(9, msg(b"yes", properties=Properties(correlation_id="c1"),
                           application_properties={"region": "eu"}))
    out += peer.send(9, msg(b"other region", properties=Properties(correlation_id="c1"),
                            application_properties={"region": "us"}))
    out += peer.send(9, msg(b"no correlation", application_properties={"region": "eu"}))
    assert received(out, 2) == [b"yes"]


def test_a_message_no_rule_takes_is_accepted_and_dropped() -> None:
    """As Service Bus does: a topic publish is accepted whatever the rules say."""
    broker = Broker()
    peer = topic_client(broker, "none")
    entity_pair(peer, "orders/Subscriptions/none", first_handle=10)
    operate(peer, 10, "com.microsoft:remove-rule", {"rule-name": "$Default"})
    (state,) = publish(peer, 9, msg(b"unwanted"))
    assert isinstance(state, Accepted)
    assert broker.queue("orders/Subscriptions/none").depth == 0


def test_enumerate_rules_answers_service_bus_described_lists() -> None:
    broker = Broker()
    peer = topic_client(broker, "s")
    entity_pair(peer, "orders/Subscriptions/s", first_handle=10)
    operate(peer, 10, "com.microsoft:add-rule",
            rule_request("big", **{"sql-filter": {"expression": "size > 10"}}))
    reply = operate(peer, 10, "com.microsoft:enumerate-rules", {"top": 10, "skip": 0})
    assert status(reply) == 200
    default, big = (r[Symbol("rule-description")] for r in reply.body[0].value[Symbol("rules")])
    assert isinstance(default, Described) and default.descriptor == 0x0000013700000004
    true_filter, action, name = default.value
    assert (true_filter.descriptor, action.descriptor, name) == (
        0x0000001370000007, 0x0000001370000005, "$Default")
    sql_filter, _, name = big.value
    assert sql_filter.descriptor == 0x0000001370000006 and sql_filter.value[0] == "size > 10"
    assert name == "big"
    reply = operate(peer, 10, "com.microsoft:enumerate-rules", {"top": 10, "skip": 2})
    assert status(reply) == 204


@pytest.mark.parametrize(("request_body", "expected"), [
    (rule_request("$Default", **{"sql-filter": {"expression": "a = 1"}}), 409),  # exists
    (rule_request("bad", **{"sql-filter": {"expression": "a = = 1"}}), 400),
    (rule_request("act", **{"sql-filter": {"expression": "a = 1"},
                            "sql-rule-action": {"expression": "SET a = 2"}}), 400),
    (rule_request("none"), 400),
    ({"rule-name": 3}, 400),
])
def test_bad_rules_are_refused(request_body: dict[str, object], expected: int) -> None:
    broker = Broker()
    peer = topic_client(broker, "s")
    entity_pair(peer, "orders/Subscriptions/s", first_handle=10)
    assert status(operate(peer, 10, "com.microsoft:add-rule", request_body)) == expected
    reply = operate(peer, 10, "com.microsoft:remove-rule", {"rule-name": "nope"})
    assert status(reply) == 404
    assert reply.application_properties["errorCondition"] == "amqp:not-found"
    assert "could not be found" in reply.application_properties["statusDescription"], \
        "the words the Node SDK reads as MessagingEntityNotFound"


def test_rules_belong_to_subscriptions() -> None:
    broker = Broker(queues=("q1",))
    peer = broker.client()
    entity_pair(peer, "q1")
    assert status(operate(peer, 4, "com.microsoft:enumerate-rules", {})) == 400


def test_routing_pays_nothing_for_rules_until_a_subscription_has_some() -> None:
    broker = Broker()
    peer = topic_client(broker, "s")
    azure = broker.container.registry.azure
    assert not azure.has_rules, "the default rule is not stored"
    entity_pair(peer, "orders/Subscriptions/s", first_handle=10)
    operate(peer, 10, "com.microsoft:add-rule",
            rule_request("x", **{"sql-filter": {"expression": "x = 1"}}))
    assert azure.has_rules
    operate(peer, 10, "com.microsoft:remove-rule", {"rule-name": "x"})
    assert not azure.has_rules, "back to the default"


# -- declared in the config -------------------------------------------------------------


TOPICS = {"azure": {"topics": {"orders": {"subscriptions": ["billing", "audit"],
                                          "rules": {"audit": "priority > 3"}}}}}


def test_config_declares_topics_subscriptions_and_their_rules() -> None:
    broker = Broker(**normalize(TOPICS))
    registry = broker.container.registry
    assert registry.get("orders/Subscriptions/billing") is not None
    peer = broker.client()
    peer.attach_sender(0, "orders")
    publish(peer, 0, msg(b"low", application_properties={"priority": 1}),
            msg(b"high", application_properties={"priority": 9}))
    assert broker.queue("orders/Subscriptions/billing").depth == 2
    (audited,) = broker.queue("orders/Subscriptions/audit").ready
    assert audited.message.body[0].value == b"high"


def test_config_topics_are_checked() -> None:
    bad_rule = {"azure": {"topics": {"t": {"subscriptions": ["s"], "rules": {"s": "a = = 1"}}}}}
    with pytest.raises(AdminError, match="azure.topics.t.rules.s"):
        check_config(Config(**normalize(bad_rule)))
    with pytest.raises(ConfigError, match="no subscription named x"):
        normalize({"azure": {"topics": {"t": {"subscriptions": ["s"], "rules": {"x": "a = 1"}}}}})
    with pytest.raises(ConfigError, match="unknown setting"):
        normalize({"azure": {"topics": {"t": {"subscription": ["s"]}}}})
