"""One fuzz iteration: the whole engine and container fed one hostile input,
with a well-behaved bystander on the same container.

Theory of operation.  A `World` is a `Container` (fake clocks, no sockets)
with one *bystander* connection that stays for the world's life: it has a
publisher and a consumer on the queue `bystander.live` and a publisher on
`bystander.rest`, which holds five messages nobody reads.  `World.run(data)`
opens a fresh connection, sends it a valid prelude (protocol header(s),
open, begin on channel 0), then the fuzz bytes in the chunking the mode
byte chooses, runs its timers, the container's housekeeping, and finally
drops it (EOF).  Then it checks:

- nothing raised out of `receive_data`, `data_to_send`, `tick`,
  `connection_lost` or `housekeeping` (any exception is a bug: the engine
  closes with amqp:internal-error and re-raises), and no log record failed
  to format;
- everything the broker wrote on the fuzzed connection parses, nothing
  follows its `close`, and every `detach`/`end`/`close` error condition is a
  spec symbol from `errors.Condition` (or a `broker:` one), never
  `amqp:internal-error`;
- the dropped connection left nothing behind: not in the container's set,
  no publisher, no consumer on any node;
- the bystander still round-trips a message (published, accepted, delivered
  once, settled), got nothing but transfers, flows and dispositions, still
  has its session and three links, and `bystander.rest` holds the very same
  five entries with the same bytes.

Input layout: byte 0 is the mode, byte 1 the world variant, the rest the
stream that follows the prelude.

    mode bits 0-1  prelude: 0,1 anonymous AMQP header + open + begin;
                   2 SASL PLAIN + AMQP header + open + begin; 3 SASL header only
    mode bits 2-4  chunking: 0 whole (the container sees the events only after
                   the whole input, so a pipelined transfer finds no credit yet);
                   1-3 frame by frame; 4 byte by byte; 5 3-byte; 6 61-byte;
                   7 cycling 1/5/17/64/300
    mode bit 5     jump the clock past the handshake and close timeouts, tick again
    mode bit 6     a bystander round trip in the middle of the stream
    mode bit 7     the open asks for small limits (max-frame-size 512, channel-max 1,
                   idle-time-out 1 s) and the begin for an incoming window of 5

A world is reused for many inputs (a fresh one costs as much as a hundred
iterations) and replaced every `RESET_EVERY` inputs, when it has grown, or
after a finding; a finding is replayed on a fresh world to tell whether it
needs the state earlier inputs left.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: engine.peer

from engine.peer import Peer, deliveries, frame

from broker.codec.messaging import Accepted, Message
from broker.codec.performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Flow,
    Open,
    SaslInit,
    SaslOutcome,
    Transfer,
)
from broker.codec.types import Symbol
from broker.config import Config
from broker.container import Container
from broker.errors import AmqpError, Condition
from broker.framing import (
    AMQP_HEADER,
    NEED_DATA,
    SASL_HEADER,
    FrameReader,
    ProtocolHeader,
    decode_frame_body,
)

from .mutate import split_frames

BYSTANDER_LIVE = "bystander.live"
BYSTANDER_REST = "bystander.rest"
REST_MESSAGES = 5
RESET_EVERY = 400
MAX_NODES = 300
MAX_HELD_BYTES = 32 * 1024 * 1024
NOW = 1_700_000_000.0
CLOCK_JUMP = 13.0  # past the 10 s handshake timeout and the 2 s close timeout

ALLOWED_CONDITIONS = frozenset(c.value for c in Condition) - {Condition.INTERNAL_ERROR.value}

# World variants (input byte 1): the defaults, tight limits with a memory
# alarm that a flood trips, and short timeouts with small drop-head queues.
VARIANTS: tuple[dict[str, Any], ...] = (
    {},
    {"max_frame_size": 4096, "max_message_size": 8192, "channel_max": 3, "handle_max": 7,
     "memory_high_watermark": 2_000_000.0, "queue_max_length": 100},
    {"idle_time_out": 5.0, "handshake_timeout": 2.0, "queue_overflow": "drop-head",
     "queue_max_length": 5, "max_connections_per_user": 3, "rabbitmq_compat": True},
)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Problem:
    """One violated expectation.  `signature` groups the same bug found many times."""

    kind: str
    signature: str
    detail: str


@dataclass
class Result:
    problems: list[Problem] = field(default_factory=list)
    outcome: tuple[object, ...] = ()  # what the broker answered, coarsely (for the corpus)


def prelude(mode: int) -> bytes:
    """The valid start of the fuzzed connection, as the mode byte chooses it."""
    kind = mode & 3
    small = bool(mode & 0x80)
    if kind == 3:
        return SASL_HEADER
    out = b""
    if kind == 2:
        out += SASL_HEADER + frame(SaslInit(mechanism=Symbol("PLAIN"),
                                             initial_response=b"\x00guest\x00guest"), ftype=1)
    open_ = Open(container_id="fuzz", max_frame_size=512, channel_max=1, idle_time_out=1000) \
        if small else Open(container_id="fuzz")
    begin = Begin(next_outgoing_id=0, incoming_window=5 if small else 2048,
                  outgoing_window=2048)
    return out + AMQP_HEADER + frame(open_) + frame(begin)


def chunks(stream: bytes, mode: int) -> list[bytes]:
    k = (mode >> 2) & 7
    if k == 0 or not stream:
        return [stream] if stream else []
    if k <= 3:
        return split_frames(stream)
    size = {4: 1 if len(stream) <= 4096 else 13, 5: 3, 6: 61}.get(k)
    if size is not None:
        return [stream[i : i + size] for i in range(0, len(stream), size)]
    sizes = (1, 5, 17, 64, 300)
    out, pos, i = [], 0, 0
    while pos < len(stream):
        out.append(stream[pos : pos + sizes[i % 5]])
        pos += sizes[i % 5]
        i += 1
    return out


_PLUMBING = frozenset({"write_frame", "write", "emit"})  # helpers every caller goes through


def _broker_frames(tb: traceback.StackSummary) -> str:
    """Where the bug is: the innermost frame in the broker's own code and, when
    that is in the codec or framing, the innermost one above them (the caller
    that handed over the bad value).  Functions, not line numbers, so that a
    signature survives edits elsewhere in the file."""
    ours = [fs for fs in tb if "/broker/" in fs.filename and "/tests/" not in fs.filename]
    if not ours:
        last = tb[-1] if tb else None
        return f"{last.filename} in {last.name}" if last else "?"

    def name(fs: traceback.FrameSummary) -> str:
        return f"broker/{fs.filename.rsplit('/broker/', 1)[1]} in {fs.name}"

    where = name(ours[-1])
    if "/codec/" in ours[-1].filename or ours[-1].filename.endswith("framing.py"):
        callers = [fs for fs in ours if "/codec/" not in fs.filename
                   and not fs.filename.endswith("framing.py") and fs.name not in _PLUMBING]
        if callers:
            where += f" (via {name(callers[-1])})"
    return where


def exception_problem(where: str, exc: BaseException) -> Problem:
    tb = traceback.extract_tb(exc.__traceback__)
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Problem("exception", f"{type(exc).__name__} at {_broker_frames(tb)}",
                   f"raised from {where}:\n{text}")


class _LogCheck(logging.Handler):
    """Formats every broker log record, so that a record that cannot be
    formatted (a bad format string or argument) is a finding, and keeps the
    output quiet."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.problems: list[Problem] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.getMessage()
        except Exception as exc:  # noqa: BLE001 - any exception is a finding
            self.problems.append(Problem("log-record", f"log record at {record.pathname}:"
                                         f"{record.lineno}", f"{exc!r}: {record.msg!r}"))

    def handleError(self, record: logging.LogRecord) -> None:
        self.problems.append(Problem("log-record", f"log handler error at {record.pathname}:"
                                     f"{record.lineno}", repr(record.msg)))


LOG_CHECK = _LogCheck()


def install_log_check() -> None:
    logger = logging.getLogger("broker")
    logger.handlers[:] = [LOG_CHECK]
    logger.setLevel(logging.INFO)
    logger.propagate = False


class World:
    def __init__(self, variant: int) -> None:
        self.variant = variant
        self.clock = Clock(0.0)
        self.wall = Clock(NOW)
        config = Config(port=None, ws_port=None, queues=(BYSTANDER_LIVE, BYSTANDER_REST),
                        **VARIANTS[variant])
        self.container = Container(config, clock=self.clock, wall_clock=self.wall)
        self.runs = 0
        self.sent = 0
        self.delivered = 0
        self.bystander = Peer(self.container.connection_made("bystander:1", "tcp", _no_wake))
        self._set_up_bystander()

    # -- the bystander -----------------------------------------------------------

    def _set_up_bystander(self) -> None:
        p = self.bystander
        out = p.connect(container_id="bystander")
        assert [type(o.performative) for o in out] == [bytes, Open], out
        p.begin()
        live, rest = f"/queues/{BYSTANDER_LIVE}", f"/queues/{BYSTANDER_REST}"
        p.attach_sender(0, live, name="by-pub")
        p.attach_receiver(1, live, name="by-sub")
        p.flow(1, link_credit=1000)
        p.attach_sender(2, rest, name="by-rest")
        for i in range(REST_MESSAGES):
            p.send(2, Message.create(b"rest-%d" % i))
        self.credit = 1000
        self._clear()
        queue = self.container.registry.get(BYSTANDER_REST)
        assert queue is not None and queue.depth == REST_MESSAGES
        self.rest_queue = queue
        self.live_queue = self.container.registry.get(BYSTANDER_LIVE)
        self.rest_entries = [(e, e.message.payload) for e in queue.ready]
        handle = self.bystander.conn
        self.session = handle.conn.sessions[0]
        self.links = dict(self.session.links)
        assert len(self.links) == 3

    def _clear(self) -> None:
        p = self.bystander
        p.received.clear()
        p.raw.clear()

    def bystander_check(self, when: str) -> list[Problem]:
        """The bystander round-trips one message; its state is as it was."""
        problems: list[Problem] = []

        def bad(what: str) -> None:
            problems.append(Problem("bystander", f"bystander: {what.split(':')[0]}",
                                    f"{when}: {what}"))

        p = self.bystander
        c = self.container
        handle = p.conn
        try:
            if handle.done or handle not in c.connections:
                bad("connection gone")
                return problems
            session = handle.conn.sessions.get(0)
            if session is not self.session or dict(session.links) != self.links:
                bad(f"session or links changed: {session!r}")
                return problems
            pub = session.remote_links.get(0)
            out = []
            can_publish = pub is not None and pub.link_credit > 0
            if not can_publish and not c.memory_alarm:
                bad("publisher has no credit and there is no memory alarm")
            if can_publish:
                self.sent += 1
                body = b"by-%d" % self.sent
                did = p.next_delivery_id.get(0, 0)
                out += p.send(0, Message.create(body))
                states = [d.state for d in (o.performative for o in out)
                          if isinstance(d, Disposition) and d.first <= did <= (d.last or d.first)]
                if states != [Accepted()]:
                    bad(f"publish not accepted once: {states!r}")
                got = deliveries(out)
                bodies = [Message.parse(payload).body[0].value for _, payload in got]  # type: ignore[attr-defined]
                if bodies != [body]:
                    bad(f"consumer got {bodies!r}, expected [{body!r}]")
                for t, _ in got:
                    out += p.disposition(t.delivery_id, state=Accepted())
                self.delivered += len(got)
                self.credit -= len(got)
                if self.credit < 200:
                    out += p.flow(1, link_credit=1000)
                    self.credit = 1000
            for o in out:
                if not isinstance(o.performative, (Transfer, Flow, Disposition)):
                    bad(f"unexpected {type(o.performative).__name__}: {o.performative!r}")
            live = self.live_queue
            if c.registry.get(BYSTANDER_LIVE) is not live or live is None:
                bad("queue bystander.live replaced or deleted")
            elif (live.depth, live.unacked, len(live.consumers)) != (0, 0, 1):
                bad(f"bystander.live: depth {live.depth}, unacked {live.unacked}, "
                    f"{len(live.consumers)} consumers")
            rest = self.rest_queue
            if c.registry.get(BYSTANDER_REST) is not rest:
                bad("queue bystander.rest replaced or deleted")
            elif [(e, e.message.payload) for e in rest.ready] != self.rest_entries \
                    or rest.consumers or rest.unacked:
                bad(f"bystander.rest changed: {list(rest.ready)!r}")
        except Exception as exc:  # noqa: BLE001 - the bystander's own traffic raised: also a bug
            problems.append(exception_problem(f"the bystander ({when})", exc))
        finally:
            self._clear()
        return problems

    # -- one fuzz input --------------------------------------------------------------

    @property
    def worn(self) -> bool:
        c = self.container
        return self.runs >= RESET_EVERY or len(c.registry.nodes) > MAX_NODES or \
            c.registry.held_bytes > MAX_HELD_BYTES

    def run(self, data: bytes) -> Result:
        self.runs += 1
        result = Result()
        problems = result.problems
        mode = data[0] if data else 0
        stream = data[2:]
        c = self.container
        LOG_CHECK.problems = problems
        wrote = bytearray()
        handle = c.connection_made(f"fuzz:{self.runs}", "tcp", _no_wake)
        pieces = [prelude(mode), *chunks(stream, mode)]
        middle = len(pieces) // 2 if mode & 0x40 else -1
        alive = True
        for i, piece in enumerate(pieces):
            try:
                handle.receive_data(piece)
                wrote += handle.data_to_send()
            except Exception as exc:  # noqa: BLE001 - any exception is a finding
                problems.append(exception_problem(
                    "receive_data (prelude)" if i == 0 else "receive_data", exc))
                alive = False
                break
            if i == middle:
                problems += self.bystander_check("in the middle of the fuzz input")
        if alive:
            alive = _call(problems, "tick", handle.tick)
        if alive and mode & 0x20:
            self.clock.t += CLOCK_JUMP
            self.wall.t += CLOCK_JUMP
            alive = _call(problems, "tick (after the clock jump)", handle.tick)
        if alive:
            _call(problems, "container.housekeeping", c.housekeeping)
        _call(problems, "data_to_send", lambda: wrote.extend(handle.data_to_send()))
        problems += self.bystander_check("after the fuzz input")
        _call(problems, "connection_lost", handle.connection_lost)
        _call(problems, "data_to_send", lambda: wrote.extend(handle.data_to_send()))
        result.outcome = check_output(bytes(wrote), problems)
        problems += leaks(c, handle)
        try:
            self.bystander.tick(self.clock.t)
            if self.bystander.read():
                problems += self.bystander_check("after its tick")
        except Exception as exc:  # noqa: BLE001 - any exception is a finding
            problems.append(exception_problem("the bystander's tick", exc))
        self.clock.t += 0.01
        self.wall.t += 0.01
        LOG_CHECK.problems = []
        return result


def _call(problems: list[Problem], where: str, fn: Callable[[], object]) -> bool:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - any exception is a finding
        problems.append(exception_problem(where, exc))
        return False
    return True


def _no_wake() -> None:
    pass


def _condition_of(performative: object) -> str | None:
    error = getattr(performative, "error", None)
    if error is None:
        return None
    return str(getattr(error, "condition", error))


def check_output(data: bytes, problems: list[Problem]) -> tuple[object, ...]:
    """Everything the broker wrote on the fuzzed connection: parses, nothing after
    `close`, only spec conditions.  Returns the coarse outcome (kinds, conditions)."""
    reader = FrameReader()
    reader.feed(data)
    outcome: list[object] = []
    closed = False
    try:
        while True:
            item = reader.next()
            if item is NEED_DATA:
                break
            if isinstance(item, ProtocolHeader):
                if item.raw not in (AMQP_HEADER, SASL_HEADER):
                    problems.append(Problem("output", "bad protocol header written",
                                            repr(item.raw)))
                outcome.append(item.raw[4])
                continue
            if closed:
                problems.append(Problem("output", "a frame after close", repr(item)))
                break
            if not item.body:  # type: ignore[union-attr]
                continue
            performative, _ = decode_frame_body(item.body)  # type: ignore[union-attr]
            kind = type(performative).__name__
            if isinstance(performative, SaslOutcome) and performative.code == 0:
                reader.expect_header()
            if isinstance(performative, (Detach, End, Close)):
                cond = _condition_of(performative)
                outcome.append((kind, cond))
                if cond is not None and cond not in ALLOWED_CONDITIONS and \
                        not cond.startswith("broker:"):
                    problems.append(Problem("condition", f"{kind} with {cond}",
                                            f"{performative!r}"))
                closed = closed or isinstance(performative, Close)
            elif isinstance(performative, Attach):
                outcome.append((kind, performative.source is None or performative.target is None))
            elif len(outcome) < 40:
                outcome.append(kind)
        if reader.buffered:
            problems.append(Problem("output", "output ends inside a frame",
                                    f"{reader.buffered} bytes left over"))
    except AmqpError as exc:
        problems.append(Problem("output", f"the broker wrote malformed bytes: "
                                f"{type(exc).__name__}", f"{exc}: {data[:200]!r}"))
    return tuple(outcome[:40])


def leaks(c: Container, handle: object) -> list[Problem]:
    """What a dropped connection must not leave behind."""
    problems = []
    if not getattr(handle, "done", True):
        problems.append(Problem("leak", "connection not done after EOF", ""))
    if handle in c.connections:
        problems.append(Problem("leak", "connection still in container.connections", ""))
    if any(h is handle for h in c.publishers.values()):
        problems.append(Problem("leak", "publisher link left in container.publishers", ""))
    for node in c.registry.nodes.values():
        for consumer in getattr(node, "consumers", ()):
            if getattr(consumer, "handle", None) is handle:
                problems.append(Problem("leak", f"consumer left on a {node.kind}",
                                        f"{node!r}"))
                break
    return problems


class Harness:
    """Worlds by variant, reused and replaced; `run` never raises."""

    def __init__(self) -> None:
        install_log_check()
        self.worlds: dict[int, World] = {}

    def world(self, variant: int) -> World:
        w = self.worlds.get(variant)
        if w is None or w.worn:
            w = self.worlds[variant] = World(variant)
        return w

    def run(self, data: bytes) -> Result:
        variant = (data[1] if len(data) > 1 else 0) % len(VARIANTS)
        world = self.world(variant)
        try:
            result = world.run(data)
        except Exception as exc:  # noqa: BLE001 - a bug in the harness itself: report it, go on
            result = Result([exception_problem("the harness", exc)])
        if result.problems:
            del self.worlds[variant]  # its state may be damaged
        return result


def replay_fresh(data: bytes) -> Result:
    """The input on a fresh world: does the finding need earlier inputs' state?"""
    return Harness().run(data)


def describe(data: bytes) -> str:
    """A human-readable listing of an input: mode, variant and the frames."""
    lines = []
    mode = data[0] if data else 0
    lines.append(f"mode 0x{mode:02x}: prelude {mode & 3}, chunking {(mode >> 2) & 7}, "
                 f"clock jump {bool(mode & 0x20)}, bystander mid-stream {bool(mode & 0x40)}, "
                 f"small limits {bool(mode & 0x80)}")
    variant = (data[1] if len(data) > 1 else 0) % len(VARIANTS)
    lines.append(f"variant {variant}: {VARIANTS[variant]}")
    for f in split_frames(data[2:]):
        if len(f) >= 8:
            ch = int.from_bytes(f[6:8], "big")
            body = f[max(f[4], 2) * 4 :]
            try:
                performative, payload = decode_frame_body(body) if body else (None, b"")
                text = repr(performative) + (f" + {len(payload)} payload bytes" if payload
                                             else "")
            except Exception as exc:  # noqa: BLE001 - any exception is a finding
                text = f"undecodable ({type(exc).__name__}: {exc})"
            lines.append(f"  frame size={int.from_bytes(f[:4], 'big')} doff={f[4]} "
                         f"type={f[5]} ch={ch}: {text[:400]}")
            lines.append(f"    {f.hex()[:600]}")
        else:
            lines.append(f"  tail bytes: {f.hex()}")
    return "\n".join(lines)



def minimize(data: bytes, signature: str, budget: int = 400) -> bytes:
    """A smaller input with the same finding, on fresh worlds: frames dropped one
    at a time (from the end), then the mode's extras switched off."""

    def still(candidate: bytes) -> bool:
        return any(f"{p.kind}: {p.signature}" == signature
                   for p in replay_fresh(candidate).problems)

    head, frames = bytearray(data[:2].ljust(2, b"\x00")), split_frames(data[2:])
    tries = 0
    changed = True
    while changed and tries < budget:
        changed = False
        i = len(frames) - 1
        while i >= 0 and tries < budget:
            candidate = frames[:i] + frames[i + 1 :]
            tries += 1
            if still(bytes(head) + b"".join(candidate)):
                frames = candidate
                changed = True
            i -= 1
    for bit in (0x40, 0x20, 0x80):
        if head[0] & bit and tries < budget:
            tries += 1
            trial = bytes((head[0] & ~bit, head[1])) + b"".join(frames)
            if still(trial):
                head[0] &= ~bit
    return bytes(head) + b"".join(frames)
