"""The one timer of every connection's deadlines."""

from __future__ import annotations

import heapq
import math

import trio

from broker.transports.timers import GRAIN, timers


class Client:
    def __init__(self, name: str, calls: list[tuple[str, float]]) -> None:
        self.name = name
        self.calls = calls
        self.deadline = math.inf

    def at(self, when: float) -> None:
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


async def test_deadlines_within_one_grain_share_one_call_time_never_early(
        autojump_clock: trio.abc.Clock) -> None:
    """Many connections' heartbeats a few ms apart: one wake-up of the timers,
    each call at or after its own deadline and less than a grain after it."""
    calls: list[tuple[str, float]] = []
    start = trio.current_time()
    step = math.floor((start + 1) / GRAIN) * GRAIN  # inside one step of the grid
    wanted = {f"c{i}": step + GRAIN / 100 + i * GRAIN / 20 for i in range(10)}
    for name, when in wanted.items():
        Client(name, calls).at(when)
    await trio.sleep(5)
    assert sorted(name for name, _ in calls) == sorted(wanted)
    assert len({t for _, t in calls}) == 1
    for name, t in calls:
        assert wanted[name] <= t < wanted[name] + GRAIN


async def test_a_later_deadline_does_not_replace_an_earlier_one(
        autojump_clock: trio.abc.Clock) -> None:
    calls: list[tuple[str, float]] = []
    start = trio.current_time()
    client = Client("c", calls)
    client.at(start + 2)
    client.at(start + 7)
    assert len(timers()._heap) == 1
    await trio.sleep(10)
    assert [round(t - start) for _, t in calls] == [2]


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


class Periodic:
    """What a pump does on its deadline: tick, and schedule the next one."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.deadline = math.inf
        self.calls = 0

    def on_deadline(self) -> None:
        self.calls += 1
        timers().schedule(self, trio.current_time() + self.period)


class Gone:
    deadline = -math.inf  # an ended connection: its entries are stale

    def on_deadline(self) -> None:
        raise AssertionError("a stale entry was called")


async def test_a_rebuild_during_a_pass_does_not_lose_the_deadlines_it_kept(
        autojump_clock: trio.abc.Clock) -> None:
    t = timers()
    t.clients += 2
    now = trio.current_time()
    slow, fast = Periodic(5.0), Periodic(0.1)
    for client in (slow, fast):
        t.schedule(client, now + 0.01)
    due = fast.deadline  # on the grid
    for i in range(1100):  # due at the same time: the first reschedule rebuilds the heap
        heapq.heappush(t._heap, (due, 10**9 + i, Gone()))  # type: ignore[arg-type]
    await trio.sleep(3.0)
    assert fast.calls >= 25, f"the 0.1 s deadline ran {fast.calls} times in 3 s"
    t.clients -= 2
