"""AMQP error conditions and the exception tree the engine maps to performatives.

Exceptions are typed by *scope*: what must be torn down when they are raised.
The single boundary that turns them into `detach`/`end`/`close` frames lives in
`engine/connection.py`; everything else just raises.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class Condition(str, enum.Enum):
    """Every error symbol defined by AMQP 1.0 (§2.8.15-§2.8.18)."""

    # amqp-error §2.8.15
    INTERNAL_ERROR = "amqp:internal-error"
    NOT_FOUND = "amqp:not-found"
    UNAUTHORIZED_ACCESS = "amqp:unauthorized-access"
    DECODE_ERROR = "amqp:decode-error"
    RESOURCE_LIMIT_EXCEEDED = "amqp:resource-limit-exceeded"
    NOT_ALLOWED = "amqp:not-allowed"
    INVALID_FIELD = "amqp:invalid-field"
    NOT_IMPLEMENTED = "amqp:not-implemented"
    RESOURCE_LOCKED = "amqp:resource-locked"
    PRECONDITION_FAILED = "amqp:precondition-failed"
    RESOURCE_DELETED = "amqp:resource-deleted"
    ILLEGAL_STATE = "amqp:illegal-state"
    FRAME_SIZE_TOO_SMALL = "amqp:frame-size-too-small"
    # connection-error §2.8.16
    CONNECTION_FORCED = "amqp:connection:forced"
    FRAMING_ERROR = "amqp:connection:framing-error"
    REDIRECT = "amqp:connection:redirect"
    # session-error §2.8.17
    WINDOW_VIOLATION = "amqp:session:window-violation"
    ERRANT_LINK = "amqp:session:errant-link"
    HANDLE_IN_USE = "amqp:session:handle-in-use"
    UNATTACHED_HANDLE = "amqp:session:unattached-handle"
    # link-error §2.8.18
    DETACH_FORCED = "amqp:link:detach-forced"
    TRANSFER_LIMIT_EXCEEDED = "amqp:link:transfer-limit-exceeded"
    MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
    LINK_REDIRECT = "amqp:link:redirect"
    STOLEN = "amqp:link:stolen"


class AmqpError(Exception):
    """Base of every protocol error; carries the condition sent to the peer."""

    condition: ClassVar[Condition | None] = None

    def __init__(
        self,
        description: str = "",
        *,
        condition: Condition | None = None,
        info: dict[object, object] | None = None,
    ) -> None:
        super().__init__(description)
        cond = condition if condition is not None else type(self).condition
        if cond is None:
            raise TypeError(f"{type(self).__name__} needs a condition")
        self.error_condition: Condition = cond
        self.description = description
        self.info = info


class AmqpConnectionError(AmqpError):
    """The whole connection must be closed (`close` with this error)."""


class FramingError(AmqpConnectionError):
    condition = Condition.FRAMING_ERROR


class DecodeError(AmqpConnectionError):
    """Malformed AMQP-encoded bytes. `offset` is where decoding gave up."""

    condition = Condition.DECODE_ERROR

    def __init__(self, description: str, offset: int = -1) -> None:
        text = f"{description} (at offset {offset})" if offset >= 0 else description
        super().__init__(text)
        self.offset = offset


class FrameSizeTooSmall(AmqpConnectionError):
    """A frame we must send cannot fit in the peer's max-frame-size."""

    condition = Condition.FRAME_SIZE_TOO_SMALL


class EncodeError(ValueError):
    """A value cannot be represented in AMQP; this is always our own bug."""


class AmqpSessionError(AmqpError):
    """The session must be ended (`end` with this error)."""


class WindowViolation(AmqpSessionError):
    condition = Condition.WINDOW_VIOLATION


class UnattachedHandle(AmqpSessionError):
    condition = Condition.UNATTACHED_HANDLE


class HandleInUse(AmqpSessionError):
    condition = Condition.HANDLE_IN_USE


class ErrantLink(AmqpSessionError):
    condition = Condition.ERRANT_LINK


class AmqpLinkError(AmqpError):
    """The link must be detached (`detach(closed=True)` with this error)."""


class TransferLimitExceeded(AmqpLinkError):
    condition = Condition.TRANSFER_LIMIT_EXCEEDED


class MessageSizeExceeded(AmqpLinkError):
    condition = Condition.MESSAGE_SIZE_EXCEEDED


class DetachForced(AmqpLinkError):
    condition = Condition.DETACH_FORCED


class LinkStolen(AmqpLinkError):
    condition = Condition.STOLEN


class LocalProtocolError(Exception):
    """Our own misuse of the engine (e.g. sending without credit); never sent to the peer."""
