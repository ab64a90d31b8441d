"""A portfolio snapshot for risk measurement, and its full revaluation under scenarios.

A ``Portfolio`` is what every risk measure reads: the underlyings' state (spot, volatility,
dividend yield), their pairwise return correlations, and the holdings (option contracts by OCC
symbol and shares by ticker, signed quantities) as of one instant. It is a value: building one
validates everything, and nothing in ``thetadesk.risk`` reads a clock, a broker or a ledger.

Units and conventions:

- Money in dollars; option prices per share times the contract multiplier (100).
- Time to expiry in years of 365 days to the expiry's 16:00 New York close (``thetadesk.chain``).
- A scenario moves each underlying's spot by a FACTOR (new spot / spot, > 0) and each
  underlying's implied volatilities by a FACTOR (new vol / vol, > 0: +50% IV is 1.5), after
  ``horizon_years`` of calendar time. P&L is new value less today's value; losses are negative
  here (the measures report them as positive amounts).
- An option without its own implied volatility is priced at its underlying's ``vol``.

``revalue`` is the reference full revaluation (``thetadesk.pricing.bsm_price`` over scenarios x
options). Faster kernels must agree with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from thetadesk.chain import contract_arrays, expiry_instant
from thetadesk.errors import DataError
from thetadesk.models import Contract
from thetadesk.pricing import bsm_price

__all__ = ["Holding", "Portfolio", "PortfolioArrays", "UnderlyingState", "revalue"]

_TICKER_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.")


def _finite(owner: str, name: str, value: object, *, low: float | None = None,
            high: float | None = None, strict_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise DataError(f"{owner} {name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise DataError(f"{owner} {name} must be finite, got {value!r}")
    if low is not None and (v <= low if strict_low else v < low):
        raise DataError(f"{owner} {name} must be {'>' if strict_low else '>='} {low:g}, "
                        f"got {value!r}")
    if high is not None and v > high:
        raise DataError(f"{owner} {name} must be <= {high:g}, got {value!r}")
    return v


@dataclass(frozen=True, slots=True)
class UnderlyingState:
    """One underlying: ``spot`` per share (> 0), ``vol`` annualised (its return volatility and
    the implied volatility of its options that carry none of their own, (0, 5]),
    ``dividend_yield`` continuously compounded."""

    symbol: str
    spot: float
    vol: float
    dividend_yield: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol or not set(
                self.symbol) <= _TICKER_CHARS:
            raise DataError(f"underlying symbol {self.symbol!r} must be upper-case letters, "
                            "digits or dots")
        owner = f"underlying {self.symbol}"
        object.__setattr__(self, "spot", _finite(owner, "spot", self.spot, low=0.0,
                                                 strict_low=True))
        object.__setattr__(self, "vol", _finite(owner, "vol", self.vol, low=0.0, high=5.0,
                                                strict_low=True))
        object.__setattr__(self, "dividend_yield", _finite(
            owner, "dividend_yield", self.dividend_yield, low=-0.2, high=0.2))


@dataclass(frozen=True, slots=True)
class Holding:
    """``quantity`` (signed, > 0 long) of ``symbol``: an OCC option symbol (contracts) or a share
    ticker (shares). ``iv`` is an option's own implied volatility, if known. ``on``: the risk
    underlying an option is measured on when it is not its root: a VIX option on its expiry's
    VIX future ("VIX.250319", ``thetadesk.vix.forward_symbol``)."""

    symbol: str
    quantity: int
    iv: float | None = None
    contract: Contract | None = field(default=None, compare=False)
    on: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise DataError(f"holding symbol must be a non-empty string, got {self.symbol!r}")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int | np.integer) or (
                self.quantity == 0):
            raise DataError(f"holding {self.symbol} quantity must be a non-zero integer, "
                            f"got {self.quantity!r}")
        object.__setattr__(self, "quantity", int(self.quantity))
        contract = None
        if any(ch.isdigit() for ch in self.symbol) and len(self.symbol) > 10:
            contract = Contract.from_occ(self.symbol)  # DataError names the problem
        elif not set(self.symbol) <= _TICKER_CHARS:
            raise DataError(f"holding symbol {self.symbol!r} is neither an OCC option symbol "
                            "nor a share ticker")
        if self.iv is not None:
            if contract is None:
                raise DataError(f"holding {self.symbol}: shares have no implied volatility")
            object.__setattr__(self, "iv", _finite(f"holding {self.symbol}", "iv", self.iv,
                                                   low=0.0, high=5.0, strict_low=True))
        object.__setattr__(self, "contract", contract)
        if self.on is not None:
            if contract is None:
                raise DataError(f"holding {self.symbol}: shares are measured on themselves")
            if not isinstance(self.on, str) or not self.on or not set(self.on) <= _TICKER_CHARS:
                raise DataError(f"holding {self.symbol}: risk underlying {self.on!r} must be "
                                "upper-case letters, digits or dots")

    @property
    def underlying(self) -> str:
        if self.contract is None:
            return self.symbol
        return self.on if self.on is not None else self.contract.underlying

    @property
    def is_option(self) -> bool:
        return self.contract is not None


@dataclass(frozen=True, slots=True)
class PortfolioArrays:
    """The portfolio as flat arrays for vectorised revaluation (see ``Portfolio.arrays``).

    Options: ``underlying`` (index into the portfolio's ``symbols``), ``strike``, ``years`` to
    expiry, ``is_call``, ``units`` (signed contracts x multiplier: dollars per 1.00 of price per
    share), ``iv``. Shares: ``share_underlying``, ``share_units`` (signed shares). Per
    underlying: ``spot``, ``dividend_yield``. ``base_value`` is today's value in dollars.
    """

    underlying: np.ndarray
    strike: np.ndarray
    years: np.ndarray
    is_call: np.ndarray
    units: np.ndarray
    iv: np.ndarray
    share_underlying: np.ndarray
    share_units: np.ndarray
    spot: np.ndarray
    dividend_yield: np.ndarray
    rate: float
    base_value: float

    @property
    def option_count(self) -> int:
        return len(self.strike)


@dataclass(frozen=True)
class Portfolio:
    """A validated snapshot. ``correlation`` maps pairs of underlyings (a 2-tuple in either
    order, or "A/B") to their return correlation; pairs not given are 0; the matrix must be
    positive semi-definite."""

    as_of: datetime
    rate: float
    underlyings: Mapping[str, UnderlyingState]
    holdings: tuple[Holding, ...]
    correlation: Mapping[object, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.as_of, datetime) or self.as_of.tzinfo is None or (
                self.as_of.utcoffset() is None):
            raise DataError(f"portfolio as_of must be a timezone-aware datetime, "
                            f"got {self.as_of!r}")
        object.__setattr__(self, "rate", _finite("portfolio", "rate", self.rate, low=-0.2,
                                                 high=0.5))
        unds = dict(self.underlyings)
        if not unds:
            raise DataError("a portfolio needs at least one underlying")
        for name, state in unds.items():
            if not isinstance(state, UnderlyingState) or state.symbol != name:
                raise DataError(f"underlying {name!r} must be an UnderlyingState named {name!r}")
        object.__setattr__(self, "underlyings", unds)
        holdings = tuple(self.holdings)
        for h in holdings:
            if not isinstance(h, Holding):
                raise DataError(f"portfolio holdings must be Holding values, got {h!r}")
            if h.underlying not in unds:
                raise DataError(f"holding {h.symbol}: underlying {h.underlying} is not among "
                                f"the portfolio's underlyings ({', '.join(sorted(unds))})")
            close = (None if h.contract is None
                     else expiry_instant(h.contract.expiry, h.contract.underlying))
            if close is not None and close <= self.as_of:
                raise DataError(f"holding {h.symbol} expired at {close.isoformat()}, before "
                                f"{self.as_of.isoformat()}")
        object.__setattr__(self, "holdings", holdings)
        pairs: dict[frozenset[str], float] = {}
        for key, value in dict(self.correlation).items():
            names = tuple(key.split("/")) if isinstance(key, str) else tuple(key)
            if len(names) != 2 or names[0] == names[1]:
                raise DataError(f"correlation key {key!r} must name two different underlyings")
            for name in names:
                if name not in unds:
                    raise DataError(f"correlation {key!r}: {name} is not an underlying of "
                                    "the portfolio")
            pair = frozenset(names)
            if pair in pairs:
                raise DataError(f"correlation of {'/'.join(sorted(pair))} is given twice")
            pairs[pair] = _finite("correlation", "/".join(names), value, low=-1.0, high=1.0)
        object.__setattr__(self, "correlation", pairs)
        eigen = np.linalg.eigvalsh(self.correlation_matrix())
        if eigen.min() < -1e-10:
            raise DataError("the correlation matrix is not positive semi-definite "
                            f"(smallest eigenvalue {eigen.min():.3g})")

    @property
    def symbols(self) -> tuple[str, ...]:
        """The underlyings in a fixed (sorted) order: the columns of every scenario array."""
        return tuple(sorted(self.underlyings))

    def correlation_matrix(self) -> np.ndarray:
        names = self.symbols
        m = np.eye(len(names))
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i != j:
                    m[i, j] = self.correlation.get(frozenset((a, b)), 0.0)
        return m

    def vols(self) -> np.ndarray:
        return np.array([self.underlyings[s].vol for s in self.symbols])

    def with_holdings(self, holdings: Iterable[Holding]) -> Portfolio:
        """The same snapshot holding ``holdings`` instead (e.g. with a proposed trade added)."""
        return Portfolio(self.as_of, self.rate, self.underlyings, tuple(holdings),
                         {tuple(sorted(p)): v for p, v in self.correlation.items()})

    def arrays(self) -> PortfolioArrays:
        """The flat arrays (computed once per snapshot: a snapshot never changes)."""
        cached = self.__dict__.get("_arrays")
        if cached is None:
            cached = self._arrays_uncached()
            self.__dict__["_arrays"] = cached
        return cached

    def _arrays_uncached(self) -> PortfolioArrays:
        index = {s: i for i, s in enumerate(self.symbols)}
        options = [h for h in self.holdings if h.contract is not None]
        shares = [h for h in self.holdings if h.contract is None]
        contracts = [h.contract for h in options]
        strike, years, is_call = contract_arrays(contracts, self.as_of)
        und = np.array([index[h.underlying] for h in options], dtype=np.int64)
        units = np.array([h.quantity * h.contract.multiplier for h in options], dtype=np.float64)
        iv = np.array([h.iv if h.iv is not None else self.underlyings[h.underlying].vol
                       for h in options], dtype=np.float64)
        spot = np.array([self.underlyings[s].spot for s in self.symbols])
        q = np.array([self.underlyings[s].dividend_yield for s in self.symbols])
        share_und = np.array([index[h.symbol] for h in shares], dtype=np.int64)
        share_units = np.array([h.quantity for h in shares], dtype=np.float64)
        prices = bsm_price(spot[und], strike, years, self.rate, iv, q[und], is_call)
        base = float(np.sum(units * prices) + np.sum(share_units * spot[share_und]))
        return PortfolioArrays(und, strike, np.asarray(years, dtype=np.float64),
                               np.asarray(is_call, dtype=bool), units, iv, share_und,
                               share_units, spot, q, float(self.rate), base)

    def value(self) -> float:
        """Today's value in dollars (options at model prices, shares at spot)."""
        return self.arrays().base_value


def revalue(arrays: PortfolioArrays, spot_factor: np.ndarray, vol_factor: np.ndarray | None,
            horizon_years: float = 0.0) -> np.ndarray:
    """P&L in dollars of each scenario: ``spot_factor`` and ``vol_factor`` are (scenarios x
    underlyings) arrays of factors (None: volatility unchanged), applied ``horizon_years`` from
    now (options lose that much time to expiry; past expiry they are worth intrinsic value).

    The reference implementation: exact, vectorised over scenarios x options with
    ``bsm_price``. Memory is scenarios x options floats; callers chunk large runs.
    """
    spot_factor = np.asarray(spot_factor, dtype=np.float64)
    if spot_factor.ndim != 2 or spot_factor.shape[1] != len(arrays.spot):
        raise DataError(f"spot_factor must be (scenarios, {len(arrays.spot)}), "
                        f"got {spot_factor.shape}")
    if vol_factor is not None:
        vol_factor = np.asarray(vol_factor, dtype=np.float64)
        if vol_factor.shape != spot_factor.shape:
            raise DataError(f"vol_factor must have the shape of spot_factor {spot_factor.shape}, "
                            f"got {vol_factor.shape}")
    horizon = _finite("revalue", "horizon_years", horizon_years, low=0.0)
    new_spot = arrays.spot[None, :] * spot_factor  # scenarios x underlyings
    pnl = (new_spot[:, arrays.share_underlying] * arrays.share_units[None, :]).sum(axis=1)
    if arrays.option_count:
        und = arrays.underlying
        s = new_spot[:, und]
        iv = arrays.iv[None, :] * (1.0 if vol_factor is None else vol_factor[:, und])
        years = np.maximum(arrays.years - horizon, 0.0)[None, :]
        prices = bsm_price(s, arrays.strike[None, :], years, arrays.rate, iv,
                           arrays.dividend_yield[und][None, :], arrays.is_call[None, :])
        pnl = pnl + (prices * arrays.units[None, :]).sum(axis=1)
    return pnl - arrays.base_value
