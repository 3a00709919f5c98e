"""Sessions (§2.5): transfer windows, the handle table and delivery ids.

Theory of operation.  Each transfer frame takes one transfer-id.  We grant the
peer an incoming window of `INCOMING_WINDOW` transfers and re-open it with a
flow once half is used; a transfer beyond it is a window violation.  Our own
transfers respect the peer's incoming window (§2.5.6: `next-incoming-id +
incoming-window - next-outgoing-id`); frames that do not fit wait in a backlog
until the peer's next flow, so a slow reader (rhea grants 2048 frames at a
time) never sees a violation from us.

Dispositions we owe are queued and sent as ranges (consecutive ids, same
state) when the connection flushes, not one frame per message.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import TYPE_CHECKING, Any

from broker.codec.messaging import Accepted, Modified, Rejected, Released, Source, Target
from broker.codec.performatives import (
    Attach,
    Begin,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Role,
    Transfer,
    amqp_error,
)
from broker.codec.types import Symbol
from broker.engine import serial
from broker.engine.events import (
    CreditChanged,
    DeliveriesUpdated,
    DeliveryUpdated,
    LinkAttached,
    LinkDetached,
    MessageReceived,
    SessionEnded,
)
from broker.engine.link import Delivery, Link
from broker.errors import (
    AmqpSessionError,
    Condition,
    FrameSizeTooSmall,
    FramingError,
    HandleInUse,
    LocalProtocolError,
    UnattachedHandle,
    WindowViolation,
)
from broker.framing import encode_transfer_frame

if TYPE_CHECKING:
    from broker.engine.connection import Connection

INCOMING_WINDOW = 65536
OUTGOING_WINDOW = 0x7FFFFFFF
_OUTCOMES = (Accepted, Rejected, Released, Modified)  # terminal, unlike `received`


class NumberPool:
    """Our channel and handle numbers: the lowest free one first, as the old
    scan from zero chose them, but in O(log n): numbers given back wait in a
    heap, and `next` is the first never used.  A peer holding 65,536 sessions
    or 100,000 links no longer makes each new one cost a scan."""

    __slots__ = ("_free", "_next")

    def __init__(self) -> None:
        self._free: list[int] = []
        self._next = 0

    def peek(self) -> int:
        """The number `take` would return."""
        return self._free[0] if self._free else self._next

    def take(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        n = self._next
        self._next = n + 1
        return n

    def give(self, n: int) -> None:
        heapq.heappush(self._free, n)


class Session:
    def __init__(self, conn: Connection, channel: int, remote_channel: int | None,
                 begin: Begin | None, handle_max: int = 0xFFFFFFFF) -> None:
        """`begin`: the peer's begin of a session it began; None for one we
        begin (`Connection.begin`), completed by the peer's answer (`on_answer`)."""
        self.conn = conn
        self.channel = channel
        self.remote_channel = remote_channel if remote_channel is not None else -1
        self.handle_max = handle_max  # ours: the peer may use handles 0..handle_max
        self._handles = NumberPool()
        self.remote_handle_max = begin.handle_max if begin is not None else 0xFFFFFFFF
        # incoming (peer → us)
        self.next_incoming_id: int = begin.next_outgoing_id if begin is not None else 0
        self.incoming_window = INCOMING_WINDOW
        # outgoing (us → peer)
        self.next_outgoing_id = 0
        self.outgoing_window = OUTGOING_WINDOW
        self.next_delivery_id = 0
        # until the peer answers a begin of ours, nothing may go out: a window of 0
        self.remote_incoming_window: int = begin.incoming_window if begin is not None else 0
        self.remote_outgoing_window: int = begin.outgoing_window if begin is not None else 0
        # links we attached, until the peer answers; by name and our role, since a
        # pair of links may share a name (RabbitMQ's /management link pair)
        self._attaching: dict[tuple[str, bool], Link] = {}
        self.links: dict[int, Link] = {}  # by our handle
        self.remote_links: dict[int, Link] = {}  # by the peer's handle
        self.outgoing_unsettled: dict[int, Delivery] = {}
        self.incoming_unsettled: dict[int, Delivery] = {}
        # [link, delivery, payload, offset sent]; made when first needed (most
        # sessions never need one, and an empty deque is 0.7 KiB)
        self._backlog: deque[list[Any]] | None = None
        self._dispositions: list[list[Any]] = []  # [role, first, last, state]
        self.end_sent = False
        self.end_received = False

    # -- output ---------------------------------------------------------------

    @property
    def can_send(self) -> bool:
        return self.remote_incoming_window > 0 and not self._backlog and not self.end_sent

    def write(self, performative: object) -> None:
        if self._dispositions:
            self.flush_dispositions()
        self.conn.write_frame(self.channel, performative)

    def allocate_delivery_id(self) -> int:
        did = self.next_delivery_id
        self.next_delivery_id = (did + 1) & 0xFFFFFFFF  # serial.add, inlined: per message
        return did

    def send_transfer(self, link: Link, delivery: Delivery, payload: bytes) -> None:
        if self._backlog or self.remote_incoming_window <= 0:
            self._hold(link, delivery, payload, 0)
            return
        conn = self.conn
        tag = delivery.tag
        if 0 < conn.remote_max_frame_size - 48 - len(tag) >= len(payload):
            # one frame, the usual case: _emit_transfer's loop without the loop
            encode_transfer_frame(conn.out, self.channel, link.handle, delivery.delivery_id,
                                  tag, delivery.message_format, delivery.settled, False,
                                  payload)
            self.next_outgoing_id = (self.next_outgoing_id + 1) & 0xFFFFFFFF
            self.remote_incoming_window -= 1
            return
        offset = self._emit_transfer(link, delivery, payload, 0)
        if offset < len(payload):
            self._hold(link, delivery, payload, offset)

    def _hold(self, link: Link, delivery: Delivery, payload: bytes, offset: int) -> None:
        """What the peer's window does not take now waits, in order."""
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.append([link, delivery, payload, offset])

    def _emit_transfer(self, link: Link, delivery: Delivery, payload: bytes, offset: int) -> int:
        """Write frames of one delivery from `offset` while the peer's window allows.

        Returns the offset reached; the caller guarantees the window is open, so
        at least one frame is written."""
        conn = self.conn
        max_payload = conn.remote_max_frame_size - 8 - 40 - len(delivery.tag)
        if max_payload < 1:
            raise FrameSizeTooSmall("the peer's max-frame-size cannot hold a transfer frame")
        total = len(payload)
        while True:
            chunk_end = min(total, offset + max_payload)
            more = chunk_end < total
            encode_transfer_frame(
                conn.out, self.channel, link.handle, delivery.delivery_id, delivery.tag,
                delivery.message_format, delivery.settled, more,
                payload if (offset == 0 and not more) else payload[offset:chunk_end],
            )
            self.next_outgoing_id = (self.next_outgoing_id + 1) & 0xFFFFFFFF
            self.remote_incoming_window -= 1
            offset = chunk_end
            if not more or self.remote_incoming_window <= 0:
                return offset

    def _flush_backlog(self) -> None:
        while self._backlog and self.remote_incoming_window > 0:
            entry = self._backlog[0]
            link, delivery, payload, offset = entry
            offset = self._emit_transfer(link, delivery, payload, offset)
            if offset < len(payload):
                entry[3] = offset
                return
            self._backlog.popleft()

    def queue_disposition(self, role: bool, delivery_id: int, state: object) -> None:
        """Settle `delivery_id` with `state` at the next flush, merged into ranges."""
        ds = self._dispositions
        if ds:
            last = ds[-1]
            if last[0] is role and last[2] == (delivery_id - 1) & 0xFFFFFFFF and last[3] == state:
                last[2] = delivery_id
                return
        else:
            pending = self.conn.pending_sessions
            if pending is None:
                self.conn.pending_sessions = {self}
            else:
                pending.add(self)
        ds.append([role, delivery_id, delivery_id, state])

    def flush_dispositions(self) -> None:
        ds, self._dispositions = self._dispositions, []
        for role, first, last, state in ds:
            self.conn.write_frame(self.channel, Disposition(
                role=role, first=first, last=None if last == first else last,
                settled=True, state=state))

    @property
    def flow_next_incoming_id(self) -> int | None:
        """What our flows say as next-incoming-id: nothing until the peer's begin
        answered ours (§2.7.4), since until then we know no id of its."""
        return None if self.remote_channel == -1 else self.next_incoming_id

    def send_flow(self, echo: bool = False) -> None:
        self.write(Flow(
            next_incoming_id=self.flow_next_incoming_id,
            incoming_window=self.incoming_window,
            next_outgoing_id=self.next_outgoing_id,
            outgoing_window=self.outgoing_window,
            echo=echo,
        ))

    def end(self, error: Error | None = None) -> None:
        if self.end_sent:
            return
        for link in list(self.links.values()):
            self._drop_link(link, error=None)
        self.write(End(error=error))
        self.end_sent = True

    def link_detach_sent(self, link: Link) -> None:
        if link.detach_received:
            self._free(link)
        elif self._backlog:  # nothing may follow our detach on its handle
            self._backlog = deque(b for b in self._backlog if b[0] is not link)

    def _free(self, link: Link) -> None:
        if self._attaching and self._attaching.get((link.name, link.role)) is link:
            del self._attaching[(link.name, link.role)]
        if self.links.get(link.handle) is link:
            del self.links[link.handle]
            self._handles.give(link.handle)
        if self.remote_links.get(link.remote_handle) is link:
            del self.remote_links[link.remote_handle]
        # Incoming and outgoing delivery ids are separate number spaces: only
        # this link's own table, and only its own deliveries.
        table = self.outgoing_unsettled if link.is_sender else self.incoming_unsettled
        for did, delivery in link.unsettled.items():
            if table.get(did) is delivery:
                del table[did]
        if self._backlog:
            self._backlog = deque(b for b in self._backlog if b[0] is not link)

    def _drop_link(self, link: Link, error: Error | None) -> None:
        """The link ends without a detach exchange (session end, connection close)."""
        if not (link.detach_sent and link.detach_received):
            self.conn.emit(LinkDetached(link, error, True))
        link.detach_sent = link.detach_received = True
        self._free(link)

    # -- input ----------------------------------------------------------------

    def _link(self, handle: int) -> Link:
        link = self.remote_links.get(handle)
        if link is None:
            raise UnattachedHandle(f"no link is attached on handle {handle}")
        return link

    def on_answer(self, channel: int, begin: Begin) -> None:
        """The peer's begin answering ours: its channel and windows."""
        self.remote_channel = channel
        self.remote_handle_max = begin.handle_max
        self.next_incoming_id = begin.next_outgoing_id
        self.remote_incoming_window = begin.incoming_window
        self.remote_outgoing_window = begin.outgoing_window
        if self._backlog:
            self._flush_backlog()

    @property
    def has_handle_room(self) -> bool:
        """A link of ours fits within the peer's handle-max."""
        return self._handles.peek() <= self.remote_handle_max

    def attach(
        self,
        *,
        name: str,
        role: bool,
        source: Source | None,
        target: object,
        snd_settle_mode: int = 0,
        rcv_settle_mode: int = 0,
        max_message_size: int = 0,
        offered_capabilities: tuple[Symbol, ...] | None = None,
        desired_capabilities: tuple[Symbol, ...] | None = None,
        properties: dict[object, object] | None = None,
    ) -> Link:
        """Attach a link of ours (the client side); `LinkAttached` reports the
        peer's answer, and a refusal follows it as `LinkDetached`."""
        if self.end_sent or self.end_received:
            raise LocalProtocolError("the session has ended")
        if (name, role) in self._attaching:
            raise LocalProtocolError(f"link {name!r} is already being attached")
        handle = self._handles.take()
        link = Link(self, handle, None, name=name, role=role)
        link.source = source
        link.target = target  # type: ignore[assignment]
        link.snd_settle_mode = snd_settle_mode
        link.rcv_settle_mode = rcv_settle_mode
        link.max_message_size = max_message_size
        link.attach_sent = True
        self.links[handle] = link
        self._attaching[(name, role)] = link
        self.write(Attach(
            name=name, handle=handle, role=role,
            snd_settle_mode=snd_settle_mode, rcv_settle_mode=rcv_settle_mode,
            source=source, target=target,
            initial_delivery_count=0 if role is Role.SENDER else None,
            max_message_size=max_message_size or None,
            offered_capabilities=offered_capabilities,
            desired_capabilities=desired_capabilities,
            properties=properties,
        ))
        return link

    def on_attach(self, attach: Attach) -> None:
        if attach.handle in self.remote_links:
            raise HandleInUse(f"handle {attach.handle} is already in use")
        if attach.handle > self.handle_max:
            # §2.7.2: a handle outside the range we announced is a framing error
            raise FramingError(f"handle {attach.handle} exceeds handle-max {self.handle_max}")
        # the answer to a link of ours has the other role
        mine = self._attaching.pop((attach.name, not attach.role), None) \
            if self._attaching else None
        if mine is not None:
            mine.bind_remote(attach)
            self.remote_links[attach.handle] = mine
            self.conn.emit(LinkAttached(mine))
            return
        if self._handles.peek() > self.remote_handle_max:
            # §2.7.2: the peer's handle-max bounds the handles we may use
            raise AmqpSessionError(
                f"no handle left within the peer's handle-max {self.remote_handle_max}",
                condition=Condition.NOT_ALLOWED)
        handle = self._handles.take()
        link = Link(self, handle, attach)
        self.links[handle] = link
        self.remote_links[attach.handle] = link
        if not isinstance(attach.source, (Source, type(None))) or not isinstance(
            attach.target, (Source, Target, type(None))
        ):
            # the codec has checked the types: what is left is a transaction
            # coordinator (§4.5.1), a terminus we do not serve
            link.refuse(amqp_error(Condition.NOT_IMPLEMENTED, "transactions are not supported"))
            return
        self.conn.emit(LinkAttached(link))

    def on_flow(self, flow: Flow) -> None:
        # Links can wait on the session window only while it is shut: only a
        # flow that opens it again wakes every sending link with credit; any
        # other flow touches the one link it names.
        window_was_shut = not self.can_send
        self.remote_outgoing_window = flow.outgoing_window
        next_in = flow.next_incoming_id if flow.next_incoming_id is not None else 0
        # §2.5.6, with serial arithmetic on the ids only: a window is a count
        # and may be anything up to 2**32-1
        self.remote_incoming_window = flow.incoming_window - serial.diff(
            self.next_outgoing_id, next_in)
        if self._backlog:
            self._flush_backlog()
        if flow.handle is not None:
            link = self._link(flow.handle)
            # after our detach the link is gone for us: no credit, no echo
            if not link.detach_sent and link.on_flow(flow):
                self.conn.emit(CreditChanged(link))
        elif flow.echo:
            self.send_flow()
        if window_was_shut and self.can_send:
            named = self.remote_links.get(flow.handle) if flow.handle is not None else None
            for link in self.links.values():
                if link.is_sender and link.link_credit > 0 and link is not named:
                    self.conn.emit(CreditChanged(link))

    def on_transfer(self, transfer: Transfer, payload: bytes) -> None:
        if self.incoming_window <= 0:
            raise WindowViolation("transfer beyond the session's incoming window")
        self.incoming_window -= 1
        self.next_incoming_id = (self.next_incoming_id + 1) & 0xFFFFFFFF
        link = self._link(transfer.handle)
        if link.detach_sent:
            return  # the link is closing; late transfers are dropped (§2.6.5)
        try:
            to = link.forward_to
            if to is not None and not transfer.more and link._partial is None and \
                    self._cut_through(link, to, transfer, payload):
                return
            delivery = link.on_transfer(transfer, payload)
        finally:
            if self.incoming_window <= INCOMING_WINDOW // 2:
                self.incoming_window = INCOMING_WINDOW
                self.send_flow()
        if delivery is None:
            return
        to = link.forward_to
        if to is not None and to.can_send:  # a delivery of several frames
            to.forward(delivery)
            self.conn.touch(to.session.conn)
        else:
            # the owner takes it from here, and forwarding stops until the
            # owner has sent on what it holds and re-arms it: order is kept
            link.forward_to = None
            self.conn.events.append(MessageReceived(link, delivery))  # emit(), no check

    def _cut_through(self, link: Link, to: Link, transfer: Transfer, payload: bytes) -> bool:
        """A one-frame delivery on a forwarding link (`Link.forward_to`), sent
        on as one frame at once: `Link.on_transfer`'s accounting for it and
        `Link.forward`'s (`send`, `send_transfer`) in one place, without the
        calls and checks between them: about a tenth of the gateway's time
        per message (bench_gateway's in-memory path).  False, having changed
        nothing, for anything those would do
        otherwise (an error to raise, a frame to split, a window or credit
        that holds it back): the general path takes it then.
        tests/engine/test_forwarding.py holds both paths to the same bytes."""
        did = transfer.delivery_id
        tag = transfer.delivery_tag
        if did is None or tag is None or transfer.aborted or (
                link._allowed <= 0 and not link.tolerate_excess) or (
                link.max_message_size and len(payload) > link.max_message_size):
            return False  # the general path raises what it must
        ts = to.session
        tconn = ts.conn
        if not (to.link_credit > 0 and to.attach_sent and not to.detach_sent and
                not to.refused and ts.remote_incoming_window > 0 and not ts._backlog and
                not ts.end_sent and
                0 < tconn.remote_max_frame_size - 48 - len(tag) >= len(payload)):
            return False  # not `to.can_send`, or more than one frame there
        # received (Link.on_transfer, _completed)
        if link._allowed > 0:
            link._allowed -= 1
        if link.link_credit > 0:
            link.link_credit -= 1
        link.delivery_count = (link.delivery_count + 1) & 0xFFFFFFFF
        settled = bool(transfer.settled)
        message_format = transfer.message_format or 0
        # sent on (Link.forward, send, Session.send_transfer)
        copy_id = ts.next_delivery_id
        ts.next_delivery_id = (copy_id + 1) & 0xFFFFFFFF
        to.link_credit -= 1
        to.delivery_count = (to.delivery_count + 1) & 0xFFFFFFFF
        if not settled:
            original = Delivery(link, did, tag, False, payload, message_format)
            link.unsettled[did] = original
            self.incoming_unsettled[did] = original
            copy = Delivery(to, copy_id, tag, False, payload, message_format)
            copy.origin = original
            to.unsettled[copy_id] = copy
            ts.outgoing_unsettled[copy_id] = copy
        encode_transfer_frame(tconn.out, ts.channel, to.handle, copy_id, tag, message_format,
                              settled, False, payload)
        if to.keep_last:
            to.last_forwarded = payload
        ts.next_outgoing_id = (ts.next_outgoing_id + 1) & 0xFFFFFFFF
        ts.remote_incoming_window -= 1
        if link.credit_window and link.link_credit <= link.credit_window // 2 and link.usable:
            link.flow(link.credit_window)
        self.conn.touch(tconn)
        return True

    def on_disposition(self, disp: Disposition) -> None:
        first = disp.first
        last = disp.last if disp.last is not None else first
        table = self.outgoing_unsettled if disp.role else self.incoming_unsettled
        span = serial.diff(last, first)
        if span < 0:
            return
        if span + 1 <= len(table):
            ids = [(first + i) & 0xFFFFFFFF for i in range(span + 1)]
        else:
            ids = [i for i in table if serial.in_range(i, first, last)]
        settled, state, outcome = disp.settled, disp.state, disp.role
        updated = []
        originals = []
        copies: list[Delivery] = []
        for did in ids:
            delivery = table.get(did)
            if delivery is None:
                continue
            if settled:
                delivery.remote_settled = True
                del table[did]
                delivery.link.unsettled.pop(did, None)
            if outcome:  # the peer is the receiver: an outcome for what we sent
                origin = delivery.origin
                if origin is None:
                    updated.append(delivery)
                elif settled or isinstance(state, _OUTCOMES):
                    # a copy Link.forward sent: its original is settled with the
                    # outcome; one given without settlement (a receiver settling
                    # second waits for ours) settles the copy too, after it
                    delivery.origin = None
                    originals.append(origin)
                    if not settled:
                        copies.append(delivery)
            elif settled:
                delivery.settled = True
        if originals:
            self._settle_originals(originals, state)
            for delivery in copies:
                delivery.link.settle(delivery, state)
        if len(updated) == 1:
            delivery = updated[0]
            self.conn.events.append(DeliveryUpdated(delivery.link, delivery, state, settled))
        elif updated:  # a range: one event (emit()'s check is not needed for these)
            self.conn.events.append(DeliveriesUpdated(updated, state, settled))

    def _settle_originals(self, originals: list[Delivery], state: object) -> None:
        """The originals of copies our peer settled: each settled with the
        copy's outcome, as `Link.settle` settles what we received, with no
        event, in one loop (a range of copies is mostly a range of one link's
        originals, and their connection is told once)."""
        told = None
        for original in originals:
            link = original.link
            if original.settled or not link.usable:
                continue
            original.settled = True
            original.state = state
            did = original.delivery_id
            link.unsettled.pop(did, None)
            session = link.session
            session.incoming_unsettled.pop(did, None)
            if not original.remote_settled:
                session.queue_disposition(Role.RECEIVER, did, state)
            if session is not told:
                told = session
                self.conn.touch(session.conn)

    def on_detach(self, detach: Detach) -> None:
        link = self._link(detach.handle)
        link.detach_received = True
        if link.detach_sent:
            self._free(link)
            return
        link._partial = None
        self.conn.emit(LinkDetached(link, detach.error, detach.closed))
        if not link.attach_sent:  # attach and detach arrived together: answer both, in order
            link.attach_sent = link.refused = True
            self.write(link.null_attach())
        link.detach_sent = True
        self.write(Detach(handle=link.handle, closed=detach.closed))
        self._free(link)

    def on_end(self, end: End) -> None:
        self.end_received = True
        for link in list(self.links.values()):
            self._drop_link(link, end.error)
        if not self.end_sent:
            self.write(End())
            self.end_sent = True
            self.conn.emit(SessionEnded(self, end.error))
