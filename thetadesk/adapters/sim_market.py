"""A simulated market: underlying prices and option chains, deterministic in (seed, symbol, time).

The market is a pure function of its constructor arguments and the instant asked about. Any
process that builds ``SimMarket`` with the same arguments gets the same spot prices, chains and
quotes for the same ``now``, whatever it asked before: the caches below only remember answers,
they never change them. That is what lets every actor (and the backtester) hold its own copy.

The underlying, per symbol, trading day by trading day from ``start`` (NYSE sessions from
``exchange_calendars``, so holidays are skipped and early closes are honoured):

- A day's random numbers come from ``np.random.default_rng([seed, crc32(symbol), day_index])``,
  so a day's draws do not depend on which other days or symbols were asked about first.
- Volatility is GJR-GARCH(1,1)-like on daily log returns: the day's annualised variance is
  ``h[d+1] = omega + (alpha + gamma * [r[d] < 0]) * r[d]^2 * 252 + beta * h[d]``, mean-reverting
  to the symbol's base ``vol`` squared, rising more after down days than after up days.
- A day opens at the previous close times an overnight gap (20% of the day's variance, plus a
  rare downward jump) and then moves in one-minute log returns drawn from a Student-t (5 degrees
  of freedom, scaled to the day's variance) with the symbol's drift. Day 0 opens at ``spot``.

Prices: ``spot(symbol, now)`` is the price of the one-minute bar at or before ``now`` during a
session (rounded to $0.01) and the last close outside sessions. Before the first session the
price is the symbol's starting ``spot``.

Options (``chain``, ``quote``, ``atm_iv``): listed expiries are the Fridays (the previous session
when the Friday is a holiday) up to 70 calendar days after the bar's New York date; a listed
expiry stays listed until it expires, so held contracts keep their quotes. Strikes lie on the
symbol's ``strike_step`` grid from 75% to 115% of spot. Prices are Black-Scholes-Merton (European,
``rate`` and the symbol's ``dividend_yield``, continuously compounded) on an implied volatility
surface: the ATM level follows the GARCH variance forecast to expiry plus a volatility risk
premium, a mild upward term slope, and put skew in log-moneyness against the forward. Quotes are
on a $0.01 tick with a half-spread of max($0.01, 0.5% of the price); very cheap options bid 0.

Times are timezone-aware; time to expiry runs to 16:00 New York on the expiry date in years of
365 days (as in ``thetadesk.chain``). Quotes and chains are as of the minute bar, so every call
within one bar gets the same prices.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import structlog

from thetadesk.chain import NEW_YORK, OptionChain, OptionQuote, expiry_instant
from thetadesk.errors import DataError
from thetadesk.models import Contract, Quote, Right
from thetadesk.pricing import bsm_greeks

__all__ = ["CorruptHook", "SimMarket", "SimSymbol"]

CorruptHook = Callable[[Contract, datetime], str | None]
"""Test hook: given a contract and ``now``, return ``"nan"`` (NaN bid), ``"crossed"`` (bid above
the ask) or ``"negative"`` (bid below 0) to make that contract's quote bad, or None."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_MINUTE_NS = 60 * 1_000_000_000
_YEAR = timedelta(days=365)
_TRADING_DAYS = 252
_MINUTES_PER_DAY = 390  # a full 09:30-16:00 session

# Path dynamics (GJR-GARCH(1,1) on daily returns; variances annualised).
_ALPHA, _GAMMA, _BETA = 0.04, 0.10, 0.88  # persistence alpha + gamma/2 + beta = 0.97
_OMEGA_SHARE = 1.0 - _ALPHA - 0.5 * _GAMMA - _BETA  # omega = share * base variance
_OVERNIGHT_SHARE = 0.2  # of a day's variance that arrives as the opening gap
_T_DOF = 5.0
_JUMP_PROBABILITY = 0.01  # per day, an extra opening gap of N(-3, 1.5) daily std devs
_JUMP_MEAN, _JUMP_SD = -3.0, 1.5
_VAR_FLOOR, _VAR_CAP = 0.25**2, 5.0**2  # h stays within [0.25, 5] x base vol, squared

# Implied volatility surface.
_KAPPA = -math.log(0.97) * _TRADING_DAYS  # variance mean reversion per year, from persistence
_VRP = 0.10  # implied over forecast volatility
_TERM_SLOPE = 0.03  # ATM IV x (1 + slope * ln(T / 30 days))
_SKEW = 1.0  # iv = atm * (1 - skew_T * x + curvature * x^2), x = ln(K / F)
_CURVATURE = 1.0
_T30 = 30.0 / 365.0
_T_MIN = 1.0 / 365.0  # surface parameters stop changing below one day to expiry
_IV_MIN, _IV_MAX = 0.05, 2.0

# Listing and quoting.
_MAX_LISTED_DAYS = 70
_STRIKE_LOW, _STRIKE_HIGH = 0.75, 1.15  # x spot
_TICK = 0.01
_HALF_SPREAD_SHARE = 0.005

# Calendar table: sessions from the year before ``start`` to 30 years after it; the last year
# is kept back so that the 70-day expiry listing always has sessions to fall back on.
_CALENDAR_YEARS = 30


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


def _ns(now: datetime) -> int:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise DataError(f"now must be a timezone-aware datetime, got {now!r}")
    return ((now - _EPOCH) // _US) * 1000


def _from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(ns) // 1000)


class _LRU:
    """A small least-recently-used map."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)


class _Path:
    """The simulated days of one symbol so far: day d's minute prices, variance, prior close."""

    __slots__ = ("crc", "h", "prev_close", "prices")

    def __init__(self, symbol: str, spec: SimSymbol) -> None:
        self.crc = zlib.crc32(symbol.encode("ascii"))
        self.prices: list[np.ndarray] = []  # day d: minute 0 (open) .. n (close)
        self.h: list[float] = [spec.vol**2]  # h[d]: the variance forecast for day d
        self.prev_close: list[float] = [spec.spot]  # prev_close[d]: the close before day d


@dataclass(frozen=True, slots=True)
class _Bar:
    """One minute bar of one symbol: price, instantaneous variance forecast, bar time (ns)."""

    day: int  # -1 before the first session
    minute: int
    spot: float
    variance: float
    ns: int

    @property
    def time(self) -> datetime:
        return _from_ns(self.ns)


@dataclass(frozen=True, slots=True)
class _Surface:
    """Every listed contract of one symbol priced at one bar, as parallel lists."""

    bar: _Bar
    contracts: tuple[Contract, ...]
    bid: list[float]
    ask: list[float]
    bid_size: list[int]
    ask_size: list[int]
    delta: list[float]
    iv: list[float]
    index: dict[Contract, int]
    by_expiry: dict[date, list[int]]  # row indices of each expiry, in listing order


class SimMarket:
    """A deterministic simulated market implementing the ``MarketData`` port.

    ``seed`` is a non-negative integer; ``symbols`` maps roots (e.g. ``"SPY"``) to their
    ``SimSymbol``; ``rate`` is the continuously compounded annual risk-free rate; ``start`` is the
    first calendar day of the simulation (its first session opens at each symbol's ``spot``).
    ``corrupt`` is a test hook (see ``CorruptHook``) that makes chosen quotes bad so that the
    rejection path can be exercised end to end.
    """

    def __init__(
        self,
        seed: int,
        symbols: Mapping[str, SimSymbol],
        rate: float,
        start: date,
        corrupt: CorruptHook | None = None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise DataError(f"SimMarket seed must be a non-negative integer, got {seed!r}")
        if not isinstance(start, date) or isinstance(start, datetime):
            raise DataError(f"SimMarket start must be a date, got {start!r}")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
            raise DataError(f"SimMarket rate must be a finite number, got {rate!r}")
        if not symbols:
            raise DataError("SimMarket needs at least one symbol")
        for symbol, spec in symbols.items():
            try:
                Contract(symbol, start, Right.CALL, 1.0)  # the root rules of option contracts
            except DataError as exc:
                raise DataError(f"SimMarket symbol {symbol!r}: {exc}") from None
            if not isinstance(spec, SimSymbol):
                raise DataError(f"SimMarket symbol {symbol!r} needs a SimSymbol, got {spec!r}")
        if corrupt is not None and not callable(corrupt):
            raise DataError(f"SimMarket corrupt hook must be callable, got {corrupt!r}")
        self._seed = int(seed)
        self._symbols = dict(symbols)
        self._rate = float(rate)
        self._start = start
        self._corrupt = corrupt
        self._cal = _nyse_sessions(
            date(start.year - 1, 1, 1), date(start.year + _CALENDAR_YEARS, 12, 31)
        )
        self._first = int(np.searchsorted(np.array(self._cal.dates), start))
        # Queries must leave room for the 70-day listing inside the calendar table.
        self._last_ns = int(self._cal.closes[-1]) - 366 * 24 * 3600 * 1_000_000_000
        self._paths: dict[str, _Path] = {}
        self._surfaces = _LRU(64)
        self._rows = _LRU(16)
        self._grids = _LRU(64)
        self._lock = threading.RLock()

    def __reduce__(self):
        # Rebuild from the arguments: the market is a function of them, caches are not state.
        return (
            SimMarket,
            (self._seed, self._symbols, self._rate, self._start, self._corrupt),
        )

    # -- public API -----------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The continuously compounded annual risk-free rate."""
        return self._rate

    @property
    def symbols(self) -> Mapping[str, SimSymbol]:
        return dict(self._symbols)

    def is_open(self, now: datetime) -> bool:
        """True during a regular NYSE session (09:30 to the close, 16:00 or an early close)."""
        ns = _ns(now)
        i = int(np.searchsorted(self._cal.opens, ns, side="right")) - 1
        return i >= 0 and ns < int(self._cal.closes[i])

    def spot(self, symbol: str, now: datetime) -> float:
        """The underlying's price per share at ``now``: the minute bar at or before ``now`` in a
        session, the last close outside sessions, the starting spot before the first session."""
        with self._lock:
            return self._bar(symbol, now).spot

    def atm_iv(self, symbol: str, now: datetime) -> float:
        """The surface's 30-day at-the-money (strike = forward) implied volatility, annualised."""
        with self._lock:
            bar = self._bar(symbol, now)
            atm = self._atm_curve(self._symbols[symbol], bar.variance, np.array([_T30]))
            return float(np.clip(atm, _IV_MIN, _IV_MAX)[0])

    def quote(self, contract: Contract, now: datetime) -> Quote:
        """The quote of one contract at ``now``, the same as its row in ``chain(...)``.

        Contracts not on the listed grid (an old strike, say) are priced on the same surface.
        Raises DataError for an unknown underlying, an expired contract, or a quote the
        ``corrupt`` hook made bad.
        """
        with self._lock:
            if not isinstance(contract, Contract):
                raise DataError(f"quote needs a Contract, got {contract!r}")
            bar = self._bar(contract.underlying, now)
            if expiry_instant(contract.expiry) <= now:
                raise DataError(f"{contract} expired at {expiry_instant(contract.expiry)}")
            surface = self._surface(contract.underlying, bar)
            i = surface.index.get(contract)
            if i is None:
                surface = self._price(contract.underlying, bar, (contract,))
                i = 0
            verdict = self._corrupt(contract, now) if self._corrupt is not None else None
            if verdict is not None:
                return _corrupted(surface.ask[i], verdict, surface.bar.time)
            return Quote(
                surface.bid[i],
                surface.ask[i],
                surface.bid_size[i],
                surface.ask_size[i],
                surface.bar.time,
            )

    def chain(
        self, symbol: str, now: datetime, min_dte: int | None = None, max_dte: int | None = None
    ) -> OptionChain:
        """The listed options on ``symbol`` with quotes, model deltas and IVs at ``now``; only
        the expiries ``min_dte <= DTE <= max_dte`` (calendar days from ``now``'s New York date)
        when those are given.

        Rows whose quote is bad (only the ``corrupt`` hook makes them) are left out and logged
        as ``quote_rejected`` on the ``sim_market`` logger.
        """
        with self._lock:
            bar = self._bar(symbol, now)
            expiries = None
            if min_dte is not None or max_dte is not None:
                today = now.astimezone(NEW_YORK).date()
                lo = -math.inf if min_dte is None else min_dte
                hi = math.inf if max_dte is None else max_dte
                expiries = [e for e in self._surface(symbol, bar).by_expiry
                            if lo <= (e - today).days <= hi]
            rows = self._listed_rows(symbol, bar, expiries)
            if self._corrupt is not None:
                rows = self._screen(rows, now)
            spec = self._symbols[symbol]
            return OptionChain(
                symbol, bar.spot, now, rows, rate=self._rate, dividend_yield=spec.dividend_yield
            )

    # -- the underlying path ------------------------------------------------------------------

    def _spec(self, symbol: str) -> SimSymbol:
        spec = self._symbols.get(symbol)
        if spec is None:
            raise DataError(
                f"unknown symbol {symbol!r}: the simulated market has {sorted(self._symbols)}"
            )
        return spec

    def _bar(self, symbol: str, now: datetime) -> _Bar:
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
            return _Bar(-1, 0, round(spec.spot, 2), spec.vol**2, close_before)
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
        variance = self._intraday_variance(spec, path, day, minute, n, price)
        return _Bar(day, minute, round(price, 2), variance, bar_ns)

    def _path(self, symbol: str, day: int) -> _Path:
        path = self._paths.get(symbol)
        if path is None:
            path = self._paths[symbol] = _Path(symbol, self._symbols[symbol])
        spec = self._symbols[symbol]
        while len(path.prices) <= day:
            self._simulate_day(spec, path, len(path.prices))
        return path

    def _simulate_day(self, spec: SimSymbol, path: _Path, day: int) -> None:
        rng = np.random.default_rng([self._seed, path.crc, day])
        n = int(self._cal.minutes[self._first + day])
        h = path.h[day]
        prev_close = path.prev_close[day]
        daily_sd = math.sqrt(h / _TRADING_DAYS)
        z_gap = rng.standard_normal()
        jump = rng.random() < _JUMP_PROBABILITY
        z_jump = rng.standard_normal()
        shocks = rng.standard_t(_T_DOF, size=n) * math.sqrt((_T_DOF - 2.0) / _T_DOF)
        gap = 0.0
        if day > 0:
            gap = math.sqrt(_OVERNIGHT_SHARE) * daily_sd * z_gap
            if jump:
                gap += (_JUMP_MEAN + _JUMP_SD * z_jump) * daily_sd
        minute_sd = daily_sd * math.sqrt((1.0 - _OVERNIGHT_SHARE) / _MINUTES_PER_DAY)
        drift = (spec.drift - 0.5 * h) / (_TRADING_DAYS * _MINUTES_PER_DAY)
        log_path = np.empty(n + 1)
        log_path[0] = math.log(prev_close) + gap
        np.cumsum(drift + minute_sd * shocks, out=log_path[1:])
        log_path[1:] += log_path[0]
        prices = np.exp(log_path)
        close = float(prices[-1])
        path.prices.append(prices)
        path.prev_close.append(close)
        path.h.append(self._intraday_variance(spec, path, day, n, n, close))

    @staticmethod
    def _intraday_variance(
        spec: SimSymbol, path: _Path, day: int, minute: int, n: int, price: float
    ) -> float:
        """The GARCH variance forecast updated with the day's move so far; equals h[day] at the
        previous close and h[day + 1] at the day's close."""
        h = path.h[day]
        base = spec.vol**2
        frac = _OVERNIGHT_SHARE + (1.0 - _OVERNIGHT_SHARE) * minute / n
        r = math.log(price / path.prev_close[day])
        shock = (_ALPHA + (_GAMMA if r < 0.0 else 0.0)) * r * r * _TRADING_DAYS
        value = h + frac * (_OMEGA_SHARE * base + _BETA * h - h) + shock
        return min(max(value, _VAR_FLOOR * base), _VAR_CAP * base)

    # -- the option surface -------------------------------------------------------------------

    def _atm_curve(self, spec: SimSymbol, variance: float, T: np.ndarray) -> np.ndarray:
        """ATM (strike = forward) implied vol, annualised, for times to expiry ``T`` in years:
        the GARCH variance expected over [0, T] reverting to the base variance, plus the
        volatility risk premium and the term slope. Not clipped."""
        t = np.maximum(T, _T_MIN)
        base = spec.vol**2
        kt = _KAPPA * t
        expected = base + (variance - base) * (-np.expm1(-kt) / kt)
        return np.sqrt(expected) * (1.0 + _VRP) * (1.0 + _TERM_SLOPE * np.log(t / _T30))

    def _iv(self, spec: SimSymbol, bar: _Bar, K: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Implied vol per contract: ATM level times put skew in x = ln(K / F), clipped."""
        atm = self._atm_curve(spec, bar.variance, T)
        forward = bar.spot * np.exp((self._rate - spec.dividend_yield) * T)
        x = np.log(K / forward)
        skew = _SKEW * (_T30 / np.maximum(T, _T_MIN)) ** 0.25
        return np.clip(atm * (1.0 - skew * x + _CURVATURE * x * x), _IV_MIN, _IV_MAX)

    def _expiries(self, bar: _Bar) -> list[date]:
        today = bar.time.astimezone(NEW_YORK).date()
        friday = today + timedelta(days=(4 - today.weekday()) % 7)
        expiries: list[date] = []
        while (friday - today).days <= _MAX_LISTED_DAYS:
            expiry = friday
            while expiry not in self._cal.session_set:
                expiry -= timedelta(days=1)
            if expiry_instant(expiry) > bar.time and expiry not in expiries:
                expiries.append(expiry)
            friday += timedelta(days=7)
        return expiries

    def _grid(
        self, symbol: str, expiries: tuple[date, ...], lo: int, hi: int
    ) -> tuple[tuple[Contract, ...], dict[Contract, int]]:
        """The listed contracts (puts then calls per expiry, strikes ascending) and their index;
        cached, since the grid only changes when spot crosses a strike or an expiry rolls."""
        key = (symbol, expiries, lo, hi)
        grid = self._grids.get(key)
        if grid is None:
            step = self._symbols[symbol].strike_step
            strikes = [round(i * step, 3) for i in range(lo, hi + 1)]
            contracts = tuple(
                Contract(symbol, expiry, right, strike)
                for expiry in expiries
                for right in (Right.PUT, Right.CALL)
                for strike in strikes
            )
            grid = (contracts, {c: i for i, c in enumerate(contracts)})
            self._grids.put(key, grid)
        return grid

    def _surface(self, symbol: str, bar: _Bar) -> _Surface:
        key = (symbol, bar.day, bar.minute)
        surface = self._surfaces.get(key)
        if surface is None:
            step = self._symbols[symbol].strike_step
            lo = max(math.ceil(_STRIKE_LOW * bar.spot / step - 1e-9), 1)
            hi = math.floor(_STRIKE_HIGH * bar.spot / step + 1e-9)
            contracts, index = self._grid(symbol, tuple(self._expiries(bar)), lo, hi)
            surface = self._price(symbol, bar, contracts, index)
            self._surfaces.put(key, surface)
        return surface

    def _price(
        self,
        symbol: str,
        bar: _Bar,
        contracts: tuple[Contract, ...],
        index: dict[Contract, int] | None = None,
    ) -> _Surface:
        """Price ``contracts`` (all on ``symbol``) at ``bar`` in one vectorised pass."""
        spec = self._symbols[symbol]
        bar_time = bar.time
        years: dict[date, float] = {}
        for c in contracts:
            if c.expiry not in years:
                years[c.expiry] = (expiry_instant(c.expiry) - bar_time) / _YEAR
        K = np.array([c.strike for c in contracts], dtype=np.float64)
        T = np.array([years[c.expiry] for c in contracts], dtype=np.float64)
        is_call = np.array([c.is_call for c in contracts], dtype=np.bool_)
        iv = self._iv(spec, bar, K, T)
        g = bsm_greeks(bar.spot, K, T, self._rate, iv, spec.dividend_yield, is_call)
        price = np.atleast_1d(g.price)
        half = np.maximum(_TICK, _HALF_SPREAD_SHARE * price)
        bid = np.maximum(np.floor((price - half) / _TICK + 1e-6), 0.0)
        ask = np.maximum(np.ceil((price + half) / _TICK - 1e-6), bid + 1.0)
        x = np.abs(np.log(K / bar.spot))
        size = np.rint(10.0 + 490.0 * np.exp(-8.0 * x)).astype(np.int64)
        bid_size = np.where(bid > 0.0, size, 0)
        return _Surface(
            bar=bar,
            contracts=contracts,
            bid=np.round(bid * _TICK, 2).tolist(),
            ask=np.round(ask * _TICK, 2).tolist(),
            bid_size=bid_size.tolist(),
            ask_size=size.tolist(),
            delta=np.atleast_1d(g.delta).tolist(),
            iv=np.atleast_1d(iv).tolist(),
            index=index if index is not None else {c: i for i, c in enumerate(contracts)},
            by_expiry=_group_by_expiry(contracts),
        )

    def _listed_rows(
        self, symbol: str, bar: _Bar, expiries: Iterable[date] | None = None
    ) -> tuple[OptionQuote, ...]:
        """Rows of the listed contracts (of ``expiries`` only, if given), built per expiry on
        first use and cached per bar: most callers need a few expiries of a long chain."""
        key = (symbol, bar.day, bar.minute)
        built = self._rows.get(key)
        if built is None:
            built = {}
            self._rows.put(key, built)
        s = self._surface(symbol, bar)
        wanted = s.by_expiry if expiries is None else [e for e in expiries if e in s.by_expiry]
        rows: list[OptionQuote] = []
        for expiry in wanted:
            group = built.get(expiry)
            if group is None:
                idx = s.by_expiry[expiry]
                quotes = _checked_quotes([s.bid[i] for i in idx], [s.ask[i] for i in idx],
                                         [s.bid_size[i] for i in idx],
                                         [s.ask_size[i] for i in idx], bar.time)
                group = tuple(
                    OptionQuote(s.contracts[i], q, delta=s.delta[i], iv=s.iv[i])
                    for i, q in zip(idx, quotes, strict=True)
                )
                built[expiry] = group
            rows.extend(group)
        return tuple(rows)

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


def _group_by_expiry(contracts: tuple[Contract, ...]) -> dict[date, list[int]]:
    groups: dict[date, list[int]] = {}
    for i, contract in enumerate(contracts):
        groups.setdefault(contract.expiry, []).append(i)
    return groups


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

