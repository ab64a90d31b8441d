"""The only source of "now" in ThetaDesk, and the NYSE calendar that says when the market trades.

Components take a ``Clock``; pure functions take ``now`` as an argument. ``LiveClock`` reads the
wall clock (the one place in ``thetadesk/`` that does); ``SimClock`` moves only when told to, so a
seeded simulation or backtest is reproducible. Every instant is a timezone-aware UTC ``datetime``.

``MarketCalendar`` answers session questions for the NYSE (holidays, early closes, DST) from
``exchange_calendars``' XNYS calendar over a fixed range of dates, ``CALENDAR_FIRST`` to
``CALENDAR_LAST``: a fixed range keeps answers independent of the day the process started.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import warnings
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

__all__ = [
    "CALENDAR_FIRST",
    "CALENDAR_LAST",
    "Clock",
    "LiveClock",
    "MarketCalendar",
    "SimClock",
]

CALENDAR_FIRST = date(2000, 1, 1)
CALENDAR_LAST = date(2040, 12, 31)
_NEW_YORK = ZoneInfo("America/New_York")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class LiveClock:
    """The wall clock, for live trading."""

    def now(self) -> datetime:
        # The one wall-clock read in thetadesk/: everything else asks an injected Clock.
        return datetime.now(UTC)


def _require_aware(t: datetime, name: str) -> datetime:
    if not isinstance(t, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {t.isoformat()}")
    return t.astimezone(UTC)


class SimClock:
    """A clock that moves only when told to: simulations, backtests and tests.

    Time never runs backwards: ``advance_to`` an earlier instant raises ``ValueError``.
    """

    def __init__(self, start: datetime) -> None:
        self._now = _require_aware(start, "start")

    def now(self) -> datetime:
        return self._now

    def advance_to(self, t: datetime) -> None:
        """Move to instant ``t`` (timezone-aware, stored as UTC); ``t`` equal to now is a no-op."""
        t = _require_aware(t, "t")
        if t < self._now:
            raise ValueError(
                f"cannot move a SimClock back from {self._now.isoformat()} to {t.isoformat()}"
            )
        self._now = t

    def advance(self, delta: timedelta) -> None:
        """Move forward by ``delta`` (zero or positive)."""
        if delta < timedelta(0):
            raise ValueError(f"cannot advance a SimClock by a negative duration ({delta})")
        self._now = self._now + delta


@dataclass(frozen=True, slots=True)
class _Sessions:
    days: list[date]
    hours: dict[date, tuple[datetime, datetime]]


def _cache_file() -> Path | None:
    """Where the session table is kept between processes: exchange_calendars (and the pandas it
    loads) costs each process ~40 MB and ~0.7 s, and every Ray actor needs the calendar. The
    file is named by the library's version and the range, so an upgrade rebuilds it."""
    try:
        version = importlib.metadata.version("exchange_calendars")
    except importlib.metadata.PackageNotFoundError:
        return None
    base = os.environ.get("THETADESK_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "thetadesk")
    return Path(base) / f"xnys-{version}-{CALENDAR_FIRST}-{CALENDAR_LAST}.json"


def _from_rows(rows: list) -> _Sessions:
    days = [date.fromisoformat(d) for d, _, _ in rows]
    opens = [datetime.fromtimestamp(o, UTC) for _, o, _ in rows]
    closes = [datetime.fromtimestamp(c, UTC) for _, _, c in rows]
    return _Sessions(days, dict(zip(days, zip(opens, closes, strict=True), strict=True)))


@functools.cache
def _nyse() -> _Sessions:
    """The session table: from the cache file when a process built it already (checked for
    shape), else from exchange_calendars, then written there (atomically; an unwritable cache
    only costs the next process the build)."""
    path = _cache_file()
    if path is not None:
        try:
            rows = json.loads(path.read_text())
            if (isinstance(rows, list) and rows and all(
                    isinstance(r, list) and len(r) == 3 for r in rows)):
                return _from_rows(rows)
        except (OSError, ValueError, TypeError):
            pass
    built = _build_nyse()
    if path is not None:
        rows = [[d.isoformat(), built.hours[d][0].timestamp(), built.hours[d][1].timestamp()]
                for d in built.days]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(rows))
            os.replace(tmp, path)
        except OSError:
            pass
    return built


def _build_nyse() -> _Sessions:
    import exchange_calendars

    with warnings.catch_warnings():
        # exchange_calendars 4.13 trips a pandas 3.1 deprecation inside its constructor.
        warnings.filterwarnings(
            "ignore", message=r"Series\.values returning an ndarray", category=DeprecationWarning
        )
        calendar = exchange_calendars.get_calendar(
            "XNYS", start=CALENDAR_FIRST.isoformat(), end=CALENDAR_LAST.isoformat()
        )
        schedule = calendar.schedule
    days = [ts.date() for ts in schedule.index]
    opens = [ts.to_pydatetime().astimezone(UTC) for ts in schedule["open"]]
    closes = [ts.to_pydatetime().astimezone(UTC) for ts in schedule["close"]]
    return _Sessions(days, dict(zip(days, zip(opens, closes, strict=True), strict=True)))


class MarketCalendar:
    """NYSE sessions from 2000 to 2040: holidays, early closes (13:00 New York) and DST.

    Dates are New York calendar dates; instants are timezone-aware UTC. A date outside the
    calendar's range raises ``ValueError``. Instances are cheap and picklable: the session
    table is built once per process and shared.
    """

    @property
    def first_session(self) -> date:
        return _nyse().days[0]

    @property
    def last_session(self) -> date:
        return _nyse().days[-1]

    def _check(self, d: date) -> None:
        if isinstance(d, datetime) or not isinstance(d, date):
            raise TypeError(f"expected a date, got {type(d).__name__}: {d!r}")
        if not CALENDAR_FIRST <= d <= CALENDAR_LAST:
            raise ValueError(
                f"{d.isoformat()} is outside the NYSE calendar's range "
                f"({CALENDAR_FIRST.isoformat()} to {CALENDAR_LAST.isoformat()})"
            )

    def _hours(self, d: date) -> tuple[datetime, datetime]:
        self._check(d)
        hours = _nyse().hours.get(d)
        if hours is None:
            raise ValueError(f"{d.isoformat()} is not an NYSE session")
        return hours

    def is_session(self, d: date) -> bool:
        """Whether the NYSE trades on New York date ``d``."""
        self._check(d)
        return d in _nyse().hours

    def next_session(self, d: date) -> date:
        """``d`` itself if it is a session, else the first session after it."""
        self._check(d)
        days = _nyse().days
        i = bisect_left(days, d)
        if i == len(days):
            raise ValueError(f"no NYSE session on or after {d.isoformat()} within the calendar")
        return days[i]

    def previous_session(self, d: date) -> date:
        """The last session strictly before ``d``."""
        self._check(d)
        days = _nyse().days
        i = bisect_left(days, d)
        if i == 0:
            raise ValueError(f"no NYSE session before {d.isoformat()} within the calendar")
        return days[i - 1]

    def sessions(self, start: date, count: int) -> list[date]:
        """``count`` consecutive sessions beginning with ``next_session(start)``."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        days = _nyse().days
        i = bisect_left(days, self.next_session(start))
        if i + count > len(days):
            raise ValueError(
                f"{count} sessions from {start.isoformat()} run past the calendar's last "
                f"session ({days[-1].isoformat()})"
            )
        return days[i : i + count]

    def session_open(self, d: date) -> datetime:
        """The regular-hours open of session ``d`` (09:30 New York), in UTC."""
        return self._hours(d)[0]

    def session_close(self, d: date) -> datetime:
        """The close of session ``d`` in UTC: 16:00 New York, or 13:00 on an early close."""
        return self._hours(d)[1]

    def ticks(self, d: date, tick_seconds: int) -> list[datetime]:
        """The tick instants of session ``d``, UTC: open + tick, open + 2 tick, ..., close.

        ``tick_seconds`` is the market time between ticks, in seconds. The last tick is the
        close itself even when the session length is not a multiple of the tick.
        """
        if tick_seconds <= 0:
            raise ValueError(f"tick_seconds must be > 0, got {tick_seconds}")
        open_, close = self._hours(d)
        step = timedelta(seconds=tick_seconds)
        n = int((close - open_) / step)
        ticks = [open_ + k * step for k in range(1, n + 1)]
        if not ticks or ticks[-1] != close:
            ticks.append(close)
        return ticks

    def is_open(self, t: datetime) -> bool:
        """Whether regular hours are in progress at instant ``t``: open <= t < close."""
        t = _require_aware(t, "t")
        d = t.astimezone(_NEW_YORK).date()
        self._check(d)
        hours = _nyse().hours.get(d)
        return hours is not None and hours[0] <= t < hours[1]
