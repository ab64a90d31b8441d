"""Value at Risk and Expected Shortfall of a portfolio snapshot, and of a proposed trade.

Conventions (shared by every method here and by ``thetadesk.risk.montecarlo``):

- VaR and ES are LOSSES reported as POSITIVE dollars (a figure below zero means the portfolio
  gains even in that tail), at levels 95% and 99%, over ``horizon_days`` trading days
  (252 a year; a trading year is a calendar year, so the horizon in the portfolio's 365-day
  years is ``horizon_days / 252`` and options lose that much time value).
- Empirical figures from ``n`` scenario P&Ls: the convention of ``thetadesk.risk.montecarlo``
  (its ``measures`` computes the 95%/99% figures here; ``var_es_from_pnl`` is the same rule at
  any level). Sort the losses ``L = -P&L`` ascending, ``L(1) <= ... <= L(n)``, and let
  ``k = ceil(p n)`` (at least 1): ``VaR_p = L(k)``, the inverted-CDF p-quantile of the loss
  (the smallest loss that at least a fraction p of scenarios do not exceed), and
  ``ES_p = mean(L(k), ..., L(n))``, the mean of the ``n - k + 1`` losses at or beyond VaR, so
  ``ES_p >= VaR_p`` by construction. (500 scenarios at 99%: VaR is the 6th largest loss, ES the
  mean of the 6 largest.)

Three methods here (the Monte Carlo one lives in ``thetadesk.risk.montecarlo``):

- ``historical_var``: historical simulation with full revaluation (``revalue``) on the
  underlyings' own aligned daily log returns, optionally filtered (EWMA volatility rescaling).
- ``garch_filtered_var``: filtered historical simulation with GJR-GARCH(1,1) volatility
  (Barone-Adesi et al. 1999): today's conditional volatility times the window's standardized
  residuals, fully revalued.
- ``delta_gamma_vega_var``: the delta-gamma(-vega) quadratic approximation of P&L in normal
  risk factors, by Cornish-Fisher on its exact first four cumulants, or simulated.
- ``incremental``: any measure with and without a proposed trade.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from thetadesk.errors import DataError
from thetadesk.pricing import bsm_greeks
from thetadesk.risk.greeks import PortfolioGreeks, portfolio_greeks
from thetadesk.risk.montecarlo import measures as mc_measures
from thetadesk.risk.portfolio import Holding, Portfolio, revalue

__all__ = [
    "TRADING_DAYS",
    "GjrGarchParams",
    "QuadraticPnL",
    "RiskFigures",
    "delta_gamma_vega_var",
    "ewma_rescale",
    "fit_gjr_garch",
    "garch_filtered_var",
    "gjr_garch_filter",
    "historical_var",
    "incremental",
    "quadratic_pnl",
    "var_es_from_pnl",
]

TRADING_DAYS = 252
_NORMAL = NormalDist()  # scipy.stats.norm's scalar calls cost ~0.1 ms each; this is exact too
LEVELS = (0.95, 0.99)
_CHUNK = 20_000  # scenarios per revalue call: bounds memory at chunk x options floats


@dataclass(frozen=True, slots=True)
class RiskFigures:
    """VaR and ES at 95% and 99% as positive dollars of loss over ``horizon_days`` trading
    days, the ``method`` that produced them and the number of ``scenarios`` (None for a closed
    form)."""

    var95: float
    var99: float
    es95: float
    es99: float
    method: str
    horizon_days: int
    scenarios: int | None = None

    def var(self, level: float) -> float:
        return {0.95: self.var95, 0.99: self.var99}[level]

    def es(self, level: float) -> float:
        return {0.95: self.es95, 0.99: self.es99}[level]

    def minus(self, other: RiskFigures) -> RiskFigures:
        """Field-wise ``self - other`` (the incremental figures of a trade)."""
        return RiskFigures(self.var95 - other.var95, self.var99 - other.var99,
                           self.es95 - other.es95, self.es99 - other.es99,
                           f"incremental {self.method}", self.horizon_days, self.scenarios)


def _k(level: float, n: int) -> int:
    # round() first so that e.g. 0.99 * 500 landing a hair above 495 still counts as 495.
    return max(1, math.ceil(round(level * n, 9)))


def var_es_from_pnl(pnl, levels: Iterable[float] = LEVELS) -> dict[float, tuple[float, float]]:
    """``{level: (VaR, ES)}`` of scenario P&Ls (dollars, losses negative) as positive losses,
    by the convention of ``thetadesk.risk.montecarlo.measures`` at any level: with the losses
    sorted ascending and ``k = ceil(p n)`` (at least 1), ``VaR_p = L(k)`` and
    ``ES_p = mean(L(k..n))``. ES >= VaR by construction."""
    pnl = np.asarray(pnl, dtype=np.float64).ravel()
    n = len(pnl)
    if n == 0:
        raise DataError("VaR needs at least one scenario P&L")
    if not np.isfinite(pnl).all():
        raise DataError("scenario P&Ls contain NaN or infinite values")
    losses = np.sort(-pnl)
    tail_sums = np.cumsum(losses[::-1])[::-1]  # tail_sums[i] = sum(losses[i:])
    out = {}
    for level in levels:
        if not 0.0 < level < 1.0:
            raise DataError(f"VaR level must be in (0, 1), got {level!r}")
        k = _k(level, n)
        out[level] = (float(losses[k - 1]), float(tail_sums[k - 1] / (n - k + 1)))
    return out


def _figures(pnl: np.ndarray, method: str, horizon_days: int) -> RiskFigures:
    pnl = np.asarray(pnl, dtype=np.float64)
    if not np.isfinite(pnl).all():
        raise DataError("scenario P&Ls contain NaN or infinite values")
    m = mc_measures(pnl)
    return RiskFigures(m.var95, m.var99, m.es95, m.es99, method, horizon_days, m.scenarios)


def _horizon(horizon_days: object) -> int:
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int | np.integer) or (
            horizon_days < 1):
        raise DataError(f"horizon_days must be an integer >= 1, got {horizon_days!r}")
    return int(horizon_days)


def _matrix(name: str, series: Mapping[str, object], symbols: tuple[str, ...],
            window: int | None) -> np.ndarray:
    missing = [s for s in symbols if s not in series]
    if missing:
        raise DataError(f"{name} missing for {', '.join(missing)}")
    cols = [np.asarray(series[s], dtype=np.float64) for s in symbols]
    for s, c in zip(symbols, cols, strict=True):
        if c.ndim != 1:
            raise DataError(f"{name} of {s} must be one-dimensional")
    lengths = {len(c) for c in cols}
    if len(lengths) != 1:
        raise DataError(f"{name} must be aligned (same length): got "
                        + ", ".join(f"{s} {len(c)}" for s, c in zip(symbols, cols, strict=True)))
    m = np.column_stack(cols)
    if window is not None:
        if len(m) < window:
            raise DataError(f"{name} hold {len(m)} days, fewer than the window of {window}")
        m = m[-window:]
    if not np.isfinite(m).all():
        raise DataError(f"{name} contain NaN or infinite values")
    return m


def ewma_rescale(returns: np.ndarray, lam: float = 0.94) -> np.ndarray:
    """Filtered historical simulation (Hull and White 1998): each day's return divided by the
    EWMA volatility forecast made the day before and multiplied by today's forecast for
    tomorrow, per column. ``sigma2_t = lam sigma2_{t-1} + (1 - lam) r_{t-1}^2``, seeded with the
    mean square return of the whole sample (forgotten after ~100 days at lam 0.94)."""
    r = np.asarray(returns, dtype=np.float64)
    r2 = r * r
    seed = r2.mean(axis=0)
    from scipy.signal import lfilter  # here: scipy.signal costs every actor ~40 MB and ~1 s

    y, _ = lfilter([1.0 - lam], [1.0, -lam], r2, axis=0, zi=(lam * seed)[None, :])
    before = np.vstack([seed[None, :], y[:-1]])  # the forecast for each day, made the day before
    forecast = y[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(before > 0.0, np.sqrt(forecast / before), 0.0)
    return r * scale


def historical_var(portfolio: Portfolio, returns: Mapping[str, object], horizon_days: int = 1,
                   window: int | None = None,
                   vol_scaling: Literal["none", "ewma"] = "none",
                   vol_returns: Mapping[str, object] | None = None,
                   ewma_lambda: float = 0.94) -> RiskFigures:
    """Historical-simulation VaR/ES with full revaluation.

    ``returns``: per underlying symbol, aligned daily LOG returns (oldest first, same days for
    every symbol; extra symbols are ignored); the last ``window`` are used (all if None).
    ``vol_scaling="ewma"`` rescales each underlying's returns to today's EWMA volatility
    (``ewma_rescale``, lambda ``ewma_lambda``) before use: filtered historical simulation.
    ``vol_returns``: optional aligned daily log changes of each underlying's implied
    volatility (e.g. of the VIX); the scenario's IV factor is their exponentiated sum, else 1.
    They are not rescaled.

    Horizon: a ``horizon_days`` scenario is a sum of ``horizon_days`` consecutive daily log
    returns, overlapping (``n - h + 1`` scenarios; for one day, the daily returns themselves);
    spot factor ``exp(sum)``, revalued ``horizon_days / 252`` years ahead (theta included).
    Overlapping sums are dependent and thin out the tail for long horizons; scale a one-day
    figure yourself if you prefer the square-root-of-time rule.
    """
    h = _horizon(horizon_days)
    if window is not None and (isinstance(window, bool) or not isinstance(
            window, int | np.integer) or window < 2):
        raise DataError(f"window must be an integer >= 2, got {window!r}")
    if vol_scaling not in ("none", "ewma"):
        raise DataError(f"vol_scaling must be 'none' or 'ewma', got {vol_scaling!r}")
    if not 0.0 < ewma_lambda < 1.0:
        raise DataError(f"ewma_lambda must be in (0, 1), got {ewma_lambda!r}")
    symbols = portfolio.symbols
    r = _matrix("returns", returns, symbols, window)
    if vol_scaling == "ewma":
        r = ewma_rescale(r, ewma_lambda)
    v = None
    if vol_returns is not None:
        v = _matrix("vol_returns", vol_returns, symbols, window)
        if len(v) != len(r):
            raise DataError(f"vol_returns hold {len(v)} days, returns {len(r)}")
    if len(r) < h + 1:
        raise DataError(f"{len(r)} daily returns are too few for a {h}-day horizon")
    spot_log = _overlapping(r, h)
    vol_factor = None if v is None else np.exp(_overlapping(v, h))
    spot_factor = np.exp(spot_log)
    arrays = portfolio.arrays()
    years = h / TRADING_DAYS
    pnl = np.concatenate([
        revalue(arrays, spot_factor[i:i + _CHUNK],
                None if vol_factor is None else vol_factor[i:i + _CHUNK], years)
        for i in range(0, len(spot_factor), _CHUNK)])
    method = "historical" + (" ewma" if vol_scaling == "ewma" else "")
    return _figures(pnl, method, h)


@dataclass(frozen=True, slots=True)
class GjrGarchParams:
    """GJR-GARCH(1,1) with a constant mean, in units of daily log returns (not percent):
    ``r_t = mu + e_t``, ``sigma2_t = omega + (alpha + gamma 1[e_{t-1} < 0]) e_{t-1}^2
    + beta sigma2_{t-1}``. ``dist`` names the innovation density of the fit (its shape
    parameters are not needed here: the filtered simulation uses the empirical residuals)."""

    mu: float
    omega: float
    alpha: float
    gamma: float
    beta: float
    dist: str = "t"

    @property
    def persistence(self) -> float:
        return self.alpha + 0.5 * self.gamma + self.beta


def fit_gjr_garch(returns, dist: Literal["normal", "t", "skewt"] = "t") -> GjrGarchParams:
    """Maximum-likelihood GJR-GARCH(1,1) (constant mean, ``dist`` innovations) of daily log
    returns by the ``arch`` package (``arch_model(100 r, vol="GARCH", p=1, o=1, q=1)``; fitted
    in percent for the optimiser, returned in return units). Uses only the returns given: the
    caller chooses the estimation window (and so guarantees there is no look-ahead)."""
    if dist not in ("normal", "t", "skewt"):
        raise DataError(f"dist must be 'normal', 't' or 'skewt', got {dist!r}")
    r = np.asarray(returns, dtype=np.float64).ravel()
    if len(r) < 100:
        raise DataError(f"a GARCH fit needs at least 100 returns, got {len(r)}")
    if not np.isfinite(r).all():
        raise DataError("returns contain NaN or infinite values")
    import warnings

    from arch import arch_model
    from arch.utility.exceptions import ConvergenceWarning

    model = arch_model(100.0 * r, mean="Constant", vol="GARCH", p=1, o=1, q=1, dist=dist)
    with warnings.catch_warnings():
        # A flat likelihood near the boundary may end with a convergence warning; the
        # estimates are still the optimiser's best point and are checked below.
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = model.fit(disp="off", show_warning=False)
    p = res.params
    out = GjrGarchParams(float(p["mu"]) / 100.0, float(p["omega"]) / 1e4, float(p["alpha[1]"]),
                         float(p["gamma[1]"]), float(p["beta[1]"]), dist)
    if not (np.isfinite([out.mu, out.omega, out.alpha, out.gamma, out.beta]).all()
            and out.omega > 0.0):
        raise DataError(f"GJR-GARCH fit failed: {out}")
    return out


def gjr_garch_filter(returns, params: GjrGarchParams,
                     seed: float | None = None) -> tuple[np.ndarray, float]:
    """Conditional variances of ``returns`` under ``params`` and the one-day-ahead forecast.

    Returns ``(sigma2, sigma2_next)``: ``sigma2[t]`` is the variance of ``returns[t]`` forecast
    from the seed and ``returns[:t]`` only, ``sigma2_next`` the forecast for the day after the
    last return. ``seed`` is ``sigma2[0]``; by default the mean squared demeaned return of the
    whole sample given (so pass only past returns; the seed is forgotten at rate
    ``persistence``, ~0.98 a day for equity indices, so give a few hundred days)."""
    r = np.asarray(returns, dtype=np.float64).ravel()
    if len(r) < 2:
        raise DataError("the GARCH filter needs at least 2 returns")
    e = r - params.mu
    e2 = e * e
    s0 = float(e2.mean()) if seed is None else float(seed)
    if not s0 > 0.0:
        raise DataError(f"the GARCH filter needs a positive seed variance, got {s0!r}")
    shock = params.omega + (params.alpha + params.gamma * (e < 0.0)) * e2
    # sigma2[t + 1] = shock[t] + beta sigma2[t]: linear in sigma2, so one IIR filter.
    from scipy.signal import lfilter

    y, _ = lfilter([1.0], [1.0, -params.beta], shock, zi=[params.beta * s0])
    sigma2 = np.concatenate([[s0], y[:-1]])
    return sigma2, float(y[-1])


def garch_filtered_var(portfolio: Portfolio, returns: Mapping[str, object],
                       window: int | None = None,
                       params: Mapping[str, GjrGarchParams] | None = None,
                       dist: Literal["normal", "t", "skewt"] = "t",
                       horizon_days: int = 1) -> RiskFigures:
    """GARCH-filtered historical simulation VaR/ES with full revaluation (Barone-Adesi,
    Giannopoulos and Vosper 1999; Hull and White 1998 with GJR-GARCH in place of EWMA).

    ``returns``: per underlying, aligned daily LOG returns up to and including the last
    close (oldest first); the last ``window`` are used (all if None). For each underlying the
    GJR-GARCH(1,1) ``params`` (fitted on the same window by ``fit_gjr_garch`` with ``dist``
    innovations if not given) filter the window (``gjr_garch_filter``) into standardized
    residuals ``z_t = (r_t - mu) / sigma_t`` and tomorrow's volatility ``sigma_{T+1}``; the
    scenarios are ``mu + sigma_{T+1} z_t`` for every day of the window (the same days for every
    underlying, so cross-correlation and fat tails come from the data), spot factor
    ``exp(.)``, revalued one day ahead through ``revalue``. ``horizon_days > 1`` uses
    overlapping sums of the rescaled returns, as ``historical_var`` does.

    No look-ahead: the figure depends only on the returns passed (and on ``params``, which a
    backtest must have fitted on earlier data; refitting every K days and filtering in between
    with the last fit, as ``scripts/var_backtest.py`` does, keeps that true).
    """
    h = _horizon(horizon_days)
    if window is not None and (isinstance(window, bool) or not isinstance(
            window, int | np.integer) or window < 100):
        raise DataError(f"window must be an integer >= 100, got {window!r}")
    symbols = portfolio.symbols
    r = _matrix("returns", returns, symbols, window)
    if len(r) < h + 1:
        raise DataError(f"{len(r)} daily returns are too few for a {h}-day horizon")
    scaled = np.empty_like(r)
    for j, s in enumerate(symbols):
        p = params[s] if params is not None and s in params else fit_gjr_garch(r[:, j], dist)
        sigma2, sigma2_next = gjr_garch_filter(r[:, j], p)
        scaled[:, j] = p.mu + math.sqrt(sigma2_next) * (r[:, j] - p.mu) / np.sqrt(sigma2)
    spot_factor = np.exp(_overlapping(scaled, h))
    arrays = portfolio.arrays()
    years = h / TRADING_DAYS
    pnl = np.concatenate([revalue(arrays, spot_factor[i:i + _CHUNK], None, years)
                          for i in range(0, len(spot_factor), _CHUNK)])
    return _figures(pnl, "historical gjr-garch", h)


def _overlapping(x: np.ndarray, h: int) -> np.ndarray:
    if h == 1:
        return x
    c = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    return c[h:] - c[:-h]


def _per_symbol(name: str, value, symbols: tuple[str, ...]) -> np.ndarray:
    if isinstance(value, Mapping):
        missing = [s for s in symbols if s not in value]
        if missing:
            raise DataError(f"{name} missing for {', '.join(missing)}")
        out = np.array([value[s] for s in symbols], dtype=np.float64)
    else:
        out = np.full(len(symbols), value, dtype=np.float64)
    if not np.isfinite(out).all() or (out < 0).any():
        raise DataError(f"{name} must be finite and >= 0, got {value!r}")
    return out


@dataclass(frozen=True, slots=True)
class QuadraticPnL:
    """P&L ~ ``constant + b'z + z' diag(half_gamma) z`` for normal factors ``z ~ N(0, cov)``
    (dollars)."""

    constant: float
    b: np.ndarray
    half_gamma: np.ndarray
    cov: np.ndarray

    def root(self) -> np.ndarray:
        # A square root of cov that tolerates singular (perfectly correlated) factors.
        e, u = np.linalg.eigh(self.cov)
        return u * np.sqrt(np.clip(e, 0.0, None))[None, :]

    def cumulants(self) -> tuple[float, float, float, float]:
        """The exact first four cumulants: with ``cov = L L'`` and ``L' G L = Q diag(l) Q'``
        (``G = 2 diag(half_gamma)``), P&L = c + sum_j (beta_j w_j + l_j w_j^2 / 2) with
        independent standard normal ``w`` and ``beta = Q' L' b``, so
        ``k1 = c + sum l/2``, ``k2 = sum(beta^2 + l^2/2)``, ``k3 = sum(3 beta^2 l + l^3)``,
        ``k4 = sum(12 beta^2 l^2 + 3 l^4)``."""
        root = self.root()
        a = root.T @ (2.0 * self.half_gamma[:, None] * root)
        lam, q = np.linalg.eigh(0.5 * (a + a.T))
        beta = q.T @ (root.T @ self.b)
        b2 = beta * beta
        return (float(self.constant + 0.5 * lam.sum()), float(np.sum(b2 + 0.5 * lam**2)),
                float(np.sum(3.0 * b2 * lam + lam**3)), float(np.sum(12.0 * b2 * lam**2
                                                                     + 3.0 * lam**4)))

    def simulate(self, n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, len(self.b))) @ self.root().T
        return self.constant + z @ self.b + (z * z) @ self.half_gamma


def _cornish_fisher(k1: float, k2: float, k3: float, k4: float, level: float
                    ) -> tuple[float, float]:
    alpha = 1.0 - level
    if k2 <= 0.0:
        return -k1, -k1
    sd = math.sqrt(k2)
    s = k3 / k2**1.5
    k = k4 / k2**2
    z = _NORMAL.inv_cdf(alpha)
    w = (z + (z * z - 1.0) * s / 6.0 + (z**3 - 3.0 * z) * k / 24.0
         - (2.0 * z**3 - 5.0 * z) * s * s / 36.0)
    var = -(k1 + sd * w)
    # ES: the mean of the Cornish-Fisher quantile over the tail, in closed form because the
    # expansion w(z) = a0 + a1 z + a2 z^2 + a3 z^3 is a cubic and int_{-inf}^{a} z^n phi(z) dz
    # is elementary for n <= 3.
    a0 = -s / 6.0
    a1 = 1.0 - 3.0 * k / 24.0 + 5.0 * s * s / 36.0
    a2 = s / 6.0
    a3 = k / 24.0 - 2.0 * s * s / 36.0
    phi, cdf = _NORMAL.pdf(z), alpha
    m0, m1, m2, m3 = cdf, -phi, cdf - z * phi, -(z * z + 2.0) * phi
    es = -(k1 + sd * (a0 * m0 + a1 * m1 + a2 * m2 + a3 * m3) / alpha)
    return var, es


def quadratic_pnl(portfolio: Portfolio, horizon_days: int = 1,
                  vol_of_vol: float | Mapping[str, float] | None = None,
                  spot_vol_correlation: float = 0.0,
                  greeks: PortfolioGreeks | None = None) -> QuadraticPnL:
    """The delta-gamma(-vega) P&L of ``delta_gamma_vega_var`` as a quadratic form.
    ``greeks``: the portfolio's own Greeks if the caller has them already."""
    h = _horizon(horizon_days)
    dt = h / TRADING_DAYS
    symbols = portfolio.symbols
    g = portfolio_greeks(portfolio) if greeks is None else greeks
    dd = np.array([g.dollar_delta[s] for s in symbols])
    dg = np.array([g.dollar_gamma[s] for s in symbols])
    corr = portfolio.correlation_matrix()
    sd = portfolio.vols() * math.sqrt(dt)
    cov = corr * np.outer(sd, sd)
    constant = g.total.theta * dt
    if vol_of_vol is None:
        return QuadraticPnL(constant, dd, 0.5 * dg, cov)
    if not -1.0 <= spot_vol_correlation <= 1.0:
        raise DataError(f"spot_vol_correlation must be in [-1, 1], got "
                        f"{spot_vol_correlation!r}")
    vov = _per_symbol("vol_of_vol", vol_of_vol, symbols) * math.sqrt(dt)
    # Vega per 1.00 RELATIVE change of each underlying's implied volatilities: units x vega x iv.
    a = portfolio.arrays()
    rel_vega = np.zeros(len(symbols))
    if a.option_count:
        vega = bsm_greeks(a.spot[a.underlying], a.strike, a.years, a.rate, a.iv,
                          a.dividend_yield[a.underlying], a.is_call).vega
        rel_vega = np.bincount(a.underlying, weights=a.units * np.asarray(vega) * a.iv,
                               minlength=len(symbols))
    # Joint correlation [[R, rho R], [rho R, R]] = [[1, rho], [rho, 1]] (x) R: positive
    # semi-definite whenever R is.
    joint = np.kron(np.array([[1.0, spot_vol_correlation], [spot_vol_correlation, 1.0]]), corr)
    scale = np.concatenate([sd, vov])
    return QuadraticPnL(constant, np.concatenate([dd, rel_vega]),
                        np.concatenate([0.5 * dg, np.zeros(len(symbols))]),
                        joint * np.outer(scale, scale))


def delta_gamma_vega_var(portfolio: Portfolio, horizon_days: int = 1,
                         vol_of_vol: float | Mapping[str, float] | None = None,
                         spot_vol_correlation: float = 0.0,
                         method: Literal["cornish_fisher", "simulate"] = "cornish_fisher",
                         n_sims: int = 100_000, seed: int = 0,
                         greeks: PortfolioGreeks | None = None) -> RiskFigures:
    """VaR/ES of the second-order (delta-gamma-vega) approximation of P&L.

    Risk factors over ``horizon_days`` (``dt = h / 252`` years), jointly normal with mean 0:
    each underlying's relative spot move ``x_i`` (sd ``vol_i sqrt(dt)``, the portfolio's
    correlation matrix ``R``) and, if ``vol_of_vol`` is given (annualised sd of RELATIVE implied
    volatility changes, a number or per symbol; ~1.0 for SPY's VIX), the relative change ``y_i``
    of its implied volatilities (correlation ``R`` among themselves, ``spot_vol_correlation x R``
    with spots; around -0.7 for index options). Without ``vol_of_vol`` vega risk is omitted.

    ``P&L = theta dt + sum_i (dollar_delta_i x_i + dollar_gamma_i x_i^2 / 2 + relvega_i y_i)``
    (``relvega_i`` = sum over the options of units x vega x iv). Cross-gammas, vanna and volga
    are ignored; expiry inside the horizon is not modelled (use ``historical_var``).

    ``method="cornish_fisher"``: the quantile from the exact first four cumulants of this
    quadratic form (``QuadraticPnL.cumulants``) by the Cornish-Fisher expansion, ES as the mean
    of that quantile function over the tail (closed form). With no gamma it is exactly the
    normal VaR ``z_p sd``. The expansion can misbehave for very skewed books (it is not monotone
    beyond |skew| ~ 1.5); ``method="simulate"`` draws ``n_sims`` factor scenarios (seeded) and
    applies ``var_es_from_pnl``.
    """
    q = quadratic_pnl(portfolio, horizon_days, vol_of_vol, spot_vol_correlation, greeks)
    h = _horizon(horizon_days)
    if method == "simulate":
        if isinstance(n_sims, bool) or not isinstance(n_sims, int) or n_sims < 100:
            raise DataError(f"n_sims must be an integer >= 100, got {n_sims!r}")
        return _figures(q.simulate(n_sims, np.random.default_rng(seed)),
                        "delta-gamma-vega simulated", h)
    if method != "cornish_fisher":
        raise DataError(f"method must be 'cornish_fisher' or 'simulate', got {method!r}")
    k = q.cumulants()
    v95, e95 = _cornish_fisher(*k, 0.95)
    v99, e99 = _cornish_fisher(*k, 0.99)
    return RiskFigures(v95, v99, e95, e99, "delta-gamma-vega cornish-fisher", h, None)


def incremental(measure_fn: Callable[[Portfolio], RiskFigures], portfolio: Portfolio,
                trade_holdings: Iterable[Holding]
                ) -> tuple[RiskFigures, RiskFigures, RiskFigures]:
    """``(before, after, after - before)`` of ``measure_fn`` (e.g.
    ``lambda p: historical_var(p, returns)``) for ``portfolio`` and for it with
    ``trade_holdings`` added. A positive delta means the trade adds risk. Measures that draw
    scenarios must draw the same ones both times (same data, same seed) for the difference to
    mean anything."""
    trade = tuple(trade_holdings)
    before = measure_fn(portfolio)
    after = measure_fn(portfolio.with_holdings((*portfolio.holdings, *trade)))
    return before, after, after.minus(before)
