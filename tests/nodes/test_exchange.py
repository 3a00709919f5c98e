"""Exchanges, bindings and routing as plain objects (no engine, no queue objects)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.codec.types import Int, Symbol, UInt
from broker.nodes.exchange import (
    EXCHANGE,
    EXCHANGE_TYPES,
    QUEUE,
    Binding,
    DefaultExchange,
    DirectExchange,
    Exchange,
    FanoutExchange,
    HeadersExchange,
    TopicExchange,
    headers_match,
    make_exchange,
    route,
    split_binding_args,
    topic_words,
)


def qb(source: str, queue: str, key: str = "", **arguments: object) -> Binding:
    return Binding(source, queue, QUEUE, key, arguments)


def xb(source: str, exchange: str, key: str = "") -> Binding:
    return Binding(source, exchange, EXCHANGE, key)


def destinations(found: Iterable[Binding]) -> list[str]:
    return [b.destination for b in found]


# -- Binding ---------------------------------------------------------------------------------


def test_binding_equality_includes_arguments_but_hash_ignores_them() -> None:
    a = qb("x", "q", "k", foo=1)
    assert a == qb("x", "q", "k", foo=1)
    assert a != qb("x", "q", "k", foo=2)
    assert a != qb("x", "q", "k")
    assert hash(a) == hash(qb("x", "q", "k", foo=2))
    assert len({a, qb("x", "q", "k", foo=1), qb("x", "q", "k", foo=2), qb("x", "q", "k")}) == 3


def test_binding_kind_key_and_destination_distinguish() -> None:
    assert qb("x", "d", "k") != Binding("x", "d", EXCHANGE, "k")
    assert qb("x", "d", "k") != qb("x", "d", "j")
    assert qb("x", "d", "k") != qb("x", "e", "k")
    assert qb("x", "d", "k") != qb("y", "d", "k")


def test_binding_arguments_are_a_frozen_copy() -> None:
    arguments: dict[str, object] = {"x-match": "any", "a": [1, 2]}  # an unhashable value too
    b = Binding("x", "q", QUEUE, "", arguments)
    arguments["b"] = 2
    assert dict(b.arguments) == {"x-match": "any", "a": [1, 2]}
    assert hash(b) == hash(qb("x", "q"))
    with pytest.raises(TypeError):
        b.arguments["c"] = 3  # type: ignore[index]


def test_binding_refuses_unknown_destination_kind() -> None:
    with pytest.raises(ValueError, match="destination_kind"):
        Binding("x", "q", "topic")


# -- make_exchange and the common bookkeeping ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("direct", DirectExchange),
        ("fanout", FanoutExchange),
        ("topic", TopicExchange),
        ("headers", HeadersExchange),
    ],
)
def test_make_exchange_builds_each_type(kind: str, cls: type[Exchange]) -> None:
    arguments: dict[str, object] = {"alternate-exchange": "ae"}
    x = make_exchange(
        "x", kind, durable=False, auto_delete=True, internal=True, arguments=arguments
    )
    arguments["later"] = 1
    assert type(x) is cls
    assert (x.name, x.type, x.durable, x.auto_delete, x.internal) == ("x", kind, False, True, True)
    assert x.arguments == {"alternate-exchange": "ae"}
    assert x.bindings == [] and x.binding_count == 0


def test_make_exchange_defaults() -> None:
    x = make_exchange("x")
    assert (x.type, x.durable, x.auto_delete, x.internal, x.arguments) == (
        "direct",
        True,
        False,
        False,
        {},
    )
    assert EXCHANGE_TYPES == ("direct", "fanout", "topic", "headers")


def test_make_exchange_unknown_type() -> None:
    with pytest.raises(ValueError, match="x-consistent-hash"):
        make_exchange("x", "x-consistent-hash")


def test_make_exchange_with_the_empty_name_is_the_default_exchange() -> None:
    assert type(make_exchange("")) is DefaultExchange
    with pytest.raises(ValueError):
        make_exchange("", "fanout")


@pytest.mark.parametrize("kind", EXCHANGE_TYPES)
def test_bind_and_unbind_are_idempotent(kind: str) -> None:
    x = make_exchange("x", kind)
    a, b = qb("x", "q1", "k"), qb("x", "q2", "k")
    assert x.bind(a) is True
    assert x.bind(b) is True
    assert x.bind(qb("x", "q1", "k")) is False  # equal, not identical
    assert x.bindings == [a, b]
    assert x.unbind(a) is True
    assert x.unbind(a) is False
    assert x.unbind(qb("x", "never", "k")) is False
    assert x.bindings == [b]
    assert x.bind(a) is True
    assert x.bindings == [b, a]  # re-made: now the newest


@pytest.mark.parametrize("kind", EXCHANGE_TYPES)
def test_bindings_differing_only_in_arguments_are_both_kept(kind: str) -> None:
    x = make_exchange("x", kind)
    a, b = qb("x", "q", "k", colour="red"), qb("x", "q", "k", colour="blue")
    assert x.bind(a) and x.bind(b)
    assert x.bindings == [a, b]
    assert x.unbind(qb("x", "q", "k", colour="red"))
    assert x.bindings == [b]


@pytest.mark.parametrize("kind", EXCHANGE_TYPES)
def test_bind_refuses_a_binding_from_another_exchange(kind: str) -> None:
    x = make_exchange("x", kind)
    with pytest.raises(ValueError):
        x.bind(qb("y", "q", "k"))
    assert x.bindings == []


# -- direct and fanout --------------------------------------------------------------------------


def test_direct_matches_equal_keys_only() -> None:
    x = make_exchange("x", "direct")
    for b in [qb("x", "q1", "a"), qb("x", "q2", "a"), qb("x", "q3", "A"), qb("x", "q4", "")]:
        x.bind(b)
    x.bind(qb("x", "q5", "a.*"))
    assert destinations(x.match("a", None)) == ["q1", "q2"]
    assert destinations(x.match("A", None)) == ["q3"]
    assert destinations(x.match("", None)) == ["q4"]
    assert destinations(x.match("a.b", None)) == []  # no wildcards in a direct exchange
    assert destinations(x.match("a.*", None)) == ["q5"]
    x.unbind(qb("x", "q1", "a"))
    x.unbind(qb("x", "q2", "a"))
    assert destinations(x.match("a", None)) == []


def test_fanout_matches_every_binding_whatever_the_key() -> None:
    x = make_exchange("x", "fanout")
    x.bind(qb("x", "q1", "a"))
    x.bind(qb("x", "q2", ""))
    x.bind(xb("x", "y", "zzz"))
    for key in ("", "a", "b.c"):
        assert destinations(x.match(key, None)) == ["q1", "q2", "y"]


# -- topic --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "words"),
    [("", []), ("a", ["a"]), ("a.b", ["a", "b"]), ("a..b", ["a", "", "b"]), (".", ["", ""])],
)
def test_topic_words(key: str, words: list[str]) -> None:
    assert topic_words(key) == words


TOPIC_CASES = [
    # the empty key has no words
    ("", "", True),
    ("", ".", False),
    ("", "a", False),
    ("#", "", True),
    ("#.#", "", True),
    ("*", "", False),
    ("#.*", "", False),
    ("*.#", "", False),
    # `#` alone, and `#` around other words
    ("#", "a.b.c", True),
    ("#", ".", True),
    ("#.#", "a", True),
    ("#.#", "a.b.c", True),
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b.a", False),
    ("a.#", "ab", False),
    ("#.a", "a", True),
    ("#.a", "x.y.a", True),
    ("#.a", "a.x", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.b.c", False),
    ("a.#.b", "b", False),
    ("a.#.b", "a", False),
    ("#.b.#", "b", True),
    ("#.b.#", "a.b.c", True),
    ("#.b.#", "a.c", False),
    ("#.*", "a.b", True),
    ("*.#", "a", True),
    ("#.*.#", "a", True),
    ("#.*.#", "", False),
    # `*` is exactly one word, an empty one included
    ("*", "a", True),
    ("*", "a.b", False),
    ("*", ".", False),
    ("*.*", ".", True),
    ("*.*", "a", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a..c", True),
    ("a.*.c", "a.c", False),
    ("a.*", "a.", True),
    ("*.a", ".a", True),
    # empty words are words
    ("a..b", "a..b", True),
    ("a..b", "a.b", False),
    ("a.b", "a..b", False),
    ("a.", "a.", True),
    ("a.", "a", False),
    (".", ".", True),
    (".", "", False),
    # wildcards only as whole words; a routing key's `*` or `#` is a plain word
    ("a#", "a#", True),
    ("a#", "ab", False),
    ("a*", "ab", False),
    ("a", "*", False),
    ("*", "*", True),
    ("#", "#", True),
    ("a.#", "a.#", True),
    ("a.*", "a.#", True),
]


@pytest.mark.parametrize(("pattern", "key", "matches"), TOPIC_CASES)
def test_topic_edge_cases(pattern: str, key: str, matches: bool) -> None:
    x = make_exchange("x", "topic")
    x.bind(qb("x", "q", pattern))
    assert destinations(x.match(key, None)) == (["q"] if matches else [])
    assert reference_topic_match(topic_words(pattern), topic_words(key)) is matches


def test_topic_reports_each_binding_once() -> None:
    x = make_exchange("x", "topic")
    patterns = ["#", "#.#", "#.#.#", "#.a.#", "a.#.a", "#.*.#", "*.#.*"]
    for p in patterns:
        x.bind(qb("x", p, p))
    found = destinations(x.match("a.a.a.a", None))
    assert sorted(found) == sorted(patterns)


def test_topic_many_hashes_against_a_long_key() -> None:
    # the (node, position) states of `#` nodes are deduplicated, so this is
    # quick; exploring every way of splitting the key would be ~10^8 paths
    x = make_exchange("x", "topic")
    x.bind(qb("x", "q", ".".join(["#"] * 10 + ["z"])))
    assert destinations(x.match(".".join(["a"] * 40), None)) == []
    assert destinations(x.match(".".join(["a"] * 40 + ["z"]), None)) == ["q"]


def test_topic_trie_shares_prefixes_and_prunes() -> None:
    x = make_exchange("x", "topic")
    assert isinstance(x, TopicExchange)
    abc, abd, ab, star, empty = (
        qb("x", "q1", "a.b.c"),
        qb("x", "q2", "a.b.d"),
        qb("x", "q3", "a.b"),
        qb("x", "q4", "*.#"),
        qb("x", "q5", ""),
    )
    for b in (abc, abd, ab, star, empty):
        x.bind(b)
    assert x.node_count == 6  # a, a.b, a.b.c, a.b.d, *, *.#  (the empty key sits at the root)
    x.unbind(abc)
    assert x.node_count == 5
    x.unbind(ab)  # a.b still leads to a.b.d
    assert x.node_count == 5
    x.unbind(abd)
    assert x.node_count == 2
    assert destinations(x.match("a.b.d", None)) == ["q4"]
    x.unbind(star)
    x.unbind(empty)
    assert x.node_count == 0
    assert x.unbind(abc) is False  # absent: nothing walked into existence
    assert x.node_count == 0


def test_topic_unbind_keeps_a_node_with_other_bindings() -> None:
    x = make_exchange("x", "topic")
    x.bind(qb("x", "q1", "a.#"))
    x.bind(qb("x", "q2", "a.#", colour="red"))
    x.unbind(qb("x", "q1", "a.#"))
    assert destinations(x.match("a.b", None)) == ["q2"]
    assert x.unbind(qb("x", "q2", "a.#", colour="red"))
    assert isinstance(x, TopicExchange) and x.node_count == 0


def reference_topic_match(pattern: list[str], words: list[str]) -> bool:
    """The rule, written down as directly as possible (slow, and obviously right)."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(reference_topic_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and reference_topic_match(rest, words[1:])


def reference_prefixes(patterns: Iterable[str]) -> int:
    """How many trie nodes (below the root) these binding keys need."""
    prefixes: set[tuple[str, ...]] = set()
    for p in patterns:
        words = topic_words(p)
        prefixes.update(tuple(words[: i + 1]) for i in range(len(words)))
    return len(prefixes)


ROUTING_WORDS = st.sampled_from(["a", "b", "", "*", "#"])
PATTERN_WORDS = st.sampled_from(["a", "b", "", "*", "#", "#"])
routing_keys = st.lists(ROUTING_WORDS, max_size=6).map(".".join)
patterns = st.lists(PATTERN_WORDS, max_size=5).map(".".join)


@settings(max_examples=300, deadline=None)
@given(
    bound=st.lists(patterns, min_size=1, max_size=12),
    removed=st.sets(st.integers(0, 11)),
    keys=st.lists(routing_keys, min_size=1, max_size=8),
)
def test_topic_matches_like_the_reference(
    bound: list[str], removed: set[int], keys: list[str]
) -> None:
    x = make_exchange("x", "topic")
    assert isinstance(x, TopicExchange)
    made = [qb("x", f"q{i}", p) for i, p in enumerate(bound)]
    for b in made:
        assert x.bind(b)
    for i in sorted(removed):
        if i < len(made):
            assert x.unbind(made[i])
    live = [b for i, b in enumerate(made) if i not in removed]
    assert x.node_count == reference_prefixes(b.key for b in live)
    for key in keys:
        found = list(x.match(key, None))
        assert len(found) == len(set(found)), "a binding reported twice"
        expected = {b for b in live if reference_topic_match(topic_words(b.key), topic_words(key))}
        assert set(found) == expected, (key, [b.key for b in live])
    for b in live:
        assert x.unbind(b)
    assert x.node_count == 0
    assert all(list(x.match(key, None)) == [] for key in keys)


# -- headers ------------------------------------------------------------------------------------


def hx(*argument_sets: Mapping[str, object]) -> HeadersExchange:
    x = make_exchange("h", "headers")
    assert isinstance(x, HeadersExchange)
    for i, arguments in enumerate(argument_sets):
        x.bind(Binding("h", f"q{i}", QUEUE, "", arguments))
    return x


@pytest.mark.parametrize(
    ("arguments", "headers", "matches"),
    [
        # all (the default)
        ({"a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 3}, True),
        ({"a": 1, "b": "x"}, {"a": 1}, False),
        ({"a": 1, "b": "x"}, {"a": 1, "b": "y"}, False),
        ({"x-match": "all", "a": 1}, {"a": 1}, True),
        ({}, {}, True),
        ({}, None, True),
        ({"x-match": "all"}, {"z": 1}, True),
        ({"a": 1}, None, False),
        # any
        ({"x-match": "any", "a": 1, "b": 2}, {"b": 2}, True),
        ({"x-match": "any", "a": 1, "b": 2}, {"a": 2, "b": 1}, False),
        ({"x-match": "any", "a": 1}, None, False),
        ({"x-match": "any"}, {"a": 1}, False),  # no conditions: nothing
        # x- arguments are not conditions unless *-with-x
        ({"x-foo": "bar", "a": 1}, {"a": 1}, True),
        ({"x-match": "any", "x-foo": "bar"}, {"x-foo": "bar"}, False),
        ({"x-match": "all-with-x", "x-foo": "bar", "a": 1}, {"a": 1}, False),
        ({"x-match": "all-with-x", "x-foo": "bar", "a": 1}, {"a": 1, "x-foo": "bar"}, True),
        ({"x-match": "any-with-x", "x-foo": "bar", "a": 1}, {"x-foo": "bar"}, True),
        ({"x-match": "any-with-x", "x-foo": "bar"}, {"x-foo": "baz"}, False),
        # x-match itself is never a condition
        ({"x-match": "all-with-x"}, {}, True),
        ({"x-match": "any-with-x"}, {"x-match": "any-with-x"}, False),
        # null: presence only, any value
        ({"a": None}, {"a": "anything"}, True),
        ({"a": None}, {"a": None}, True),
        ({"a": None}, {"b": 1}, False),
        ({"a": 1}, {"a": None}, False),
        ({"x-match": "any", "a": None, "b": 1}, {"a": 0}, True),
        # values by value, wrapper types included; booleans are not numbers
        ({"a": 1}, {"a": UInt(1)}, True),
        ({"a": Int(7)}, {"a": 7}, True),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": True}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": True}, {"a": True}, True),
        ({"a": False}, {"a": 0}, False),
        ({"a": "x"}, {"a": b"x"}, False),
        ({"a": "x"}, {"a": Symbol("x")}, True),
        ({"x-match": Symbol("any"), "a": 1}, {"a": 1}, True),
    ],
)
def test_headers_matching(
    arguments: dict[str, object], headers: dict[object, object] | None, matches: bool
) -> None:
    assert headers_match(arguments, headers) is matches
    x = hx(arguments)
    for key in ("", "ignored.key"):
        assert destinations(x.match(key, headers)) == (["q0"] if matches else [])


def test_headers_scans_all_bindings_in_order() -> None:
    x = hx({"a": 1}, {"x-match": "any", "b": 2, "a": 1}, {"a": 2}, {})
    assert destinations(x.match("", {"a": 1})) == ["q0", "q1", "q3"]
    x.unbind(Binding("h", "q0", QUEUE, "", {"a": 1}))
    assert destinations(x.match("", {"a": 1})) == ["q1", "q3"]


@pytest.mark.parametrize("mode", ["some", "ALL", 1, None, ""])
def test_headers_refuses_a_bad_x_match(mode: object) -> None:
    x = make_exchange("h", "headers")
    with pytest.raises(ValueError, match="x-match"):
        x.bind(Binding("h", "q", QUEUE, "", {"x-match": mode, "a": 1}))
    assert x.bindings == []
    assert destinations(x.match("", {"a": 1})) == []


def test_split_binding_args() -> None:
    assert split_binding_args({}) == (False, ())
    assert split_binding_args({"x-match": "any", "x-y": 1, "a": 2}) == (True, (("a", 2),))
    assert split_binding_args({"x-match": "all-with-x", "x-y": 1}) == (False, (("x-y", 1),))


def test_other_types_ignore_x_match() -> None:
    x = make_exchange("x", "direct")
    assert x.bind(Binding("x", "q", QUEUE, "k", {"x-match": "nonsense"}))
    assert destinations(x.match("k", None)) == ["q"]


# -- the default exchange -----------------------------------------------------------------------


def test_default_exchange_routes_by_queue_name() -> None:
    d = DefaultExchange()
    assert (d.name, d.type) == ("", "direct")
    assert list(d.match("orders", None)) == [Binding("", "orders", QUEUE, "orders")]
    assert d.bindings == []


def test_default_exchange_cannot_be_bound() -> None:
    d = DefaultExchange()
    with pytest.raises(ValueError, match="the default exchange cannot be bound"):
        d.bind(qb("", "q", "q"))
    with pytest.raises(ValueError, match="the default exchange cannot be bound"):
        d.unbind(qb("", "q", "q"))


def test_route_through_the_default_exchange() -> None:
    d = DefaultExchange()
    assert route({"": d}, d, ["q1"], None) == ["q1"]
    assert route({"": d}, d, ["q2", "q1", "q2"], None) == ["q2", "q1"]
    assert route({"": d}, d, [], None) == []


# -- route --------------------------------------------------------------------------------------


def world(*exchanges: Exchange) -> dict[str, Exchange]:
    return {x.name: x for x in exchanges}


def test_route_to_queues_each_once_in_first_reached_order() -> None:
    x = make_exchange("x", "direct")
    for b in [qb("x", "q2", "a"), qb("x", "q1", "a"), qb("x", "q2", "b"), qb("x", "q3", "b")]:
        x.bind(b)
    x.bind(qb("x", "q1", "a", colour="red"))  # same queue by a second binding
    assert route(world(x), x, ["a"], None) == ["q2", "q1"]
    assert route(world(x), x, ["b", "a"], None) == ["q2", "q3", "q1"]
    assert route(world(x), x, ["c"], None) == []


def test_route_follows_a_chain_with_the_same_routing_key() -> None:
    t = make_exchange("t", "topic")
    d = make_exchange("d", "direct")
    f = make_exchange("f", "fanout")
    t.bind(xb("t", "d", "orders.#"))
    d.bind(xb("d", "f", "orders.eu.new"))
    d.bind(qb("d", "never", "orders.#"))  # direct: the key is matched literally here
    f.bind(qb("f", "end"))
    xs = world(t, d, f)
    assert route(xs, t, ["orders.eu.new"], None) == ["end"]
    assert route(xs, t, ["orders.us.new"], None) == []
    assert route(xs, t, ["orders.#"], None) == ["never"]


def test_route_diamond_reaches_a_queue_once() -> None:
    top, left, right, bottom = (make_exchange(n, "fanout") for n in ("top", "left", "right", "bot"))
    top.bind(xb("top", "left"))
    top.bind(xb("top", "right"))
    left.bind(xb("left", "bot"))
    right.bind(xb("right", "bot"))
    left.bind(qb("left", "q"))
    right.bind(qb("right", "q"))
    bottom.bind(qb("bot", "q"))
    bottom.bind(qb("bot", "q-bottom"))
    assert route(world(top, left, right, bottom), top, ["k"], None) == ["q", "q-bottom"]


def test_route_breadth_first_order() -> None:
    x = make_exchange("x", "fanout")
    y = make_exchange("y", "fanout")
    x.bind(xb("x", "y"))  # bound first, but its queue is one hop further
    x.bind(qb("x", "near"))
    y.bind(qb("y", "far"))
    assert route(world(x, y), x, [""], None) == ["near", "far"]


def test_route_cycles_terminate() -> None:
    a, b = make_exchange("a", "fanout"), make_exchange("b", "topic")
    a.bind(xb("a", "a"))  # onto itself
    a.bind(xb("a", "b"))
    b.bind(xb("b", "a", "#"))
    b.bind(qb("b", "qb", "#"))
    a.bind(qb("a", "qa"))
    xs = world(a, b)
    assert route(xs, a, ["k"], None) == ["qa", "qb"]
    assert route(xs, b, ["k"], None) == ["qb", "qa"]


def test_route_skips_unknown_destination_exchanges() -> None:
    x = make_exchange("x", "fanout")
    x.bind(xb("x", "gone"))
    x.bind(qb("x", "q"))
    assert route(world(x), x, ["k"], None) == ["q"]


def test_route_matches_each_exchange_with_every_routing_key() -> None:
    # as RabbitMQ: an exchange is visited once per publish, with all of the keys
    x, y = make_exchange("x", "direct"), make_exchange("y", "direct")
    x.bind(xb("x", "y", "a"))
    y.bind(qb("y", "qa", "a"))
    y.bind(qb("y", "qb", "b"))
    assert route(world(x, y), x, ["a", "b"], None) == ["qa", "qb"]
    assert route(world(x, y), x, ["b"], None) == []


def test_route_passes_headers_along_and_reaches_internal_exchanges() -> None:
    x = make_exchange("x", "direct")
    h = make_exchange("h", "headers", internal=True)
    x.bind(xb("x", "h", "k"))
    h.bind(qb("h", "red", "", colour="red"))
    h.bind(qb("h", "blue", "", colour="blue"))
    xs = world(x, h)
    assert route(xs, x, ["k"], {"colour": "red"}) == ["red"]
    assert route(xs, x, ["k"], None) == []
    assert route(xs, x, ["k", "j", "k"], {"colour": "blue"}) == ["blue"]


def test_route_uses_the_mapping_for_destinations_only() -> None:
    x = make_exchange("x", "fanout")
    y = make_exchange("y", "fanout")
    x.bind(xb("x", "y"))
    y.bind(qb("y", "q"))
    assert route({}, x, ["k"], None) == []  # y is unknown to this publish
    assert route({"y": y}, x, ["k"], None) == ["q"]


def _graph_binding(parts: tuple[str, str, str]) -> Binding:
    source, destination, key = parts
    kind = QUEUE if destination.startswith("q") else EXCHANGE
    return Binding(source, destination, kind, key)


EXCHANGE_NAMES = ["x0", "x1", "x2", "x3"]
graph_bindings = st.tuples(
    st.sampled_from(EXCHANGE_NAMES),
    st.sampled_from(EXCHANGE_NAMES + ["q0", "q1", "q2"]),
    st.sampled_from(["a", "b"]),
).map(_graph_binding)


@settings(max_examples=200, deadline=None)
@given(
    made=st.lists(graph_bindings, max_size=14),
    keys=st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
)
def test_route_reaches_what_a_fixpoint_reaches(made: list[Binding], keys: list[str]) -> None:
    xs = {n: make_exchange(n, "direct") for n in EXCHANGE_NAMES}
    for b in made:
        xs[b.source].bind(b)
    reached = {"x0"}
    while True:
        more = {
            b.destination
            for b in made
            if b.source in reached and b.destination_kind == EXCHANGE and b.key in keys
        }
        if more <= reached:
            break
        reached |= more
    expected = {
        b.destination
        for b in made
        if b.source in reached and b.destination_kind == QUEUE and b.key in keys
    }
    got = route(xs, xs["x0"], keys, None)
    assert len(got) == len(set(got))
    assert set(got) == expected
