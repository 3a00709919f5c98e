"""RabbitMQ-compatible exchanges: bindings, the four exchange types, routing.

Theory of operation.  An exchange holds no messages; it holds bindings and
answers one question per publish: which bindings does this (routing key,
headers) pair match?  `route` then follows the matched bindings: a queue
destination is collected (each queue once, in the order first reached), an
exchange destination is looked up by name and matched in turn, breadth first.
Every exchange is matched at most once per publish, with all of the message's
routing keys, as RabbitMQ does; that is what makes binding cycles terminate
and lets a diamond reach its queue once.  Destinations are plain names, so
this module knows nothing of queue objects: a name the caller cannot resolve
is the caller's to drop.

The base class keeps every binding in an insertion-ordered dict (the
`bindings` listing and idempotent bind/unbind); the registry indexes bindings
by destination, so deleting a queue drops its bindings without a scan.  Each
type adds its own index for `match`:

- direct: binding key → bindings, one dict lookup per publish;
- fanout: every binding, keys ignored;
- topic: a trie over binding-key words.  A node has literal children, a `*`
  child and a `#` child; a publish walks only the branches its words can
  take, so its cost follows the key's length and the matching branches, not
  the number of bindings.  States (node, word position) are explored with an
  explicit stack.  A `#` node can be entered at many positions, and from
  several parents' states, so its states are deduplicated; every other node's
  state has a unique parent state, hence each binding is reported once and
  patterns like `#.#.#` cannot blow up exponentially.  Unbinding prunes the
  nodes left without bindings or children;
- headers: each binding's arguments are compiled once, at bind, into an
  any/all flag and a tuple of (key, expected value) conditions; a publish
  scans the compiled bindings (RabbitMQ scans too).

Keys are split as RabbitMQ's `split_topic_key` splits them: on every `.`,
keeping empty words (`a..b` is three words, `a.` two), except that the empty
key is zero words.  Hence `#` matches the empty key and `*` does not, and
`*` matches an empty word.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Final

EXCHANGE_TYPES: Final = ("direct", "fanout", "topic", "headers")

# destination kinds
QUEUE: Final = "queue"
EXCHANGE: Final = "exchange"
_KINDS: Final = (QUEUE, EXCHANGE)

_NO_ARGUMENTS: Mapping[str, object] = MappingProxyType({})
_NO_HEADERS: Mapping[object, object] = MappingProxyType({})
_MISSING: Final = object()
# key-agnostic exchanges are matched once per publish, whatever the keys
_ANY_KEY: Final = ("",)


def _no_arguments() -> Mapping[str, object]:
    return _NO_ARGUMENTS


@dataclass(frozen=True, slots=True)
class Binding:
    """One binding from an exchange to a queue or another exchange.

    Two bindings differing only in their arguments are different bindings
    (RabbitMQ keys bindings by all four parts plus the arguments).  The
    arguments are compared by value but left out of the hash, so a Binding
    can sit in sets and dict keys whatever its argument values are; they are
    copied into a read-only mapping so that the caller changing its dict later
    cannot change a binding an exchange already indexed.
    """

    source: str
    destination: str
    destination_kind: str
    key: str = ""
    arguments: Mapping[str, object] = field(default_factory=_no_arguments, hash=False)

    def __post_init__(self) -> None:
        if self.destination_kind not in _KINDS:
            raise ValueError(f"destination_kind must be {QUEUE!r} or {EXCHANGE!r}")
        arguments = self.arguments
        if arguments is not _NO_ARGUMENTS:
            frozen = MappingProxyType(dict(arguments)) if arguments else _NO_ARGUMENTS
            object.__setattr__(self, "arguments", frozen)


class Exchange(ABC):
    """Bindings of one exchange, and the matching rule of its type."""

    __slots__ = (
        "_bindings",
        "arguments",
        "auto_delete",
        "durable",
        "internal",
        "name",
    )

    type: ClassVar[str]
    # False for types that ignore the routing key: `route` matches them once
    # per publish instead of once per routing key
    routes_by_key: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        *,
        durable: bool = True,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, object] | None = None,
    ) -> None:
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        # internal: publishers may not target it directly (the caller's check);
        # it is still reached through exchange-to-exchange bindings
        self.internal = internal
        self.arguments: dict[str, object] = dict(arguments) if arguments else {}
        self._bindings: dict[Binding, None] = {}
        self._init_index()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self._bindings)} bindings)"

    @property
    def bindings(self) -> list[Binding]:
        """Every binding, in the order they were made."""
        return list(self._bindings)

    @property
    def binding_count(self) -> int:
        """How many bindings there are, without building the list (auto-delete checks)."""
        return len(self._bindings)

    def bind(self, binding: Binding) -> bool:
        """Add `binding`; False if an equal one exists (binding twice is not an error)."""
        if binding.source != self.name:
            raise ValueError(f"binding from {binding.source!r} given to exchange {self.name!r}")
        if binding in self._bindings:
            return False
        self._add(binding)  # first: a type may refuse the binding (ValueError)
        self._bindings[binding] = None
        return True

    def unbind(self, binding: Binding) -> bool:
        """Remove `binding`; False if it was not there (unbinding twice is not an error)."""
        if binding not in self._bindings:
            return False
        del self._bindings[binding]
        self._remove(binding)
        return True

    @abstractmethod
    def match(self, routing_key: str, headers: Mapping[object, object] | None) -> Iterable[Binding]:
        """The bindings (routing_key, headers) matches; a destination may repeat.

        The result may be a live view of the exchange's own index: iterate it
        before binding or unbinding again.
        """

    # Hooks for the per-type index.  `_init_index` makes it empty; `_add` runs
    # before the binding is stored and may raise ValueError to refuse it;
    # `_remove` runs after it is gone.
    def _init_index(self) -> None:
        pass

    def _add(self, binding: Binding) -> None:
        pass

    def _remove(self, binding: Binding) -> None:
        pass


class DirectExchange(Exchange):
    """Routes to the bindings whose key equals the routing key."""

    __slots__ = ("_by_key",)
    type = "direct"

    def _init_index(self) -> None:
        self._by_key: dict[str, dict[Binding, None]] = {}

    def match(self, routing_key: str, headers: Mapping[object, object] | None) -> Iterable[Binding]:
        return self._by_key.get(routing_key, ())

    def _add(self, binding: Binding) -> None:
        self._by_key.setdefault(binding.key, {})[binding] = None

    def _remove(self, binding: Binding) -> None:
        group = self._by_key[binding.key]
        del group[binding]
        if not group:
            del self._by_key[binding.key]


class FanoutExchange(Exchange):
    """Routes to every binding; keys are ignored."""

    __slots__ = ()
    type = "fanout"
    routes_by_key = False

    def match(self, routing_key: str, headers: Mapping[object, object] | None) -> Iterable[Binding]:
        return self._bindings


def topic_words(key: str) -> list[str]:
    """A topic key's words, split as RabbitMQ splits them (the empty key has none)."""
    return key.split(".") if key else []


class _TrieNode:
    """One word position of the topic trie.

    `*` and `#` get their own slots rather than entries in `words`, so a
    routing key whose word is literally `*` or `#` finds no literal child and
    is matched once, by the wildcard branches, not twice.
    """

    __slots__ = ("bindings", "hash", "star", "words")

    def __init__(self) -> None:
        self.words: dict[str, _TrieNode] = {}
        self.star: _TrieNode | None = None
        self.hash: _TrieNode | None = None
        self.bindings: dict[Binding, None] = {}

    def child(self, word: str) -> _TrieNode | None:
        if word == "*":
            return self.star
        if word == "#":
            return self.hash
        return self.words.get(word)

    def add_child(self, word: str) -> _TrieNode:
        node = self.child(word)
        if node is None:
            node = _TrieNode()
            if word == "*":
                self.star = node
            elif word == "#":
                self.hash = node
            else:
                self.words[word] = node
        return node

    def drop_child(self, word: str) -> None:
        if word == "*":
            self.star = None
        elif word == "#":
            self.hash = None
        else:
            del self.words[word]

    def is_empty(self) -> bool:
        return not self.bindings and not self.words and self.star is None and self.hash is None


class TopicExchange(Exchange):
    """Routes by dot-separated patterns: `*` is one word, `#` zero or more."""

    __slots__ = ("_root",)
    type = "topic"

    def _init_index(self) -> None:
        self._root = _TrieNode()

    @property
    def node_count(self) -> int:
        """Trie nodes below the root (0 once every binding is gone): pruning is observable."""
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            children = list(node.words.values())
            if node.star is not None:
                children.append(node.star)
            if node.hash is not None:
                children.append(node.hash)
            count += len(children)
            stack.extend(children)
        return count

    def _add(self, binding: Binding) -> None:
        node = self._root
        for word in topic_words(binding.key):
            node = node.add_child(word)
        node.bindings[binding] = None

    def _remove(self, binding: Binding) -> None:
        path: list[tuple[_TrieNode, str]] = []  # (parent, word) down to the binding's node
        node = self._root
        for word in topic_words(binding.key):
            child = node.child(word)
            assert child is not None, "a stored binding's path exists"
            path.append((node, word))
            node = child
        del node.bindings[binding]
        while path and node.is_empty():
            parent, word = path.pop()
            parent.drop_child(word)
            node = parent

    def match(self, routing_key: str, headers: Mapping[object, object] | None) -> Iterable[Binding]:
        """Walk the trie over the key's words.  A state is (node, i, eating): at
        `node` with word i next, `eating` when `node` is a `#` that may take
        word i (go on eating) or stop (match below it from word i).  Each `#`
        state is visited once (`seen`), and every other state is reached from
        exactly one parent state, so the walk is at most trie nodes × words and
        reports each binding once, however many `#`s a pattern has."""
        words = routing_key.split(".") if routing_key else []
        end = len(words)
        matched: list[Binding] = []
        stack: list[tuple[_TrieNode, int, bool]] = [(self._root, 0, False)]
        pop = stack.pop
        push = stack.append
        seen: set[tuple[_TrieNode, int]] | None = None  # `#` states; made only if needed
        while stack:
            node, i, eating = pop()
            if eating:
                if seen is None:
                    seen = set()
                if not node.words and node.star is None and node.hash is None:
                    i = end  # a trailing `#` takes the rest of the key at once
                if (node, i) in seen:
                    continue
                seen.add((node, i))
                if i < end:
                    push((node, i + 1, True))
                push((node, i, False))
                continue
            hash_node = node.hash
            if i == end:
                if node.bindings:
                    matched.extend(node.bindings)
                if hash_node is not None:  # `#` matching zero words
                    push((hash_node, end, True))
                continue
            # pushed in reverse so that literal branches are explored first
            if hash_node is not None:
                push((hash_node, i, True))
            child = node.star
            if child is not None:
                push((child, i + 1, False))
            child = node.words.get(words[i])
            if child is not None:
                push((child, i + 1, False))
        return matched


_X_MATCH: Final = "x-match"
_X_MATCH_MODES: Final = ("all", "any", "all-with-x", "any-with-x")

_Conditions = tuple[tuple[str, object], ...]


def split_binding_args(arguments: Mapping[str, object]) -> tuple[bool, _Conditions]:
    """A headers binding's arguments → (match any?, conditions).

    `x-match` picks the mode (`all` when absent) and is never a condition
    itself; other `x-` arguments are conditions only in the `*-with-x` modes.
    A condition whose expected value is None (AMQP null, RabbitMQ's `void`)
    asks only that the header be present.  A malformed `x-match` is refused
    with ValueError, as RabbitMQ refuses the binding.
    """
    mode = arguments.get(_X_MATCH, "all")
    if not isinstance(mode, str) or mode not in _X_MATCH_MODES:
        raise ValueError(
            f"invalid x-match {mode!r}: expected 'all', 'any', 'all-with-x' or 'any-with-x'"
        )
    with_x = mode.endswith("-with-x")
    conditions = tuple(
        (key, value)
        for key, value in arguments.items()
        if key != _X_MATCH and (with_x or not key.startswith("x-"))
    )
    return mode.startswith("any"), conditions


def _same_value(expected: object, actual: object) -> bool:
    # Python's True == 1 == 1.0, but a boolean header is not a number (AMQP,
    # like Erlang, types them apart); numbers of different AMQP types still
    # compare by value, as RabbitMQ's == does (the int wrappers subclass int).
    if expected.__class__ is bool or actual.__class__ is bool:
        return expected is actual
    return bool(expected == actual)


def _conditions_match(
    match_any: bool, conditions: _Conditions, headers: Mapping[object, object]
) -> bool:
    if match_any:
        for key, expected in conditions:
            actual = headers.get(key, _MISSING)
            if actual is not _MISSING and (expected is None or _same_value(expected, actual)):
                return True
        return False  # so `any` with no conditions matches nothing
    for key, expected in conditions:
        actual = headers.get(key, _MISSING)
        if actual is _MISSING or (expected is not None and not _same_value(expected, actual)):
            return False
    return True  # so `all` with no conditions matches everything


def headers_match(arguments: Mapping[str, object], headers: Mapping[object, object] | None) -> bool:
    """Whether a headers binding with these arguments matches these headers."""
    match_any, conditions = split_binding_args(arguments)
    return _conditions_match(match_any, conditions, _NO_HEADERS if headers is None else headers)


class HeadersExchange(Exchange):
    """Routes by the message's headers (application-properties) against binding arguments."""

    __slots__ = ("_compiled",)
    type = "headers"
    routes_by_key = False

    def _init_index(self) -> None:
        # binding → (match any?, conditions), in binding order
        self._compiled: dict[Binding, tuple[bool, _Conditions]] = {}

    def _add(self, binding: Binding) -> None:
        self._compiled[binding] = split_binding_args(binding.arguments)

    def _remove(self, binding: Binding) -> None:
        del self._compiled[binding]

    def match(self, routing_key: str, headers: Mapping[object, object] | None) -> Iterable[Binding]:
        if headers is None:
            headers = _NO_HEADERS
        return [
            binding
            for binding, (match_any, conditions) in self._compiled.items()
            if _conditions_match(match_any, conditions, headers)
        ]


class DefaultExchange(Exchange):
    """The nameless direct exchange: every queue is implicitly bound by its own name.

    The implicit bindings are not stored; `match` makes the one the routing
    key names.  Whether that queue exists is the caller's question.
    """

    __slots__ = ()
    type = "direct"

    def __init__(self) -> None:
        super().__init__("")

    def bind(self, binding: Binding) -> bool:
        raise ValueError("the default exchange cannot be bound")

    def unbind(self, binding: Binding) -> bool:
        raise ValueError("the default exchange cannot be bound")

    def match(self, routing_key: str, headers: Mapping[object, object] | None) -> Iterable[Binding]:
        return (Binding("", routing_key, QUEUE, routing_key),)


_CLASSES: Final[Mapping[str, type[Exchange]]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
}


def make_exchange(
    name: str,
    type: str = "direct",  # shadows the builtin: it is the AMQP field's name
    *,
    durable: bool = True,
    auto_delete: bool = False,
    internal: bool = False,
    arguments: Mapping[str, object] | None = None,
) -> Exchange:
    """An empty exchange of the named type; ValueError for a type we do not know.

    The name "" is the default exchange's, so it gets a `DefaultExchange`
    (never a bindable direct exchange that would shadow it); it is a direct
    exchange, and asking for any other type of it is a ValueError.
    """
    cls = _CLASSES.get(type)
    if cls is None:
        raise ValueError(f"unknown exchange type {type!r}; expected one of {EXCHANGE_TYPES}")
    if not name:
        if type != "direct":
            raise ValueError("the default exchange is a direct exchange")
        return DefaultExchange()
    return cls(
        name, durable=durable, auto_delete=auto_delete, internal=internal, arguments=arguments
    )


def route(
    exchanges: Mapping[str, Exchange],
    exchange: Exchange,
    routing_keys: Sequence[str],
    headers: Mapping[object, object] | None,
) -> list[str]:
    """Names of the queues reached, each once, in first-reached order (`walk`
    with the headers at hand)."""
    return walk(exchanges, exchange, routing_keys, lambda: headers)[0]


def walk(
    exchanges: Mapping[str, Exchange],
    exchange: Exchange,
    routing_keys: Sequence[str],
    headers: Callable[[], Mapping[object, object] | None],
) -> tuple[list[str], bool]:
    """The queues reached, each once, in first-reached order, and whether the
    route depended on the message's headers (a headers exchange was matched).

    `exchange` is matched with every routing key, then each exchange its
    bindings reach (looked up in `exchanges`; unknown names are skipped),
    breadth first.  Like RabbitMQ, every exchange is matched at most once per
    publish, with all the routing keys, which makes cycles terminate and
    diamonds deliver once.  Queue names are not checked: the default exchange
    names whatever queue the key says.  `headers` is called only when a
    headers exchange is reached: other routes never decode them.
    """
    queues: dict[str, None] = {}
    pending = [exchange]
    seen = {exchange.name}
    by_headers = False
    values: Mapping[object, object] | None = None
    for x in pending:  # grows while we iterate: a breadth-first work list
        if x.type == "headers" and not by_headers:
            by_headers, values = True, headers()
        for key in routing_keys if x.routes_by_key else _ANY_KEY:
            for binding in x.match(key, values):
                if binding.destination_kind == QUEUE:
                    queues[binding.destination] = None
                elif binding.destination not in seen:
                    seen.add(binding.destination)
                    found = exchanges.get(binding.destination)
                    if found is not None:
                        pending.append(found)
    return list(queues), by_headers
