"""Monte Carlo VaR and ES of a portfolio: chunked scenarios, a fused revaluation kernel, and an
exact reduction. Pure functions; ``actors/stress.py`` fans the chunks out as Ray tasks.

Reproducibility. A run (``MonteCarloPlan``) splits its ``scenarios`` into ``n_chunks`` chunks of
nearly equal length (they differ by at most one scenario); the chunk length is fixed by the
run (the number of scenarios and the number of positions), never by the number of workers.
Chunk ``i`` draws from ``PCG64(SeedSequence(seed, spawn_key=(i,)))``, which is exactly
``SeedSequence(seed).spawn(n_chunks)[i]``, so any partition of the chunks over any number of
workers gives bit-identical P&L vectors, and so bit-identical VaR and ES (on one machine, or
on a cluster whose nodes share the numpy build and CPU family: numpy's ``exp`` takes different
SIMD paths on different CPUs).

Models (``horizon_years = horizon_days / 252``, trading days; the same figure is the calendar
time the options lose, i.e. ``horizon_days * 365/252`` calendar days of 365-day years):

- ``gbm``: each underlying's spot factor is ``exp(-0.5 s^2 h + s sqrt(h) Z)`` with its own vol
  ``s`` and ``Z`` standard normals correlated by the portfolio's correlation matrix (Cholesky; an
  eigen-decomposition square root when the matrix is singular). Implied volatility unchanged.
- ``full``: the same with ``Z`` replaced by a multivariate Student-t with ``T_DOF`` = 4 degrees
  of freedom scaled to unit variance (``Z * sqrt((nu - 2) / chi2_nu)``, one chi-square per
  scenario shared by all underlyings, so crashes are joint), and each underlying's implied
  volatilities move by the factor ``exp(VOL_OF_VOL sqrt(h) (SPOT_VOL_CORR X_u + sqrt(1 -
  SPOT_VOL_CORR^2) E_u))`` where ``X_u`` is that underlying's (unit-variance, fat-tailed) spot
  shock and ``E_u`` independent standard normals: vol-of-vol 1.0 annualised, spot/vol
  correlation -0.7. Both the spot drift (-0.5 s^2 h) and the vol factor's median (1) are those
  of the lognormal model.

Risk measures (losses are positive dollars, ``loss = -pnl``). With the ``n`` losses sorted
ascending ``L(1) <= ... <= L(n)`` and ``k = ceil(p n)``:

- ``VaR_p = L(k)``: the smallest loss that at least a fraction ``p`` of scenarios do not exceed
  (numpy's ``quantile(..., method="inverted_cdf")``);
- ``ES_p = mean(L(k), ..., L(n))``: the mean of the ``n - k + 1`` losses at or beyond VaR (VaR's
  own order statistic counted once), so ``ES_p >= VaR_p`` always.

Both come from the concatenated P&L of all chunks with ``np.partition`` (exact, not averaged per
chunk).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from thetadesk.errors import DataError
from thetadesk.risk.portfolio import Portfolio, PortfolioArrays

__all__ = [
    "MODELS",
    "SPOT_VOL_CORR",
    "TRADING_DAYS",
    "T_DOF",
    "VOL_OF_VOL",
    "MonteCarloPlan",
    "RiskMeasures",
    "StressResult",
    "chunk_pnl",
    "chunks_pnl",
    "correlation_root",
    "make_plan",
    "measures",
    "result_from",
    "revalue_fused",
    "run_local",
    "scenario_factors",
    "split_chunks",
]

MODELS = ("gbm", "full")
TRADING_DAYS = 252.0
T_DOF = 4.0
VOL_OF_VOL = 1.0
SPOT_VOL_CORR = -0.7
# A chunk carries about this many option revaluations (tens of ms of work), within these bounds.
_CHUNK_WORK = 2_000_000
_CHUNK_MIN, _CHUNK_MAX = 16_384, 262_144
_MIN_TOTAL_VOL = 1e-100  # as thetadesk.pricing: below it an option is worth its intrinsic value
_INV_SQRT2 = 1.0 / math.sqrt(2.0)

# The kernel below is plain Python that numba compiles on the first revaluation in a process
# (``thetadesk.pricing.compile_namespace``): importing this module loads no numba, so a process
# that only imports it (an account deserialising the risk actor's handle) stays without it.
_KERNELS = ("_ncdf", "_fused")
_compiled: dict[str, object] = {}
_compile_lock = threading.Lock()


def _fused_kernel():
    if not _compiled:
        with _compile_lock:
            if not _compiled:
                from thetadesk.pricing import compile_namespace

                _compiled.update(compile_namespace(sys.modules[__name__], _KERNELS))
    return _compiled["_fused"]


# ---------------------------------------------------------------------------------------------
# The fused revaluation kernel


class _Prepared(NamedTuple):
    """Per-option constants at the horizon (T' = max(T - h, 0)): ``a = ln(S/K) + (r - q) T'``,
    ``sd = S e^{-qT'}``, ``kd = K e^{-rT'}``, ``w = iv sqrt(T')`` and its inverse, the sign
    ``th`` (+1 call, -1 put); the shares as dollars per unit of spot factor."""

    und: np.ndarray
    a: np.ndarray
    sd: np.ndarray
    kd: np.ndarray
    w: np.ndarray
    inv_w: np.ndarray
    th: np.ndarray
    units: np.ndarray
    share_und: np.ndarray
    share_dollars: np.ndarray
    base_value: float


def _prepare(arrays: PortfolioArrays, horizon_years: float) -> _Prepared:
    und = np.ascontiguousarray(arrays.underlying, dtype=np.int64)
    t = np.maximum(arrays.years - horizon_years, 0.0)
    spot = arrays.spot[und]
    q = arrays.dividend_yield[und]
    r = arrays.rate
    w = arrays.iv * np.sqrt(t)
    with np.errstate(divide="ignore"):
        inv_w = np.where(w > 0.0, 1.0 / np.where(w > 0.0, w, 1.0), 0.0)
    return _Prepared(
        und,
        np.log(spot / arrays.strike) + (r - q) * t,
        spot * np.exp(-q * t),
        arrays.strike * np.exp(-r * t),
        w,
        inv_w,
        np.where(arrays.is_call, 1.0, -1.0),
        np.ascontiguousarray(arrays.units, dtype=np.float64),
        np.ascontiguousarray(arrays.share_underlying, dtype=np.int64),
        arrays.share_units * arrays.spot[arrays.share_underlying],
        float(arrays.base_value),
    )


def _ncdf(z):
    return 0.5 * math.erfc(-z * _INV_SQRT2)


def _fused(log_spot, vol_factor, has_vol, und, a, sd, kd, w, inv_w, th, units, share_und,
           share_dollars, base, out):
    n, m = log_spot.shape
    f = np.empty(m)
    lf = np.empty(m)
    g = np.ones(m)
    ig = np.ones(m)
    for i in range(n):
        for u in range(m):
            lf[u] = log_spot[i, u]
            f[u] = math.exp(lf[u])
            if has_vol:
                g[u] = vol_factor[i, u]
                ig[u] = 1.0 / g[u]
        total = 0.0
        for s in range(share_und.size):
            total += share_dollars[s] * f[share_und[s]]
        for j in range(und.size):
            u = und[j]
            sign = th[j]
            vol = w[j] * g[u]
            if vol < _MIN_TOTAL_VOL:
                price = max(sign * (sd[j] * f[u] - kd[j]), 0.0)
            else:
                d1 = (a[j] + lf[u]) * inv_w[j] * ig[u] + 0.5 * vol
                price = sign * (sd[j] * f[u] * _ncdf(sign * d1) - kd[j] * _ncdf(sign * (d1 - vol)))
            total += units[j] * price
        out[i] = total - base


def _revalue_log(prep: _Prepared, log_spot: np.ndarray,
                 vol_factor: np.ndarray | None) -> np.ndarray:
    log_spot = np.ascontiguousarray(log_spot, dtype=np.float64)
    out = np.empty(log_spot.shape[0])
    vf = log_spot if vol_factor is None else np.ascontiguousarray(vol_factor, dtype=np.float64)
    _fused_kernel()(log_spot, vf, vol_factor is not None, prep.und, prep.a, prep.sd, prep.kd,
                    prep.w, prep.inv_w, prep.th, prep.units, prep.share_und, prep.share_dollars,
                    prep.base_value, out)
    return out


def revalue_fused(arrays: PortfolioArrays, spot_factor: np.ndarray,
                  vol_factor: np.ndarray | None, horizon_years: float = 0.0) -> np.ndarray:
    """``thetadesk.risk.portfolio.revalue`` computed by the fused kernel: the same arguments
    and result (P&L in dollars per scenario), without a scenarios x options array."""
    spot_factor = np.asarray(spot_factor, dtype=np.float64)
    if spot_factor.ndim != 2 or spot_factor.shape[1] != len(arrays.spot):
        raise DataError(f"spot_factor must be (scenarios, {len(arrays.spot)}), "
                        f"got {spot_factor.shape}")
    if vol_factor is not None and np.shape(vol_factor) != spot_factor.shape:
        raise DataError(f"vol_factor must have the shape of spot_factor {spot_factor.shape}, "
                        f"got {np.shape(vol_factor)}")
    with np.errstate(divide="ignore"):
        log_spot = np.log(spot_factor)
    return _revalue_log(_prepare(arrays, float(horizon_years)), log_spot, vol_factor)


# ---------------------------------------------------------------------------------------------
# Scenarios


def correlation_root(corr: np.ndarray) -> np.ndarray:
    """A matrix ``L`` with ``L @ L.T == corr``: Cholesky, or for a positive semi-definite but
    singular matrix the symmetric square root from its eigen-decomposition."""
    corr = np.asarray(corr, dtype=np.float64)
    try:
        return np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(corr)
        return vectors * np.sqrt(np.clip(values, 0.0, None))[None, :]


@dataclass(frozen=True)
class MonteCarloPlan:
    """Everything a chunk needs besides the portfolio arrays: small, so it travels with each
    task. ``vols`` and ``root`` (the correlation's square root) follow ``Portfolio.symbols``."""

    scenarios: int
    n_chunks: int
    seed: int
    model: str
    horizon_years: float
    vols: np.ndarray
    root: np.ndarray

    def bounds(self, index: int) -> tuple[int, int]:
        """The scenarios ``[start, stop)`` of chunk ``index``."""
        return (index * self.scenarios // self.n_chunks,
                (index + 1) * self.scenarios // self.n_chunks)


def make_plan(portfolio: Portfolio, scenarios: int, horizon_days: float, seed: int,
              model: str = "full", chunk_size: int | None = None) -> MonteCarloPlan:
    """The run: ``scenarios`` in chunks of about ``chunk_size`` (default: enough for about 2M
    option revaluations per chunk, between 16,384 and 262,144 scenarios), ``horizon_days``
    trading days (``/ 252`` years), ``model`` ``gbm`` or ``full``."""
    if isinstance(scenarios, bool) or not isinstance(scenarios, int) or scenarios < 1:
        raise DataError(f"scenarios must be a positive integer, got {scenarios!r}")
    if not isinstance(horizon_days, int | float) or not math.isfinite(horizon_days) or (
            horizon_days < 0):
        raise DataError(f"horizon_days must be >= 0, got {horizon_days!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if model not in MODELS:
        raise DataError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    if chunk_size is None:
        options = sum(1 for h in portfolio.holdings if h.is_option)
        chunk_size = min(max(_CHUNK_WORK // (options + 1), _CHUNK_MIN), _CHUNK_MAX)
    if chunk_size < 1:
        raise DataError(f"chunk_size must be >= 1, got {chunk_size!r}")
    return MonteCarloPlan(
        scenarios=scenarios, n_chunks=-(-scenarios // chunk_size), seed=seed, model=model,
        horizon_years=float(horizon_days) / TRADING_DAYS, vols=portfolio.vols(),
        root=correlation_root(portfolio.correlation_matrix()),
    )


def _chunk_rng(plan: MonteCarloPlan, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(plan.seed,
                                                                      spawn_key=(index,))))


def _correlate(z: np.ndarray, root: np.ndarray) -> np.ndarray:
    # z @ root.T with elementwise products and sums in a fixed order: a BLAS matmul may round
    # differently with its thread count (Ray workers run single-threaded, a driver may not).
    x = np.empty_like(z)
    for i in range(root.shape[0]):
        col = z[:, 0] * root[i, 0]
        for j in range(1, root.shape[1]):
            col += z[:, j] * root[i, j]
        x[:, i] = col
    return x


def _log_factors(plan: MonteCarloPlan, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    start, stop = plan.bounds(index)
    n, m = stop - start, len(plan.vols)
    rng = _chunk_rng(plan, index)
    h = plan.horizon_years
    scale = plan.vols * math.sqrt(h)
    x = _correlate(rng.standard_normal((n, m)), plan.root)
    if plan.model == "gbm":
        return x * scale - 0.5 * scale * scale, None
    x *= np.sqrt((T_DOF - 2.0) / rng.chisquare(T_DOF, n))[:, None]
    log_spot = x * scale - 0.5 * scale * scale
    e = rng.standard_normal((n, m))
    rho = SPOT_VOL_CORR
    vol_factor = np.exp(VOL_OF_VOL * math.sqrt(h) * (rho * x + math.sqrt(1.0 - rho * rho) * e))
    return log_spot, vol_factor


def scenario_factors(plan: MonteCarloPlan, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Chunk ``index``'s scenarios as (spot factors, vol factors or None), each (scenarios x
    underlyings): what ``revalue`` takes."""
    log_spot, vol_factor = _log_factors(plan, index)
    return np.exp(log_spot), vol_factor


def chunk_pnl(arrays: PortfolioArrays, plan: MonteCarloPlan, index: int,
              prepared: _Prepared | None = None) -> np.ndarray:
    """P&L in dollars of chunk ``index``'s scenarios."""
    prep = prepared if prepared is not None else _prepare(arrays, plan.horizon_years)
    log_spot, vol_factor = _log_factors(plan, index)
    return _revalue_log(prep, log_spot, vol_factor)


def chunks_pnl(arrays: PortfolioArrays, plan: MonteCarloPlan, start: int,
               stop: int) -> np.ndarray:
    """P&L of chunks ``[start, stop)`` concatenated in chunk order (what one task computes)."""
    prep = _prepare(arrays, plan.horizon_years)
    if stop <= start:
        return np.empty(0)
    lo, hi = plan.bounds(start)[0], plan.bounds(stop - 1)[1]
    out = np.empty(hi - lo)
    for index in range(start, stop):
        a, b = plan.bounds(index)
        out[a - lo:b - lo] = chunk_pnl(arrays, plan, index, prep)
    return out


def split_chunks(n_chunks: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous chunk ranges ``[start, stop)`` for ``parts`` workers, sizes differing by at
    most one; empty ranges dropped."""
    if parts < 1:
        raise DataError(f"workers must be >= 1, got {parts!r}")
    ranges = [(i * n_chunks // parts, (i + 1) * n_chunks // parts) for i in range(parts)]
    return [(a, b) for a, b in ranges if b > a]


# ---------------------------------------------------------------------------------------------
# Reduction


@dataclass(frozen=True)
class RiskMeasures:
    """VaR and ES in dollars (losses positive) at 95% and 99% over ``scenarios``."""

    var95: float
    var99: float
    es95: float
    es99: float
    scenarios: int


def _tail_index(p: float, n: int) -> int:
    # k - 1 for k = ceil(p n), guarded against p n landing a hair above an integer.
    return max(math.ceil(round(p * n, 9)), 1) - 1


def measures(pnl: np.ndarray) -> RiskMeasures:
    """VaR and ES at 95% and 99% of a P&L vector (see the module docstring for the convention)."""
    losses = -np.asarray(pnl, dtype=np.float64)
    n = losses.size
    if n == 0:
        raise DataError("no scenarios to measure")
    k95, k99 = _tail_index(0.95, n), _tail_index(0.99, n)
    part = np.partition(losses, [k95, k99])
    # Partitioned at k95 <= k99, part[k:] holds exactly the n - k largest losses for both k.
    return RiskMeasures(
        var95=float(part[k95]) + 0.0, var99=float(part[k99]) + 0.0,  # no "-0.0"
        es95=float(part[k95:].mean()), es99=float(part[k99:].mean()), scenarios=n,
    )


@dataclass(frozen=True)
class StressResult:
    """A Monte Carlo run's measures and how it ran: ``seconds`` from dispatch to the reduced
    result, ``revaluations_per_s`` = positions x scenarios / seconds, ``task_cpu_seconds`` the
    CPU time of each Ray task (empty for a local run), ``pnl`` the scenarios' P&L if kept."""

    var95: float
    var99: float
    es95: float
    es99: float
    scenarios: int
    positions: int
    workers: int
    seconds: float
    model: str
    seed: int
    horizon_days: float
    chunks: int
    pnl: np.ndarray | None = field(default=None, compare=False, repr=False)
    task_cpu_seconds: tuple[float, ...] = ()

    @property
    def revaluations_per_s(self) -> float:
        return self.positions * self.scenarios / self.seconds if self.seconds > 0 else math.inf

    def as_dict(self) -> dict[str, object]:
        return {
            "var95": self.var95, "var99": self.var99, "es95": self.es95, "es99": self.es99,
            "scenarios": self.scenarios, "positions": self.positions, "workers": self.workers,
            "seconds": self.seconds, "revaluations_per_s": self.revaluations_per_s,
            "model": self.model, "seed": self.seed, "horizon_days": self.horizon_days,
            "chunks": self.chunks, "task_cpu_seconds": list(self.task_cpu_seconds),
        }


def result_from(pnl: np.ndarray, plan: MonteCarloPlan, portfolio: Portfolio, workers: int,
                horizon_days: float, started: float, keep_pnl: bool = False) -> StressResult:
    """The ``StressResult`` of a run's concatenated P&L; ``seconds`` since ``started``
    (a ``time.perf_counter()`` reading), the reduction included."""
    m = measures(pnl)
    seconds = time.perf_counter() - started
    return StressResult(m.var95, m.var99, m.es95, m.es99, m.scenarios, len(portfolio.holdings),
                        workers, seconds, plan.model, plan.seed, float(horizon_days),
                        plan.n_chunks, pnl if keep_pnl else None)


def run_local(portfolio: Portfolio, scenarios: int, horizon_days: float = 1.0, seed: int = 0,
              workers: int = 1, model: str = "full", chunk_size: int | None = None,
              keep_pnl: bool = False) -> StressResult:
    """The Ray run computed in this process: the chunks split into ``workers`` contiguous
    ranges exactly as ``actors.stress.run_stress`` splits them, computed one after another."""
    started = time.perf_counter()
    plan = make_plan(portfolio, scenarios, horizon_days, seed, model, chunk_size)
    arrays = portfolio.arrays()
    parts = [chunks_pnl(arrays, plan, a, b) for a, b in split_chunks(plan.n_chunks, workers)]
    return result_from(np.concatenate(parts), plan, portfolio, workers, horizon_days, started,
                       keep_pnl)
