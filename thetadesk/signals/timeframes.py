"""Several timeframes of one underlying: 1-minute bars resampled into 5-minute, hourly and
daily bars, a trend direction on each, and an alignment score across them (the higher
timeframes for the trend, the lower for the entry).

Bars are labelled by their end (a 5-minute bar from 10:00 to 10:05 is the 10:05 bar) and
buckets are anchored at each session's open, so an hourly bar is 09:30-10:30, and the last one
of a session may be short (15:30-16:00, or shorter on an early close). Point in time:
``resample(bars, minutes, now=t)`` keeps only buckets complete at ``t`` (a bucket still forming
is not a bar yet), and every value of a bar uses the minutes inside it only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from thetadesk.signals.indicators import ema

__all__ = ["DEFAULT_WEIGHTS", "Bars", "alignment", "direction", "resample"]

# Timeframe weights of the alignment score: the daily trend counts most.
DEFAULT_WEIGHTS: Mapping[str, float] = {"1d": 0.4, "1h": 0.3, "5m": 0.2, "1m": 0.1}


class Bars(NamedTuple):
    """OHLCV bars in time order. ``end``: each bar's end (numpy datetime64, UTC); ``session``:
    its session's open (datetime64, UTC), which anchors the buckets and labels the day."""

    end: np.ndarray
    session: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def check(self) -> Bars:
        n = len(self.end)
        for name, a in zip(self._fields, self, strict=True):
            if len(a) != n:
                raise ValueError(f"bars: {name} has {len(a)} values for {n} bars")
        if n and np.any(np.diff(self.end.astype("datetime64[s]").astype(np.int64)) <= 0):
            raise ValueError("bars must be in strictly increasing time order")
        if n and np.any(self.end <= self.session):
            raise ValueError("every bar must end after its session's open")
        return self


def resample(bars: Bars, minutes: int | None, now: np.datetime64 | None = None,
             session_close: np.datetime64 | None = None) -> Bars:
    """``bars`` (usually 1-minute) into ``minutes``-long buckets from each session's open, or
    one bar per session when ``minutes`` is None (daily). An intraday bar is labelled by its
    nominal end (09:30 + k * minutes), the session's last one too, though it holds only the
    minutes up to the close.

    With ``now``: input bars ending after ``now`` are ignored (they are the future), and only
    complete buckets are returned: a bucket whose nominal end has come, any bucket of a session
    older than the newest one in the input, and every bucket of the newest one (its daily bar
    too) once ``now`` reaches ``session_close``, which is that session's close (the newest
    session in the input after the cut, from the calendar; None: not known to have closed)."""
    bars.check()
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int)
                                or minutes < 1):
        raise ValueError(f"minutes must be a positive integer or None, got {minutes!r}")
    t = None if now is None else np.datetime64(now, "s")
    if t is not None:
        bars = Bars(*(a[bars.end.astype("datetime64[s]") <= t] for a in bars))
    if len(bars.end) == 0:
        return bars
    end_s = bars.end.astype("datetime64[s]").astype(np.int64)
    open_s = bars.session.astype("datetime64[s]").astype(np.int64)
    if minutes is None:
        bucket = open_s
    else:
        step = 60 * minutes
        index = (end_s - open_s - 1) // step  # a bar ending exactly on a boundary closes it
        bucket = open_s * 100_000 + index
        nominal = (open_s + (index + 1) * step).astype("datetime64[s]")
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    stops = np.r_[starts[1:], len(bucket)]
    last = stops - 1
    out = Bars(
        end=(bars.end[last].astype("datetime64[s]") if minutes is None else nominal[last]),
        session=bars.session[starts],
        open=bars.open[starts],
        high=np.maximum.reduceat(bars.high, starts),
        low=np.minimum.reduceat(bars.low, starts),
        close=bars.close[last],
        volume=np.add.reduceat(bars.volume, starts),
    )
    if t is None:
        return out
    older = out.session != bars.session[-1]
    closed = session_close is not None and t >= np.datetime64(session_close, "s")
    complete = older | closed
    if minutes is not None:
        complete = complete | (out.end <= t)
    return Bars(*(a[complete] for a in out))


def direction(close, fast: int = 8, slow: int = 21) -> float:
    """The trend on one timeframe at its latest bar: +1 when the fast EMA is above the slow and
    the close above the slow, -1 for both below, 0 otherwise or before the slow EMA exists."""
    c = np.asarray(close, dtype=np.float64)
    if len(c) < slow:
        return 0.0
    f, s = ema(c, fast)[-1], ema(c, slow)[-1]
    if not (np.isfinite(f) and np.isfinite(s)):
        return 0.0
    if f > s and c[-1] > s:
        return 1.0
    if f < s and c[-1] < s:
        return -1.0
    return 0.0


def alignment(directions: Mapping[str, float],
              weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> float:
    """The weighted mean of the timeframes' directions, -1..1: +1 when every timeframe points
    up, -1 when all point down, near 0 when they disagree. Timeframes without a direction
    (absent from ``directions``) are left out of the weights, not counted as flat."""
    unknown = set(directions) - set(weights)
    if unknown:
        raise ValueError(f"no weight for timeframe(s) {sorted(unknown)}; weights cover "
                         f"{sorted(weights)}")
    total = sum(weights[k] for k in directions)
    if total <= 0:
        return 0.0
    return float(sum(weights[k] * float(np.clip(v, -1.0, 1.0))
                     for k, v in directions.items()) / total)
