"""The event calendar: the shipped file, users' files, and the blackout around each event."""

from datetime import UTC, date, datetime, timedelta

import pytest

from thetadesk.errors import ConfigError
from thetadesk.signals.events import (
    SHIPPED_EVENTS,
    Blackout,
    EventCalendar,
    load_events,
)


def utc(*a):
    return datetime(*a, tzinfo=UTC)


def test_the_shipped_file_loads_in_order_with_eight_fomc_days_a_year():
    events = load_events(SHIPPED_EVENTS)
    assert [e.at for e in events] == sorted(e.at for e in events)
    for year in (2024, 2025, 2026, 2027):
        assert sum(e.kind == "fomc" and e.at.year == year for e in events) == 8
    assert all(e.source for e in events)  # every date says where it came from
    assert all(e.symbol is None for e in events)
    cal = EventCalendar(events)
    assert cal.missing(date(2025, 6, 1)) == ()
    assert cal.missing(date(2027, 6, 1)) == ("cpi", "jobs")  # not published when shipped


def test_blackout_before_and_after_a_release_in_new_york_time():
    cal = EventCalendar.from_files()
    # FOMC statement 2025-01-29 14:00 New York = 19:00 UTC; 24 h before, 2 h after.
    fomc = utc(2025, 1, 29, 19, 0)
    assert cal.blocking(fomc - timedelta(hours=24)).kind == "fomc"
    assert cal.blocking(fomc - timedelta(hours=24, minutes=1)) is None
    assert cal.blocking(fomc + timedelta(hours=2)).kind == "fomc"
    assert cal.blocking(fomc + timedelta(hours=2, minutes=1)) is None
    # In summer New York is UTC-4: the 2025-07-30 statement is at 18:00 UTC.
    assert cal.blocking(utc(2025, 7, 30, 19, 59)).at == utc(2025, 7, 30, 18, 0)
    assert cal.blocking(utc(2025, 7, 30, 20, 1)) is None
    nxt = cal.next_event(utc(2025, 1, 30))
    assert nxt.kind == "jobs"
    assert nxt.at.date() == date(2025, 2, 7)
    assert "JOBS at 2025-02-07 08:30 New York" in nxt.label


def test_users_files_add_events_and_earnings_apply_to_their_symbol(tmp_path):
    f = tmp_path / "mine.csv"
    f.write_text("# my additions\ndate,event,time_et,symbol,source\n"
                 "2025-03-05,earnings,16:05,aapl,company-ir\n"
                 "2025-03-10,cpi,08:30,,my-note\n")
    cal = EventCalendar.from_files([f], shipped=False,
                                   blackouts={"cpi": Blackout(timedelta(0), timedelta(hours=3))})
    at = utc(2025, 3, 5, 21, 5)
    assert cal.blocking(at, "AAPL").symbol == "AAPL"
    assert cal.blocking(at, "SPY") is None  # a company's earnings are its own
    cpi = utc(2025, 3, 10, 12, 30)  # 08:30 EDT (DST began 2025-03-09)
    assert cal.blocking(cpi - timedelta(minutes=1), "SPY") is None  # no "before" configured
    assert cal.blocking(cpi + timedelta(hours=3), "SPY").kind == "cpi"


@pytest.mark.parametrize(("row", "reason"), [
    ("2025-13-01,cpi,08:30,x", "not YYYY-MM-DD"),
    ("2025-01-15,gdp,08:30,x", "is not one of"),
    ("2025-01-15,cpi,8:30,x", "not HH:MM"),
    ("2025-01-15,earnings,16:00,x", "needs its symbol"),
])
def test_a_bad_row_stops_the_load_with_its_line(tmp_path, row, reason):
    f = tmp_path / "bad.csv"
    f.write_text(f"# comment\ndate,event,time_et,source\n\n2025-01-10,jobs,08:30,ok\n{row}\n")
    with pytest.raises(ConfigError, match=f"line 5: .*{reason}"):
        load_events(f)


def test_a_missing_or_columnless_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_events(tmp_path / "absent.csv")
    (tmp_path / "x.csv").write_text("when,what\n")
    with pytest.raises(ConfigError, match="needs the columns"):
        load_events(tmp_path / "x.csv")
    with pytest.raises(ValueError, match=">= 0"):
        Blackout(timedelta(hours=-1), timedelta(0))


def test_a_new_york_time_across_a_dst_change_finds_a_long_blackout():
    from thetadesk.chain import NEW_YORK
    from thetadesk.signals.events import Event

    event = Event(utc(2025, 3, 7, 21, 5), "earnings", "AAPL")  # 16:05 EST, Friday
    cal = EventCalendar([event], {"earnings": Blackout(timedelta(hours=72),
                                                       timedelta(hours=72))})
    # 72 elapsed hours after it is Monday 17:05 EDT (DST began on the Sunday).
    monday = datetime(2025, 3, 10, 16, 30, tzinfo=NEW_YORK)
    assert cal.blocking(monday, "AAPL") == event
    assert cal.blocking(monday.astimezone(UTC), "AAPL") == event
    assert cal.blocking(datetime(2025, 3, 10, 17, 6, tzinfo=NEW_YORK), "AAPL") is None
    assert cal.next_event(datetime(2025, 3, 7, 16, 0, tzinfo=NEW_YORK), "AAPL") == event
    assert cal.next_event(datetime(2025, 3, 7, 16, 0, tzinfo=NEW_YORK)) is None  # not SPY's
