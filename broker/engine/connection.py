"""The connection state machine (§2.4) and the one place errors become frames.

Theory of operation.  `receive_data(bytes, now)` feeds a `FrameReader`; each
protocol header or frame moves the machine along:

    HDR ──SASL hdr──> SASL ──outcome ok──> HDR_AMQP ──AMQP hdr──> OPEN_WAIT
     └──AMQP hdr (anonymous allowed)────────────────────────────> OPEN_WAIT
    OPEN_WAIT ──open──> OPENED ──close──> CLOSED
    any ──protocol error──> CLOSE_SENT (discard until the peer's close or a timeout)

Frames on a channel go to that channel's `Session`.  `_on_frame` and
`_on_transfer` (the usual transfer's shortcut from `receive_data`) are the
one error boundary: a link error detaches the
link, a session error ends the session, a connection error closes the
connection, each with the error's condition; anything else is a bug and
closes with `amqp:internal-error` before being re-raised.

With `client=SaslClient(...)` the same machine is the connecting side (the
gateway's upstream connections): it sends the SASL header first, answers the
mechanisms with sasl-init, then sends the AMQP header and its open at once;
it begins sessions (`begin`) and attaches links (`Session.attach`), and the
peer's begin and attach answer them.  From there on, sessions and links are
the same machines in both modes.

The engine never reads a clock: `now` (seconds) comes with every call, and
`tick(now)` returns the next time it needs to be called (heartbeats, idle
timeout, close timeout).
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Mapping
from typing import Any

from broker.codec.performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Open,
    SaslCode,
    SaslMechanisms,
    SaslOutcome,
    Transfer,
    amqp_error,
    error_from,
)
from broker.codec.types import Symbol
from broker.engine.events import ConnectionClosed, ConnectionOpened, Event, LinkDetached
from broker.engine.sasl import ANONYMOUS, CredentialChecker, PasswordTable, SaslClient, SaslServer
from broker.engine.session import NumberPool, Session
from broker.engine.trace import FrameTracer
from broker.errors import (
    AmqpConnectionError,
    AmqpError,
    AmqpLinkError,
    AmqpSessionError,
    Condition,
    FramingError,
    LocalProtocolError,
)
from broker.framing import (
    AMQP_HEADER,
    BARE_HEARTBEATS,
    HEARTBEAT,
    MIN_MAX_FRAME_SIZE,
    NEED_DATA,
    SASL_HEADER,
    Frame,
    FrameReader,
    ProtocolHeader,
    decode_frame_body,
    encode_frame,
    parse_transfer,
)

log = logging.getLogger("broker.engine")

CLOSE_TIMEOUT = 2.0  # seconds to wait for the peer's close after ours


class ConnState(enum.Enum):
    HDR = "HDR"
    SASL = "SASL"
    HDR_AMQP = "HDR_AMQP"
    OPEN_WAIT = "OPEN_WAIT"
    OPENED = "OPENED"
    CLOSE_SENT = "CLOSE_SENT"
    CLOSED = "CLOSED"


@functools.lru_cache(maxsize=16)
def _symbols(names: tuple[str, ...]) -> tuple[Symbol, ...]:
    """One tuple for every connection offering the same capabilities."""
    return tuple(Symbol(name) for name in names)


class Connection:
    """One AMQP connection, the server side unless `client` is given; bytes in, events out."""

    # slots: an idle broker holds one per connection (a dict of >30 attributes is 1.5 KiB)
    __slots__ = (
        "_channels", "channel_max", "client", "close_deadline", "closed_event_sent",
        "container_id", "events", "failure", "handle_max", "handshake_deadline",
        "handshake_timed_out", "hostname", "idle_time_out", "last_received",
        "last_sent", "local_sessions", "max_frame_size", "now", "offered_capabilities",
        "open_sent", "out", "owner", "pending_sessions", "properties", "reader",
        "remote_channel_max", "remote_idle_time_out", "remote_max_frame_size",
        "remote_open", "sasl", "sessions", "state", "touched", "tracer", "user",
    )

    def __init__(
        self,
        *,
        container_id: str,
        users: Mapping[str, str] | None = None,
        allow_anonymous: bool = True,
        credentials: CredentialChecker | None = None,
        max_frame_size: int = 1024 * 1024,
        channel_max: int = 0xFFFF,
        handle_max: int = 0xFFFFFFFF,
        idle_time_out: float = 0.0,
        handshake_timeout: float = 0.0,
        offered_capabilities: tuple[str, ...] = (),
        properties: dict[object, object] | None = None,
        now: float = 0.0,
        trace: str | None = None,
        client: SaslClient | None = None,
        hostname: str | None = None,
    ) -> None:
        self.container_id = container_id
        # `trace`: a name to log every frame under (--trace-frames); None: no cost
        self.tracer = FrameTracer(trace) if trace is not None else None
        self.sasl = SaslServer(credentials or PasswordTable(users or {}, allow_anonymous))
        self.max_frame_size = max_frame_size
        self.channel_max = channel_max  # the peer may use channels 0..channel_max
        self.handle_max = handle_max  # and, in each session, handles 0..handle_max
        self.idle_time_out = idle_time_out
        # from the first byte to the peer's open, whatever trickles in (0: no limit)
        self.handshake_deadline = now + handshake_timeout if handshake_timeout else None
        self.handshake_timed_out = False
        self._channels = NumberPool()
        self.offered_capabilities = _symbols(offered_capabilities)
        self.properties = properties
        self.state = ConnState.HDR
        self.reader = FrameReader(max_frame_size)
        self.out = bytearray()
        self.events: list[Event] = []  # a deque would cost 0.7 KiB per connection
        self.sessions: dict[int, Session] = {}  # by the peer's channel
        self.local_sessions: dict[int, Session] = {}  # by our channel
        # sessions with dispositions to flush; made on the first (an empty set is
        # 216 bytes, and an idle connection never needs one)
        self.pending_sessions: set[Session] | None = None
        # other connections our input wrote to (forwarded deliveries and their
        # settlements, see Link.forward_to), for the owner to wake; made on the first
        self.touched: set[Connection] | None = None
        self.owner: Any = None  # the driver's object for this connection (the gateway's)
        self.remote_open: Open | None = None
        self.remote_max_frame_size = MIN_MAX_FRAME_SIZE
        self.remote_channel_max = 0xFFFF
        self.remote_idle_time_out = 0.0
        self.user: str | None = None
        self.now = now
        self.last_received = now
        self.last_sent = now
        self.close_deadline: float | None = None
        self.closed_event_sent = False
        self.open_sent = False
        # the connecting side: our SASL header goes first, and `hostname` in our open
        self.client = client
        self.hostname = hostname
        self.failure: Error | None = None  # why a client connection never opened
        if client is not None:
            self.out += SASL_HEADER

    # -- the sans-io interface ------------------------------------------------

    @property
    def done(self) -> bool:
        """Nothing more will happen: flush `data_to_send()` and close the transport."""
        return self.state is ConnState.CLOSED

    def receive_data(self, data: bytes | memoryview, now: float) -> bool:
        """Feed bytes read from the peer.  True when they were one or two bare
        heartbeats between frames: only the idle timer heard of them, so there
        is no event, no output and no earlier deadline, and the driver may skip
        its tick and write (nearly all an idle connection receives; two, when
        the driver let the kernel hold one back, see socketpump.py)."""
        self.now = now
        if self.state is ConnState.CLOSED:
            return False
        if self.tracer is not None:
            self.tracer.incoming.feed(data)
        if not data:
            self._lost("connection lost")
            return False
        self.last_received = now
        if data in BARE_HEARTBEATS and self.state is ConnState.OPENED and \
                not self.reader.buffered:
            # An empty frame between frames (§2.4.5), nearly all an idle
            # connection receives: only the idle timer above hears of it.
            return not self.has_output  # (output waiting: the driver must still write)
        reader = self.reader
        reader.feed(data)
        while not self.done:
            state = self.state
            if state is ConnState.OPENED:
                # the usual transfer whole in the read: straight to its session,
                # no Frame and no body copied between (§2.7.5 shapes; anything
                # else, a session not there or ended included, goes below)
                hot = reader.take_transfer()
                if hot is not None:
                    session = self.sessions.get(hot[0])
                    if session is not None and not session.end_sent:
                        self._on_transfer(session, hot[1], hot[2])
                        continue
                    reader.untake()
            try:
                item = reader.next()
            except FramingError as exc:
                if self.state is ConnState.SASL:  # e.g. an oversized SASL frame
                    self.write_frame(0, SaslOutcome(code=SaslCode.SYS), ftype=1)
                self._connection_error(exc)
                self._finish()  # the byte stream is unusable; no close will follow
                return False
            if item is NEED_DATA:
                return False
            if isinstance(item, ProtocolHeader):
                self._on_header(item)
                continue
            frame: Frame = item  # type: ignore[assignment]
            if state is ConnState.OPENED and frame.type == 0:
                # the same for one that came in more than one read
                fast = parse_transfer(frame.body)
                if fast is not None:
                    session = self.sessions.get(frame.channel)
                    if session is not None and not session.end_sent:
                        self._on_transfer(session, fast[0], fast[1])
                        continue
            self._on_frame(frame)
        return False

    def touch(self, other: Connection) -> None:
        """Our input wrote frames to `other` (see `touched`)."""
        touched = self.touched
        if touched is None:
            self.touched = {other}
        else:
            touched.add(other)

    def take_touched(self) -> set[Connection]:
        """The connections our input wrote to since the last call."""
        touched, self.touched = self.touched, None
        return touched or set()

    def next_event(self) -> Event | None:
        return self.events.pop(0) if self.events else None

    def take_events(self) -> list[Event]:
        """Every event so far, oldest first; those emitted meanwhile go to a new list."""
        events = self.events
        self.events = []
        return events

    @property
    def has_output(self) -> bool:
        """Frames are waiting for `data_to_send` (written, or dispositions to flush)."""
        return bool(self.out) or bool(self.pending_sessions)

    def data_to_send(self) -> bytes | bytearray:
        """Everything written since the last call.  The buffer itself is handed
        over (a new one takes its place), so output is never copied here: the
        caller owns it."""
        self._flush_dispositions()
        if not self.out:
            return b""
        data, self.out = self.out, bytearray()
        self.last_sent = self.now
        if self.tracer is not None:
            self.tracer.outgoing.feed(data)
        return data

    def tick(self, now: float) -> float | None:
        """Run timers; return when to be called next (None: no timer)."""
        self.now = now
        deadlines = []
        if self.handshake_deadline is not None and self.state in _HANDSHAKE_STATES:
            if now >= self.handshake_deadline:
                log.debug("handshake not completed in time")
                self.handshake_timed_out = True
                self.close(amqp_error(Condition.RESOURCE_LIMIT_EXCEEDED,
                                      "the handshake did not complete in time"))
                return self.close_deadline
            deadlines.append(self.handshake_deadline)
        if self.close_deadline is not None:
            if now >= self.close_deadline:
                self._lost("no close from the peer after ours")
                return None
            deadlines.append(self.close_deadline)
        if self.idle_time_out and self.state not in (ConnState.CLOSE_SENT, ConnState.CLOSED):
            # also before open: a peer stalling the handshake must not hold us forever
            limit = self.last_received + self.idle_time_out
            if now >= limit:
                log.info("closing idle connection (silent for %.1f s)", now - self.last_received)
                self.close(amqp_error(Condition.RESOURCE_LIMIT_EXCEEDED, "idle-time-out exceeded"))
                return self.close_deadline
            deadlines.append(limit)
        if self.state is ConnState.OPENED and self.remote_idle_time_out:
            interval = self.remote_idle_time_out / 2
            due = self.last_sent + interval
            if now >= due:
                if not self.out:  # pending output is traffic enough once flushed
                    self.out += HEARTBEAT
                self.last_sent = now
                due = now + interval
            deadlines.append(due)
        return min(deadlines) if deadlines else None

    def close(self, error: Error | None = None) -> None:
        """Close the connection (locally initiated), e.g. `amqp:connection:forced` on shutdown."""
        if self.state in (ConnState.CLOSE_SENT, ConnState.CLOSED):
            return
        if self.state is not ConnState.OPENED:
            if self.state is ConnState.OPEN_WAIT and not self.open_sent:
                self._send_open()
            elif not self.open_sent:
                self._finish()
                return
        self._drop_all_links(error)
        self._flush_dispositions()  # nothing may follow our close
        self.write_frame(0, Close(error=error))
        self.state = ConnState.CLOSE_SENT
        self.close_deadline = self.now + CLOSE_TIMEOUT
        self.emit(ConnectionClosed(error, abrupt=error is not None))

    # -- used by sessions and links --------------------------------------------

    def emit(self, event: Event) -> None:
        if isinstance(event, ConnectionClosed):
            if self.closed_event_sent:
                return
            self.closed_event_sent = True
        self.events.append(event)

    def write_frame(self, channel: int, performative: object, ftype: int = 0) -> None:
        encode_frame(self.out, channel, performative, ftype=ftype)

    def _flush_dispositions(self) -> None:
        if self.pending_sessions:
            for session in self.pending_sessions:
                session.flush_dispositions()
            self.pending_sessions.clear()

    # -- protocol headers and SASL ---------------------------------------------

    def _on_header(self, header: ProtocolHeader) -> None:
        raw = header.raw
        if self.client is not None:
            self._on_client_header(raw)
            return
        if self.state is ConnState.HDR and raw == SASL_HEADER:
            self.out += SASL_HEADER
            self.write_frame(0, self.sasl.mechanisms(), ftype=1)
            self.state = ConnState.SASL
        elif self.state is ConnState.HDR and raw == AMQP_HEADER and \
                ANONYMOUS in self.sasl.offered:
            # no SASL layer at all: the same as SASL ANONYMOUS (§5.3.2)
            self.out += AMQP_HEADER
            self.user = self.sasl.checker.anonymous()
            self.state = ConnState.OPEN_WAIT
        elif self.state is ConnState.HDR_AMQP and raw == AMQP_HEADER:
            self.out += AMQP_HEADER
            self.state = ConnState.OPEN_WAIT
        else:
            # §2.2: answer with the header we would accept, then close the socket.
            expected = AMQP_HEADER if self.state is ConnState.HDR_AMQP else SASL_HEADER
            log.info("refusing protocol header %r", raw)
            self.out += expected
            self._finish()

    def _on_client_header(self, raw: bytes) -> None:
        if self.state is ConnState.HDR and raw == SASL_HEADER:
            self.state = ConnState.SASL  # the mechanisms come next
        elif raw == AMQP_HEADER and self.state is ConnState.HDR_AMQP:
            self.state = ConnState.OPEN_WAIT  # our open is out: the peer's comes next
        elif raw == AMQP_HEADER and self.state is ConnState.CLOSE_SENT:
            pass  # we closed before the peer's header came: its close follows
        else:
            self._fail(f"the server answered with protocol header {raw!r}")

    def _on_client_sasl(self, body: object) -> None:
        assert self.client is not None
        if isinstance(body, SaslMechanisms):
            init = self.client.init(body)
            if init is None:
                self._fail(self.client.reason)
                return
            self.write_frame(0, init, ftype=1)
        elif isinstance(body, SaslOutcome):
            if not self.client.outcome(body):
                self._fail(self.client.reason, Condition.UNAUTHORIZED_ACCESS)
                return
            self.user = self.client.user
            self.out += AMQP_HEADER
            self._send_open()
            self.state = ConnState.HDR_AMQP
            self.reader.expect_header()
        else:  # a challenge: PLAIN and ANONYMOUS have none
            self._fail(f"unexpected SASL frame {type(body).__name__}")

    def _fail(self, why: str, condition: Condition = Condition.NOT_ALLOWED) -> None:
        """A client connection that cannot open: `failure` says why, and the
        connection ends with it as the error of its ConnectionClosed."""
        log.debug("connection to the server failed: %s", why)  # the gateway says why, once
        self.failure = amqp_error(condition, why)
        self._finish()

    def _on_sasl_frame(self, frame: Frame) -> None:
        if frame.type != 1:
            raise FramingError("AMQP frame received during SASL negotiation")
        body, _ = decode_frame_body(frame.body)
        if self.client is not None:
            self._on_client_sasl(body)
            return
        outcome: SaslOutcome = self.sasl.receive(body)
        self.write_frame(0, outcome, ftype=1)
        if outcome.code == 0:
            self.user = self.sasl.user
            self.state = ConnState.HDR_AMQP
            self.reader.expect_header()
        else:
            log.debug("SASL authentication failed: %s", self.sasl.reason)
            self._finish()

    # -- frames ---------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        try:
            if self.state is ConnState.SASL:
                self._on_sasl_frame(frame)
            else:
                self._dispatch_frame(frame)
        except AmqpConnectionError as exc:  # DecodeError included
            self._connection_error(exc)
        except Exception:
            # close first, so the peer hears of it; the driver logs the traceback
            self.close(amqp_error(Condition.INTERNAL_ERROR, "internal error"))
            raise

    def _dispatch_frame(self, frame: Frame) -> None:
        if not frame.body:
            return  # heartbeat
        if frame.type != 0:
            raise FramingError(f"frame of type {frame.type} after SASL")
        performative, payload = decode_frame_body(frame.body)
        state = self.state
        if state is ConnState.CLOSE_SENT:
            if isinstance(performative, Close):
                self._finish()
            return
        if state is ConnState.OPEN_WAIT:
            if not isinstance(performative, Open):
                raise AmqpConnectionError(f"expected open, got {type(performative).__name__}",
                                          condition=Condition.ILLEGAL_STATE)
            self._on_open(performative)
            return
        if isinstance(performative, Open):
            raise AmqpConnectionError("second open frame", condition=Condition.ILLEGAL_STATE)
        if isinstance(performative, Close):
            self._on_close(performative)
            return
        if isinstance(performative, Begin):
            self._on_begin(frame.channel, performative)
            return
        if not isinstance(performative, _SESSION_PERFORMATIVES):
            raise AmqpConnectionError(f"unexpected frame body {type(performative).__name__}",
                                      condition=Condition.DECODE_ERROR)
        session = self.sessions.get(frame.channel)
        if session is None:
            raise AmqpConnectionError(f"frame on channel {frame.channel} with no session",
                                      condition=Condition.NOT_FOUND)
        if session.end_sent:
            if isinstance(performative, End):
                self._remove_session(session)
            return
        try:
            if isinstance(performative, Transfer):
                self._on_transfer(session, performative, payload)
                return
            elif isinstance(performative, Flow):
                session.on_flow(performative)
            elif isinstance(performative, Disposition):
                session.on_disposition(performative)
            elif isinstance(performative, Attach):
                session.on_attach(performative)
            elif isinstance(performative, Detach):
                session.on_detach(performative)
            else:
                session.on_end(performative)
                self._remove_session(session)
        except AmqpLinkError as exc:
            self._link_error(session, getattr(performative, "handle", None), exc)
        except AmqpSessionError as exc:
            log.info("ending session %d: %s", session.channel, exc.description)
            session.end(error_from(exc))

    def _link_error(self, session: Session, handle: int | None, exc: AmqpLinkError) -> None:
        link = session.remote_links.get(handle) if handle is not None else None
        if link is None:  # no link to detach: the session is the smallest scope
            log.info("ending session %d: %s", session.channel, exc.description)
            session.end(error_from(exc))
            return
        log.info("detaching link %r: %s", link.name, exc.description)
        err = error_from(exc)
        if not link.detach_sent:
            self.emit(LinkDetached(link, err, True))
        link.detach(err, closed=True)

    def _on_transfer(self, session: Session, transfer: object, payload: bytes) -> None:
        """Transfers share the error handling of every session frame: called
        from `receive_data` for the usual transfer, so it is an error boundary
        as `_on_frame` is."""
        try:
            session.on_transfer(transfer, payload)  # type: ignore[arg-type]
        except AmqpLinkError as exc:
            self._link_error(session, transfer.handle, exc)  # type: ignore[attr-defined]
        except AmqpSessionError as exc:
            log.info("ending session %d: %s", session.channel, exc.description)
            session.end(error_from(exc))
        except AmqpConnectionError as exc:
            self._connection_error(exc)
        except Exception:
            self.close(amqp_error(Condition.INTERNAL_ERROR, "internal error"))
            raise

    def _on_open(self, open_: Open) -> None:
        self.remote_open = open_
        if open_.max_frame_size < MIN_MAX_FRAME_SIZE:
            # close() sends our open before the close (§2.4.5): not here too
            raise AmqpConnectionError(
                f"max-frame-size {open_.max_frame_size} is below the minimum of 512",
                condition=Condition.INVALID_FIELD)
        self.remote_max_frame_size = min(open_.max_frame_size, 0xFFFFFFFF)
        self.remote_channel_max = open_.channel_max
        self.remote_idle_time_out = (open_.idle_time_out or 0) / 1000.0
        if not self.open_sent:
            self._send_open()
        self.state = ConnState.OPENED
        self.emit(ConnectionOpened(open_.container_id, open_.hostname, self.user))

    def _send_open(self) -> None:
        self.open_sent = True
        self.write_frame(0, Open(
            container_id=self.container_id,
            hostname=self.hostname,
            max_frame_size=self.max_frame_size,
            channel_max=self.channel_max,
            # §2.4.5: advertise half our real limit so the peer has slack
            idle_time_out=int(self.idle_time_out * 500) if self.idle_time_out else None,
            offered_capabilities=self.offered_capabilities or None,
            properties=self.properties,
        ))

    def _on_close(self, close: Close) -> None:
        if close.error is not None:
            log.info("peer closed with error %s: %s", close.error.condition, close.error.description)
        self._drop_all_links(None)
        self.emit(ConnectionClosed(close.error, abrupt=False))
        self._flush_dispositions()  # nothing may follow our close
        self.write_frame(0, Close())
        self._finish()

    def begin(self) -> Session:
        """Begin a session of ours (the client side); frames may go on it at
        once, transfers wait for the peer's answer (its window)."""
        if not self.open_sent or self.state not in (ConnState.HDR_AMQP, ConnState.OPEN_WAIT,
                                                    ConnState.OPENED):
            raise LocalProtocolError("a session needs an open connection")
        local = self._channels.take()
        session = Session(self, local, None, None, handle_max=self.handle_max)
        self.local_sessions[local] = session
        self.write_frame(local, Begin(
            next_outgoing_id=session.next_outgoing_id,
            incoming_window=session.incoming_window,
            outgoing_window=session.outgoing_window,
            handle_max=session.handle_max,
        ))
        return session

    def _on_begin(self, channel: int, begin: Begin) -> None:
        if begin.remote_channel is not None:
            mine = self.local_sessions.get(begin.remote_channel)
            if mine is None or mine.remote_channel != -1 or channel in self.sessions:
                raise AmqpConnectionError(
                    f"begin answers channel {begin.remote_channel}, where we began no session",
                    condition=Condition.NOT_ALLOWED)
            mine.on_answer(channel, begin)
            self.sessions[channel] = mine
            return
        if channel in self.sessions:
            raise AmqpConnectionError(f"channel {channel} already has a session",
                                      condition=Condition.NOT_ALLOWED)
        if channel > self.channel_max:
            # §2.7.1: a channel outside the range we announced is a framing error
            raise FramingError(f"channel {channel} exceeds channel-max {self.channel_max}")
        if self._channels.peek() > self.remote_channel_max:
            # §2.7.1: the peer's channel-max bounds the channels we may use
            raise AmqpConnectionError(
                f"no channel left within the peer's channel-max {self.remote_channel_max}",
                condition=Condition.NOT_ALLOWED)
        local = self._channels.take()
        session = Session(self, local, channel, begin, handle_max=self.handle_max)
        self.sessions[channel] = session
        self.local_sessions[local] = session
        self.write_frame(local, Begin(
            remote_channel=channel,
            next_outgoing_id=session.next_outgoing_id,
            incoming_window=session.incoming_window,
            outgoing_window=session.outgoing_window,
            handle_max=session.handle_max,
        ))
        log.debug("%s: session begun on channel %d (ours %d)", self.container_id, channel, local)

    def _remove_session(self, session: Session) -> None:
        log.debug("%s: session on channel %d ended", self.container_id, session.remote_channel)
        self.sessions.pop(session.remote_channel, None)
        if self.local_sessions.get(session.channel) is session:
            del self.local_sessions[session.channel]
            self._channels.give(session.channel)
        if self.pending_sessions:
            self.pending_sessions.discard(session)

    # -- endings --------------------------------------------------------------

    def _connection_error(self, exc: AmqpError) -> None:
        log.info("closing connection: %s %s", exc.error_condition.value, exc.description)
        if self.state in (ConnState.HDR, ConnState.SASL, ConnState.HDR_AMQP):
            self._finish()
            return
        self.close(error_from(exc))

    def _lost(self, why: str) -> None:
        log.debug("%s", why)
        self._finish()

    def _finish(self) -> None:
        """We are done; report the end if nobody has yet, and stop reading."""
        if self.state is not ConnState.CLOSED:
            self._drop_all_links(None)
            self.emit(ConnectionClosed(self.failure, abrupt=True))
            self.state = ConnState.CLOSED
            self.close_deadline = None

    def _drop_all_links(self, error: Error | None) -> None:
        """Every link ends with the connection (the container is told per link)."""
        for session in list(self.local_sessions.values()):
            for link in list(session.links.values()):
                session._drop_link(link, error)


_SESSION_PERFORMATIVES = (Transfer, Flow, Disposition, Attach, Detach, End)
_HANDSHAKE_STATES = frozenset({ConnState.HDR, ConnState.SASL, ConnState.HDR_AMQP,
                               ConnState.OPEN_WAIT})
