"""The wire form of Azure Service Bus subscription rules, for `add-rule`,
`remove-rule` and `enumerate-rules` on `TOPIC/Subscriptions/SUB/$management`
(what the Node SDK's `ServiceBusRuleManager` calls).

A rule arrives as a map: `rule-name`, and `rule-description` holding one of
`sql-filter` {expression} or `correlation-filter` {correlation-id, message-id,
to, reply-to, label, session-id, reply-to-session-id, content-type,
properties}; a `sql-rule-action` is refused (we do not rewrite messages).  A
rule goes back as Service Bus's described lists: a rule description
(descriptor 0x0000013700000004) of [filter, action, name], the filter a SQL
(…1370000006: [expression, compatibility-level 20]), true (…7), false (…8)
or correlation (…9) filter, and the action the empty rule action (…5).
"""

from __future__ import annotations

from collections.abc import Mapping

from broker.codec.types import Described, Int, ULong
from broker.filters.fields import FilterError
from broker.nodes.azure import Rule, RuleError, correlation_rule, sql_rule

RULE_DESCRIPTION = ULong(0x0000013700000004)
SQL_FILTER = ULong(0x0000001370000006)
TRUE_FILTER = ULong(0x0000001370000007)
FALSE_FILTER = ULong(0x0000001370000008)
CORRELATION_FILTER = ULong(0x0000001370000009)
EMPTY_ACTION = ULong(0x0000001370000005)
COMPATIBILITY_LEVEL = Int(20)  # what Service Bus reports for a SQL filter
# a correlation filter's fields, in its described list's order
_CORRELATION_ORDER = ("correlation-id", "message-id", "to", "reply-to", "label",
                      "session-id", "reply-to-session-id", "content-type", "properties")


def rule_from_request(fields: Mapping[object, object]) -> Rule:
    """The rule an add-rule request describes; RuleError(400) if it is not one
    we can keep."""
    name = fields.get("rule-name")
    if not isinstance(name, str) or not name:
        raise RuleError(400, "add-rule needs a 'rule-name' string")
    description = fields.get("rule-description")
    if not isinstance(description, Mapping):
        raise RuleError(400, "add-rule needs a 'rule-description' map")
    action = description.get("sql-rule-action")
    if action is not None:
        raise RuleError(400, "rule actions (sql-rule-action) are not supported by this broker",
                        "amqp:not-implemented")
    sql = description.get("sql-filter")
    correlation = description.get("correlation-filter")
    try:
        if isinstance(sql, Mapping):
            return sql_rule(name, sql.get("expression"))
        if isinstance(correlation, Mapping):
            return correlation_rule(name, correlation)
    except FilterError as exc:
        raise RuleError(400, f"rule {name!r}: {exc}") from None
    raise RuleError(400, "a rule-description needs a 'sql-filter' or 'correlation-filter' map")


def described_rule(rule: Rule) -> Described:
    """One rule as enumerate-rules answers it."""
    if rule.kind == "sql":
        filter_ = Described(SQL_FILTER, [rule.definition, COMPATIBILITY_LEVEL])
    elif rule.kind == "correlation":
        definition = rule.definition if isinstance(rule.definition, Mapping) else {}
        filter_ = Described(CORRELATION_FILTER,
                            [definition.get(k) for k in _CORRELATION_ORDER])
    elif rule.kind == "false":
        filter_ = Described(FALSE_FILTER, [])
    else:
        filter_ = Described(TRUE_FILTER, [])
    return Described(RULE_DESCRIPTION, [filter_, Described(EMPTY_ACTION, []), rule.name])
