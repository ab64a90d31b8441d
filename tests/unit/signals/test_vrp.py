"""Volatility forecasts for the volatility risk premium: the daily variance proxies by hand,
the refit schedule anchored to the calendar, point in time, GARCH against a simulated series
with known parameters (and against arch's own forecast), HAR against a series built to follow
a known HAR, too little history, caching, and the premium itself."""

import math
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from thetadesk.errors import DataError
from thetadesk.signals.history import DailyBars
from thetadesk.signals.indicators import close_to_close_vol
from thetadesk.signals.vrp import (
    GarchForecaster,
    HarForecaster,
    RealisedForecaster,
    VolForecast,
    daily_variance,
    refit_session,
    vrp,
)

ROOT = Path(__file__).resolve().parents[3]


def weekdays(n: int, start: date = date(2001, 1, 1)) -> tuple[date, ...]:
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return tuple(out)


def bars_of(o, h, lo, c, sessions=None) -> DailyBars:
    sessions = sessions or weekdays(len(c))
    return DailyBars(tuple(sessions), *(np.asarray(x, dtype=float) for x in (o, h, lo, c)),
                     np.full(len(c), np.nan))


def clustered_bars(n: int, seed: int) -> DailyBars:
    """A series with volatility clusters: each day an overnight gap and 26 intraday steps."""
    rng = np.random.default_rng(seed)
    log_sigma = np.empty(n)
    x = 0.0
    for i in range(n):
        x = 0.97 * x + 0.2 * rng.standard_normal()
        log_sigma[i] = math.log(0.01) + x
    o, h, lo, c = (np.empty(n) for _ in range(4))
    price = 100.0
    for i in range(n):
        s = math.exp(log_sigma[i])
        open_ = price * math.exp(0.3 * s * rng.standard_normal())
        path = open_ * np.exp(np.cumsum(np.r_[0.0, 0.95 * s / math.sqrt(26)
                                              * rng.standard_normal(26)]))
        o[i], h[i], lo[i], c[i] = open_, path.max(), path.min(), path[-1]
        price = path[-1]
    return bars_of(o, h, lo, c)


def head(b: DailyBars, end: int, start: int = 0) -> DailyBars:
    return DailyBars(b.sessions[start:end], b.open[start:end], b.high[start:end],
                     b.low[start:end], b.close[start:end], b.atm_iv[start:end])


def same(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or x == y


# --- daily variance ---------------------------------------------------------------------------

def test_daily_variance_three_proxies_by_hand_match_their_formulas():
    o, h, lo, c = [100.0, 101.0, 99.0], [100.0, 103.0, 100.0], [100.0, 100.0, 97.0], \
        [100.0, 102.0, 98.0]
    gap, hl, co = math.log(101 / 100), math.log(103 / 100), math.log(102 / 101)
    park = daily_variance(o, h, lo, c)
    gk = daily_variance(o, h, lo, c, "garman_klass")
    sq = daily_variance(o, h, lo, c, "squared_return")
    assert np.isnan([park[0], gk[0], sq[0]]).all()
    assert park[1] == pytest.approx(gap ** 2 + hl ** 2 / (4 * math.log(2)), rel=1e-12)
    assert gk[1] == pytest.approx(gap ** 2 + 0.5 * hl ** 2 - (2 * math.log(2) - 1) * co ** 2,
                                  rel=1e-12)
    assert sq[1] == pytest.approx(math.log(102 / 100) ** 2, rel=1e-12)
    assert sq[2] == pytest.approx(math.log(98 / 102) ** 2, rel=1e-12)
    with pytest.raises(ValueError, match="proxy"):
        daily_variance(o, h, lo, c, "rogers")


@pytest.mark.parametrize(("o", "h", "lo", "c", "match"), [
    ([100, 100], [101, 99], [99, 100], [100, 100], "inconsistent"),  # high below low
    ([100, 100], [101, 101], [99, 99], [100, 102], "inconsistent"),  # close above high
    ([100, np.nan], [101, 101], [99, 99], [100, 100], "positive"),
    ([100, 100], [101, 101], [0, 99], [100, 100], "positive"),
    ([100, 100], [101, 101], [99, 99], [100], "one length"),
])
def test_daily_variance_unusable_bars_raise_data_error(o, h, lo, c, match):
    with pytest.raises(DataError, match=match):
        daily_variance(o, h, lo, c)


# --- refit schedule ---------------------------------------------------------------------------

def test_refit_session_weekly_blocks_start_on_the_week_first_session():
    # 2025-01-20 (a Monday) is Martin Luther King Day: that week's first session is Tuesday.
    days = [date(2025, 1, 13), date(2025, 1, 14), date(2025, 1, 17), date(2025, 1, 21),
            date(2025, 1, 22), date(2025, 1, 23)]
    assert refit_session(days, 5) == 3
    assert refit_session(days[:3], 5) is None  # one week only: its start may lie earlier
    assert refit_session(days[:4], 5) == 3


def test_refit_session_blocks_are_anchored_to_the_calendar_not_the_window():
    days = weekdays(400)
    blocks = {days[refit_session(days[:k], 21)] for k in range(60, 400)}
    # The same refit sessions whatever the window's start.
    later = {days[s + refit_session(days[s:k], 21)] for s in (7, 33)
             for k in range(120, 400)}
    assert later <= blocks
    gaps = np.diff(sorted(d.toordinal() for d in blocks))
    assert set(gaps) == {29, 31}  # 21 weekdays: four weeks and a weekday (+2 over a weekend)


# --- point in time and the schedule's independence from the caller -----------------------------

@pytest.mark.parametrize("make", [
    lambda: HarForecaster(fit_window=300, min_fit=200),
    lambda: GarchForecaster(fit_window=300, min_fit=250),
])
def test_forecast_future_changed_past_forecasts_unchanged(make):
    b = clustered_bars(520, seed=1)
    cut = 430
    changed = DailyBars(b.sessions, b.open.copy(), b.high.copy(), b.low.copy(),
                        b.close.copy(), b.atm_iv)
    for x in (changed.open, changed.high, changed.low, changed.close):
        x[cut:] *= np.exp(np.linspace(0.0, 0.6, len(x) - cut))  # a rally, wilder ranges
    changed.high[cut:] *= 1.03
    changed.low[cut:] /= 1.03
    f, g = make(), make()
    before = [f.forecast(head(b, k), 21).vol for k in range(380, 520)]
    after = [f.forecast(head(changed, k), 21).vol for k in range(380, 520)]  # the same one
    fresh = [g.forecast(head(changed, k), 21).vol for k in range(380, 520)]
    k0 = cut - 380  # head(b, cut) ends the session before the change
    assert all(same(x, y) for x, y in zip(before[:k0 + 1], after[:k0 + 1], strict=True))
    assert np.isfinite(before[:k0]).all()
    assert any(not same(x, y) for x, y in zip(before[k0 + 1:], after[k0 + 1:], strict=True))
    # What it remembers of the first series is not used for the second.
    assert all(same(x, y) for x, y in zip(after, fresh, strict=True))


@pytest.mark.parametrize("make", [
    lambda: HarForecaster(fit_window=250, min_fit=200),
    lambda: GarchForecaster(fit_window=250, min_fit=200),
])
def test_forecast_asked_from_any_start_gives_the_same_numbers(make):
    b = clustered_bars(560, seed=2)
    window = 280  # >= fit_window + refit_every: every fit of a block sees its whole window
    every = make()
    from_start = {k: every.forecast(head(b, k, max(0, k - window)), 25) for k in range(300, 560)}
    late = make()
    for k in range(437, 560, 3):  # a process that starts mid-block and asks now and then
        got = late.forecast(head(b, k, max(0, k - window)), 25)
        assert got == from_start[k], k
        fresh = make().forecast(head(b, k, max(0, k - window)), 25)  # a process per forecast
        assert fresh == from_start[k], k
    assert every.fits_computed == len({f.fitted for f in from_start.values()})
    # A longer window (a backtest that kept more history, a live process that fetched more)
    # starts elsewhere, yet refits on the same sessions over the same data.
    longer = make()
    for k in range(340, 560, 5):
        assert longer.forecast(head(b, k, max(0, k - window - 40)), 25) == from_start[k], k


def test_forecast_window_shorter_than_fit_window_refits_at_most_twice_a_block():
    b = clustered_bars(560, seed=3)
    f = HarForecaster(fit_window=400, min_fit=200)
    got = []
    for k in range(300, 560):
        bars = head(b, k, k - 300)  # slides: fewer sessions before the refit than fit_window
        got.append(f.forecast(bars, 21))
        if k % 7 == 0:
            assert got[-1] == HarForecaster(fit_window=400, min_fit=200).forecast(bars, 21)
    assert all(200 <= x.fit_sessions < 300 for x in got)
    assert f.fits_computed <= 2 * len({x.fitted for x in got})
    assert f.fits_computed > len({x.fitted for x in got})  # the start did move


# --- GARCH ------------------------------------------------------------------------------------

def simulate_garch(n, omega, alpha, gamma, beta, seed):
    """Percent returns of a GJR-GARCH(1,1) with normal innovations, and each one's variance
    (the last entry: the variance of the return after the last)."""
    rng = np.random.default_rng(seed)
    s2 = omega / (1.0 - alpha - beta - gamma / 2.0)
    r, var = np.empty(n), np.empty(n + 1)
    for i in range(n):
        var[i] = s2
        e = math.sqrt(s2) * rng.standard_normal()
        r[i] = e
        s2 = omega + (alpha + (gamma if e < 0 else 0.0)) * e * e + beta * s2
    var[n] = s2
    return r, var


def bars_from_returns(r_percent) -> DailyBars:
    c = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r_percent / 100.0)]))
    o = np.concatenate([[c[0]], c[:-1]])
    return bars_of(o, np.maximum(o, c), np.minimum(o, c), c)


@pytest.mark.parametrize(("omega", "alpha", "gamma", "beta", "asymmetric", "seed"), [
    (0.02, 0.08, 0.0, 0.90, False, 5),
    (0.02, 0.02, 0.12, 0.90, True, 3),
])
def test_garch_simulated_known_parameters_long_run_and_h_step_near_truth(
        omega, alpha, gamma, beta, asymmetric, seed):
    n, h = 3000, 21
    r, var = simulate_garch(n, omega, alpha, gamma, beta, seed)
    bars = bars_from_returns(r)
    f = GarchForecaster(fit_window=n + 1, min_fit=500, asymmetric=asymmetric)
    fit = f.params(bars)
    phi = alpha + beta + gamma / 2.0
    true_long_run = math.sqrt(252 * omega / (1.0 - phi)) / 100.0  # 15.9% a year
    assert fit.long_run_vol == pytest.approx(true_long_run, rel=0.10)
    assert fit.persistence == pytest.approx(phi, abs=0.015)
    # The truth over the next h sessions from the true variance of the next return.
    v, total = var[n], 0.0
    for _ in range(h):
        total += v
        v = omega + phi * v
    true_h = math.sqrt(252 * total / h) / 100.0
    got = f.forecast(bars, h)
    assert got.vol == pytest.approx(true_h, rel=0.10)
    assert got.fitted < bars.sessions[-1]  # filtered forward from the refit session
    assert abs(got.vol - true_long_run) > 0.005  # the term structure, not the long-run level


def test_garch_filtered_forecast_equals_arch_own_forecast_with_the_fitted_parameters():
    from arch import arch_model

    r, _ = simulate_garch(1400, 0.03, 0.03, 0.10, 0.88, seed=11)
    bars = bars_from_returns(r)
    f = GarchForecaster(fit_window=1000, min_fit=500)
    got = f.forecast(bars, 25)
    fit = f.params(bars)
    j = bars.sessions.index(got.fitted)
    assert j < len(bars) - 1  # there are sessions to filter over
    a = j + 1 - 1000
    y = 100.0 * np.log(bars.close[a + 1:] / bars.close[a:-1])  # the window, then the filter's
    fixed = arch_model(y, mean="Constant", vol="GARCH", p=1, o=1, q=1,
                       rescale=False).fix([fit.mu, fit.omega, fit.alpha, fit.gamma, fit.beta])
    want = fixed.forecast(horizon=25, reindex=False).variance.to_numpy()[-1].mean()
    assert got.vol == pytest.approx(math.sqrt(252 * want) / 100.0, rel=1e-9)


def test_garch_term_structure_closed_form_equals_the_recursion():
    r, _ = simulate_garch(900, 0.02, 0.05, 0.08, 0.88, seed=4)
    fit = GarchForecaster(fit_window=900, min_fit=500).params(bars_from_returns(r))
    for s2 in (0.3, 1.0, 4.0):
        v, total = s2, 0.0
        for _ in range(30):
            total += v
            v = fit.omega + fit.persistence * v
        assert fit.average_variance(s2, 30) == pytest.approx(total / 30, rel=1e-12)


# --- HAR --------------------------------------------------------------------------------------

def har_bars(n, coef, noise, seed) -> DailyBars:
    """Bars whose daily variance v follows a log-HAR exactly: log v(t+1) = b0 + bd log v(t) +
    bw log mean(v, 5) + bm log mean(v, 22) + noise. Each bar opens at the previous close,
    moves +-sqrt(v) (its squared return is v) and has the range whose Parkinson variance is v,
    so the proxy and the squared returns are v itself."""
    rng = np.random.default_rng(seed)
    b0, bd, bw, bm = coef
    v = [1e-4] * 22
    while len(v) < n:
        d, w, m = v[-1], np.mean(v[-5:]), np.mean(v[-22:])
        v.append(math.exp(b0 + bd * math.log(d) + bw * math.log(w) + bm * math.log(m)
                          + noise * rng.standard_normal()))
    v = np.array(v)
    step = np.sqrt(v) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    c = 100.0 * np.exp(np.cumsum(step))
    o = np.concatenate([[100.0], c[:-1]])
    span = np.sqrt(4 * math.log(2) * v)  # ln(H/L), wider than |ln(C/O)| = sqrt(v)
    low = np.minimum(o, c) * np.exp(-(span - np.abs(step)) / 2)
    high = low * np.exp(span)
    return bars_of(o, high, low, c)


def test_har_constructed_series_recovers_its_coefficients_and_forecasts_by_them():
    coef = (0.1 * math.log(1e-4), 0.3, 0.35, 0.25)
    bars = har_bars(1100, coef, noise=0.3, seed=6)
    np.testing.assert_allclose(daily_variance(bars.open, bars.high, bars.low, bars.close)[1:],
                               np.log(bars.close[1:] / bars.close[:-1]) ** 2, rtol=1e-9)
    f = HarForecaster(fit_window=1000, min_fit=500)
    fit = f.params(bars, 1)
    np.testing.assert_allclose(fit.coef[1:], coef[1:], atol=0.08)
    assert fit.smearing == pytest.approx(math.exp(0.3 ** 2 / 2), rel=0.015)  # lognormal noise
    v = daily_variance(bars.open, bars.high, bars.low, bars.close)
    want = fit.predict(v[-1], v[-5:].mean(), v[-22:].mean())
    b0, bd, bw, bm = fit.coef
    by_hand = math.exp(b0 + bd * math.log(v[-1]) + bw * math.log(v[-5:].mean())
                       + bm * math.log(v[-22:].mean())) * fit.smearing
    assert want == pytest.approx(by_hand, rel=1e-12)
    assert f.forecast(bars, 1).vol == pytest.approx(math.sqrt(252 * want), rel=1e-12)


def test_har_constant_volatility_forecasts_that_volatility():
    rng = np.random.default_rng(9)
    n, daily = 700, 0.20 / math.sqrt(252)
    o, h, lo, c = (np.empty(n) for _ in range(4))
    price = 100.0
    for i in range(n):  # 78 five-minute steps a day, no overnight gap
        path = price * np.exp(np.cumsum(np.r_[0.0, daily / math.sqrt(78)
                                              * rng.standard_normal(78)]))
        o[i], h[i], lo[i], c[i] = price, path.max(), path.min(), path[-1]
        price = path[-1]
    bars = bars_of(o, h, lo, c)
    for log in (True, False):
        got = HarForecaster(fit_window=600, min_fit=300, log=log).forecast(bars, 21)
        assert got.vol == pytest.approx(0.20, rel=0.08), log


# --- too little history, caching, bad input, the premium ---------------------------------------

@pytest.mark.parametrize("f", [HarForecaster(), GarchForecaster(), RealisedForecaster()])
def test_forecast_too_little_history_nan_with_a_reason(f):
    got = f.forecast(head(clustered_bars(120, seed=4), 15), 21)
    assert math.isnan(got.vol)
    assert got.reason.startswith("too little history")
    assert got.asof == weekdays(15)[-1]
    assert got.as_dict()["vol"] is None


def test_forecast_every_tick_of_a_session_computes_once_and_refits_once_a_block():
    b = clustered_bars(420, seed=5)
    f = HarForecaster(fit_window=300, min_fit=200)
    first = f.forecast(head(b, 400), 21)
    copy = head(b, 400)  # another bars object with the same sessions and prices
    assert f.forecast(copy, 21) is first
    assert f.fits_computed == 1
    later = [f.forecast(head(b, k), 21) for k in range(400, 420)]
    assert f.fits_computed == len({x.fitted for x in later}) <= 2
    assert f.forecast(head(b, 400), 23) is not first  # another horizon, another regression


def test_forecast_bad_arguments_and_bars_raise():
    b = clustered_bars(300, seed=6)
    with pytest.raises(ValueError, match="horizon"):
        HarForecaster().forecast(b, 0)
    shuffled = DailyBars(b.sessions[::-1], b.open, b.high, b.low, b.close, b.atm_iv)
    with pytest.raises(DataError, match="increasing"):
        HarForecaster().forecast(shuffled, 21)
    broken = DailyBars(b.sessions, b.open, b.low, b.high, b.close, b.atm_iv)  # high < low
    with pytest.raises(DataError, match="inconsistent"):
        GarchForecaster().forecast(broken, 21)
    with pytest.raises(ValueError, match="min_fit"):
        HarForecaster(fit_window=100, min_fit=200)


def test_realised_forecaster_is_the_trailing_close_to_close_volatility():
    b = clustered_bars(100, seed=7)
    f = RealisedForecaster(21)
    got = f.forecast(b, 25)
    assert got.vol == float(close_to_close_vol(b.close, 21)[-1])
    assert got.horizon == 25
    assert f.forecast(head(b, 100), 25) is got  # remembered for the session's other ticks


def test_vrp_ratio_and_difference_and_unknowns():
    assert vrp(0.20, 0.16) == pytest.approx((1.25, 0.04))
    f = VolForecast("har", 0.25, 21, date(2025, 1, 6))
    assert vrp(0.20, f) == pytest.approx((0.8, -0.05))
    for implied, forecast in ((0.2, math.nan), (math.nan, 0.2), (0.2, 0.0), (-0.1, 0.2)):
        ratio, diff = vrp(implied, forecast)
        assert np.isnan([ratio, diff]).all()
    unknown = VolForecast("garch", math.nan, 21, None, reason="too little history")
    assert all(math.isnan(x) for x in vrp(0.2, unknown))


def test_har_forecasts_do_not_import_arch():
    code = ("import sys\n"
            "from tests.unit.signals.test_vrp import clustered_bars\n"
            "from thetadesk.signals.vrp import HarForecaster\n"
            "assert HarForecaster(fit_window=250, min_fit=200).forecast("
            "clustered_bars(300, 1), 21).vol > 0\n"
            "print('arch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_garch_forecasts_in_another_process_are_the_same_bits():
    b = clustered_bars(700, seed=8)
    origins = (560, 601, 699)
    here = [GarchForecaster(fit_window=500).forecast(head(b, k, k - 540), 21).vol
            for k in origins]
    code = ("from tests.unit.signals.test_vrp import clustered_bars, head\n"
            "from thetadesk.signals.vrp import GarchForecaster\n"
            "b = clustered_bars(700, seed=8)\n"
            "f = GarchForecaster(fit_window=500)\n"
            f"print([f.forecast(head(b, k, k - 540), 21).vol.hex() for k in {origins}])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str([x.hex() for x in here])
