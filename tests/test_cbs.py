"""Azure's $cbs put-token and entity addresses, through the container."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from urllib.parse import quote_plus

from engine.peer import Peer, condition, kinds, messages, of, one
from test_container import NOW, Broker, msg, publish

from broker.codec.messaging import Accepted, AmqpValue, Message, Properties, Source, Target
from broker.codec.performatives import Attach, Detach, Transfer
from broker.codec.types import Int


def sas(resource: str, key: str, name: str = "root", expiry: float = NOW + 3600) -> str:
    se = str(int(expiry))
    signed = f"{quote_plus(resource)}\n{se}".encode()
    sig = base64.b64encode(hmac.new(key.encode(), signed, hashlib.sha256).digest()).decode()
    return (f"SharedAccessSignature sr={quote_plus(resource)}&sig={quote_plus(sig)}&se={se}"
            f"&skn={name}")


def cbs_pair(peer: Peer) -> None:
    """As the SDKs do: random names, both on $cbs, both unsettled."""
    out = peer.attach_sender(0, "$cbs", name=f"cbs-sender-{uuid.uuid4()}")
    assert kinds(out)[0] is Attach and not of(out, Detach)
    out = peer.attach_receiver(1, "$cbs", name=f"cbs-receiver-{uuid.uuid4()}",
                               source=Source(address="$cbs"), target=Target(address="cbs"))
    assert not of(out, Detach)
    peer.flow(1, link_credit=10)


def put_token(peer: Peer, token: str, audience: str) -> Message:
    request_id = uuid.uuid4()
    request = Message.create(AmqpValue(token), properties=Properties(
        message_id=request_id, reply_to="cbs"), application_properties={
        "operation": "put-token", "type": "servicebus.windows.net:sastoken",
        "name": audience, "expiration": int(NOW + 3600)})
    out = peer.send(0, request)
    (reply,) = messages(out)
    assert reply.properties.correlation_id == request_id, "a uuid comes back as a uuid"
    assert [t for t in of(out, Transfer)]
    return reply


def test_put_token_without_keys_is_accepted() -> None:
    broker = Broker()
    peer = broker.client()
    cbs_pair(peer)
    reply = put_token(peer, "anything", "sb://127.0.0.1/q1")
    status = reply.application_properties["status-code"]
    assert status == 200 and type(status) is Int, "an int, as the SDKs read it"
    assert reply.application_properties["status-description"] == "OK"


def test_keys_verify_sas_tokens_and_guard_entities() -> None:
    broker = Broker(azure_keys={"root": "s3cret"}, queues=("q1",))
    peer = broker.client()
    cbs_pair(peer)
    # no token yet: attaching to the entity is refused
    out = peer.attach_sender(2, "amqps://127.0.0.1:5671/q1")
    assert condition(one(out, Detach)) == "amqp:unauthorized-access"
    wrong = put_token(peer, sas("sb://127.0.0.1/q1", "not-the-key"), "sb://127.0.0.1/q1")
    assert wrong.application_properties["status-code"] == 401
    expired = put_token(peer, sas("sb://127.0.0.1/q1", "s3cret", expiry=NOW - 10),
                        "sb://127.0.0.1/q1")
    assert expired.application_properties["status-code"] == 401
    good = put_token(peer, sas("sb://127.0.0.1/q1", "s3cret"), "sb://127.0.0.1/q1")
    assert good.application_properties["status-code"] == 200
    out = peer.attach_sender(3, "amqps://127.0.0.1:5671/q1")
    assert not of(out, Detach)
    assert publish(peer, 3, msg(b"hi")) == [Accepted()]
    assert broker.queue("q1").depth == 1, "the URL named the entity q1"


def test_a_namespace_token_covers_every_entity() -> None:
    broker = Broker(azure_keys={"root": "s3cret"})
    peer = broker.client()
    cbs_pair(peer)
    reply = put_token(peer, sas("sb://127.0.0.1/", "s3cret"), "sb://127.0.0.1/orders")
    assert reply.application_properties["status-code"] == 200
    out = peer.attach_receiver(2, "sb://127.0.0.1/orders")
    assert not of(out, Detach)


def test_sas_tokens_sent_with_type_jwt_are_still_sas() -> None:
    """azure-servicebus 7.15 puts its SAS tokens with type 'jwt'."""
    broker = Broker(azure_keys={"root": "s3cret"})
    peer = broker.client()
    cbs_pair(peer)
    request = Message.create(AmqpValue(sas("sb://127.0.0.1/q1", "s3cret")),
                             properties=Properties(message_id=uuid.uuid4(), reply_to="cbs"),
                             application_properties={"operation": "put-token", "type": "jwt",
                                                     "name": "sb://127.0.0.1/q1"})
    (reply,) = messages(peer.send(0, request))
    assert reply.application_properties["status-code"] == 200


def batch(*bodies: bytes) -> bytes:
    from broker.codec.messaging import Data

    return Message.create([Data(msg(b).payload) for b in bodies]).payload


def test_a_batch_envelope_is_unpacked_all_or_nothing() -> None:
    from broker.codec.messaging import Rejected

    broker = Broker(queues=("q1",))
    broker.container.admin.declare_queue("small", arguments={"x-max-length": 2,
                                                             "x-overflow": "reject-publish"},
                                         now=NOW)
    peer = broker.client()
    peer.attach_sender(0, "q1")
    assert publish_format(peer, 0, batch(b"a", b"b", b"c")) == Accepted()
    assert broker.queue("q1").depth == 3, "three messages, not one envelope"
    peer.attach_sender(1, "small")
    state = publish_format(peer, 1, batch(b"x", b"y", b"z"))
    assert isinstance(state, Rejected) and broker.queue("small").depth == 0, "none stored"


def publish_format(peer: Peer, handle: int, payload: bytes) -> object:
    from broker.codec.performatives import Disposition

    out = peer.send(handle, payload, message_format=0x80013700)
    (d,) = of(out, Disposition)
    return d.state


def test_azure_dead_letter_moves_to_the_dead_letter_queue() -> None:
    from broker.codec.messaging import Rejected
    from broker.codec.performatives import Error
    from broker.codec.types import Symbol

    broker = Broker(queues=("q1",))
    peer = broker.client()
    peer.attach_sender(0, "q1")
    publish(peer, 0, msg(b"bad"))
    out = peer.attach_receiver(1, "q1") + peer.flow(1, link_credit=1)
    (transfer,) = of(out, Transfer)
    error = Error(condition=Symbol("com.microsoft:dead-letter"), description="desc",
                  info={Symbol("DeadLetterReason"): "why",
                        Symbol("DeadLetterErrorDescription"): "desc"})
    out = peer.disposition(transfer.delivery_id, state=Rejected(error=error), settled=False)
    from broker.codec.performatives import Disposition

    (settle,) = of(out, Disposition)
    assert settle.state == Rejected(), "the echo carries no error (the SDK reads one as failure)"
    dlq = broker.queue("q1/$DeadLetterQueue")
    assert dlq.depth == 1
    moved = dlq.ready[0].message
    assert moved.application_properties == {"DeadLetterReason": "why",
                                            "DeadLetterErrorDescription": "desc"}


def test_entity_service_nodes_are_refused_not_created() -> None:
    broker = Broker()
    peer = broker.client()
    out = peer.attach_sender(0, "q1/$rules")
    assert condition(one(out, Detach)) == "amqp:not-found"
    assert broker.container.registry.get("q1/$rules") is None
    out = peer.attach_receiver(1, "q1/$DeadLetterQueue")
    assert not of(out, Detach), "the dead-letter sub-queue is a queue"


def test_azure_clients_get_sequence_numbers_and_enqueue_times() -> None:
    from broker.codec.types import Long, Symbol, Timestamp

    broker = Broker(queues=("q1",))
    peer = broker.client()
    cbs_pair(peer)
    put_token(peer, "anything", "sb://127.0.0.1/q1")
    peer.attach_sender(2, "q1")
    publish(peer, 2, msg(b"a"), msg(b"b"))
    out = peer.attach_receiver(3, "q1") + peer.flow(3, link_credit=5)
    got = messages(out)
    annotations = [m.message_annotations for m in got]
    assert [a[Symbol("x-opt-sequence-number")] for a in annotations] == [1, 2]
    assert all(type(a[Symbol("x-opt-sequence-number")]) is Long for a in annotations)
    assert annotations[0][Symbol("x-opt-enqueued-time")] == Timestamp(int(NOW * 1000))
    # a client that never spoke $cbs gets none of that
    other = broker.client("other")
    other.attach_sender(0, "q2")
    publish(other, 0, msg(b"c"))
    (plain,) = messages(other.attach_receiver(1, "q2") + other.flow(1, link_credit=5))
    assert Symbol("x-opt-sequence-number") not in (plain.message_annotations or {})


def entity_pair(peer: Peer, entity: str, first_handle: int = 4) -> None:
    mgmt = f"{entity}/$management"
    assert not of(peer.attach_sender(first_handle, mgmt, name=f"m-{uuid.uuid4()}"), Detach)
    out = peer.attach_receiver(first_handle + 1, mgmt, name=f"r-{uuid.uuid4()}",
                               source=Source(address=mgmt), target=Target(address="r"))
    assert not of(out, Detach)
    peer.flow(first_handle + 1, link_credit=10)


def operate(peer: Peer, handle: int, operation: str, body: object) -> Message:
    request = Message.create(AmqpValue(body), properties=Properties(
        message_id=uuid.uuid4(), reply_to="r"),
        application_properties={"operation": operation})
    (reply,) = messages(peer.send(handle, request))
    return reply


def test_entity_management_peeks_schedules_and_renews() -> None:
    from broker.codec.types import Long, Symbol, Timestamp

    broker = Broker(queues=("q1",))
    peer = broker.client()
    cbs_pair(peer)
    put_token(peer, "anything", "sb://127.0.0.1/q1")
    peer.attach_sender(2, "q1")
    publish(peer, 2, msg(b"a"), msg(b"b"), msg(b"c"))
    entity_pair(peer, "q1")
    reply = operate(peer, 4, "com.microsoft:peek-message",
                    {"from-sequence-number": Long(2), "message-count": 5})
    assert reply.application_properties["statusCode"] == 200
    peeked = [Message.parse(m[Symbol("message")]) for m in reply.body[0].value[Symbol("messages")]]
    assert [m.message_annotations[Symbol("x-opt-sequence-number")] for m in peeked] == [2, 3]
    assert broker.queue("q1").depth == 3, "peeking takes nothing"
    later = msg(b"later", message_annotations={
        Symbol("x-opt-scheduled-enqueue-time"): Timestamp(int((NOW + 2) * 1000))})
    reply = operate(peer, 4, "com.microsoft:schedule-message",
                    {"messages": [{"message-id": "s1", "message": later.payload}]})
    (number,) = reply.body[0].value[Symbol("sequence-numbers")].items
    assert number == 4
    broker.container.housekeeping()
    assert broker.queue("q1").depth == 3, "not yet"
    broker.wall.t = NOW + 3
    broker.container.housekeeping()
    assert broker.queue("q1").depth == 4, "enqueued at its time"
    reply = operate(peer, 4, "com.microsoft:renew-lock", {"lock-tokens": [uuid.uuid4()]})
    assert reply.application_properties["statusCode"] == 410, "no such lock"
    reply = operate(peer, 4, "com.microsoft:get-rules", {})
    assert reply.application_properties["statusCode"] == 501, "never silence"


def test_a_topic_fans_out_to_its_subscriptions() -> None:
    """Azure's TOPIC/Subscriptions/SUB: a queue bound to the topic, made on first use."""
    broker = Broker()
    peer = broker.client()
    for handle, sub in ((1, "s1"), (2, "s2")):
        assert not of(peer.attach_receiver(handle, f"orders/Subscriptions/{sub}"), Detach)
        peer.flow(handle, link_credit=5)
    peer.attach_sender(3, "sb://127.0.0.1/orders")
    out = peer.send(3, msg(b"fan-out"))
    assert sorted(m.body[0].value for m in messages(out)) == [b"fan-out", b"fan-out"]
    assert broker.container.registry.get("orders") is None, "a topic is no queue"


def azure_consumer(broker: Broker, **config: object) -> tuple[Peer, list[Transfer]]:
    """An Azure client's peek-lock receiver holding the one message of q1."""
    peer = broker.client()
    cbs_pair(peer)
    put_token(peer, "anything", "sb://127.0.0.1/q1")
    peer.attach_sender(2, "q1")
    publish(peer, 2, msg(b"locked"))
    out = peer.attach_receiver(3, "q1") + peer.flow(3, link_credit=1)
    return peer, of(out, Transfer)


def test_a_lapsed_lock_returns_the_message_and_renewal_keeps_it() -> None:
    from broker.codec.types import Symbol

    broker = Broker(queues=("q1",), azure_lock_duration=5.0)
    peer, (transfer,) = azure_consumer(broker)
    assert len(transfer.delivery_tag) == 16
    entity_pair(peer, "q1")
    token = uuid.UUID(bytes_le=transfer.delivery_tag)
    broker.wall.t = NOW + 4
    reply = operate(peer, 4, "com.microsoft:renew-lock", {"lock-tokens": [token]})
    assert reply.application_properties["statusCode"] == 200
    (expiry,) = reply.body[0].value[Symbol("expirations")].items
    assert expiry == int((NOW + 9) * 1000)
    broker.wall.t = NOW + 8
    broker.container.housekeeping()
    assert broker.queue("q1").unacked == 1, "renewed: still locked"
    broker.wall.t = NOW + 10
    broker.container.housekeeping()
    assert broker.queue("q1").unacked == 0 and broker.queue("q1").depth == 1, "lapsed: back"
    assert broker.queue("q1").ready[0].delivery_count == 1


def test_the_max_delivery_count_dead_letters() -> None:
    from broker.codec.messaging import Modified

    broker = Broker(queues=("q1",), azure_max_delivery_count=2)
    peer, (transfer,) = azure_consumer(broker)
    peer.disposition(transfer.delivery_id, state=Modified(delivery_failed=True), settled=False)
    (again,) = of(peer.flow(3, link_credit=1), Transfer)
    peer.disposition(again.delivery_id, state=Modified(delivery_failed=True), settled=False)
    assert broker.queue("q1").depth == 0
    dlq = broker.queue("q1/$DeadLetterQueue")
    assert dlq.depth == 1
    assert dlq.ready[0].message.application_properties == {
        "DeadLetterReason": "MaxDeliveryCountExceeded"}


def test_azure_clients_messages_get_a_message_id() -> None:
    broker = Broker(queues=("q1",))
    peer = broker.client()
    cbs_pair(peer)
    put_token(peer, "anything", "sb://127.0.0.1/q1")
    peer.attach_sender(2, "q1")
    publish(peer, 2, msg(b"no id"), msg(b"mine", properties=Properties(message_id="m-1")))
    first, second = (e.message for e in broker.queue("q1").ready)
    assert isinstance(first.properties.message_id, str) and first.properties.message_id
    assert second.properties.message_id == "m-1", "an id the sender chose is kept"
