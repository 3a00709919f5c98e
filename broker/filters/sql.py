"""One SQL-92 style expression language for JMS selectors
(`apache.org:selector-filter:string`) and AMQP SQL filter expressions
(`amqp:sql-filter`, AMQP Filter Expressions as RabbitMQ 4.2 implements them).

Theory of operation.  `compile_sql(text)` and `compile_selector(text)` run
the same tokenizer and parser under two `Dialect`s and return a `SqlFilter`.
The length is checked before anything else, the tokenizer makes one pass, and
the parser (precedence climbing) builds the expression directly as a tree of
closures, each taking `(fields, now)` and returning a value: so a filter is
compiled once and each message costs one call per node, with comparisons
against literals specialised at compile time and constant subexpressions
folded.  Two depth limits keep hostile input from reaching Python's
recursion limit: the parser counts the operand positions, parentheses and
prefix operators it is inside of, and every node knows the depth of its
subtree; either beyond `MAX_DEPTH` is a `FilterError`.

Values.  NULL and UNKNOWN are both `None` (SQL-92: a missing field is NULL, a
comparison with NULL is UNKNOWN); a message matches only if the expression
is TRUE.  Kinds of values: numbers (int and float and the AMQP integer and
float types; bool is not a number; int and float compare with each other),
strings (str, symbol, char), booleans, binaries, and everything else (uuid,
lists, maps, decimals).  Comparing values of different kinds: `=` is FALSE,
`<>` TRUE (it is always the negation of `=`), `<` `<=` `>` `>=` FALSE;
booleans and the other kinds are not ordered (FALSE).  Arithmetic needs
numbers, else it is NULL; `/` is true division and NULL when dividing by
zero; `%` needs integers and takes the sign of the dividend.  AND, OR and
NOT use three-valued logic, and an operand that is not a boolean is UNKNOWN.
`x IN (a, b)` is `x = a OR x = b`; `x BETWEEN a AND b` is
`a <= x AND x <= b`; LIKE on anything but a string is UNKNOWN.  UTC() is
`now` in milliseconds since the epoch (an integer).

Dialects.  `SQL` (amqp:sql-filter) follows RabbitMQ 4.2: keywords are upper
case (a lower-case keyword or a reserved word used as a name is an error),
regular identifiers are a letter then letters, digits and `_`; `0x…` is a
binary constant; there is no BETWEEN; an empty expression is an error.
`SELECTOR` (JMS) has case-insensitive keywords, identifiers may also use `_`
and `$` (as in Java), integers follow Java's literal syntax (`0x1F` hex,
`017` octal, an optional `L`), BETWEEN exists, and an empty selector matches
everything.  Both accept: section-qualified names — `header.F` / `h.F` (F:
durable, priority, ttl, first_acquirer, delivery_count; the header's
defaults apply when it is absent, so `h.priority` is 4), `properties.F` /
`p.F` (the thirteen §3.2.4 fields, spelt with `_`),
`application_properties.N` / `a.N`; unqualified names and delimited
identifiers `[any name]` (`]]` and `[[` for brackets) name application
properties; strings in single or double quotes (a doubled quote escapes
itself); integers, decimals and exponents (`1.5`, `5.`, `.5`, `1E3` are
floats); `<>` and `!=`; `%`; IN lists of expressions; UTC().
`AZURE_RULE` (Service Bus subscription rules) is the selector dialect with
plain decimal integers, where an empty rule is an error, and two more
qualifiers: `sys.NAME` for the system properties Service Bus names
(`sys.Label`, `sys.MessageId`, `sys.SessionId`…, in any case: the §3.2.4
fields they stand for) and `user.NAME` for application properties.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from broker.codec.messaging import Header, Properties
from broker.codec.types import (
    Byte,
    Char,
    Decimal32,
    Decimal64,
    Decimal128,
    Float,
    Int,
    Long,
    Short,
    Symbol,
    Timestamp,
    UByte,
    UInt,
    ULong,
    UShort,
)
from broker.filters.fields import FilterError, MessageFields

MAX_EXPRESSION_LENGTH: Final = 4096  # characters (AMQP Filter Expressions §7.1; RabbitMQ's too)
MAX_DEPTH: Final = 100  # nesting of the expression tree, and of the parser inside it

Eval = Callable[[MessageFields, float], object]


@dataclass(frozen=True, slots=True)
class Dialect:
    """The differences between the two front ends (see the module docstring)."""

    name: str
    keywords_any_case: bool
    identifier_start: str  # characters an identifier may start with, besides letters
    identifier_part: str  # characters it may go on with, besides letters and digits
    java_integers: bool  # 0x… is a hex integer (else a binary constant), 017 octal, 5L
    between: bool
    empty_matches_all: bool
    # Azure Service Bus rules: `sys.NAME` (system properties, names in any case)
    # and `user.NAME` (application properties) qualify names too
    azure_sections: bool = False


SQL: Final = Dialect("amqp:sql-filter", keywords_any_case=False, identifier_start="",
                     identifier_part="_", java_integers=False, between=False,
                     empty_matches_all=False)
SELECTOR: Final = Dialect("apache.org:selector-filter:string", keywords_any_case=True,
                          identifier_start="_$", identifier_part="_$", java_integers=True,
                          between=True, empty_matches_all=True)
AZURE_RULE: Final = Dialect("com.microsoft:sql-filter", keywords_any_case=True,
                            identifier_start="_$", identifier_part="_$", java_integers=False,
                            between=True, empty_matches_all=False, azure_sections=True)

# --- value kinds -----------------------------------------------------------------

_NUM, _STR, _BOOL, _BIN, _OTHER = range(5)
_NUM_TYPES: Final = frozenset(
    (int, float, Byte, Short, Int, Long, UByte, UShort, UInt, ULong, Timestamp, Float))
_KINDS: Final[dict[type, int]] = {t: _NUM for t in _NUM_TYPES}
_KINDS.update({bool: _BOOL, str: _STR, Symbol: _STR, Char: _STR, bytes: _BIN,
               Decimal32: _OTHER, Decimal64: _OTHER, Decimal128: _OTHER, type(None): -1})


def _kind(v: object) -> int:
    k = _KINDS.get(type(v))
    if k is not None:
        return k
    if isinstance(v, bool):
        return _BOOL
    if isinstance(v, (int, float)):
        return _NUM
    if isinstance(v, str):
        return _STR
    if isinstance(v, bytes) and not isinstance(v, (Decimal32, Decimal64, Decimal128)):
        return _BIN
    return _OTHER


def _is_num(v: object) -> bool:
    return type(v) in _NUM_TYPES or _kind(v) == _NUM


_ORDERINGS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_FLIPPED: Final = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def compare(op: str, a: object, b: object) -> bool | None:
    """`a op b` under the rules above (`op` one of = <> < <= > >=)."""
    if a is None or b is None:
        return None
    ka, kb = _kind(a), _kind(b)
    if op == "=" or op == "<>":
        if ka != kb:
            same = False
        elif ka == _OTHER:
            same = type(a) is type(b) and a == b
        else:
            same = a == b
        return same if op == "=" else not same
    if ka != kb or ka == _BOOL or ka == _OTHER:
        return False
    return bool(_ORDERINGS[op](a, b))


def _add(a: object, b: object) -> object:
    return a + b  # type: ignore[operator]


def _sub(a: object, b: object) -> object:
    return a - b  # type: ignore[operator]


def _mul(a: object, b: object) -> object:
    return a * b  # type: ignore[operator]


def _div(a: object, b: object) -> object:
    if b == 0:
        return None
    return a / b  # type: ignore[operator]


def _mod(a: object, b: object) -> object:
    if not isinstance(a, int) or not isinstance(b, int) or b == 0:
        return None
    r = abs(a) % abs(b)  # truncated: the remainder has the sign of the dividend
    return r if a >= 0 else -r


_ARITHMETIC: Final[dict[str, Callable[[object, object], object]]] = {
    "+": _add, "-": _sub, "*": _mul, "/": _div, "%": _mod}

# --- names -------------------------------------------------------------------------

_SECTIONS: Final = {
    "header": "h", "h": "h",
    "properties": "p", "p": "p",
    "application_properties": "a", "a": "a",
}
_UNSUPPORTED_SECTIONS: Final = frozenset((
    "delivery_annotations", "d", "message_annotations", "m", "footer", "f",
    "delivery-annotations", "message-annotations", "application-properties"))
_HEADER_DEFAULTS: Final[dict[str, object]] = {
    name: field.default for name, field in Header.__dataclass_fields__.items()}
_PROPERTY_NAMES: Final = frozenset(Properties.__dataclass_fields__)
# Azure's `sys.` names (lower-cased) → the §3.2.4 properties field
_AZURE_SYSTEM: Final = {
    "messageid": "message_id", "userid": "user_id", "to": "to", "label": "subject",
    "subject": "subject", "replyto": "reply_to", "correlationid": "correlation_id",
    "contenttype": "content_type", "contentencoding": "content_encoding",
    "expiresatutc": "absolute_expiry_time", "sessionid": "group_id",
    "replytosessionid": "reply_to_group_id",
}

_KEYWORDS: Final = frozenset((
    "AND", "OR", "NOT", "LIKE", "ESCAPE", "IN", "IS", "NULL", "TRUE", "FALSE", "UTC"))
_SELECTOR_KEYWORDS: Final = _KEYWORDS | {"BETWEEN"}
# Reserved by AMQP Filter Expressions (functions and constants RabbitMQ does not implement).
_RESERVED: Final = frozenset((
    "EXISTS", "NAN", "INF", "LOWER", "UPPER", "LEFT", "RIGHT", "SUBSTRING", "DATE"))

_WHITESPACE: Final = frozenset(" \t\f\n\r")
_DIGITS: Final = frozenset("0123456789")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_OPERATORS2: Final = frozenset(("<>", "<=", ">=", "!="))
_OPERATORS1: Final = frozenset("=<>+-*/%(),")

# --- tokens --------------------------------------------------------------------------

# (kind, value, position); kinds: num str bin id kw op end.  An id's value is
# (section, name) with section "h", "p" or "a".
Token = tuple[str, object, int]


def _tokenize(text: str, dialect: Dialect) -> list[Token]:
    tokens: list[Token] = []
    append = tokens.append
    start, part = dialect.identifier_start, dialect.identifier_part
    keywords = _SELECTOR_KEYWORDS if dialect.keywords_any_case else _KEYWORDS
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
            continue
        if c.isalpha() or c in start:
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in part):
                j += 1
            word = text[i:j]
            if j + 1 < n and text[j] == "." and (text[j + 1].isalpha() or text[j + 1] in start):
                k = j + 2
                while k < n and (text[k].isalnum() or text[k] in part):
                    k += 1
                append(("id", _qualified(word, text[j + 1:k], i, j + 1, dialect), i))
                i = k
                continue
            upper = word.upper()
            if (upper if dialect.keywords_any_case else word) in keywords:
                append(("kw", upper, i))
            elif upper in keywords:
                raise FilterError(f"the keyword {word!r} must be written {upper}", i)
            elif upper in _RESERVED and not dialect.keywords_any_case:
                raise FilterError(
                    f"{word!r} is a reserved word; write [{word}] for an application property", i)
            else:
                append(("id", ("a", word), i))
            i = j
        elif c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
            i = _number(text, i, dialect, append)
        elif c == "'" or c == '"':
            parts: list[str] = []
            j = i + 1
            while True:
                k = text.find(c, j)
                if k < 0:
                    raise FilterError("unterminated string", i)
                parts.append(text[j:k])
                if k + 1 < n and text[k + 1] == c:
                    parts.append(c)
                    j = k + 2
                    continue
                break
            append(("str", "".join(parts), i))
            i = k + 1
        elif c == "[":
            i = _delimited(text, i, append)
        elif text[i:i + 2] in _OPERATORS2:
            append(("op", "<>" if text[i:i + 2] == "!=" else text[i:i + 2], i))
            i += 2
        elif c in _OPERATORS1:
            append(("op", c, i))
            i += 1
        else:
            raise FilterError(f"unexpected character {c!r}", i)
    append(("end", None, n))
    return tokens


def _qualified(section: str, name: str, position: int, name_position: int,
               dialect: Dialect) -> tuple[str, str]:
    if dialect.azure_sections and section.lower() in ("sys", "user"):
        if section.lower() == "user":
            return "a", name
        field = _AZURE_SYSTEM.get(name.lower())
        if field is None:
            raise FilterError(f"unknown system property sys.{name} "
                              f"({', '.join(sorted(set(_AZURE_SYSTEM)))})", name_position)
        return "p", field
    code = _SECTIONS.get(section)
    if code is None:
        if section in _UNSUPPORTED_SECTIONS:
            raise FilterError(f"the {section} section cannot be filtered on", position)
        raise FilterError(
            f"unknown section {section!r} (header, properties or application_properties; "
            f"write [{section}.{name}] for an application property with a dot)", position)
    if code == "h" and name not in _HEADER_DEFAULTS:
        raise FilterError(
            f"unknown header field {name!r} ({', '.join(_HEADER_DEFAULTS)})", name_position)
    if code == "p" and name not in _PROPERTY_NAMES:
        raise FilterError(f"unknown properties field {name!r} "
                          f"({', '.join(Properties.__dataclass_fields__)})", name_position)
    return code, name


def _number(text: str, i: int, dialect: Dialect, append: Callable[[Token], None]) -> int:
    n = len(text)
    j = i
    value: object
    if text.startswith(("0x", "0X"), i):
        j = i + 2
        while j < n and text[j] in _HEX:
            j += 1
        digits = text[i + 2:j]
        if dialect.java_integers:
            if not digits:
                raise FilterError("a hexadecimal number needs digits", i)
            value, kind = int(digits, 16), "num"
            if j < n and text[j] in "lL":
                j += 1
        else:
            if not digits or len(digits) % 2:
                raise FilterError("a binary constant needs an even number of hex digits", i)
            value, kind = bytes.fromhex(digits), "bin"
    else:
        while j < n and text[j] in _DIGITS:
            j += 1
        is_float = False
        if j < n and text[j] == ".":
            is_float = True
            j += 1
            while j < n and text[j] in _DIGITS:
                j += 1
        if j < n and text[j] in "eE":
            k = j + 1
            if k < n and text[k] in "+-":
                k += 1
            if k >= n or text[k] not in _DIGITS:
                raise FilterError("malformed exponent", j)
            while k < n and text[k] in _DIGITS:
                k += 1
            j, is_float = k, True
        literal = text[i:j]
        kind = "num"
        if is_float:
            value = float(literal)
            if not math.isfinite(value):
                raise FilterError("number out of range", i)
        elif dialect.java_integers and len(literal) > 1 and literal[0] == "0":
            if any(d not in "01234567" for d in literal):
                raise FilterError("malformed octal number", i)
            value = int(literal, 8)
        else:
            try:
                value = int(literal)
            except ValueError:  # beyond Python's int digits limit
                raise FilterError("number out of range", i) from None
        if dialect.java_integers and not is_float and j < n and text[j] in "lL":
            j += 1
    if j < n and (text[j].isalnum() or text[j] in "_$.'\"["):
        raise FilterError("malformed number", i)
    append((kind, value, i))
    return j


def _delimited(text: str, i: int, append: Callable[[Token], None]) -> int:
    n = len(text)
    chars: list[str] = []
    j = i + 1
    while j < n:
        ch = text[j]
        if ch == "]":
            if j + 1 < n and text[j + 1] == "]":
                chars.append("]")
                j += 2
                continue
            append(("id", ("a", "".join(chars)), i))
            return j + 1
        if ch == "[":
            if j + 1 < n and text[j + 1] == "[":
                chars.append("[")
                j += 2
                continue
            raise FilterError("a '[' in a delimited identifier must be doubled", j)
        if ch < " " or ch == "\x7f":
            raise FilterError("control character in a delimited identifier", j)
        chars.append(ch)
        j += 1
    raise FilterError("unterminated delimited identifier", i)


def _describe(token: Token) -> str:
    kind, value, _ = token
    if kind == "end":
        return "the end of the expression"
    if kind == "id":
        return f"identifier {cast(tuple[str, str], value)[1]!r}"
    if kind == "str":
        return f"string {value!r}"
    if kind in ("num", "bin"):
        return f"constant {value!r}"
    return repr(value)


# --- the compiled tree -------------------------------------------------------------

_VARIABLE: Final = object()  # `const` of an expression that depends on the message or clock
_NO_FIELDS: Final = cast(MessageFields, None)  # what constant folding evaluates with


@dataclass(slots=True)
class _Expr:
    fn: Eval
    depth: int
    const: object = _VARIABLE
    field: tuple[str, str] | None = None  # set on a bare identifier (IS NULL needs one)


def _constant(value: object) -> _Expr:
    def fn(f: MessageFields, now: float) -> object:
        return value

    return _Expr(fn, 1, value)


def _node(fn: Eval, children: Sequence[_Expr], position: int) -> _Expr:
    depth = 1 + max(c.depth for c in children)
    if depth > MAX_DEPTH:
        raise FilterError(f"expression nested more than {MAX_DEPTH} levels deep", position)
    if all(c.const is not _VARIABLE for c in children):
        return _constant(fn(_NO_FIELDS, 0.0))
    return _Expr(fn, depth)


def _field(section: str, name: str) -> _Expr:
    fn: Eval
    if section == "a":
        def fn(f: MessageFields, now: float) -> object:
            return f.application_properties.get(name)
    elif section == "p":
        def fn(f: MessageFields, now: float) -> object:
            p = f.properties
            return None if p is None else getattr(p, name)
    else:
        default = _HEADER_DEFAULTS[name]

        def fn(f: MessageFields, now: float) -> object:
            h = f.header
            if h is None:
                return default
            v = getattr(h, name)
            return default if v is None else v
    return _Expr(fn, 1, field=(section, name))


def _utc(f: MessageFields, now: float) -> object:
    return int(now * 1000)


def _not(e: _Expr, position: int) -> _Expr:
    g = e.fn

    def fn(f: MessageFields, now: float) -> object:
        v = g(f, now)
        if v is True:
            return False
        if v is False:
            return True
        return None

    return _node(fn, (e,), position)


def _and(parts: list[_Expr], position: int) -> _Expr:
    return _connective(parts, position, decisive=False)


def _or(parts: list[_Expr], position: int) -> _Expr:
    return _connective(parts, position, decisive=True)


def _connective(parts: list[_Expr], position: int, *, decisive: bool) -> _Expr:
    """AND (one FALSE decides) or OR (one TRUE decides), SQL's three-valued way:
    the other truth value only when every operand has it, else UNKNOWN."""
    neutral = not decisive
    fn: Eval
    if len(parts) == 2:
        x, y = parts[0].fn, parts[1].fn

        def fn(f: MessageFields, now: float) -> object:
            a = x(f, now)
            if a is decisive:
                return decisive
            b = y(f, now)
            if b is decisive:
                return decisive
            return neutral if a is neutral and b is neutral else None
    else:
        fns = tuple(p.fn for p in parts)

        def fn(f: MessageFields, now: float) -> object:
            result: object = neutral
            for g in fns:
                v = g(f, now)
                if v is decisive:
                    return decisive
                if v is not neutral:
                    result = None
            return result
    return _node(fn, parts, position)


def _compare(op: str, left: _Expr, right: _Expr, position: int) -> _Expr:
    if left.const is _VARIABLE and right.const is not _VARIABLE:
        fn = _compare_constant(left.fn, op, right.const)
    elif right.const is _VARIABLE and left.const is not _VARIABLE:
        fn = _compare_constant(right.fn, _FLIPPED[op], left.const)
    else:
        x, y = left.fn, right.fn

        def fn(f: MessageFields, now: float) -> object:
            return compare(op, x(f, now), y(f, now))
    return _node(fn, (left, right), position)


def _compare_constant(get: Eval, op: str, c: object) -> Eval:
    """`get() op c`, specialised for the kind of the constant `c`."""
    k = _kind(c)
    fn: Eval
    if c is None:
        def fn(f: MessageFields, now: float) -> object:
            return None
        return fn
    ordered = op not in ("=", "<>")
    if ordered and k in (_BOOL, _OTHER):
        def fn(f: MessageFields, now: float) -> object:
            return None if get(f, now) is None else False
        return fn
    test: Callable[[Any, Any], Any] = (
        _ORDERINGS[op] if ordered else operator.eq if op == "=" else operator.ne)
    unlike = op == "<>"  # the answer for a value of another kind
    num_types = _NUM_TYPES
    if k == _STR:
        def fn(f: MessageFields, now: float) -> object:
            a = get(f, now)
            if isinstance(a, str):
                return test(a, c)
            return None if a is None else unlike
    elif k == _NUM:
        def fn(f: MessageFields, now: float) -> object:
            a = get(f, now)
            if type(a) in num_types:
                return test(a, c)
            if a is None:
                return None
            return test(a, c) if _kind(a) == _NUM else unlike
    elif k == _BOOL:
        def fn(f: MessageFields, now: float) -> object:
            a = get(f, now)
            if a is True or a is False:
                return test(a, c)
            return None if a is None else unlike
    else:
        def fn(f: MessageFields, now: float) -> object:
            a = get(f, now)
            if a is None:
                return None
            return test(a, c) if _kind(a) == k else unlike
    return fn


def _arithmetic(first: _Expr, rest: list[tuple[str, _Expr, int]]) -> _Expr:
    head = first.fn
    steps = tuple((_ARITHMETIC[op], e.fn) for op, e, _ in rest)
    num_types = _NUM_TYPES

    def fn(f: MessageFields, now: float) -> object:
        acc = head(f, now)
        if type(acc) not in num_types and not _is_num(acc):
            return None
        try:
            for op, g in steps:
                b = g(f, now)
                if type(b) not in num_types and not _is_num(b):
                    return None
                acc = op(acc, b)
                if acc is None:
                    return None
        except (OverflowError, ValueError, ZeroDivisionError):
            return None
        return acc

    return _node(fn, [first, *(e for _, e, _ in rest)], rest[0][2])


def _sign(op: str, e: _Expr, position: int) -> _Expr:
    g = e.fn
    fn: Eval
    if op == "-":
        def fn(f: MessageFields, now: float) -> object:
            v = g(f, now)
            return -v if _is_num(v) else None  # type: ignore[operator]
    else:
        def fn(f: MessageFields, now: float) -> object:
            v = g(f, now)
            return v if _is_num(v) else None
    return _node(fn, (e,), position)


def _is_null(e: _Expr, negated: bool, position: int) -> _Expr:
    g = e.fn

    def fn(f: MessageFields, now: float) -> object:
        return (g(f, now) is None) is not negated

    return _node(fn, (e,), position)


def _in(e: _Expr, items: list[_Expr], negated: bool, position: int) -> _Expr:
    g = e.fn
    fn: Eval
    if all(i.const is not _VARIABLE for i in items):
        values = [i.const for i in items]
        has_null = any(v is None for v in values)
        by_kind: dict[int, frozenset[object]] = {}
        others: list[object] = []
        for v in values:
            k = _kind(v)
            if k == _OTHER:
                others.append(v)
            elif v is not None:
                by_kind[k] = by_kind.get(k, frozenset()) | {v}
        miss: object = None if has_null else False

        def fn(f: MessageFields, now: float) -> object:
            a = g(f, now)
            if a is None:
                return None
            found = by_kind.get(_kind(a))
            if found is not None and a in found:
                hit: object = True
            elif others and any(compare("=", a, o) for o in others):
                hit = True
            else:
                hit = miss
            if hit is None or not negated:
                return hit
            return not hit
    else:
        fns = tuple(i.fn for i in items)

        def fn(f: MessageFields, now: float) -> object:
            a = g(f, now)
            if a is None:
                return None
            hit: object = False
            for h in fns:
                r = compare("=", a, h(f, now))
                if r is True:
                    hit = True
                    break
                if r is None:
                    hit = None
            if hit is None or not negated:
                return hit
            return not hit
    return _node(fn, [e, *items], position)


def _between(e: _Expr, low: _Expr, high: _Expr, negated: bool, position: int) -> _Expr:
    g, lo, hi = e.fn, low.fn, high.fn

    def fn(f: MessageFields, now: float) -> object:
        a = g(f, now)
        x = compare("<=", lo(f, now), a)
        y = compare("<=", a, hi(f, now))
        if x is False or y is False:
            result: bool | None = False
        elif x is True and y is True:
            result = True
        else:
            return None
        return result is not negated

    return _node(fn, (e, low, high), position)


def _like(e: _Expr, pattern: str, escape: str | None, negated: bool, position: int) -> _Expr:
    match = like_matcher(pattern, escape, position)
    g = e.fn
    fn: Eval
    if negated:
        def fn(f: MessageFields, now: float) -> object:
            a = g(f, now)
            return (not match(a)) if isinstance(a, str) else None
    else:
        def fn(f: MessageFields, now: float) -> object:
            a = g(f, now)
            return match(a) if isinstance(a, str) else None
    return _node(fn, (e,), position)


# A segment of a LIKE pattern between two '%': its length, and its text when
# it has no '_', else a regular expression for it (None if it is all '_').
_Segment = tuple[int, str | None, re.Pattern[str] | None]


def like_matcher(pattern: str, escape: str | None = None,
                 position: int | None = None) -> Callable[[str], bool]:
    """A function telling whether a string matches a LIKE pattern: `%` any
    characters, `_` exactly one, `escape` makes the next character literal.
    The pattern is cut at each `%` into fixed-length segments, and each is
    placed leftmost after the one before (which is right for `%`): no
    backtracking across segments, so matching costs at most
    O(len(value) × len(pattern)), with the inner loop in C (str.find, re)."""
    segments: list[list[str | None]] = [[]]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if escape is not None and ch == escape:
            if i + 1 >= n:
                raise FilterError("the LIKE pattern ends with its escape character", position)
            segments[-1].append(pattern[i + 1])
            i += 2
            continue
        if ch == "%":
            segments.append([])
        elif ch == "_":
            segments[-1].append(None)
        else:
            segments[-1].append(ch)
        i += 1
    parts = [_segment(s) for s in segments]
    literals = [p[1] for p in parts]
    if len(parts) == 1:
        if literals[0] is not None:
            return literals[0].__eq__
        only = parts[0]
        return lambda s: len(s) == only[0] and _at(s, 0, only)
    if len(parts) == 2 and literals[0] is not None and literals[1] is not None:
        prefix, suffix = literals[0], literals[1]
        if not suffix:
            return lambda s: s.startswith(prefix)
        if not prefix:
            return lambda s: s.endswith(suffix)
        least = len(prefix) + len(suffix)
        return lambda s: len(s) >= least and s.startswith(prefix) and s.endswith(suffix)
    if len(parts) == 3 and literals[0] == "" and literals[2] == "" and literals[1] is not None:
        infix = literals[1]
        return lambda s: infix in s
    first, last = parts[0], parts[-1]
    middle = tuple(p for p in parts[1:-1] if p[0])
    least = sum(p[0] for p in parts)

    def match(s: str) -> bool:
        size = len(s)
        if size < least:
            return False
        if first[0] and not _at(s, 0, first):
            return False
        end = size - last[0]
        if last[0] and not _at(s, end, last):
            return False
        pos = first[0]
        for segment in middle:
            found = _find(s, pos, end, segment)
            if found < 0:
                return False
            pos = found + segment[0]
        return True

    return match


def _segment(items: list[str | None]) -> _Segment:
    if all(item is not None for item in items):
        return len(items), "".join(cast(list[str], items)), None
    if all(item is None for item in items):
        return len(items), None, None
    regex = "".join("." if item is None else re.escape(item) for item in items)
    return len(items), None, re.compile(regex, re.DOTALL)


def _at(s: str, start: int, segment: _Segment) -> bool:
    """Whether `segment` matches `s` at `start` (it fits: the caller checked)."""
    _, text, regex = segment
    if text is not None:
        return s.startswith(text, start)
    if regex is not None:
        return regex.match(s, start) is not None
    return True


def _find(s: str, start: int, end: int, segment: _Segment) -> int:
    """The leftmost place at or after `start` where `segment` fits before `end`; -1 if none."""
    length, text, regex = segment
    if text is not None:
        return s.find(text, start, end)
    if regex is not None:
        m = regex.search(s, start, end)
        return -1 if m is None else m.start()
    return start if start + length <= end else -1


# --- the parser ----------------------------------------------------------------------

_OR, _AND, _NOT, _CMP, _ADD, _MUL, _UNARY = 1, 2, 3, 4, 5, 6, 7
_COMPARISONS: Final = frozenset(("=", "<>", "<", "<=", ">", ">="))


class _Parser:
    def __init__(self, text: str, dialect: Dialect) -> None:
        self.dialect = dialect
        self.tokens = _tokenize(text, dialect)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def at_keyword(self, word: str) -> bool:
        kind, value, _ = self.tokens[self.i]
        return kind == "kw" and value == word

    def at_op(self, *ops: str) -> bool:
        kind, value, _ = self.tokens[self.i]
        return kind == "op" and value in ops

    def expect_op(self, op: str, what: str) -> None:
        if not self.at_op(op):
            raise FilterError(f"expected {what}, found {_describe(self.peek())}", self.peek()[2])
        self.i += 1

    def enter(self, position: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"expression nested more than {MAX_DEPTH} levels deep", position)

    def parse(self) -> _Expr:
        e = self.expr(0)
        token = self.peek()
        if token[0] != "end":
            if token[0] == "op" and token[1] == ")":
                raise FilterError("unbalanced ')'", token[2])
            raise FilterError(
                f"expected AND, OR or the end of the expression, found {self._found(token)}",
                token[2])
        return e

    def _found(self, token: Token) -> str:
        if token[0] == "id" and not self.dialect.between \
                and cast(tuple[str, str], token[1])[1].upper() == "BETWEEN":
            return "BETWEEN, which amqp:sql-filter does not have (write x >= a AND x <= b)"
        return _describe(token)

    def operand(self, precedence: int) -> _Expr:
        self.enter(self.peek()[2])
        e = self.expr(precedence)
        self.depth -= 1
        return e

    def expr(self, precedence: int) -> _Expr:
        left = self.prefix(precedence)
        compared = False
        while True:
            kind, value, position = self.peek()
            if kind == "kw":
                if value == "OR" and precedence <= _OR:
                    parts = [left]
                    while self.at_keyword("OR"):
                        self.i += 1
                        parts.append(self.operand(_AND))
                    left = _or(parts, position)
                    continue
                if value == "AND" and precedence <= _AND:
                    parts = [left]
                    while self.at_keyword("AND"):
                        self.i += 1
                        parts.append(self.operand(_NOT))
                    left = _and(parts, position)
                    continue
                if value in ("NOT", "LIKE", "IN", "IS", "BETWEEN") and precedence <= _CMP:
                    if compared:
                        raise FilterError(f"unexpected {value} after a comparison "
                                          f"(comparisons cannot be chained; use AND)", position)
                    left = self.predicate(left)
                    compared = True
                    continue
                break
            if kind != "op":
                break
            if value in _COMPARISONS and precedence <= _CMP:
                if compared:
                    raise FilterError("comparisons cannot be chained; use AND", position)
                self.i += 1
                left = _compare(value, left, self.operand(_ADD), position)
                compared = True
            elif value in ("+", "-") and precedence <= _ADD:
                rest: list[tuple[str, _Expr, int]] = []
                while self.at_op("+", "-"):
                    _, op, at = self.advance()
                    rest.append((cast(str, op), self.operand(_MUL), at))
                left = _arithmetic(left, rest)
            elif value in ("*", "/", "%") and precedence <= _MUL:
                rest = []
                while self.at_op("*", "/", "%"):
                    _, op, at = self.advance()
                    rest.append((cast(str, op), self.operand(_UNARY), at))
                left = _arithmetic(left, rest)
            else:
                break
        return left

    def predicate(self, left: _Expr) -> _Expr:
        _, word, position = self.advance()
        negated = False
        if word == "NOT":
            _, word, _ = self.advance()
            negated = True
            if word not in ("LIKE", "IN", "BETWEEN"):
                self.i -= 1
                expected = "LIKE, IN or BETWEEN" if self.dialect.between else "LIKE or IN"
                raise FilterError(f"expected {expected} after NOT, found "
                                  f"{self._found(self.peek())}", self.peek()[2])
        if word == "IS":
            if left.field is None:
                raise FilterError("IS NULL needs an identifier on its left", position)
            negated = self.at_keyword("NOT")
            if negated:
                self.i += 1
            if not self.at_keyword("NULL"):
                raise FilterError(f"expected NULL, found {_describe(self.peek())}",
                                  self.peek()[2])
            self.i += 1
            return _is_null(left, negated, position)
        if word == "LIKE":
            kind, pattern, at = self.advance()
            if kind != "str":
                raise FilterError("LIKE needs a string pattern", at)
            escape: str | None = None
            if self.at_keyword("ESCAPE"):
                self.i += 1
                kind, value, at = self.advance()
                if kind != "str" or len(cast(str, value)) != 1:
                    raise FilterError("ESCAPE needs a string of one character", at)
                escape = cast(str, value)
            return _like(left, cast(str, pattern), escape, negated, position)
        if word == "IN":
            self.expect_op("(", "'(' after IN")
            items = [self.operand(_ADD)]
            while self.at_op(","):
                self.i += 1
                items.append(self.operand(_ADD))
            self.expect_op(")", "',' or ')' in the IN list")
            return _in(left, items, negated, position)
        if word == "BETWEEN":
            low = self.operand(_ADD)
            if not self.at_keyword("AND"):
                raise FilterError(f"expected AND in BETWEEN, found {_describe(self.peek())}",
                                  self.peek()[2])
            self.i += 1
            high = self.operand(_ADD)
            return _between(left, low, high, negated, position)
        raise FilterError(f"unexpected {word}", position)

    def prefix(self, precedence: int) -> _Expr:
        kind, value, position = self.peek()
        if kind == "kw" and value == "NOT":
            if precedence > _NOT:
                raise FilterError("NOT cannot be used here without parentheses", position)
            self.i += 1
            return _not(self.operand(_NOT), position)
        if kind == "op" and value in ("-", "+"):
            self.i += 1
            self.enter(position)
            e = self.prefix(_UNARY)
            self.depth -= 1
            return _sign(value, e, position)
        return self.primary()

    def primary(self) -> _Expr:
        kind, value, position = self.advance()
        if kind in ("num", "str", "bin"):
            return _constant(value)
        if kind == "id":
            section, name = cast(tuple[str, str], value)
            return _field(section, name)
        if kind == "kw":
            if value in ("TRUE", "FALSE"):
                return _constant(value == "TRUE")
            if value == "UTC":
                self.expect_op("(", "'(' after UTC")
                self.expect_op(")", "')': UTC() takes no arguments")
                return _Expr(_utc, 1)
            if value == "NULL":
                raise FilterError("NULL can only be tested with IS NULL", position)
        if kind == "op" and value == "(":
            self.enter(position)
            e = self.expr(0)
            self.depth -= 1
            if not self.at_op(")"):
                raise FilterError(f"expected ')' to close the '(' at position {position}, "
                                  f"found {self._found(self.peek())}", self.peek()[2])
            self.i += 1
            return e
        raise FilterError(
            f"expected an expression, found {_describe((kind, value, position))}", position)


# --- the filter ----------------------------------------------------------------------


def _always(f: MessageFields, now: float) -> object:
    return True


class SqlFilter:
    """A compiled selector or SQL filter expression."""

    __slots__ = ("_root", "dialect", "text")

    def __init__(self, text: str, dialect: Dialect = SQL, *,
                 max_length: int = MAX_EXPRESSION_LENGTH) -> None:
        if not isinstance(text, str):
            raise FilterError(f"{dialect.name} needs a string, not {type(text).__name__}")
        if len(text) > max_length:
            raise FilterError(f"expression longer than {max_length} characters", max_length)
        self.text = text
        self.dialect = dialect
        if dialect.empty_matches_all and not text.strip(" \t\f\n\r"):
            self._root: Eval = _always
            return
        self._root = _Parser(text, dialect).parse().fn

    def matches(self, fields: MessageFields, now: float) -> bool:
        return self._root(fields, now) is True

    def evaluate(self, fields: MessageFields, now: float) -> bool | None:
        """The three-valued result: True, False, or None for UNKNOWN (an
        expression whose value is not a boolean is UNKNOWN too)."""
        v = self._root(fields, now)
        return v if v is True or v is False else None

    def __repr__(self) -> str:
        return f"SqlFilter({self.text!r}, {self.dialect.name})"


def compile_sql(text: str, *, max_length: int = MAX_EXPRESSION_LENGTH) -> SqlFilter:
    """An `amqp:sql-filter` expression (RabbitMQ 4.2's dialect)."""
    return SqlFilter(text, SQL, max_length=max_length)


def compile_selector(text: str, *, max_length: int = MAX_EXPRESSION_LENGTH) -> SqlFilter:
    """A JMS message selector (`apache.org:selector-filter:string`)."""
    return SqlFilter(text, SELECTOR, max_length=max_length)


def compile_azure_rule(text: str, *, max_length: int = MAX_EXPRESSION_LENGTH) -> SqlFilter:
    """An Azure Service Bus subscription rule's SQL filter: the selector
    language, with `sys.Label`-style system properties and `user.` names."""
    return SqlFilter(text, AZURE_RULE, max_length=max_length)
