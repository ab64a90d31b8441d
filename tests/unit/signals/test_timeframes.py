"""Resampling 1-minute bars into 5-minute, hourly and daily bars, point in time, and the
alignment of the timeframes' directions."""

import numpy as np
import pytest

from thetadesk.signals.timeframes import Bars, alignment, direction, resample


def minute_bars(days=2, minutes=390):
    """``days`` sessions of 1-minute bars from 14:30 UTC (09:30 New York, winter)."""
    ends, sessions = [], []
    for d in range(days):
        open_ = np.datetime64("2025-01-06T14:30:00") + np.timedelta64(d, "D")
        for m in range(1, minutes + 1):
            ends.append(open_ + np.timedelta64(m, "m"))
            sessions.append(open_)
    n = len(ends)
    close = 100.0 + np.arange(n) * 0.01
    return Bars(np.array(ends), np.array(sessions), close - 0.005, close + 0.02, close - 0.02,
                close, np.ones(n))


def test_five_minute_and_hourly_buckets_from_the_open():
    bars = minute_bars(days=1)
    five = resample(bars, 5)
    assert len(five.end) == 78
    assert five.end[0] == np.datetime64("2025-01-06T14:35:00")
    assert five.open[0] == bars.open[0]
    assert five.close[0] == bars.close[4]
    assert five.high[0] == bars.high[:5].max()
    assert five.volume[0] == 5.0
    hourly = resample(bars, 60)
    assert len(hourly.end) == 7  # 09:30-10:30 ... 15:30-16:00 (short)
    assert hourly.volume[-1] == 30.0
    assert hourly.end[-1] == np.datetime64("2025-01-06T21:30:00")  # nominal 16:30 New York
    daily = resample(minute_bars(days=2), None)
    assert len(daily.end) == 2
    assert daily.volume.tolist() == [390.0, 390.0]
    assert daily.close[0] == bars.close[-1]


def test_only_complete_bars_exist_at_a_point_in_time():
    bars = minute_bars(days=2)
    now = np.datetime64("2025-01-07T14:42:00")  # 09:42 on day two
    five = resample(bars, 5, now=now)
    assert five.end[-1] == np.datetime64("2025-01-07T14:40:00")  # 09:40-09:45 still forming
    hourly = resample(bars, 60, now=now)
    assert hourly.end[-1] == np.datetime64("2025-01-06T21:30:00")  # day one's last
    daily = resample(bars, None, now=now)
    assert len(daily.end) == 1  # day two's bar is not complete
    close_day2 = np.datetime64("2025-01-07T21:00:00")
    assert len(resample(bars, None, now=close_day2, session_close=close_day2).end) == 2
    # Changing the future changes no complete bar.
    future = bars.end > now
    altered = bars._replace(close=np.where(future, 999.0, bars.close),
                            high=np.where(future, 999.0, bars.high))
    for minutes in (5, 60, None):
        a, b = resample(bars, minutes, now=now), resample(altered, minutes, now=now)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_directions_and_their_alignment():
    up = np.linspace(100, 120, 60)
    assert direction(up) == 1.0
    assert direction(up[::-1]) == -1.0
    assert direction(up[:10]) == 0.0  # not enough bars for the slow EMA
    assert alignment({"1d": 1, "1h": 1, "5m": 1, "1m": 1}) == pytest.approx(1.0)
    assert alignment({"1d": 1, "1h": 1, "5m": -1, "1m": -1}) == pytest.approx(0.4)
    assert alignment({"1d": -1}) == -1.0  # the others unknown: left out, not flat
    with pytest.raises(ValueError, match="no weight"):
        alignment({"4h": 1.0})


def test_bad_bars_are_refused():
    bars = minute_bars(days=1)
    with pytest.raises(ValueError, match="increasing time order"):
        resample(bars._replace(end=bars.end[::-1]), 5)
    with pytest.raises(ValueError, match="has 389 values"):
        resample(bars._replace(close=bars.close[1:]), 5)
    with pytest.raises(ValueError, match="positive integer"):
        resample(bars, 0)


def test_the_newest_session_completes_at_its_close():
    bars = minute_bars(days=1)
    close = np.datetime64("2025-01-06T21:00:00")  # 16:00 New York
    next_morning = np.datetime64("2025-01-07T14:00:00")
    assert len(resample(bars, None, now=next_morning).end) == 0  # not known to have closed
    daily = resample(bars, None, now=next_morning, session_close=close)
    assert len(daily.end) == 1
    assert daily.volume[0] == 390.0
    at_close = np.datetime64("2025-01-06T21:05:00")
    assert len(resample(bars, 60, now=at_close).end) == 6  # 15:30-16:00 nominally ends 16:30
    assert len(resample(bars, 60, now=at_close, session_close=close).end) == 7
    # A bucket still forming is not a bar: the 09:40-09:45 bucket at 09:42 is absent, and
    # it appears, whole, at 09:45.
    early = np.datetime64("2025-01-06T14:42:00")
    assert resample(bars, 5, now=early).end.tolist() == [
        np.datetime64("2025-01-06T14:35:00"), np.datetime64("2025-01-06T14:40:00")]
    at = np.datetime64("2025-01-06T14:45:00")
    assert resample(bars, 5, now=at).volume[-1] == 5.0
