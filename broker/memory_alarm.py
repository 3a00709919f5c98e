"""The memory alarm: when publishers may get credit, from what the broker holds.

Theory of operation.  The main signal is what queued messages hold, as the
registry counts it (payload bytes plus a fixed overhead per entry): above the
high watermark the alarm goes on, below the low one (0.8 of high) it clears.
That count is exact and falls as consumers drain, so the alarm never sticks.

The process's resident size is the backstop for what that count misses (a
larger per-message overhead than we assumed, memory held elsewhere).  RSS
cannot be the signal itself: CPython rarely returns freed memory to the OS, so
an alarm that waited for RSS to fall would stay on after every queue had been
drained.  The rule instead: once RSS is above the high watermark, the process
may not take *more* memory for messages.  When a tick finds RSS above the
watermark and above the highest RSS seen so far (by more than a small step),
the held count at that moment becomes the limit (the "cap") and the alarm
goes on.  Draining below 0.8 of the cap clears it and lifts the cap: refilling
reuses the memory the process already has, so RSS holds still and publishing
goes on, until the process would grow past its peak again.  When RSS grows
while messages hold almost nothing (under a tenth of the watermark), blocking
publishers would not help: the alarm stays off and the caller is told once,
so it can log it.

Pure: the caller passes in the counts (the server samples RSS on its
housekeeping tick); nothing here reads the clock or the OS.
"""

from __future__ import annotations

from dataclasses import dataclass

LOW_FRACTION = 0.8  # the alarm clears below this share of its limit
RSS_STEP_FRACTION = 0.01  # RSS growth past its peak (share of high) that counts
MIN_CAP_FRACTION = 0.1  # below this share of high, held bytes cannot explain RSS


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """What changed, for the log line: the alarm went on or off (`changed`), or
    RSS is high for reasons publishers cannot fix (`on` unchanged)."""

    on: bool
    reason: str
    changed: bool = True


class MemoryAlarm:
    def __init__(self, high: int) -> None:
        self.high = high
        self.limit = high  # the held-bytes limit now in force (the cap, if RSS set one)
        self.on = False
        self.rss: int | None = None  # the last sample, for listings
        self._rss_peak: int | None = None
        self._told_unexplained = False

    @property
    def low(self) -> int:
        return int(self.limit * LOW_FRACTION)

    @property
    def capped(self) -> bool:
        return self.limit != self.high

    def held(self, held: int) -> AlarmChange | None:
        """Check after a publish or on a tick: the held count alone."""
        if not self.on and held > self.limit:
            self.on = True
            return AlarmChange(True, f"queued messages hold {_mib(held)}, above the "
                                     f"{'cap' if self.capped else 'high watermark'} of "
                                     f"{_mib(self.limit)}")
        if self.on and held < self.low:
            self.on = False
            change = AlarmChange(False, f"{_mib(held)} held, below {_mib(self.low)}")
            self.limit = self.high  # refilling reuses memory; the RSS rule stays on guard
            return change
        return None

    def sample(self, held: int, rss: int | None) -> AlarmChange | None:
        """The housekeeping tick: the held count and the process RSS (None when
        the platform cannot tell)."""
        self.rss = rss
        if rss is not None:
            # growth is measured from a reference that moves only when a cap is
            # set (or falls with RSS), so slow creep adds up instead of hiding
            reference = self._rss_peak
            if reference is None or rss < reference:
                reference = self._rss_peak = rss
            grew = rss > reference + int(self.high * RSS_STEP_FRACTION)
            if grew and rss > self.high and not self.on:
                change = self._cap(held, rss)
                if change is not None:
                    return change
        return self.held(held)

    def _cap(self, held: int, rss: int) -> AlarmChange | None:
        if held < int(self.high * MIN_CAP_FRACTION):
            if self._told_unexplained:
                return None
            self._told_unexplained = True
            return AlarmChange(self.on, f"process RSS {_mib(rss)} is above the high watermark "
                                        f"of {_mib(self.high)} but queued messages hold only "
                                        f"{_mib(held)}: publishers are not what fills memory",
                               changed=False)
        self.limit = held
        self.on = True
        self._rss_peak = rss  # the next cap needs growth past this
        return AlarmChange(True, f"process RSS {_mib(rss)} is above the high watermark of "
                                 f"{_mib(self.high)} and growing; queued messages hold "
                                 f"{_mib(held)}, which is now the cap")


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"
