"""Who may do what through the gateway, decided at the edge with the same
permissions as `serve` (access.py), before anything goes upstream; the
upstream sees only the gateway's service account.

What a link needs, by its address (RabbitMQ's rules, as attach.py applies
them): reading a queue or stream needs `read` on it; sending to
`/exchanges/X[/key]` needs `write` on exchange X, to a queue `write` on the
queue; an anonymous-relay link is checked message by message, on its `to`;
requests on `/management` are checked one by one, with the permission each
operation needs (services/management.py).  Dynamic nodes are named by the
upstream, so only the upstream's rules apply to them.  Pure.
"""

from __future__ import annotations

from collections.abc import Callable

from broker.access import READ, WRITE, AccessRefused, Identity
from broker.attach import NOBODY
from broker.codec.messaging import Message, Source, Target
from broker.codec.performatives import Attach, Role
from broker.errors import AmqpError, Condition, DecodeError
from broker.nodes.registry import AddressError, ExchangeAddress, parse_address, parse_target
from broker.services.management import check_permissions, parse_request

MANAGEMENT = "/management"


class ManagementRefused(AmqpError):
    """A `/management` request the user may not make: answered 403 at the
    edge on the pair's reply link, as `serve` answers it."""

    condition = Condition.UNAUTHORIZED_ACCESS

    def __init__(self, description: str, request_id: object) -> None:
        super().__init__(description)
        self.request_id = request_id


def _refused(exc: AccessRefused) -> AmqpError:
    return AmqpError(str(exc), condition=Condition.UNAUTHORIZED_ACCESS)


def check_attach(identity: Identity | None, attach: Attach) -> None:
    """AmqpError (unauthorized-access, or invalid-field for an address no
    broker serves) when this client may not attach this link."""
    who = identity if identity is not None else NOBODY
    try:
        if attach.role is Role.RECEIVER:  # the client reads
            source = attach.source
            if not isinstance(source, Source) or source.dynamic or source.address is None:
                return
            if source.address == MANAGEMENT:
                return  # the answers to requests checked one by one
            who.check(READ, "queue", _name(str(source.address)))
            return
        target = attach.target
        if not isinstance(target, Target) or target.dynamic or target.address is None:
            return  # anonymous relay (checked per message) or dynamic
        if target.address == MANAGEMENT:
            return
        _check_write(who, str(target.address))
    except AccessRefused as exc:
        raise _refused(exc) from None


def _name(address: str) -> str:
    """The queue an address names; an address only the upstream knows (RabbitMQ
    3's `/amq/queue/q`) is checked as a name of its own, so a user limited to
    some names cannot get around the limit with another spelling."""
    try:
        return parse_address(address)
    except AddressError:
        return address


def _check_write(who: Identity, address: str) -> None:
    try:
        resolved: str | ExchangeAddress = parse_target(address)
    except AddressError:
        resolved = address
    if isinstance(resolved, ExchangeAddress):
        who.check(WRITE, "exchange", resolved.exchange)
    else:
        who.check(WRITE, "queue", resolved)


def check_relay(identity: Identity | None, payload: bytes) -> None:
    """An anonymous-relay message: `write` on what its `to` names."""
    who = identity if identity is not None else NOBODY
    try:
        properties = Message.parse(payload).properties
    except DecodeError:
        return  # the upstream answers a malformed message itself
    to = properties.to if properties is not None else None
    if not isinstance(to, str):
        return  # the upstream refuses a relay message without `to`
    try:
        _check_write(who, to)
    except AccessRefused as exc:
        raise _refused(exc) from None


def message_check(identity: Identity | None, attach: Attach) -> Callable[[bytes], None] | None:
    """For a link the client sends on, the check each message needs, if any:
    an anonymous relay's messages name their own targets; `/management`
    requests their own operations."""
    if attach.role is Role.RECEIVER:
        return None
    target = attach.target
    if isinstance(target, Target) and target.dynamic:
        return None
    address = target.address if isinstance(target, Target) else None
    if address is None:
        return lambda payload: check_relay(identity, payload)
    if address == MANAGEMENT:
        return lambda payload: check_management(identity, payload)
    return None


def check_management(identity: Identity | None, payload: bytes) -> None:
    """A `/management` request: the permission its operation needs."""
    who = identity if identity is not None else NOBODY
    try:
        request = parse_request(payload)
    except DecodeError:
        return  # the upstream answers a malformed request itself
    try:
        check_permissions(request, who)
    except AccessRefused as exc:
        raise ManagementRefused(str(exc), request.message_id) from None
