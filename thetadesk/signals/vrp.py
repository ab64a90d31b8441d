"""Forecast volatility, point in time, for the volatility risk premium: the implied volatility an
option sells at against the volatility the underlying is expected to realise over its life.

Units: volatilities are annualised decimals (0.20 is 20%) with 252 sessions a year; a daily
variance is of the log return over one session (close to close), a decimal squared; horizons
are counted in sessions (an option's DTE in sessions, e.g. 21-25 for a 30-35 day expiry).

What is forecast: the average daily variance of the close-to-close log returns of the next
``h`` sessions after the last session of the bars (the first is the close of the last bar to
the close of the session after it), annualised: ``sqrt(252 * mean(E[r^2]))``. This is what a
30-day implied volatility such as the VIX prices and what a short option realises through its
delta hedge. From ``DailyHistory.before(today)`` the forecast is made before today's open.

Forecasters (``forecast(bars, horizon_sessions) -> VolForecast``, every one the same interface):

- ``HarForecaster``: Corsi's (2009) HAR-RV, "A Simple Approximate Long-Memory Model of
  Realized Volatility", J. Financial Econometrics 7(2): the daily, weekly (5) and monthly (22)
  averages of a daily variance proxy as regressors. With daily OHLC only there is no intraday
  realised variance, so the proxy (``daily_variance``) is by default the squared overnight
  return plus Parkinson's (1980) range variance, ``ln(O/C_prev)^2 + ln(H/L)^2 / (4 ln 2)``:
  the range is about five times more efficient than a squared return for a diffusion, and the
  overnight term keeps the opening gap that a range alone misses (on data whose open is the
  previous close, like the S&P 500 index in ``arch.data.sp500`` until 2006, it is zero and the
  range spans the whole day). Garman and Klass's (1980) estimator with the same overnight term
  and plain squared returns are the alternatives (``proxy``); on the S&P 500 in 2003-2018
  (``scripts/bench_vrp.py``) Parkinson's came first, Garman-Klass's within 2% of it, and
  squared returns last (QLIKE 12% higher). Multi-step forecasts come from Corsi's direct
  regressions: the mean squared close-to-close return of the next ``h`` sessions on the three
  averages, one regression per horizon, rather than iterating the one-day recursion (that
  would forecast the proxy rather than the close-to-close variance, and compound its error).
  By default the regression is in logs (the log-HAR: robust to the crashes that dominate a
  regression in levels; better on every measure in the bench) and its forecast is put back
  to the variance's mean with Duan's (1983) smearing factor
  ``mean(exp(residual))``; ``log=False`` fits in levels.
- ``GarchForecaster``: GJR-GARCH(1,1) (Glosten, Jagannathan and Runkle 1993; ``asymmetric=
  False`` for Bollerslev's GARCH(1,1)) fitted by ``arch.arch_model`` (constant mean, percent
  returns for the optimiser's sake) by Gaussian quasi-maximum likelihood by default (consistent
  whatever the innovations' law, Bollerslev and Wooldridge 1992; ``dist="t"`` for Student-t,
  which forecast no better in the bench and cost half as much again). Between refits the
  conditional variance is filtered forward with the fitted parameters over the sessions
  since; the ``h``-session average comes from the closed-form term structure
  ``E[s2(t+k)] = s2_bar + phi^(k-1) (s2(t+1) - s2_bar)``, ``phi = alpha + beta + gamma / 2``
  (``gamma / 2``: a symmetric innovation is negative half the time).
- ``RealisedForecaster``: the naive baseline, the trailing close-to-close realised volatility
  (``indicators.close_to_close_vol``, 21 sessions), whatever the horizon.

Refit schedule: the models are refitted at the first session of each block of ``refit_every``
weekdays counted from Monday 1970-01-05 (about ``refit_every`` sessions; a holiday makes a
block a session shorter), on the ``fit_window`` sessions up to and including that session, and
a forecast from bars ending in a block uses that block's fit. The schedule is anchored to the
calendar, not to the first call, so a forecast is a function of the bars alone: a backtest, a
live process restarted mid-month and a process that only asks once give the same numbers. For
the window to be the full ``fit_window`` on every session of a block, pass bars of at least
``fit_window + refit_every`` sessions (``before(today, fit_window + refit_every)``). With fewer,
the fit starts at the bars' first refit session (``VolForecast.fit_sessions`` says how many it
holds): still point in time and a function of the bars, but as the window slides that start
moves once a block, so a block costs up to two fits, and the forecasts are on a shorter window
(on the S&P 500 a 250-session HAR did worse than the naive baseline; see the bench).

Caching: each forecaster remembers its last forecasts (keyed by the bars' sessions and a hash
of their prices, and the horizon), so asking at every tick of a session computes once, and its
fits (keyed by the refit session and a hash of the fitted data). ``arch`` is imported on the
first GARCH fit only, so a process that never fits one does not pay for it.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple, Protocol

import numpy as np

from thetadesk.errors import DataError
from thetadesk.signals.history import DailyBars
from thetadesk.signals.indicators import close_to_close_vol, parkinson_vol

__all__ = [
    "PROXIES",
    "SESSIONS_PER_YEAR",
    "GarchFit",
    "GarchForecaster",
    "HarFit",
    "HarForecaster",
    "RealisedForecaster",
    "VolForecast",
    "VolForecaster",
    "Vrp",
    "daily_variance",
    "refit_session",
    "vrp",
]

SESSIONS_PER_YEAR = 252
_EPOCH = date(1970, 1, 5).toordinal()  # a Monday: refit blocks count weekdays from it
_PRICE_TOLERANCE = 1e-6  # relative: an open or close this far outside [low, high] is rounding
_VARIANCE_FLOOR = 0.01 ** 2 / SESSIONS_PER_YEAR  # 1% annualised: a log needs a positive value
_CACHE = 16  # forecasts and fits remembered per forecaster


@dataclass(frozen=True, slots=True)
class VolForecast:
    """A volatility forecast over ``horizon`` sessions after ``asof`` (the bars' last session),
    annualised (``vol``: NaN when unknown, with ``reason`` saying why)."""

    model: str  # "har", "garch", "realised"
    vol: float
    horizon: int  # sessions
    asof: date | None
    fitted: date | None = None  # the refit session whose parameters were used
    fit_sessions: int = 0  # sessions in that fit's window
    reason: str | None = None

    def as_dict(self) -> dict:
        return {"model": self.model, "vol": round(self.vol, 6) if math.isfinite(self.vol)
                else None, "horizon": self.horizon,
                "asof": self.asof.isoformat() if self.asof else None,
                "fitted": self.fitted.isoformat() if self.fitted else None,
                "fit_sessions": self.fit_sessions, "reason": self.reason}


class VolForecaster(Protocol):
    model: str

    def forecast(self, bars: DailyBars, horizon_sessions: int) -> VolForecast: ...


class Vrp(NamedTuple):
    ratio: float  # implied / forecast (above 1: options priced above the expected movement)
    difference: float  # implied - forecast, annualised volatility points (0.03 is 3 points)


def vrp(implied: float, forecast: float | VolForecast) -> Vrp:
    """The volatility risk premium of ``implied`` (annualised decimal, e.g. the ATM IV of the
    expiry sold) over ``forecast`` (annualised decimal or a ``VolForecast`` over that expiry's
    sessions): NaN for both where either is unknown or not positive."""
    f = forecast.vol if isinstance(forecast, VolForecast) else float(forecast)
    iv = float(implied)
    if not (math.isfinite(iv) and math.isfinite(f) and iv > 0 and f > 0):
        return Vrp(math.nan, math.nan)
    return Vrp(iv / f, iv - f)


PROXIES = ("parkinson", "garman_klass", "squared_return")


def daily_variance(open_, high, low, close, proxy: str = "parkinson") -> np.ndarray:
    """Each session's variance of its close-to-close log return (decimal squared, not
    annualised), from its open, high, low and close and the previous close:

    - ``"parkinson"``: the overnight term plus Parkinson's (1980) range,
      ``ln(O/C_prev)^2 + ln(H/L)^2 / (4 ln 2)`` (``indicators.parkinson_vol`` over one bar);
    - ``"garman_klass"``: the overnight term plus Garman and Klass's (1980) estimator,
      ``ln(O/C_prev)^2 + 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2``;
    - ``"squared_return"``: ``ln(C/C_prev)^2``.

    Index 0 has no previous close and is NaN. Prices must be positive with the open and close
    inside [low, high] (DataError otherwise)."""
    if proxy not in PROXIES:
        raise ValueError(f"proxy must be one of {PROXIES}, got {proxy!r}")
    o, h, lo, c = _prices(open_, high, low, close)
    out = np.full(len(c), np.nan)
    if len(c) < 2:
        return out
    if proxy == "squared_return":
        out[1:] = np.log(c[1:] / c[:-1]) ** 2
        return out
    overnight = np.log(o[1:] / c[:-1]) ** 2
    if proxy == "parkinson":
        out[1:] = overnight + parkinson_vol(h[1:], lo[1:], 1, periods_per_year=1.0) ** 2
    else:
        hl, co = np.log(h[1:] / lo[1:]), np.log(c[1:] / o[1:])
        out[1:] = overnight + 0.5 * hl * hl - (2.0 * math.log(2.0) - 1.0) * co * co
    return out


def _prices(open_, high, low, close) -> tuple[np.ndarray, ...]:
    arrays = [np.asarray(x, dtype=np.float64) for x in (open_, high, low, close)]
    o, h, lo, c = arrays
    if any(a.ndim != 1 for a in arrays) or len({len(a) for a in arrays}) > 1:
        raise DataError(f"open, high, low and close must be 1-D and of one length, got "
                        f"shapes {[a.shape for a in arrays]}")
    bad = ~np.all(np.isfinite(np.vstack(arrays)) & (np.vstack(arrays) > 0), axis=0)
    if bad.any():
        raise DataError(f"daily bar {int(np.argmax(bad))} has a price that is not a positive "
                        "number")
    slack = _PRICE_TOLERANCE * h
    bad = (lo > h) | (o > h + slack) | (c > h + slack) | (o < lo - slack) | (c < lo - slack)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"daily bar {i} is inconsistent: open {o[i]}, high {h[i]}, low "
                        f"{lo[i]}, close {c[i]}")
    return np.clip(o, lo, h), h, lo, np.clip(c, lo, h)


def _weekday_ordinal(d: date) -> int:
    weeks, rest = divmod(d.toordinal() - _EPOCH, 7)
    return 5 * weeks + min(rest, 5)


def refit_session(sessions, refit_every: int) -> int | None:
    """The index in ``sessions`` (dates, oldest first) of the latest refit session: the first
    session of its block of ``refit_every`` weekdays counted from Monday 1970-01-05. None when
    every session is in one block (its first session may lie before the window)."""
    if len(sessions) < 2:
        return None
    block = _weekday_ordinal(sessions[-1]) // refit_every
    for i in range(len(sessions) - 1, 0, -1):
        before = _weekday_ordinal(sessions[i - 1]) // refit_every
        if before != block:
            return i
    return None


def _first_refit(sessions, refit_every: int) -> int:
    block = _weekday_ordinal(sessions[0]) // refit_every
    for i in range(1, len(sessions)):
        b = _weekday_ordinal(sessions[i]) // refit_every
        if b != block:
            return i
    return len(sessions)


def _check_horizon(h: int) -> int:
    if isinstance(h, bool) or not isinstance(h, int | np.integer) or not 1 <= h <= 252:
        raise ValueError(f"horizon_sessions must be an integer in [1, 252], got {h!r}")
    return int(h)


def _check_sessions(bars: DailyBars) -> None:
    s = bars.sessions
    if any(b <= a for a, b in itertools.pairwise(s)):
        raise DataError("daily bars' sessions are not in increasing order")


def _fingerprint(*arrays: np.ndarray) -> int:
    return hash(b"".join(a.tobytes() for a in arrays))


def _remember(cache: OrderedDict, key, value):
    cache[key] = value
    if len(cache) > _CACHE:
        cache.popitem(last=False)
    return value


class _Scheduled:
    """The shared machinery: bar checks, the refit schedule, the fit and forecast caches."""

    model = ""

    def __init__(self, refit_every: int, fit_window: int, min_fit: int) -> None:
        for name, v, low in (("refit_every", refit_every, 1), ("fit_window", fit_window, 30),
                             ("min_fit", min_fit, 30)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if min_fit > fit_window:
            raise ValueError(f"min_fit ({min_fit}) exceeds fit_window ({fit_window})")
        self.refit_every, self.fit_window, self.min_fit = refit_every, fit_window, min_fit
        self._forecasts: OrderedDict = OrderedDict()
        self._fits: OrderedDict = OrderedDict()
        self.fits_computed = 0  # fits this forecaster has made (a schedule's cost)

    def forecast(self, bars: DailyBars, horizon_sessions: int) -> VolForecast:
        """The annualised volatility expected over the ``horizon_sessions`` sessions after the
        last of ``bars`` (completed sessions, oldest first), from those bars only."""
        h = _check_horizon(horizon_sessions)
        o, hi, lo, c = (np.asarray(x, dtype=np.float64)
                        for x in (bars.open, bars.high, bars.low, bars.close))
        key = (bars.sessions[:1], bars.sessions[-1:], len(bars), h, _fingerprint(o, hi, lo, c))
        if key in self._forecasts:
            return self._forecasts[key]
        asof = bars.sessions[-1] if len(bars) else None
        span = self._span(bars, o, hi, lo, c)
        if isinstance(span, str):
            out = VolForecast(self.model, math.nan, h, asof, reason=span)
        else:
            out = self._forecast(bars.sessions, *span, h)
        return _remember(self._forecasts, key, out)

    def params(self, bars: DailyBars, horizon_sessions: int = 21):
        """The fit a forecast from ``bars`` over ``horizon_sessions`` uses (a ``HarFit`` or
        ``GarchFit``; None before the first refit session with enough history)."""
        h = _check_horizon(horizon_sessions)
        span = self._span(bars, bars.open, bars.high, bars.low, bars.close)
        return None if isinstance(span, str) else self._fitted(bars.sessions, *span, h)

    def _span(self, bars: DailyBars, o, hi, lo, c):
        """The checked prices and the fit's window ``a .. j`` (``j`` the refit session), or
        why there is none."""
        _check_sessions(bars)
        o, hi, lo, c = _prices(o, hi, lo, c)
        j = refit_session(bars.sessions, self.refit_every)
        a = 0 if j is None else j + 1 - self.fit_window
        if j is not None and a < 0:
            # Fewer sessions than the window: start at the bars' first refit session, so a
            # sliding window moves the fit's start once a block rather than every session.
            a = _first_refit(bars.sessions, self.refit_every)
        if j is None or j + 1 - a < self.min_fit:
            return (f"too little history: {0 if j is None else j + 1 - a} sessions to fit on "
                    f"up to the last refit session, {self.min_fit} needed")
        return o, hi, lo, c, a, j

    def _fit(self, sessions, arrays, a: int, j: int, extra, make):
        key = (sessions[a], sessions[j], extra, _fingerprint(*(x[a:j + 1] for x in arrays)))
        if key not in self._fits:
            self.fits_computed += 1
            _remember(self._fits, key, make())
        return self._fits[key]

    def _fitted(self, sessions, o, hi, lo, c, a, j, h):
        raise NotImplementedError

    def _forecast(self, sessions, o, hi, lo, c, a, j, h) -> VolForecast:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class HarFit:
    """A HAR regression for one horizon: ``y = b0 + bd d + bw w + bm m`` with ``d``, ``w``,
    ``m`` the 1-, 5- and 22-session averages of the daily variance proxy and ``y`` the mean
    squared close-to-close return of the next ``horizon`` sessions (all in logs if ``log``;
    then ``smearing`` puts a forecast back to the variance's mean)."""

    coef: tuple[float, float, float, float]  # b0, bd, bw, bm
    log: bool
    smearing: float  # Duan's mean(exp(residual)); 1.0 in levels
    horizon: int
    rows: int  # regression observations
    reason: str | None = None  # why there is no usable fit

    def predict(self, d: float, w: float, m: float) -> float:
        """Mean daily variance (decimal squared) over the horizon; NaN if not positive."""
        x = np.array([1.0, d, w, m])
        if self.log:
            x[1:] = np.log(np.maximum(x[1:], _VARIANCE_FLOOR))
            return float(math.exp(float(np.dot(self.coef, x))) * self.smearing)
        v = float(np.dot(self.coef, x))
        return v if v > 0 else math.nan


class HarForecaster(_Scheduled):
    """HAR-RV forecasts (Corsi 2009; see the module's docstring) refitted by OLS every
    ``refit_every`` weekdays on the ``fit_window`` sessions up to the refit session (rolling),
    needing ``min_fit`` of them (and 52 + ``horizon`` for the regression), on the daily
    variance ``proxy`` (``daily_variance``), in logs unless ``log`` is False."""

    model = "har"

    def __init__(self, refit_every: int = 21, fit_window: int = 1000, min_fit: int = 252,
                 log: bool = True, proxy: str = "parkinson") -> None:
        super().__init__(refit_every, fit_window, min_fit)
        if proxy not in PROXIES:
            raise ValueError(f"proxy must be one of {PROXIES}, got {proxy!r}")
        self.log, self.proxy = bool(log), proxy

    def _forecast(self, sessions, o, hi, lo, c, a, j, h) -> VolForecast:
        asof = sessions[-1]
        fit = self._fitted(sessions, o, hi, lo, c, a, j, h)
        fitted, n = sessions[j], j + 1 - a
        if fit.reason:
            return VolForecast(self.model, math.nan, h, asof, fitted, n, fit.reason)
        v = daily_variance(o[-23:], hi[-23:], lo[-23:], c[-23:], self.proxy)[1:]
        if len(v) < 22:
            return VolForecast(self.model, math.nan, h, asof, fitted, n,
                               "too little history: 22 sessions of daily variance needed")
        var = fit.predict(v[-1], float(v[-5:].mean()), float(v.mean()))
        if not math.isfinite(var):
            return VolForecast(self.model, math.nan, h, asof, fitted, n,
                               "the HAR fit gives no positive variance for these regressors")
        return VolForecast(self.model, math.sqrt(SESSIONS_PER_YEAR * var), h, asof, fitted, n)

    def _fitted(self, sessions, o, hi, lo, c, a, j, h) -> HarFit:
        return self._fit(sessions, (o, hi, lo, c), a, j, h,
                         lambda: self._regress(o[a:j + 1], hi[a:j + 1], lo[a:j + 1],
                                               c[a:j + 1], h))

    def _regress(self, o, hi, lo, c, h) -> HarFit:
        v = daily_variance(o, hi, lo, c, self.proxy)  # v[0] NaN: the first average ends at 22
        n = len(c)
        rows = n - 22 - h  # regressors at t = 22 .. n-1-h, each with h returns after it
        if rows < 30:
            return HarFit((math.nan,) * 4, self.log, math.nan, h, max(rows, 0),
                          f"too little history for the HAR regression: {n} sessions, "
                          f"{52 + h} needed for horizon {h}")
        cv = np.concatenate([[0.0], np.cumsum(v[1:])])  # cv[k] = sum v[1..k]
        t = np.arange(22, n - h)
        d = v[t]
        w = (cv[t] - cv[t - 5]) / 5.0
        m = (cv[t] - cv[t - 22]) / 22.0
        r2 = np.concatenate([[0.0], np.cumsum(np.log(c[1:] / c[:-1]) ** 2)])  # sum r^2 1..k
        y = (r2[t + h] - r2[t]) / h
        x = np.column_stack([np.ones(len(t)), d, w, m])
        if self.log:
            x[:, 1:] = np.log(np.maximum(x[:, 1:], _VARIANCE_FLOOR))
            y = np.log(np.maximum(y, _VARIANCE_FLOOR))
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        smear = float(np.mean(np.exp(y - x @ coef))) if self.log else 1.0
        if not (np.all(np.isfinite(coef)) and math.isfinite(smear)):
            return HarFit((math.nan,) * 4, self.log, math.nan, h, rows,
                          "the HAR regression has no finite solution")
        return HarFit(tuple(float(b) for b in coef), self.log, smear, h, rows)


@dataclass(frozen=True, slots=True)
class GarchFit:
    """GJR-GARCH(1,1) parameters in percent returns: ``r = mu + e``, ``s2(t+1) = omega +
    (alpha + gamma [e(t) < 0]) e(t)^2 + beta s2(t)``; ``nu`` the Student-t degrees of freedom
    (NaN for normal innovations); ``s2_last`` and ``e_last`` at the refit session."""

    mu: float
    omega: float
    alpha: float
    gamma: float
    beta: float
    nu: float
    s2_last: float  # conditional variance of the refit session's return, percent squared
    e_last: float  # the refit session's residual, percent
    reason: str | None = None

    @property
    def persistence(self) -> float:
        return self.alpha + self.beta + 0.5 * self.gamma

    @property
    def long_run_vol(self) -> float:
        """Unconditional volatility, annualised decimal (NaN if the fit is not stationary)."""
        phi = self.persistence
        if not phi < 1.0:
            return math.nan
        return math.sqrt(SESSIONS_PER_YEAR * self.omega / (1.0 - phi)) / 100.0

    def next_variance(self, s2: float, e: float) -> float:
        return self.omega + (self.alpha + (self.gamma if e < 0 else 0.0)) * e * e + self.beta * s2

    def average_variance(self, s2_next: float, horizon: int) -> float:
        """Mean expected variance (percent squared) of the next ``horizon`` returns from the
        next one's, ``s2_next``: the closed-form GARCH term structure."""
        phi = self.persistence
        if abs(1.0 - phi) < 1e-12:  # integrated: variance grows by omega a session
            return s2_next + self.omega * (horizon - 1) / 2.0
        # sum_{k=1..h} E[s2(t+k)] with E[s2(t+k+1)] = omega + phi E[s2(t+k)]
        lr = self.omega / (1.0 - phi)
        return lr + (s2_next - lr) * (1.0 - phi ** horizon) / ((1.0 - phi) * horizon)


class GarchForecaster(_Scheduled):
    """GARCH forecasts (see the module's docstring): ``arch.arch_model`` refitted by maximum
    likelihood every ``refit_every`` weekdays on the returns of the ``fit_window`` sessions up
    to the refit session, needing ``min_fit``; ``dist`` ``"normal"`` (Gaussian QMLE) or
    ``"t"`` (Student-t); ``asymmetric`` for GJR-GARCH(1,1), else GARCH(1,1)."""

    model = "garch"

    def __init__(self, refit_every: int = 21, fit_window: int = 1000, min_fit: int = 500,
                 asymmetric: bool = True, dist: str = "normal") -> None:
        super().__init__(refit_every, fit_window, min_fit)
        if dist not in ("t", "normal"):
            raise ValueError(f"dist must be 't' or 'normal', got {dist!r}")
        self.asymmetric, self.dist = bool(asymmetric), dist

    def _forecast(self, sessions, o, hi, lo, c, a, j, h) -> VolForecast:
        asof = sessions[-1]
        fit = self._fitted(sessions, o, hi, lo, c, a, j, h)
        fitted, n = sessions[j], j + 1 - a
        if fit.reason:
            return VolForecast(self.model, math.nan, h, asof, fitted, n, fit.reason)
        s2 = fit.next_variance(fit.s2_last, fit.e_last)  # the session after the refit's
        for x in 100.0 * np.log(c[j + 1:] / c[j:-1]):  # sessions j+1 .. last, percent
            s2 = fit.next_variance(s2, float(x) - fit.mu)
        var = fit.average_variance(s2, h)
        if not (math.isfinite(var) and var > 0):
            return VolForecast(self.model, math.nan, h, asof, fitted, n,
                               "the GARCH term structure gives no positive variance")
        return VolForecast(self.model, math.sqrt(SESSIONS_PER_YEAR * var) / 100.0, h, asof,
                           fitted, n)

    def _fitted(self, sessions, o, hi, lo, c, a, j, h) -> GarchFit:
        # returns of sessions a+1 .. j, percent; the fit does not depend on the horizon
        return self._fit(sessions, (c,), a, j, None,
                         lambda: self._mle(100.0 * np.log(c[a + 1:j + 1] / c[a:j])))

    def _mle(self, y: np.ndarray) -> GarchFit:
        from arch import arch_model  # here, not at the top: most processes never fit one

        nan = math.nan
        try:
            res = arch_model(y, mean="Constant", vol="GARCH", p=1, o=int(self.asymmetric),
                             q=1, dist=self.dist, rescale=False).fit(
                                 disp="off", show_warning=False)
        except (ValueError, np.linalg.LinAlgError) as exc:
            return GarchFit(nan, nan, nan, nan, nan, nan, nan, nan,
                            f"the GARCH fit failed: {exc}")
        p = res.params
        if res.convergence_flag != 0:
            return GarchFit(nan, nan, nan, nan, nan, nan, nan, nan,
                            f"the GARCH fit did not converge on {len(y)} returns "
                            f"(optimiser flag {res.convergence_flag})")
        sigma = np.asarray(res.conditional_volatility, dtype=np.float64)
        return GarchFit(mu=float(p["mu"]), omega=float(p["omega"]),
                        alpha=float(p["alpha[1]"]),
                        gamma=float(p["gamma[1]"]) if self.asymmetric else 0.0,
                        beta=float(p["beta[1]"]),
                        nu=float(p["nu"]) if self.dist == "t" else nan,
                        s2_last=float(sigma[-1] ** 2), e_last=float(y[-1] - p["mu"]))


class RealisedForecaster:
    """The naive baseline: the trailing ``window``-session close-to-close realised volatility
    (sample standard deviation of the log returns, annualised with 252), whatever the
    horizon: what the strategy compares implied volatility with today. Remembered per session
    like the others."""

    model = "realised"

    def __init__(self, window: int = 21) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ValueError(f"window must be an integer >= 2, got {window!r}")
        self.window = window
        self._forecasts: OrderedDict = OrderedDict()

    def forecast(self, bars: DailyBars, horizon_sessions: int) -> VolForecast:
        h = _check_horizon(horizon_sessions)
        c = np.asarray(bars.close[-self.window - 1:], dtype=np.float64)
        key = (bars.sessions[-1:], len(bars), h, _fingerprint(c))
        if key in self._forecasts:
            return self._forecasts[key]
        asof = bars.sessions[-1] if len(bars) else None
        if len(bars) < self.window + 1:
            return _remember(self._forecasts, key, VolForecast(
                self.model, math.nan, h, asof,
                reason=f"too little history: {len(bars)} sessions, {self.window + 1} needed"))
        if not np.all(np.isfinite(c) & (c > 0)):
            raise DataError("daily closes must be positive numbers")
        vol = float(close_to_close_vol(c, self.window)[-1])
        return _remember(self._forecasts, key,
                         VolForecast(self.model, vol, h, asof, fit_sessions=self.window + 1))
