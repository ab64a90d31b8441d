"""Daily history of an underlying for the decision layer: each completed session's open, high,
low and close, and the 30-day at-the-money implied volatility at its close.

Point in time: ``DailyHistory.before(day)`` holds the sessions before ``day`` only (a session in
progress is not a bar yet). Sources: a market with ``day_path(symbol, day)`` (the simulator and
the historical replay: every minute of the session, so high and low are exact) and, where it has
one, ``atm_iv(symbol, t)``; or a market with ``aggregates(symbol, 1, "day", start, end)``
(Polygon: the vendor's daily bars, one request per session; no implied-volatility history, so
the volatility regime reads the realised volatility's percentile). Any other source has no
history here, and the caller says so rather than trade on nothing. Sessions are remembered, so
each is read from the market once per process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC as _UTC
from datetime import date, timedelta

import numpy as np

from thetadesk.chain import NEW_YORK
from thetadesk.clock import MarketCalendar
from thetadesk.errors import DataError

__all__ = ["DailyBars", "DailyHistory", "minute_bars"]

_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class DailyBars:
    sessions: tuple[date, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    atm_iv: np.ndarray  # NaN where the source has no implied volatility

    def __len__(self) -> int:
        return len(self.sessions)


class DailyHistory:
    """Daily bars of one symbol from ``market``, remembered per session."""

    def __init__(self, market, symbol: str, calendar: MarketCalendar | None = None) -> None:
        self._paths = callable(getattr(market, "day_path", None))
        if not self._paths and not callable(getattr(market, "aggregates", None)):
            raise DataError(f"{type(market).__name__} gives no daily history (neither minute "
                            "paths nor daily aggregates): the adaptive strategy needs the "
                            "simulator, the historical replay or Polygon")
        self._fetched: set[date] = set()  # days whose history was asked of the aggregates
        self.market = market
        self.symbol = symbol
        self.calendar = calendar or MarketCalendar()
        self._bars: dict[date, tuple[float, float, float, float, float]] = {}
        self._missing: set[date] = set()  # sessions before the source's data begins

    def _bar(self, day: date) -> tuple[float, float, float, float, float] | None:
        if day in self._bars:
            return self._bars[day]
        if day in self._missing or not self._paths:
            return None
        try:
            path = np.asarray(self.market.day_path(self.symbol, day), dtype=np.float64)
        except DataError:
            self._missing.add(day)
            return None
        if path.size == 0 or not np.all(np.isfinite(path)) or np.any(path <= 0):
            raise DataError(f"{self.symbol} {day}: the source's minute prices are unusable")
        iv = math.nan
        atm = getattr(self.market, "atm_iv", None)
        if callable(atm):
            try:
                iv = float(atm(self.symbol, self.calendar.session_close(day)))
            except DataError:
                iv = math.nan
        bar = (float(path[0]), float(path.max()), float(path.min()), float(path[-1]), iv)
        self._bars[day] = bar
        return bar

    def _fetch(self, day: date, sessions: int) -> None:
        """The vendor's daily bars of the ``sessions`` sessions before ``day``, remembered;
        sessions it has no bar for count as missing (the history ends there)."""
        if day in self._fetched:
            return
        first = day
        for _ in range(sessions):
            first = self.calendar.previous_session(first)
        bars = self.market.aggregates(self.symbol, 1, "day",
                                      self.calendar.session_open(first),
                                      self.calendar.session_open(day))
        got: dict[date, tuple[float, float, float, float, float]] = {}
        for b in bars:
            d = b.start.astimezone(NEW_YORK).date()
            if d >= day or not self.calendar.is_session(d):
                continue  # today's bar is still forming; a stray non-session bar is no session
            if not all(math.isfinite(x) and x > 0 for x in (b.open, b.high, b.low, b.close)):
                raise DataError(f"{self.symbol} {d}: the vendor's daily bar is unusable")
            got[d] = (b.open, b.high, b.low, b.close, math.nan)
        d = self.calendar.previous_session(day)
        while d >= first:
            if d in got:
                self._bars[d] = got[d]
            elif d not in self._bars:
                self._missing.add(d)
            d = self.calendar.previous_session(d)
        self._fetched.add(day)

    def before(self, day: date, sessions: int) -> DailyBars:
        """Up to ``sessions`` completed sessions before ``day``, oldest first; fewer at the
        start of the source's data (the simulation's first session, the replay's)."""
        if sessions < 1:
            raise ValueError(f"sessions must be >= 1, got {sessions}")
        if not self._paths:
            self._fetch(day, sessions)
        days: list[date] = []
        d = self.calendar.previous_session(day)
        while len(days) < sessions:
            if self._bar(d) is None:
                break
            days.append(d)
            try:
                d = self.calendar.previous_session(d)
            except (DataError, ValueError):
                break
        days.reverse()
        rows = [self._bar(d) for d in days]
        cols = np.array(rows, dtype=np.float64).reshape(len(rows), 5).T
        return DailyBars(tuple(days), *cols)


def minute_bars(market, symbol: str, now, calendar: MarketCalendar, sessions: int = 5):
    """``symbol``'s 1-minute bars (``timeframes.Bars``) of the last ``sessions`` sessions up to
    ``now``, point in time: today's only through the minute that has ended by ``now``. From a
    market with ``day_path`` (each minute's price: open, high, low and close alike; volume
    unknown, NaN) or with ``aggregates`` (the vendor's minute bars, regular hours only, with
    their volume); None for any other source."""
    from thetadesk.signals.timeframes import Bars

    if not callable(getattr(market, "day_path", None)):
        if not callable(getattr(market, "aggregates", None)):
            return None
        return _vendor_minutes(market, symbol, now, calendar, sessions)
    today = now.astimezone(NEW_YORK).date()
    days: list[date] = []
    d = today if calendar.is_session(today) else calendar.previous_session(today)
    while len(days) < sessions:
        days.append(d)
        d = calendar.previous_session(d)
    ends, opens, prices = [], [], []
    now_ns = np.datetime64(now.astimezone(_UTC).replace(tzinfo=None), "s")
    for day in reversed(days):
        try:
            path = np.asarray(market.day_path(symbol, day), dtype=np.float64)
        except DataError:
            continue
        start = np.datetime64(calendar.session_open(day).astimezone(_UTC).replace(tzinfo=None),
                              "s")
        minute_ends = start + np.arange(1, len(path)) * np.timedelta64(60, "s")
        keep = minute_ends <= now_ns
        ends.append(minute_ends[keep])
        opens.append(np.full(int(keep.sum()), start))
        prices.append(path[1:][keep])
    if not ends:
        return None
    end, session, price = np.concatenate(ends), np.concatenate(opens), np.concatenate(prices)
    return Bars(end, session, price, price, price, price, np.full(len(price), np.nan))


def _vendor_minutes(market, symbol: str, now, calendar: MarketCalendar, sessions: int):
    from thetadesk.signals.timeframes import Bars

    today = now.astimezone(NEW_YORK).date()
    d = today if calendar.is_session(today) else calendar.previous_session(today)
    days = [d]
    while len(days) < sessions:
        days.append(calendar.previous_session(days[-1]))
    hours = {day: (calendar.session_open(day), calendar.session_close(day)) for day in days}
    rows = []
    for b in market.aggregates(symbol, 1, "minute", hours[days[-1]][0], now):
        day = b.start.astimezone(NEW_YORK).date()
        if day not in hours:
            continue
        start, close = hours[day]
        end = b.start + _MINUTE
        if not (start <= b.start and end <= close and end <= now):
            continue  # pre- and after-market minutes, and the minute still forming
        if not all(math.isfinite(x) and x > 0 for x in (b.open, b.high, b.low, b.close)):
            continue
        rows.append((end, start, b.open, b.high, b.low, b.close, b.volume))
    if not rows:
        return None
    rows.sort(key=lambda r: r[0])

    def col(i, kind="f8"):
        return np.array([r[i] for r in rows], dtype=kind)

    def stamp(i):
        return np.array([np.datetime64(r[i].astimezone(_UTC).replace(tzinfo=None), "s")
                         for r in rows])

    return Bars(stamp(0), stamp(1), col(2), col(3), col(4), col(5), col(6))
