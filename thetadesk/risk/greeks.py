"""Portfolio Greeks per underlying and in total, beta-weighted delta, and beta estimation.

Units (every figure is for the whole position, in dollars where it is money):

- ``delta``: share-equivalents, the dollars gained per $1.00 rise of the underlying
  (``sum(units * bsm delta)``; a share counts 1, an option contract ``quantity x multiplier``).
- ``gamma``: share-equivalents of delta gained per $1.00 rise of the underlying.
- ``vega``: dollars per 1.00 of implied volatility (divide by 100 for "per vol point").
- ``theta``: dollars per year of calendar time (divide by 365 for "per calendar day").
- ``rho``: dollars per 1.00 of rate (divide by 100 for "per percentage point").
- ``dollar_delta``: ``delta x spot``, dollars per 1.00 RELATIVE move (100%): divide by 100 for
  "dollars per 1% move". Unlike share deltas these add across underlyings.
- ``dollar_gamma``: ``gamma x spot^2``, so a relative move ``x`` changes value by about
  ``dollar_delta x + dollar_gamma x^2 / 2``.

Vega, theta and rho add across underlyings as they are; the total's ``delta`` and ``gamma`` are
sums of share counts of different underlyings, meaningful only for a single-underlying book:
use ``total_dollar_delta`` / ``total_dollar_gamma`` or ``beta_weighted_delta`` across underlyings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from thetadesk.errors import DataError
from thetadesk.models import Greeks
from thetadesk.pricing import bsm_greeks
from thetadesk.risk.portfolio import Portfolio

__all__ = ["PortfolioGreeks", "beta_weighted_delta", "estimate_beta", "portfolio_greeks"]


@dataclass(frozen=True)
class PortfolioGreeks:
    """Position Greeks per underlying (``per_underlying``, units in the module docstring), the
    spots they were taken at, and their total."""

    per_underlying: Mapping[str, Greeks]
    spot: Mapping[str, float]

    @property
    def total(self) -> Greeks:
        return sum(self.per_underlying.values(), Greeks.zero())

    @property
    def dollar_delta(self) -> dict[str, float]:
        return {s: g.delta * self.spot[s] for s, g in self.per_underlying.items()}

    @property
    def dollar_gamma(self) -> dict[str, float]:
        return {s: g.gamma * self.spot[s] ** 2 for s, g in self.per_underlying.items()}

    @property
    def total_dollar_delta(self) -> float:
        return float(sum(self.dollar_delta.values()))

    @property
    def total_dollar_gamma(self) -> float:
        return float(sum(self.dollar_gamma.values()))


def portfolio_greeks(portfolio: Portfolio) -> PortfolioGreeks:
    """The portfolio's Greeks per underlying (every underlying of the snapshot, zeros where
    nothing is held) and in total; options at their own IV (else the underlying's vol)."""
    a = portfolio.arrays()
    n = len(portfolio.symbols)
    sums = {name: np.zeros(n) for name in ("delta", "gamma", "vega", "theta", "rho")}
    sums["delta"] += np.bincount(a.share_underlying, weights=a.share_units, minlength=n)
    if a.option_count:
        g = bsm_greeks(a.spot[a.underlying], a.strike, a.years, a.rate, a.iv,
                       a.dividend_yield[a.underlying], a.is_call)
        for name in sums:
            sums[name] += np.bincount(a.underlying, weights=a.units * np.asarray(getattr(g, name)),
                                      minlength=n)
    per = {s: Greeks(*(float(sums[name][i]) for name in ("delta", "gamma", "vega", "theta",
                                                          "rho")))
           for i, s in enumerate(portfolio.symbols)}
    return PortfolioGreeks(per, {s: float(a.spot[i]) for i, s in enumerate(portfolio.symbols)})


def beta_weighted_delta(portfolio: Portfolio | PortfolioGreeks, betas: Mapping[str, float],
                        benchmark: str = "SPY", benchmark_spot: float | None = None) -> float:
    """Delta in benchmark share-equivalents: ``sum_i delta_i x beta_i x S_i / S_benchmark``.

    ``betas`` maps each underlying with a non-zero delta to its beta against ``benchmark``
    (the benchmark itself defaults to 1). ``benchmark_spot`` is needed when the benchmark is not
    an underlying of the portfolio.
    """
    greeks = portfolio if isinstance(portfolio, PortfolioGreeks) else portfolio_greeks(portfolio)
    if benchmark_spot is None:
        if benchmark not in greeks.spot:
            raise DataError(f"benchmark {benchmark} is not an underlying of the portfolio: "
                            "pass benchmark_spot")
        benchmark_spot = greeks.spot[benchmark]
    if not isinstance(benchmark_spot, int | float) or not math.isfinite(benchmark_spot) or (
            benchmark_spot <= 0):
        raise DataError(f"benchmark spot must be a finite number > 0, got {benchmark_spot!r}")
    total = 0.0
    for symbol, g in greeks.per_underlying.items():
        if g.delta == 0.0:
            continue
        beta = betas.get(symbol, 1.0 if symbol == benchmark else None)
        if beta is None:
            raise DataError(f"no beta for {symbol} against {benchmark}")
        if not isinstance(beta, int | float) or not math.isfinite(beta):
            raise DataError(f"beta of {symbol} must be a finite number, got {beta!r}")
        total += g.delta * beta * greeks.spot[symbol] / benchmark_spot
    return total


def estimate_beta(returns_asset, returns_benchmark, window: int = 252) -> float:
    """OLS beta (slope with intercept) of the asset's returns on the benchmark's over the last
    ``window`` observations: ``cov(r_a, r_b) / var(r_b)``. The two series must be aligned
    (same length, same days); NaN or infinite values inside the window are a DataError."""
    ra = np.asarray(returns_asset, dtype=np.float64)
    rb = np.asarray(returns_benchmark, dtype=np.float64)
    if ra.ndim != 1 or rb.ndim != 1:
        raise DataError("beta returns must be one-dimensional arrays")
    if len(ra) != len(rb):
        raise DataError(f"beta returns must be aligned: asset has {len(ra)}, benchmark "
                        f"{len(rb)}")
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise DataError(f"beta window must be an integer >= 2, got {window!r}")
    if len(ra) < window:
        raise DataError(f"beta window {window} is longer than the {len(ra)} returns given")
    ra, rb = ra[-window:], rb[-window:]
    if not (np.isfinite(ra).all() and np.isfinite(rb).all()):
        raise DataError(f"beta returns contain NaN or infinite values in the last {window}")
    db = rb - rb.mean()
    var = float(db @ db)
    if var <= 0.0:
        raise DataError("benchmark returns have zero variance over the window")
    return float(((ra - ra.mean()) @ db) / var)
