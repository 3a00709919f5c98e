"""What crosses the gateway: one client link ↔ one upstream link.

Theory of operation.  A client attaches a link to the gateway; the gateway
attaches a link with the same name, termini, settle modes, capabilities and
properties upstream, and answers the client with what the upstream answered
(so a dynamic address, an applied filter or a refusal reaches the client as
the upstream broker said it).  Until then the client's link has no credit.

Credit is end to end, in "what may still be sent" terms (§2.6.7):

* client receives (our client-side link sends, our upstream link receives):
  the upstream link's credit is the client's credit less what we hold for the
  client (`pending`); the upstream cannot send more than the client granted,
  transfers in flight included, since its credit is counted from our
  delivery-count.  A drain goes upstream; the upstream's answer (it advanced
  its count) ends the client's drain once nothing is held.
* client sends: the client's credit is the upstream link's credit less what
  we hold for the upstream; an upstream drain is passed to the client, and
  the client's answer answers it.

`pending` holds what credit already allowed: a credit lowered by the
receiving side while transfers were in flight.  An upstream that sends
beyond the credit it was given (RabbitMQ 3.10 does, when credit is lowered
while it sends) has the excess held too, where the engine would otherwise
detach with transfer-limit-exceeded: a client talking to that broker
directly would have taken it.

Deliveries keep their tag, message format and bytes, sent on by the engine
(`Link.forward`): an unsettled one is paired with its copy on the other side
(`Delivery.origin`), and the outcome the receiving side settles the copy with
settles the original, in the engine, with no event.  A presettled one stays
presettled.  While nothing is held and nothing is checked at the edge, the
route is armed (`Link.forward_to`): the engine sends each delivery on as it
arrives (a one-frame one by `Session._cut_through`), and hands one over as
an event only when the other side cannot take it, which stops the
forwarding until `_carry` has sent on what it holds and re-arms.

Where the gateway receives (from a sending client, or upstream for a
receiving one), it settles first: it answers and asks rcv-settle-mode first,
as RabbitMQ answers, so that it never owes a second settlement it would have
to wait for.  A receiver that settles second all the same (a client, or an
upstream answering second) gets the sender's settlement after its outcome,
from the engine (Session.on_disposition).

A session route pairs a client session with the upstream session that
carries its links, so an upstream session ended with an error (RabbitMQ ends
the session on an attach to a missing queue) ends the client's session with
that same error, and nobody else's.

A link route that asked to be re-attached (reattach.py) outlives the
upstream connection that carried it: `lost` keeps what must go on (a
sending client's unsettled messages, to be sent again; a receiving one's
presettled messages held for it, and for a stream reader the offset to
resume from), `reopen` attaches a
new upstream link for the same client link, and the upstream's answer
passes on credit as a first answer does, without a second attach to the
client.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from broker.codec.messaging import Source, Target
from broker.codec.performatives import Error, RcvSettleMode, Role, amqp_error
from broker.engine.link import Delivery, Link
from broker.engine.session import Session
from broker.errors import Condition
from broker.gateway.reattach import REATTACH, resume_source, stream_offset

if TYPE_CHECKING:
    from broker.gateway.core import ClientHandle
    from broker.gateway.upstream import Upstream

log = logging.getLogger("broker.gateway")


class SessionRoute:
    """A client session and the upstream session carrying its links."""

    __slots__ = ("client", "links", "owner", "upstream", "upstream_session")

    def __init__(self, client: Session, owner: ClientHandle, upstream: Upstream,
                 upstream_session: Session) -> None:
        self.client = client
        self.owner = owner  # the client connection
        self.upstream = upstream
        self.upstream_session = upstream_session
        self.links: set[LinkRoute] = set()


class LinkRoute:
    """One client link and the upstream link it is carried on."""

    __slots__ = ("answered", "check", "client", "pending", "reattach", "resume_at", "session",
                 "upstream")

    def __init__(self, session: SessionRoute, client: Link, upstream: Link) -> None:
        self.session = session
        self.client = client
        self.upstream = upstream
        self.answered = False  # the client has had our answer (its attach)
        # a sending client's messages checked one by one at the edge (anonymous
        # relay, /management requests): the check, or None
        self.check: Callable[[bytes], None] | None = None
        # deliveries credit allowed but the other side's credit no longer does
        self.pending: deque[Delivery] = deque()
        self.reattach = False  # re-attached, not ended, if the upstream goes (reattach.py)
        self.resume_at: int | None = None  # a stream reader's offset to re-attach from

    # -- attach and detach ----------------------------------------------------

    @staticmethod
    def open(session: SessionRoute, client: Link, *, reattach: bool = False) -> LinkRoute:
        """Attach upstream what the client attached here.  `reattach`: the
        link is to be re-attached after an upstream failure (reattach.py)."""
        route = LinkRoute(session, client, _attach_upstream(session, client))
        route.reattach = reattach
        # a receiving client's last delivery tells a stream reader where to resume
        client.keep_last = reattach and client.is_sender
        client.context = route.upstream.context = route
        session.links.add(route)
        return route

    def reopen(self, session: SessionRoute) -> None:
        """Re-attach upstream, on `session`, a link whose upstream went away
        (`lost`); the client's link stays as it is."""
        self.session = session
        self.upstream = _attach_upstream(session, self.client, self.resume_at)
        self.upstream.context = self
        session.links.add(self)

    def lost(self) -> None:
        """The upstream connection is gone and the link waits to be re-attached:
        nothing goes on until `reopen` and the upstream's answer.  What a
        sending client's upstream had not settled is held to be sent again.  A
        receiving client's unsettled messages are the upstream's to deliver
        again, so only what was sent presettled is still held for it; a
        stream reader resumes past the last offset it keeps."""
        self.disarm()
        self.answered = False
        self.session.links.discard(self)
        client = self.client
        if client.is_sender:  # a receiving client
            # What we hold unsettled, a queue delivers again and a stream is read
            # again from just past the last message kept (the client's outcomes for
            # those it was sent find their originals' link gone:
            # Session._settle_originals passes them by); presettled ones stay.
            self.pending = deque(d for d in self.pending if d.remote_settled)
            last = self.pending[-1].payload if self.pending else client.last_forwarded
            offset = stream_offset(last) if last is not None else None
            if offset is not None:
                self.resume_at = offset + 1
        else:
            held = {id(d) for d in self.pending}
            again = [d for d in client.unsettled.values() if id(d) not in held]
            self.pending = deque(again + list(self.pending))
            if client.usable and client.link_credit:
                client.flow(0)  # no more until the upstream grants it again

    def upstream_answered(self) -> None:
        """The upstream's attach: pass it on, unless it is the first half of a
        refusal (its own terminus null), whose detach follows."""
        answer = self.upstream.remote_attach
        # the upstream's own terminus: the source when it sends, the target when it receives
        own = answer.target if self.upstream.is_sender else answer.source
        if own is None or self.answered:
            return
        client = self.client
        if client.attach_sent and not client.usable:
            return  # the client went first; our detach upstream is on its way
        self.answered = True
        if not client.attach_sent:  # (a re-attach: the client's link was answered before)
            offered = answer.offered_capabilities
            if self.reattach:
                offered = (*(offered or ()), REATTACH)
            self.client.accept(
                source=answer.source if isinstance(answer.source, Source) else None,
                target=answer.target if isinstance(answer.target, Target) else None,
                snd_settle_mode=answer.snd_settle_mode,
                rcv_settle_mode=answer.rcv_settle_mode if self.client.is_sender
                else RcvSettleMode.FIRST,
                # what we take from the client, the upstream takes from us
                max_message_size=answer.max_message_size or 0,
                offered_capabilities=offered,
                properties=answer.properties,
            )
        if self.client.is_sender:
            self.client.available = self.upstream.available
            self.client_credit()  # credit the client gave with its attach
        else:
            self.grant_client()
        self.arm()

    def arm(self) -> None:
        """Let the engine forward the receiving side's deliveries as they come
        (`Link.forward_to`), when nothing is held and nothing is checked here.
        The engine stops forwarding (and hands a delivery over as an event)
        whenever the other side cannot take it; `_carry` re-arms."""
        if self.answered and not self.pending and self.check is None:
            if self.client.is_sender:
                self.upstream.forward_to = self.client
            else:
                self.client.forward_to = self.upstream

    def disarm(self) -> None:
        """No forwarding by the engine: something is held, or the route ends."""
        self.client.forward_to = self.upstream.forward_to = None

    def upstream_detached(self, error: Error | None, closed: bool) -> None:
        """The upstream detached: so does the client's link, with its condition."""
        self._end_client(error, closed)

    def client_detached(self, closed: bool) -> None:
        self.disarm()
        self.session.links.discard(self)
        if not self.upstream.detach_sent:
            self.upstream.detach(closed=closed)

    def forced(self, why: str) -> None:
        """The upstream connection is gone: the client's link ends, said so."""
        self._end_client(amqp_error(Condition.CONNECTION_FORCED, why), closed=True)

    def _end_client(self, error: Error | None, closed: bool) -> None:
        """The client's link ends with `error`: refused if not yet answered
        (a refusal always says why)."""
        self.disarm()
        self.session.links.discard(self)
        client = self.client
        if client.detach_sent:
            return
        if not client.attach_sent:
            client.refuse(error or amqp_error(Condition.NOT_ALLOWED,
                                              "the upstream broker refused the link"))
        else:
            client.detach(error, closed=closed)

    # -- credit ---------------------------------------------------------------

    def client_credit(self) -> None:
        """The client's flow: a receiving client's credit (and drain) goes
        upstream; a sending client's answer to our drain answers the upstream's."""
        client = self.client
        upstream = self.upstream
        if not self.answered:
            # the upstream has not answered our attach: its delivery-count (which
            # our credit counts from) is unknown yet; upstream_answered passes it on
            return
        if client.is_sender:
            self._flush_pending(client)
            credit = max(0, client.link_credit - len(self.pending))
            if credit != upstream.link_credit or client.drain != upstream.drain:
                upstream.flow(credit, drain=client.drain)
            elif client.drain and not self.pending and upstream.link_credit == 0:
                client.drained()
        elif upstream.drain and client.link_credit == 0 and not self.pending:
            upstream.drained()

    def upstream_credit(self) -> None:
        """The upstream's flow: credit for a sending client, or, for a
        receiving one, the upstream's answer to a drain (or a new `available`)."""
        upstream = self.upstream
        client = self.client
        if upstream.is_sender:
            self._flush_pending(upstream)
            if self.answered:
                self.grant_client()
            return
        client.available = upstream.available
        if client.drain and not self.pending and upstream.link_credit == 0:
            client.drained()  # spends the rest and tells the client
        elif client.usable:
            client.flow(client.link_credit)  # carries `available`

    def grant_client(self) -> None:
        """A sending client may send what the upstream still takes (nothing
        until the upstream answered: a re-attach's old link has gone)."""
        if not self.answered:
            return
        client = self.client
        upstream = self.upstream
        credit = max(0, upstream.link_credit - len(self.pending))
        if (credit != client.link_credit or upstream.drain != client.drain) and client.usable:
            client.flow(credit, drain=upstream.drain)

    # -- deliveries -----------------------------------------------------------

    def upstream_message(self, delivery: Delivery) -> None:
        """A delivery for a receiving client."""
        self._carry(delivery, self.client)

    def client_message(self, delivery: Delivery) -> None:
        """A delivery from a sending client."""
        self._carry(delivery, self.upstream)

    def _carry(self, delivery: Delivery, to: Link) -> None:
        """Forward now, or hold behind what is held already (order is kept)."""
        if self.pending or not to.can_send:
            self.pending.append(delivery)
            self.disarm()  # armed only while nothing is held (the edge's 403 comes here)
            return
        to.forward(delivery)
        self.arm()

    def _flush_pending(self, to: Link) -> None:
        """What was held goes on, as far as `to`'s credit allows."""
        pending = self.pending
        if pending:
            while pending and to.can_send:
                to.forward(pending.popleft())
            self.arm()


def _attach_upstream(session: SessionRoute, client: Link,
                     resume_at: int | None = None) -> Link:
    """The upstream link for a client's link: the same name, termini, settle
    modes, capabilities and properties (the client's own attach); a stream
    reader re-attached from `resume_at`."""
    remote = client.remote_attach
    source = remote.source if isinstance(remote.source, Source) else None
    if source is not None and resume_at is not None:
        source = resume_source(source, resume_at)
    upstream = session.upstream_session.attach(
        name=client.name,
        role=remote.role,  # upstream we play the role the client plays with us
        source=source,
        target=remote.target,
        snd_settle_mode=remote.snd_settle_mode,
        # where we receive, we settle first (see the module's docstring); a receiving
        # upstream decides its own mode
        rcv_settle_mode=RcvSettleMode.FIRST if remote.role is Role.RECEIVER
        else remote.rcv_settle_mode,
        max_message_size=remote.max_message_size or 0,
        offered_capabilities=remote.offered_capabilities,
        desired_capabilities=remote.desired_capabilities,
        properties=remote.properties,
    )
    if not upstream.is_sender:
        # what an upstream sends beyond our credit is held, not refused
        upstream.tolerate_excess = True
    return upstream
