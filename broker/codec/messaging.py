"""Messaging layer types (§3): termini, delivery states, message sections, and
`Message`, a view over an encoded message that lets the broker forward bytes
without re-encoding them.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any, ClassVar

from broker.codec.composite import ANY, DESCRIBED_CLASSES, composite, f, provide
from broker.codec.decode import _DECODERS, DESCRIBED_TYPES, decode, skip
from broker.codec.encode import ENCODERS, enc_ulong, encode_into
from broker.codec.performatives import Error
from broker.codec.types import AmqpType as T
from broker.codec.types import Symbol, ULong
from broker.errors import DecodeError

# §3.5.6 terminus-expiry-policy
EXPIRY_POLICIES = tuple(
    Symbol(s) for s in ("link-detach", "session-end", "connection-close", "never"))
TERMINUS_DURABILITY = (0, 1, 2)  # §3.5.5: none, configuration, unsettled-state

# Primitive types that provide archetypes a `*` field can require: the four
# message-id types (§3.2.11-14) and address-string (§3.2.15).
provide("address", str)
provide("message-id", ULong, uuid.UUID, bytes, str)
# Transactions (§4.5) are not implemented, so their types decode as
# `Described`; they are still valid where a target or a delivery state
# belongs, so a transactional client has its coordinator link refused by the
# engine rather than its connection closed by the codec.
provide("target", descriptors=(ULong(0x30), Symbol("amqp:coordinator:list")))
provide("delivery-state", descriptors=(ULong(0x33), Symbol("amqp:declared:list"),
                                       ULong(0x34), Symbol("amqp:transactional-state:list")))
provide("outcome", descriptors=(ULong(0x33), Symbol("amqp:declared:list")))

# --- termini §3.5 ------------------------------------------------------------


@composite(0x28, "amqp:source:list", provides=("source",))
class Source:
    """§3.5.3: where a link's messages come from; `filter` selects among them."""

    address: object = f(ANY, requires="address")
    durable: int = f(T.UINT, default=0, choices=TERMINUS_DURABILITY)
    expiry_policy: Symbol = f(T.SYMBOL, default=Symbol("session-end"), choices=EXPIRY_POLICIES)
    timeout: int = f(T.UINT, default=0)
    dynamic: bool = f(T.BOOLEAN, default=False)
    dynamic_node_properties: dict[object, object] | None = f(T.MAP, keys=T.SYMBOL)  # fields
    distribution_mode: Symbol | None = f(T.SYMBOL)  # requires distribution-mode: any symbol
    # filter-set (§3.5.8): symbol keys, values null or described (filters)
    filter: dict[object, object] | None = f(T.MAP, keys=T.SYMBOL, values="filter")
    default_outcome: object = f(ANY, requires="outcome")
    outcomes: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)
    capabilities: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)


@composite(0x29, "amqp:target:list", provides=("target",))
class Target:
    """§3.5.4: where a link's messages go."""

    address: object = f(ANY, requires="address")
    durable: int = f(T.UINT, default=0, choices=TERMINUS_DURABILITY)
    expiry_policy: Symbol = f(T.SYMBOL, default=Symbol("session-end"), choices=EXPIRY_POLICIES)
    timeout: int = f(T.UINT, default=0)
    dynamic: bool = f(T.BOOLEAN, default=False)
    dynamic_node_properties: dict[object, object] | None = f(T.MAP, keys=T.SYMBOL)  # fields
    capabilities: tuple[Symbol, ...] | None = f(T.SYMBOL, multiple=True)


@composite(0x2B, "amqp:delete-on-close:list", provides=("lifetime-policy",))
class DeleteOnClose:
    """§3.5.10 lifetime policy"""


@composite(0x2C, "amqp:delete-on-no-links:list", provides=("lifetime-policy",))
class DeleteOnNoLinks:
    """§3.5.11 lifetime policy"""


@composite(0x2D, "amqp:delete-on-no-messages:list", provides=("lifetime-policy",))
class DeleteOnNoMessages:
    """§3.5.12 lifetime policy"""


@composite(0x2E, "amqp:delete-on-no-links-or-messages:list", provides=("lifetime-policy",))
class DeleteOnNoLinksOrMessages:
    """§3.5.13 lifetime policy"""


# --- delivery states §3.4 ----------------------------------------------------


@composite(0x23, "amqp:received:list", provides=("delivery-state",))
class Received:
    """§3.4.1: how much of a delivery arrived (for resumption)."""

    section_number: int = f(T.UINT, mandatory=True)
    section_offset: int = f(T.ULONG, mandatory=True)


@composite(0x24, "amqp:accepted:list", provides=("delivery-state", "outcome"))
class Accepted:
    """§3.4.2: terminal; the message was processed."""


@composite(0x25, "amqp:rejected:list", provides=("delivery-state", "outcome"))
class Rejected:
    """§3.4.3: terminal; the message is invalid and will not be processed."""

    error: Error | None = f(Error)


@composite(0x26, "amqp:released:list", provides=("delivery-state", "outcome"))
class Released:
    """§3.4.4: terminal; not processed, may be redelivered to anyone."""


@composite(0x27, "amqp:modified:list", provides=("delivery-state", "outcome"))
class Modified:
    """§3.4.5: terminal; like released, with annotations to merge."""

    delivery_failed: bool | None = f(T.BOOLEAN)
    undeliverable_here: bool | None = f(T.BOOLEAN)
    message_annotations: dict[object, object] | None = f(T.MAP, keys=T.SYMBOL)  # fields


OUTCOMES = (Accepted, Rejected, Released, Modified)

# --- message sections §3.2 ---------------------------------------------------


@composite(0x70, "amqp:header:list")
class Header:
    """§3.2.1: transport headers; the broker rewrites `delivery_count` and `first_acquirer`."""

    durable: bool = f(T.BOOLEAN, default=False)
    priority: int = f(T.UBYTE, default=4)
    ttl: int | None = f(T.UINT)
    first_acquirer: bool = f(T.BOOLEAN, default=False)
    delivery_count: int = f(T.UINT, default=0)


@composite(0x73, "amqp:properties:list")
class Properties:
    """§3.2.4: immutable properties of the bare message."""

    message_id: object = f(ANY, requires="message-id")
    user_id: bytes | None = f(T.BINARY)
    to: object = f(ANY, requires="address")
    subject: str | None = f(T.STRING)
    reply_to: object = f(ANY, requires="address")
    correlation_id: object = f(ANY, requires="message-id")
    content_type: Symbol | None = f(T.SYMBOL)
    content_encoding: Symbol | None = f(T.SYMBOL)
    absolute_expiry_time: int | None = f(T.TIMESTAMP)
    creation_time: int | None = f(T.TIMESTAMP)
    group_id: str | None = f(T.STRING)
    group_sequence: int | None = f(T.UINT)
    reply_to_group_id: str | None = f(T.STRING)


class _ValueSection:
    """A section that is a described non-list value (maps, data, amqp-value)."""

    __slots__ = ("value",)
    CODE: ClassVar[int]
    NAME: ClassVar[str]
    CHECK: ClassVar[tuple[type, ...] | None] = None

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.value == self.value

    def __hash__(self) -> int:
        return hash((type(self), repr(self.value)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


def _register_section(cls: type[_ValueSection]) -> type[_ValueSection]:
    prefix = bytearray(b"\x00")
    enc_ulong(prefix, cls.CODE)
    head = bytes(prefix)

    def enc(out: bytearray, obj: object) -> None:
        out += head
        encode_into(out, obj.value)  # type: ignore[attr-defined]

    def make(value: object) -> object:
        if cls.CHECK is not None and not isinstance(value, cls.CHECK):
            raise DecodeError(f"{cls.__name__} must hold {cls.CHECK[0].__name__}")
        return cls(value)

    ENCODERS[cls] = enc
    DESCRIBED_CLASSES.add(cls)
    DESCRIBED_TYPES[cls.CODE] = make
    DESCRIBED_TYPES[Symbol(cls.NAME)] = make
    return cls


@_register_section
class DeliveryAnnotations(_ValueSection):
    """§3.2.2: annotations for the next hop only."""

    __slots__ = ()
    CODE, NAME, CHECK = 0x71, "amqp:delivery-annotations:map", (dict,)


@_register_section
class MessageAnnotations(_ValueSection):
    """§3.2.3: annotations that travel with the message (x-stream-offset lives here)."""

    __slots__ = ()
    CODE, NAME, CHECK = 0x72, "amqp:message-annotations:map", (dict,)


@_register_section
class ApplicationProperties(_ValueSection):
    """§3.2.5"""

    __slots__ = ()
    CODE, NAME, CHECK = 0x74, "amqp:application-properties:map", (dict,)


@_register_section
class Data(_ValueSection):
    """§3.2.6: opaque binary body section."""

    __slots__ = ()
    CODE, NAME, CHECK = 0x75, "amqp:data:binary", (bytes,)


@_register_section
class AmqpSequence(_ValueSection):
    """§3.2.7: a list body section."""

    __slots__ = ()
    CODE, NAME, CHECK = 0x76, "amqp:amqp-sequence:list", (list,)


@_register_section
class AmqpValue(_ValueSection):
    """§3.2.8: a single AMQP value as the body."""

    __slots__ = ()
    CODE, NAME = 0x77, "amqp:amqp-value:*"


@_register_section
class Footer(_ValueSection):
    """§3.2.9: annotations computed over the whole message (e.g. hashes)."""

    __slots__ = ()
    CODE, NAME, CHECK = 0x78, "amqp:footer:map", (dict,)


_SECTION_NAMES = {
    Symbol("amqp:header:list"): 0x70,
    Symbol("amqp:delivery-annotations:map"): 0x71,
    Symbol("amqp:message-annotations:map"): 0x72,
    Symbol("amqp:properties:list"): 0x73,
    Symbol("amqp:application-properties:map"): 0x74,
    Symbol("amqp:data:binary"): 0x75,
    Symbol("amqp:amqp-sequence:list"): 0x76,
    Symbol("amqp:amqp-value:*"): 0x77,
    Symbol("amqp:footer:map"): 0x78,
}
_HEADER, _DA, _MA, _PROPS, _APP, _FOOTER = 0x70, 0x71, 0x72, 0x73, 0x74, 0x78
_BODY_CODES = (0x75, 0x76, 0x77)
_BODY_RANK = 0x75  # where the body sits in the section order
_u64 = struct.Struct(">Q").unpack_from
_u32 = struct.Struct(">I").unpack_from
_SIZE8_CODES = frozenset((0xA0, 0xA1, 0xA3, 0xC0, 0xC1, 0xE0))
_SIZE32_CODES = frozenset((0xB0, 0xB1, 0xB3, 0xD0, 0xD1, 0xF0))


def _section_code(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a section's descriptor at `pos` (just after 0x00); return (code, value offset)."""
    if pos >= end:
        raise DecodeError("section has no descriptor", pos)
    c = buf[pos]
    if c == 0x53:
        if pos + 1 >= end:
            raise DecodeError("truncated section descriptor", pos)
        return buf[pos + 1], pos + 2
    if c == 0x80:
        if pos + 9 > end:
            raise DecodeError("truncated section descriptor", pos)
        return _u64(buf, pos + 1)[0], pos + 9
    descriptor, after = _DECODERS[c](buf, pos + 1, end, 0)
    if type(descriptor) is Symbol and descriptor in _SECTION_NAMES:
        return _SECTION_NAMES[descriptor], after
    if type(descriptor) is ULong:
        return int(descriptor), after
    raise DecodeError(f"unknown message section descriptor {descriptor!r}", pos)


def _decode_section(buf: bytes, span: tuple[int, int] | None) -> Any:
    if span is None:
        return None
    value, _ = decode(buf, span[0], span[1])
    return value


def encode_section(section: object) -> bytes:
    """One encoded message section (a Header, Properties, MessageAnnotations…)."""
    out = bytearray()
    encode_into(out, section)
    return bytes(out)


def rewrite_header(raw: bytes, *, first_acquirer: bool, drop_ttl: bool = False,
                   durable: bool = False) -> bytes:
    """An encoded header section with `raw`'s fields copied as they were encoded
    (so an explicit priority 4 stays explicit), `first-acquirer` set, and the
    `ttl` dropped and `durable` set if asked.  `raw` is a header section as received, or b"" for
    none.  Fields past the five of §3.2.1 are dropped."""
    fields: list[bytes] = []
    if raw:
        end = len(raw)
        _, pos = _section_code(raw, 1, end)
        c = raw[pos]
        if c == 0x45:
            count, pos = 0, pos + 1
        elif c == 0xC0:
            count, pos = raw[pos + 2], pos + 3
        elif c == 0xD0:
            count, pos = _u32(raw, pos + 5)[0], pos + 9
        else:
            raise DecodeError("the header is not a list", pos)
        for _ in range(min(count, 5)):
            after = skip(raw, pos, end)
            fields.append(raw[pos:after])
            pos = after
    fields.extend([b"\x40"] * (5 - len(fields)))
    if drop_ttl:
        fields[2] = b"\x40"
    if durable:
        fields[0] = b"\x41"
    fields[3] = b"\x41" if first_acquirer else b"\x42"
    while fields and fields[-1] == b"\x40":
        fields.pop()
    body = b"".join(fields)
    if len(body) < 255:
        listed = bytes((0xC0, len(body) + 1, len(fields))) + body
    else:
        listed = b"\xd0" + (len(body) + 4).to_bytes(4, "big") + \
            len(fields).to_bytes(4, "big") + body
    return b"\x00\x53\x70" + listed


def encode_annotations(annotations: dict[object, object]) -> bytes:
    """The encoded message-annotations section holding `annotations`."""
    return encode_section(MessageAnnotations(annotations))


class Message:
    """An encoded message (§3.2) with lazily decoded sections.

    The broker keeps the payload bytes as they arrived.  `Message.parse` only
    locates the sections (using sizes, never decoding bodies); header,
    annotations and properties are decoded on first access.  `encode()` gives
    the bytes to forward: the original payload when nothing was changed, else
    the rewritten header/annotations followed by the untouched bare message.
    """

    __slots__ = (
        "_annotations_override",
        "_bare_end",
        "_bare_start",
        "_cache",
        "_header_override",
        "_table",
        "payload",
    )

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._table: dict[int, tuple[int, int]] | None = None  # None: not located yet
        self._bare_start = 0
        self._bare_end = 0
        self._cache: dict[int, Any] | None = None  # made on first read: most are never read
        self._header_override: Header | None = None
        self._annotations_override: dict[object, object] | None = None

    @classmethod
    def parse(cls, payload: bytes) -> Message:
        """Locate the sections of an encoded message; DecodeError if malformed."""
        msg = cls(payload)
        msg._locate()
        return msg

    @classmethod
    def trusted(cls, payload: bytes) -> Message:
        """A view of bytes this broker already parsed (a stream's stored messages):
        sections are located only if someone reads them, so a stored message
        costs its bytes and little else."""
        return cls(payload)

    @property
    def _spans(self) -> dict[int, tuple[int, int]]:
        table = self._table
        if table is None:
            self._locate()
            table = self._table
        return table  # type: ignore[return-value]

    def _locate(self) -> None:
        payload = self.payload
        spans: dict[int, tuple[int, int]] = {}
        pos, end = 0, len(payload)
        bare_start = bare_end = -1
        body_start = body_end = body_code = -1
        last = -1
        while pos < end:
            start = pos
            if payload[pos] != 0x00:
                raise DecodeError("message section is not a described type", pos)
            if pos + 3 < end and payload[pos + 1] == 0x53:  # the usual small-ulong descriptor
                code = payload[pos + 2]
                value_pos = pos + 3
            else:
                code, value_pos = _section_code(payload, pos + 1, end)
            c = payload[value_pos] if value_pos < end else -1
            if c in _SIZE8_CODES and value_pos + 1 < end:
                pos = value_pos + 2 + payload[value_pos + 1]
            elif c in _SIZE32_CODES and value_pos + 5 <= end:
                pos = value_pos + 5 + _u32(payload, value_pos + 1)[0]
            elif c == 0x45:  # list0: an empty header or properties, as rhea sends them
                pos = value_pos + 1
            else:
                pos = skip(payload, value_pos, end)
            if pos > end:
                raise DecodeError("message section runs past the end of the message", start)
            # §3.2: each section at most once and in order; the body is data
            # sections, amqp-sequence sections or one amqp-value; footer last.
            if code in _BODY_CODES:
                if last > _BODY_RANK:
                    raise DecodeError("body section after the footer", start)
                if body_start < 0:
                    body_start, body_code = start, code
                elif code != body_code or code == 0x77:
                    raise DecodeError("the body mixes section kinds or repeats amqp-value", start)
                body_end = pos
                last = _BODY_RANK
            elif code in (_HEADER, _DA, _MA, _PROPS, _APP, _FOOTER):
                if code <= last:
                    raise DecodeError(f"message section 0x{code:x} out of order or repeated", start)
                spans[code] = (start, pos)
                last = code
            else:
                raise DecodeError(f"unknown message section 0x{code:x}", start)
            if code in (_PROPS, _APP) or code in _BODY_CODES:
                if bare_start < 0:
                    bare_start = start
                bare_end = pos
        if body_start >= 0:
            spans[0x75] = (body_start, body_end)
        self._bare_start = bare_start if bare_start >= 0 else end
        self._bare_end = bare_end if bare_end >= 0 else end
        self._table = spans

    @classmethod
    def create(
        cls,
        body: object = None,
        *,
        header: Header | None = None,
        delivery_annotations: dict[object, object] | None = None,
        message_annotations: dict[object, object] | None = None,
        properties: Properties | None = None,
        application_properties: dict[object, object] | None = None,
        footer: dict[object, object] | None = None,
    ) -> Message:
        """Build a message from values; `body` is bytes (one data section), a
        body section object or list of them, or any other value (amqp-value)."""
        out = bytearray()
        if header is not None:
            encode_into(out, header)
        if delivery_annotations is not None:
            encode_into(out, DeliveryAnnotations(delivery_annotations))
        if message_annotations is not None:
            encode_into(out, MessageAnnotations(message_annotations))
        if properties is not None:
            encode_into(out, properties)
        if application_properties is not None:
            encode_into(out, ApplicationProperties(application_properties))
        if isinstance(body, (bytes, bytearray)):
            encode_into(out, Data(bytes(body)))
        elif isinstance(body, (Data, AmqpSequence, AmqpValue)):
            encode_into(out, body)
        elif isinstance(body, list) and body and all(
            isinstance(b, (Data, AmqpSequence)) for b in body
        ):
            for section in body:
                encode_into(out, section)
        else:
            encode_into(out, AmqpValue(body))
        if footer is not None:
            encode_into(out, Footer(footer))
        return cls.parse(bytes(out))

    def _get(self, code: int) -> Any:
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        if code not in cache:
            cache[code] = _decode_section(self.payload, self._spans.get(code))
        return cache[code]

    def section_field(self, code: int, index: int) -> object:
        """Field `index` of the header (0x70) or properties (0x73) list, decoded
        alone: the broker needs ttl, `to` and absolute-expiry-time of every
        message it stores, and building the whole composite for that costs
        several times more.  None when the section or the field is absent."""
        table = self._table if self._table is not None else self._spans
        span = table.get(code)
        if span is None:
            return None
        buf, end = self.payload, span[1]
        _, pos = _section_code(buf, span[0] + 1, end)
        c = buf[pos]
        if c == 0xC0:
            count, pos = buf[pos + 2], pos + 3
        elif c == 0xD0:
            count, pos = _u32(buf, pos + 5)[0], pos + 9
        elif c == 0x45:
            return None
        else:
            raise DecodeError(f"section 0x{code:x} is not a list", pos)
        if index >= count:
            return None
        for _ in range(index):
            pos = skip(buf, pos, end)
        return decode(buf, pos, end)[0]

    @property
    def header(self) -> Header | None:
        if self._header_override is not None:
            return self._header_override
        return self._get(_HEADER)  # type: ignore[no-any-return]

    @property
    def delivery_annotations(self) -> dict[object, object] | None:
        s = self._get(_DA)
        return None if s is None else s.value

    @property
    def message_annotations(self) -> dict[object, object] | None:
        if self._annotations_override is not None:
            return self._annotations_override
        s = self._get(_MA)
        return None if s is None else s.value

    @property
    def properties(self) -> Properties | None:
        return self._get(_PROPS)  # type: ignore[no-any-return]

    @property
    def application_properties(self) -> dict[object, object] | None:
        s = self._get(_APP)
        return None if s is None else s.value

    @property
    def footer(self) -> dict[object, object] | None:
        s = self._get(_FOOTER)
        return None if s is None else s.value

    @property
    def body(self) -> list[object]:
        """All body sections (data, amqp-sequence or amqp-value objects), decoded."""
        span = self._spans.get(0x75)
        if span is None:
            return []
        sections: list[object] = []
        pos, end = span
        while pos < end:
            value, pos = decode(self.payload, pos, end)
            sections.append(value)
        return sections

    @property
    def bare(self) -> bytes:
        """The bare message bytes (§3.2: properties through body), untouched."""
        self._spans  # noqa: B018 - locates the sections (and so the bare bounds)
        return self.payload[self._bare_start : self._bare_end]

    @property
    def has_header(self) -> bool:
        return _HEADER in self._spans or self._header_override is not None

    def has_section(self, code: int) -> bool:
        return code in self._spans

    def with_changes(
        self,
        *,
        header: Header | None = None,
        message_annotations: dict[object, object] | None = None,
    ) -> Message:
        """A copy sharing the payload, with the header and/or message annotations replaced."""
        other = Message(self.payload)
        other._table = self._spans
        other._bare_start = self._bare_start
        other._bare_end = self._bare_end
        other._cache = self._cache
        other._header_override = header if header is not None else self._header_override
        other._annotations_override = (
            message_annotations if message_annotations is not None else self._annotations_override
        )
        return other

    def section_bytes(self, code: int) -> bytes | None:
        """The encoded section `code` (0x70 header, 0x72 annotations…) as received."""
        span = self._spans.get(code)
        return None if span is None else self.payload[span[0]:span[1]]

    def annotate(self, extra: dict[object, object], encoded: bytes | None = None,
                 header: bytes | None = None) -> Message:
        """A message whose annotations are this one's updated with `extra`, as new
        bytes, and whose header is `header` (an encoded header section) if given.
        The router stamps every routed message (`x-exchange`, `x-routing-key`, the
        first delivery's header); most messages have no annotations of their own,
        so the common case splices `encoded` (the message-annotations section of
        `extra`, which a caller that sends the same annotations many times
        encodes once) in before the bare message.  Nothing else is re-encoded:
        the other sections are copied as they arrived."""
        if self._annotations_override is not None or self._header_override is not None:
            return Message.trusted(self.encode()).annotate(extra, encoded, header)
        spans = self._spans
        payload = self.payload
        head_end = spans[_HEADER][1] if _HEADER in spans else 0
        da_end = spans[_DA][1] if _DA in spans else head_end
        if _MA in spans:
            merged = dict(self.message_annotations or {})
            merged.update(extra)
            encoded, rest = encode_annotations(merged), spans[_MA][1]
        else:
            if encoded is None:
                encoded = encode_annotations(extra)
            rest = da_end
        head = payload[:head_end] if header is None else header
        return Message.trusted(head + payload[head_end:da_end] + encoded + payload[rest:])

    def encode(self) -> bytes:
        """The bytes to send: the payload itself unless a header/annotation was replaced."""
        if self._header_override is None and self._annotations_override is None:
            return self.payload
        payload, spans = self.payload, self._spans
        out = bytearray()
        if self._header_override is not None:
            encode_into(out, self._header_override)
        elif _HEADER in spans:
            out += payload[slice(*spans[_HEADER])]
        if _DA in spans:
            out += payload[slice(*spans[_DA])]
        if self._annotations_override is not None:
            encode_into(out, MessageAnnotations(self._annotations_override))
        elif _MA in spans:
            out += payload[slice(*spans[_MA])]
        out += payload[self._bare_start : self._bare_end]
        if _FOOTER in spans:
            out += payload[slice(*spans[_FOOTER])]
        return bytes(out)

    def __len__(self) -> int:
        return len(self.payload)

    def __repr__(self) -> str:
        return f"Message({len(self.payload)} bytes)"


