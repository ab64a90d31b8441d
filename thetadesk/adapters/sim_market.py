"""A simulated market: underlying prices and option chains, deterministic in (seed, symbol, time).

The market is a pure function of its constructor arguments and the instant asked about. Any
process that builds ``SimMarket`` with the same arguments gets the same spot prices, chains,
quotes and trade prints for the same ``now``, whatever it asked before: the caches below only
remember answers, they never change them. That is what lets every actor (and the backtester)
hold its own copy.

The market, session by session from ``start`` (NYSE sessions from ``exchange_calendars``, so
holidays are skipped and early closes are honoured):

- A regime, calm / normal / stressed, follows a sticky Markov chain over sessions (a market jump
  makes the next session stressed half the time). It scales realised volatility (x0.75 / 1 /
  1.7), the market jump probability, the put skew, the term slope of implied volatility (which
  inverts in stress), the volatility risk premium, bid-ask spreads and option volume.
- The regime, the market jump and the common factor come from
  ``np.random.default_rng([seed, MARKET, day, ...])``; a symbol's own draws from
  ``np.random.default_rng([seed, crc32(symbol), day])``. A symbol's shocks are
  ``sqrt(rho) * common + sqrt(1 - rho) * own`` (``correlation`` rho, 0.85 by default), so its
  path never depends on which other symbols are configured.

The underlying, per symbol: a GJR-GARCH(1,1)-like variance ``h`` on daily log returns (rising
more after down days: the leverage effect), standardised by the regime multiplier and reverting
to the symbol's base ``vol`` squared; the day's variance is ``h`` times the squared regime
multiplier (and a constant that brings the long-run average back to ``vol``). A day opens at the
previous close times an overnight gap (20% of the day's variance, plus a market jump of
N(-2.5, 1) x 1.5 base daily volatilities on jump days, which feeds the regime, not GARCH), then
moves in one-minute Student-t (5 dof) returns (50%) plus a negatively skewed (exponential) drift
shock spread over the session (30%): daily returns are fat-tailed and negatively skewed, and
volatility clusters. Day 0 opens at ``spot``.

Scheduled shocks (``shocks``, a scenario such as a crash): on a ``SimShock`` session every symbol
opens at the previous close times the usual overnight gap times ``1 + gap`` (exactly that
factor; the day draws no random market jump), the regime is stressed, and the GARCH variance and
its implied copy start the day multiplied by ``vol_multiplier`` squared (within the variance
cap). The shock feeds the regime and implied volatility, not GARCH's reaction to the move.
Sessions before the first shock are bit-identical to a market without shocks.

Prices: ``spot(symbol, now)`` is the price of the one-minute bar at or before ``now`` during a
session (rounded to $0.01) and the last close outside sessions. Before the first session the
price is the symbol's starting ``spot``.

Options (``chain``, ``quote``, ``atm_iv``, ``vix``): listed expiries are every session for two
weeks (roots in ``daily_expiries``, SPY and QQQ by default), the Fridays up to 70 calendar days
and the third Fridays up to 120 days after the bar's New York date (a holiday Friday expires the
session before); a listed expiry stays listed until it expires, so held contracts keep their
quotes. Strikes lie on the symbol's ``strike_step`` grid from 75% to 115% of spot. Prices are
Black-Scholes-Merton (European, ``rate`` and the symbol's ``dividend_yield``, continuously
compounded) on an implied volatility surface: the ATM level starts from a lagged copy of the
GARCH variance (half way per day: right after a shock IV sits below what is then realised) times
the regime multiplier, reverts to the base variance over the term, plus the regime's volatility
risk premium (IV above realised on average) and term slope; put skew in log-moneyness against the
forward, steeper in stress. ``vix(now)`` is a 30-day variance-swap level of SPY's surface.
Quotes are on a $0.01 tick with a half-spread that grows with the price, with the distance from
the money in standard deviations and in stress (cheap options are relatively wider); very cheap
options bid 0. Rows carry open interest (fixed for the session) and the session's volume so far,
both concentrated near the money and at round strikes. ``trades`` draws prints per half-hour
bucket in proportion to volume.

VIX options (``vix_options=True``): the market also lists ``VIX``, the index (``spot("VIX", now)``
is ``vix(now)`` rounded to the cent) and its monthly options (``chain("VIX", ...)``, ``quote``),
by the Cboe rules and the forward model of ``thetadesk.vix``: the next six monthly expiries (the
Wednesday 30 days before the following month's third Friday, holidays moved), expiring at 09:30
New York on the expiry date (AM-settled: the paper broker cash-settles them against the VIX of
that opening minute); strikes on the VIX grid from half to three times each expiry's forward
(``F = L + (V - L) exp(-6 T)``, L the VIX of this market at its base variance in the normal
regime); Black-76 prices on F at an implied volatility of 90% at 30 days when V = L, rising
with the VIX and above the money, falling with maturity; rows carry the Black-76 delta
against F. Quotes are on Cboe's premium ticks ($0.05 below $3, $0.10 from $3) with a
half-spread of $0.02 plus 1.5% of the price, times the regime's spread multiplier; open
interest and volume are concentrated near the money and at round strikes. There are no VIX
trade prints, minute paths or ``atm_iv``. Off by default: without it ``VIX`` is an unknown
symbol, as in a market that lists no VIX options. With ``whole_expiries=False`` a VIX quote
prices its contract alone and the VIX integral runs in pieces small enough for a process
without numba (the same bits, slower: about 12 ms per minute bar).

Times are timezone-aware; time to expiry runs to 16:00 New York on the expiry date (09:30 for
VIX options) in years of 365 days (as in ``thetadesk.chain``). Quotes and chains are as of the
minute bar, so every call within one bar gets the same prices.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import warnings
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
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
from thetadesk.pricing import INTERPRETED_MAX_ELEMENTS, bsm_greeks
from thetadesk.vix import VIX_ROOT, atm_vol, smile, strike_grid, tick, vix_expiries
from thetadesk.vix import forward as vix_forward

__all__ = [
    "REGIMES", "CorruptHook", "OptionTrade", "SimMarket", "SimRegimes", "SimShock", "SimSymbol",
]

CorruptHook = Callable[[Contract, datetime], str | None]
"""Test hook: given a contract and ``now``, return ``"nan"`` (NaN bid), ``"crossed"`` (bid above
the ask) or ``"negative"`` (bid below 0) to make that contract's quote bad, or None."""

_YEAR = timedelta(days=365)
_TRADING_DAYS = 252
_MINUTES_PER_DAY = 390  # a full 09:30-16:00 session

# Path dynamics (GJR-GARCH(1,1) on daily returns standardised by the regime; variances annualised).
_ALPHA, _GAMMA, _BETA = 0.04, 0.10, 0.88  # persistence alpha + gamma/2 + beta = 0.97
_OMEGA_SHARE = 1.0 - _ALPHA - 0.5 * _GAMMA - _BETA  # omega = share * base variance
_OVERNIGHT_SHARE = 0.2  # of a day's variance that arrives as the opening gap
_TREND_SHARE = 0.3  # of a day's variance that arrives as a skewed drift spread over the session
_TREND_GAMMA_K = 1.0  # the trend shock is -(Gamma(k) - k) / sqrt(k): skewness -2 / sqrt(k)
_T_DOF = 5.0
_JUMP_MEAN, _JUMP_SD = -2.5, 1.0  # a market jump: an opening gap of N(-2.5, 1) daily std devs
_JUMP_VOL = 1.5  # a jump's standard deviation unit: 1.5 x the base daily volatility
_VAR_FLOOR, _VAR_CAP = 0.25**2, 3.0**2  # h stays within [0.25, 3] x base vol, squared
_DEFAULT_CORRELATION = 0.85
_GARCH_CLIP = 4.0  # standardised daily moves beyond 4 sd feed the variance as 4 sd

# Regimes: a Markov chain over sessions, shared by every symbol (drawn from the market stream).
CALM, NORMAL, STRESSED = 0, 1, 2
REGIMES = ("calm", "normal", "stressed")
_TRANSITION = np.array([
    [0.980, 0.020, 0.000],
    [0.015, 0.975, 0.010],
    [0.000, 0.040, 0.960],
])
_STATIONARY = np.array([0.375, 0.5, 0.125])
_STRESS_AFTER_JUMP = 0.5  # chance that a market jump day is followed by a stressed session
_REGIME_VOL = np.array([0.75, 1.00, 1.70])  # x the GARCH volatility
_REGIME_JUMP = np.array([0.004, 0.012, 0.04])  # market jump probability per session
_REGIME_SKEW = np.array([0.80, 1.00, 1.50])  # x the put skew
_REGIME_TERM = np.array([0.05, 0.03, -0.07])  # term slope of ATM IV: inverted in stress
_REGIME_VRP = np.array([0.30, 0.25, 0.20])  # implied over forecast volatility
_REGIME_SPREAD = np.array([0.8, 1.0, 2.2])  # x the half-spread
_REGIME_VOLUME = np.array([0.8, 1.0, 1.8])  # x the option volume
# Scale so that the long-run variance (regimes and jumps included) is about the base variance;
# 0.93 takes back the extra variance GARCH convexity and the trend shocks add (measured).
_VOL_SCALE = 0.93 / math.sqrt(
    float(_STATIONARY @ _REGIME_VOL**2)
    + float(_STATIONARY @ _REGIME_JUMP) * (_JUMP_MEAN**2 + _JUMP_SD**2) * _JUMP_VOL**2
)
_IV_LAG = 0.5  # the IV variance moves this share of the way to the realised forecast per day

# Implied volatility surface.
_KAPPA = -math.log(0.97) * _TRADING_DAYS  # variance mean reversion per year, from persistence
_SKEW = 1.0  # iv = atm * (1 - skew_T * x + curvature * x^2), x = ln(K / F)
_CURVATURE = 1.0
_T30 = 30.0 / 365.0
_T_MIN = 1.0 / 365.0  # surface parameters stop changing below one day to expiry
_IV_MIN, _IV_MAX = 0.05, 2.0

# Listing and quoting.
_MAX_LISTED_DAYS = 70  # weekly Fridays
_DAILY_LISTED_DAYS = 14  # every session, for the daily-expiry symbols
_MONTHLY_LISTED_DAYS = 120  # third Fridays
_DAILY_SYMBOLS = frozenset({"SPY", "QQQ"})
_STRIKE_LOW, _STRIKE_HIGH = 0.75, 1.15  # x spot
_TICK = 0.01
_SPREAD_BASE, _SPREAD_SHARE, _SPREAD_DISTANCE = 0.005, 0.004, 0.003
_OI_BASE, _VOLUME_BASE = 4000.0, 2500.0

# Trade prints.
_TRADE_BUCKET_MINUTES = 30
_MEAN_TRADE_SIZE = 12.0
_EXCHANGES = ("CBOE", "C2", "PHLX", "ISE", "AMEX", "ARCA", "BOX", "MIAX", "NASDAQ", "BZX", "EDGX")
_MARKET_STREAM = 0x4D4B54  # "MKT": the common factor, jumps and regimes
_TRADE_STREAM = 0x545244  # "TRD"

# Calendar table: sessions from the year before ``start`` to 30 years after it; the last year
# is kept back so that the 120-day expiry listing always has sessions to fall back on.
_CALENDAR_YEARS = 30


@dataclass(frozen=True, slots=True)
class OptionTrade:
    """One simulated option print: ``price`` per share, ``size`` in contracts, ``aggressor``
    "buy" (the offer was lifted) or "sell" (the bid was hit); about one print in ten between a
    wider quote prints at the mid, with the aggressor the side that initiated it."""

    contract: Contract
    time: datetime
    price: float
    size: int
    aggressor: str
    exchange: str


@dataclass(frozen=True, slots=True)
class SimSymbol:
    """One simulated underlying.

    ``spot`` is the price at the start (per share), ``vol`` the annualised base volatility the
    GARCH variance reverts to (0.18 is 18%), ``dividend_yield`` a continuously compounded annual
    rate, ``strike_step`` the listed strike spacing in dollars (5.0 for SPY here), ``drift`` the
    annualised expected log-return of the price path.
    """

    spot: float
    vol: float
    dividend_yield: float = 0.0
    strike_step: float = 1.0
    drift: float = 0.05

    def __post_init__(self) -> None:
        for name in ("spot", "vol", "dividend_yield", "strike_step", "drift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DataError(f"SimSymbol.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise DataError(f"SimSymbol.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.spot <= 0:
            raise DataError(f"SimSymbol.spot must be > 0, got {self.spot!r}")
        if not 0.0 < self.vol <= 3.0:
            raise DataError(f"SimSymbol.vol must be in (0, 3] (annualised), got {self.vol!r}")
        milli = self.strike_step * 1000.0
        if self.strike_step <= 0 or abs(milli - round(milli)) > 1e-6:
            raise DataError(
                f"SimSymbol.strike_step must be > 0 and a multiple of 0.001, got "
                f"{self.strike_step!r}"
            )


@dataclass(frozen=True, slots=True)
class SimRegimes:
    """The regime and market-jump parameters of ``SimMarket``; the defaults are the module's.

    Per-regime triples are (calm, normal, stressed). ``transition[i][j]`` is the chance that a
    session in regime i is followed by one in regime j (rows sum to 1; the first session's regime
    is drawn from the chain's stationary distribution). ``vol`` scales realised volatility,
    ``jump_probability`` is the chance of a market jump per session, ``skew`` scales the put
    skew, ``term_slope`` is the ATM IV slope per unit of ln(T / 30 days) (negative: inverted),
    ``vrp`` the implied-over-forecast volatility premium (0.25 = 25% above), ``spread`` and
    ``volume`` scale option half-spreads and volume. A jump is an opening gap of
    N(``jump_mean``, ``jump_sd``) units (capped at -0.5 units: jumps are down moves) of
    ``jump_vol`` base daily volatilities; ``stress_after_jump`` is the chance that the session
    after a jump is stressed.
    """

    transition: tuple[tuple[float, ...], ...] = tuple(
        tuple(row) for row in _TRANSITION.tolist())
    vol: tuple[float, ...] = tuple(_REGIME_VOL.tolist())
    jump_probability: tuple[float, ...] = tuple(_REGIME_JUMP.tolist())
    skew: tuple[float, ...] = tuple(_REGIME_SKEW.tolist())
    term_slope: tuple[float, ...] = tuple(_REGIME_TERM.tolist())
    vrp: tuple[float, ...] = tuple(_REGIME_VRP.tolist())
    spread: tuple[float, ...] = tuple(_REGIME_SPREAD.tolist())
    volume: tuple[float, ...] = tuple(_REGIME_VOLUME.tolist())
    stress_after_jump: float = _STRESS_AFTER_JUMP
    jump_mean: float = _JUMP_MEAN
    jump_sd: float = _JUMP_SD
    jump_vol: float = _JUMP_VOL

    def __post_init__(self) -> None:
        def number(name: str, value: object) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
                raise DataError(f"SimRegimes.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise DataError(f"SimRegimes.{name} must be finite, got {value!r}")
            return float(value)

        def triple(name: str, value: object) -> tuple[float, ...]:
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise DataError(f"SimRegimes.{name} must be 3 numbers, got {value!r}")
            out = tuple(number(name, v) for v in value)
            if len(out) != len(REGIMES):
                raise DataError(f"SimRegimes.{name} must be 3 numbers (calm, normal, "
                                f"stressed), got {value!r}")
            return out

        if isinstance(self.transition, str) or not isinstance(self.transition, Iterable):
            raise DataError(f"SimRegimes.transition must be 3 rows, got {self.transition!r}")
        rows = tuple(triple("transition", row) for row in self.transition)
        if len(rows) != len(REGIMES):
            raise DataError(f"SimRegimes.transition must be 3 rows, got {self.transition!r}")
        for row in rows:
            if min(row) < 0.0 or abs(sum(row) - 1.0) > 1e-9:
                raise DataError(f"SimRegimes.transition rows must be >= 0 and sum to 1, "
                                f"got {row!r}")
        object.__setattr__(self, "transition", rows)
        for name in ("vol", "jump_probability", "skew", "term_slope", "vrp", "spread", "volume"):
            object.__setattr__(self, name, triple(name, getattr(self, name)))
        for name in ("stress_after_jump", "jump_mean", "jump_sd", "jump_vol"):
            object.__setattr__(self, name, number(name, getattr(self, name)))
        for name in ("vol", "spread", "volume"):
            if min(getattr(self, name)) <= 0.0:
                raise DataError(f"SimRegimes.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("jump_probability", "skew"):
            if min(getattr(self, name)) < 0.0:
                raise DataError(f"SimRegimes.{name} must be >= 0, got {getattr(self, name)!r}")
        if max(self.jump_probability) > 1.0 or not 0.0 <= self.stress_after_jump <= 1.0:
            raise DataError("SimRegimes jump_probability and stress_after_jump must be in [0, 1]")
        if min(self.vrp) <= -1.0:
            raise DataError(f"SimRegimes.vrp must be > -1, got {self.vrp!r}")
        if self.jump_sd < 0.0 or self.jump_vol < 0.0:
            raise DataError("SimRegimes jump_sd and jump_vol must be >= 0")


_DEFAULT_REGIMES = SimRegimes()


@dataclass(frozen=True, slots=True)
class SimShock:
    """A scheduled market-wide shock: on ``session`` (a New York session date) every symbol opens
    ``gap`` away from its previous close on top of the usual overnight gap (-0.10 is a 10% gap
    down; in (-0.5, 0.5)), in the stressed regime, with its variance multiplied by
    ``vol_multiplier`` squared (1 leaves it; in [1, 5])."""

    session: date
    gap: float
    vol_multiplier: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.session, date) or isinstance(self.session, datetime):
            raise DataError(f"SimShock.session must be a date, got {self.session!r}")
        for name in ("gap", "vol_multiplier"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int | float | np.floating)
                    or not math.isfinite(value)):
                raise DataError(f"SimShock.{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not -0.5 < self.gap < 0.5:
            raise DataError(f"SimShock.gap must be in (-0.5, 0.5) (a fraction of the price), "
                            f"got {self.gap!r}")
        if not 1.0 <= self.vol_multiplier <= 5.0:
            raise DataError(f"SimShock.vol_multiplier must be in [1, 5], got "
                            f"{self.vol_multiplier!r}")


def _stationary(transition: np.ndarray) -> np.ndarray:
    """A stationary distribution of a Markov transition matrix (rows sum to 1)."""
    n = transition.shape[0]
    a = np.vstack([transition.T - np.eye(n), np.ones(n)])
    b = np.zeros(n + 1)
    b[-1] = 1.0
    pi = np.clip(np.linalg.lstsq(a, b, rcond=None)[0], 0.0, None)
    return pi / pi.sum()


@dataclass(frozen=True, slots=True)
class _Sessions:
    """NYSE sessions as UTC nanoseconds since the epoch, and their New York dates."""

    dates: tuple[date, ...]
    opens: np.ndarray
    closes: np.ndarray
    minutes: np.ndarray
    session_set: frozenset[date]


@functools.lru_cache(maxsize=8)
def _nyse_sessions(first: date, last: date) -> _Sessions:
    import exchange_calendars as xc

    with warnings.catch_warnings():
        # exchange_calendars trips pandas deprecation warnings while it builds its schedule.
        warnings.simplefilter("ignore")
        cal = xc.get_calendar("XNYS", start=first.isoformat(), end=last.isoformat())
        dates = tuple(ts.date() for ts in cal.sessions)
        opens = np.asarray(cal.opens_nanos, dtype=np.int64).copy()
        closes = np.asarray(cal.closes_nanos, dtype=np.int64).copy()
    return _Sessions(
        dates=dates,
        opens=opens,
        closes=closes,
        minutes=(closes - opens) // _MINUTE_NS,
        session_set=frozenset(dates),
    )


class _Path:
    """The simulated days of one symbol so far: day d's minute prices, GARCH state, prior close.

    ``h[d]`` is the GARCH variance (reverting to the base variance) for day d before the regime
    multiplier; ``iv[d]`` its lagged copy that implied volatility starts day d from.
    """

    __slots__ = ("crc", "h", "iv", "jump", "prev_close", "prices")

    def __init__(self, symbol: str, spec: SimSymbol) -> None:
        self.crc = zlib.crc32(symbol.encode("ascii"))
        self.prices: list[np.ndarray] = []  # day d: minute 0 (open) .. n (close)
        self.h: list[float] = [spec.vol**2]
        self.iv: list[float] = [spec.vol**2]
        self.prev_close: list[float] = [spec.spot]  # prev_close[d]: the close before day d
        self.jump: list[float] = []  # jump[d]: day d's market jump, a log return (0.0 if none)


class _Market:
    """The market-wide draws, day by day: regime, jump size (0 if none), common-factor seeds."""

    __slots__ = ("jumps", "regimes")

    def __init__(self) -> None:
        self.regimes: list[int] = []
        self.jumps: list[float] = []


@dataclass(frozen=True, slots=True)
class _Bar:
    """One minute bar of one symbol: price, instantaneous variance forecast, bar time (ns)."""

    day: int  # -1 before the first session
    minute: int
    spot: float
    variance: float  # the realised-variance forecast (regime included)
    iv_variance: float  # the lagged level the implied volatility surface starts from
    regime: int
    ns: int

    @property
    def time(self) -> datetime:
        return _from_ns(self.ns)


@dataclass(slots=True)
class _Group:
    """One listed expiry of one symbol priced at one bar, as parallel lists."""

    contracts: tuple[Contract, ...]
    bid: list[float]
    ask: list[float]
    bid_size: list[int]
    ask_size: list[int]
    delta: list[float]
    iv: list[float]
    open_interest: list[int]
    volume: list[int]
    rows: tuple[OptionQuote, ...] | None = None
    quotes: list[Quote | None] | None = None  # checked quotes, built on first use
    columns: tuple[np.ndarray, ...] | None = None  # the lists as arrays, built on first use

    def arrays(self) -> tuple[np.ndarray, ...]:
        """bid, ask, bid_size, ask_size, delta, iv, open_interest, volume as arrays."""
        if self.columns is None:
            self.columns = (
                np.array(self.bid, dtype=np.float64), np.array(self.ask, dtype=np.float64),
                np.array(self.bid_size, dtype=np.int64), np.array(self.ask_size, dtype=np.int64),
                np.array(self.delta, dtype=np.float64), np.array(self.iv, dtype=np.float64),
                np.array(self.open_interest, dtype=np.int64),
                np.array(self.volume, dtype=np.int64),
            )
        return self.columns


@dataclass(slots=True)
class _Surface:
    """The listed contracts of one symbol at one bar; an expiry's grid is built and priced on
    first use (strikes ``lo .. hi`` times the strike step)."""

    symbol: str
    bar: _Bar
    expiries: tuple[date, ...]
    lo: int
    hi: int
    grid: dict[date, tuple[tuple[Contract, ...], dict[Contract, int]]]
    groups: dict[date, _Group]
    singles: dict[Contract, _Group] = field(default_factory=dict)  # priced one by one


def _splitmix(x: np.ndarray) -> np.ndarray:
    """A vectorised 64-bit mix (splitmix64 finaliser) for per-contract deterministic noise."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def _unit_noise(*keys: np.ndarray | int) -> np.ndarray:
    """Uniform (0, 1) numbers, one per element, a deterministic function of the keys."""
    acc = np.zeros(np.broadcast(*[np.asarray(k) for k in keys]).shape, dtype=np.uint64)
    for k in keys:
        with np.errstate(over="ignore"):
            acc = _splitmix(acc ^ np.asarray(k).astype(np.int64).astype(np.uint64))
    return ((acc >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


class SimMarket:
    """A deterministic simulated market implementing the ``MarketData`` port.

    ``seed`` is a non-negative integer; ``symbols`` maps roots (e.g. ``"SPY"``) to their
    ``SimSymbol``; ``rate`` is the continuously compounded annual risk-free rate; ``start`` is the
    first calendar day of the simulation (its first session opens at each symbol's ``spot``).
    ``corrupt`` is a test hook (see ``CorruptHook``) that makes chosen quotes bad so that the
    rejection path can be exercised end to end. ``correlation`` (keyword) is the correlation of
    any two symbols' returns through the common market factor; ``daily_expiries`` (keyword) the
    roots that list an expiry every session for the next two weeks; ``regimes`` (keyword) the
    regime and market-jump parameters (``SimRegimes``; None for the defaults); ``shocks``
    (keyword) the scheduled ``SimShock`` sessions, each a session after the first one.
    ``whole_expiries`` (keyword, default True): a quote prices its whole expiry at that bar,
    which the chains of the same bar then reuse; False prices only the contracts quoted, for a
    process that quotes a few contracts and reads no chains (an account's paper broker and
    marks). Both answer the same bits; False keeps numba out of such a process
    (``thetadesk.pricing`` runs a few elements as Python). ``vix_options`` (keyword, default
    False): also list the VIX index and its options (see the module doc).
    """

    def __init__(
        self,
        seed: int,
        symbols: Mapping[str, SimSymbol],
        rate: float,
        start: date,
        corrupt: CorruptHook | None = None,
        *,
        correlation: float = _DEFAULT_CORRELATION,
        daily_expiries: Iterable[str] = _DAILY_SYMBOLS,
        regimes: SimRegimes | None = None,
        shocks: Iterable[SimShock] = (),
        whole_expiries: bool = True,
        vix_options: bool = False,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise DataError(f"SimMarket seed must be a non-negative integer, got {seed!r}")
        if not isinstance(start, date) or isinstance(start, datetime):
            raise DataError(f"SimMarket start must be a date, got {start!r}")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
            raise DataError(f"SimMarket rate must be a finite number, got {rate!r}")
        if (isinstance(correlation, bool) or not isinstance(correlation, int | float)
                or not 0.0 <= correlation <= 1.0):
            raise DataError(f"SimMarket correlation must be in [0, 1], got {correlation!r}")
        if isinstance(daily_expiries, str):
            raise DataError(f"SimMarket daily_expiries must be a collection of roots, got "
                            f"{daily_expiries!r}")
        if not symbols:
            raise DataError("SimMarket needs at least one symbol")
        for symbol, spec in symbols.items():
            try:
                Contract(symbol, start, Right.CALL, 1.0)  # the root rules of option contracts
            except DataError as exc:
                raise DataError(f"SimMarket symbol {symbol!r}: {exc}") from None
            if not isinstance(spec, SimSymbol):
                raise DataError(f"SimMarket symbol {symbol!r} needs a SimSymbol, got {spec!r}")
        if not isinstance(whole_expiries, bool):
            raise DataError(f"SimMarket whole_expiries must be True or False, got "
                            f"{whole_expiries!r}")
        if not isinstance(vix_options, bool):
            raise DataError(f"SimMarket vix_options must be True or False, got {vix_options!r}")
        if vix_options and VIX_ROOT in symbols:
            raise DataError(f"SimMarket symbol {VIX_ROOT!r} is the volatility index its VIX "
                            "options are on: it cannot also be a simulated underlying")
        if corrupt is not None and not callable(corrupt):
            raise DataError(f"SimMarket corrupt hook must be callable, got {corrupt!r}")
        if regimes is None:
            regimes = _DEFAULT_REGIMES
        elif not isinstance(regimes, SimRegimes):
            raise DataError(f"SimMarket regimes must be a SimRegimes, got {regimes!r}")
        self._seed = int(seed)
        self._symbols = dict(symbols)
        self._rate = float(rate)
        self._start = start
        self._corrupt = corrupt
        self._correlation = float(correlation)
        self._daily = frozenset(daily_expiries)
        self._whole_expiries = whole_expiries
        self._vix_options = vix_options
        self._vix_memo: dict[tuple[int, int], float] = {}
        self._vix_long: float | None = None
        # The regime tables as arrays; with the defaults they equal the module constants, so
        # the market is bit-identical to one built without ``regimes``.
        self._regimes = regimes
        self._transition = np.array(regimes.transition, dtype=np.float64)
        self._stationary = (_STATIONARY if regimes.transition == _DEFAULT_REGIMES.transition
                            else _stationary(self._transition))
        self._regime_vol = np.array(regimes.vol, dtype=np.float64)
        self._regime_jump = np.array(regimes.jump_probability, dtype=np.float64)
        self._regime_skew = np.array(regimes.skew, dtype=np.float64)
        self._regime_term = np.array(regimes.term_slope, dtype=np.float64)
        self._regime_vrp = np.array(regimes.vrp, dtype=np.float64)
        self._regime_spread = np.array(regimes.spread, dtype=np.float64)
        self._regime_volume = np.array(regimes.volume, dtype=np.float64)
        self._vol_scale = 0.93 / math.sqrt(  # as _VOL_SCALE, from these tables
            float(self._stationary @ self._regime_vol**2)
            + float(self._stationary @ self._regime_jump)
            * (regimes.jump_mean**2 + regimes.jump_sd**2) * regimes.jump_vol**2
        )
        self._cal = _nyse_sessions(
            date(start.year - 1, 1, 1), date(start.year + _CALENDAR_YEARS, 12, 31)
        )
        self._first = int(np.searchsorted(np.array(self._cal.dates), start))
        self._shocks = self._shock_days(shocks)
        # Queries must leave room for the 120-day listing inside the calendar table.
        self._last_ns = int(self._cal.closes[-1]) - 366 * 24 * 3600 * 1_000_000_000
        self._paths: dict[str, _Path] = {}
        self._market = _Market()
        self._surfaces = _LRU(64)
        self._grids = _LRU(256)
        self._lock = threading.RLock()

    def __reduce__(self):
        # Rebuild from the arguments: the market is a function of them, caches are not state.
        return (
            functools.partial(
                SimMarket, correlation=self._correlation, daily_expiries=tuple(sorted(self._daily)),
                regimes=self._regimes, shocks=tuple(self._shocks.values()),
                whole_expiries=self._whole_expiries, vix_options=self._vix_options,
            ),
            (self._seed, self._symbols, self._rate, self._start, self._corrupt),
        )

    def _shock_days(self, shocks: Iterable[SimShock]) -> dict[int, SimShock]:
        """The shocks by session index (day 0 is the first session), checked."""
        if isinstance(shocks, str | SimShock) or not isinstance(shocks, Iterable):
            raise DataError(f"SimMarket shocks must be a collection of SimShock, got {shocks!r}")
        dates = self._cal.dates
        days: dict[int, SimShock] = {}
        for shock in shocks:
            if not isinstance(shock, SimShock):
                raise DataError(f"SimMarket shocks must be SimShock values, got {shock!r}")
            if shock.session not in self._cal.session_set:
                raise DataError(f"SimMarket shock on {shock.session}: not an NYSE session")
            day = int(np.searchsorted(np.array(dates), shock.session)) - self._first
            if day <= 0:
                raise DataError(
                    f"SimMarket shock on {shock.session}: it must come after the first "
                    f"session ({dates[self._first]}), which opens at the starting spot")
            if day in days:
                raise DataError(f"SimMarket has two shocks on {shock.session}")
            days[day] = shock
        return dict(sorted(days.items()))

    # -- public API -----------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The continuously compounded annual risk-free rate."""
        return self._rate

    @property
    def symbols(self) -> Mapping[str, SimSymbol]:
        return dict(self._symbols)

    @property
    def correlation(self) -> float:
        return self._correlation

    def is_open(self, now: datetime) -> bool:
        """True during a regular NYSE session (09:30 to the close, 16:00 or an early close)."""
        ns = _ns(now)
        i = int(np.searchsorted(self._cal.opens, ns, side="right")) - 1
        return i >= 0 and ns < int(self._cal.closes[i])

    def spot(self, symbol: str, now: datetime) -> float:
        """The underlying's price per share at ``now``: the minute bar at or before ``now`` in a
        session, the last close outside sessions, the starting spot before the first session.
        ``"VIX"`` (with ``vix_options``): the VIX of that minute, rounded to the cent."""
        with self._lock:
            if symbol == VIX_ROOT and self._vix_options:
                return round(self._vix_at(self._bar(self._vix_source(), now)), 2)
            return self._bar(symbol, now).spot

    def day_path(self, symbol: str, day: date) -> np.ndarray:
        """``symbol``'s prices at minutes 0 (the open) .. n (the close) of session ``day``, as
        the minute bars quote them (rounded to the cent), like the replay's ``day_path``."""
        self._spec(symbol)  # an unknown symbol is a DataError
        dates = self._cal.dates
        i = bisect_left(dates, day)
        if i >= len(dates) or dates[i] != day:
            raise DataError(f"{day} is not a session of the simulated calendar")
        d = i - self._first
        if d < 0:
            raise DataError(f"{day} is before the simulation starts ({self._start})")
        with self._lock:
            return np.round(self._path(symbol, d).prices[d], 2)

    def regime(self, now: datetime) -> str:
        """The market regime of the session at (or last before) ``now``: "calm", "normal" or
        "stressed". The same for every symbol."""
        with self._lock:
            return REGIMES[self._bar(next(iter(self._symbols)), now).regime]

    def atm_iv(self, symbol: str, now: datetime) -> float:
        """The surface's 30-day at-the-money (strike = forward) implied volatility, annualised."""
        with self._lock:
            bar = self._bar(symbol, now)
            atm = self._atm_curve(self._symbols[symbol], bar, np.array([_T30]))
            return float(np.clip(atm, _IV_MIN, _IV_MAX)[0])

    def vix(self, now: datetime) -> float:
        """A VIX-like index in volatility points (18.0 is 18%): the 30-day variance-swap level
        of SPY's surface (of the first symbol's when SPY is not simulated), from out-of-the-money
        option prices integrated over strike as in the VIX white paper, on the model surface."""
        with self._lock:
            return self._vix_at(self._bar(self._vix_source(), now))

    def _vix_source(self) -> str:
        return "SPY" if "SPY" in self._symbols else next(iter(self._symbols))

    def _vix_at(self, bar: _Bar) -> float:
        """The VIX of the source symbol's ``bar`` (remembered per bar)."""
        key = (bar.day, bar.minute)
        level = self._vix_memo.get(key)
        if level is None:
            if len(self._vix_memo) >= 256:
                self._vix_memo.clear()
            level = self._vix_memo[key] = self._vix_of(self._symbols[self._vix_source()], bar)
        return level

    def _vix_of(self, spec: SimSymbol, bar: _Bar) -> float:
        T = _T30
        fwd = bar.spot * math.exp((self._rate - spec.dividend_yield) * T)
        atm = float(self._atm_curve(spec, bar, np.array([T]))[0])
        width = 8.0 * max(atm, 0.05) * math.sqrt(T)
        x = np.linspace(-width, 0.5 * width, 601)
        K = fwd * np.exp(x)
        Tv = np.full_like(K, T)
        iv = self._iv(spec, bar, K, Tv)
        is_call = K >= fwd
        if self._whole_expiries:
            price = np.atleast_1d(
                bsm_greeks(bar.spot, K, Tv, self._rate, iv, spec.dividend_yield, is_call).price)
        else:  # in pieces a process without numba runs as Python, with the same bits
            step = INTERPRETED_MAX_ELEMENTS
            price = np.concatenate([np.atleast_1d(bsm_greeks(
                bar.spot, K[i:i + step], Tv[i:i + step], self._rate, iv[i:i + step],
                spec.dividend_yield, is_call[i:i + step]).price) for i in range(0, len(K), step)])
        # sigma^2 = 2 e^{rT} / T * integral of Q(K) / K^2 dK, with dK = K dx.
        integrand = price / K
        area = float(np.sum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(x)))
        variance = 2.0 * math.exp(self._rate * T) / T * area
        return 100.0 * math.sqrt(max(variance, 0.0))

    def quote(self, contract: Contract, now: datetime) -> Quote:
        """The quote of one contract at ``now``, the same as its row in ``chain(...)``.

        Contracts not on the listed grid (an old strike, say) are priced on the same surface.
        Raises DataError for an unknown underlying, an expired contract, or a quote the
        ``corrupt`` hook made bad.
        """
        with self._lock:
            if not isinstance(contract, Contract):
                raise DataError(f"quote needs a Contract, got {contract!r}")
            if contract.underlying == VIX_ROOT and self._vix_options:
                return self._vix_quote(contract, now)
            bar = self._bar(contract.underlying, now)
            if expiry_instant(contract.expiry) <= now:
                raise DataError(f"{contract} expired at {expiry_instant(contract.expiry)}")
            surface = self._surface(contract.underlying, bar)
            group, i = None, None
            if contract.expiry in surface.expiries:
                i = self._listed(surface, contract.expiry)[1].get(contract)
                if i is not None and (self._whole_expiries or contract.expiry in surface.groups):
                    group = self._group(contract.underlying, surface, contract.expiry)
            if group is None:
                # Off the grid, or a market that prices only what it is asked for: the
                # contract alone, on the same surface (pricing is elementwise: the same bits
                # as its row in the whole expiry).
                group = surface.singles.get(contract)
                if group is None:
                    group = surface.singles[contract] = self._price(contract.underlying, bar,
                                                                    (contract,))
                i = 0
            verdict = self._corrupt(contract, now) if self._corrupt is not None else None
            if verdict is not None:
                return _corrupted(group.ask[i], verdict, bar.time)
            # The same bar's quote of a listed contract is asked for again and again (exits,
            # the broker's marks): build each (validated, immutable) Quote once per bar.
            if group.quotes is None:
                group.quotes = [None] * len(group.bid)
            quote = group.quotes[i]
            if quote is None:
                quote = group.quotes[i] = Quote(group.bid[i], group.ask[i], group.bid_size[i],
                                                group.ask_size[i], bar.time)
            return quote

    def chain(
        self, symbol: str, now: datetime, min_dte: int | None = None, max_dte: int | None = None
    ) -> OptionChain:
        """The listed options on ``symbol`` with quotes, model deltas and IVs, open interest and
        the session's volume so far at ``now``; only the expiries ``min_dte <= DTE <= max_dte``
        (calendar days from ``now``'s New York date) when those are given.

        Rows whose quote is bad (only the ``corrupt`` hook makes them) are left out and logged
        as ``quote_rejected`` on the ``sim_market`` logger.
        """
        with self._lock:
            if symbol == VIX_ROOT and self._vix_options:
                return self._vix_chain(now, min_dte, max_dte)
            bar = self._bar(symbol, now)
            surface = self._surface(symbol, bar)
            expiries: Iterable[date] = surface.expiries
            if min_dte is not None or max_dte is not None:
                today = now.astimezone(NEW_YORK).date()
                lo = -math.inf if min_dte is None else min_dte
                hi = math.inf if max_dte is None else max_dte
                expiries = [e for e in surface.expiries if lo <= (e - today).days <= hi]
            self._price_groups(symbol, surface, expiries)
            spec = self._symbols[symbol]
            if self._corrupt is None:
                return self._columnar(symbol, surface, list(expiries), now, bar.spot,
                                      spec.dividend_yield)
            rows: list[OptionQuote] = []
            for expiry in expiries:
                rows.extend(self._rows(symbol, surface, expiry))
            rows = self._screen(tuple(rows), now)
            return OptionChain(
                symbol, bar.spot, now, rows, rate=self._rate, dividend_yield=spec.dividend_yield
            )

    def _columnar(self, symbol: str, surface: _Surface, expiries: list[date], now: datetime,
                  spot: float, dividend_yield: float) -> OptionChain:
        """The chain of ``expiries`` as columns (rows are made only for what is read); each
        group is puts then calls, strikes ascending."""
        groups = [self._group(symbol, surface, e) for e in expiries]
        sides: dict[tuple[date, Right], np.ndarray] = {}
        at = 0
        for e, group in zip(expiries, groups, strict=True):
            half = len(group.contracts) // 2
            sides[(e, Right.PUT)] = np.arange(at, at + half)
            sides[(e, Right.CALL)] = np.arange(at + half, at + 2 * half)
            at += 2 * half
        if len(groups) == 1:
            contracts, cols = groups[0].contracts, groups[0].arrays()
        else:
            contracts = tuple(itertools.chain.from_iterable(g.contracts for g in groups))
            parts = [g.arrays() for g in groups]
            cols = tuple(np.concatenate([p[k] for p in parts]) if parts else np.empty(0)
                         for k in range(8))
        bid, ask, bid_size, ask_size, delta, iv, oi, volume = cols
        return OptionChain.from_columns(
            symbol, spot, now, contracts, sides, bid=bid, ask=ask, bid_size=bid_size,
            ask_size=ask_size, ts=surface.bar.time, delta=delta, iv=iv, open_interest=oi,
            volume=volume, rate=self._rate, dividend_yield=dividend_yield)

    def trades(self, symbol: str, start: datetime, end: datetime) -> list[OptionTrade]:
        """The simulated option prints on ``symbol`` with ``start <= time < end``, oldest first.

        Prints come in half-hour buckets of each session: a listed contract's expected number
        of prints in a bucket is its session volume over the mean print size, spread evenly over
        the session; the price is the bid or the ask (the aggressor's side) of the quote at the
        bucket's start, now and then the mid. A bucket's prints are a function of (seed, symbol,
        session, bucket) alone, so any window gives the same prints as a longer one cut down.
        """
        with self._lock:
            self._spec(symbol)
            s_ns, e_ns = _ns(start), _ns(end)
            if e_ns <= s_ns:
                return []
            cal = self._cal
            lo = max(int(np.searchsorted(cal.closes, s_ns, side="right")), self._first)
            hi = int(np.searchsorted(cal.opens, e_ns, side="left"))
            out: list[OptionTrade] = []
            bucket_ns = _TRADE_BUCKET_MINUTES * _MINUTE_NS
            for i in range(lo, hi):
                open_ns, close_ns = int(cal.opens[i]), int(cal.closes[i])
                for b_ns in range(open_ns, close_ns, bucket_ns):
                    if b_ns + bucket_ns <= s_ns or b_ns >= e_ns:
                        continue
                    for trade_ns, trade in self._bucket_trades(symbol, i, b_ns, close_ns):
                        if s_ns <= trade_ns < e_ns:
                            out.append(trade)
            return out

    # -- the underlying path ------------------------------------------------------------------

    def _spec(self, symbol: str) -> SimSymbol:
        spec = self._symbols.get(symbol)
        if spec is None:
            raise DataError(
                f"unknown symbol {symbol!r}: the simulated market has {sorted(self._symbols)}"
            )
        return spec

    def _bar(self, symbol: str, now: datetime) -> _Bar:
        """The minute bar at or before ``now``; remembered, since every quote asks for it."""
        memo = self.__dict__.get("_bar_memo")
        if memo is None:
            memo = self.__dict__["_bar_memo"] = {}
        key = (symbol, now)
        bar = memo.get(key)
        if bar is None:
            bar = self._new_bar(symbol, now)
            if len(memo) >= 256:
                memo.clear()
            memo[key] = bar
        return bar

    def _new_bar(self, symbol: str, now: datetime) -> _Bar:
        spec = self._spec(symbol)
        ns = _ns(now)
        cal = self._cal
        first_open = int(cal.opens[self._first])
        if ns < first_open:
            close_before = int(cal.closes[self._first - 1])
            if ns < close_before:
                raise DataError(
                    f"{now} is before the simulation starts ({self._start}, the last close "
                    f"before it is {_from_ns(close_before)})"
                )
            regime = self._market_day(0)[0]
            base = spec.vol**2
            variance = base * (self._regime_vol[regime] * self._vol_scale) ** 2
            return _Bar(-1, 0, round(spec.spot, 2), variance, variance, regime, close_before)
        if ns > self._last_ns:
            raise DataError(
                f"{now} is beyond the simulated calendar (it ends {_from_ns(self._last_ns)})"
            )
        i = int(np.searchsorted(cal.opens, ns, side="right")) - 1
        day = i - self._first
        n = int(cal.minutes[i])
        open_ns, close_ns = int(cal.opens[i]), int(cal.closes[i])
        if ns >= close_ns:
            minute, bar_ns = n, close_ns
        else:
            minute = (ns - open_ns) // _MINUTE_NS
            bar_ns = open_ns + minute * _MINUTE_NS
        path = self._path(symbol, day)
        price = float(path.prices[day][minute])
        regime = self._market.regimes[day]
        h = self._intraday_variance(spec, path, day, minute, n, price, regime)
        variance = h * (self._regime_vol[regime] * self._vol_scale) ** 2
        # The implied level follows the GARCH variance with a lag, the regime at once.
        lagged = path.iv[day] + _IV_LAG * (h - path.iv[day]) * (
            _OVERNIGHT_SHARE + (1.0 - _OVERNIGHT_SHARE) * minute / n
        )
        iv_variance = lagged * (self._regime_vol[regime] * self._vol_scale) ** 2
        return _Bar(day, minute, round(price, 2), variance, iv_variance, regime, bar_ns)

    def _market_day(self, day: int) -> tuple[int, float]:
        """The regime and the market jump (in daily standard deviations, 0.0 if none) of
        session ``day``; the chain of regimes is walked forward from day 0 once."""
        m = self._market
        while len(m.regimes) <= day:
            d = len(m.regimes)
            rng = np.random.default_rng([self._seed, _MARKET_STREAM, d, 1])
            u_regime, u_stress, u_jump, z_jump = rng.random(), rng.random(), rng.random(), (
                rng.standard_normal())
            if d == 0:
                regime = int(np.searchsorted(np.cumsum(self._stationary), u_regime))
            elif m.jumps[d - 1] != 0.0 and u_stress < self._regimes.stress_after_jump:
                regime = STRESSED
            else:
                row = np.cumsum(self._transition[m.regimes[d - 1]])
                regime = int(np.searchsorted(row, u_regime))
            regime = min(regime, STRESSED)
            jump = 0.0
            if d in self._shocks:  # the scheduled shock replaces the day's random jump
                regime = STRESSED
            elif d > 0 and u_jump < self._regime_jump[regime]:
                jump = min(self._regimes.jump_mean + self._regimes.jump_sd * z_jump, -0.5)
            m.regimes.append(regime)
            m.jumps.append(jump)
        return m.regimes[day], m.jumps[day]

    def _path(self, symbol: str, day: int) -> _Path:
        path = self._paths.get(symbol)
        if path is None:
            path = self._paths[symbol] = _Path(symbol, self._symbols[symbol])
        spec = self._symbols[symbol]
        while len(path.prices) <= day:
            self._simulate_day(spec, path, len(path.prices))
        return path

    def _simulate_day(self, spec: SimSymbol, path: _Path, day: int) -> None:
        n = int(self._cal.minutes[self._first + day])
        regime, jump = self._market_day(day)
        # The common factor: the same draws for every symbol on this day.
        common = np.random.default_rng([self._seed, _MARKET_STREAM, day, 2])
        own = np.random.default_rng([self._seed, path.crc, day])
        t_scale = math.sqrt((_T_DOF - 2.0) / _T_DOF)
        z_gap_m = common.standard_normal()
        shocks_m = common.standard_t(_T_DOF, size=n) * t_scale
        y_m = -(common.gamma(_TREND_GAMMA_K) - _TREND_GAMMA_K) / math.sqrt(_TREND_GAMMA_K)
        z_gap_i = own.standard_normal()
        shocks_i = own.standard_t(_T_DOF, size=n) * t_scale
        y_i = -(own.gamma(_TREND_GAMMA_K) - _TREND_GAMMA_K) / math.sqrt(_TREND_GAMMA_K)
        a = math.sqrt(self._correlation)
        b = math.sqrt(1.0 - self._correlation)
        shock = self._shocks.get(day)
        if shock is not None:  # the variance and its implied copy start the day shocked
            cap = _VAR_CAP * spec.vol**2
            path.h[day] = min(path.h[day] * shock.vol_multiplier**2, cap)
            path.iv[day] = min(path.iv[day] * shock.vol_multiplier**2, cap)
        h = path.h[day]
        variance = h * (self._regime_vol[regime] * self._vol_scale) ** 2
        prev_close = path.prev_close[day]
        daily_sd = math.sqrt(variance / _TRADING_DAYS)
        # Jumps scale with the base vol.
        jump_sd = self._regimes.jump_vol * spec.vol / math.sqrt(_TRADING_DAYS)
        gap = 0.0
        if day > 0:
            gap = math.sqrt(_OVERNIGHT_SHARE) * daily_sd * (a * z_gap_m + b * z_gap_i)
            gap += jump * jump_sd
        day_jump = jump * jump_sd if day > 0 else 0.0
        if shock is not None:
            day_jump = math.log1p(shock.gap)
            gap += day_jump
        path.jump.append(day_jump)
        minute_sd = daily_sd * math.sqrt(
            (1.0 - _OVERNIGHT_SHARE - _TREND_SHARE) / _MINUTES_PER_DAY
        )
        drift = (spec.drift - 0.5 * variance) / (_TRADING_DAYS * _MINUTES_PER_DAY)
        drift += math.sqrt(_TREND_SHARE) * daily_sd * (a * y_m + b * y_i) / _MINUTES_PER_DAY
        log_path = np.empty(n + 1)
        log_path[0] = math.log(prev_close) + gap
        np.cumsum(drift + minute_sd * (a * shocks_m + b * shocks_i), out=log_path[1:])
        log_path[1:] += log_path[0]
        prices = np.exp(log_path)
        close = float(prices[-1])
        path.prices.append(prices)
        path.prev_close.append(close)
        h_next = self._intraday_variance(spec, path, day, n, n, close, regime)
        path.h.append(h_next)
        path.iv.append(path.iv[day] + _IV_LAG * (h_next - path.iv[day]))

    def _intraday_variance(
        self, spec: SimSymbol, path: _Path, day: int, minute: int, n: int, price: float, regime: int
    ) -> float:
        """The GARCH variance (before the regime multiplier) updated with the day's move so far,
        standardised by the regime; equals h[day] at the previous close and h[day + 1] at the
        day's close."""
        h = path.h[day]
        base = spec.vol**2
        frac = _OVERNIGHT_SHARE + (1.0 - _OVERNIGHT_SHARE) * minute / n
        # Standardised by the regime; the market jump feeds the regime, not the GARCH variance.
        r = (math.log(price / path.prev_close[day]) - path.jump[day]) / (
            self._regime_vol[regime] * self._vol_scale)
        r = max(min(r, _GARCH_CLIP * math.sqrt(h / _TRADING_DAYS)),
                -_GARCH_CLIP * math.sqrt(h / _TRADING_DAYS))
        shock = (_ALPHA + (_GAMMA if r < 0.0 else 0.0)) * r * r * _TRADING_DAYS
        value = h + frac * (_OMEGA_SHARE * base + _BETA * h - h) + shock
        return min(max(value, _VAR_FLOOR * base), _VAR_CAP * base)

    # -- the option surface -------------------------------------------------------------------

    def _atm_curve(self, spec: SimSymbol, bar: _Bar, T: np.ndarray) -> np.ndarray:
        """ATM (strike = forward) implied vol, annualised, for times to expiry ``T`` in years:
        the (lagged) variance level expected over [0, T] reverting to the long-run base
        variance, plus the regime's volatility risk premium and term slope (inverted in stress).
        Not clipped."""
        t = np.maximum(T, _T_MIN)
        base = spec.vol**2
        kt = _KAPPA * t
        expected = base + (bar.iv_variance - base) * (-np.expm1(-kt) / kt)
        slope = self._regime_term[bar.regime]
        return (np.sqrt(expected) * (1.0 + self._regime_vrp[bar.regime])
                * (1.0 + slope * np.log(t / _T30)))

    def _iv(self, spec: SimSymbol, bar: _Bar, K: np.ndarray, T: np.ndarray,
            atm: np.ndarray | None = None) -> np.ndarray:
        """Implied vol per contract: ATM level (``_atm_curve`` at ``T``, if the caller has it)
        times put skew in x = ln(K / F), clipped."""
        if atm is None:
            atm = self._atm_curve(spec, bar, T)
        forward = bar.spot * np.exp((self._rate - spec.dividend_yield) * T)
        x = np.log(K / forward)
        skew = _SKEW * self._regime_skew[bar.regime] * (_T30 / np.maximum(T, _T_MIN)) ** 0.25
        return np.clip(atm * (1.0 - skew * x + _CURVATURE * x * x), _IV_MIN, _IV_MAX)

    def _session_on_or_before(self, d: date) -> date:
        while d not in self._cal.session_set:
            d -= timedelta(days=1)
        return d

    def _expiries(self, symbol: str, bar: _Bar) -> tuple[date, ...]:
        """Listed expiries: every session for two weeks (daily-expiry roots), Fridays to 70 days
        and third Fridays to 120 days; a holiday Friday expires the session before."""
        today = bar.time.astimezone(NEW_YORK).date()
        key = ("expiries", symbol, today)
        listed = self._grids.get(key)
        if listed is None:
            listed = self._listing(symbol, today)
            self._grids.put(key, listed)
        at = bar.time
        return tuple(e for e in listed if expiry_instant(e) > at)

    def _listing(self, symbol: str, today: date) -> tuple[date, ...]:
        """The expiries listed on New York date ``today``, expired or not, sorted."""
        found: set[date] = set()
        if symbol in self._daily:
            for k in range(_DAILY_LISTED_DAYS + 1):
                d = today + timedelta(days=k)
                if d in self._cal.session_set:
                    found.add(d)
        friday = today + timedelta(days=(4 - today.weekday()) % 7)
        while (friday - today).days <= _MONTHLY_LISTED_DAYS:
            if (friday - today).days <= _MAX_LISTED_DAYS or 15 <= friday.day <= 21:
                found.add(self._session_on_or_before(friday))
            friday += timedelta(days=7)
        return tuple(sorted(found))

    def _surface(self, symbol: str, bar: _Bar) -> _Surface:
        key = (symbol, bar.day, bar.minute)
        surface = self._surfaces.get(key)
        if surface is None:
            step = self._symbols[symbol].strike_step
            lo = max(math.ceil(_STRIKE_LOW * bar.spot / step - 1e-9), 1)
            hi = math.floor(_STRIKE_HIGH * bar.spot / step + 1e-9)
            surface = _Surface(symbol, bar, self._expiries(symbol, bar), lo, hi, {}, {})
            self._surfaces.put(key, surface)
        return surface

    def _listed(self, surface: _Surface, expiry: date,
                ) -> tuple[tuple[Contract, ...], dict[Contract, int]]:
        """The grid of one of ``surface``'s expiries (built on first use)."""
        grid = surface.grid.get(expiry)
        if grid is None:
            grid = surface.grid[expiry] = self._grid(surface.symbol, expiry, surface.lo,
                                                     surface.hi)
        return grid

    def _grid(
        self, symbol: str, expiry: date, lo: int, hi: int
    ) -> tuple[tuple[Contract, ...], dict[Contract, int]]:
        """One expiry's listed contracts (puts then calls, strikes ascending) and their index;
        cached, since the grid only changes when spot crosses a strike."""
        key = (symbol, expiry, lo, hi)
        grid = self._grids.get(key)
        if grid is None:
            step = self._symbols[symbol].strike_step
            strikes = [round(i * step, 3) for i in range(lo, hi + 1)]
            contracts = tuple(
                Contract(symbol, expiry, right, strike)
                for right in (Right.PUT, Right.CALL)
                for strike in strikes
            )
            grid = (contracts, {c: i for i, c in enumerate(contracts)})
            self._grids.put(key, grid)
        return grid

    def _group(self, symbol: str, surface: _Surface, expiry: date) -> _Group:
        group = surface.groups.get(expiry)
        if group is None:
            self._price_groups(symbol, surface, (expiry,))
            group = surface.groups[expiry]
        return group

    def _price_groups(self, symbol: str, surface: _Surface, expiries: Iterable[date]) -> None:
        """Price the expiries not yet priced at this bar in one vectorised pass."""
        missing = [e for e in expiries if e not in surface.groups]
        if not missing:
            return
        grids = [self._listed(surface, e)[0] for e in missing]
        contracts = grids[0] if len(grids) == 1 else tuple(itertools.chain.from_iterable(grids))
        # Strikes and call flags are fixed per grid; years to expiry are one number per expiry
        # (as contract_arrays computes them).
        at = surface.bar.time
        fixed = [self._grid_arrays(surface, e) for e in missing]
        arrays = (
            np.concatenate([k for k, _ in fixed]),
            np.concatenate([np.full(len(k), (expiry_instant(e) - at) / _YEAR)
                            for e, (k, _) in zip(missing, fixed, strict=True)]),
            np.concatenate([c for _, c in fixed]),
        )
        priced = self._price(symbol, surface.bar, contracts, arrays)
        at = 0
        for e in missing:
            n = len(surface.grid[e][0])
            surface.groups[e] = _Group(
                contracts=surface.grid[e][0],
                bid=priced.bid[at:at + n],
                ask=priced.ask[at:at + n],
                bid_size=priced.bid_size[at:at + n],
                ask_size=priced.ask_size[at:at + n],
                delta=priced.delta[at:at + n],
                iv=priced.iv[at:at + n],
                open_interest=priced.open_interest[at:at + n],
                volume=priced.volume[at:at + n],
            )
            at += n

    def _grid_arrays(self, surface: _Surface, expiry: date) -> tuple[np.ndarray, np.ndarray]:
        """Strikes and is-call flags of one expiry's grid (cached with the grid)."""
        key = ("arrays", surface.symbol, expiry, surface.lo, surface.hi)
        arrays = self._grids.get(key)
        if arrays is None:
            contracts = self._listed(surface, expiry)[0]
            arrays = (np.array([c.strike for c in contracts], dtype=np.float64),
                      np.array([c.is_call for c in contracts], dtype=np.bool_))
            self._grids.put(key, arrays)
        return arrays

    def _rows(self, symbol: str, surface: _Surface, expiry: date) -> tuple[OptionQuote, ...]:
        group = self._group(symbol, surface, expiry)
        if group.rows is None:
            quotes = _checked_quotes(group.bid, group.ask, group.bid_size, group.ask_size,
                                     surface.bar.time)
            group.rows = tuple(itertools.starmap(OptionQuote, zip(
                group.contracts, quotes, group.delta, group.iv, group.open_interest,
                group.volume, strict=True,
            )))
        return group.rows

    def _activity(self, symbol: str, day: int, contracts: tuple[Contract, ...]
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Open interest and the session's full volume per contract, fixed for the session
        (``day``; -1 before the start): concentrated near the money (in base-volatility
        standard deviations to expiry from the previous close), at round strikes, in monthlies
        (open interest) and short expiries (volume); volume rises in stress."""
        key = ("activity", symbol, day, contracts[0].expiry if contracts else None,
               len(contracts), contracts[0].strike if contracts else None)
        cached = self._grids.get(key)
        if cached is not None and cached[0] == contracts:
            return cached[1]
        spec = self._symbols[symbol]
        crc = zlib.crc32(symbol.encode("ascii"))
        if day >= 0:
            base_spot = float(self._path(symbol, day).prev_close[day])
            regime = self._market_day(day)[0]
            session = self._cal.dates[self._first + day]
        else:
            base_spot, regime, session = spec.spot, self._market_day(0)[0], self._start
        K = np.array([c.strike for c in contracts], dtype=np.float64)
        is_call = np.array([c.is_call for c in contracts], dtype=np.bool_)
        expiry_days = np.array([c.expiry.toordinal() for c in contracts], dtype=np.int64)
        monthly = np.array([c.expiry.weekday() >= 3 and 15 <= c.expiry.day <= 21
                            for c in contracts], dtype=np.bool_)
        days = np.maximum(expiry_days - session.toordinal(), 0.5)
        z = np.log(K / base_spot) / (spec.vol * np.sqrt(days / 365.0))
        near = np.exp(-0.5 * z * z) + 0.01
        milli = np.rint(K * 1000.0).astype(np.int64)
        round_strike = np.where(milli % 10_000 == 0, 2.5, np.where(milli % 5_000 == 0, 1.6, 1.0))
        right = is_call.astype(np.int64)
        put_tilt = np.where(is_call, 1.0, 1.3)
        u1 = _unit_noise(self._seed, crc, milli, expiry_days, right, 1)
        u2 = _unit_noise(self._seed, crc, milli, expiry_days, right, day, 2)
        oi = _OI_BASE * near * round_strike * put_tilt * np.where(monthly, 2.5, 1.0) * (
            np.minimum(days, 30.0) / 30.0) ** 0.5 * np.exp(u1 - 0.5)
        volume = (_VOLUME_BASE * self._regime_volume[regime] * near * round_strike * put_tilt
                  * (7.0 / (days + 7.0)) ** 0.7 * np.exp(1.6 * (u2 - 0.5)))
        result = (np.rint(oi), volume)
        self._grids.put(key, (contracts, result))
        return result

    def _price(self, symbol: str, bar: _Bar, contracts: tuple[Contract, ...],
               arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> _Group:
        """Price ``contracts`` (all on ``symbol``) at ``bar`` in one vectorised pass;
        ``arrays`` are their ``contract_arrays`` at the bar when the caller has them."""
        spec = self._symbols[symbol]
        K, T, is_call = contract_arrays(contracts, bar.time) if arrays is None else arrays
        atm = self._atm_curve(spec, bar, T)
        iv = self._iv(spec, bar, K, T, atm)
        g = bsm_greeks(bar.spot, K, T, self._rate, iv, spec.dividend_yield, is_call)
        price = np.atleast_1d(g.price)
        distance = np.abs(np.log(K / bar.spot)) / (atm * np.sqrt(np.maximum(T, _T_MIN)))
        half = self._regime_spread[bar.regime] * (
            _SPREAD_BASE + price * (_SPREAD_SHARE + _SPREAD_DISTANCE * np.minimum(distance, 5.0))
        )
        half = np.maximum(_TICK, half)
        bid = np.maximum(np.floor((price - half) / _TICK + 1e-6), 0.0)
        ask = np.maximum(np.ceil((price + half) / _TICK - 1e-6), bid + 1.0)
        x = np.abs(np.log(K / bar.spot))
        size = np.rint(10.0 + 490.0 * np.exp(-8.0 * x)).astype(np.int64)
        bid_size = np.where(bid > 0.0, size, 0)
        oi, full_volume = self._activity(symbol, bar.day, contracts)
        n = int(self._cal.minutes[self._first + bar.day]) if bar.day >= 0 else 1
        elapsed = bar.minute / n if bar.day >= 0 else 0.0
        return _Group(
            contracts=contracts,
            bid=np.round(bid * _TICK, 2).tolist(),
            ask=np.round(ask * _TICK, 2).tolist(),
            bid_size=bid_size.tolist(),
            ask_size=size.tolist(),
            delta=np.atleast_1d(g.delta).tolist(),
            iv=np.atleast_1d(iv).tolist(),
            open_interest=oi.astype(np.int64).tolist(),
            volume=np.floor(full_volume * elapsed).astype(np.int64).tolist(),
        )

    # -- VIX options ----------------------------------------------------------------------------

    def vix_long_run(self) -> float:
        """The long-run VIX level L the VIX futures revert to (``thetadesk.vix.forward``): the
        VIX of the source symbol at rest, its base variance in the normal regime."""
        if self._vix_long is None:
            spec = self._symbols[self._vix_source()]
            variance = spec.vol**2 * (self._regime_vol[NORMAL] * self._vol_scale) ** 2
            rest = _Bar(-1, 0, spec.spot, variance, variance, NORMAL, 0)
            self._vix_long = self._vix_of(spec, rest)
        return self._vix_long

    def vix_forward(self, expiry: date, now: datetime) -> float:
        """The model's VIX future (forward) for the VIX options of ``expiry`` at ``now``."""
        with self._lock:
            bar = self._bar(self._vix_source(), now)
            years = (expiry_instant(expiry, VIX_ROOT) - bar.time) / _YEAR
            return float(vix_forward(self._vix_at(bar), self.vix_long_run(), years))

    def _vix_listing(self, bar: _Bar) -> tuple[date, ...]:
        """The VIX expiries listed at ``bar``: the next six monthlies not yet expired."""
        today = bar.time.astimezone(NEW_YORK).date()
        key = ("vix_expiries", today)
        listed = self._grids.get(key)
        if listed is None:
            listed = vix_expiries(today, self._cal.session_set.__contains__, count=7)
            self._grids.put(key, listed)
        return tuple(e for e in listed if expiry_instant(e, VIX_ROOT) > bar.time)[:6]

    def _vix_surface(self, now: datetime) -> tuple[_Bar, dict[date, _Group]]:
        """The source symbol's bar at ``now`` and every listed VIX expiry priced at it (strikes
        on the VIX grid from half to three times the expiry's forward, puts then calls)."""
        bar = self._bar(self._vix_source(), now)
        key = ("VIX", bar.day, bar.minute)
        cached = self._surfaces.get(key)
        if cached is not None:
            return cached
        level, long_run = self._vix_at(bar), self.vix_long_run()
        groups: dict[date, _Group] = {}
        for expiry in self._vix_listing(bar):
            years = (expiry_instant(expiry, VIX_ROOT) - bar.time) / _YEAR
            fwd = float(vix_forward(level, long_run, years))
            strikes = strike_grid(0.5 * fwd, 3.0 * fwd)
            contracts = tuple(Contract(VIX_ROOT, expiry, right, k)
                              for right in (Right.PUT, Right.CALL) for k in strikes)
            groups[expiry] = self._vix_price(bar, contracts)
        self._surfaces.put(key, (bar, groups))
        return bar, groups

    def _vix_price(self, bar: _Bar, contracts: tuple[Contract, ...]) -> _Group:
        """Price VIX ``contracts`` at ``bar``: Black-76 on each expiry's forward (Black-Scholes
        with spot F and dividend yield = rate), deltas against F, Cboe's ticks."""
        level, long_run = self._vix_at(bar), self.vix_long_run()
        K, T, is_call = contract_arrays(contracts, bar.time)
        F = vix_forward(level, long_run, T)
        x = np.log(K / F)
        iv = np.clip(atm_vol(level, long_run, T) * smile(x), 0.2, 4.0)
        g = bsm_greeks(F, K, T, self._rate, iv, self._rate, is_call)
        price = np.maximum(np.atleast_1d(g.price), 0.0)
        half = self._regime_spread[bar.regime] * (0.02 + 0.015 * price)
        low, high = price - half, price + half  # each side on the tick of its own level
        bid = np.maximum(np.floor(low / tick(low) + 1e-6) * tick(low), 0.0)
        ask = np.maximum(np.ceil(high / tick(high) - 1e-6) * tick(high), bid + tick(bid))
        size = np.rint(10.0 + 290.0 * np.exp(-4.0 * np.abs(x))).astype(np.int64)
        bid = np.round(bid, 2)
        # Open interest and volume: near the money (in standard deviations to expiry), at
        # round strikes, more volume in stress; fixed noise per contract (and session).
        days = np.maximum(T * 365.0, 0.5)
        z = x / (atm_vol(level, long_run, T) * np.sqrt(days / 365.0))
        near = np.exp(-0.5 * z * z) + 0.01
        milli = np.rint(K * 1000.0).astype(np.int64)
        round_strike = np.where(milli % 5000 == 0, 1.6, 1.0)
        expiry_days = np.array([c.expiry.toordinal() for c in contracts], dtype=np.int64)
        right = is_call.astype(np.int64)
        crc = zlib.crc32(VIX_ROOT.encode("ascii"))
        u1 = _unit_noise(self._seed, crc, milli, expiry_days, right, 1)
        u2 = _unit_noise(self._seed, crc, milli, expiry_days, right, bar.day, 2)
        oi = 3000.0 * near * round_strike * np.exp(u1 - 0.5)
        n = int(self._cal.minutes[self._first + bar.day]) if bar.day >= 0 else 1
        elapsed = bar.minute / n if bar.day >= 0 else 0.0
        volume = (1500.0 * self._regime_volume[bar.regime] * near * round_strike
                  * np.exp(1.6 * (u2 - 0.5)) * elapsed)
        return _Group(
            contracts=contracts,
            bid=bid.tolist(),
            ask=np.round(ask, 2).tolist(),
            bid_size=np.where(bid > 0.0, size, 0).tolist(),
            ask_size=size.tolist(),
            delta=np.atleast_1d(g.delta).tolist(),
            iv=np.atleast_1d(iv).tolist(),
            open_interest=np.rint(oi).astype(np.int64).tolist(),
            volume=np.floor(volume).astype(np.int64).tolist(),
        )

    def _vix_quote(self, contract: Contract, now: datetime) -> Quote:
        close = expiry_instant(contract.expiry, VIX_ROOT)
        if close <= now:
            raise DataError(f"{contract} expired at {close}")
        group, i = None, None
        if self._whole_expiries:
            bar, groups = self._vix_surface(now)
            group = groups.get(contract.expiry)
            if group is not None and contract in group.contracts:
                i = group.contracts.index(contract)
        else:
            bar = self._bar(self._vix_source(), now)
        if group is None or i is None:  # off the grid, or a small process: the contract
            group, i = self._vix_price(bar, (contract,)), 0  # alone (elementwise: same bits)
        verdict = self._corrupt(contract, now) if self._corrupt is not None else None
        if verdict is not None:
            return _corrupted(group.ask[i], verdict, bar.time)
        return Quote(group.bid[i], group.ask[i], group.bid_size[i], group.ask_size[i], bar.time)

    def _vix_chain(self, now: datetime, min_dte: int | None, max_dte: int | None,
                   ) -> OptionChain:
        bar, groups = self._vix_surface(now)
        today = now.astimezone(NEW_YORK).date()
        lo = -math.inf if min_dte is None else min_dte
        hi = math.inf if max_dte is None else max_dte
        expiries = [e for e in groups if lo <= (e - today).days <= hi]
        spot = round(self._vix_at(bar), 2)
        if self._corrupt is not None:
            rows: list[OptionQuote] = []
            for e in expiries:
                g = groups[e]
                rows.extend(itertools.starmap(OptionQuote, zip(
                    g.contracts, _checked_quotes(g.bid, g.ask, g.bid_size, g.ask_size,
                                                 bar.time),
                    g.delta, g.iv, g.open_interest, g.volume, strict=True)))
            return OptionChain(VIX_ROOT, spot, now, self._screen(tuple(rows), now),
                               rate=self._rate)
        sides: dict[tuple[date, Right], np.ndarray] = {}
        parts, contracts, at = [], [], 0
        for e in expiries:
            g = groups[e]
            half = len(g.contracts) // 2
            sides[(e, Right.PUT)] = np.arange(at, at + half)
            sides[(e, Right.CALL)] = np.arange(at + half, at + 2 * half)
            at += 2 * half
            parts.append(g.arrays())
            contracts.extend(g.contracts)
        cols = tuple(np.concatenate([p[k] for p in parts]) if parts else np.empty(0)
                     for k in range(8))
        bid, ask, bid_size, ask_size, delta, iv, oi, volume = cols
        return OptionChain.from_columns(
            VIX_ROOT, spot, now, tuple(contracts), sides, bid=bid, ask=ask,
            bid_size=bid_size.astype(np.int64), ask_size=ask_size.astype(np.int64),
            ts=bar.time, delta=delta, iv=iv, open_interest=oi, volume=volume, rate=self._rate)

    # -- trade prints ---------------------------------------------------------------------------

    def _bucket_trades(
        self, symbol: str, session: int, bucket_ns: int, close_ns: int
    ) -> list[tuple[int, OptionTrade]]:
        key = ("trades", symbol, session, bucket_ns)
        cached = self._surfaces.get(key)
        if cached is not None:
            return cached
        bar = self._bar(symbol, _from_ns(bucket_ns))
        surface = self._surface(symbol, bar)
        end_ns = min(bucket_ns + _TRADE_BUCKET_MINUTES * _MINUTE_NS, close_ns)
        n = int(self._cal.minutes[session])
        share = (end_ns - bucket_ns) / (n * _MINUTE_NS)
        crc = zlib.crc32(symbol.encode("ascii"))
        rng = np.random.default_rng(
            [self._seed, _TRADE_STREAM, crc, session, bucket_ns // _MINUTE_NS]
        )
        out: list[tuple[int, OptionTrade]] = []
        for expiry in surface.expiries:
            group = self._group(symbol, surface, expiry)
            contracts = group.contracts
            bid = np.array(group.bid)
            ask = np.array(group.ask)
            _, full = self._activity(symbol, bar.day, contracts)
            expected = np.where(ask > _TICK, full * share / _MEAN_TRADE_SIZE, 0.0)
            counts = rng.poisson(expected)
            total = int(counts.sum())
            if total == 0:
                continue
            which = np.repeat(np.arange(len(contracts)), counts)
            times = rng.integers(bucket_ns // 1000, end_ns // 1000, size=total) * 1000
            sizes = rng.geometric(1.0 / _MEAN_TRADE_SIZE, size=total)
            side = rng.random(total)
            venue = rng.integers(0, len(_EXCHANGES), size=total)
            buy = side < 0.5
            at_mid = (side > 0.9) & (ask[which] - bid[which] > 1.5 * _TICK)
            price = np.where(buy, ask[which], bid[which])
            price = np.where(at_mid, np.round((ask[which] + bid[which]) / 2.0, 2), price)
            for j in range(total):
                if price[j] <= 0.0:
                    continue
                t_ns = int(times[j])
                out.append((t_ns, OptionTrade(
                    contracts[int(which[j])], _from_ns(t_ns), float(price[j]), int(sizes[j]),
                    "buy" if buy[j] else "sell", _EXCHANGES[int(venue[j])],
                )))
        out.sort(key=lambda item: (item[0], item[1].contract.occ))
        self._surfaces.put(key, out)
        return out

    def _screen(self, rows: tuple[OptionQuote, ...], now: datetime) -> list[OptionQuote]:
        assert self._corrupt is not None
        kept: list[OptionQuote] = []
        for row in rows:
            verdict = self._corrupt(row.contract, now)
            if verdict is None:
                kept.append(row)
                continue
            try:
                _corrupted(row.quote.ask, verdict, row.quote.ts)
            except DataError as exc:
                structlog.get_logger("sim_market").warning(
                    "quote_rejected", contract=row.contract.occ, reason=str(exc)
                )
        return kept


def _checked_quotes(
    bid: list[float], ask: list[float], bid_size: list[int], ask_size: list[int], ts: datetime
) -> list[Quote]:
    """Quotes for a whole surface; ``Quote`` validates each one (a bad value raises DataError)."""
    return [Quote(*row, ts) for row in zip(bid, ask, bid_size, ask_size, strict=True)]


def _corrupted(ask: float, verdict: str, ts: datetime | None) -> Quote:
    """Build the bad quote the corrupt hook asked for (the Quote constructor rejects it)."""
    kinds: dict[str, tuple[float, float]] = {
        "nan": (math.nan, ask),
        "crossed": (ask + 0.05, ask),
        "negative": (-0.05, ask),
    }
    if verdict not in kinds:
        raise ValueError(f"corrupt hook returned {verdict!r}; expected one of {sorted(kinds)}")
    bid, bad_ask = kinds[verdict]
    return Quote(bid, bad_ask, 1, 1, ts)

