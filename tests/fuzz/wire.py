"""Raw AMQP bytes for the fuzzer, written by hand so that they may be wrong.

The broker's own encoder refuses what it cannot represent and always picks
the most compact encoding; a hostile peer does neither.  `Gen` writes typed
values straight to bytes: right or wrong types for a field, every width of
an integer, lengths and counts that lie, descriptors nobody defined.  It
knows the field lists of every performative, of the terminus, error and
delivery-state composites and of the message sections (§2.7, §3.2, §3.4,
§3.5), so that most of what it writes is *nearly* valid, which is what
reaches deep into the engine and the container.

Everything is drawn from a `random.Random` handed in, so a seed reproduces
the bytes.
"""

from __future__ import annotations

import random
import struct
from typing import ClassVar

# -- primitive encodings (§1.6) ----------------------------------------------------

NULL = b"\x40"
TRUE = b"\x41"
FALSE = b"\x42"


def uint(v: int) -> bytes:
    if v == 0:
        return b"\x43"
    if v < 256:
        return bytes((0x52, v))
    return b"\x70" + struct.pack(">I", v & 0xFFFFFFFF)


def ulong(v: int) -> bytes:
    if v == 0:
        return b"\x44"
    if v < 256:
        return bytes((0x53, v))
    return b"\x80" + struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF)


def ubyte(v: int) -> bytes:
    return bytes((0x50, v & 0xFF))


def ushort(v: int) -> bytes:
    return b"\x60" + struct.pack(">H", v & 0xFFFF)


def boolean(v: bool) -> bytes:
    return TRUE if v else FALSE


def _var(data: bytes, code8: int, code32: int) -> bytes:
    if len(data) < 256:
        return bytes((code8, len(data))) + data
    return bytes((code32,)) + struct.pack(">I", len(data)) + data


def string(s: str | bytes) -> bytes:
    return _var(s.encode() if isinstance(s, str) else s, 0xA1, 0xB1)


def symbol(s: str | bytes) -> bytes:
    return _var(s.encode() if isinstance(s, str) else s, 0xA3, 0xB3)


def binary(b: bytes) -> bytes:
    return _var(b, 0xA0, 0xB0)


def list_(items: list[bytes]) -> bytes:
    if not items:
        return b"\x45"
    body = b"".join(items)
    if len(body) < 255 and len(items) < 256:
        return bytes((0xC0, len(body) + 1, len(items))) + body
    return b"\xd0" + struct.pack(">II", len(body) + 4, len(items)) + body


def map_(pairs: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(k + v for k, v in pairs)
    n = 2 * len(pairs)
    if len(body) < 255 and n < 256:
        return bytes((0xC1, len(body) + 1, n)) + body
    return b"\xd1" + struct.pack(">II", len(body) + 4, n) + body


def symbol_array(names: list[str]) -> bytes:
    """An array of sym8 (the usual encoding of a multiple symbol field)."""
    body = b"".join(bytes((len(n.encode()),)) + n.encode() for n in names)
    if len(body) + 2 < 256 and len(names) < 256:
        return bytes((0xE0, len(body) + 2, len(names), 0xA3)) + body
    return b"\xf0" + struct.pack(">II", len(body) + 5, len(names)) + b"\xa3" + body


def described(code: int, value: bytes) -> bytes:
    return b"\x00" + ulong(code) + value


def composite(code: int, fields: list[bytes]) -> bytes:
    """A described list, trailing nulls dropped as senders usually do."""
    while fields and fields[-1] == NULL:
        fields = fields[:-1]
    return described(code, list_(fields))


def frame(body: bytes, channel: int = 0, ftype: int = 0) -> bytes:
    return struct.pack(">IBBH", 8 + len(body), 2, ftype, channel & 0xFFFF) + body


# -- descriptors ---------------------------------------------------------------------

OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
SASL_INIT, SASL_RESPONSE = 0x41, 0x43
ERROR = 0x1D
RECEIVED, ACCEPTED, REJECTED, RELEASED, MODIFIED = 0x23, 0x24, 0x25, 0x26, 0x27
SOURCE, TARGET = 0x28, 0x29
HEADER, DELIVERY_ANN, MESSAGE_ANN, PROPERTIES, APP_PROPS = 0x70, 0x71, 0x72, 0x73, 0x74
DATA, SEQUENCE, VALUE, FOOTER = 0x75, 0x76, 0x77, 0x78
SESSION_PERFORMATIVES = (ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END)

# Values a fuzzer should try first: the edges of every width and of serial arithmetic.
EDGE_INTS = (0, 1, 2, 3, 7, 63, 64, 127, 128, 255, 256, 511, 512, 1000, 2047, 2048, 65535,
             65536, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
CHANNELS = (0, 0, 0, 0, 1, 1, 2, 3, 63, 64, 255, 65535)
HANDLES = (0, 0, 0, 1, 1, 2, 3, 7, 8, 255, 256, 0xFFFFFFFF)

# Addresses the fuzzed connection may use.  None names the bystander's queues
# (see harness.BYSTANDER_*): whatever the fuzzer does to these must not reach them.
ADDRESSES = (
    "/queues/fz", "/queues/fz", "fz", "/queues/fz2", "/queues/fzs", "/queues/fzm",
    "/exchanges/amq.topic/k", "/exchanges/amq.topic/k", "/exchanges/amq.topic",
    "/exchanges/amq.direct/fz", "/exchanges/amq.fanout", "/exchanges/amq.headers",
    "/exchanges/fzx/k", "/exchanges/", "/exchanges/amq.topic/" + "k" * 300, "/queues/",
    "/queues/%zz", "/queues/fz%2Fx", "/management", "/management", "", "/", "amq.topic",
    "/queues/amq.gen-1", "$me", "/exchanges/%41mq.topic/k",
)
MANAGEMENT_PATHS = (
    "/queues/fzm", "/queues/fzm", "/queues/fzs", "/queues/fz", "/queues/fzm/messages",
    "/queues", "/exchanges/fzx", "/exchanges/fzx", "/exchanges/amq.topic", "/exchanges",
    "/bindings", "/bindings", "/bindings?src=fzx&dstq=fzm&key=k",
    "/bindings/src=fzx;dstq=fzm;key=k;args=", "/bindings/src=amq.topic;dstq=fzm;key=%23;args=",
    "/bindings/nonsense", "/auth/tokens", "/connections", "/queues/%ff", "/nowhere", "",
    "/queues/fzm/messages?x", "/bindings?src=amq.topic", "/exchanges/%zz",
)
METHODS = ("GET", "PUT", "POST", "DELETE", "get", "HEAD", "PATCH", "")
SYMBOLS = (
    "paired", "amqp:accepted:list", "amqp:rejected:list", "amqp:released:list",
    "amqp:modified:list", "rabbitmq:stream-offset-spec", "rabbitmq:stream-filter",
    "ANONYMOUS-RELAY", "LINK_PAIR_V1_0", "temporary-queue", "queue", "topic", "shared",
    "global", "move", "copy", "link-detach", "session-end", "connection-close", "never",
    "x-queue-type", "x-opt-jms-dest", "amqp:no-local", "apache.org:selector-filter:string",
    "amqp:internal-error", "amqp:not-found", "PLAIN", "ANONYMOUS", "EXTERNAL",
)
QUEUE_ARGUMENTS = (
    ("x-queue-type", ("classic", "quorum", "stream", "nope", 1)),
    ("x-max-length", (0, 1, 5, -1, "5", 2**40)),
    ("x-max-length-bytes", (0, 100, -1, 2**63 - 1)),
    ("x-overflow", ("drop-head", "reject-publish", "reject-publish-dlx", "nope")),
    ("x-message-ttl", (0, 1, 1000, -1, 2**40)),
    ("x-expires", (0, 1, 1000, -5)),
    ("x-dead-letter-exchange", ("", "amq.topic", "fzx", "nope")),
    ("x-dead-letter-routing-key", ("k", "")),
    ("x-max-priority", (0, 1, 10, 255, 256, -1)),
    ("x-single-active-consumer", (True, False, 1)),
    ("x-delivery-limit", (0, 1, 3, -1)),
    ("x-max-age", ("1s", "7D", "nope", "")),
    ("x-stream-max-segment-size-bytes", (1, 1000, 0)),
)


class Gen:
    """Random AMQP values as bytes; `wrong` is the chance a field gets a random type."""

    def __init__(self, rng: random.Random, wrong: float = 0.0) -> None:
        self.rng = rng
        self.wrong = wrong

    # -- scalars -------------------------------------------------------------------

    def int_(self, lo: int = 0, hi: int = 0xFFFFFFFF) -> int:
        r = self.rng.random()
        if r < 0.55:
            return self.rng.choice([v for v in EDGE_INTS if lo <= v <= hi] or [lo])
        if r < 0.85:
            return self.rng.randint(lo, min(hi, lo + 300))
        return self.rng.randint(lo, hi)

    def text(self) -> str:
        r = self.rng.random()
        if r < 0.6:
            return self.rng.choice(("fz", "link", "a", "x" * 40, "naïve", "", "q.1", "k"))
        if r < 0.9:
            n = self.rng.randint(0, 20)
            return "".join(chr(self.rng.randint(32, 126)) for _ in range(n))
        n = self.rng.choice((0, 1, 255, 256, 300, 2000))
        return "".join(chr(self.rng.randint(0, 0x2FF)) for _ in range(n))

    def raw_bytes(self, n: int | None = None) -> bytes:
        if n is None:
            n = self.rng.choice((0, 1, 4, 8, 16, 32, 33, 100))
        return self.rng.randbytes(n)

    # -- any value ---------------------------------------------------------------------

    def any(self, depth: int = 0) -> bytes:
        """A value of a random type; some encodings deliberately lie about sizes."""
        rng = self.rng
        choices = 26 if depth < 3 else 20
        k = rng.randrange(choices)
        if k == 0:
            return NULL
        if k == 1:
            return rng.choice((TRUE, FALSE, b"\x56\x00", b"\x56\x01", b"\x56\x02"))
        if k == 2:
            return uint(self.int_())
        if k == 3:
            return ulong(self.int_(0, 2**64 - 1))
        if k == 4:
            return ubyte(self.int_(0, 255))
        if k == 5:
            return ushort(self.int_(0, 65535))
        if k == 6:
            return bytes((rng.choice((0x51, 0x54, 0x55)), rng.randrange(256)))
        if k == 7:
            return bytes((rng.choice((0x61,)),)) + rng.randbytes(2)
        if k == 8:
            return bytes((rng.choice((0x71, 0x72, 0x73, 0x74)),)) + rng.randbytes(4)
        if k == 9:
            return bytes((rng.choice((0x81, 0x82, 0x83, 0x84)),)) + rng.randbytes(8)
        if k == 10:
            return rng.choice((b"\x94", b"\x98")) + rng.randbytes(16)
        if k == 11:
            return string(self.text())
        if k == 12:
            return symbol(rng.choice(SYMBOLS) if rng.random() < 0.7 else self.text())
        if k == 13:
            return binary(self.raw_bytes())
        if k == 14:  # invalid UTF-8 in a string
            return string(rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"a\x00b")))
        if k == 15:  # a length past the end of the buffer
            return bytes((rng.choice((0xA0, 0xA1, 0xA3, 0xC0, 0xC1, 0xE0)), 0xFF)) + b"x"
        if k == 16:  # 32-bit sizes and counts that lie
            return bytes((rng.choice((0xB0, 0xB1, 0xB3, 0xD0, 0xD1, 0xF0)),)) + struct.pack(
                ">II", rng.choice((0, 4, 0x7FFFFFFF, 0xFFFFFFFF)),
                rng.choice((0, 1, 0xFFFFFFFF)))
        if k == 17:  # a format code nobody defined
            return bytes((rng.choice((0x01, 0x30, 0x57, 0x90, 0xA2, 0xFF)),))
        if k == 18:
            return b"\x45"
        if k == 19:  # a described value with a descriptor we do not know
            return b"\x00" + rng.choice((ulong(rng.randrange(2**64)), symbol("x:y"),
                                         uint(5), NULL)) + self.any(depth + 1)
        if k == 20:
            return list_([self.any(depth + 1) for _ in range(rng.randrange(5))])
        if k == 21:
            return map_([(self.any(depth + 1), self.any(depth + 1))
                         for _ in range(rng.randrange(4))])
        if k == 22:
            return self.array(depth)
        if k == 23:  # a known composite where a scalar was expected
            return rng.choice((self.source, self.target, self.error, self.state))()
        if k == 24:  # odd-count map
            return bytes((0xC1, 2, 1)) + NULL
        return symbol_array([rng.choice(SYMBOLS) for _ in range(rng.randrange(4))])

    def array(self, depth: int = 0) -> bytes:
        rng = self.rng
        kind = rng.randrange(5)
        n = rng.randrange(4)
        if kind == 0:
            return symbol_array([rng.choice(SYMBOLS) for _ in range(n)])
        if kind == 1:  # uint array
            body = b"".join(struct.pack(">I", self.int_()) for _ in range(n))
            return bytes((0xE0, len(body) + 2, n, 0x70)) + body
        if kind == 2:  # an array of lists (element constructor with sizes inside)
            body = b"".join(b"\x01\x00" for _ in range(n))
            return bytes((0xE0, len(body) + 2, n, 0xC0)) + body
        if kind == 3:  # described elements
            body = b"".join(b"\x00" for _ in range(n))
            return bytes((0xE0, len(body) + 5, n, 0x00, 0x53, 0x24, 0x45)) + body
        return bytes((0xE0, 2, rng.choice((0, 1, 255)), rng.choice((0x40, 0x41, 0xFF, 0x00))))

    # -- typed fields --------------------------------------------------------------

    def field(self, kind: str) -> bytes:
        """A value for a field of the given kind; with probability `wrong`, any type."""
        rng = self.rng
        if self.wrong and rng.random() < self.wrong:
            return self.any()
        if rng.random() < 0.1 and kind not in ("handle", "role"):
            return NULL
        if kind in ("uint", "handle", "delivery_id", "window", "credit"):
            if kind == "handle":
                return uint(rng.choice(HANDLES))
            if kind == "window":
                return uint(rng.choice((0, 1, 2, 100, 2048, 65535, 0x7FFFFFFF, 0xFFFFFFFF)))
            return uint(self.int_())
        if kind == "ulong":
            return ulong(self.int_(0, 2**64 - 1))
        if kind == "ushort":
            return ushort(self.int_(0, 65535))
        if kind == "ubyte":
            return ubyte(rng.choice((0, 0, 1, 2, 3, 255)))
        if kind in ("bool", "role"):
            return boolean(rng.random() < 0.5)
        if kind == "string":
            return string(self.text())
        if kind == "address":
            return string(rng.choice(ADDRESSES))
        if kind == "name":
            return string(rng.choice(("fz-0", "fz-1", "fz-2", "mgmt", "fz-0", self.text())))
        if kind == "symbol":
            return symbol(rng.choice(SYMBOLS))
        if kind == "symbols":
            if rng.random() < 0.3:
                return symbol(rng.choice(SYMBOLS))  # a single value for a multiple field
            return symbol_array([rng.choice(SYMBOLS) for _ in range(rng.randrange(4))])
        if kind == "binary":
            return binary(self.raw_bytes())
        if kind == "tag":
            return binary(self.raw_bytes(rng.choice((0, 1, 4, 4, 8, 32, 33))))
        if kind == "map":
            return self.map_value()
        if kind == "source":
            return self.source()
        if kind == "target":
            return self.target()
        if kind == "error":
            return self.error()
        if kind == "state":
            return self.state()
        if kind == "timestamp":
            return b"\x83" + struct.pack(">q", rng.choice((0, 1, -1, 2**62, 1_700_000_000_000)))
        return self.any()

    def map_value(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return map_([(symbol("paired"), rng.choice((TRUE, FALSE, NULL, string("yes"))))])
        if r < 0.5:
            return map_([(symbol(rng.choice(SYMBOLS)), self.any(1))
                         for _ in range(rng.randrange(4))])
        if r < 0.6:
            return map_([(self.any(2), self.any(2)) for _ in range(rng.randrange(3))])
        return map_([])

    def filter_set(self) -> bytes:
        rng = self.rng
        offset = rng.choice((string("first"), string("last"), string("next"), ulong(0),
                             ulong(5), ulong(2**63), b"\x83" + struct.pack(">q", 0),
                             string("nope"), self.any(1)))
        pairs = [(symbol("rabbitmq:stream-offset-spec"),
                  described(0x0000468C00000001, offset) if rng.random() < 0.3 else
                  b"\x00" + symbol("rabbitmq:stream-offset-spec") + offset)]
        if rng.random() < 0.3:
            pairs.append((symbol("selector"), b"\x00" + symbol(
                "apache.org:selector-filter:string") + string("a = 1")))
        if rng.random() < 0.2:
            pairs.append((self.any(1), self.any(1)))
        return map_(pairs)

    def source(self) -> bytes:
        f = self.field
        rng = self.rng
        fields = [f("address"), f("uint"), f("symbol"), f("uint"),
                  boolean(rng.random() < 0.2), f("map"),
                  symbol(rng.choice(("move", "copy", "nope"))),
                  self.filter_set() if rng.random() < 0.3 else NULL,
                  self.state() if rng.random() < 0.3 else NULL, f("symbols"), f("symbols")]
        return composite(SOURCE, fields[: rng.randint(0, len(fields))])

    def target(self) -> bytes:
        f = self.field
        fields = [f("address"), f("uint"), f("symbol"), f("uint"),
                  boolean(self.rng.random() < 0.2), f("map"), f("symbols")]
        return composite(TARGET, fields[: self.rng.randint(0, len(fields))])

    def error(self) -> bytes:
        if self.rng.random() < 0.2:
            return NULL
        return composite(ERROR, [symbol(self.rng.choice(SYMBOLS)), self.field("string"),
                                 self.field("map")])

    def state(self) -> bytes:
        rng = self.rng
        k = rng.randrange(7)
        if k == 0:
            return composite(RECEIVED, [uint(self.int_()), ulong(self.int_())])
        if k == 1:
            return composite(ACCEPTED, [])
        if k == 2:
            return composite(REJECTED, [self.error()])
        if k == 3:
            return composite(RELEASED, [])
        if k == 4:
            return composite(MODIFIED, [self.field("bool"), self.field("bool"),
                                        self.field("map")])
        if k == 5:  # transactional state (we have no coordinator)
            return composite(0x34, [binary(b"tx"), composite(ACCEPTED, [])])
        return NULL

    # -- performatives -----------------------------------------------------------

    TEMPLATES: ClassVar[dict[int, tuple[str, ...]]] = {
        OPEN: ("string", "string", "uint", "ushort", "uint", "symbols", "symbols", "symbols",
               "symbols", "map"),
        BEGIN: ("ushort", "uint", "window", "window", "uint", "symbols", "symbols", "map"),
        ATTACH: ("name", "handle", "role", "ubyte", "ubyte", "source", "target", "map", "bool",
                 "uint", "ulong", "symbols", "symbols", "map"),
        FLOW: ("uint", "window", "uint", "window", "handle", "uint", "credit", "uint", "bool",
               "bool", "map"),
        TRANSFER: ("handle", "delivery_id", "tag", "uint", "bool", "bool", "ubyte", "state",
                   "bool", "bool", "bool"),
        DISPOSITION: ("role", "delivery_id", "delivery_id", "bool", "state", "bool"),
        DETACH: ("handle", "bool", "error"),
        END: ("error",),
        CLOSE: ("error",),
        SASL_INIT: ("symbol", "binary", "string"),
        SASL_RESPONSE: ("binary",),
    }

    def performative(self, code: int | None = None) -> bytes:
        """A performative body: known fields (each maybe of the wrong type),
        sometimes cut short or with extra fields."""
        rng = self.rng
        if code is None:
            code = rng.choice(SESSION_PERFORMATIVES + SESSION_PERFORMATIVES + (BEGIN, OPEN, CLOSE))
        kinds = self.TEMPLATES.get(code)
        if kinds is None:
            return composite(code, [self.any() for _ in range(rng.randrange(6))])
        fields = [self.field(k) for k in kinds]
        r = rng.random()
        if r < 0.1:
            fields = fields[: rng.randrange(len(fields) + 1)]  # missing mandatory fields
        elif r < 0.15:
            fields += [self.any() for _ in range(rng.randint(1, 3))]  # fields from the future
        body = described(code, list_(fields))
        if rng.random() < 0.05:  # the symbolic descriptor
            names = {OPEN: "open", BEGIN: "begin", ATTACH: "attach", FLOW: "flow",
                     TRANSFER: "transfer", DISPOSITION: "disposition", DETACH: "detach",
                     END: "end", CLOSE: "close"}
            body = b"\x00" + symbol(f"amqp:{names.get(code, 'x')}:list") + list_(fields)
        return body

    def performative_frame(self, code: int | None = None) -> bytes:
        rng = self.rng
        body = self.performative(code)
        if body[2:3] == bytes((TRANSFER,)) or rng.random() < 0.05:
            body += self.message() if rng.random() < 0.9 else self.raw_bytes()
        ftype = 1 if rng.random() < 0.03 else 0
        return frame(body, rng.choice(CHANNELS), ftype)

    # -- messages (§3.2) ------------------------------------------------------------

    def properties(self, to: bytes | None = None, subject: bytes | None = None) -> bytes:
        f = self.field
        fields = [self.message_id(), f("binary"), to or f("address"),
                  subject or f("string"), string("$me") if self.rng.random() < 0.5 else f("address"),
                  self.message_id(), f("symbol"), f("symbol"), f("timestamp"), f("timestamp"),
                  f("string"), f("uint"), f("string")]
        return composite(PROPERTIES, fields[: self.rng.randint(0, len(fields))])

    def message_id(self) -> bytes:
        rng = self.rng
        return rng.choice((string("id-1"), ulong(rng.randrange(1000)),
                           b"\x98" + rng.randbytes(16), binary(b"id"), NULL, self.any(2)))

    def annotations(self) -> bytes:
        rng = self.rng
        keys = ("x-opt-to", "x-routing-key", "x-exchange", "x-stream-offset",
                "x-delivery-count", "x-first-death-queue", "x-opt-jms-dest")
        return map_([(symbol(rng.choice(keys)) if rng.random() < 0.8 else self.any(2),
                      self.any(2)) for _ in range(rng.randrange(4))])

    def message(self) -> bytes:
        """A message's sections: usually in §3.2's order, sometimes not."""
        rng = self.rng
        sections = []
        if rng.random() < 0.5:
            sections.append(composite(HEADER, [self.field("bool"), ubyte(rng.choice(
                (0, 4, 9, 10, 255))), uint(rng.choice((0, 1, 1000, 0xFFFFFFFF))),
                self.field("bool"), uint(rng.choice((0, 1, 5, 0xFFFFFFFF)))]
                [: rng.randint(0, 5)]))
        if rng.random() < 0.15:
            sections.append(described(DELIVERY_ANN, self.annotations()))
        if rng.random() < 0.3:
            sections.append(described(MESSAGE_ANN, self.annotations()))
        if rng.random() < 0.6:
            sections.append(self.properties())
        if rng.random() < 0.3:
            sections.append(described(APP_PROPS, map_([
                (string(rng.choice(("a", "k", "x-match", "colour"))), self.any(2))
                for _ in range(rng.randrange(4))])))
        k = rng.randrange(6)
        if k < 3:
            sections.append(described(DATA, binary(self.raw_bytes())))
        elif k == 3:
            sections.append(described(SEQUENCE, list_([self.any(2)])))
        elif k == 4:
            sections.append(described(VALUE, self.any(1)))
        if rng.random() < 0.05:
            sections.append(described(FOOTER, self.annotations()))
        if rng.random() < 0.1:
            rng.shuffle(sections)
        if rng.random() < 0.05:
            sections.append(described(rng.choice((0x79, 0x24, 0x70)), NULL))
        return b"".join(sections)

    def management_request(self) -> bytes:
        """A /management request as RabbitMQ's clients write it (§ HTTP over AMQP v2)."""
        rng = self.rng
        path = string(rng.choice(MANAGEMENT_PATHS))
        method = string(rng.choice(METHODS))
        body: bytes
        r = rng.random()
        if r < 0.5:
            pairs = []
            for key in rng.sample(("durable", "exclusive", "auto_delete", "arguments", "type",
                                   "internal", "source", "destination_queue",
                                   "destination_exchange", "binding_key"), rng.randint(0, 5)):
                if key == "arguments":
                    args = [(string(name), self.py(rng.choice(values)))
                            for name, values in rng.sample(QUEUE_ARGUMENTS, rng.randint(0, 3))]
                    pairs.append((string(key), map_(args)))
                elif key == "type":
                    pairs.append((string(key), string(rng.choice(
                        ("direct", "topic", "fanout", "headers", "x-nope")))))
                elif key in ("source", "destination_queue", "destination_exchange"):
                    pairs.append((string(key), string(rng.choice(
                        ("fzx", "fzm", "amq.topic", "", "nope")))))
                elif key == "binding_key":
                    pairs.append((string(key), string(rng.choice(("k", "#", "*.k", "")))))
                else:
                    pairs.append((string(key), self.field("bool")))
            body = map_(pairs)
        elif r < 0.7:
            body = NULL
        elif r < 0.8:
            body = binary(b"token")
        else:
            body = self.any(1)
        props = self.properties(to=path, subject=method)
        value = described(VALUE, body)
        return props + value if rng.random() < 0.8 else value + props

    @staticmethod
    def py(v: object) -> bytes:
        if isinstance(v, bool):
            return boolean(v)
        if isinstance(v, int):
            return b"\x81" + struct.pack(">q", max(-(2**63), min(v, 2**63 - 1)))
        return string(str(v))
