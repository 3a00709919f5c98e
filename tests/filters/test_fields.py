"""MessageFields decodes lazily, each section at most once, shared by every
filter asking about the message; FieldsCache shares it between readers; the
filter-set entry → filter dispatch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import broker.filters.fields as fields_module
from broker.codec.messaging import Header, Message, Properties
from broker.codec.types import Described, Symbol, ULong
from broker.filters import (
    AllOf,
    ApplicationPropertiesFilter,
    FieldsCache,
    FilterError,
    MessageFields,
    PropertiesFilter,
    SqlFilter,
    compile_application_properties_filter,
    compile_filter,
    compile_properties_filter,
    compile_selector,
    compile_sql,
)
from broker.filters.sql import SELECTOR, SQL

NOW = 1_700_000_000.0


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The first byte after each section's descriptor that MessageFields decodes."""
    seen: list[int] = []
    real = fields_module.decode

    def counting(buf: bytes, pos: int = 0, end: int | None = None) -> tuple[object, int]:
        seen.append(buf[2])  # 0x00 0x53 <code>: the section's descriptor code
        return real(buf, pos, end)

    monkeypatch.setattr(fields_module, "decode", counting)
    yield seen


def message() -> Message:
    return Message.create(b"x" * 100, header=Header(priority=7),
                          properties=Properties(subject="s", group_sequence=3),
                          application_properties={"region": "eu", "n": 5})


def test_sections_are_decoded_lazily_and_once(decodes: list[int]) -> None:
    f = MessageFields(message())
    assert decodes == []
    assert compile_sql("region = 'eu'").matches(f, NOW)
    assert decodes == [0x74]  # only the application properties
    assert compile_sql("a.n = 5 AND region <> 'us'").matches(f, NOW)
    assert decodes == [0x74]
    assert compile_sql("h.priority = 7").matches(f, NOW)
    assert compile_sql("p.subject = 's' AND h.priority > 4").matches(f, NOW)
    assert compile_properties_filter({Symbol("group-sequence"): 3}).matches(f, NOW)
    assert decodes == [0x74, 0x70, 0x73]


def test_ten_consumers_decode_each_message_once(decodes: list[int]) -> None:
    """A stream with ten consumers, ten different filters, one decoding per section."""
    filters = [compile_sql(f"a.n > {i} AND h.priority >= {i}") for i in range(5)] + \
        [compile_selector(f"n <> {i} AND properties.subject = 's'") for i in range(3)] + \
        [compile_properties_filter({Symbol("subject"): "&p:s"}),
         compile_application_properties_filter({"region": "eu"})]
    cache = FieldsCache()
    log = [Message.trusted(message().payload) for _ in range(20)]
    for consumer in filters:  # each reads the whole log in its turn
        for offset, stored in enumerate(log):
            assert consumer.matches(cache.fields(offset, stored), NOW)
    assert len(decodes) == 3 * len(log)
    assert sorted(set(decodes)) == [0x70, 0x73, 0x74]


def test_the_message_keeps_nothing_decoded() -> None:
    """A stored message stays bytes: what was decoded lives in the MessageFields."""
    stored = Message.trusted(message().payload)
    f = MessageFields(stored)
    assert compile_sql("region = 'eu' AND h.priority = 7 AND p.subject = 's'").matches(f, NOW)
    assert stored._cache is None  # the Message's own section cache was never filled


def test_absent_and_undecodable_sections() -> None:
    empty = MessageFields(Message.create(b""))
    assert empty.header is None and empty.properties is None
    assert empty.application_properties == {}
    # an application-properties map with an odd count: located, but it does not decode
    bad = Message.parse(b"\x00\x53\x74\xc1\x02\x01\x40" + b"\x00\x53\x75\xa0\x00")
    f = MessageFields(bad)
    assert f.application_properties == {}
    assert compile_sql("x IS NULL").matches(f, NOW)
    assert not compile_application_properties_filter({"x": None}).matches(f, NOW)


def test_fields_cache() -> None:
    cache = FieldsCache(capacity=2)
    a, b, c = message(), message(), message()
    fa = cache.fields(0, a)
    assert cache.fields(0, a) is fa
    fb = cache.fields(1, b)
    cache.fields(2, c)  # evicts the oldest
    assert len(cache) == 2
    assert cache.fields(0, a) is not fa
    assert cache.fields(2, c).message is c
    assert cache.fields(2, b) is not fb and cache.fields(2, b).message is b  # a reused key
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError):
        FieldsCache(0)


def test_all_of() -> None:
    f = MessageFields(message())
    both = AllOf([compile_sql("n = 5"), compile_application_properties_filter({"region": "eu"})])
    assert both.matches(f, NOW)
    assert not AllOf([compile_sql("n = 5"), compile_sql("n = 6")]).matches(f, NOW)
    assert AllOf([]).matches(f, NOW)


# --- the filter-set dispatch ------------------------------------------------------------


@pytest.mark.parametrize("descriptor, value, kind", [
    (Symbol("apache.org:selector-filter:string"), "n > 1", SqlFilter),
    (ULong(0x0000468C00000004), "n > 1", SqlFilter),
    (Symbol("amqp:sql-filter"), "a.n > 1", SqlFilter),
    (ULong(0x120), "a.n > 1", SqlFilter),
    (Symbol("amqp:properties-filter"), {Symbol("subject"): "s"}, PropertiesFilter),
    (ULong(0x173), {Symbol("subject"): "s"}, PropertiesFilter),
    (Symbol("amqp:application-properties-filter"), {"region": "eu"},
     ApplicationPropertiesFilter),
    (ULong(0x174), {"region": "eu"}, ApplicationPropertiesFilter),
])
def test_compile_filter(descriptor: object, value: object, kind: type) -> None:
    compiled = compile_filter(Described(descriptor, value))
    assert isinstance(compiled, kind)
    assert compiled.matches(MessageFields(message()), NOW)


def test_compile_filter_dialects() -> None:
    selector = compile_filter(Described(Symbol("apache.org:selector-filter:string"), "n > 1"))
    sql = compile_filter(Described(Symbol("amqp:sql-filter"), "n > 1"))
    assert isinstance(selector, SqlFilter) and selector.dialect is SELECTOR
    assert isinstance(sql, SqlFilter) and sql.dialect is SQL


@pytest.mark.parametrize("value", [
    Described(Symbol("rabbitmq:stream-offset-spec"), "first"),
    Described(Symbol("rabbitmq:stream-filter"), ["a"]),
    Described(ULong(0x0000468C00000003), []),  # no-local
    Described([1], "x"),
    Described(True, "x"),
    "n > 1",
    None,
])
def test_compile_filter_leaves_others_alone(value: object) -> None:
    assert compile_filter(value) is None


@pytest.mark.parametrize("value", [
    Described(Symbol("amqp:sql-filter"), "n >"),
    Described(Symbol("amqp:sql-filter"), b"n > 1"),
    Described(Symbol("apache.org:selector-filter:string"), 5),
    Described(ULong(0x173), ["subject"]),
    Described(ULong(0x173), {Symbol("nope"): 1}),
    Described(ULong(0x174), {}),
])
def test_compile_filter_refuses_invalid_filters(value: object) -> None:
    with pytest.raises(FilterError):
        compile_filter(value)
