"""Specifications of the clocks and the NYSE calendar: sessions, early closes, ticks, DST."""

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from thetadesk.clock import LiveClock, MarketCalendar, SimClock

NEW_YORK = ZoneInfo("America/New_York")
START = datetime(2025, 1, 6, 14, 30, tzinfo=UTC)
CALENDAR = MarketCalendar()


def test_live_clock_now_is_aware_utc_wall_time():
    before = datetime.now(UTC)

    now = LiveClock().now()

    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)


def test_sim_clock_now_is_start_converted_to_utc():
    clock = SimClock(datetime(2025, 1, 6, 9, 30, tzinfo=NEW_YORK))

    assert clock.now() == START
    assert clock.now().tzinfo is UTC


def test_sim_clock_naive_start_raises_value_error():
    with pytest.raises(ValueError, match="timezone-aware"):
        SimClock(datetime(2025, 1, 6, 14, 30))  # noqa: DTZ001 - the naive input under test


def test_sim_clock_advance_to_later_instant_moves_there():
    clock = SimClock(START)

    clock.advance_to(START + timedelta(minutes=5))

    assert clock.now() == START + timedelta(minutes=5)


def test_sim_clock_advance_to_same_instant_is_a_no_op():
    clock = SimClock(START)

    clock.advance_to(START)

    assert clock.now() == START


def test_sim_clock_advance_to_earlier_instant_raises_value_error():
    clock = SimClock(START)

    with pytest.raises(ValueError, match="cannot move a SimClock back"):
        clock.advance_to(START - timedelta(seconds=1))
    assert clock.now() == START


def test_sim_clock_advance_to_naive_instant_raises_value_error():
    clock = SimClock(START)

    with pytest.raises(ValueError, match="timezone-aware"):
        clock.advance_to(datetime(2025, 1, 7, 14, 30))  # noqa: DTZ001 - the naive input under test


def test_sim_clock_advance_by_delta_accumulates():
    clock = SimClock(START)

    clock.advance(timedelta(minutes=5))
    clock.advance(timedelta(hours=1))

    assert clock.now() == START + timedelta(hours=1, minutes=5)


def test_sim_clock_advance_by_negative_delta_raises_value_error():
    clock = SimClock(START)

    with pytest.raises(ValueError, match="negative"):
        clock.advance(timedelta(seconds=-1))


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 12, 25), False),  # Christmas
        (date(2025, 11, 27), False),  # Thanksgiving
        (date(2025, 1, 4), False),  # Saturday
        (date(2025, 1, 9), False),  # national day of mourning for President Carter
        (date(2025, 11, 28), True),  # the day after Thanksgiving: an early close, still a session
        (date(2025, 1, 6), True),
    ],
)
def test_calendar_is_session_knows_holidays_and_weekends(day, expected):
    assert CALENDAR.is_session(day) is expected


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 12, 25), date(2025, 12, 26)),
        (date(2025, 1, 4), date(2025, 1, 6)),
        (date(2025, 1, 6), date(2025, 1, 6)),
    ],
)
def test_calendar_next_session_is_the_day_itself_or_the_next_trading_day(day, expected):
    assert CALENDAR.next_session(day) == expected


def test_calendar_sessions_skips_holidays():
    assert CALENDAR.sessions(date(2025, 12, 24), 3) == [
        date(2025, 12, 24),
        date(2025, 12, 26),
        date(2025, 12, 29),
    ]


def test_calendar_early_close_day_after_thanksgiving_closes_at_13_new_york():
    day = date(2025, 11, 28)

    assert CALENDAR.session_open(day) == datetime(2025, 11, 28, 14, 30, tzinfo=UTC)
    assert CALENDAR.session_close(day) == datetime(2025, 11, 28, 18, 0, tzinfo=UTC)
    assert CALENDAR.session_close(day).astimezone(NEW_YORK).hour == 13


@pytest.mark.parametrize(
    ("day", "open_utc", "close_utc"),
    [
        (date(2025, 1, 6), (14, 30), (21, 0)),  # EST: UTC-5
        (date(2025, 3, 7), (14, 30), (21, 0)),  # the Friday before DST starts
        (date(2025, 3, 10), (13, 30), (20, 0)),  # the Monday after: EDT, UTC-4
        (date(2025, 7, 7), (13, 30), (20, 0)),
    ],
)
def test_calendar_session_hours_follow_new_york_dst(day, open_utc, close_utc):
    ymd = (day.year, day.month, day.day)

    assert CALENDAR.session_open(day) == datetime(*ymd, *open_utc, tzinfo=UTC)
    assert CALENDAR.session_close(day) == datetime(*ymd, *close_utc, tzinfo=UTC)
    assert CALENDAR.session_open(day).tzinfo is UTC


def test_calendar_ticks_full_day_at_300s_are_78_ending_at_the_close():
    ticks = CALENDAR.ticks(date(2025, 1, 6), 300)

    assert len(ticks) == 78
    assert ticks[0] == datetime(2025, 1, 6, 14, 35, tzinfo=UTC)
    assert ticks[-1] == datetime(2025, 1, 6, 21, 0, tzinfo=UTC)
    assert all(b - a == timedelta(seconds=300) for a, b in pairwise(ticks))


def test_calendar_ticks_early_close_end_at_the_early_close():
    ticks = CALENDAR.ticks(date(2025, 11, 28), 300)

    assert len(ticks) == 42
    assert ticks[-1] == datetime(2025, 11, 28, 18, 0, tzinfo=UTC)


def test_calendar_ticks_not_dividing_the_session_still_end_exactly_at_the_close():
    ticks = CALENDAR.ticks(date(2025, 1, 6), 3600 * 4)  # 6.5 h session, 4 h tick

    assert ticks == [
        datetime(2025, 1, 6, 18, 30, tzinfo=UTC),
        datetime(2025, 1, 6, 21, 0, tzinfo=UTC),
    ]


def test_calendar_ticks_on_a_holiday_raise_value_error():
    with pytest.raises(ValueError, match="2025-12-25 is not an NYSE session"):
        CALENDAR.ticks(date(2025, 12, 25), 300)


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (datetime(2025, 1, 6, 14, 30, tzinfo=UTC), True),  # the open
        (datetime(2025, 1, 6, 14, 29, 59, tzinfo=UTC), False),
        (datetime(2025, 1, 6, 15, 59, tzinfo=NEW_YORK), True),
        (datetime(2025, 1, 6, 21, 0, tzinfo=UTC), False),  # the close itself: closed
        (datetime(2025, 11, 28, 13, 30, tzinfo=NEW_YORK), False),  # after the early close
        (datetime(2025, 12, 25, 15, 0, tzinfo=UTC), False),
        (datetime(2025, 1, 4, 15, 0, tzinfo=UTC), False),
    ],
)
def test_calendar_is_open_covers_regular_hours_only(instant, expected):
    assert CALENDAR.is_open(instant) is expected


def test_calendar_date_outside_range_raises_readable_value_error():
    with pytest.raises(ValueError, match=r"2050-01-03 is outside the NYSE calendar's range"):
        CALENDAR.is_session(date(2050, 1, 3))


def test_calendar_datetime_where_date_expected_raises_type_error():
    with pytest.raises(TypeError, match="expected a date"):
        CALENDAR.is_session(START)
