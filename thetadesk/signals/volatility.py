"""Volatility context: where implied volatility stands against its own past and against the
volatility the underlying has been realising, and the shape of the surface (term structure and
skew) at the decision time.

Units: volatilities are annualised fractions (0.20 is 20%); IV rank and IV percentile are
0..100; the term slope is the change in at-the-money IV per 30 calendar days of expiry (positive
in contango, the usual shape; negative in backwardation, typical of stress); the skew is the
25-delta put's IV minus the 25-delta call's (positive: puts bid, the usual equity shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from thetadesk.chain import OptionChain, OptionQuote
from thetadesk.errors import DataError
from thetadesk.models import Right
from thetadesk.pricing import implied_vol

__all__ = ["IV_LOOKBACK", "SurfaceContext", "atm_implied_vol", "iv_percentile", "iv_rank",
           "rolling_iv_rank", "surface_context"]

IV_LOOKBACK = 252  # sessions in the IV rank and percentile's year


def _history(history, lookback: int) -> np.ndarray:
    h = np.asarray(history, dtype=np.float64)
    if h.ndim != 1:
        raise ValueError(f"IV history must be one-dimensional, got shape {h.shape}")
    if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 2:
        raise ValueError(f"lookback must be an integer >= 2, got {lookback!r}")
    return h[-lookback:]


def iv_rank(history, current: float | None = None, lookback: int = IV_LOOKBACK,
            min_observations: int = 20) -> float:
    """``100 * (iv - low) / (high - low)`` over the last ``lookback`` observations of
    ``history`` (daily ATM IVs, oldest first); ``current`` defaults to its last value and is
    part of the range. NaN with fewer than ``min_observations`` finite values or a flat range.
    NaNs in the history (days without a usable IV) are left out, not filled."""
    h = _history(history, lookback)
    iv = float(h[-1]) if current is None else float(current)
    h = h[np.isfinite(h)]
    if current is not None and math.isfinite(iv):
        h = np.append(h, iv)
    if len(h) < min_observations or not math.isfinite(iv):
        return math.nan
    low, high = float(h.min()), float(h.max())
    return math.nan if high <= low else 100.0 * (iv - low) / (high - low)


def iv_percentile(history, current: float | None = None, lookback: int = IV_LOOKBACK,
                  min_observations: int = 20) -> float:
    """The share (0..100) of the last ``lookback`` observations with an IV below ``current``
    (default: the last one, which is then not compared with itself)."""
    h = _history(history, lookback)
    if current is None:
        iv, h = float(h[-1]), h[:-1]
    else:
        iv = float(current)
    h = h[np.isfinite(h)]
    if len(h) < min_observations or not math.isfinite(iv):
        return math.nan
    return 100.0 * float(np.count_nonzero(h < iv)) / len(h)


def rolling_iv_rank(history, lookback: int = IV_LOOKBACK, min_observations: int = 20
                    ) -> tuple[np.ndarray, np.ndarray]:
    """IV rank and IV percentile at every point of ``history``, each from the observations up
    to that point only (for backtests and regime history): the same numbers as ``iv_rank``
    and ``iv_percentile`` on each prefix, computed over all windows at once."""
    h = np.asarray(history, dtype=np.float64)
    if h.ndim != 1:
        raise ValueError(f"IV history must be one-dimensional, got shape {h.shape}")
    _history(h, lookback)  # checks lookback
    n = len(h)
    if n == 0:
        return np.full(0, np.nan), np.full(0, np.nan)
    padded = np.concatenate([np.full(lookback - 1, np.nan), h])
    windows = np.lib.stride_tricks.sliding_window_view(padded, lookback)  # row i ends at h[i]
    cur = windows[:, -1]
    ok_cur = np.isfinite(cur)
    finite = np.isfinite(windows)
    count = finite.sum(axis=1)
    low = np.min(np.where(finite, windows, np.inf), axis=1)
    high = np.max(np.where(finite, windows, -np.inf), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rank = np.where(ok_cur & (count >= min_observations) & (high > low),
                        100.0 * (cur - low) / (high - low), np.nan)
    prev, prev_finite = windows[:, :-1], finite[:, :-1]
    prev_count = prev_finite.sum(axis=1)
    below = np.count_nonzero(prev_finite & (prev < cur[:, None]), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(ok_cur & (prev_count >= min_observations),
                       100.0 * below.astype(np.float64) / prev_count, np.nan)
    return rank, pct


@dataclass(frozen=True, slots=True)
class SurfaceContext:
    """The surface at one instant around ``expiry`` (the trade's): NaN where a part of the
    chain was missing or unusable, with the reason in ``notes``."""

    expiry: date
    atm_iv: float
    term_slope: float  # ATM IV change per 30 days of expiry, from ``expiry`` to the next one
    skew_25d: float  # IV(25-delta put) - IV(25-delta call) at ``expiry``
    notes: tuple[str, ...] = ()

    def iv_minus_realised(self, realised: float) -> float:
        """The implied-minus-realised spread (positive: options price more movement than the
        underlying has been showing: the premium a seller collects)."""
        return self.atm_iv - realised if math.isfinite(realised) else math.nan

    def as_dict(self) -> dict:
        return {"expiry": self.expiry.isoformat(), "atm_iv": _r(self.atm_iv),
                "term_slope": _r(self.term_slope), "skew_25d": _r(self.skew_25d),
                "notes": list(self.notes)}


def _r(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def _row_iv(chain: OptionChain, row: OptionQuote | None, expiry: date) -> float:
    if row is None:
        return math.nan
    if row.iv is not None and math.isfinite(row.iv) and row.iv > 0:
        return float(row.iv)
    if not row.quote.bid > 0:  # a one-sided quote has no real mid
        return math.nan
    return float(implied_vol(row.quote.mid, chain.spot, row.contract.strike,
                             chain.years_to_expiry(expiry), chain.rate, chain.dividend_yield,
                             row.contract.right is Right.CALL))


def atm_implied_vol(chain: OptionChain, expiry: date) -> float:
    """ATM implied volatility at ``expiry`` from the chain itself (NaN if unusable)."""
    return _atm(chain, expiry)


def _atm(chain: OptionChain, expiry: date) -> float:
    """ATM IV: the mean of the put's and the call's nearest the spot where both are usable."""
    ivs = [_row_iv(chain, chain.nearest(expiry, right, chain.spot), expiry)
           for right in (Right.PUT, Right.CALL)]
    ivs = [v for v in ivs if math.isfinite(v)]
    return float(np.mean(ivs)) if ivs else math.nan


def surface_context(chain: OptionChain, expiry: date) -> SurfaceContext:
    """ATM IV, term slope and 25-delta skew at ``expiry`` from ``chain``."""
    if expiry not in chain.expiries():
        raise DataError(f"{chain.underlying} chain has no {expiry} expiry")
    notes: list[str] = []
    atm = _atm(chain, expiry)
    if not math.isfinite(atm):
        notes.append(f"no usable at-the-money quote at {expiry}")
    later = [e for e in chain.expiries() if e > expiry]
    slope = math.nan
    if not later:
        notes.append("no later expiry in the chain for the term slope")
    else:
        nxt = later[0]
        far = _atm(chain, nxt)
        days = (nxt - expiry).days
        if math.isfinite(far) and math.isfinite(atm):
            slope = (far - atm) / days * 30.0
        else:
            notes.append(f"no usable at-the-money quote at {nxt}")
    skew = math.nan
    try:
        put = _row_iv(chain, chain.strike_by_delta(expiry, -0.25, Right.PUT), expiry)
        call = _row_iv(chain, chain.strike_by_delta(expiry, 0.25, Right.CALL), expiry)
        skew = put - call
    except DataError as exc:
        notes.append(f"skew: {exc}")
    if not math.isfinite(skew) and not any(n.startswith("skew") for n in notes):
        notes.append("skew: a 25-delta quote without a usable IV")
    return SurfaceContext(expiry, atm, slope, skew, tuple(notes))
