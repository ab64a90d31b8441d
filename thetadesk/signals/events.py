"""The event calendar: scheduled releases the desk takes no new risk into.

Shipped: FOMC statements, CPI and the jobs report (BLS Employment Situation) in
``signals/data/us_macro_events.csv`` (columns ``date,event,time_et,source``; where each date
comes from, and which are not verified, is in ``us_macro_events.md`` beside it). Users add their
own files in the same format (``events.files`` in config): more macro dates, or ``earnings``
rows with a ``symbol`` column for single stocks, which apply to that symbol only. A macro event
applies to every symbol. Exchange holidays and early closes are the market calendar's, not
this file's.

The blackout around an event runs from ``before`` ahead of its release instant (New York date
and time) to ``after`` past it; inside it no entry is made (exits, rolls and hedges go on).
"""

from __future__ import annotations

import csv
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from thetadesk.chain import NEW_YORK
from thetadesk.errors import ConfigError

__all__ = ["DEFAULT_BLACKOUTS", "SHIPPED_EVENTS", "Blackout", "Event", "EventCalendar",
           "load_events"]

SHIPPED_EVENTS = Path(__file__).resolve().parent / "data" / "us_macro_events.csv"
MACRO_KINDS = ("fomc", "cpi", "jobs")
KINDS = (*MACRO_KINDS, "earnings")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class Blackout:
    before: timedelta
    after: timedelta

    def __post_init__(self) -> None:
        if self.before < timedelta(0) or self.after < timedelta(0):
            raise ValueError(f"a blackout's before and after must be >= 0, got {self.before}, "
                             f"{self.after}")


# From the afternoon before each release (the evening before an 08:30 number) until the market
# has digested it: an hour after CPI and jobs, two after the FOMC statement (the press
# conference runs 14:30-15:30), a day either side of a company's earnings.
DEFAULT_BLACKOUTS: Mapping[str, Blackout] = {
    "fomc": Blackout(timedelta(hours=24), timedelta(hours=2)),
    "cpi": Blackout(timedelta(hours=18), timedelta(hours=1)),
    "jobs": Blackout(timedelta(hours=18), timedelta(hours=1)),
    "earnings": Blackout(timedelta(hours=24), timedelta(hours=24)),
}


@dataclass(frozen=True, slots=True, order=True)
class Event:
    at: datetime  # the release instant, UTC
    kind: str
    symbol: str | None = None  # earnings: the company's; None: every symbol
    source: str = ""

    @property
    def label(self) -> str:
        who = f" {self.symbol}" if self.symbol else ""
        return (f"{self.kind.upper()}{who} at {self.at.astimezone(NEW_YORK):%Y-%m-%d %H:%M} "
                "New York")


def load_events(path: Path) -> list[Event]:
    """Read one events file; any bad row stops the load with its line and reason (a calendar
    with a silently dropped FOMC day would trade into it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"events file {path}: cannot read it: {exc}") from exc
    numbered = [(i, line) for i, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.lstrip().startswith("#")]
    rows = list(csv.reader(line for _, line in numbered))
    header = [h.strip() for h in rows[0]] if rows else None
    needed = {"date", "event", "time_et"}
    if header is None or not needed <= set(header):
        raise ConfigError(f"events file {path}: needs the columns date, event, time_et "
                          f"(and optionally source, symbol); got {header}")
    out = []
    for (line_no, _), values in zip(numbered[1:], rows[1:], strict=True):
        row = dict(zip(header, values, strict=False))
        where = f"events file {path}, line {line_no}"
        try:
            day = date.fromisoformat((row.get("date") or "").strip())
        except ValueError:
            raise ConfigError(f"{where}: date {row.get('date')!r} is not YYYY-MM-DD") from None
        kind = (row.get("event") or "").strip().lower()
        if kind not in KINDS:
            raise ConfigError(f"{where}: event {row.get('event')!r} is not one of "
                              f"{', '.join(KINDS)}")
        hhmm = (row.get("time_et") or "").strip()
        m = _TIME.match(hhmm)
        if m is None:
            raise ConfigError(f"{where}: time_et {hhmm!r} is not HH:MM (24-hour, New York)")
        symbol = (row.get("symbol") or "").strip().upper() or None
        if kind == "earnings" and symbol is None:
            raise ConfigError(f"{where}: an earnings row needs its symbol")
        if kind != "earnings" and symbol is not None:
            raise ConfigError(f"{where}: a {kind} release is market-wide; leave symbol empty")
        local = datetime.combine(day, time(int(m.group(1)), int(m.group(2))), NEW_YORK)
        out.append(Event(local.astimezone(UTC), kind, symbol,
                         (row.get("source") or "").strip()))
    return out


class EventCalendar:
    """Events and their blackouts; ``blocking(now, symbol)`` answers "may we add risk now"."""

    def __init__(self, events: Iterable[Event],
                 blackouts: Mapping[str, Blackout] | None = None) -> None:
        self.blackouts = {**DEFAULT_BLACKOUTS, **(blackouts or {})}
        self.events = sorted(set(events))
        self._times = [e.at for e in self.events]
        self._before = max((b.before for b in self.blackouts.values()), default=timedelta(0))
        self._after = max((b.after for b in self.blackouts.values()), default=timedelta(0))

    @classmethod
    def from_files(cls, files: Iterable[Path] = (), shipped: bool = True,
                   blackouts: Mapping[str, Blackout] | None = None) -> EventCalendar:
        events: list[Event] = load_events(SHIPPED_EVENTS) if shipped else []
        for f in files:
            events.extend(load_events(f))
        return cls(events, blackouts)

    def blocking(self, now: datetime, symbol: str | None = None) -> Event | None:
        """The event whose blackout holds ``now`` for ``symbol`` (the earliest, if several)."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"the event calendar needs a timezone-aware time, got {now!r}")
        now = now.astimezone(UTC)  # spans in elapsed hours, not New York wall-clock ones
        # Only an event released within the longest "after" behind now, or the longest
        # "before" ahead of it, can hold a blackout now.
        lo = bisect_left(self._times, now - self._after)
        hi = bisect_right(self._times, now + self._before)
        for e in self.events[lo:hi]:
            if e.symbol is not None and e.symbol != symbol:
                continue
            b = self.blackouts[e.kind]
            if e.at - b.before <= now <= e.at + b.after:
                return e
        return None

    def next_event(self, now: datetime, symbol: str | None = None) -> Event | None:
        """The next event at or after ``now`` that applies to ``symbol``."""
        now = now.astimezone(UTC)
        for e in self.events[bisect_left(self._times, now):]:
            if e.symbol is None or e.symbol == symbol:
                return e
        return None

    def missing(self, day: date) -> tuple[str, ...]:
        """The macro kinds with no date at all in ``day``'s year: a year the calendar does not
        know for that kind (the shipped file has no 2027 CPI or jobs dates), which the caller
        reports rather than assume a calm year."""
        known = {e.kind for e in self.events if e.at.year == day.year}
        return tuple(k for k in MACRO_KINDS if k not in known)
