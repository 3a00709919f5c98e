"""The memory alarm as a pure object: the held count is the signal, the
process RSS a backstop that must never leave the alarm stuck on (CPython keeps
freed memory, so RSS does not fall when queues drain)."""

from __future__ import annotations

from broker.memory_alarm import MemoryAlarm

MIB = 1024 * 1024
HIGH = 100 * MIB


def test_held_count_sets_and_clears_the_alarm() -> None:
    alarm = MemoryAlarm(HIGH)
    assert alarm.held(HIGH) is None
    change = alarm.held(HIGH + 1)
    assert change is not None and change.on and alarm.on
    assert alarm.held(int(HIGH * 0.85)) is None, "between low and high it stays on"
    change = alarm.held(int(HIGH * 0.79))
    assert change is not None and not change.on and not alarm.on


def test_rss_above_high_caps_at_what_is_held() -> None:
    alarm = MemoryAlarm(HIGH)
    change = alarm.sample(held=40 * MIB, rss=HIGH + MIB)
    assert change is not None and change.on and "RSS" in change.reason
    assert alarm.limit == 40 * MIB


def test_rss_backstop_does_not_stick_when_rss_stays_high() -> None:
    alarm = MemoryAlarm(HIGH)
    alarm.sample(held=40 * MIB, rss=HIGH + MIB)
    # consumers drain; RSS stays where it was, as CPython keeps its arenas
    change = alarm.sample(held=30 * MIB, rss=HIGH + MIB)
    assert change is not None and not change.on, "draining below 0.8 of the cap clears it"
    # publishers refill into the memory the process already has: on again at the cap
    assert alarm.sample(held=39 * MIB, rss=HIGH + MIB) is None and not alarm.on
    change = alarm.sample(held=41 * MIB, rss=HIGH + MIB)
    assert change is not None and change.on
    assert alarm.limit == 40 * MIB, "the cap is not lowered while RSS holds still"


def test_rss_that_keeps_growing_lowers_the_cap() -> None:
    alarm = MemoryAlarm(HIGH)
    alarm.sample(held=40 * MIB, rss=HIGH + MIB)
    alarm.sample(held=30 * MIB, rss=HIGH + MIB)  # cleared
    change = alarm.sample(held=35 * MIB, rss=HIGH + 10 * MIB)
    assert change is not None and change.on and alarm.limit == 35 * MIB


def test_rss_falling_below_low_lifts_the_cap() -> None:
    alarm = MemoryAlarm(HIGH)
    alarm.sample(held=40 * MIB, rss=HIGH + MIB)
    alarm.sample(held=0, rss=HIGH // 2)
    assert alarm.limit == HIGH and not alarm.on
    assert alarm.sample(held=60 * MIB, rss=HIGH // 2) is None and not alarm.on


def test_rss_high_with_nothing_held_is_reported_once_and_blocks_nobody() -> None:
    alarm = MemoryAlarm(HIGH)
    change = alarm.sample(held=MIB, rss=2 * HIGH)
    assert change is not None and not change.changed and not alarm.on
    assert "not what fills memory" in change.reason
    assert alarm.sample(held=MIB, rss=2 * HIGH) is None


def test_no_rss_means_the_count_alone() -> None:
    alarm = MemoryAlarm(HIGH)
    assert alarm.sample(held=HIGH // 2, rss=None) is None
    change = alarm.sample(held=HIGH + 1, rss=None)
    assert change is not None and change.on
