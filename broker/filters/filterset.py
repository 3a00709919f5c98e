"""Which filter a source's filter-set entry (§3.5.8) asks for, by descriptor.

The key of a filter-set entry is free; the descriptor of its value says what
it is.  Both the symbolic and the numeric descriptors are accepted (the
RabbitMQ clients send either).  Descriptors this package does not implement
(stream offsets, Bloom filters, no-local…) give None, so the caller can hand
them to whoever does, and leave the rest out of its attach reply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from broker.codec.types import Described, Symbol
from broker.filters.fields import Filter, FilterError
from broker.filters.properties import (
    compile_application_properties_filter,
    compile_properties_filter,
)
from broker.filters.sql import compile_selector, compile_sql

SELECTOR_FILTER: Final = Symbol("apache.org:selector-filter:string")
SELECTOR_FILTER_CODE: Final = 0x0000468C_00000004
SQL_FILTER: Final = Symbol("amqp:sql-filter")
SQL_FILTER_CODE: Final = 0x120
PROPERTIES_FILTER: Final = Symbol("amqp:properties-filter")
PROPERTIES_FILTER_CODE: Final = 0x173
APPLICATION_PROPERTIES_FILTER: Final = Symbol("amqp:application-properties-filter")
APPLICATION_PROPERTIES_FILTER_CODE: Final = 0x174


def _string(compile_text: Callable[[str], Filter], name: str) -> Callable[[object], Filter]:
    def build(value: object) -> Filter:
        if not isinstance(value, str):
            raise FilterError(f"{name} needs a string, not {type(value).__name__}")
        return compile_text(value)

    return build


def _map(compile_map: Callable[[dict[object, object]], Filter],
         name: str) -> Callable[[object], Filter]:
    def build(value: object) -> Filter:
        if not isinstance(value, dict):
            raise FilterError(f"{name} needs a map, not {type(value).__name__}")
        return compile_map(value)

    return build


_COMPILERS: Final[dict[object, Callable[[object], Filter]]] = {}
for _names, _build in (
    ((SELECTOR_FILTER, SELECTOR_FILTER_CODE), _string(compile_selector, SELECTOR_FILTER)),
    ((SQL_FILTER, SQL_FILTER_CODE), _string(compile_sql, SQL_FILTER)),
    ((PROPERTIES_FILTER, PROPERTIES_FILTER_CODE),
     _map(compile_properties_filter, PROPERTIES_FILTER)),
    ((APPLICATION_PROPERTIES_FILTER, APPLICATION_PROPERTIES_FILTER_CODE),
     _map(compile_application_properties_filter, APPLICATION_PROPERTIES_FILTER)),
):
    for _name in _names:
        _COMPILERS[_name] = _build


def compile_filter(value: object) -> Filter | None:
    """The compiled filter for one filter-set value: None when its descriptor
    is not one of the four above; FilterError when it is but the filter is
    invalid."""
    if not isinstance(value, Described):
        return None
    descriptor = value.descriptor
    if not isinstance(descriptor, (str, int)) or isinstance(descriptor, bool):
        return None
    build = _COMPILERS.get(descriptor)
    return None if build is None else build(value.value)
