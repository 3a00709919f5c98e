"""What the engine reports to its user (the container), in the order it happened.

Events are slotted dataclasses that nobody mutates.  They are deliberately not
`frozen=True`: a frozen dataclass sets each field through
`object.__setattr__`, which tripled the cost of the two events every message
produces (MessageReceived, DeliveryUpdated) on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.codec.performatives import Error

if TYPE_CHECKING:
    from broker.engine.link import Delivery, Link
    from broker.engine.session import Session


@dataclass(slots=True)
class ConnectionOpened:
    container_id: str
    hostname: str | None
    user: str | None


@dataclass(slots=True)
class ConnectionClosed:
    """The connection is over.  `abrupt` is False only when the peer closed
    cleanly; either way every link was reported detached first, so unsettled
    deliveries are already back in their queues."""

    error: Error | None
    abrupt: bool


@dataclass(slots=True)
class SessionEnded:
    """The peer ended a session (every link on it was reported detached first).
    A session we end ourselves is not reported."""

    session: Session
    error: Error | None


@dataclass(slots=True)
class LinkAttached:
    """The peer attached a link; the user must `accept()` or `refuse()` it.  For a
    link we attached (`link.local`), this is the peer's answer."""

    link: Link


@dataclass(slots=True)
class LinkDetached:
    """The link is gone (peer detach, session end, or a link error we raised)."""

    link: Link
    error: Error | None
    closed: bool


@dataclass(slots=True)
class CreditChanged:
    """Our sending link gained credit, a drain was requested, or the session window reopened."""

    link: Link


@dataclass(slots=True)
class MessageReceived:
    """A complete delivery arrived on one of our receiving links."""

    link: Link
    delivery: Delivery


@dataclass(slots=True)
class DeliveryUpdated:
    """The peer sent a disposition for a delivery we sent."""

    link: Link
    delivery: Delivery
    state: object
    settled: bool


@dataclass(slots=True)
class DeliveriesUpdated:
    """One disposition of the peer's for a range of deliveries we sent (each
    `DeliveryUpdated(delivery.link, delivery, state, settled)`, in order): one
    event for a consumer's ranged accept instead of one per message."""

    deliveries: list[Delivery]
    state: object
    settled: bool


Event = (
    ConnectionOpened
    | ConnectionClosed
    | SessionEnded
    | LinkAttached
    | LinkDetached
    | CreditChanged
    | MessageReceived
    | DeliveryUpdated
    | DeliveriesUpdated
)
