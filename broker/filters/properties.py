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
