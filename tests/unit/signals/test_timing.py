"""Entry windows across daylight-saving changes and early closes, quote width, volume
confirmation, and the limit ladder from mid toward natural."""

from datetime import UTC, date, datetime, time, timedelta

import pytest

from thetadesk.clock import MarketCalendar
from thetadesk.signals.timing import EntryTiming, LimitLadder, spread_width

T = EntryTiming()


def utc(*a):
    return datetime(*a, tzinfo=UTC)


def test_default_windows_in_new_york_time_across_daylight_saving():
    # Winter (EST, UTC-5): 10:00 New York is 15:00 UTC.
    assert T.allows_time(utc(2025, 3, 7, 15, 0))
    assert not T.allows_time(utc(2025, 3, 7, 14, 59))
    # The Monday after DST began (2025-03-09, EDT, UTC-4): 10:00 is 14:00 UTC.
    assert T.allows_time(utc(2025, 3, 10, 14, 0))
    assert not T.allows_time(utc(2025, 3, 10, 15, 45))  # 11:45: the lunch lull
    assert T.window_at(utc(2025, 3, 10, 18, 30)) == (time(14, 0), time(15, 30))
    # After DST ended (2025-11-02): back to UTC-5.
    assert T.allows_time(utc(2025, 11, 3, 20, 30))  # 15:30 New York
    assert not T.allows_time(utc(2025, 11, 3, 20, 31))


def test_an_early_close_cuts_the_windows():
    cal = MarketCalendar()
    day = date(2025, 11, 28)  # the day after Thanksgiving: 13:00 close
    close = cal.session_close(day)
    assert close == utc(2025, 11, 28, 18, 0)
    assert T.allows_time(utc(2025, 11, 28, 16, 0), close)  # 11:00
    assert T.window_at(utc(2025, 11, 28, 16, 0), close) == (time(10, 0), time(11, 30))
    assert not T.allows_time(utc(2025, 11, 28, 19, 0), close)  # 14:00: after the close
    tight = EntryTiming(windows=((time(10, 0), time(12, 45)),), close_buffer=30)
    assert tight.allows_time(utc(2025, 11, 28, 17, 30), close)  # 12:30, the cut end
    assert not tight.allows_time(utc(2025, 11, 28, 17, 31), close)
    regular = cal.session_close(date(2025, 11, 26))
    assert tight.allows_time(utc(2025, 11, 26, 17, 45), regular)  # 12:45 on a full day
    with pytest.raises(ValueError, match="is not on"):
        T.window_at(utc(2025, 11, 28, 16, 0), regular)


def test_quote_width_and_volume_confirmation():
    assert spread_width(1.00, 0.90) == pytest.approx(0.20)
    assert T.quote_problem(1.00, 0.90) is None
    assert "30% of the mid 1.00 is above the 25% limit" in T.quote_problem(1.00, 0.85)
    assert "unusable" in T.quote_problem(float("nan"), 0.85)
    assert T.volume_problem(None) is None  # not asked for
    spike = EntryTiming(volume_spike=1.5)
    assert spike.volume_problem(1.6) is None
    assert "below the 1.5x" in spike.volume_problem(1.2)
    assert "no volume history" in spike.volume_problem(float("nan"))


def test_bad_timing_rules_are_refused():
    with pytest.raises(ValueError, match="start must be before"):
        EntryTiming(windows=((time(11, 0), time(10, 0)),))
    with pytest.raises(ValueError, match="not overlap"):
        EntryTiming(windows=((time(10, 0), time(12, 0)), (time(11, 0), time(13, 0))))
    with pytest.raises(ValueError, match="timezone-aware"):
        T.allows_time(datetime(2025, 1, 6, 15, 0))  # noqa: DTZ001


def test_the_ladder_steps_from_mid_toward_natural_then_cancels():
    ladder = LimitLadder(step_minutes=5, tick=0.01, max_steps=4)
    placed = utc(2025, 1, 6, 15, 0)
    # A credit spread quoted mid 1.005, natural 0.98: start 1.01, then 1.00, 0.99, 0.98, 0.98.
    prices = [ladder.at(1.005, 0.98, True, placed, placed + timedelta(minutes=m)).price
              for m in (0, 4, 5, 10, 15, 20)]
    assert prices == [1.01, 1.01, 1.00, 0.99, 0.98, 0.98]
    assert ladder.at(1.005, 0.98, True, placed, placed + timedelta(minutes=20)).reason == \
        "at natural"
    gone = ladder.at(1.005, 0.98, True, placed, placed + timedelta(minutes=25))
    assert gone.price is None
    assert "cancel" in gone.reason
    # A debit spread: mid 2.013 -> 2.01, stepping up, capped at natural 2.05.
    assert [ladder.price(2.013, 2.05, False, k) for k in (0, 1, 3, 99)] == \
        [2.01, 2.02, 2.04, 2.05]
    with pytest.raises(ValueError, match="before the order was placed"):
        ladder.at(1.0, 0.9, True, placed, placed - timedelta(minutes=1))
    with pytest.raises(ValueError, match="usable prices"):
        ladder.price(float("nan"), 0.9, True, 0)


def test_the_close_buffer_applies_to_a_regular_close_when_none_is_given():
    late = EntryTiming(windows=((time(14, 0), time(15, 50)),), close_buffer=30)
    assert late.allows_time(utc(2025, 1, 6, 20, 30))  # 15:30 New York
    assert not late.allows_time(utc(2025, 1, 6, 20, 45))  # 15:45: inside the last 30 minutes
    assert late.window_at(utc(2025, 1, 6, 20, 30)) == (time(14, 0), time(15, 30))


def test_the_ladder_on_signed_net_premiums():
    ladder = LimitLadder(tick=0.01)
    assert ladder.net(1.005, 0.98, 2) == ladder.price(1.005, 0.98, True, 2) == 0.99
    assert ladder.net(-2.013, -2.05, 1) == -ladder.price(2.013, 2.05, False, 1) == -2.02
