"""Message filters: JMS selectors, AMQP SQL filter expressions and Azure's
subscription rules (one language, three dialects), property filters, and the `MessageFields` view they
read: pure functions over a message, compiled once per consumer."""

from __future__ import annotations

from broker.filters.fields import AllOf, FieldsCache, Filter, FilterError, MessageFields
from broker.filters.filterset import (
    APPLICATION_PROPERTIES_FILTER,
    APPLICATION_PROPERTIES_FILTER_CODE,
    PROPERTIES_FILTER,
    PROPERTIES_FILTER_CODE,
    SELECTOR_FILTER,
    SELECTOR_FILTER_CODE,
    SQL_FILTER,
    SQL_FILTER_CODE,
    compile_filter,
)
from broker.filters.properties import (
    ApplicationPropertiesFilter,
    PropertiesFilter,
    compile_application_properties_filter,
    compile_properties_filter,
)
from broker.filters.sql import (
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    SELECTOR,
    SQL,
    Dialect,
    SqlFilter,
    compile_selector,
    compile_sql,
)

__all__ = [
    "APPLICATION_PROPERTIES_FILTER",
    "APPLICATION_PROPERTIES_FILTER_CODE",
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "PROPERTIES_FILTER",
    "PROPERTIES_FILTER_CODE",
    "SELECTOR",
    "SELECTOR_FILTER",
    "SELECTOR_FILTER_CODE",
    "SQL",
    "SQL_FILTER",
    "SQL_FILTER_CODE",
    "AllOf",
    "ApplicationPropertiesFilter",
    "Dialect",
    "FieldsCache",
    "Filter",
    "FilterError",
    "MessageFields",
    "PropertiesFilter",
    "SqlFilter",
    "compile_application_properties_filter",
    "compile_filter",
    "compile_properties_filter",
    "compile_selector",
    "compile_sql",
]
