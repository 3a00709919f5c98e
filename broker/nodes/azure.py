"""Azure Service Bus's entity features over the registry's queues: scheduled
messages, deferred messages and their locks, the `$DeadLetterQueue`
sub-queue, and the rules that choose what a topic's subscription receives.

Theory of operation.  Service Bus entities are our queues (a topic is a
fanout exchange, `TOPIC/Subscriptions/SUB` a queue bound to it); what Service
Bus adds lives here, beside them, so that a queue knows nothing of it:

- Scheduled messages wait in one heap, soonest first, until the registry's
  housekeeping enqueues them (to the tick).
- A deferred message (a peek-lock receiver's `modified` with
  undeliverable-here) leaves its queue's delivery order and waits here by its
  sequence number, until `receive-by-sequence-number` takes it: in
  receive-and-delete mode it is gone, in peek-lock mode it is locked for the
  lock duration under a new lock token (a random UUID, which the client
  shows again to settle or renew) and stays deferred until settled through
  `update-disposition`.  A lapsed lock is noticed when it is next used: the
  message simply stays deferred.
- Dead-lettering moves a message to `ENTITY/$DeadLetterQueue` with the
  `DeadLetterReason` and `DeadLetterErrorDescription` properties the SDKs
  read.
- A subscription has rules; it receives a message if any rule matches.  A
  new subscription has Service Bus's one `$Default` rule, which matches
  everything; only subscriptions whose rules differ are kept here, so while
  there are none, routing pays nothing for rules at all (`admitted` is
  skipped when `has_rules` is false).

Pure: every method that needs the time is given `now`.
"""

from __future__ import annotations

import heapq
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from broker.codec.messaging import Message
from broker.filters.fields import Filter, FilterError, MessageFields
from broker.filters.properties import CorrelationFilter
from broker.filters.sql import compile_azure_rule
from broker.nodes.base import ENTRY_OVERHEAD, Entry
from broker.nodes.queue import Queue, QueueFull

if TYPE_CHECKING:
    from broker.nodes.registry import Node, Registry

log = logging.getLogger("broker.azure")

DEAD_LETTER_SEGMENT = "$DeadLetterQueue"  # Azure's `ENTITY/$DeadLetterQueue` sub-queue
SUBSCRIPTIONS = "/Subscriptions/"  # Azure's `TOPIC/Subscriptions/SUB`
DEFAULT_RULE = "$Default"
MAX_RULES = 100  # per subscription (Service Bus allows 2,000; a local broker needs fewer)
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"  # Service Bus's reason


@dataclass(frozen=True, slots=True)
class Rule:
    """One subscription rule: its name, its filter as given (`kind` "sql",
    "correlation", "true" or "false" and the SQL text or correlation map), and
    the compiled filter (None for "true")."""

    name: str
    kind: str
    definition: object
    filter: Filter | None

    def matches(self, fields: MessageFields, now: float) -> bool:
        if self.filter is None:
            return self.kind == "true"
        return self.filter.matches(fields, now)


def true_rule(name: str = DEFAULT_RULE) -> Rule:
    return Rule(name, "true", None, None)


def false_rule(name: str) -> Rule:
    return Rule(name, "false", None, None)


def rule_of(name: str, kind: str, definition: object) -> Rule:
    """A rule from what `Rule` keeps of it (the topology file's form)."""
    if kind == "sql":
        return sql_rule(name, definition)
    if kind == "correlation" and isinstance(definition, Mapping):
        return correlation_rule(name, definition)
    return false_rule(name) if kind == "false" else true_rule(name)


def sql_rule(name: str, expression: object) -> Rule:
    """A SQL-filter rule; FilterError if the expression does not compile."""
    if not isinstance(expression, str):
        raise FilterError(f"a SQL rule needs a string expression, not {type(expression).__name__}")
    return Rule(name, "sql", expression, compile_azure_rule(expression))


def correlation_rule(name: str, fields: Mapping[object, object]) -> Rule:
    return Rule(name, "correlation", dict(fields), CorrelationFilter(fields))


class RuleError(ValueError):
    """A rule operation that cannot be done: `status` is the HTTP-style code
    the management node answers with (404 unknown, 409 exists, 400 bad), and
    `condition` the error condition Service Bus would name."""

    CONDITIONS: ClassVar[dict[int, str]] = {
        404: "amqp:not-found", 409: "com.microsoft:entity-already-exists",
        400: "com.microsoft:argument-error"}

    def __init__(self, status: int, message: str, condition: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.condition = condition or self.CONDITIONS.get(status, "amqp:internal-error")


class MessagesNotFound(LookupError):
    """Deferred messages asked for by sequence number that are not there (or
    are locked by another receiver)."""

    def __init__(self, sequences: Sequence[int]) -> None:
        super().__init__(f"no deferred message with sequence number(s) "
                         f"{', '.join(map(str, sequences))}")
        self.sequences = tuple(sequences)


class _Lock:
    __slots__ = ("entry", "queue", "until")

    def __init__(self, queue: str, entry: Entry, until: float) -> None:
        self.queue = queue
        self.entry = entry
        self.until = until


# what update-disposition's `disposition-status` may say (Service Bus's spelling)
COMPLETED, ABANDONED, DEFERRED, SUSPENDED = "completed", "abandoned", "defered", "suspended"
DISPOSITIONS = (COMPLETED, ABANDONED, DEFERRED, SUSPENDED)


class AzureEntities:
    """Scheduled and deferred messages, dead-lettering, and subscription rules
    for the queues of one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.lock_duration = 60.0  # seconds a peek-lock lasts (the container sets it)
        self.max_delivery_count = 10  # deliveries before a message is dead-lettered
        # (when, sequence, queue, entry): soonest first
        self._scheduled: list[tuple[float, int, str, Entry]] = []
        self._deferred: dict[str, dict[int, Entry]] = {}  # queue → sequence → entry
        self._locks: dict[uuid.UUID, _Lock] = {}
        self._token_of: dict[int, uuid.UUID] = {}  # id(entry) → its live lock token
        self._rules: dict[str, dict[str, Rule]] = {}  # only subscriptions not on the default

    # -- scheduled messages -----------------------------------------------------------

    def schedule(self, queue: str, entry: Entry, when: float) -> None:
        """Enqueue `entry` on `queue` at `when` (wall clock, to the tick)."""
        heapq.heappush(self._scheduled, (when, entry.sequence, queue, entry))

    def cancel_scheduled(self, queue: str, sequences: set[int]) -> None:
        self._scheduled = [s for s in self._scheduled
                           if not (s[2] == queue and s[1] in sequences)]
        heapq.heapify(self._scheduled)

    def enqueue_scheduled(self, now: float) -> None:
        due = self._scheduled
        while due and due[0][0] <= now:
            _, _, name, entry = heapq.heappop(due)
            node = self.registry.nodes.get(name)
            if node is None:
                continue  # the queue went away meanwhile: so does the message
            try:
                node.publish(entry, now)
            except QueueFull as exc:
                log.warning("scheduled message dropped: %s", exc)

    # -- deferred messages ------------------------------------------------------------

    def defer(self, queue: Queue, entry: Entry) -> None:
        """A delivered message the receiver deferred: it leaves the queue's
        delivery order (counted as a delivery) and waits for its sequence
        number to be asked for."""
        queue.settle(entry)  # off its queue (browsers skip it) and out of its journal
        entry.delivery_count += 1
        self._deferred.setdefault(queue.name, {})[entry.sequence] = entry

    def deferred(self, queue: str) -> Iterable[Entry]:
        """The queue's deferred messages, in sequence-number order."""
        found = self._deferred.get(queue, {})
        return [found[s] for s in sorted(found)]

    def receive_deferred(self, queue: str, sequences: Sequence[int], now: float, *,
                         lock: bool) -> list[tuple[Entry, uuid.UUID | None, float | None]]:
        """The deferred messages with these sequence numbers: locked (with each
        one's token and lock expiry) or, without `lock`, taken away.  All or
        none: MessagesNotFound names any that are absent or locked by another."""
        found = self._deferred.get(queue, {})
        missing = [s for s in sequences if s not in found or self._locked(found[s], now)]
        if missing:
            raise MessagesNotFound(missing)
        taken: list[tuple[Entry, uuid.UUID | None, float | None]] = []
        for sequence in dict.fromkeys(sequences):
            entry = found[sequence]
            if not lock:
                self._drop(queue, entry)
                taken.append((entry, None, None))
                continue
            stale = self._token_of.pop(id(entry), None)
            if stale is not None:  # a lapsed lock: that attempt counted as a delivery
                del self._locks[stale]
                entry.delivery_count += 1
            token = uuid.uuid4()
            until = now + self.lock_duration
            self._locks[token] = _Lock(queue, entry, until)
            self._token_of[id(entry)] = token
            taken.append((entry, token, until))
        return taken

    def _locked(self, entry: Entry, now: float) -> bool:
        token = self._token_of.get(id(entry))
        return token is not None and self._locks[token].until > now

    def renew(self, queue: str, token: uuid.UUID, now: float) -> float | None:
        """A deferred message's lock moves on by the lock duration; None when the
        token is unknown, another entity's, or its lock lapsed."""
        held = self._locks.get(token)
        if held is None or held.queue != queue or held.until <= now:
            return None
        held.until = now + self.lock_duration
        return held.until

    def settle_deferred(self, queue: str, token: uuid.UUID, status: str, now: float, *,
                        reason: str | None = None, description: str | None = None) -> bool:
        """update-disposition for a deferred message locked under `token`:
        completed (gone), abandoned (deferred again, one more delivery),
        defered (deferred again) or suspended (dead-lettered).  False when
        the lock is unknown, another entity's, or lapsed."""
        held = self._locks.get(token)
        if held is None or held.queue != queue or held.until <= now:
            return False
        entry = held.entry
        del self._locks[token]
        self._token_of.pop(id(entry), None)
        if status == COMPLETED:
            self._drop(queue, entry)
        elif status == SUSPENDED:
            self._drop(queue, entry)
            self.dead_letter(queue, entry.message, reason, description, now)
        elif status == ABANDONED:
            entry.delivery_count += 1
            if entry.delivery_count >= self.max_delivery_count:
                self._drop(queue, entry)
                self.dead_letter(queue, entry.message, MAX_DELIVERY_COUNT_EXCEEDED,
                                 "the message was delivered too many times", now)
        return True

    def _drop(self, queue: str, entry: Entry) -> None:
        found = self._deferred.get(queue)
        if found is not None and found.get(entry.sequence) is entry:
            del found[entry.sequence]
            if not found:
                del self._deferred[queue]
        token = self._token_of.pop(id(entry), None)
        if token is not None:
            del self._locks[token]
        entry.gone = True

    # -- dead-lettering ---------------------------------------------------------------

    def dead_letter(self, queue: str, message: Message, reason: str | None,
                    description: str | None, now: float) -> None:
        """Move a message to `queue`'s `$DeadLetterQueue` sub-queue, with the
        reason and description the SDKs read from its application properties
        (the bare message changes, as Service Bus's own does: encoded again)."""
        extra = {k: v for k, v in (("DeadLetterReason", reason),
                                   ("DeadLetterErrorDescription", description)) if v}
        if extra:
            merged = dict(message.application_properties or {})
            merged.update(extra)
            message = Message.create(
                message.body, header=message.header,
                message_annotations=message.message_annotations,
                properties=message.properties, application_properties=merged,
                footer=message.footer)
        target = self.registry.declare_queue(f"{queue}/{DEAD_LETTER_SEGMENT}")
        try:
            target.publish(Entry(message), now)
        except QueueFull as exc:
            log.warning("dead-lettered message dropped: %s", exc)

    # -- subscription rules -----------------------------------------------------------

    @property
    def has_rules(self) -> bool:
        """Whether any subscription has rules other than the default's."""
        return bool(self._rules)

    def rules(self, subscription: str) -> list[Rule]:
        found = self._rules.get(subscription)
        return list(found.values()) if found is not None else [true_rule()]

    def add_rule(self, subscription: str, rule: Rule) -> None:
        rules = {r.name: r for r in self.rules(subscription)}
        if rule.name in rules:
            raise RuleError(409, f"subscription {subscription!r} already has a rule "
                                 f"named {rule.name!r}")
        if len(rules) >= MAX_RULES:
            raise RuleError(400, f"subscription {subscription!r} has {MAX_RULES} rules already")
        rules[rule.name] = rule
        self._set_rules(subscription, rules)

    def remove_rule(self, subscription: str, name: str) -> None:
        rules = {r.name: r for r in self.rules(subscription)}
        if rules.pop(name, None) is None:  # Service Bus's words, which the SDKs recognise
            raise RuleError(404, f"The messaging entity '{subscription}/Rules/{name}' could "
                                 "not be found: the subscription has no rule of that name")
        self._set_rules(subscription, rules)

    def set_rules(self, subscription: str, rules: Iterable[Rule]) -> None:
        """Replace a subscription's rules (the config's declaration)."""
        self._set_rules(subscription, {r.name: r for r in rules})

    def _set_rules(self, subscription: str, rules: dict[str, Rule]) -> None:
        if list(rules.values()) == [true_rule()]:
            self._rules.pop(subscription, None)  # back to the default: costs nothing
        else:
            self._rules[subscription] = rules
        self.registry.topology_version += 1  # a data directory keeps them

    def custom_rules(self) -> dict[str, list[Rule]]:
        """The subscriptions whose rules are not the default's, with their rules."""
        return {name: list(rules.values()) for name, rules in self._rules.items()}

    def admitted(self, nodes: list[Node], message: Message, now: float) -> list[Node]:
        """The nodes a routed message may go to: a subscription with rules only
        if one of them matches."""
        rules = self._rules
        fields: MessageFields | None = None
        kept: list[Node] = []
        for node in nodes:
            found = rules.get(node.name)
            if found is not None:
                if fields is None:
                    fields = MessageFields(message)
                if not any(rule.matches(fields, now) for rule in found.values()):
                    continue
            kept.append(node)
        return kept

    # -- bookkeeping ------------------------------------------------------------------

    def queue_deleted(self, name: str) -> None:
        """A deleted queue takes its deferred and scheduled messages and rules with it."""
        for entry in list(self._deferred.get(name, {}).values()):
            self._drop(name, entry)
        self._rules.pop(name, None)
        if any(s[2] == name for s in self._scheduled):
            self._scheduled = [s for s in self._scheduled if s[2] != name]
            heapq.heapify(self._scheduled)

    @property
    def held_bytes(self) -> int:
        """What scheduled and deferred messages hold, for the memory alarm."""
        entries = [s[3] for s in self._scheduled]
        for found in self._deferred.values():
            entries.extend(found.values())
        return sum(e.size + ENTRY_OVERHEAD for e in entries)
