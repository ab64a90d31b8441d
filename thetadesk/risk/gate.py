"""Portfolio limits at the risk gate: the account's Greeks, VaR and ES with the proposed trade.

Before an opening order the gate builds the account's portfolio as it stands (open positions'
legs, share holdings) and as it would stand with the order filled, measures both
(``exposure``) and applies each configured limit (``check_portfolio``). A limit refuses an order
only when the measure after it is beyond the limit AND worse than before: an order that leaves
a measure no worse passes even when the book is already over that limit (risk-reducing trades
and hedges always get through). Closing orders are never measured here; they always pass.

The snapshot (``SnapshotBuilder``) prices every option at the implied volatility of its own
quote's mid (``thetadesk.pricing.implied_vol``), so the measures follow the market; each
underlying's return volatility is the implied volatility of its held option nearest the money
(the configured vol when it holds none), with the configured pairwise correlation. An opening
order whose contracts have no usable quote is refused: nothing is traded on bad data.

VIX options (``thetadesk.vix``) are measured on their expiry's VIX future, a risk underlying of
its own ("VIX.250319") priced from the held strike's call and put mids by put-call parity,
with the option's implied volatility as its return volatility and a correlation of -0.70 with
SPY (-0.70 times the configured correlation with another stock, 0.90 with another VIX
future): their model-implied beta against SPY is negative, so a long VIX call lowers the
beta-weighted delta. A VIX option the gate cannot measure (no quote for it or its other side)
is refused like any other, never waved through.

Units (see ``thetadesk.risk.greeks``): delta and gamma in share-equivalents per underlying,
beta-weighted delta in SPY share-equivalents (model-implied betas ``rho sigma_i / sigma_SPY``,
consistent with the VaR model), vega in dollars per 1 point of implied volatility, theta in
dollars per calendar day, VaR and ES as positive dollars of 1-day loss by the delta-gamma-vega
Cornish-Fisher method with vol-of-vol 1.0 and spot/vol correlation -0.7 (fast enough to run on
every order; the Monte Carlo and historical measures run on the risk actor's schedule).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from thetadesk.chain import contract_arrays, expiry_instant
from thetadesk.errors import DataError
from thetadesk.models import Contract, Leg, Right
from thetadesk.pricing import implied_vol
from thetadesk.risk.greeks import beta_weighted_delta, portfolio_greeks
from thetadesk.risk.limits import Rejection
from thetadesk.risk.measures import delta_gamma_vega_var
from thetadesk.risk.montecarlo import SPOT_VOL_CORR, VOL_OF_VOL
from thetadesk.risk.portfolio import Holding, Portfolio, UnderlyingState
from thetadesk.vix import (
    FORWARD_CORRELATION,
    FORWARD_PRICED,
    SPY_CORRELATION,
    forward_symbol,
    is_forward_symbol,
    parity_forward,
)

__all__ = [
    "Exposure",
    "PortfolioLimits",
    "SnapshotBuilder",
    "add_legs",
    "check_portfolio",
    "exposure",
    "global_limits_from_config",
    "portfolio_limits_from_config",
]

BENCHMARK = "SPY"
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class PortfolioLimits:
    """One account's portfolio limits (None: no limit), units as in the module docstring."""

    max_total_loss: float | None = None
    max_positions_per_symbol: int | None = None
    max_delta_shares: float | None = None
    max_beta_weighted_delta: float | None = None
    max_gamma_shares: float | None = None
    max_vega_per_vol_point: float | None = None
    max_theta_per_day: float | None = None
    max_var95: float | None = None
    max_var99: float | None = None
    max_es95: float | None = None
    max_es99: float | None = None

    @property
    def needs_measures(self) -> bool:
        """Whether any limit needs the priced portfolio (not just the ledger's counts)."""
        return any(getattr(self, name) is not None for name in (
            "max_delta_shares", "max_beta_weighted_delta", "max_gamma_shares",
            "max_vega_per_vol_point", "max_theta_per_day", "max_var95", "max_var99",
            "max_es95", "max_es99"))


def portfolio_limits_from_config(config) -> dict[str, PortfolioLimits]:
    names = PortfolioLimits.__dataclass_fields__
    return {a.name: PortfolioLimits(**{n: getattr(a.risk, n) for n in names})
            for a in config.accounts}


def global_limits_from_config(config) -> PortfolioLimits | None:
    """The limits over every account's book together (``global_risk``); None if none is set."""
    names = PortfolioLimits.__dataclass_fields__
    limits = PortfolioLimits(**{n: getattr(config.global_risk, n) for n in names})
    return None if all(getattr(limits, n) is None for n in names) else limits


@dataclass(frozen=True)
class Exposure:
    """One state of an account's book: ledger counts and, when priced, its measures."""

    total_max_loss: float
    positions: Mapping[str, int]  # open positions and opening orders per underlying
    delta: Mapping[str, float] = field(default_factory=dict)
    gamma: Mapping[str, float] = field(default_factory=dict)
    beta_weighted_delta: float | None = None
    vega_per_vol_point: float | None = None
    theta_per_day: float | None = None
    var95: float | None = None
    var99: float | None = None
    es95: float | None = None
    es99: float | None = None

    def as_dict(self) -> dict:
        out: dict = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, float):
                value = round(value, 4)
            elif isinstance(value, Mapping):
                value = {k: round(v, 4) if isinstance(v, float) else v for k, v in value.items()}
            out[key] = value
        return out


def exposure(portfolio: Portfolio | None, total_max_loss: float,
             positions: Mapping[str, int], betas: Mapping[str, float] | None = None,
             ) -> Exposure:
    """The measures of ``portfolio`` (None: counts only). ``betas`` against SPY estimated from
    return history where known; other underlyings get the model-implied beta."""
    if portfolio is None:
        return Exposure(total_max_loss, dict(positions))
    greeks = portfolio_greeks(portfolio)
    per = greeks.per_underlying
    vols = {s: portfolio.underlyings[s].vol for s in portfolio.symbols}
    bwd = None
    if BENCHMARK in portfolio.underlyings:
        spy_vol = vols[BENCHMARK]
        known = dict(betas or {})
        implied = {s: (1.0 if s == BENCHMARK else known.get(s, portfolio.correlation.get(
            frozenset((s, BENCHMARK)), 0.0) * vols[s] / spy_vol)) for s in portfolio.symbols}
        bwd = beta_weighted_delta(greeks, implied, BENCHMARK)
    total = greeks.total
    if portfolio.holdings:
        figures = delta_gamma_vega_var(portfolio, 1, vol_of_vol=VOL_OF_VOL,
                                       spot_vol_correlation=SPOT_VOL_CORR, greeks=greeks)
        risk = (figures.var95, figures.var99, figures.es95, figures.es99)
    else:
        risk = (0.0, 0.0, 0.0, 0.0)
    return Exposure(
        total_max_loss, dict(positions),
        delta={s: g.delta for s, g in per.items() if g.delta or g.gamma},
        gamma={s: g.gamma for s, g in per.items() if g.delta or g.gamma},
        beta_weighted_delta=bwd, vega_per_vol_point=total.vega / 100.0,
        theta_per_day=total.theta / 365.0,
        var95=risk[0], var99=risk[1], es95=risk[2], es99=risk[3],
    )


def _worse(limit: float | None, before: float | None, after: float | None) -> bool:
    """Beyond the limit and worse than before (in absolute value)."""
    if limit is None or after is None:
        return False
    return abs(after) > limit + _EPS and abs(after) > abs(before or 0.0) + _EPS


def check_portfolio(account: str, symbol: str, limits: PortfolioLimits, before: Exposure,
                    after: Exposure) -> Rejection | None:
    """The first limit the trade breaks (beyond it and worse than before), or None."""
    if _worse(limits.max_total_loss, before.total_max_loss, after.total_max_loss):
        return Rejection("max_total_loss", (
            f"{account}: open max loss would be ${after.total_max_loss:,.2f} (now "
            f"${before.total_max_loss:,.2f}), the limit is ${limits.max_total_loss:,.2f}"))
    count_after, count_before = after.positions.get(symbol, 0), before.positions.get(symbol, 0)
    if _worse(limits.max_positions_per_symbol, count_before, count_after):
        return Rejection("max_positions_per_symbol", (
            f"{account}: {count_before} {symbol} positions and opening orders already, the "
            f"limit is {limits.max_positions_per_symbol}"))
    for name, limit, unit in (("delta", limits.max_delta_shares, "shares"),
                              ("gamma", limits.max_gamma_shares, "shares per $1")):
        values_after = getattr(after, name)
        values_before = getattr(before, name)
        for und, value in values_after.items():
            if _worse(limit, values_before.get(und, 0.0), value):
                return Rejection(f"max_{name}", (
                    f"{account}: net {und} {name} would be {value:+,.1f} {unit} (now "
                    f"{values_before.get(und, 0.0):+,.1f}), the limit is +/-{limit:,.1f}"))
    scalar = (
        ("max_beta_weighted_delta", "beta-weighted delta", limits.max_beta_weighted_delta,
         "beta_weighted_delta", "{:+,.1f} SPY shares"),
        ("max_vega", "net vega", limits.max_vega_per_vol_point, "vega_per_vol_point",
         "${:+,.2f} per vol point"),
        ("max_theta", "net theta", limits.max_theta_per_day, "theta_per_day",
         "${:+,.2f} per day"),
        ("max_var95", "1-day 95% VaR", limits.max_var95, "var95", "${:,.2f}"),
        ("max_var99", "1-day 99% VaR", limits.max_var99, "var99", "${:,.2f}"),
        ("max_es95", "1-day 95% ES", limits.max_es95, "es95", "${:,.2f}"),
        ("max_es99", "1-day 99% ES", limits.max_es99, "es99", "${:,.2f}"),
    )
    for check, label, limit, attr, fmt in scalar:
        value_before, value_after = getattr(before, attr), getattr(after, attr)
        if _worse(limit, value_before, value_after):
            limit_text = fmt.format(limit).replace("+", "")
            return Rejection(check, (
                f"{account}: {label} would be {fmt.format(value_after)} (now "
                f"{fmt.format(value_before or 0.0)}), the limit is {limit_text}"))
    return None


class SnapshotBuilder:
    """Builds an account's ``Portfolio`` from holdings and the market at an instant.

    ``market`` is a ``MarketData`` (spot, quote); ``symbols`` maps each underlying to its
    configured (vol, dividend_yield), the fallbacks when no option quote says better;
    ``correlation`` is the pairwise return correlation of every two underlyings.
    """

    def __init__(self, market, rate: float, symbols: Mapping[str, tuple[float, float]],
                 correlation: float) -> None:
        self.market = market
        self.rate = float(rate)
        self.symbols = dict(symbols)
        self.correlation = float(correlation)

    @classmethod
    def from_config(cls, config, market) -> SnapshotBuilder:
        m = config.market
        return cls(market, m.rate, {s: (c.vol, c.dividend_yield) for s, c in m.symbols.items()},
                   m.sim.correlation)

    def build(self, options: Mapping[Contract, int], shares: Mapping[str, int],
              now: datetime) -> Portfolio:
        """The portfolio holding ``options`` (contract -> signed contracts) and ``shares``
        (ticker -> signed shares) at ``now``. DataError if a quote or spot is unusable."""
        return self.build_many([(options, shares)], now)[0]

    def build_many(self, books: Iterable[tuple[Mapping[Contract, int], Mapping[str, int]]],
                   now: datetime, marks: Mapping[str, float] | None = None,
                   spots: Mapping[str, float] | None = None) -> list[Portfolio]:
        """Several books at the same instant (e.g. before and after a trade), each contract
        quoted and its implied volatility solved once. ``marks`` (OCC -> mid) and ``spots``
        (symbol -> price) observed at ``now`` by the caller are used where given."""
        marks, given = dict(marks or {}), dict(spots or {})
        books = [({c: q for c, q in o.items() if q}, {s: q for s, q in sh.items() if q})
                 for o, sh in books]
        contracts = sorted({c for o, _ in books for c in o}, key=lambda c: c.occ)
        # An option priced off a future (VIX) is measured on its expiry's future.
        on = {c: forward_symbol(c.underlying, c.expiry) for c in contracts
              if c.underlying in FORWARD_PRICED}
        names = {on.get(c, c.underlying) for c in contracts} | {s for _, sh in books for s in sh}
        if BENCHMARK in self.symbols:
            names.add(BENCHMARK)
        mids = {c: _positive(marks[c.occ], c.occ) if c.occ in marks
                else self.market.quote(c, now).mid for c in contracts}
        forwards = self._forwards(on, mids, marks, now)
        spots = {s: forwards[s] if s in forwards
                 else _positive(given[s], s) if s in given else float(self.market.spot(s, now))
                 for s in sorted(names)}
        iv: dict[Contract, float] = {}
        if contracts:
            strike, years, is_call = contract_arrays(contracts, now)
            spot = np.array([spots[on.get(c, c.underlying)] for c in contracts])
            # Black-76 on the future: Black-Scholes with the dividend yield at the rate.
            q = np.array([self.rate if c in on else self._spec(c.underlying)[1]
                          for c in contracts])
            vols = implied_vol(np.array([mids[c] for c in contracts]), spot, strike, years,
                               self.rate, q, is_call)
            for c, v in zip(contracts, np.asarray(vols, dtype=float), strict=True):
                if not math.isfinite(v) or v <= 0:
                    raise DataError(f"no usable implied volatility for {c.occ} at "
                                    f"{now.isoformat()} (mid outside the no-arbitrage bounds)")
                iv[c] = float(min(v, 5.0))
        # Each underlying's return volatility: the implied volatility of the quoted option
        # nearest the money (the same for every book, so before/after differ by the trade only).
        underlyings = {}
        for s in sorted(names):
            vol, q = self._spec(s)
            if s in forwards:
                q = self.rate
            near = [c for c in contracts if on.get(c, c.underlying) == s]
            if near:
                vol = iv[min(near, key=lambda c: (abs(c.strike - spots[s]), c.expiry, c.occ))]
            underlyings[s] = UnderlyingState(s, spots[s], vol, q)
        pairs = {(a, b): self._correlation(a, b) for a in underlyings for b in underlyings
                 if a < b}
        out = []
        for held, shares in books:
            holdings = [Holding(c.occ, held[c], iv=iv[c], on=on.get(c))
                        for c in sorted(held, key=lambda c: c.occ)]
            holdings += [Holding(s, q) for s, q in sorted(shares.items())]
            out.append(Portfolio(now, self.rate, underlyings, tuple(holdings), pairs))
        return out

    def _forwards(self, on: Mapping[Contract, str], mids: Mapping[Contract, float],
                  marks: Mapping[str, float], now: datetime) -> dict[str, float]:
        """Each future's price (``thetadesk.vix.parity_forward``) from the call and put mids at
        the strike of one held option on it (the other side quoted from the market)."""
        out: dict[str, float] = {}
        for c in sorted(on, key=lambda c: c.occ):
            name = on[c]
            if name in out:
                continue
            other = Contract(c.underlying, c.expiry, Right.PUT if c.is_call else Right.CALL,
                             c.strike, c.multiplier)
            other_mid = (_positive(marks[other.occ], other.occ) if other.occ in marks
                         else self.market.quote(other, now).mid)
            call, put = (mids[c], other_mid) if c.is_call else (other_mid, mids[c])
            years = (expiry_instant(c.expiry, c.underlying) - now).total_seconds() / (
                365.0 * 86400.0)
            price = parity_forward(call, put, c.strike, self.rate, years)
            if not (math.isfinite(price) and price > 0):
                raise DataError(f"no usable {name} future from the {c.strike:g} call and put "
                                f"mids ({call:.2f}, {put:.2f}) at {now.isoformat()}")
            out[name] = price
        return out

    def _correlation(self, a: str, b: str) -> float:
        """The configured correlation of two stocks; a VIX future's with SPY
        (``thetadesk.vix.SPY_CORRELATION``), through SPY with any other stock, with another
        future ``FORWARD_CORRELATION``."""
        fa, fb = is_forward_symbol(a), is_forward_symbol(b)
        if fa and fb:
            return FORWARD_CORRELATION
        if fa or fb:
            stock = b if fa else a
            return SPY_CORRELATION * (1.0 if stock == BENCHMARK else self.correlation)
        return self.correlation

    def _spec(self, symbol: str) -> tuple[float, float]:
        return self.symbols.get(symbol, (0.2, 0.0))


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 < value < math.inf):
        raise DataError(f"price of {name} must be a finite number > 0, got {value!r}")
    return float(value)


def add_legs(options: Mapping[Contract, int], legs: Iterable[Leg], quantity: int,
             ) -> dict[Contract, int]:
    """``options`` with ``quantity`` units of ``legs`` added."""
    out: dict[Contract, int] = defaultdict(int, options)
    for leg in legs:
        out[leg.contract] += leg.ratio * quantity
    return dict(out)
