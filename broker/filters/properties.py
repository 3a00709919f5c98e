"""Property filter expressions (AMQP Filter Expressions §4.2.4, §4.2.5):
`amqp:properties-filter` (0x173) and `amqp:application-properties-filter`
(0x174), as RabbitMQ 4.1+ implements them.

Theory of operation.  The filter's value is a map of field → reference value.
Every entry must match (they are ANDed), and a message without the field does
not match.  A reference value matches when:

- it is null: any value, even none (for application properties the key must
  still be present);
- it is a string starting with `&p:` / `&s:`: a string field that starts /
  ends with the rest (`&&` stands for one literal `&`; any other leading `&`
  is an error);
- otherwise it is equal and of the same kind: numbers equal as numbers across
  the integer and floating types (a boolean is not a number), strings and
  symbols as strings, binaries as bytes, booleans as booleans, others (uuid)
  of the same type and equal.

Keys of `amqp:properties-filter` are the §3.2.4 field names as symbols
(`message-id`, `subject`, `reply-to-group-id`…); keys of the
application-properties filter are strings.  A filter has 1 to
`MAX_ENTRIES` entries.  Each entry is compiled once into a test of one value.

`CorrelationFilter` is Azure Service Bus's subscription-rule cousin: the same
idea with Service Bus's field names, exact equality only, null fields ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from broker.codec.messaging import Properties
from broker.codec.types import Array, Described
from broker.filters.fields import FilterError, MessageFields
from broker.filters.sql import compare

MAX_ENTRIES: Final = 16  # "impose a limit on the complexity of each filter" (§7.1), as RabbitMQ

# §3.2.4 field names as they appear in the filter (symbols), and as attributes
PROPERTY_FIELDS: Final = {name.replace("_", "-"): name for name in Properties.__dataclass_fields__}

Test = Callable[[object], bool]


def _always(value: object) -> bool:
    return True


def reference_test(reference: object, what: str) -> Test:
    """The test a message value must pass to match `reference`."""
    if reference is None:
        return _always
    if isinstance(reference, (dict, list, tuple, Array, Described)):
        raise FilterError(f"{what}: a reference value must be of a simple type, "
                          f"not {type(reference).__name__}")
    if type(reference) is str and reference.startswith("&"):
        modifier, rest = reference[:3], reference[3:]
        if modifier == "&p:":
            return lambda v: isinstance(v, str) and v.startswith(rest)
        if modifier == "&s:":
            return lambda v: isinstance(v, str) and v.endswith(rest)
        if reference.startswith("&&"):
            literal = reference[1:]
            return lambda v: isinstance(v, str) and v == literal
        raise FilterError(f"{what}: {reference!r} starts with '&' but not with &p:, &s: or &&")
    return lambda v: compare("=", v, reference) is True


def _entries(mapping: object, kind: str) -> list[tuple[object, object]]:
    if not isinstance(mapping, Mapping):
        raise FilterError(f"{kind} needs a map, not {type(mapping).__name__}")
    if not mapping:
        raise FilterError(f"{kind} is empty")
    if len(mapping) > MAX_ENTRIES:
        raise FilterError(f"{kind} has {len(mapping)} entries; at most {MAX_ENTRIES} are allowed")
    return list(mapping.items())


class PropertiesFilter:
    """`amqp:properties-filter`: a map of §3.2.4 field (symbol) → reference value."""

    __slots__ = ("_tests", "mapping")
    KIND: Final = "amqp:properties-filter"

    def __init__(self, mapping: Mapping[object, object]) -> None:
        tests: list[tuple[str, Test]] = []
        for key, reference in _entries(mapping, self.KIND):
            attribute = PROPERTY_FIELDS.get(key) if isinstance(key, str) else None
            if attribute is None:
                raise FilterError(f"{self.KIND}: unknown field {key!r} "
                                  f"({', '.join(PROPERTY_FIELDS)})")
            tests.append((attribute, reference_test(reference, f"{self.KIND} {key}")))
        self.mapping = dict(mapping)
        self._tests = tuple(tests)

    def matches(self, fields: MessageFields, now: float) -> bool:
        properties = fields.properties
        for attribute, test in self._tests:
            value = None if properties is None else getattr(properties, attribute)
            if not test(value):
                return False
        return True

    def __repr__(self) -> str:
        return f"PropertiesFilter({self.mapping!r})"


class ApplicationPropertiesFilter:
    """`amqp:application-properties-filter`: a map of string → reference value."""

    __slots__ = ("_tests", "mapping")
    KIND: Final = "amqp:application-properties-filter"

    def __init__(self, mapping: Mapping[object, object]) -> None:
        tests: list[tuple[str, Test]] = []
        for key, reference in _entries(mapping, self.KIND):
            if not isinstance(key, str):  # a symbol key is taken as the same name
                raise FilterError(f"{self.KIND}: keys must be strings, not {key!r}")
            tests.append((key, reference_test(reference, f"{self.KIND} {key!r}")))
        self.mapping = dict(mapping)
        self._tests = tuple(tests)

    def matches(self, fields: MessageFields, now: float) -> bool:
        properties = fields.application_properties
        for key, test in self._tests:
            if key not in properties or not test(properties[key]):
                return False
        return True

    def __repr__(self) -> str:
        return f"ApplicationPropertiesFilter({self.mapping!r})"


def compile_properties_filter(mapping: Mapping[object, object]) -> PropertiesFilter:
    return PropertiesFilter(mapping)


def compile_application_properties_filter(
    mapping: Mapping[object, object],
) -> ApplicationPropertiesFilter:
    return ApplicationPropertiesFilter(mapping)


class CorrelationFilter:
    """Azure Service Bus's correlation filter (a subscription rule): every field
    it names must equal the message's, exactly (no `&p:` modifiers); user
    `properties` are application properties.  Fields given as null are left
    out; at least one must remain."""

    __slots__ = ("_application", "_tests", "mapping")
    KIND: Final = "com.microsoft:correlation-filter"
    # the filter's keys → §3.2.4 properties attributes
    FIELDS: Final = {
        "correlation-id": "correlation_id", "message-id": "message_id", "to": "to",
        "reply-to": "reply_to", "label": "subject", "session-id": "group_id",
        "reply-to-session-id": "reply_to_group_id", "content-type": "content_type",
    }

    def __init__(self, mapping: Mapping[object, object]) -> None:
        if not isinstance(mapping, Mapping):
            raise FilterError(f"{self.KIND} needs a map, not {type(mapping).__name__}")
        tests: list[tuple[str, Test]] = []
        application: list[tuple[str, Test]] = []
        for key, value in mapping.items():
            if value is None:
                continue
            if key == "properties":
                if not isinstance(value, Mapping):
                    raise FilterError(f"{self.KIND} properties must be a map")
                for name, reference in value.items():
                    if reference is not None:
                        application.append((str(name), _equal_test(reference, str(name))))
                continue
            attribute = self.FIELDS.get(str(key))
            if attribute is None:
                raise FilterError(f"{self.KIND}: unknown field {key!r} "
                                  f"({', '.join(self.FIELDS)}, properties)")
            tests.append((attribute, _equal_test(value, str(key))))
        if not tests and not application:
            raise FilterError(f"{self.KIND} names no field to match")
        if len(tests) + len(application) > MAX_ENTRIES:
            raise FilterError(f"{self.KIND} has more than {MAX_ENTRIES} conditions")
        self.mapping = dict(mapping)
        self._tests = tuple(tests)
        self._application = tuple(application)

    def matches(self, fields: MessageFields, now: float) -> bool:
        if self._tests:
            properties = fields.properties
            if properties is None:
                return False
            for attribute, test in self._tests:
                if not test(getattr(properties, attribute)):
                    return False
        values = fields.application_properties
        for key, test in self._application:
            if key not in values or not test(values[key]):
                return False
        return True

    def __repr__(self) -> str:
        return f"CorrelationFilter({self.mapping!r})"


def _equal_test(reference: object, what: str) -> Test:
    if isinstance(reference, (dict, list, tuple, Array, Described)):
        raise FilterError(f"{CorrelationFilter.KIND} {what}: a value must be of a simple "
                          f"type, not {type(reference).__name__}")
    return lambda v: compare("=", v, reference) is True
