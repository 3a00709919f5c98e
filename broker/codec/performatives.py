"""Transport performatives (§2.7) and SASL frames (§5.3.3), one class each.

Field names are the spec's with `-` → `_`; `f()` gives each field's AMQP
type, mandatory flag and default exactly as the spec's field tables do.
"""

from __future__ import annotations

import enum

from broker.codec.composite import ANY, composite, f
from broker.codec.types import AmqpType as T
from broker.codec.types import Symbol
from broker.errors import AmqpError, Condition


class Role:
    """§2.8.1: a boolean on the wire."""

    SENDER = False
    RECEIVER = True


class SndSettleMode(enum.IntEnum):
    """§2.8.2"""

    UNSETTLED = 0
    SETTLED = 1
    MIXED = 2


class RcvSettleMode(enum.IntEnum):
    """§2.8.3"""

    FIRST = 0
    SECOND = 1


class SaslCode(enum.IntEnum):
    """§5.3.3.6 sasl-code"""

    OK = 0
    AUTH = 1
    SYS = 2
    SYS_PERM = 3
    SYS_TEMP = 4


@composite(0x1D, "amqp:error:list")
class Error:
    """§2.8.14: details of an error; `condition` is one of `errors.Condition`'s symbols."""

    condition: Symbol = f(T.SYMBOL, mandatory=True)
    description: str | None = f(T.STRING)
    info: dict[object, object] | None = f(T.MAP, keys=T.SYMBOL)  # fields


def amqp_error(condition: Condition, description: str | None = None,
               info: dict[object, object] | None = None) -> Error:
    """The `error` composite for one of our conditions."""
    return Error(condition=Symbol(condition.value), description=description or None, info=info)


def error_from(exc: AmqpError) -> Error:
    """The `error` composite an exception is answered with on the wire."""
    return amqp_error(exc.error_condition, exc.description, exc.info)


@composite(0x10, "amqp:open:list")
class Open:
    """§2.7.1: first frame on a connection; negotiates frame size, channels, idle timeout."""

    container_id: str = f(T.STRING, mandatory=True)
    hostname: str | None = f(T.STRING)
    max_frame_size: int = f(T.UINT, default=0xFFFFFFFF)
    channel_max: int = f(T.USHORT, default=0xFFFF)
    idle_time_out: int | None = f(T.UINT)
    outgoing_locales: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)
    incoming_locales: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)
    offered_capabilities: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)
    desired_capabilities: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)
    properties: dict[object, object] | None = f(T.MAP, keys=T.SYMBOL)  # fields


@composite(0x11, "amqp:begin:list")
class Begin:
    """§2.7.2: starts a session; `remote_channel` is set when answering the peer's begin."""

    remote_channel: int | None = f(T.USHORT)
    next_outgoing_id: int = f(T.UINT, mandatory=True)
    incoming_window: int = f(T.UINT, mandatory=True)
    outgoing_window: int = f(T.UINT, mandatory=True)
    handle_max: int = f(T.UINT, default=0xFFFFFFFF)
    offered_capabilities: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)
    desired_capabilities: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)
    properties: dict[object, object] | None = f(T.MAP, keys=T.SYMBOL)  # fields


@composite(0x12, "amqp:attach:list")
class Attach:
    """§2.7.3: attaches a link end to a session under a handle."""

    name: str = f(T.STRING, mandatory=True)
    handle: int = f(T.UINT, mandatory=True)
    role: bool = f(T.BOOLEAN, mandatory=True)
    snd_settle_mode: int = f(T.UBYTE, default=SndSettleMode.MIXED, choices=tuple(SndSettleMode))
    rcv_settle_mode: int = f(T.UBYTE, default=RcvSettleMode.FIRST, choices=tuple(RcvSettleMode))
    source: object = f(ANY, requires="source")
    target: object = f(ANY, requires="target")
    # delivery-tag → delivery-state
    unsettled: dict[object, object] | None = f(T.MAP, keys=T.BINARY, values="delivery-state")
    incomplete_unsettled: bool = f(T.BOOLEAN, default=False)
    initial_delivery_count: int | None = f(T.UINT)
    max_message_size: int | None = f(T.ULONG)
    offered_capabilities: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)
    desired_capabilities: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)
    properties: dict[object, object] | None = f(T.MAP, keys=T.SYMBOL)  # fields


@composite(0x13, "amqp:flow:list")
class Flow:
    """§2.7.4: session window and, when `handle` is set, link credit state."""

    next_incoming_id: int | None = f(T.UINT)
    incoming_window: int = f(T.UINT, mandatory=True)
    next_outgoing_id: int = f(T.UINT, mandatory=True)
    outgoing_window: int = f(T.UINT, mandatory=True)
    handle: int | None = f(T.UINT)
    delivery_count: int | None = f(T.UINT)
    link_credit: int | None = f(T.UINT)
    available: int | None = f(T.UINT)
    drain: bool = f(T.BOOLEAN, default=False)
    echo: bool = f(T.BOOLEAN, default=False)
    properties: dict[object, object] | None = f(T.MAP, keys=T.SYMBOL)  # fields


@composite(0x14, "amqp:transfer:list")
class Transfer:
    """§2.7.5: one frame of a delivery; the message bytes follow as the frame payload."""

    handle: int = f(T.UINT, mandatory=True)
    delivery_id: int | None = f(T.UINT)
    delivery_tag: bytes | None = f(T.BINARY)
    message_format: int | None = f(T.UINT)
    settled: bool | None = f(T.BOOLEAN)
    more: bool = f(T.BOOLEAN, default=False)
    rcv_settle_mode: int | None = f(T.UBYTE, choices=tuple(RcvSettleMode))
    state: object = f(ANY, requires="delivery-state")
    resume: bool = f(T.BOOLEAN, default=False)
    aborted: bool = f(T.BOOLEAN, default=False)
    batchable: bool = f(T.BOOLEAN, default=False)


@composite(0x15, "amqp:disposition:list")
class Disposition:
    """§2.7.6: outcome and/or settlement of the deliveries first..last."""

    role: bool = f(T.BOOLEAN, mandatory=True)
    first: int = f(T.UINT, mandatory=True)
    last: int | None = f(T.UINT)
    settled: bool = f(T.BOOLEAN, default=False)
    state: object = f(ANY, requires="delivery-state")
    batchable: bool = f(T.BOOLEAN, default=False)


@composite(0x16, "amqp:detach:list")
class Detach:
    """§2.7.7: detaches a link; `closed` also ends its lifetime."""

    handle: int = f(T.UINT, mandatory=True)
    closed: bool = f(T.BOOLEAN, default=False)
    error: Error | None = f(Error)


@composite(0x17, "amqp:end:list")
class End:
    """§2.7.8"""

    error: Error | None = f(Error)


@composite(0x18, "amqp:close:list")
class Close:
    """§2.7.9"""

    error: Error | None = f(Error)


@composite(0x40, "amqp:sasl-mechanisms:list")
class SaslMechanisms:
    """§5.3.3.1: the mechanisms the server offers."""

    sasl_server_mechanisms: tuple[Symbol, ...] = f(T.SYMBOL, mandatory=True, multiple=True)


@composite(0x41, "amqp:sasl-init:list")
class SaslInit:
    """§5.3.3.2: the client's chosen mechanism and first response."""

    mechanism: Symbol = f(T.SYMBOL, mandatory=True)
    initial_response: bytes | None = f(T.BINARY)
    hostname: str | None = f(T.STRING)


@composite(0x42, "amqp:sasl-challenge:list")
class SaslChallenge:
    """§5.3.3.3"""

    challenge: bytes = f(T.BINARY, mandatory=True)


@composite(0x43, "amqp:sasl-response:list")
class SaslResponse:
    """§5.3.3.4"""

    response: bytes = f(T.BINARY, mandatory=True)


@composite(0x44, "amqp:sasl-outcome:list")
class SaslOutcome:
    """§5.3.3.5: ends the SASL exchange; code 0 means authenticated."""

    code: int = f(T.UBYTE, mandatory=True, choices=tuple(SaslCode))
    additional_data: bytes | None = f(T.BINARY)


PERFORMATIVES = (Open, Begin, Attach, Flow, Transfer, Disposition, Detach, End, Close)
SASL_FRAMES = (SaslMechanisms, SaslInit, SaslChallenge, SaslResponse, SaslOutcome)
