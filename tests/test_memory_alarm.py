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


def flooded(alarm: MemoryAlarm) -> None:
    """RSS climbs past the watermark while publishers fill a queue."""
    alarm.sample(held=10 * MIB, rss=60 * MIB)
    alarm.sample(held=25 * MIB, rss=80 * MIB)
    change = alarm.sample(held=40 * MIB, rss=HIGH + 5 * MIB)
    assert change is not None and change.on and "RSS" in change.reason


def test_rss_growing_above_high_caps_at_what_is_held() -> None:
    alarm = MemoryAlarm(HIGH)
    flooded(alarm)
    assert alarm.limit == 40 * MIB and alarm.on


def test_rss_backstop_does_not_stick_when_rss_stays_high() -> None:
    alarm = MemoryAlarm(HIGH)
    flooded(alarm)
    # consumers drain; RSS stays where it was, as CPython keeps its arenas
    change = alarm.sample(held=30 * MIB, rss=HIGH + 5 * MIB)
    assert change is not None and not change.on, "draining below 0.8 of the cap clears it"
    assert alarm.limit == HIGH, "the cap is lifted"
    # publishers refill into the memory the process already has: RSS holds still
    for held in (35, 45, 60):
        assert alarm.sample(held=held * MIB, rss=HIGH + 5 * MIB) is None
    assert not alarm.on, "reused memory is no reason to block"
    # past the reusable memory the process grows again: on, at the new count
    change = alarm.sample(held=70 * MIB, rss=HIGH + 20 * MIB)
    assert change is not None and change.on and alarm.limit == 70 * MIB


def test_small_rss_jitter_is_not_growth() -> None:
    alarm = MemoryAlarm(HIGH)
    alarm.sample(held=50 * MIB, rss=HIGH + MIB)  # the first sample: a peak, not growth
    assert not alarm.on
    assert alarm.sample(held=50 * MIB, rss=HIGH + MIB + 4096) is None, "a page is noise"
    assert not alarm.on


def test_rss_below_high_never_caps() -> None:
    alarm = MemoryAlarm(HIGH)
    for held, rss in ((10, 20), (40, 60), (80, 95)):
        assert alarm.sample(held=held * MIB, rss=rss * MIB) is None
    assert not alarm.on and alarm.limit == HIGH


def test_rss_high_with_nothing_held_is_reported_once_and_blocks_nobody() -> None:
    alarm = MemoryAlarm(HIGH)
    alarm.sample(held=MIB, rss=HIGH + MIB)
    change = alarm.sample(held=MIB, rss=2 * HIGH)
    assert change is not None and not change.changed and not alarm.on
    assert "not what fills memory" in change.reason
    assert alarm.sample(held=MIB, rss=3 * HIGH) is None


def test_no_rss_means_the_count_alone() -> None:
    alarm = MemoryAlarm(HIGH)
    assert alarm.sample(held=HIGH // 2, rss=None) is None
    change = alarm.sample(held=HIGH + 1, rss=None)
    assert change is not None and change.on


def test_slow_rss_creep_adds_up() -> None:
    """A few MiB a tick, each below the step, still crosses the watermark as growth."""
    alarm = MemoryAlarm(HIGH)
    rss, changes = 80 * MIB, []
    while rss < 2 * HIGH and not alarm.on:
        changes.append(alarm.sample(held=30 * MIB, rss=rss))
        rss += MIB // 2
    assert alarm.on and alarm.limit == 30 * MIB
