"""Links (§2.6): credit, delivery-count, drain and the unsettled map.

Theory of operation.  A `Link` is *our* end of a link.  Usually the peer
attached it and our role is the opposite of the peer's: when the peer attaches
as receiver we are the sender (a consumer reading a queue), and vice versa (a
publisher).  The gateway's upstream links are attached by us (`local`), and
the peer's answer completes them (`bind_remote`); from then on both kinds
behave the same.

* Sender (we send): the peer grants credit with `flow`; §2.6.7 gives our
  credit as `delivery_count_rcv + link_credit_rcv - delivery_count_snd`.
  `send()` spends one credit and advances delivery-count; when the peer asked
  to drain and we run out of messages, `drained()` spends the rest and tells
  the peer with a flow.
* Receiver (we receive): we grant `credit_window` credits and top them up
  when half are used, so a publisher streams without waiting on us.  A
  transfer without credit is `transfer-limit-exceeded`; a delivery larger
  than our max-message-size is `message-size-exceeded`.

Deliveries we sent stay in `unsettled` until the peer settles them (all but
a run `send_run` sent untracked, whose outcomes the sender has no use for);
the container decides what an outcome means for the message.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, cast

from broker.codec.encode import encode
from broker.codec.messaging import Source, Target
from broker.codec.performatives import Attach, Detach, Error, Flow, RcvSettleMode, Role, Transfer
from broker.codec.types import Symbol
from broker.engine import serial
from broker.errors import (
    AmqpLinkError,
    Condition,
    LocalProtocolError,
    MessageSizeExceeded,
    TransferLimitExceeded,
)
from broker.framing import TransferRun, encode_transfer_frame

if TYPE_CHECKING:
    from broker.engine.session import Session


def _bare(terminus: object) -> object:
    """A terminus without its informative-only fields (see `Link._fit`)."""
    if isinstance(terminus, Source):
        return dataclasses.replace(terminus, default_outcome=None, outcomes=None,
                                   capabilities=None, dynamic_node_properties=None)
    if isinstance(terminus, Target):
        return dataclasses.replace(terminus, capabilities=None, dynamic_node_properties=None)
    return terminus


class Delivery:
    """One message in flight on a link, in either direction."""

    __slots__ = (
        "context",
        "delivery_id",
        "link",
        "message_format",
        "origin",
        "payload",
        "remote_settled",
        "settled",
        "state",
        "tag",
    )

    def __init__(self, link: Link, delivery_id: int, tag: bytes, settled: bool,
                 payload: bytes = b"", message_format: int = 0) -> None:
        self.link = link
        self.delivery_id = delivery_id
        self.tag = tag
        self.settled = settled  # settled by us
        self.remote_settled = False
        self.state: object = None
        self.payload = payload
        self.context: Any = None  # the container's bookkeeping (e.g. a queue entry)
        self.message_format = message_format
        # a copy `Link.forward` sent: the delivery it copies, settled with the
        # outcome the peer gives this one (Session.on_disposition)
        self.origin: Delivery | None = None

    def __repr__(self) -> str:
        return f"Delivery(id={self.delivery_id}, tag={self.tag!r}, settled={self.settled})"


class Link:
    # slots: one per attached link (an attribute dict would be 1.5 KiB of each)
    __slots__ = (
        "_allowed", "_chunks", "_next_tag", "_partial", "_partial_size", "attach_sent",
        "available", "context", "credit_window", "delivery_count", "detach_received",
        "detach_sent", "drain", "forward_to", "handle", "is_sender", "keep_last",
        "last_forwarded", "link_credit", "local", "max_message_size", "name",
        "rcv_settle_mode", "refused", "remote_attach",
        "remote_handle", "remote_max_message_size", "role", "session",
        "snd_settle_mode", "source", "target", "tolerate_excess", "unsettled",
    )

    def __init__(self, session: Session, handle: int, remote: Attach | None, *,
                 name: str = "", role: bool = Role.SENDER) -> None:
        """`remote`: the peer's attach of a link it attached; None for a link we
        attach (`Session.attach`: the client side), whose remote half arrives
        with the peer's answer (`bind_remote`)."""
        self.session = session
        self.handle = handle
        self.local = remote is None  # we attached it (and the peer answers)
        self.remote_handle: int = remote.handle if remote is not None else -1
        # for a link we attached, None until the peer answers (read only after)
        self.remote_attach: Attach = cast(Attach, remote)
        self.name = remote.name if remote is not None else name
        self.role = (not remote.role) if remote is not None else role  # ours
        self.is_sender = self.role is Role.SENDER
        self.attach_sent = False
        self.detach_sent = False
        self.detach_received = False
        self.refused = False
        self.source: Source | None = None
        self.target: Target | None = None
        self.snd_settle_mode = remote.snd_settle_mode if remote is not None else 0
        self.rcv_settle_mode = remote.rcv_settle_mode if remote is not None else 0
        self.max_message_size = 0  # ours, 0 = unlimited
        self.remote_max_message_size = (remote.max_message_size or 0) if remote is not None else 0
        # delivery-count and credit, from the sender's point of view (§2.6.7)
        self.delivery_count = 0 if (self.is_sender or remote is None) else (
            remote.initial_delivery_count or 0)
        self.link_credit = 0
        # receiver: transfers the sender may still send, by the most generous
        # credit we granted: a sender that has not yet seen a lowered credit
        # may go on under the old one (§2.6.7), and that is no violation
        self._allowed = 0
        # receiver: take transfers beyond any credit we granted instead of
        # detaching with transfer-limit-exceeded (the gateway's upstream links:
        # RabbitMQ 3.10 overshoots a credit lowered while it sends, and a client
        # talking to it directly never notices, so neither may one behind us)
        self.tolerate_excess = False
        self.drain = False
        self.available = 0
        self.credit_window = 0  # receiver: credit we keep topped up
        self.unsettled: dict[int, Delivery] = {}
        self._partial: Delivery | None = None
        self._chunks: list[bytes] = []
        self._partial_size = 0
        self._next_tag = 0
        self.context: Any = None  # the container's object for this link
        # receiver: the sending link (on another connection) that complete
        # deliveries go to as they arrive, with no event (the gateway's routes)
        self.forward_to: Link | None = None
        # sender: keep the payload of the last delivery forwarded on it (the
        # gateway asks, to know where a stream reader re-attached must resume)
        self.keep_last = False
        self.last_forwarded: bytes | None = None

    def bind_remote(self, remote: Attach) -> None:
        """The peer's answer to a link we attached: its handle, its limits and,
        when we receive, the count its deliveries start from."""
        self.remote_attach = remote
        self.remote_handle = remote.handle
        self.remote_max_message_size = remote.max_message_size or 0
        if not self.is_sender:
            self.delivery_count = remote.initial_delivery_count or 0

    # -- properties -----------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.attach_sent and not self.detach_sent and not self.refused

    @property
    def can_send(self) -> bool:
        """True when a `send()` now would go on the wire (credit and session window).
        Asked before every delivery, so `usable` and the session's `can_send` are
        spelled out here rather than called."""
        s = self.session
        return self.link_credit > 0 and self.attach_sent and not self.detach_sent and \
            not self.refused and s.remote_incoming_window > 0 and not s._backlog and \
            not s.end_sent

    # -- local actions --------------------------------------------------------

    def accept(
        self,
        *,
        source: Source | None,
        target: Target | None,
        snd_settle_mode: int | None = None,
        rcv_settle_mode: int | None = None,
        max_message_size: int = 0,
        credit_window: int = 0,
        offered_capabilities: tuple[Symbol, ...] | None = None,
        properties: dict[object, object] | None = None,
    ) -> None:
        """Answer the peer's attach with ours, naming the termini actually applied."""
        if self.attach_sent:
            raise LocalProtocolError("link already answered")
        self.source, self.target = source, target
        if snd_settle_mode is not None:
            self.snd_settle_mode = snd_settle_mode
        if rcv_settle_mode is not None:
            self.rcv_settle_mode = rcv_settle_mode
        self.max_message_size = max_message_size
        attach = Attach(
            name=self.name,
            handle=self.handle,
            role=self.role,
            snd_settle_mode=self.snd_settle_mode,
            rcv_settle_mode=self.rcv_settle_mode,
            source=source,
            target=target,
            initial_delivery_count=self.delivery_count if self.is_sender else None,
            max_message_size=max_message_size,  # 0 (no limit) is sent too, as RabbitMQ does
            offered_capabilities=offered_capabilities,
            properties=properties,
        )
        attach = self._fit(attach)
        self.attach_sent = True
        self.session.write(attach)
        if not self.is_sender and credit_window:
            self.credit_window = credit_window
            self.flow(credit_window)

    def _fit(self, attach: Attach) -> Attach:
        """Our attach echoes the peer's termini and adds to them, so it can outgrow
        the peer's max-frame-size where the peer's own attach fitted: drop what is
        informative only (outcomes, default outcome, capabilities, properties);
        if even that does not fit, the link is refused with frame-size-too-small
        (a link error: only this link is affected)."""
        limit = self.session.conn.remote_max_frame_size - 8
        if len(encode(attach)) <= limit:
            return attach
        trimmed = dataclasses.replace(
            attach,
            source=_bare(attach.source),
            target=_bare(attach.target),
            offered_capabilities=None,
            properties=None,
        )
        if len(encode(trimmed)) > limit:
            raise AmqpLinkError("our attach cannot fit the peer's max-frame-size",
                                condition=Condition.FRAME_SIZE_TOO_SMALL)
        return trimmed

    def refuse(self, error: Error) -> None:
        """§2.6.3: attach with a null terminus, then detach with the reason."""
        if self.attach_sent:
            raise LocalProtocolError("link already answered")
        self.attach_sent = True
        self.refused = True
        self.session.write(self.null_attach())
        self.detach(error, closed=True)

    def null_attach(self) -> Attach:
        """Our attach for a link we do not establish: the terminus on our side is null."""
        remote = self.remote_attach
        return Attach(
            name=self.name,
            handle=self.handle,
            role=self.role,
            source=None if self.is_sender else remote.source,
            target=remote.target if self.is_sender else None,
            initial_delivery_count=0 if self.is_sender else None,
        )

    def detach(self, error: Error | None = None, *, closed: bool = True) -> None:
        if self.detach_sent:
            return
        if not self.attach_sent:  # a link must be attached before it is detached
            self.attach_sent = True
            self.refused = True
            self.session.write(self.null_attach())
        self.detach_sent = True
        self.session.write(Detach(handle=self.handle, closed=closed, error=error))
        self.session.link_detach_sent(self)

    def flow(self, credit: int, *, drain: bool = False, echo: bool = False) -> None:
        """Receiver: set the peer's credit to `credit`. Sender: report our state."""
        if not self.is_sender:
            self.link_credit = credit
            self._allowed = max(self._allowed, credit)
            self.drain = drain
        self.session.write(self._flow_frame(echo=echo))

    def _flow_frame(self, echo: bool = False) -> Flow:
        s = self.session
        return Flow(
            next_incoming_id=s.flow_next_incoming_id,
            incoming_window=s.incoming_window,
            next_outgoing_id=s.next_outgoing_id,
            outgoing_window=s.outgoing_window,
            handle=self.handle,
            delivery_count=self.delivery_count,
            link_credit=self.link_credit,
            available=self.available if self.is_sender else None,
            drain=self.drain,
            echo=echo,
        )

    def send(self, payload: bytes, *, settled: bool, tag: bytes | None = None,
             message_format: int = 0) -> Delivery:
        """Send one message; it spends one credit.  Split into frames as needed."""
        if not self.is_sender:
            raise LocalProtocolError("cannot send on a receiving link")
        if self.link_credit <= 0 or self.detach_sent or self.refused or not self.attach_sent:
            raise LocalProtocolError("no credit to send")  # (`usable`, inlined: per message)
        if tag is None:
            # 16 bytes: the Azure SDKs read a delivery's lock token from its tag
            # as a UUID (uuid.UUID(bytes_le=tag)); a counter is unique per link
            tag = self._next_tag.to_bytes(16, "big")
            self._next_tag = (self._next_tag + 1) & 0xFFFFFFFF
        session = self.session
        did = session.next_delivery_id  # allocate_delivery_id, inlined: per message
        session.next_delivery_id = (did + 1) & 0xFFFFFFFF
        delivery = Delivery(self, did, tag, settled, payload, message_format)
        self.link_credit -= 1
        self.delivery_count = (self.delivery_count + 1) & 0xFFFFFFFF  # serial.add, inlined
        if not settled:
            self.unsettled[delivery.delivery_id] = delivery
            session.outgoing_unsettled[delivery.delivery_id] = delivery
        session.send_transfer(self, delivery, payload)
        return delivery

    def forward(self, delivery: Delivery) -> None:
        """Send `delivery` (received on another link) on, with its tag, format
        and settlement; an unsettled one is paired with its copy, so the
        outcome our peer gives the copy settles it (Session.on_disposition)."""
        settled = delivery.remote_settled
        copy = self.send(delivery.payload, settled=settled, tag=delivery.tag,
                         message_format=delivery.message_format)
        if not settled:
            copy.origin = delivery
        if self.keep_last:
            self.last_forwarded = delivery.payload

    def send_run(self, payloads: list[bytes], *, settled: bool,
                 track: bool = True) -> list[Delivery]:
        """`send()` for several messages at once (a stream reader's credit
        window): one call, one loop, instead of three calls per message.  Each
        message goes in one frame while the session window allows; anything
        else (a large message, a shut window) takes `send_transfer`'s way.

        `track=False`: the caller has no use for the peer's outcomes (a
        stream keeps every message, whatever its readers say), so the run
        makes no `Delivery` and fills no unsettled map: the peer's
        dispositions for these ids find nothing and are dropped, with no
        event.  A receiver in rcv-settle-mode second waits for our settlement
        of unsettled transfers (§2.7.3), so those are tracked all the same.
        Returns the deliveries tracked (none when untracked)."""
        if not self.is_sender:
            raise LocalProtocolError("cannot send on a receiving link")
        if self.link_credit < len(payloads) or not self.usable:
            raise LocalProtocolError("no credit to send")
        track = track or (not settled and self.rcv_settle_mode == RcvSettleMode.SECOND)
        session = self.session
        conn = session.conn
        out = conn.out
        unsettled, outgoing = self.unsettled, session.outgoing_unsettled
        handle, channel = self.handle, session.channel
        one_frame = conn.remote_max_frame_size - 48 - 16  # 16: our tags' size
        next_tag, did = self._next_tag, session.next_delivery_id
        # a run of one is encode_transfer_frame's as it stands
        run = TransferRun(channel, handle, settled) if handle < 256 and len(payloads) > 1 \
            else None
        if run is not None:
            pack, fixed, size, tail = run.pack, run.fixed, run.size, run.tail
        deliveries = []
        # the session's window, counted here and written back before anything
        # else reads it (send_transfer, the end of the run)
        room = 0 if session._backlog else session.remote_incoming_window
        framed = 0
        for payload in payloads:
            tag = next_tag.to_bytes(16, "big")
            next_tag = (next_tag + 1) & 0xFFFFFFFF
            if track:
                delivery = Delivery(self, did, tag, settled, payload)
                deliveries.append(delivery)
                if not settled:
                    unsettled[did] = delivery
                    outgoing[did] = delivery
            if room > 0 and len(payload) <= one_frame:
                if run is not None and did > 255:
                    # encode_transfer_frame's bytes, without its call
                    out += pack(size + len(payload), fixed, did, 0xA0, 16, tag, tail)
                    out += payload
                else:
                    encode_transfer_frame(out, channel, handle, did, tag, 0, settled, False,
                                          payload)
                room -= 1
                framed += 1
            else:
                session.next_outgoing_id = (session.next_outgoing_id + framed) & 0xFFFFFFFF
                session.remote_incoming_window -= framed
                framed = 0
                if not track:  # the frames (or the held backlog) need one all the same
                    delivery = Delivery(self, did, tag, settled, payload)
                session.send_transfer(self, delivery, payload)
                room = 0 if session._backlog else session.remote_incoming_window
            did = (did + 1) & 0xFFFFFFFF
        session.next_outgoing_id = (session.next_outgoing_id + framed) & 0xFFFFFFFF
        session.remote_incoming_window -= framed
        self._next_tag, session.next_delivery_id = next_tag, did
        self.link_credit -= len(payloads)
        self.delivery_count = (self.delivery_count + len(payloads)) & 0xFFFFFFFF
        return deliveries

    def drained(self) -> None:
        """Sender: nothing more to send now.  If the peer asked to drain, spend
        the rest of the credit and answer with our flow (drain=true) even when
        no credit was left: §2.6.7, and rhea reports a drain as finished only
        on that flow."""
        if self.drain and self.usable:
            self.delivery_count = serial.add(self.delivery_count, self.link_credit)
            self.link_credit = 0
            self.session.write(self._flow_frame())
            self.drain = False

    def settle(self, delivery: Delivery, state: object = None) -> None:
        """Settle a delivery on our side, telling the peer the outcome."""
        if delivery.settled:
            return
        delivery.settled = True
        delivery.state = state
        self.unsettled.pop(delivery.delivery_id, None)
        if self.is_sender:
            self.session.outgoing_unsettled.pop(delivery.delivery_id, None)
        else:
            self.session.incoming_unsettled.pop(delivery.delivery_id, None)
        if not delivery.remote_settled and self.usable:
            self.session.queue_disposition(not self.is_sender, delivery.delivery_id, state)

    # -- frames from the peer -------------------------------------------------

    def on_flow(self, flow: Flow) -> bool:
        """Returns True when the container should be told: as sender, credit or
        drain changed; as receiver, the sender answered a drain or reported a
        different `available`."""
        if self.is_sender:
            peer_count = flow.delivery_count if flow.delivery_count is not None else 0
            credit = flow.link_credit if flow.link_credit is not None else 0
            # serial arithmetic on the counts only: credit may be anything up to 2**32-1,
            # and stays within a uint however far ahead the peer claims its count is
            self.link_credit = min(0xFFFFFFFF, max(
                0, credit - serial.diff(self.delivery_count, peer_count)))
            self.drain = flow.drain
            if flow.echo:
                self.session.write(self._flow_frame())
            return True
        # the peer is the sender: it reports its delivery-count and what it has
        changed = False
        if flow.delivery_count is not None:
            consumed = serial.diff(flow.delivery_count, self.delivery_count)
            if consumed > 0:  # drain: the sender advanced past our count
                self.delivery_count = flow.delivery_count
                self.link_credit = max(0, self.link_credit - consumed)
                self._allowed = max(0, self._allowed - consumed)
                changed = True
        if flow.drain and self.drain and self.link_credit == 0:
            # the answer to our drain, also from a sender whose transfers spent
            # the credit (its count then has nothing to add): the drain is over
            changed = True
        if flow.available is not None and flow.available != self.available:
            self.available = flow.available
            changed = True
        if flow.echo:
            self.session.write(self._flow_frame())
        # told only when the sender answered a drain or its backlog moved (the
        # gateway passes both on); the broker's publishers ignore it
        return changed

    def on_transfer(self, transfer: Transfer, payload: bytes) -> Delivery | None:
        """Collect one transfer frame; return the delivery once it is complete."""
        if self.is_sender:
            raise AmqpLinkError("transfer received on a link where the peer is the receiver",
                                condition=Condition.NOT_ALLOWED)
        delivery = self._partial
        if delivery is None:
            if transfer.delivery_id is None or transfer.delivery_tag is None:
                raise AmqpLinkError("first transfer of a delivery needs delivery-id and tag",
                                    condition=Condition.INVALID_FIELD)
            if self._allowed <= 0:
                if not self.tolerate_excess:
                    raise TransferLimitExceeded("transfer sent without link credit")
            else:
                self._allowed -= 1
            if self.link_credit > 0:
                self.link_credit -= 1
            self.delivery_count = (self.delivery_count + 1) & 0xFFFFFFFF
            delivery = Delivery(self, transfer.delivery_id, transfer.delivery_tag,
                                False, payload, message_format=transfer.message_format or 0)
            delivery.remote_settled = bool(transfer.settled)
            if not transfer.more and not transfer.aborted and not (
                    self.max_message_size and len(payload) > self.max_message_size):
                return self._completed(delivery)  # the usual case: one frame, no chunks
            self._partial = delivery
            self._chunks = []
            self._partial_size = 0
        elif transfer.settled:
            delivery.remote_settled = True
        if transfer.aborted:
            self._partial = None
            self._chunks = []
            return None
        self._partial_size += len(payload)
        if self.max_message_size and self._partial_size > self.max_message_size:
            self._partial = None
            self._chunks = []
            raise MessageSizeExceeded(
                f"message exceeds the max-message-size of {self.max_message_size} bytes")
        if transfer.more:
            self._chunks.append(payload)
            return None
        self._partial = None
        self._chunks.append(payload)
        delivery.payload = b"".join(self._chunks) if len(self._chunks) > 1 else payload
        self._chunks = []
        return self._completed(delivery)

    def _completed(self, delivery: Delivery) -> Delivery:
        """A whole delivery received: unsettled until we settle it, unless the
        peer sent it settled; our credit topped up when half is used."""
        if delivery.remote_settled:
            delivery.settled = True
        else:
            self.unsettled[delivery.delivery_id] = delivery
            self.session.incoming_unsettled[delivery.delivery_id] = delivery
        if self.credit_window and self.link_credit <= self.credit_window // 2 and self.usable:
            self.flow(self.credit_window)
        return delivery

    def __repr__(self) -> str:
        role = "sender" if self.is_sender else "receiver"
        return f"Link({self.name!r}, {role}, handle={self.handle})"
