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
* A stream reader (known by the `x-stream-offset` its deliveries carry)
  resumes just past the last message it keeps: the new attach asks for that
  offset, whatever spec the client gave, so nothing is read twice and
  nothing appended meanwhile is missed.  What the gateway held for it
  unsettled is dropped and read again, as a queue would deliver it again,
  so a queue's message that carries the annotation (copied from a stream)
  is not delivered twice either; presettled ones are kept.  One that had
  been sent nothing yet attaches again with its own spec (from `next`, it
  misses what was appended while it waited).
* A dynamic terminus (a temporary queue, Direct Reply-To) ends with the
  connection that made it, and `/management`'s request/reply pair is
  answered on the connection that asked: those links end with
  amqp:connection:forced, as if the client had not asked.

A link waits for an upstream connection up to `Config.reattach_wait` (30 s
unless set; `--reattach-wait`), longer than a new attach waits (a node
restarting takes seconds), and ends with amqp:connection:forced if none
comes.  Pure: no sockets, no clock.
"""

from __future__ import annotations

import dataclasses

from broker.codec.messaging import Message, Source, Target
from broker.codec.performatives import Attach, Open, Role
from broker.codec.types import Described, Symbol, ULong
from broker.errors import AmqpError
from broker.gateway.edge_access import MANAGEMENT
from broker.nodes.stream import OFFSET_SPEC

REATTACH = Symbol("amqpws:reattach")
X_STREAM_OFFSET = Symbol("x-stream-offset")


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
    return not (terminus.dynamic or terminus.address == MANAGEMENT)


def reattaches(attach: Attach, open_: Open | None) -> bool:
    """The client asked, and the link allows it."""
    return asked(attach, open_) and allowed(attach)


def stream_offset(payload: bytes) -> int | None:
    """The `x-stream-offset` a stream's delivery carries, or None (a queue's)."""
    try:
        annotations = Message.parse(payload).message_annotations
    except AmqpError:
        return None  # not ours to judge: the client gets the bytes as they came
    offset = annotations.get(X_STREAM_OFFSET) if annotations else None
    return offset if isinstance(offset, int) and not isinstance(offset, bool) else None


def resume_source(source: Source, offset: int) -> Source:
    """`source` read from `offset` on: its offset spec replaced (under any
    key: a broker knows a filter by its descriptor), its other filters kept."""
    filters = {key: value for key, value in (source.filter or {}).items()
               if not (isinstance(value, Described) and value.descriptor == OFFSET_SPEC)}
    filters[OFFSET_SPEC] = Described(OFFSET_SPEC, ULong(offset))
    return dataclasses.replace(source, filter=filters)
