"""Technical indicators over price and volume series, vectorised with numpy and point in time.

Conventions (every function keeps them; tests hold them to it):

- Inputs are 1-D sequences of floats in time order, oldest first; outputs have the same length.
- Point in time: the value at index ``i`` uses the inputs at ``0..i`` only, so appending data,
  or changing any value after ``i``, changes nothing at or before ``i``.
- Warm-up: an index without enough history holds NaN (never a value computed from a partial
  window). A NaN input poisons the windows that hold it, and, for the recursive averages (EMA
  and Wilder's), every later value too: a gap in the data is a gap in the signal, never a
  silently carried-on number.
- Periods are counted in bars of whatever series is given (minutes, days); the annualising
  factor of the volatility estimators is ``periods_per_year`` (252 for daily bars).

Definitions follow the indicators' authors as the common references state them: Wilder's
smoothing (RSI, ATR, ADX) is an exponential average with ``alpha = 1/n`` seeded with the simple
mean of the first ``n`` values; the EMA uses ``alpha = 2/(n+1)`` seeded the same way; Bollinger
bands use the population standard deviation; Parkinson and Yang-Zhang are those authors'
estimators (Yang and Zhang 2000, with their ``k = 0.34 / (1.34 + (n+1)/(n-1))``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "ADX",
    "MACD",
    "Bands",
    "VolumeProfile",
    "adx",
    "atr",
    "bollinger",
    "close_to_close_vol",
    "ema",
    "macd",
    "parkinson_vol",
    "rsi",
    "seasonality",
    "sma",
    "true_range",
    "volume_profile",
    "volume_ratio",
    "volume_spikes",
    "vwap",
    "wilder",
    "yang_zhang_vol",
]


def _series(x, name: str = "series") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a


def _period(n: int, name: str = "n", minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"series of different lengths: {lengths}")
    return next(iter(lengths.values()))


def _rolling(x: np.ndarray, n: int, reduce) -> np.ndarray:
    """``reduce(window, axis=1)`` over each trailing window of ``n``; NaN before the first."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        out[n - 1:] = reduce(sliding_window_view(x, n), axis=1)
    return out


def sma(x, n: int) -> np.ndarray:
    """Simple moving average of the last ``n`` values."""
    return _rolling(_series(x), _period(n), np.mean)


def _recursive(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """``y[i] = y[i-1] + alpha * (x[i] - y[i-1])``, seeded at index ``n-1`` with the mean of the
    first ``n`` values. A NaN at or after the seed makes every later value NaN."""
    out = np.full(len(x), np.nan)
    if len(x) < n:
        return out
    y = float(np.mean(x[:n]))
    out[n - 1] = y
    beta = 1.0 - alpha
    for i in range(n, len(x)):
        y = beta * y + alpha * x[i]
        out[i] = y
    return out


def ema(x, n: int) -> np.ndarray:
    """Exponential moving average, ``alpha = 2/(n+1)``, seeded with the SMA of the first ``n``."""
    n = _period(n)
    return _recursive(_series(x), n, 2.0 / (n + 1.0))


def wilder(x, n: int) -> np.ndarray:
    """Wilder's smoothing (a running moving average): ``alpha = 1/n``, seeded with the SMA."""
    n = _period(n)
    return _recursive(_series(x), n, 1.0 / n)


def _offset(x: np.ndarray, n: int, f) -> np.ndarray:
    """``f`` over ``x[1:]`` (a series of changes, one shorter), put back in place: index 0 NaN."""
    out = np.full(len(x), np.nan)
    if len(x) > 1:
        out[1:] = f(x[1:], n)
    return out


def rsi(close, n: int = 14) -> np.ndarray:
    """Wilder's relative strength index, 0..100: the Wilder averages of the gains and the losses
    of the last ``n`` changes (the first value needs ``n + 1`` closes). 100 when there were no
    losses, 0 when no gains, 50 when the price did not move at all."""
    c = _series(close, "close")
    n = _period(n)
    change = np.diff(c)
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change < 0, -change, 0.0)
    gain[np.isnan(change)] = np.nan
    loss[np.isnan(change)] = np.nan
    out = np.full(len(c), np.nan)
    if len(change) < n:
        return out
    avg_gain = _recursive(gain, n, 1.0 / n)
    avg_loss = _recursive(loss, n, 1.0 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    value = np.where((avg_loss == 0) & (avg_gain > 0), 100.0, value)
    value = np.where((avg_loss == 0) & (avg_gain == 0), 50.0, value)
    value[np.isnan(avg_gain) | np.isnan(avg_loss)] = np.nan
    out[1:] = value
    return out


class MACD(NamedTuple):
    macd: np.ndarray  # EMA(fast) - EMA(slow)
    signal: np.ndarray  # EMA(signal) of the MACD line, from its first full value
    histogram: np.ndarray  # macd - signal


def macd(close, fast: int = 12, slow: int = 26, signal: int = 9) -> MACD:
    """Appel's moving average convergence/divergence; the signal line starts ``signal - 1``
    bars after the MACD line's first value (index ``slow + signal - 2``)."""
    c = _series(close, "close")
    fast, slow, signal = _period(fast, "fast"), _period(slow, "slow"), _period(signal, "signal")
    if fast >= slow:
        raise ValueError(f"the fast period ({fast}) must be shorter than the slow ({slow})")
    line = ema(c, fast) - ema(c, slow)
    sig = np.full(len(c), np.nan)
    start = slow - 1
    if len(c) > start:
        sig[start:] = ema(line[start:], signal)
    return MACD(line, sig, line - sig)


def true_range(high, low, close) -> np.ndarray:
    """Wilder's true range: the bar's high-low range widened to the previous close; the first
    bar (no previous close) is its high minus its low."""
    h, lo, c = _series(high, "high"), _series(low, "low"), _series(close, "close")
    _same_length(high=h, low=lo, close=c)
    tr = h - lo
    if len(c) > 1:
        prev = c[:-1]
        tr[1:] = np.maximum.reduce([h[1:] - lo[1:], np.abs(h[1:] - prev), np.abs(lo[1:] - prev)])
    return tr


def atr(high, low, close, n: int = 14) -> np.ndarray:
    """Average true range: Wilder's smoothing of the true range of bars ``1..`` (each with a
    previous close), so the first value is at index ``n``."""
    return _offset(true_range(high, low, close), _period(n), lambda tr, k: wilder(tr, k))


class Bands(NamedTuple):
    middle: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    percent_b: np.ndarray  # (close - lower) / (upper - lower); NaN for a flat window
    bandwidth: np.ndarray  # (upper - lower) / middle


def bollinger(close, n: int = 20, k: float = 2.0) -> Bands:
    """Bollinger bands: the ``n``-bar SMA and ``k`` population standard deviations around it."""
    c = _series(close, "close")
    n = _period(n)
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"k must be a positive number of standard deviations, got {k!r}")
    mid = _rolling(c, n, np.mean)
    sd = _rolling(c, n, np.std)
    upper, lower = mid + k * sd, mid - k * sd
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(upper > lower, (c - lower) / (upper - lower), np.nan)
        width = (upper - lower) / mid
    return Bands(mid, upper, lower, pct, width)


class ADX(NamedTuple):
    adx: np.ndarray  # 0..100, trend strength whatever its direction
    plus_di: np.ndarray  # +DI, 0..100
    minus_di: np.ndarray  # -DI, 0..100


def adx(high, low, close, n: int = 14) -> ADX:
    """Wilder's directional movement system. +DM and -DM per bar from the previous bar, smoothed
    with the true range (Wilder's average, from bar 1), give +DI and -DI (first at index ``n``);
    DX = 100 |+DI - -DI| / (+DI + -DI); ADX is Wilder's average of DX, first at ``2n - 1``."""
    h, lo, c = _series(high, "high"), _series(low, "low"), _series(close, "close")
    m = _same_length(high=h, low=lo, close=c)
    n = _period(n)
    plus_di = np.full(m, np.nan)
    minus_di = np.full(m, np.nan)
    out = np.full(m, np.nan)
    if m < 2:
        return ADX(out, plus_di, minus_di)
    up = h[1:] - h[:-1]
    down = lo[:-1] - lo[1:]
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    bad = np.isnan(up) | np.isnan(down)
    plus_dm[bad] = np.nan
    minus_dm[bad] = np.nan
    tr = true_range(h, lo, c)[1:]
    s_tr = wilder(tr, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        pdi = np.where(s_tr > 0, 100.0 * wilder(plus_dm, n) / s_tr, 0.0)
        mdi = np.where(s_tr > 0, 100.0 * wilder(minus_dm, n) / s_tr, 0.0)
        total = pdi + mdi
        dx = np.where(total > 0, 100.0 * np.abs(pdi - mdi) / total, 0.0)
    unknown = np.isnan(s_tr)
    pdi[unknown] = np.nan
    mdi[unknown] = np.nan
    dx[unknown] = np.nan
    plus_di[1:] = pdi
    minus_di[1:] = mdi
    first = n - 1  # the first DX, in the coordinates of the change series
    if len(dx) > first:
        smoothed = np.full(len(dx), np.nan)
        smoothed[first:] = wilder(dx[first:], n)
        out[1:] = smoothed
    return ADX(out, plus_di, minus_di)


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(a / b)
    r[~np.isfinite(r)] = np.nan  # a zero or negative price is no price
    return r


def _annualise(variance: np.ndarray, periods_per_year: float) -> np.ndarray:
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year!r}")
    with np.errstate(invalid="ignore"):
        return np.sqrt(variance * periods_per_year)


def close_to_close_vol(close, n: int = 20, periods_per_year: float = 252.0) -> np.ndarray:
    """Annualised standard deviation (sample, ``ddof=1``) of the last ``n`` log returns; the
    first value needs ``n + 1`` closes."""
    n = _period(n, minimum=2)
    c = _series(close, "close")
    var = np.full(len(c), np.nan)
    if len(c) > 1:
        r = _log_ratio(c[1:], c[:-1])
        var[1:] = _rolling(r, n, lambda w, axis: np.var(w, axis=axis, ddof=1))
    return _annualise(var, periods_per_year)


def parkinson_vol(high, low, n: int = 20, periods_per_year: float = 252.0) -> np.ndarray:
    """Parkinson's (1980) range estimator: ``sqrt(mean(ln(H/L)^2) / (4 ln 2))``, annualised."""
    h, lo = _series(high, "high"), _series(low, "low")
    _same_length(high=h, low=lo)
    hl = _log_ratio(h, lo)
    var = _rolling(hl * hl, _period(n), np.mean) / (4.0 * math.log(2.0))
    return _annualise(var, periods_per_year)


def yang_zhang_vol(open_, high, low, close, n: int = 20,
                   periods_per_year: float = 252.0) -> np.ndarray:
    """Yang and Zhang's (2000) drift-independent estimator from open, high, low and close:
    the overnight variance (open over the previous close) plus ``k`` times the open-to-close
    variance plus ``1 - k`` times Rogers-Satchell's, each over the last ``n`` bars (sample
    variances), ``k = 0.34 / (1.34 + (n+1)/(n-1))``. The first value needs ``n + 1`` bars."""
    o, h, lo, c = (_series(open_, "open"), _series(high, "high"), _series(low, "low"),
                   _series(close, "close"))
    m = _same_length(open=o, high=h, low=lo, close=c)
    n = _period(n, minimum=2)
    out = np.full(m, np.nan)
    if m < 2:
        return out
    overnight = _log_ratio(o[1:], c[:-1])
    oc = _log_ratio(c[1:], o[1:])
    rs = (_log_ratio(h[1:], c[1:]) * _log_ratio(h[1:], o[1:])
          + _log_ratio(lo[1:], c[1:]) * _log_ratio(lo[1:], o[1:]))
    sample = lambda w, axis: np.var(w, axis=axis, ddof=1)  # noqa: E731
    k = 0.34 / (1.34 + (n + 1.0) / (n - 1.0))
    var = (_rolling(overnight, n, sample) + k * _rolling(oc, n, sample)
           + (1.0 - k) * _rolling(rs, n, np.mean))
    out[1:] = _annualise(var, periods_per_year)
    return out


def volume_ratio(volume, n: int = 20) -> np.ndarray:
    """Each bar's volume over the mean volume of the ``n`` bars before it (the bar itself is
    not in its own baseline); NaN for the first ``n`` bars and a zero baseline."""
    v = _series(volume, "volume")
    n = _period(n)
    base = np.full(len(v), np.nan)
    if len(v) > n:
        base[n:] = sliding_window_view(v[:-1], n).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base > 0, v / base, np.nan)


def volume_spikes(volume, n: int = 20, threshold: float = 2.0) -> np.ndarray:
    """Whether each bar's volume is at least ``threshold`` times its ``volume_ratio`` baseline
    (False where the baseline is unknown)."""
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive multiple, got {threshold!r}")
    ratio = volume_ratio(volume, n)
    return np.nan_to_num(ratio, nan=0.0) >= threshold


def vwap(high, low, close, volume, session) -> np.ndarray:
    """Volume-weighted average price of the typical price ``(H+L+C)/3``, cumulated from each
    session's first bar (``session``: any label per bar, e.g. the date; a new label restarts
    the sum). NaN until the session has traded any volume."""
    h, lo, c, v = (_series(high, "high"), _series(low, "low"), _series(close, "close"),
                   _series(volume, "volume"))
    m = _same_length(high=h, low=lo, close=c, volume=v)
    labels = np.asarray(session)
    if labels.shape != (m,):
        raise ValueError(f"session needs one label per bar ({m}), got shape {labels.shape}")
    if np.any(v < 0):
        raise ValueError("volume must not be negative")
    pv = (h + lo + c) / 3.0 * v
    out = np.full(m, np.nan)
    if m == 0:
        return out
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    ends = np.r_[starts[1:], m]
    for a, b in zip(starts, ends, strict=True):
        cum_v = np.cumsum(v[a:b])
        with np.errstate(divide="ignore", invalid="ignore"):
            out[a:b] = np.where(cum_v > 0, np.cumsum(pv[a:b]) / cum_v, np.nan)
    return out


class VolumeProfile(NamedTuple):
    edges: np.ndarray  # bins + 1 price edges, low to high
    volume: np.ndarray  # volume traded in each price bin
    point_of_control: float  # the middle of the bin with the most volume
    value_area: tuple[float, float]  # the price range of the bins holding ``share`` of volume


def volume_profile(close, volume, bins: int = 24, share: float = 0.70) -> VolumeProfile:
    """Volume traded at each price over the bars given (the caller's window: pass only data up
    to the decision time). The value area grows from the point of control toward the side with
    more volume until it holds ``share`` of the total (Steidlmayer's market profile rule)."""
    c, v = _series(close, "close"), _series(volume, "volume")
    _same_length(close=c, volume=v)
    bins = _period(bins, "bins")
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share!r}")
    ok = np.isfinite(c) & np.isfinite(v) & (v >= 0)
    if not np.any(ok) or v[ok].sum() <= 0:
        raise ValueError("a volume profile needs bars with finite prices and some volume")
    c, v = c[ok], v[ok]
    lo, hi = float(c.min()), float(c.max())
    if hi == lo:
        hi = lo + 1e-9 * max(abs(lo), 1.0)
    hist, edges = np.histogram(c, bins=bins, range=(lo, hi), weights=v)
    poc = int(np.argmax(hist))
    a = b = poc
    held, total = hist[poc], hist.sum()
    while held < share * total - 1e-12 * total:
        below = hist[a - 1] if a > 0 else -1.0
        above = hist[b + 1] if b < bins - 1 else -1.0
        if above >= below:
            b += 1
            held += above
        else:
            a -= 1
            held += below
    return VolumeProfile(edges, hist, float((edges[poc] + edges[poc + 1]) / 2),
                         (float(edges[a]), float(edges[b + 1])))


def seasonality(days: Sequence[datetime] | Sequence, returns) -> dict[str, dict[int, float]]:
    """Mean return by day of week (0 Monday .. 4 Friday) and by month (1..12) over the data
    given (pass only the past); a weekday or month with no returns is absent, not zero."""
    r = _series(returns, "returns")
    if len(days) != len(r):
        raise ValueError(f"{len(days)} days for {len(r)} returns")
    by_weekday: dict[int, list[float]] = {}
    by_month: dict[int, list[float]] = {}
    for d, x in zip(days, r, strict=True):
        if not math.isfinite(x):
            continue
        by_weekday.setdefault(d.weekday(), []).append(float(x))
        by_month.setdefault(d.month, []).append(float(x))
    return {"day_of_week": {k: float(np.mean(v)) for k, v in sorted(by_weekday.items())},
            "month": {k: float(np.mean(v)) for k, v in sorted(by_month.items())}}
