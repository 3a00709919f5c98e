"""What every filter shares: the error it raises, the protocol it meets, and
`MessageFields`, the view of a message's filterable sections.

Theory of operation.  A filter is compiled once, when a consumer attaches, and
then asked `matches(fields, now)` for every message the consumer might get.
The message side of that call is a `MessageFields`: it decodes the header,
the properties and the application-properties of one message lazily, each at
most once, from the message's own bytes.  It keeps what it decoded, the
`Message` does not: a stored stream message stays bytes, however many
filtered readers looked at it, and the decoded sections live exactly as long
as the `MessageFields` does.  Several filters asked about the same message
(the consumers of one stream) share one `MessageFields`; `FieldsCache` hands
the same one to every reader that reaches a message while it is still among
the recent few, so ten consumers at the head of a stream with ten different
filters decode each message's sections once between them.

The header is read as it was received: an override made with
`Message.with_changes` for one delivery is not seen (stored messages carry
none).  A section that does not decode is treated as absent, so a filter never
raises because of what a publisher sent: its fields are null, and a filter on
them does not match.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Protocol, TypeVar

from broker.codec.decode import decode
from broker.codec.messaging import (
    ApplicationProperties,
    Header,
    Message,
    MessageAnnotations,
    Properties,
)
from broker.errors import DecodeError

_HEADER, _MESSAGE_ANNOTATIONS, _PROPERTIES, _APPLICATION_PROPERTIES = 0x70, 0x72, 0x73, 0x74
_EMPTY: Mapping[object, object] = {}
_S = TypeVar("_S")  # a section's class


class FilterError(ValueError):
    """A filter that cannot be compiled: bad syntax, an unknown field, a limit
    exceeded.  `position` is the 0-based character offset in the expression
    where the problem was found (None when it is not about a position)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message, position)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        if self.position is None:
            return self.message
        return f"{self.message} (at position {self.position})"


class Filter(Protocol):
    """A compiled filter."""

    def matches(self, fields: MessageFields, now: float) -> bool:
        """Whether the message passes; `now` is wall-clock seconds (for UTC())."""
        ...


class MessageFields:
    """The header, properties and application-properties of one message,
    decoded on first use and kept for the other filters asking about it."""

    __slots__ = ("_annotations", "_application_properties", "_header", "_properties",
                 "message")

    def __init__(self, message: Message) -> None:
        self.message = message
        self._header: Header | None | bool = False  # False: not decoded yet
        self._properties: Properties | None | bool = False
        self._application_properties: Mapping[object, object] | None = None
        self._annotations: Mapping[object, object] | None = None

    def _section(self, code: int) -> object:
        try:
            raw = self.message.section_bytes(code)
            if raw is None:
                return None
            return decode(raw, 0, len(raw))[0]
        except DecodeError:
            return None

    def _section_of(self, code: int, kind: type[_S]) -> _S | None:
        """Section `code` when it decodes as a `kind`, else None."""
        value = self._section(code)
        return value if isinstance(value, kind) else None

    @property
    def header(self) -> Header | None:
        header = self._header
        if header is False:
            header = self._header = self._section_of(_HEADER, Header)
        return header  # type: ignore[return-value]

    @property
    def properties(self) -> Properties | None:
        properties = self._properties
        if properties is False:
            properties = self._properties = self._section_of(_PROPERTIES, Properties)
        return properties  # type: ignore[return-value]

    @property
    def application_properties(self) -> Mapping[object, object]:
        """The application-properties map; empty when the message has none."""
        found = self._application_properties
        if found is None:
            value = self._section(_APPLICATION_PROPERTIES)
            found = value.value if isinstance(value, ApplicationProperties) else _EMPTY
            self._application_properties = found
        return found

    @property
    def message_annotations(self) -> Mapping[object, object]:
        """The message-annotations map (RabbitMQ's `x-stream-filter-value` is
        one); empty when the message has none."""
        found = self._annotations
        if found is None:
            value = self._section(_MESSAGE_ANNOTATIONS)
            found = value.value if isinstance(value, MessageAnnotations) else _EMPTY
            self._annotations = found
        return found

    def __repr__(self) -> str:
        return f"MessageFields({self.message!r})"


class FieldsCache:
    """The `MessageFields` of the last `capacity` messages read, by key (a
    stream offset): readers close to one another share each message's
    decoding.  The oldest entry goes first when the cache is full."""

    __slots__ = ("_entries", "capacity")

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._entries: dict[Hashable, MessageFields] = {}

    def fields(self, key: Hashable, message: Message) -> MessageFields:
        entries = self._entries
        found = entries.get(key)
        if found is not None and found.message.payload is message.payload:
            return found
        found = MessageFields(message)
        if key in entries:
            del entries[key]  # a new message under an old key (a trimmed, reused offset)
        elif len(entries) >= self.capacity:
            del entries[next(iter(entries))]
        entries[key] = found
        return found

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class AllOf:
    """Several filters, all of which must pass (§3.5.8: a message passes a
    filter-set only if it passes every filter in it)."""

    __slots__ = ("filters",)

    def __init__(self, filters: Sequence[Filter]) -> None:
        self.filters = tuple(filters)

    def matches(self, fields: MessageFields, now: float) -> bool:
        for f in self.filters:
            if not f.matches(fields, now):
                return False
        return True

    def __repr__(self) -> str:
        return f"AllOf({list(self.filters)!r})"
