"""The one timer of every connection's deadlines."""

from __future__ import annotations

import math

import trio

from broker.transports.timers import timers


class Client:
    def __init__(self, name: str, calls: list[tuple[str, float]]) -> None:
        self.name = name
        self.calls = calls
        self.deadline = math.inf

    def at(self, when: float) -> None:
        self.deadline = when
        timers().schedule(self, when)

    def on_deadline(self) -> None:
        self.calls.append((self.name, trio.current_time()))


async def test_deadlines_come_in_order_and_moved_ones_only_once(
        autojump_clock: trio.abc.Clock) -> None:
    calls: list[tuple[str, float]] = []
    start = trio.current_time()
    a, b, c = Client("a", calls), Client("b", calls), Client("c", calls)
    a.at(start + 5)
    b.at(start + 3)
    c.at(start + 9)
    a.at(start + 1)  # moved earlier: its entry at +5 is stale now
    c.deadline = -math.inf  # c's connection ended
    await trio.sleep(20)
    assert [(name, round(t - start)) for name, t in calls] == [("a", 1), ("b", 3)]


async def test_a_deadline_scheduled_while_sleeping_wakes_the_timer_early(
        autojump_clock: trio.abc.Clock) -> None:
    calls: list[tuple[str, float]] = []
    start = trio.current_time()
    Client("late", calls).at(start + 100)
    await trio.sleep(1)
    Client("early", calls).at(start + 2)
    await trio.sleep(5)
    assert [name for name, _ in calls] == ["early"]


async def test_stale_entries_do_not_pile_up(autojump_clock: trio.abc.Clock) -> None:
    t = timers()
    t.clients += 1
    client = Client("moving", [])
    start = trio.current_time()
    for i in range(10_000):  # a deadline moved earlier over and over
        client.at(start + 10_000 - i)
    assert len(t._heap) <= 2 * t.clients + 1024 + 1
    t.clients -= 1
