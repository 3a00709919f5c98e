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
