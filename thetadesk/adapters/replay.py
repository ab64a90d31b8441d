"""Market data replayed from history, through the ``MarketData`` port.

Two sources, one port (``spot``, ``quote``, ``chain``):

``HistoricalReplay`` -- real S&P 500 and NASDAQ daily data shipped with the ``arch`` package
=============================================================================================

- Days: the trading days of ``arch.data.sp500`` (1999-01-04 to 2018-12-31, daily OHLC). Every one
  of them is an NYSE session of ``exchange_calendars``' XNYS calendar and every XNYS session in
  that range has data (checked at load time: a mismatch raises DataError). Session hours (09:30 to
  16:00 New York, 13:00 on early closes) come from the same calendar. ``MarketCalendar`` in
  ``thetadesk.clock`` starts in 2000, so the 1999 sessions are read from XNYS directly.
- Indices: ``arch.data.sp500`` (S&P 500) and ``arch.data.nasdaq`` (NASDAQ Composite, the same
  days, checked at load time). QQQ tracks the NASDAQ-100, not the Composite: the Composite is
  the closest real series that ships with a package, and it is a proxy (the two moved closely
  in 1999-2018 but are not the same index).
- Underlying: each symbol follows one index (``indices``, default ``"sp500"``) times its scale
  (``{"SPY": 0.1}``: SPY ~ S&P 500 / 10), rounded to $0.01. Within a day the price follows a
  deterministic one-minute path seeded by ``(seed, day)`` (the same noise for every index, so
  the symbols move together within the day; each index through its own O/H/L/C): three Brownian
  bridges in log price, Open -> first extreme -> second extreme -> Close, folded (reflected) into
  [Low, High] so the path stays continuous without flat runs at the extremes.
  The order of the extremes is drawn with the seed, weighted towards the order with the shorter
  travel; their minutes are drawn uniformly. Minute 0 is the Open at the session open, the last
  bar is the Close at the session close, and the path's max and min are exactly High and Low.
- ``spot(symbol, now)``: the bar at or before ``now``; between sessions the last close. Before the
  first session's open or after the New York midnight ending the last data day: DataError naming
  the range.
- Implied volatility, the day's level: the 30-day at-the-money (strike = forward) level of day
  ``d`` at the previous close is ``atm_vix_ratio`` (default 0.90) times the VIX close / 100 of
  the session BEFORE ``d`` where ``arch.data.vix`` has it (from 2014-01-06, the session after
  its first day 2014-01-03); before that a proxy, the close-to-close realised volatility of the
  21 daily log returns up to the previous close (annualised with 252, at least 10 returns),
  times 1.15, floored at 0.08; 0.25 for the first days of 1999 (fewer than 10 returns; VIX
  stood near 25). ``iv_source(d)`` says which was used. Both are point in time: during day
  ``d`` nothing of ``d``'s own close is known, so a backtest cannot see the future through the
  volatility level (the day's own VIX close was used before 2026-12-03).
  The NASDAQ has no volatility index in the data: its level is that VIX value times the ratio
  of the NASDAQ's to the S&P 500's realised volatility over the 63 daily returns up to the
  previous close (clipped to [0.8, 2.5]; about 1.2 in 2014-2018, near the VXN/VIX ratio), times
  ``atm_vix_ratio``, and before 2014 its own realised proxy as above.

  Why ATM sits below the VIX: the VIX is the square root of a 30-day variance-swap rate
  replicated from out-of-the-money puts and calls over the whole strike range (Cboe VIX white
  paper), so it prices the put skew and the smile's convexity and trades above at-the-money
  implied volatility: "variance swaps trade at a small premium to ATM implied volatilities"
  (P. Allen, S. Einchcomb, N. Granger, "Variance Swaps", J.P. Morgan European Equity
  Derivatives Strategy, November 2006); about 1-2 vol points ("vegas") for the convexity
  premium, with ATM above realised by 2-3 points for the variance risk premium
  (sp-finance.e-monsite.com, "Variance swaps / the market / historical prices", summarising
  that material). Nations' VolDex (VOLI), the implied volatility of a precisely at-the-money
  30-day SPY option, closed its first day, 2013-06-21, at 17.31 with the VIX at 18.90: 0.916
  (MarketsWiki, "Nations VolDex Index"). 0.90 is the middle of those figures (1-2 points below
  a VIX of 15-20 is 0.87-0.95). Check on the replay's own surface: the VIX computed from its
  listed chain by the Cboe method (``vix``, ``thetadesk.volatility_index``) lands within about
  1 vol point of the VIX it was given (``atm_iv / atm_vix_ratio``) over 2014-2018 (mean -0.45,
  range -0.79 to +1.14 on 51 opens 25 sessions apart; tests/unit/adapters/
  test_replay_realism.py): the ratio and the skew below are consistent. With the ratio at 1.0
  (ATM at the VIX, before issue 24) the replay's own VIX came out 9% above the data's (mean
  +1.40 points, up to +4.04): every option was priced too dear.

  The realised proxy keeps its 1.15 and no ratio: it is an at-the-money level already. The same
  J.P. Morgan framework puts ATM 2-3 vol points over realised (1.12-1.19 times a realised 16%),
  and in 2014-2018, where both exist, 0.90 x the previous VIX close over the proxy's realised
  volatility has a median of 1.24 (VIX / realised: 1.37): the proxy is, if anything, cheaper
  than the VIX-based level, not dearer.
- Implied volatility within the day: every minute the ATM level is the day's level times
  ``(S_t / S_ref) ** spot_vol_beta``, ``S_t`` the index at that minute bar, ``S_ref`` the
  previous close (the level the previous VIX close belongs to; the open on the first day of the
  data), the factor bounded to [0.5, 2.5] (the VIX's largest one-day move in the data is x2.16,
  2018-02-05; the bounds only guard against bad data). Point in time: it uses the path up to
  the minute only, and the whole surface (term structure and skew below) is built on it, so a
  falling day raises every option's implied volatility minute by minute and a rising day
  lowers it, the VIX-based days, the NASDAQ and the proxy days alike (each index by its own
  move). Between sessions the level is the last close's. ``spot_vol_beta`` defaults to -4.94,
  the VIX:SPX beta of all daily returns since VIX futures began on 2004-03-26
  (volatilitytradingstrategies.com, "An introduction to beta - what is the VIX:SPX beta?"); on
  big S&P 500 moves only it is about -4.3 (the same source), and Garven's regression of daily
  S&P 500 on VIX returns 1990-2024 (slope -0.1147, R^2 0.4887; derivatives.garven.com) implies
  -4.26 for the VIX on the S&P 500. The data shipped here (2014-2018, a calm stretch, where a
  proportional beta runs higher) gives -8.0 for daily log changes (correlation -0.82): -4.94
  takes the documented long-run figure, not the in-sample one, so the replay does not fit its
  own test data; predicting each VIX close from the previous one and the day's S&P 500 move
  with -4.94 leaves a log error of 0.054 against 0.082 for a frozen level.
- Surface: the ATM level for time to expiry ``T`` is the average of a variance mean-reverting
  (speed 4/year) to 0.20^2 from the level that gives the 30-day value, so the term structure
  slopes up when volatility is low and inverts when it is high. Then
  ``iv(K, T) = atm_T * (1 - s_T x + c_T x^2)``, ``x = ln(K / F)``, with put skew ``s`` larger when
  the level is low (0.8 / atm30, within [1.2, 4]; ``atm30`` the minute's ATM level) and steeper
  for shorter expiries, clipped to [0.03, 3.0]. Prices: European BSM with ``rate`` and
  ``dividend_yield`` (continuous).
- Listing: weekly Friday expiries up to 49 days out plus the monthly third Fridays up to 70 days
  out, a holiday expiry moved to the previous session; strikes on the symbol's ``strike_step``
  grid from 75% to 115% of the previous session's close (the day's open on the first day of
  the data), listed before the open and kept all day as an exchange does (until 2026-12-03 the
  band followed spot minute by minute). Quotes on a $0.01 tick with a half-spread of
  ``(0.01 + 0.4% of the price) x (1 + 0.5 min(|z|, 4))``, ``z`` the moneyness in standard
  deviations, so cheap and far-from-the-money options are relatively wider. Chains carry model
  deltas and IVs.
- Deterministic: the same arguments give the same answers in any process; caches (per symbol and
  minute: surfaces, single quotes, chains) only remember them; no implied volatility is cached per
  day.

``UserDataReplay`` -- your own data, CSV or Parquet
===================================================

``UserDataReplay.from_files(bars, quotes=None)`` reads a ``.csv`` or ``.parquet`` file (Parquet
needs ``pyarrow``; CSV needs nothing extra).

Bars file, one row per symbol and bar:

==========  ================================================================================
timestamp   ISO-8601 with a UTC offset (``2024-01-02T09:31:00-05:00``) or ``Z``; in Parquet a
            timezone-aware timestamp column or such strings. Naive times are rejected. The
            instant the bar's ``close`` was observed: label bars by their END (a vendor that
            labels minute bars by their start, like Alpaca or Polygon, gives a one-minute
            look-ahead unless you add a minute).
symbol      the underlying, 1-6 upper-case letters or digits (``SPY``)
open        > 0
high        >= open, low, close
low         > 0, <= open, close
close       > 0; ``spot(symbol, now)`` is the close of the last bar with timestamp <= now
            (DataError before the symbol's first bar or more than a day after its last)
volume      >= 0
==========  ================================================================================

Quotes file (optional), one row per contract and update:

==========  ================================================================================
timestamp   as above
occ_symbol  OCC symbol, compact ``SPY240119P00470000`` or 21-character padded
bid, ask    >= 0, bid <= ask (per share)
bid_size    integer >= 0
ask_size    integer >= 0
iv          optional: the vendor's implied volatility (0.18 = 18%), blank if unknown
delta       optional: the vendor's delta, blank if unknown
==========  ================================================================================

Rows must be in time order per symbol (bars) and per contract (quotes); a timestamp may appear
once per symbol (contract). Values must not be missing (NaN/blank) except the optional columns.
Every violation raises DataError naming the file, the row (1-based data row, the CSV line is
one more) and the column. ``quote(contract, now)`` is the contract's last quote at or before
``now``; a quote older than ``max_quote_age`` (default 15 minutes) is stale (DataError in
``quote``, left out of ``chain``). ``chain`` lists every unexpired contract of the symbol with a
fresh quote.

Warnings: reading the arch data and building the XNYS calendar run inside
``warnings.catch_warnings`` that ignore only pandas' "Series.values returning an ndarray"
DeprecationWarning (raised inside exchange_calendars with pandas 3).
"""

from __future__ import annotations

import functools
import math
import re
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import structlog

from thetadesk.adapters._time_cache import LRU as _LRU
from thetadesk.adapters._time_cache import MINUTE_NS as _MINUTE_NS
from thetadesk.adapters._time_cache import from_ns as _from_ns
from thetadesk.adapters._time_cache import to_ns as _ns
from thetadesk.chain import (
    NEW_YORK,
    OptionChain,
    OptionQuote,
    contract_arrays,
    expiry_instant,
)
from thetadesk.errors import DataError
from thetadesk.models import Contract, Quote, Right
from thetadesk.pricing import bsm_greeks
from thetadesk.pricing import jit as _jit

__all__ = ["HistoricalReplay", "IvSource", "UserDataReplay"]

IvSource = Literal["vix", "realised_proxy"]

_YEAR = timedelta(days=365)
_T30 = 30.0 / 365.0
_T_MIN = 1.0 / 365.0
_SKEW_T_MIN = 7.0 / 365.0  # skew stops steepening below a week to expiry

# Implied volatility.
_PROXY_WINDOW, _PROXY_MIN_RETURNS = 21, 10
_PROXY_MARKUP, _PROXY_FLOOR, _PROXY_FALLBACK = 1.15, 0.08, 0.25
_RATIO_WINDOW, _RATIO_MIN, _RATIO_MAX = 63, 0.8, 2.5  # NASDAQ / S&P 500 realised volatility
ATM_VIX_RATIO = 0.90  # 30-day ATM implied volatility / VIX (module docs: sources)
SPOT_VOL_BETA = -4.94  # d ln(implied volatility) / d ln(index) (module docs: sources)
_MOVE_MIN, _MOVE_MAX = 0.5, 2.5  # bounds of the intraday factor exp(beta ln(S / S_ref))
_RATIO_BOUNDS, _BETA_BOUNDS = (0.5, 1.5), (-15.0, 0.0)
_LONG_RUN_VAR = 0.20**2
_KAPPA = 4.0  # per year
_SKEW_ABS, _SKEW_MIN, _SKEW_MAX = 0.8, 1.2, 4.0
_SKEW_POWER = 0.3
_CURVATURE = 1.5
_IV_MIN, _IV_MAX = 0.03, 3.0

# Listing and quoting.
_WEEKLY_DAYS, _MONTHLY_DAYS = 49, 70
_STRIKE_LOW, _STRIKE_HIGH = 0.75, 1.15
_TICK = 0.01
_HALF_FIXED, _HALF_SHARE, _HALF_WING, _Z_CAP = 0.01, 0.004, 0.5, 4.0

# Intraday path: bridge volatility as a share of the day's log range per sqrt(session).
_BRIDGE_SHARE = 0.35

_VALUES_WARNING = r"Series\.values returning an ndarray"


# -------------------------------------------------------------------------------------------
# The historical data, loaded once per process


@dataclass(frozen=True, slots=True)
class _Index:
    """One index's daily bars and its point-in-time volatility level of each day."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    ref: np.ndarray  # the level the day's volatility belongs to: the previous close (day 0: open)
    level: np.ndarray  # the previous VIX close / 100 (NASDAQ: x the realised ratio), or the proxy
    is_vix: np.ndarray  # True where level is derived from the previous session's VIX close


@dataclass(frozen=True, slots=True)
class _History:
    dates: tuple[date, ...]
    index: dict[date, int]
    indices: dict[str, _Index]  # "sp500", "nasdaq"
    opens: np.ndarray  # session open, UTC ns
    closes: np.ndarray  # session close, UTC ns
    end_ns: int  # New York midnight after the last day
    sessions: frozenset[date]  # XNYS sessions, for moving holiday expiries


INDICES = ("sp500", "nasdaq")


def _realised(close: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Annualised close-to-close volatility of the ``window`` log returns up to the previous
    close (point in time for the day it is used on)."""
    returns = np.diff(np.log(close), prepend=np.nan)
    return (
        pd.Series(returns).rolling(window, min_periods=min_periods).std().shift(1)
        * math.sqrt(252.0)
    ).to_numpy()


def _proxy(close: np.ndarray) -> np.ndarray:
    realised = _realised(close, _PROXY_WINDOW, _PROXY_MIN_RETURNS)
    return np.where(
        np.isnan(realised), _PROXY_FALLBACK, np.maximum(realised * _PROXY_MARKUP, _PROXY_FLOOR)
    )


@functools.cache
def _history() -> _History:
    import exchange_calendars as xc
    from arch.data import nasdaq, sp500, vix

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_VALUES_WARNING, category=DeprecationWarning)
        spx = sp500.load()
        ndq = nasdaq.load()
        vx = vix.load()
        first = spx.index[0].date()
        last = spx.index[-1].date()
        cal = xc.get_calendar(
            "XNYS", start=date(first.year, 1, 1).isoformat(),
            end=date(last.year + 1, 12, 31).isoformat(),
        )
        cal_days = [ts.date() for ts in cal.sessions]
        cal_opens = np.asarray(cal.opens_nanos, dtype=np.int64)
        cal_closes = np.asarray(cal.closes_nanos, dtype=np.int64)
    dates = tuple(ts.date() for ts in spx.index)
    pos = {d: i for i, d in enumerate(cal_days)}
    in_range = {d for d in cal_days if first <= d <= last}
    not_sessions = [d for d in dates if d not in pos]
    missing = sorted(in_range - set(dates))
    if not_sessions or missing:
        raise DataError(
            f"arch S&P 500 days disagree with the NYSE calendar: not sessions "
            f"{not_sessions[:5]}, sessions without data {missing[:5]}"
        )
    if not ndq.index.equals(spx.index):
        odd = sorted(set(ndq.index).symmetric_difference(spx.index))[:5]
        raise DataError(f"arch NASDAQ Composite days differ from the S&P 500 days: {odd}")
    take = np.array([pos[d] for d in dates])
    spx_close = spx["Close"].to_numpy(dtype=np.float64)
    ndq_close = ndq["Close"].to_numpy(dtype=np.float64)
    # Point in time: during day d the level is the VIX close of the session before, the last
    # one printed when d opens (the day's own close is not known until it ends).
    vix_close = vx["vix"].reindex(spx.index).shift(1).to_numpy(dtype=np.float64) / 100.0
    is_vix = ~np.isnan(vix_close)
    # The NASDAQ has no volatility index in the data: the VIX level times how much more the
    # NASDAQ moved than the S&P 500 over the last quarter (both up to the previous close).
    ratio = np.clip(
        _realised(ndq_close, _RATIO_WINDOW, _RATIO_WINDOW // 2)
        / _realised(spx_close, _RATIO_WINDOW, _RATIO_WINDOW // 2),
        _RATIO_MIN, _RATIO_MAX,
    )
    ndq_vix = np.where(is_vix & ~np.isnan(ratio), vix_close * ratio, np.nan)
    ndq_is_vix = ~np.isnan(ndq_vix)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=NEW_YORK)

    def bars(df: pd.DataFrame, close: np.ndarray, level: np.ndarray, flag: np.ndarray) -> _Index:
        opens = df["Open"].to_numpy(dtype=np.float64)
        return _Index(
            open=opens,
            high=df["High"].to_numpy(dtype=np.float64),
            low=df["Low"].to_numpy(dtype=np.float64),
            close=close,
            ref=np.concatenate((opens[:1], close[:-1])),
            level=np.where(flag, level, _proxy(close)),
            is_vix=flag,
        )

    return _History(
        dates=dates,
        index={d: i for i, d in enumerate(dates)},
        indices={
            "sp500": bars(spx, spx_close, vix_close, is_vix),
            "nasdaq": bars(ndq, ndq_close, ndq_vix, ndq_is_vix),
        },
        opens=cal_opens[take].copy(),
        closes=cal_closes[take].copy(),
        end_ns=_ns(end),
        sessions=frozenset(cal_days),
    )


def _bridge(rng: np.random.Generator, a: float, b: float, m: int, sd: float) -> np.ndarray:
    """A Brownian bridge from ``a`` to ``b`` in ``m`` steps: ``m + 1`` points, ends exact."""
    if m <= 0:
        return np.array([b])
    walk = np.concatenate(([0.0], np.cumsum(rng.standard_normal(m) * sd)))
    frac = np.arange(m + 1) / m
    return a + (b - a) * frac + walk - frac * walk[-1]


def _day_path(seed: int, day: date, o: float, h: float, lo: float, c: float, n: int) -> np.ndarray:
    """Index levels at minutes 0..n of a session of ``n`` minutes through O, H, L, C."""
    rng = np.random.default_rng([seed, day.toordinal()])
    travel_hl = (h - o) + (h - lo) + (c - lo)  # O -> H -> L -> C
    travel_lh = (o - lo) + (h - lo) + (h - c)  # O -> L -> H -> C
    p_high_first = travel_lh / (travel_hl + travel_lh) if travel_hl + travel_lh > 0 else 0.5
    high_first = rng.random() < p_high_first
    if n < 3:
        inner = [h, lo] if high_first else [lo, h]
        return np.clip(np.array([o, *inner, c][: n + 1]), lo, h)
    t1, t2 = np.sort(rng.choice(np.arange(1, n), size=2, replace=False))
    x1, x2 = (h, lo) if high_first else (lo, h)
    sd = _BRIDGE_SHARE * math.log(h / lo) / math.sqrt(n)
    logs = np.concatenate((
        _bridge(rng, math.log(o), math.log(x1), int(t1), sd),
        _bridge(rng, math.log(x1), math.log(x2), int(t2 - t1), sd)[1:],
        _bridge(rng, math.log(x2), math.log(c), int(n - t2), sd)[1:],
    ))
    # Fold (reflect) the path into [ln L, ln H]: continuous, no flat runs at the extremes.
    base, width = math.log(lo), math.log(h / lo)
    if width > 0.0:
        z = np.mod(logs - base, 2.0 * width)
        logs = base + np.where(z > width, 2.0 * width - z, z)
    path = np.clip(np.exp(logs), lo, h)  # only rounding is left to clip
    path[0], path[t1], path[t2], path[-1] = o, x1, x2, c
    return path


@dataclass(frozen=True, slots=True)
class _Bar:
    day: int
    minute: int
    level: float  # index level
    ns: int

    @property
    def time(self) -> datetime:
        return _from_ns(self.ns)


@dataclass(frozen=True, slots=True)
class _Priced:
    """Quotes of a list of contracts at one minute, as columns."""

    spot: float
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    delta: np.ndarray
    iv: np.ndarray
    time: datetime


@dataclass(frozen=True, slots=True)
class _Grid:
    """The listed contracts of one symbol for a set of expiries and a strike band, laid out
    expiry by expiry, puts then calls, strikes ascending: row ``(e * 2 + side) * n + k - lo``."""

    contracts: tuple[Contract, ...]
    position: dict[date, int]  # expiry -> e
    lo: int
    n: int
    step: float
    strike: np.ndarray
    is_call: np.ndarray
    expiry_at: np.ndarray  # e of each row
    sides: dict[tuple[date, Right], np.ndarray]  # row indices, strikes ascending

    def index(self, contract: Contract) -> int | None:
        e = self.position.get(contract.expiry)
        if e is None:
            return None
        k = round(contract.strike / self.step)
        if not 0 <= k - self.lo < self.n or abs(k * self.step - contract.strike) > 5e-4:
            return None
        i = (2 * e + (1 if contract.is_call else 0)) * self.n + k - self.lo
        return i if self.contracts[i] == contract else None


@dataclass(frozen=True, slots=True)
class _Surface:
    """One symbol's listed contracts at one minute, priced expiry by expiry as they are asked
    for: ``blocks[j]`` holds expiry ``j``'s rows (puts then calls, strikes ascending)."""

    grid: _Grid
    time: datetime
    spot: float
    years: list[float]  # years to each expiry
    blocks: dict[int, _Priced]

    def quote(self, i: int) -> Quote | None:
        """Row ``i`` of the grid as a Quote, if its expiry is priced."""
        width = 2 * self.grid.n
        block = self.blocks.get(i // width)
        if block is None:
            return None
        k = i % width
        return Quote(float(block.bid[k]), float(block.ask[k]), int(block.bid_size[k]),
                     int(block.ask_size[k]), self.time)


class HistoricalReplay:
    """S&P 500 history (1999-2018) replayed minute by minute as ``MarketData`` (module docs).

    ``symbols`` maps each root to the scale applied to the index level; ``indices`` names the
    index each root follows (``"sp500"``, the default, or ``"nasdaq"``); ``rate`` and
    ``dividend_yield`` (one for all symbols or per symbol) are continuously compounded annual
    rates; ``strike_step`` is the strike spacing in dollars, one for all symbols or per symbol;
    ``seed`` (>= 0) picks the intraday paths. ``atm_vix_ratio`` (in [0.5, 1.5]) is the 30-day
    at-the-money implied volatility over the VIX (1.0: ATM at the VIX, as before issue 24);
    ``spot_vol_beta`` (in [-15, 0]) is ``d ln(IV) / d ln(index)`` within the day (0: implied
    volatility frozen at the previous close all day). Defaults and sources: module docs.
    """

    def __init__(
        self,
        symbols: Mapping[str, float] | None = None,
        rate: float = 0.02,
        dividend_yield: float | Mapping[str, float] = 0.018,
        strike_step: float | Mapping[str, float] = 1.0,
        seed: int = 0,
        indices: Mapping[str, str] | None = None,
        atm_vix_ratio: float = ATM_VIX_RATIO,
        spot_vol_beta: float = SPOT_VOL_BETA,
    ) -> None:
        symbols = {"SPY": 0.1} if symbols is None else dict(symbols)
        if not symbols:
            raise DataError("HistoricalReplay needs at least one symbol")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise DataError(f"HistoricalReplay seed must be a non-negative integer, got {seed!r}")
        yields = (
            dict(dividend_yield) if isinstance(dividend_yield, Mapping)
            else dict.fromkeys(symbols, dividend_yield)
        )
        named = dict(indices or {})
        for symbol in [*yields, *named]:
            if symbol not in symbols:
                raise DataError(f"HistoricalReplay: {symbol!r} is not one of the symbols "
                                f"{sorted(symbols)}")
        checks = [("rate", rate)] + [(f"dividend_yield of {k}", v) for k, v in yields.items()]
        for name, value in checks:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value
            ):
                raise DataError(f"HistoricalReplay {name} must be a finite number, got {value!r}")
        for name, value, (lo, hi), what in (
            ("atm_vix_ratio", atm_vix_ratio, _RATIO_BOUNDS,
             "30-day ATM implied volatility / VIX"),
            ("spot_vol_beta", spot_vol_beta, _BETA_BOUNDS, "d ln(IV) / d ln(index)"),
        ):
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not (math.isfinite(value) and lo <= value <= hi)):
                raise DataError(f"HistoricalReplay {name} ({what}) must be a number in "
                                f"[{lo}, {hi}], got {value!r}")
        for symbol, index in named.items():
            if index not in INDICES:
                raise DataError(f"HistoricalReplay index of {symbol} must be one of {INDICES}, "
                                f"got {index!r}")
        steps = (
            dict(strike_step) if isinstance(strike_step, Mapping)
            else dict.fromkeys(symbols, strike_step)
        )
        for symbol, scale in symbols.items():
            if symbol not in yields:
                raise DataError(f"HistoricalReplay: no dividend_yield for {symbol}")
            try:
                Contract(symbol, date(2000, 1, 1), Right.CALL, 1.0)
            except DataError as exc:
                raise DataError(f"HistoricalReplay symbol {symbol!r}: {exc}") from None
            if (isinstance(scale, bool) or not isinstance(scale, int | float)
                    or not (math.isfinite(scale) and scale > 0)):
                raise DataError(f"HistoricalReplay scale of {symbol} must be > 0, got {scale!r}")
            step = steps.get(symbol)
            if (isinstance(step, bool) or not isinstance(step, int | float)
                    or not (math.isfinite(step) and step > 0)
                    or abs(step * 1000 - round(step * 1000)) > 1e-6):
                raise DataError(
                    f"HistoricalReplay strike_step of {symbol} must be > 0 and a multiple of "
                    f"0.001, got {step!r}"
                )
        self._symbols = {s: float(v) for s, v in symbols.items()}
        self._steps = {s: float(steps[s]) for s in symbols}
        self._rate = float(rate)
        self._qs = {s: float(yields[s]) for s in symbols}
        self._index_of = {s: named.get(s, "sp500") for s in symbols}
        self._seed = int(seed)
        self._ratio = float(atm_vix_ratio)
        self._beta = float(spot_vol_beta)
        self._h = _history()
        # Each day's 30-day ATM level at the previous close (the level the VIX close belongs
        # to): the VIX-based levels times the ratio; the realised proxy is an ATM level already.
        self._base = {name: np.where(x.is_vix, x.level * self._ratio, x.level)
                      for name, x in self._h.indices.items()}
        self._paths = _LRU(64)
        self._surfaces = _LRU(64)
        self._chains = _LRU(16)  # (symbol, now, min_dte, max_dte) -> OptionChain
        self._grids = _LRU(64)
        self._listed = _LRU(128)  # (symbol, expiry) -> {(right, k): Contract}
        self._listing = _LRU(8)  # day -> ((expiry, its 16:00 close), ...)
        self._singles = _LRU(4096)  # (contract, day, minute) -> Quote, without a surface
        # symbol -> (minute, contracts quoted in it, contracts quoted in the minute before)
        self._asked: dict[str, tuple[tuple[int, int], dict, dict]] = {}
        self._lock = threading.RLock()
        self._memo_at: datetime | None = None  # the instant ``_memo`` holds quotes of
        self._memo: dict[Contract, Quote] = {}
        self._last_bar: tuple[str, datetime, _Bar] | None = None  # the last ``_bar`` answer

    def __reduce__(self):
        return (
            HistoricalReplay,
            (self._symbols, self._rate, self._qs, self._steps, self._seed, self._index_of,
             self._ratio, self._beta),
        )

    # -- public API ---------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def dividend_yield(self) -> float:
        """The first symbol's dividend yield (``dividend_yields`` has every symbol's)."""
        return next(iter(self._qs.values()))

    @property
    def dividend_yields(self) -> dict[str, float]:
        return dict(self._qs)

    @property
    def indices(self) -> dict[str, str]:
        """The index each symbol follows."""
        return dict(self._index_of)

    @property
    def atm_vix_ratio(self) -> float:
        """30-day at-the-money implied volatility over the VIX (module docs)."""
        return self._ratio

    @property
    def spot_vol_beta(self) -> float:
        """``d ln(implied volatility) / d ln(index)`` within the day (module docs)."""
        return self._beta

    @property
    def first_day(self) -> date:
        return self._h.dates[0]

    @property
    def last_day(self) -> date:
        return self._h.dates[-1]

    @property
    def days(self) -> tuple[date, ...]:
        """Every trading day of the data, in order."""
        return self._h.dates

    def iv_source(self, day: date, symbol: str | None = None) -> IvSource:
        """``"vix"`` if ``day``'s 30-day ATM level of ``symbol`` (default: the first symbol)
        comes from the VIX close, else ``"realised_proxy"``."""
        symbol = next(iter(self._symbols)) if symbol is None else symbol
        self._scale(symbol)
        data = self._h.indices[self._index_of[symbol]]
        return "vix" if data.is_vix[self._day_index(day)] else "realised_proxy"

    def day_path(self, symbol: str, day: date) -> np.ndarray:
        """``symbol``'s prices at minutes 0 (the open) .. n (the close) of trading day ``day``."""
        scale = self._scale(symbol)
        with self._lock:
            return np.round(self._path(self._index_of[symbol], self._day_index(day)) * scale,
                            2)

    def atm_iv(self, symbol: str, now: datetime) -> float:
        """The 30-day at-the-money (strike = forward) implied volatility at ``now``, annualised:
        the day's level at the previous close (``atm_vix_ratio`` x the previous VIX close / 100,
        or the realised proxy) moved by ``spot_vol_beta`` with the index since that close, at
        the minute bar of ``now`` (module docs). The level the whole surface is built on."""
        self._scale(symbol)
        with self._lock:
            return self._atm(self._index_of[symbol], self._bar(symbol, now))

    def vix(self, now: datetime, symbol: str | None = None) -> float:
        """A VIX computed from the replay's own listed chain of ``symbol`` (default SPY, else
        the first symbol) at ``now`` by the Cboe method (``thetadesk.volatility_index``), in
        volatility points (18.0 is 18%): what the surface says the VIX is, to check it against
        the VIX the data gives."""
        from thetadesk.volatility_index import volatility_index

        if symbol is None:
            symbol = "SPY" if "SPY" in self._symbols else next(iter(self._symbols))
        return volatility_index(self.chain(symbol, now))

    def is_open(self, now: datetime) -> bool:
        """True during one of the replayed regular sessions (what the paper broker fills in)."""
        ns = _ns(now)
        h = self._h
        i = int(np.searchsorted(h.opens, ns, side="right")) - 1
        return 0 <= i < len(h.closes) and ns < int(h.closes[i])

    def spot(self, symbol: str, now: datetime) -> float:
        scale = self._scale(symbol)
        with self._lock:
            return round(self._bar(symbol, now).level * scale, 2)

    def quote(self, contract: Contract, now: datetime) -> Quote:
        """One contract's quote at ``now``, the same as its row in ``chain``; contracts off
        the listed grid are priced on the same surface."""
        if not isinstance(contract, Contract):
            raise DataError(f"quote needs a Contract, got {contract!r}")
        self._scale(contract.underlying)
        with self._lock:
            # The same contract asked again at the same instant (the account's exits, the
            # broker's marks, the risk gate's): the answer it had.
            if now != self._memo_at:
                self._memo_at, self._memo = now, {}
            q = self._memo.get(contract)
            if q is None:
                q = self._memo[contract] = self._quote(contract, now)
            return q

    def _quote(self, contract: Contract, now: datetime) -> Quote:
        """``quote`` without the per-instant memo (under the lock)."""
        bar = self._bar(contract.underlying, now)
        if expiry_instant(contract.expiry) <= now:
            raise DataError(f"{contract} expired at {expiry_instant(contract.expiry)}")
        # A minute whose whole surface is not priced yet (positions marked between two
        # chain reads) prices only this contract, together with the contracts quoted in the
        # minute before (the same marks, asked again), in one call: the same arithmetic,
        # element by element, so the quotes equal the surface's.
        symbol, minute = contract.underlying, (bar.day, bar.minute)
        asked = self._asked.get(symbol)
        if asked is None or asked[0] != minute:
            asked = (minute, {}, {} if asked is None else asked[1])
            self._asked[symbol] = asked
        asked[1][contract] = None
        s = self._surfaces.get((symbol, *minute))
        i = None if s is None else s.grid.index(contract)
        q = None if i is None else s.quote(i)
        if q is not None:
            return q
        q = self._singles.get((contract, *minute))
        if q is None:
            batch = tuple(dict.fromkeys(
                [contract, *(c for c in asked[2] if expiry_instant(c.expiry) > now)]))
            priced = self._price(symbol, bar, *contract_arrays(batch, bar.time))
            bid, ask = priced.bid.tolist(), priced.ask.tolist()
            bid_size, ask_size = priced.bid_size.tolist(), priced.ask_size.tolist()
            for i, c in enumerate(batch):
                one = Quote(bid[i], ask[i], bid_size[i], ask_size[i], priced.time)
                self._singles.put((c, *minute), one)
            q = self._singles.get((contract, *minute))
        return q

    def chain(
        self, symbol: str, now: datetime, min_dte: int | None = None, max_dte: int | None = None
    ) -> OptionChain:
        """The listed options on ``symbol`` at ``now`` with model deltas and IVs; only the
        expiries with ``min_dte <= DTE <= max_dte`` when given."""
        self._scale(symbol)
        with self._lock:
            bar = self._bar(symbol, now)
            key = (symbol, _ns(now), min_dte, max_dte)
            chain = self._chains.get(key)
            if chain is not None:
                return chain
            s = self._surface(symbol, bar)
            today = now.astimezone(NEW_YORK).date()
            lo = -math.inf if min_dte is None else min_dte
            hi = math.inf if max_dte is None else max_dte
            g = s.grid
            wanted = [(e, j) for e, j in g.position.items() if lo <= (e - today).days <= hi]
            self._fill(symbol, bar, s, [j for _, j in wanted])
            n = g.n
            put, call = np.arange(n), np.arange(n, 2 * n)
            sides = {}
            for at, (e, _) in enumerate(wanted):
                sides[(e, Right.PUT)] = put + 2 * n * at
                sides[(e, Right.CALL)] = call + 2 * n * at
            blocks = [s.blocks[j] for _, j in wanted]
            if len(blocks) == 1:
                j = wanted[0][1]
                contracts = g.contracts[2 * n * j:2 * n * (j + 1)]
                b = blocks[0]
                cols = (b.bid, b.ask, b.bid_size, b.ask_size, b.delta, b.iv)
            else:
                js = [j for _, j in wanted]
                contracts = (g.contracts if js == list(range(len(g.position))) else
                             tuple(c for j in js for c in g.contracts[2 * n * j:2 * n * (j + 1)]))
                cols = tuple(
                    np.concatenate([getattr(b, f) for b in blocks]) if blocks else np.empty(0)
                    for f in ("bid", "ask", "bid_size", "ask_size", "delta", "iv"))
            bid, ask, bid_size, ask_size, delta, iv = cols
            chain = OptionChain.from_columns(
                symbol, s.spot, now, contracts, sides, bid=bid, ask=ask, bid_size=bid_size,
                ask_size=ask_size, ts=s.time, delta=delta, iv=iv, rate=self._rate,
                dividend_yield=self._qs[symbol],
            )
            self._chains.put(key, chain)
            return chain

    # -- internals ----------------------------------------------------------------------------

    def _scale(self, symbol: str) -> float:
        scale = self._symbols.get(symbol)
        if scale is None:
            raise DataError(f"unknown symbol {symbol!r}: the replay has {sorted(self._symbols)}")
        return scale

    def _range(self) -> str:
        return f"{self._h.dates[0]} 09:30 to {self._h.dates[-1]} (New York)"

    def _day_index(self, day: date) -> int:
        if isinstance(day, datetime) or not isinstance(day, date):
            raise DataError(f"expected a date, got {day!r}")
        i = self._h.index.get(day)
        if i is None:
            raise DataError(
                f"{day} is not a trading day of the S&P 500 data ({self._h.dates[0]} to "
                f"{self._h.dates[-1]})"
            )
        return i

    def _path(self, index: str, i: int) -> np.ndarray:
        path = self._paths.get((index, i))
        if path is None:
            h = self._h
            x = h.indices[index]
            n = int((h.closes[i] - h.opens[i]) // _MINUTE_NS)
            # The same seed for every index: their minute-to-minute noise is shared, so the
            # symbols move together within the day as the indices do.
            path = _day_path(self._seed, h.dates[i], x.open[i], x.high[i], x.low[i],
                             x.close[i], n)
            path.setflags(write=False)
            self._paths.put((index, i), path)
        return path

    def _atm(self, index: str, bar: _Bar) -> float:
        """The 30-day ATM level at ``bar``: the day's base times the move of the index since the
        previous close raised to ``spot_vol_beta`` (bounded); uses the path up to ``bar`` only."""
        base = float(self._base[index][bar.day])
        if self._beta == 0.0:
            return base
        ref = float(self._h.indices[index].ref[bar.day])
        move = math.exp(self._beta * math.log(bar.level / ref))
        return base * min(max(move, _MOVE_MIN), _MOVE_MAX)

    def _bar(self, symbol: str, now: datetime) -> _Bar:
        last = self._last_bar
        if last is not None and last[0] == symbol and last[1] == now:
            return last[2]
        bar = self._find_bar(symbol, now)
        self._last_bar = (symbol, now, bar)
        return bar

    def _find_bar(self, symbol: str, now: datetime) -> _Bar:
        ns = _ns(now)
        h = self._h
        i = int(np.searchsorted(h.opens, ns, side="right")) - 1
        if i < 0 or ns >= h.end_ns:
            raise DataError(f"{now} is outside the replayed data ({self._range()})")
        path = self._path(self._index_of[symbol], i)
        n = len(path) - 1
        if ns >= int(h.closes[i]):
            return _Bar(i, n, float(path[n]), int(h.closes[i]))
        minute = int((ns - int(h.opens[i])) // _MINUTE_NS)
        return _Bar(i, minute, float(path[minute]), int(h.opens[i]) + minute * _MINUTE_NS)

    def _expiries(self, bar: _Bar) -> tuple[date, ...]:
        listed = self._listing.get(bar.day)
        if listed is None:
            today = self._h.dates[bar.day]
            friday = today + timedelta(days=(4 - today.weekday()) % 7)
            found: set[date] = set()
            while (friday - today).days <= _MONTHLY_DAYS:
                third = 15 <= friday.day <= 21
                if (friday - today).days <= _WEEKLY_DAYS or third:
                    expiry = friday
                    while expiry not in self._h.sessions:
                        expiry -= timedelta(days=1)
                    if expiry >= today:
                        found.add(expiry)
                friday += timedelta(days=7)
            listed = tuple((e, expiry_instant(e)) for e in sorted(found))
            self._listing.put(bar.day, listed)
        at = bar.time
        return tuple(e for e, close in listed if close > at)

    def _grid(self, symbol: str, expiries: tuple[date, ...], lo: int, hi: int) -> _Grid:
        key = (symbol, expiries, lo, hi)
        grid = self._grids.get(key)
        if grid is None:
            step = self._steps[symbol]
            n = hi - lo + 1
            contracts: list[Contract] = []
            for expiry in expiries:
                listed = self._listed.get((symbol, expiry))
                if listed is None:
                    listed = {}
                    self._listed.put((symbol, expiry), listed)
                for right in (Right.PUT, Right.CALL):
                    for k in range(lo, hi + 1):
                        c = listed.get((right, k))
                        if c is None:
                            c = listed[(right, k)] = Contract(symbol, expiry, right,
                                                              round(k * step, 3))
                        contracts.append(c)
            m = len(expiries)
            strike = np.array([c.strike for c in contracts], dtype=np.float64)
            is_call = np.tile(np.repeat(np.array([False, True]), n), m)
            sides = {
                (e, right): np.arange((2 * j + side) * n, (2 * j + side + 1) * n)
                for j, e in enumerate(expiries)
                for side, right in enumerate((Right.PUT, Right.CALL))
            }
            grid = _Grid(tuple(contracts), {e: j for j, e in enumerate(expiries)}, lo, n, step,
                         strike, is_call, np.repeat(np.arange(m), 2 * n), sides)
            self._grids.put(key, grid)
        return grid

    def _surface(self, symbol: str, bar: _Bar) -> _Surface:
        key = (symbol, bar.day, bar.minute)
        s = self._surfaces.get(key)
        if s is None:
            scale = self._symbols[symbol]
            spot = round(bar.level * scale, 2)
            step = self._steps[symbol]
            x = self._h.indices[self._index_of[symbol]]
            listed_at = round((x.close[bar.day - 1] if bar.day > 0 else x.open[0]) * scale, 2)
            lo = max(math.ceil(_STRIKE_LOW * listed_at / step - 1e-9), 1)
            hi = math.floor(_STRIKE_HIGH * listed_at / step + 1e-9)
            expiries = self._expiries(bar)
            grid = self._grid(symbol, expiries, lo, hi)
            s = _Surface(grid, bar.time, spot,
                         [(expiry_instant(e) - bar.time) / _YEAR for e in expiries], {})
            self._surfaces.put(key, s)
        return s

    def _fill(self, symbol: str, bar: _Bar, s: _Surface, expiries: list[int]) -> None:
        """Price the expiries (positions in the grid) of ``s`` not priced yet, in one call."""
        todo = [j for j in expiries if j not in s.blocks]
        if not todo:
            return
        g = s.grid
        width = 2 * g.n
        strike = g.strike[:width]  # every expiry lists the same strikes
        K = np.tile(strike, len(todo))
        T = np.repeat(np.array([s.years[j] for j in todo]), width)
        p = self._price(symbol, bar, K, T, np.tile(g.is_call[:width], len(todo)))
        for at, j in enumerate(todo):
            cut = slice(at * width, (at + 1) * width)
            s.blocks[j] = _Priced(p.spot, p.bid[cut], p.ask[cut], p.bid_size[cut],
                                  p.ask_size[cut], p.delta[cut], p.iv[cut], p.time)

    def _price(self, symbol: str, bar: _Bar, K: np.ndarray, T: np.ndarray,
               is_call: np.ndarray) -> _Priced:
        spot = round(bar.level * self._symbols[symbol], 2)
        q = self._qs[symbol]
        atm30 = self._atm(self._index_of[symbol], bar)
        n = len(K)
        K = np.ascontiguousarray(K, dtype=np.float64)
        T = np.ascontiguousarray(T, dtype=np.float64)
        x, iv = np.empty(n), np.empty(n)
        _surface_iv(spot, K, T, self._rate, q, atm30, x, iv)
        g = bsm_greeks(spot, K, T, self._rate, iv, q, is_call)
        bid, ask = np.empty(n), np.empty(n)
        bid_size, ask_size = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        _surface_quotes(np.atleast_1d(g.price), x, iv, T, bid, ask, bid_size, ask_size)
        return _Priced(
            spot=spot,
            bid=np.round(bid * _TICK, 2),
            ask=np.round(ask * _TICK, 2),
            bid_size=bid_size,
            ask_size=ask_size,
            delta=np.atleast_1d(g.delta).astype(np.float64),
            iv=iv,
            time=bar.time,
        )


@_jit
def _surface_iv(spot, K, T, rate, q, atm30, x, iv):  # pragma: no cover - compiled
    """Log-moneyness ``x = ln(K / F)`` and the surface's implied volatility of each contract
    (module docs: a mean-reverting ATM term structure with a quadratic smile in ``x``)."""
    phi30 = -math.expm1(-_KAPPA * _T30) / (_KAPPA * _T30)
    skew = min(max(_SKEW_ABS / atm30, _SKEW_MIN), _SKEW_MAX)
    floor = (0.5 * atm30) ** 2
    for i in range(K.size):
        t_i = T[i]
        x_i = math.log(K[i] / (spot * math.exp((rate - q) * t_i)))
        t = max(t_i, _T_MIN)
        phi = -math.expm1(-_KAPPA * t) / (_KAPPA * t)
        var = _LONG_RUN_VAR + (atm30 * atm30 - _LONG_RUN_VAR) * phi / phi30
        atm = math.sqrt(max(var, floor))
        skew_t = skew * (_T30 / max(t_i, _SKEW_T_MIN)) ** _SKEW_POWER
        v = atm * (1.0 - skew_t * x_i + _CURVATURE * skew_t * x_i * x_i)
        x[i] = x_i
        iv[i] = min(max(v, _IV_MIN), _IV_MAX)


@_jit
def _surface_quotes(price, x, iv, T, bid, ask, bid_size, ask_size):  # pragma: no cover
    """Bid and ask in ticks around each model price, and displayed sizes (module docs)."""
    for i in range(price.size):
        z = abs(x[i]) / (iv[i] * math.sqrt(max(T[i], _T_MIN)))
        half = (_HALF_FIXED + _HALF_SHARE * price[i]) * (1.0 + _HALF_WING * min(z, _Z_CAP))
        b = max(math.floor((price[i] - half) / _TICK + 1e-6), 0.0)
        a = max(math.ceil((price[i] + half) / _TICK - 1e-6), b + 1.0)
        size = np.rint(10.0 + 490.0 * math.exp(-8.0 * abs(x[i])))
        bid[i] = b
        ask[i] = a
        ask_size[i] = int(size)
        bid_size[i] = int(size) if b > 0.0 else 0


# -------------------------------------------------------------------------------------------
# Users' own data

_BAR_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
_QUOTE_COLUMNS = ("timestamp", "occ_symbol", "bid", "ask", "bid_size", "ask_size")
_OPTIONAL_QUOTE_COLUMNS = ("iv", "delta")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_ROOT = re.compile(r"^[A-Z0-9]{1,6}$")


def _where(path: Path, row: int, column: str) -> str:
    line = f" (line {row + 1})" if path.suffix.lower() == ".csv" else ""
    return f"{path}: row {row}{line}, column {column!r}"


def _read(path: Path, text_columns: tuple[str, ...]) -> pd.DataFrame:
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=dict.fromkeys(text_columns, str),
                               keep_default_na=True)
        if suffix in (".parquet", ".pq"):
            try:
                return pd.read_parquet(path)
            except ImportError as exc:
                raise DataError(
                    f"{path}: reading Parquet needs the 'pyarrow' package (pip install "
                    f"pyarrow), or save the data as CSV ({exc})"
                ) from None
            except (OSError, ValueError) as exc:  # a corrupt or truncated Parquet file
                raise DataError(f"{path}: unreadable Parquet file: {exc}") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable: {exc}") from None
    raise DataError(f"{path}: unknown file type {suffix!r}; expected .csv or .parquet")


def _require(df: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; expected {list(columns)}"
        )


def _timestamps(df: pd.DataFrame, path: Path) -> np.ndarray:
    """The ``timestamp`` column as UTC nanoseconds; rejects missing, naive or bad values."""
    col = df["timestamp"]
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        bad = col.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise DataError(f"{_where(path, row, 'timestamp')}: missing value")
        return col.dt.tz_convert(UTC).dt.as_unit("ns").astype("int64").to_numpy()
    if pd.api.types.is_datetime64_dtype(col.dtype):
        raise DataError(
            f"{_where(path, 1, 'timestamp')}: naive timestamps (no time zone); store them "
            "timezone-aware or as ISO-8601 strings with an offset"
        )
    text = col.astype("string").str.strip()
    missing = (text.isna() | (text == "")).to_numpy(dtype=bool)
    if missing.any():
        row = int(np.flatnonzero(missing)[0]) + 1
        raise DataError(f"{_where(path, row, 'timestamp')}: missing value")
    naive = ~text.str.contains(_OFFSET).to_numpy(dtype=bool)
    if naive.any():
        row = int(np.flatnonzero(naive)[0]) + 1
        raise DataError(
            f"{_where(path, row, 'timestamp')}: naive timestamp {text.iloc[row - 1]!r}; give a "
            "UTC offset (2024-01-02T09:31:00-05:00) or Z"
        )
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy(dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise DataError(
            f"{_where(path, row, 'timestamp')}: not an ISO-8601 timestamp: "
            f"{text.iloc[row - 1]!r}"
        )
    return parsed.dt.as_unit("ns").astype("int64").to_numpy()


def _numbers(df: pd.DataFrame, path: Path, column: str, allow_nan: bool = False) -> np.ndarray:
    col = df[column]
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if allow_nan:
        bad &= col.notna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raw = col.iloc[row - 1]
        what = "missing value (NaN)" if pd.isna(raw) else f"not a finite number: {raw!r}"
        raise DataError(f"{_where(path, row, column)}: {what}")
    return values


def _text(df: pd.DataFrame, path: Path, column: str) -> list[str]:
    values = df[column].tolist()
    for i, value in enumerate(values, start=1):
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{_where(path, i, column)}: missing value")
    return [v.strip() for v in values]


def _check_order(path: Path, keys: list[str], ts: np.ndarray, key_column: str) -> None:
    """Duplicated (key, timestamp) pairs, then timestamps going backwards within a key."""
    last: dict[str, tuple[int, int]] = {}
    for i, (key, t) in enumerate(zip(keys, ts.tolist(), strict=True), start=1):
        prev = last.get(key)
        if prev is not None:
            if t == prev[0]:
                raise DataError(
                    f"{_where(path, i, 'timestamp')}: duplicated row: {key_column} {key} "
                    f"already has timestamp {_from_ns(t).isoformat()} (row {prev[1]})"
                )
            if t < prev[0]:
                raise DataError(
                    f"{_where(path, i, 'timestamp')}: timestamps not sorted for {key}: "
                    f"{_from_ns(t).isoformat()} comes after {_from_ns(prev[0]).isoformat()} "
                    f"(row {prev[1]})"
                )
        last[key] = (t, i)


@dataclass(frozen=True, slots=True)
class _Series:
    ns: np.ndarray
    close: np.ndarray


@dataclass(frozen=True, slots=True)
class _QuoteSeries:
    ns: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    iv: np.ndarray
    delta: np.ndarray


class UserDataReplay:
    """Users' bars and option quotes (format in the module docs) replayed as ``MarketData``.

    Build it with ``from_files``. ``rate`` and ``dividend_yield`` are passed to the chains for
    the deltas they compute where the file gives none.
    """

    def __init__(
        self,
        bars: Mapping[str, _Series],
        quotes: Mapping[Contract, _QuoteSeries],
        rate: float = 0.0,
        dividend_yield: float = 0.0,
        max_quote_age: timedelta = timedelta(minutes=15),
    ) -> None:
        self._bars = dict(bars)
        self._quotes = dict(quotes)
        self._by_symbol: dict[str, list[Contract]] = {}
        for contract in sorted(self._quotes, key=lambda c: (c.expiry, c.right, c.strike)):
            self._by_symbol.setdefault(contract.underlying, []).append(contract)
        self._rate = float(rate)
        self._q = float(dividend_yield)
        self._max_age_ns = int(max_quote_age / timedelta(microseconds=1)) * 1000

    @classmethod
    def from_files(
        cls,
        bars: Path,
        quotes: Path | None = None,
        *,
        rate: float = 0.0,
        dividend_yield: float = 0.0,
        max_quote_age: timedelta = timedelta(minutes=15),
    ) -> UserDataReplay:
        """Read and validate the files; DataError names the file, row and column at fault."""
        bars = Path(bars)
        df = _read(bars, ("timestamp", "symbol"))
        _require(df, bars, _BAR_COLUMNS)
        ts = _timestamps(df, bars)
        symbols = _text(df, bars, "symbol")
        for i, symbol in enumerate(symbols, start=1):
            if not _ROOT.match(symbol):
                raise DataError(
                    f"{_where(bars, i, 'symbol')}: {symbol!r} is not 1-6 upper-case letters "
                    "or digits"
                )
        cols = {c: _numbers(df, bars, c) for c in ("open", "high", "low", "close", "volume")}
        _check_order(bars, symbols, ts, "symbol")
        o, h, lo, c = cols["open"], cols["high"], cols["low"], cols["close"]
        checks = (
            ("high", h < lo, "high {h} < low {lo}"),
            ("low", lo <= 0, "prices must be > 0 (low {lo})"),
            ("open", (o < lo) | (o > h), "open {o} outside [low {lo}, high {h}]"),
            ("close", (c < lo) | (c > h), "close {c} outside [low {lo}, high {h}]"),
            ("volume", cols["volume"] < 0, "negative volume {v}"),
        )
        for column, bad, message in checks:
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{_where(bars, k + 1, column)}: "
                    + message.format(h=h[k], lo=lo[k], o=o[k], c=c[k], v=cols["volume"][k])
                )
        series: dict[str, _Series] = {}
        sym = np.array(symbols)
        for symbol in dict.fromkeys(symbols):
            mask = sym == symbol
            series[symbol] = _Series(ts[mask].copy(), c[mask].copy())
        quote_series: dict[Contract, _QuoteSeries] = {}
        if quotes is not None:
            quote_series = _load_quotes(Path(quotes))
        return cls(series, quote_series, rate, dividend_yield, max_quote_age)

    @property
    def symbols(self) -> list[str]:
        return sorted(self._bars)

    def is_open(self, now: datetime) -> bool:
        """Whether ``now`` is inside a regular NYSE session (early closes respected), as the
        paper broker asks before it fills."""
        from thetadesk.clock import MarketCalendar

        return MarketCalendar().is_open(now)

    def spot(self, symbol: str, now: datetime) -> float:
        """The close of ``symbol``'s last bar with timestamp <= ``now``."""
        s = self._series(symbol)
        ns = _ns(now)
        i = int(np.searchsorted(s.ns, ns, side="right")) - 1
        if i < 0 or ns > int(s.ns[-1]) + 24 * 3600 * 1_000_000_000:
            raise DataError(
                f"{now} is outside the bars of {symbol} ({_from_ns(int(s.ns[0])).isoformat()} "
                f"to {_from_ns(int(s.ns[-1])).isoformat()}, plus one day)"
            )
        return float(s.close[i])

    def quote(self, contract: Contract, now: datetime) -> Quote:
        """The contract's last quote at or before ``now``; DataError if none, stale or expired."""
        if not isinstance(contract, Contract):
            raise DataError(f"quote needs a Contract, got {contract!r}")
        ns = _ns(now)
        if expiry_instant(contract.expiry) <= now:
            raise DataError(f"{contract} expired at {expiry_instant(contract.expiry)}")
        q = self._quotes.get(contract)
        if q is None:
            raise DataError(f"no quotes for {contract} in the user data")
        i = int(np.searchsorted(q.ns, ns, side="right")) - 1
        if i < 0:
            raise DataError(
                f"no quote for {contract} at or before {now}; the first is at "
                f"{_from_ns(int(q.ns[0])).isoformat()}"
            )
        if ns - int(q.ns[i]) > self._max_age_ns:
            raise DataError(
                f"stale quote for {contract}: last at {_from_ns(int(q.ns[i])).isoformat()}, "
                f"older than {self._max_age_ns // 60_000_000_000} minutes at {now}"
            )
        return Quote(float(q.bid[i]), float(q.ask[i]), int(q.bid_size[i]), int(q.ask_size[i]),
                     _from_ns(int(q.ns[i])))

    def chain(
        self, symbol: str, now: datetime, min_dte: int | None = None, max_dte: int | None = None
    ) -> OptionChain:
        """Every unexpired contract of ``symbol`` with a fresh quote at ``now`` (within the DTE
        window when given); stale or missing quotes are left out and counted in a log line."""
        spot = self.spot(symbol, now)
        ns = _ns(now)
        today = now.astimezone(NEW_YORK).date()
        lo = -math.inf if min_dte is None else min_dte
        hi = math.inf if max_dte is None else max_dte
        rows: list[OptionQuote] = []
        skipped = 0
        for contract in self._by_symbol.get(symbol, []):
            if not lo <= (contract.expiry - today).days <= hi:
                continue
            if expiry_instant(contract.expiry) <= now:
                continue
            q = self._quotes[contract]
            i = int(np.searchsorted(q.ns, ns, side="right")) - 1
            if i < 0 or ns - int(q.ns[i]) > self._max_age_ns:
                skipped += 1
                continue
            rows.append(OptionQuote(
                contract,
                Quote(float(q.bid[i]), float(q.ask[i]), int(q.bid_size[i]), int(q.ask_size[i]),
                      _from_ns(int(q.ns[i]))),
                delta=None if math.isnan(q.delta[i]) else float(q.delta[i]),
                iv=None if math.isnan(q.iv[i]) else float(q.iv[i]),
            ))
        if skipped:
            structlog.get_logger("replay").info(
                "quotes_skipped", symbol=symbol, count=skipped, reason="missing or stale"
            )
        return OptionChain(symbol, spot, now, rows, rate=self._rate, dividend_yield=self._q)

    def _series(self, symbol: str) -> _Series:
        s = self._bars.get(symbol)
        if s is None:
            raise DataError(f"unknown symbol {symbol!r}: the bars file has {sorted(self._bars)}")
        return s


def _load_quotes(path: Path) -> dict[Contract, _QuoteSeries]:
    df = _read(path, ("timestamp", "occ_symbol"))
    _require(df, path, _QUOTE_COLUMNS)
    ts = _timestamps(df, path)
    occ = _text(df, path, "occ_symbol")
    contracts: list[Contract] = []
    parsed: dict[str, Contract] = {}
    for i, symbol in enumerate(occ, start=1):
        contract = parsed.get(symbol)
        if contract is None:
            try:
                contract = Contract.from_occ(symbol)
            except DataError as exc:
                raise DataError(f"{_where(path, i, 'occ_symbol')}: {exc}") from None
            parsed[symbol] = contract
        contracts.append(contract)
    cols = {c: _numbers(df, path, c) for c in ("bid", "ask", "bid_size", "ask_size")}
    for c in _OPTIONAL_QUOTE_COLUMNS:
        cols[c] = (_numbers(df, path, c, allow_nan=True) if c in df.columns
                   else np.full(len(df), np.nan))
    keys = [c.occ for c in contracts]
    _check_order(path, keys, ts, "occ_symbol")
    bid, ask = cols["bid"], cols["ask"]
    for column in ("bid", "ask"):
        bad = cols[column] < 0
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(f"{_where(path, k + 1, column)}: negative price {cols[column][k]}")
    for column in ("bid_size", "ask_size"):
        v = cols[column]
        bad = (v < 0) | (v != np.round(v))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(f"{_where(path, k + 1, column)}: must be an integer >= 0, got {v[k]}")
    crossed = bid > ask
    if crossed.any():
        k = int(np.flatnonzero(crossed)[0])
        raise DataError(
            f"{_where(path, k + 1, 'bid')}: crossed quote for {keys[k]}: bid {bid[k]} > ask "
            f"{ask[k]}"
        )
    out: dict[Contract, _QuoteSeries] = {}
    key_array = np.array(keys)
    for contract in dict.fromkeys(contracts):
        m = key_array == contract.occ
        out[contract] = _QuoteSeries(
            ts[m].copy(), bid[m].copy(), ask[m].copy(),
            cols["bid_size"][m].astype(np.int64), cols["ask_size"][m].astype(np.int64),
            cols["iv"][m].copy(), cols["delta"][m].copy(),
        )
    return out
