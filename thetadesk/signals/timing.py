"""Entry timing: when in the day to open a trade, on what quality of quote, and how a limit
order works from mid toward the natural price before giving up.

- Windows are US/Eastern wall-clock ranges (the defaults skip the first half hour, the lunch
  lull and the last half hour: 10:00-11:30 and 14:00-15:30). They follow New York time through
  daylight-saving changes, and on an early close (13:00 on the day after Thanksgiving, for
  instance) a window is cut to end ``close_buffer`` minutes before that session's close, or
  dropped if nothing is left.
- A spread is entered only if its bid/ask width is at most ``max_width_fraction`` of its mid
  (both as the spread trades: the combination's natural-to-natural width over its mid).
- An optional volume-spike confirmation asks that the underlying's latest bar traded at least
  ``volume_spike`` times its recent average (``indicators.volume_ratio``).
- ``LimitLadder``: the order starts at mid (rounded to the tick in the trader's favour) and every
  ``step_minutes`` gives one ``tick`` toward natural, stopping at natural rounded to the tick
  toward the market (so, with a coarse tick, up to one tick past it: still marketable, and
  filled at natural or better); after ``max_steps`` steps with no fill it is cancelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from thetadesk.chain import NEW_YORK

__all__ = ["DEFAULT_WINDOWS", "EntryTiming", "LimitLadder", "LimitStep", "spread_width"]

DEFAULT_WINDOWS = ((time(10, 0), time(11, 30)), (time(14, 0), time(15, 30)))


def spread_width(mid: float, natural: float) -> float:
    """The spread's bid/ask width as a fraction of its mid: ``2 |mid - natural| / |mid|``
    (natural is the far side, mid the middle, so the full width is twice their distance).
    Infinite for a zero mid, NaN for unusable prices."""
    if not (math.isfinite(mid) and math.isfinite(natural)):
        return math.nan
    if mid == 0:
        return math.inf
    return 2.0 * abs(mid - natural) / abs(mid)


@dataclass(frozen=True, slots=True)
class EntryTiming:
    windows: tuple[tuple[time, time], ...] = DEFAULT_WINDOWS
    close_buffer: int = 30  # minutes before the session's close when no window reaches
    max_width_fraction: float = 0.25  # of the spread's mid; None-like inf: no limit
    volume_spike: float | None = None  # e.g. 1.5: the latest bar >= 1.5x its average

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError("entry timing needs at least one window")
        last = None
        for start, end in self.windows:
            if not start < end:
                raise ValueError(f"entry window {start:%H:%M}-{end:%H:%M}: the start must be "
                                 "before the end")
            if last is not None and start <= last:
                raise ValueError(f"entry windows must be in order and not overlap: "
                                 f"{start:%H:%M} starts before {last:%H:%M} ends")
            last = end
        if self.close_buffer < 0:
            raise ValueError(f"close_buffer must be >= 0 minutes, got {self.close_buffer}")
        if not self.max_width_fraction > 0:
            raise ValueError(f"max_width_fraction must be > 0, got {self.max_width_fraction}")
        if self.volume_spike is not None and not (math.isfinite(self.volume_spike)
                                                  and self.volume_spike > 0):
            raise ValueError(f"volume_spike must be a positive multiple, got "
                             f"{self.volume_spike}")

    def window_at(self, now: datetime, session_close: datetime | None = None
                  ) -> tuple[time, time] | None:
        """The window (New York wall times, cut for an early close) holding ``now``, if any.
        ``session_close``: the close of ``now``'s session (the calendar's), which cuts the
        windows ``close_buffer`` minutes before it; None means a regular 16:00 close
        (the buffer applies to it just the same)."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"entry timing needs a timezone-aware time, got {now!r}")
        local = now.astimezone(NEW_YORK)
        t = local.time()
        cutoff = (datetime.combine(local.date(), time(16, 0)) - timedelta(
            minutes=self.close_buffer)).time()
        if session_close is not None:
            close_local = session_close.astimezone(NEW_YORK)
            if close_local.date() != local.date():
                raise ValueError(f"session close {session_close.isoformat()} is not on "
                                 f"{local.date()}, the day of {now.isoformat()}")
            cutoff = (close_local - timedelta(minutes=self.close_buffer)).time()
        for start, end in self.windows:
            if end > cutoff:
                end = cutoff
            if start < end and start <= t <= end:
                return start, end
        return None

    def allows_time(self, now: datetime, session_close: datetime | None = None) -> bool:
        return self.window_at(now, session_close) is not None

    def quote_problem(self, mid: float, natural: float) -> str | None:
        """Why the spread's quote is too wide to trade (None if it is fine)."""
        width = spread_width(mid, natural)
        if not math.isfinite(width) or width > self.max_width_fraction:
            shown = "unusable" if math.isnan(width) else f"{width:.0%}"
            return (f"bid/ask width {shown} of the mid {mid:.2f} is above the "
                    f"{self.max_width_fraction:.0%} limit")
        return None

    def volume_problem(self, ratio: float | None) -> str | None:
        """Why the volume does not confirm (None when confirmed or not asked for); ``ratio`` is
        the latest bar's volume over its average, None or NaN when unknown."""
        if self.volume_spike is None:
            return None
        if ratio is None or not math.isfinite(ratio):
            return "no volume history to confirm the entry with"
        if ratio < self.volume_spike:
            return (f"volume {ratio:.2f}x its average, below the {self.volume_spike:g}x "
                    "confirmation")
        return None


@dataclass(frozen=True, slots=True)
class LimitStep:
    step: int  # 0 at the start (mid)
    price: float | None  # the limit now, per share of the spread; None: cancel
    reason: str


@dataclass(frozen=True, slots=True)
class LimitLadder:
    """A working limit order's price over time. Prices are the spread's net premium per share,
    positive: the credit received (``credit=True``) or the debit paid."""

    step_minutes: int = 5
    tick: float = 0.01
    max_steps: int = 5

    def __post_init__(self) -> None:
        if self.step_minutes < 1:
            raise ValueError(f"step_minutes must be >= 1, got {self.step_minutes}")
        if not (math.isfinite(self.tick) and self.tick > 0):
            raise ValueError(f"tick must be a positive price increment, got {self.tick}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")

    def _ticks(self, price: float, up: bool) -> int:
        q = price / self.tick
        return math.ceil(q - 1e-9) if up else math.floor(q + 1e-9)

    def start(self, mid: float, natural: float, credit: bool) -> float:
        """The opening limit: mid, rounded to the tick in the trader's favour (up for a credit,
        down for a debit), but never beyond natural's far side."""
        return self.price(mid, natural, credit, 0)

    def price(self, mid: float, natural: float, credit: bool, step: int) -> float:
        """The limit after ``step`` steps: one tick per step from the rounded mid toward
        natural, stopping at natural (rounded toward the market, so it stays marketable)."""
        if not (math.isfinite(mid) and math.isfinite(natural) and mid > 0 and natural >= 0):
            raise ValueError(f"limit ladder needs usable prices, got mid {mid!r}, natural "
                             f"{natural!r}")
        if credit:
            first = self._ticks(mid, up=True)
            floor = self._ticks(natural, up=False)
            n = max(first - step, min(floor, first))
        else:
            first = self._ticks(mid, up=False)
            cap = self._ticks(natural, up=True)
            n = min(first + step, max(cap, first))
        return round(n * self.tick, 10)

    def net(self, mid: float, natural: float, step: int) -> float:
        """``price`` for prices signed as the desk's net premiums (> 0 a credit received,
        < 0 a debit paid), the answer signed the same way."""
        if mid > 0:
            return self.price(mid, natural, True, step)
        return -self.price(-mid, -natural, False, step)

    def at(self, mid: float, natural: float, credit: bool, placed: datetime, now: datetime
           ) -> LimitStep:
        """Where the order placed at ``placed`` stands at ``now`` against the current quote:
        its step and limit, or cancel once ``max_steps`` steps have gone unfilled."""
        if now < placed:
            raise ValueError(f"now {now.isoformat()} is before the order was placed at "
                             f"{placed.isoformat()}")
        step = int((now - placed).total_seconds() // (60 * self.step_minutes))
        if step > self.max_steps:
            return LimitStep(step, None, f"unfilled after {self.max_steps} steps of "
                                         f"{self.step_minutes} minutes: cancel")
        p = self.price(mid, natural, credit, step)
        at_natural = p == self.price(mid, natural, credit, 10**6)
        return LimitStep(step, p, "at natural" if at_natural else f"mid {'-' if credit else '+'}"
                                                                  f" {step} tick(s)")
