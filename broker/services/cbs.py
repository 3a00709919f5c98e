"""Azure's claims-based security node, `$cbs`: `put-token` requests.

The Azure SDKs open a link pair on address `$cbs` (pair by address: their
link names are random), send each entity's token as the body of a request
with application-properties `operation: put-token`, `type` (a SAS token or a
JWT), `name` (the audience, `sb://host/ENTITY`) and `expiration`, and wait
for an answer whose `correlation-id` is the request's `message-id` in its own
AMQP type (a uuid stays a uuid, or the SDK waits forever), with
application-properties `status-code` (an int; 200-299 is success) and
`status-description`.

Verification: SAS tokens against the configured keys (`access.verify_sas`),
JWTs through the token verifier when one is configured.  Without keys every
token is accepted (the container says so once at start).  A granted token
names an entity the connection may then attach to, until it expires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from broker.access import CredentialsRefused, TokenVerifier, verify_sas
from broker.codec.messaging import Message, Properties
from broker.codec.types import Int
from broker.errors import DecodeError
from broker.nodes.registry import entity_of_url
from broker.services.management import read_sections

log = logging.getLogger("broker.cbs")

ADDRESS = "$cbs"
SAS_TYPE = "servicebus.windows.net:sastoken"
JWT_TYPE = "jwt"

Grant = Callable[[object, str, float | None], None]  # (owner, entity, expiry)


def entity_of(audience: str) -> str:
    """The entity an audience names (`sb://host/ENTITY`…); anything else as is."""
    entity = entity_of_url(audience)
    return audience if entity is None else entity


class Cbs:
    def __init__(self, *, keys: Mapping[str, str], tokens: TokenVerifier | None,
                 on_grant: Grant | None = None) -> None:
        self.keys = dict(keys)
        self.tokens = tokens
        self.on_grant = on_grant

    def handle(self, payload: bytes, *, owner: object, now: float,
               identity: object = None) -> tuple[object, bytes]:
        """(request id, encoded response) for one put-token request."""
        properties, application, body = read_request(payload, "$cbs")
        status, description = self._put_token(application, body, owner, now)
        if status >= 300:
            log.info("$cbs put-token refused: %s", description)
        response = Message.create(None, properties=Properties(
            correlation_id=properties.message_id, to=properties.reply_to),
            application_properties={"status-code": Int(status),
                                    "status-description": description})
        return properties.message_id, response.payload

    def _put_token(self, application: Mapping[object, object], body: object, owner: object,
                   now: float) -> tuple[int, str]:
        if application.get("operation") != "put-token":
            return 400, f"unsupported operation {application.get('operation')!r}"
        kind, audience = application.get("type"), application.get("name")
        if not isinstance(body, str) or not isinstance(audience, str):
            return 400, "put-token needs a string token and a 'name' (the audience)"
        expiry: float | None = None
        # told apart by the token itself: azure-servicebus 7.15 sends its SAS
        # tokens with type "jwt"
        is_sas = body.startswith("SharedAccessSignature ")
        try:
            if not is_sas and kind == JWT_TYPE and self.tokens is not None:
                expiry = self.tokens.verify(body, now).expires_at
            elif self.keys:
                if not is_sas:
                    return 401, f"a {kind!r} token cannot be verified here (SAS keys only)"
                resource, expiry = verify_sas(body, self.keys, now)
                if not _covers(resource, audience):
                    return 401, f"the token is for {resource!r}, not {audience!r}"
        except CredentialsRefused as exc:
            return 401, str(exc)
        if self.on_grant is not None:
            self.on_grant(owner, entity_of(audience), expiry)
        return 200, "OK"


def read_request(payload: bytes, node: str) -> tuple[Properties, Mapping[object, object], object]:
    """An Azure-style request (`management.read_sections`); DecodeError without
    properties, since the answer needs the message-id."""
    properties, application, body = read_sections(payload)
    if properties is None:
        raise DecodeError(f"a {node} request needs properties with a message-id", 0)
    return properties, application, body


def _covers(resource: str, audience: str) -> bool:
    """A SAS token's resource grants its own entity and everything below it
    (a namespace token covers every entity)."""
    r, a = resource.rstrip("/").lower(), audience.rstrip("/").lower()
    return a == r or a.startswith(r + "/")
