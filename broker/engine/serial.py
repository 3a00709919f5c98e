"""RFC 1982 serial-number arithmetic on 32-bit sequence numbers (§2.1)."""

from __future__ import annotations

MOD = 1 << 32
HALF = 1 << 31


def add(a: int, n: int) -> int:
    return (a + n) & 0xFFFFFFFF


def diff(a: int, b: int) -> int:
    """a - b as a signed distance, valid while |a - b| < 2**31."""
    d = (a - b) & 0xFFFFFFFF
    return d - MOD if d >= HALF else d


def lt(a: int, b: int) -> bool:
    return a != b and ((b - a) & 0xFFFFFFFF) < HALF


def le(a: int, b: int) -> bool:
    return a == b or lt(a, b)


def in_range(x: int, first: int, last: int) -> bool:
    """first <= x <= last in serial order."""
    return le(first, x) and le(x, last)
