"""Random expressions over a few fields, some missing, some of the wrong kind:
the compiled filter must agree with a small reference interpreter written
here straight from the rules (SQL-92 three-valued logic, like kinds only),
TRUE, FALSE and UNKNOWN alike, in both dialects."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.codec.messaging import Message
from broker.filters import MessageFields, compile_selector, compile_sql

NOW = 1_700_000_000.25
FIELDS = ("x", "y", "s", "t", "p", "q")

# An expression is a tuple: ("lit", v) ("field", name) ("utc",) ("neg", e)
# ("arith", op, a, b) ("cmp", op, a, b) ("and", a, b) ("or", a, b) ("not", a)
# ("like", e, pattern-tokens, escape, negated) ("in", e, items, negated)
# ("isnull", name, negated) ("between", e, lo, hi, negated)
Expr = tuple[object, ...]
Value = None | bool | int | float | str

# --- the reference interpreter ---------------------------------------------------


def kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    if isinstance(v, str):
        return "str"
    return "other"


def ref_compare(op: str, a: object, b: object) -> bool | None:
    if a is None or b is None:
        return None
    like = kind(a) == kind(b)
    if op == "=":
        return like and a == b
    if op == "<>":
        return not (like and a == b)
    if not like or kind(a) == "bool":
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]  # type: ignore[operator]


def ref_and(a: object, b: object) -> bool | None:
    a = a if isinstance(a, bool) else None
    b = b if isinstance(b, bool) else None
    if a is False or b is False:
        return False
    if a is True and b is True:
        return True
    return None


def ref_not(a: object) -> bool | None:
    return (not a) if isinstance(a, bool) else None


def ref_or(a: object, b: object) -> bool | None:
    return ref_not(ref_and(ref_not(a), ref_not(b)))  # De Morgan holds in Kleene logic


def ref_arith(op: str, a: object, b: object) -> object:
    if kind(a) != "num" or kind(b) != "num":
        return None
    try:
        if op == "+":
            return a + b  # type: ignore[operator]
        if op == "-":
            return a - b  # type: ignore[operator]
        if op == "*":
            return a * b  # type: ignore[operator]
        if op == "/":
            return None if b == 0 else a / b  # type: ignore[operator]
        if not isinstance(a, int) or not isinstance(b, int) or b == 0:
            return None
        quotient = abs(a) // abs(b)  # truncated division...
        if (a < 0) != (b < 0):
            quotient = -quotient
        return a - b * quotient  # ...so the remainder has the sign of a
    except OverflowError:
        return None


def like_regex(tokens: list[tuple[str, str]]) -> re.Pattern[str]:
    parts = []
    for what, char in tokens:
        parts.append(".*" if what == "any" else "." if what == "one" else re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def ref(e: Expr, env: dict[str, Value]) -> object:
    op = e[0]
    if op == "lit":
        return e[1]
    if op == "field":
        return env.get(e[1])  # type: ignore[arg-type]
    if op == "utc":
        return int(NOW * 1000)
    if op == "neg":
        v = ref(e[1], env)  # type: ignore[arg-type]
        return -v if kind(v) == "num" else None  # type: ignore[operator]
    if op == "arith":
        return ref_arith(e[1], ref(e[2], env), ref(e[3], env))  # type: ignore[arg-type]
    if op == "cmp":
        return ref_compare(e[1], ref(e[2], env), ref(e[3], env))  # type: ignore[arg-type]
    if op == "and":
        return ref_and(ref(e[1], env), ref(e[2], env))  # type: ignore[arg-type]
    if op == "or":
        return ref_or(ref(e[1], env), ref(e[2], env))  # type: ignore[arg-type]
    if op == "not":
        return ref_not(ref(e[1], env))  # type: ignore[arg-type]
    if op == "like":
        v = ref(e[1], env)  # type: ignore[arg-type]
        if not isinstance(v, str):
            return None
        hit = like_regex(e[2]).fullmatch(v) is not None  # type: ignore[arg-type]
        return hit != e[4]
    if op == "in":
        v = ref(e[1], env)  # type: ignore[arg-type]
        if v is None:
            return None
        results = [ref_compare("=", v, ref(i, env)) for i in e[2]]  # type: ignore[attr-defined]
        hit = True if True in results else None if None in results else False
        return hit if hit is None or not e[3] else not hit
    if op == "isnull":
        return (env.get(e[1]) is None) != e[2]  # type: ignore[arg-type]
    if op == "between":
        v = ref(e[1], env)  # type: ignore[arg-type]
        result = ref_and(ref_compare("<=", ref(e[2], env), v),  # type: ignore[arg-type]
                         ref_compare("<=", v, ref(e[3], env)))  # type: ignore[arg-type]
        return result if result is None or not e[4] else not result
    raise AssertionError(op)


def truth(v: object) -> bool | None:
    return v if isinstance(v, bool) else None


# --- rendering -----------------------------------------------------------------------


def literal(v: object) -> str:
    if v is True:
        return "TRUE"
    if v is False:
        return "FALSE"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, (int, float)) and v < 0:
        return f"(-{-v!r})"
    return repr(v)


def render(e: Expr) -> str:
    op = e[0]
    if op == "lit":
        return literal(e[1])
    if op == "field":
        return str(e[1])
    if op == "utc":
        return "UTC()"
    if op == "neg":
        return f"(-{render(e[1])})"  # type: ignore[arg-type]
    if op in ("arith", "cmp"):
        return f"({render(e[2])} {e[1]} {render(e[3])})"  # type: ignore[arg-type]
    if op in ("and", "or"):
        return f"({render(e[1])} {str(op).upper()} {render(e[2])})"  # type: ignore[arg-type]
    if op == "not":
        return f"(NOT {render(e[1])})"  # type: ignore[arg-type]
    if op == "like":
        escape = e[3]
        pattern = "".join(
            "%" if what == "any" else "_" if what == "one"
            else (f"{escape}{char}" if char in "%_!" else char)
            for what, char in e[2])  # type: ignore[attr-defined]
        tail = f" ESCAPE '{escape}'" if escape else ""
        negation = "NOT " if e[4] else ""
        return f"({render(e[1])} {negation}LIKE {literal(pattern)}{tail})"  # type: ignore[arg-type]
    if op == "in":
        items = ", ".join(render(i) for i in e[2])  # type: ignore[attr-defined]
        return f"({render(e[1])} {'NOT ' if e[3] else ''}IN ({items}))"  # type: ignore[arg-type]
    if op == "isnull":
        return f"({e[1]} IS {'NOT ' if e[2] else ''}NULL)"
    if op == "between":
        return (f"({render(e[1])} {'NOT ' if e[4] else ''}BETWEEN "  # type: ignore[arg-type]
                f"{render(e[2])} AND {render(e[3])})")  # type: ignore[arg-type]
    raise AssertionError(op)


# --- strategies ----------------------------------------------------------------------

ints = st.integers(-(2**63), 2**63 - 1)
small_ints = st.integers(-20, 20)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
texts = st.text(alphabet="ab%_!'", max_size=3)
values: st.SearchStrategy[Value] = st.one_of(
    st.none(), st.booleans(), small_ints, ints, floats, texts)
literals = st.one_of(st.booleans(), small_ints, ints, floats, texts).map(lambda v: ("lit", v))
fields = st.sampled_from(FIELDS).map(lambda n: ("field", n))


def values_of(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.tuples(st.just("neg"), children),
        st.tuples(st.just("arith"), st.sampled_from("+-*/%"), children, children),
    )


value_exprs: st.SearchStrategy[Expr] = st.recursive(
    st.one_of(literals, fields, st.just(("utc",))), values_of, max_leaves=4)

pattern_tokens = st.lists(st.one_of(
    st.tuples(st.just("any"), st.just("")),
    st.tuples(st.just("one"), st.just("")),
    st.tuples(st.just("lit"), st.sampled_from("ab!%_'")),
), max_size=5)


@st.composite
def likes(draw: st.DrawFn) -> Expr:
    tokens = draw(pattern_tokens)
    needs_escape = any(what == "lit" and char in "%_!" for what, char in tokens)
    escape = "!" if needs_escape or draw(st.booleans()) else ""
    # often a string made from the pattern itself, so that matches are common
    made = "".join(char if what == "lit" else draw(texts) if what == "any"
                   else draw(st.sampled_from("ab%_!")) for what, char in tokens)
    if draw(st.booleans()):
        made = made[:-1] if made and draw(st.booleans()) else made + draw(texts)
    subject = draw(st.one_of(st.just(("lit", made)), st.sampled_from([("field", "s")]), fields,
                             texts.map(lambda v: ("lit", v)), value_exprs))
    return ("like", subject, tokens, escape, draw(st.booleans()))


def predicates(between: bool) -> st.SearchStrategy[Expr]:
    options = [
        st.tuples(st.just("cmp"), st.sampled_from(["=", "<>", "<", "<=", ">", ">="]),
                  value_exprs, value_exprs),
        st.tuples(st.just("cmp"), st.sampled_from(["=", "<>", "<", "<=", ">", ">="]),
                  fields, literals),
        st.tuples(st.just("cmp"), st.sampled_from(["=", "<>", "<", "<=", ">", ">="]),
                  fields, fields),
        likes(),
        st.tuples(st.just("in"), value_exprs,
                  st.lists(st.one_of(literals, value_exprs), min_size=1, max_size=4),
                  st.booleans()),
        st.tuples(st.just("isnull"), st.sampled_from(FIELDS), st.booleans()),
        fields,  # a field used as a condition: TRUE/FALSE if boolean, else UNKNOWN
        value_exprs,
        st.sampled_from([("lit", True), ("lit", False)]),
    ]
    if between:
        options.append(st.tuples(st.just("between"), value_exprs, value_exprs, value_exprs,
                                 st.booleans()))
    return st.one_of(*options)


def conditions(between: bool) -> st.SearchStrategy[Expr]:
    return st.recursive(
        predicates(between),
        lambda children: st.one_of(
            st.tuples(st.just("and"), children, children),
            st.tuples(st.just("or"), children, children),
            st.tuples(st.just("not"), children),
        ),
        max_leaves=8,
    )


# Each field mostly holds one kind (x, y numbers; s, t strings; p, q booleans),
# sometimes another, sometimes nothing: comparisons mostly meet like kinds.
_usual: dict[str, st.SearchStrategy[Value]] = {
    "x": st.one_of(small_ints, ints, floats), "y": st.one_of(small_ints, floats),
    "s": texts, "t": texts, "p": st.booleans(), "q": st.booleans()}


@st.composite
def envs(draw: st.DrawFn) -> dict[str, Value]:
    env: dict[str, Value] = {}
    for name in FIELDS:
        choice = draw(st.integers(0, 9))
        if choice < 6:
            env[name] = draw(_usual[name])
        elif choice < 8:
            env[name] = draw(values)
        elif choice == 8:
            env[name] = None  # present, null
    return env


def message_fields(env: dict[str, Value]) -> MessageFields:
    return MessageFields(Message.create(b"", application_properties=dict(env)))


# --- the properties ----------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(conditions(between=False), envs())
def test_both_dialects_agree_with_the_reference(e: Expr, env: dict[str, Value]) -> None:
    text = render(e)
    expected = truth(ref(e, env))
    f = message_fields(env)
    for compile_ in (compile_sql, compile_selector):
        flt = compile_(text)
        assert flt.evaluate(f, NOW) is expected, (text, env)
        assert flt.matches(f, NOW) is (expected is True)


@settings(max_examples=200, deadline=None)
@given(conditions(between=True), envs())
def test_selectors_with_between_agree_with_the_reference(e: Expr, env: dict[str, Value]) -> None:
    text = render(e)
    assert compile_selector(text).evaluate(message_fields(env), NOW) is truth(ref(e, env)), text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["and", "or"]), predicates(False)), min_size=1,
                max_size=6), predicates(False), envs())
def test_precedence_and_flat_chains(chain: list[tuple[str, Expr]], head: Expr,
                                    env: dict[str, Value]) -> None:
    """Without parentheses: AND binds tighter than OR, both left to right."""
    text = render(head)
    groups: list[list[Expr]] = [[head]]  # OR of ANDs
    for op, e in chain:
        text += f" {op.upper()} {render(e)}"
        if op == "or":
            groups.append([e])
        else:
            groups[-1].append(e)
    expected: object = False
    for group in groups:
        conjunction: object = True
        for e in group:
            conjunction = ref_and(conjunction, ref(e, env))
        expected = ref_or(expected, conjunction)
    assert compile_sql(text).evaluate(message_fields(env), NOW) is truth(expected), text
