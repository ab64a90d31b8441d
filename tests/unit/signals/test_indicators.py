"""Indicators against values worked out by hand (or by a plain loop written from the
definition, independently of the vectorised code), and the point-in-time rule."""

import math
from datetime import date, timedelta

import numpy as np
import pytest

from thetadesk.signals import indicators as ind

NAN = float("nan")


def close_enough(got, want, tol=1e-12):
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want)), (got, want)
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=tol, atol=tol)


def test_sma_and_ema_by_hand():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    close_enough(ind.sma(x, 3), [NAN, NAN, 2.0, 3.0, 4.0, 5.0])
    # alpha = 2/(3+1) = 0.5, seeded with mean(1,2,3) = 2: 2, 3, 4, 5
    close_enough(ind.ema(x, 3), [NAN, NAN, 2.0, 3.0, 4.0, 5.0])
    y = [10.0, 10.0, 10.0, 13.0, 7.0]
    # seed 10; 10 + .5*(13-10) = 11.5; 11.5 + .5*(7-11.5) = 9.25
    close_enough(ind.ema(y, 3), [NAN, NAN, 10.0, 11.5, 9.25])
    # Wilder: alpha 1/3: 10 + (13-10)/3 = 11; 11 + (7-11)/3 = 9.666..
    close_enough(ind.wilder(y, 3), [NAN, NAN, 10.0, 11.0, 29.0 / 3.0])
    close_enough(ind.sma([1.0, 2.0], 3), [NAN, NAN])


def test_a_gap_in_the_data_is_a_gap_in_the_signal():
    x = [1.0, 2.0, NAN, 4.0, 5.0, 6.0]
    close_enough(ind.sma(x, 2), [NAN, 1.5, NAN, NAN, 4.5, 5.5])
    assert np.isnan(ind.ema(x, 2)[2:]).all()  # a recursive average cannot skip the hole


def test_rsi_by_hand():
    # changes +1, +1, -1, +2; n = 3: avg gain seed (1+1+0)/3, avg loss 1/3 -> RS 2 -> 66.67
    c = [10.0, 11.0, 12.0, 11.0, 13.0]
    g0, l0 = 2.0 / 3.0, 1.0 / 3.0
    g1, l1 = g0 + (2.0 - g0) / 3.0, l0 + (0.0 - l0) / 3.0
    close_enough(ind.rsi(c, 3), [NAN, NAN, NAN, 100 - 100 / (1 + g0 / l0),
                                 100 - 100 / (1 + g1 / l1)])
    assert ind.rsi([1.0, 2.0, 3.0, 4.0], 3)[-1] == 100.0  # no losses
    assert ind.rsi([4.0, 3.0, 2.0, 1.0], 3)[-1] == 0.0  # no gains
    assert ind.rsi([5.0] * 5, 3)[-1] == 50.0  # no movement


def test_macd_is_the_difference_of_two_emas_and_its_signal_their_ema():
    rng = np.random.default_rng(3)
    c = 100 + np.cumsum(rng.normal(size=80))
    m = ind.macd(c, 3, 6, 4)
    close_enough(m.macd, ind.ema(c, 3) - ind.ema(c, 6))
    first = 5  # the slow EMA's first value
    assert np.isnan(m.signal[: first + 3]).all()
    assert not np.isnan(m.signal[first + 3])
    assert m.signal[first + 3] == pytest.approx(np.mean(m.macd[first: first + 4]), abs=1e-12)
    close_enough(m.histogram, m.macd - m.signal)
    with pytest.raises(ValueError, match="fast period"):
        ind.macd(c, 6, 3)


def test_true_range_and_atr_by_hand():
    h = [10.0, 12.0, 11.0, 15.0]
    lo = [9.0, 10.0, 8.0, 13.0]
    c = [9.5, 11.0, 9.0, 14.0]
    # bar 1: max(2, |12-9.5|, |10-9.5|) = 2.5; bar 2: max(3, 0, 3) = 3; bar 3: max(2, 6, 4) = 6
    close_enough(ind.true_range(h, lo, c), [1.0, 2.5, 3.0, 6.0])
    # ATR(2) from bar 1: seed (2.5+3)/2 = 2.75 at index 2, then 2.75 + (6-2.75)/2 = 4.375
    close_enough(ind.atr(h, lo, c, 2), [NAN, NAN, 2.75, 4.375])


def test_bollinger_uses_the_population_standard_deviation():
    b = ind.bollinger([1.0, 2.0, 3.0, 4.0], 3, k=2.0)
    sd = math.sqrt(2.0 / 3.0)  # of (1, 2, 3) and of (2, 3, 4)
    close_enough(b.middle, [NAN, NAN, 2.0, 3.0])
    close_enough(b.upper, [NAN, NAN, 2 + 2 * sd, 3 + 2 * sd])
    close_enough(b.lower, [NAN, NAN, 2 - 2 * sd, 3 - 2 * sd])
    close_enough(b.percent_b,
                 [NAN, NAN, (3 - (2 - 2 * sd)) / (4 * sd), (4 - (3 - 2 * sd)) / (4 * sd)])
    assert np.isnan(ind.bollinger([5.0] * 4, 3).percent_b[-1])  # flat: no band to be in


def _adx_reference(h, lo, c, n):
    """Wilder's procedure as a plain loop."""
    pdm, mdm, tr = [], [], []
    for i in range(1, len(c)):
        up, down = h[i] - h[i - 1], lo[i - 1] - lo[i]
        pdm.append(up if up > down and up > 0 else 0.0)
        mdm.append(down if down > up and down > 0 else 0.0)
        tr.append(max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])))

    def smooth(xs):
        out = [NAN] * len(xs)
        y = sum(xs[:n]) / n
        out[n - 1] = y
        for i in range(n, len(xs)):
            y = y + (xs[i] - y) / n
            out[i] = y
        return out

    s_tr, s_p, s_m = smooth(tr), smooth(pdm), smooth(mdm)
    pdi = [100 * p / t if t == t else NAN for p, t in zip(s_p, s_tr, strict=True)]
    mdi = [100 * m / t if t == t else NAN for m, t in zip(s_m, s_tr, strict=True)]
    dx = [100 * abs(p - m) / (p + m) if p == p else NAN for p, m in zip(pdi, mdi, strict=True)]
    adx = [NAN] * len(dx)
    y = sum(dx[n - 1: 2 * n - 1]) / n
    adx[2 * n - 2] = y
    for i in range(2 * n - 1, len(dx)):
        y = y + (dx[i] - y) / n
        adx[i] = y
    return [NAN, *adx], [NAN, *pdi], [NAN, *mdi]


def test_adx_matches_wilders_procedure_and_reads_trend_strength():
    rng = np.random.default_rng(11)
    c = 100 + np.cumsum(rng.normal(0.0, 1.0, 60))
    h = c + rng.uniform(0.1, 1.0, 60)
    lo = c - rng.uniform(0.1, 1.0, 60)
    got = ind.adx(h, lo, c, 5)
    want = _adx_reference(list(h), list(lo), list(c), 5)
    for g, w in zip(got, want, strict=True):
        close_enough(g, w, tol=1e-10)
    assert np.isnan(got.adx[:9]).all()
    assert not np.isnan(got.adx[9])
    trend = np.arange(60, dtype=float)  # a steady climb: +DI dominates, ADX high
    up = ind.adx(trend + 0.5, trend - 0.5, trend, 5)
    assert up.adx[-1] > 90
    assert up.plus_di[-1] > up.minus_di[-1]


def test_realised_volatility_estimators_by_hand():
    c = [100.0, 101.0, 99.0, 102.0]
    r = np.diff(np.log(c))
    want = math.sqrt(np.var(r[:3], ddof=1) * 252)
    close_enough(ind.close_to_close_vol(c, 3), [NAN, NAN, NAN, want])
    h, lo = [101.0, 102.0, 100.0, 103.0], [99.0, 100.0, 98.0, 101.0]
    pk = [math.log(a / b) ** 2 for a, b in zip(h, lo, strict=True)]
    close_enough(ind.parkinson_vol(h, lo, 2),
                 [NAN] + [math.sqrt((pk[i - 1] + pk[i]) / 2 / (4 * math.log(2)) * 252)
                          for i in range(1, 4)])
    o = [100.0, 100.5, 100.0, 99.5]
    n = 3
    on = [math.log(o[i] / c[i - 1]) for i in range(1, 4)]
    oc = [math.log(c[i] / o[i]) for i in range(1, 4)]
    rs = [math.log(h[i] / c[i]) * math.log(h[i] / o[i]) + math.log(lo[i] / c[i])
          * math.log(lo[i] / o[i]) for i in range(1, 4)]
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    var = np.var(on, ddof=1) + k * np.var(oc, ddof=1) + (1 - k) * np.mean(rs)
    close_enough(ind.yang_zhang_vol(o, h, lo, c, n), [NAN, NAN, NAN, math.sqrt(var * 252)])


def test_estimators_agree_on_a_simulated_random_walk():
    rng = np.random.default_rng(5)
    sigma, steps, days = 0.20, 390, 400
    paths = 100 * np.exp(np.cumsum(rng.normal(0, sigma / math.sqrt(252 * steps),
                                              (days, steps)), axis=None)).reshape(days, steps)
    o, c = paths[:, 0], paths[:, -1]
    h, lo = paths.max(axis=1), paths.min(axis=1)
    for est in (ind.close_to_close_vol(c, 300)[-1], ind.yang_zhang_vol(o, h, lo, c, 300)[-1]):
        assert est == pytest.approx(sigma, rel=0.12)
    # Parkinson sees the discrete path's range, which understates the continuous one a little.
    assert ind.parkinson_vol(h, lo, 300)[-1] == pytest.approx(sigma, rel=0.15)


def test_volume_spikes_compare_with_the_bars_before():
    v = [100.0, 100.0, 100.0, 300.0, 100.0]
    close_enough(ind.volume_ratio(v, 3), [NAN, NAN, NAN, 3.0, 100 / (500 / 3)])
    assert list(ind.volume_spikes(v, 3, 2.0)) == [False, False, False, True, False]
    with pytest.raises(ValueError, match="threshold"):
        ind.volume_spikes(v, 3, 0.0)


def test_vwap_restarts_each_session():
    h = [11.0, 12.0, 21.0, 22.0]
    lo = [9.0, 10.0, 19.0, 20.0]
    c = [10.0, 11.0, 20.0, 21.0]
    v = [100.0, 300.0, 0.0, 50.0]
    days = ["d1", "d1", "d2", "d2"]
    close_enough(ind.vwap(h, lo, c, v, days),
                 [10.0, (10 * 100 + 11 * 300) / 400, NAN, 21.0])
    with pytest.raises(ValueError, match="one label per bar"):
        ind.vwap(h, lo, c, v, days[:3])


def test_volume_profile_point_of_control_and_value_area():
    c = [10.0, 10.0, 11.0, 12.0, 13.0]
    v = [500.0, 500.0, 200.0, 100.0, 100.0]
    p = ind.volume_profile(c, v, bins=3, share=0.7)
    # bins [10,11), [11,12), [12,13]: 1000, 200, 200 -> POC the first, holding 71% alone
    assert list(p.volume) == [1000.0, 200.0, 200.0]
    assert p.point_of_control == pytest.approx(10.5)
    assert p.value_area == pytest.approx((10.0, 11.0))
    wide = ind.volume_profile(c, v, bins=3, share=0.85)  # 1190 of 1400: two bins
    assert wide.value_area == pytest.approx((10.0, 12.0))
    assert ind.volume_profile(c, v, bins=3, share=0.9).value_area == pytest.approx((10.0, 13.0))
    with pytest.raises(ValueError, match="some volume"):
        ind.volume_profile(c, [0.0] * 5)


def test_seasonality_means_by_weekday_and_month():
    days = [date(2025, 1, 6) + timedelta(days=i) for i in range(5)]  # Monday..Friday
    s = ind.seasonality(days, [0.01, 0.02, NAN, 0.04, -0.01])
    assert s["day_of_week"] == {0: 0.01, 1: 0.02, 3: 0.04, 4: -0.01}
    assert s["month"] == {1: pytest.approx(0.015)}


@pytest.mark.parametrize("name", ["sma", "ema", "rsi", "macd", "atr", "bollinger", "adx",
                                  "close_to_close_vol", "parkinson_vol", "yang_zhang_vol",
                                  "volume_ratio", "vwap"])
def test_changing_future_data_changes_no_past_value(name):
    rng = np.random.default_rng(17)
    m, cut = 120, 70
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, m)))
    o = c * (1 + rng.normal(0, 0.002, m))
    h = np.maximum(o, c) * (1 + rng.uniform(0, 0.01, m))
    lo = np.minimum(o, c) * (1 - rng.uniform(0, 0.01, m))
    v = rng.uniform(1e5, 3e5, m)
    session = np.repeat(np.arange(m // 10), 10)

    def run(o, h, lo, c, v):
        f = getattr(ind, name)
        args = {"sma": (c, 10), "ema": (c, 10), "rsi": (c, 14), "macd": (c,),
                "atr": (h, lo, c, 14), "bollinger": (c, 20), "adx": (h, lo, c, 14),
                "close_to_close_vol": (c, 20), "parkinson_vol": (h, lo, 20),
                "yang_zhang_vol": (o, h, lo, c, 20), "volume_ratio": (v, 20),
                "vwap": (h, lo, c, v, session)}[name]
        out = f(*args)
        return [np.asarray(x) for x in (out if isinstance(out, tuple) else (out,))]

    before = run(o, h, lo, c, v)
    future = slice(cut + 1, None)
    o2, h2, lo2, c2, v2 = (a.copy() for a in (o, h, lo, c, v))
    for a in (o2, h2, lo2, c2):
        a[future] *= 1.5
    v2[future] *= 7
    after = run(o2, h2, lo2, c2, v2)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(b[: cut + 1], a[: cut + 1])
        assert not np.array_equal(b[cut + 1:], a[cut + 1:], equal_nan=True)


def test_bad_arguments_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        ind.sma([1.0, 2.0], 0)
    with pytest.raises(ValueError, match="one-dimensional"):
        ind.sma([[1.0, 2.0]], 1)
    with pytest.raises(ValueError, match="different lengths"):
        ind.true_range([1.0, 2.0], [1.0], [1.0, 2.0])
    for f in (ind.close_to_close_vol, ind.sma, ind.ema, ind.rsi):
        assert len(f([], 3)) == 0  # an empty series gives an empty signal
    with pytest.raises(ValueError, match="periods_per_year"):
        ind.close_to_close_vol([1.0, 2.0, 3.0], 2, periods_per_year=0)
