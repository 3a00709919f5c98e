"""Which client links ride out an upstream failure, and for how long.

By default a lost upstream connection ends every client link it carried
with amqp:connection:forced, and the client attaches again.  A client that
would rather keep its links asks for `REATTACH`: in a link's
desired-capabilities (that link), or in its open's (every link of the
connection).  The gateway offers the capability back in its answer to each
link it will re-attach, so the client can tell.

What a re-attach means, and why only some links get it:

* A sending client's link stays; its unsettled messages (those the upstream
  had not yet settled when it went) are sent again on the new upstream link,
  so a message may arrive twice but none the client was not told about is
  lost: at least once, as a client reconnecting on its own would do it.
* A receiving client's link stays; what the upstream had sent it and not yet
  had settled is the upstream's to deliver again (it requeues what a lost
  connection held), and the client's outcomes for those go nowhere.
* A dynamic terminus (a temporary queue, Direct Reply-To) ends with the
  connection that made it, `/management`'s request/reply pair is answered
  on the connection that asked, and a stream read from an offset would be
  read again from that offset: those links end with amqp:connection:forced,
  as if the client had not asked.

A link waits for an upstream connection up to `REATTACH_WAIT`, longer than
a new attach waits (a node restarting takes seconds), and ends with
amqp:connection:forced if none comes.  Pure: no sockets, no clock.
"""

from __future__ import annotations

from broker.codec.messaging import Source, Target
from broker.codec.performatives import Attach, Open, Role
from broker.codec.types import Symbol
from broker.gateway.edge_access import MANAGEMENT
from broker.nodes.stream import OFFSET_SPEC

REATTACH = Symbol("amqpws:reattach")
REATTACH_WAIT = 30.0  # seconds a link may wait to be re-attached


def asked(attach: Attach, open_: Open | None) -> bool:
    """The client asked for its link to be re-attached (link or connection)."""
    return REATTACH in (attach.desired_capabilities or ()) or (
        open_ is not None and REATTACH in (open_.desired_capabilities or ()))


def allowed(attach: Attach) -> bool:
    """The link can be re-attached without changing what the client gets
    (see the module's docstring)."""
    # the terminus at the node's end: a receiving client's source, a sending one's target
    terminus = attach.source if attach.role is Role.RECEIVER else attach.target
    if terminus is None and attach.role is Role.SENDER:
        return True  # the anonymous relay: each message says where it goes
    if not isinstance(terminus, Source | Target):
        return False  # none, or a transaction coordinator
    if terminus.dynamic or terminus.address == MANAGEMENT:
        return False
    return not (isinstance(terminus, Source) and terminus.filter and OFFSET_SPEC in terminus.filter)


def reattaches(attach: Attach, open_: Open | None) -> bool:
    """The client asked, and the link allows it."""
    return asked(attach, open_) and allowed(attach)
