"""How much a Sharpe ratio can be trusted: the probabilistic and the deflated Sharpe ratio.

Pure functions, no I/O. Sources:

- PSR: Bailey, D. H. and M. Lopez de Prado (2012), "The Sharpe Ratio Efficient Frontier",
  Journal of Risk 15(2). The probability that the true Sharpe ratio exceeds a benchmark
  ``SR*``, given the observed one, the track's length and its returns' skewness and kurtosis::

      PSR(SR*) = Phi( (SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) )

- DSR: Bailey, D. H. and M. Lopez de Prado (2014), "The Deflated Sharpe Ratio: Correcting for
  Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management
  40(5), 94-107. The PSR against the Sharpe ratio the best of ``N`` independent trials would
  show by luck alone (true Sharpe 0 for all of them)::

      SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))
      DSR = PSR(SR0)

  with ``V`` the variance of the trials' Sharpe ratios, ``gamma`` the Euler-Mascheroni
  constant and ``e`` Euler's number.

Conventions:

- FREQUENCY: inside the formulas every Sharpe ratio is PER PERIOD (here daily), never
  annualised: ``SR = mean(r) / std(r)`` of the ``T`` daily returns (sample standard deviation),
  and ``V`` is the variance of per-period Sharpe ratios. ``deflated_sharpe`` takes the trials'
  Sharpe ratios ANNUALISED (as ``results.json`` reports them, x sqrt(252)) and divides them by
  sqrt(``periods``) (``V`` by ``periods``) before use; it reports both forms.
- ``g3`` is the skewness and ``g4`` the kurtosis (NOT excess: 3 for normal returns) of the
  returns, the population moments ``m3 / m2^1.5`` and ``m4 / m2^2``.
- ``V`` from a list of trial Sharpe ratios is their sample variance (``ddof=1``) over the
  trials whose Sharpe is defined; every trial tried counts in ``N``, a trial with an undefined
  Sharpe (it never traded) included. ``N = 1`` means no selection: ``SR0 = 0`` and the DSR is
  the PSR against 0 (the formula itself needs N >= 2: Phi^-1(0) is minus infinity).
- Undefined figures are None: fewer than two returns, a curve that never moves, a denominator
  that is not positive (a large Sharpe with strong positive skew), a variance from fewer than
  two defined trial Sharpes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

__all__ = [
    "EULER_GAMMA",
    "deflated_sharpe",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "return_moments",
    "trial_variance",
]

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()
_EPS = 1e-12


def return_moments(returns: Sequence[float]) -> dict:
    """``observations`` T, the per-period ``sharpe`` (mean / sample std), ``skewness`` and
    ``kurtosis`` (population moments, kurtosis not excess) of a return series."""
    r = np.asarray(returns, dtype=float)
    n = int(r.size)
    out: dict = {"observations": n, "sharpe": None, "skewness": None, "kurtosis": None}
    if n < 2 or not np.all(np.isfinite(r)):
        return out
    sd = float(np.std(r, ddof=1))
    if sd <= _EPS:
        return out
    d = r - r.mean()
    m2 = float(np.mean(d ** 2))
    out.update(sharpe=float(r.mean()) / sd, skewness=float(np.mean(d ** 3)) / m2 ** 1.5,
               kurtosis=float(np.mean(d ** 4)) / m2 ** 2)
    return out


def probabilistic_sharpe_ratio(sharpe: float, observations: int, *, skewness: float = 0.0,
                               kurtosis: float = 3.0, benchmark: float = 0.0) -> float | None:
    """PSR(``benchmark``): the probability that the true per-period Sharpe ratio exceeds
    ``benchmark``, given the observed per-period ``sharpe`` over ``observations`` returns with
    that ``skewness`` and ``kurtosis`` (not excess). None where undefined (module docs)."""
    if observations < 2 or not all(math.isfinite(x) for x in (sharpe, skewness, kurtosis,
                                                               benchmark)):
        return None
    var = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe ** 2
    if var <= _EPS:
        return None
    z = (sharpe - benchmark) * math.sqrt(observations - 1) / math.sqrt(var)
    return _NORMAL.cdf(z)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """SR0: the expected largest per-period Sharpe ratio of ``n_trials`` independent trials of
    true Sharpe 0 whose Sharpe ratios have ``variance`` (per period squared); 0 for one trial."""
    if n_trials < 1 or int(n_trials) != n_trials:
        raise ValueError(f"the number of trials must be a whole number >= 1, got {n_trials!r}")
    if not math.isfinite(variance) or variance < 0:
        raise ValueError(f"the trials' Sharpe variance must be >= 0, got {variance!r}")
    if n_trials == 1:
        return 0.0
    n = float(n_trials)
    z = ((1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n)
         + EULER_GAMMA * _NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e)))
    return math.sqrt(variance) * z


def trial_variance(sharpes: Sequence[float | None]) -> float | None:
    """The sample variance (ddof=1) of the defined Sharpe ratios in ``sharpes`` (any one unit:
    the result is in that unit squared); None with fewer than two."""
    values = [float(s) for s in sharpes if s is not None and math.isfinite(s)]
    if len(values) < 2:
        return None
    return float(np.var(values, ddof=1))


def deflated_sharpe(returns: Sequence[float], *, n_trials: int | None = None,
                    trial_sharpes: Sequence[float | None] | None = None,
                    trial_sharpe_variance: float | None = None,
                    periods: int = 252) -> dict:
    """PSR against 0 and the DSR of the strategy whose per-period ``returns`` are given.

    The trials (every variant tried, this one included): ``trial_sharpes``, their ANNUALISED
    Sharpe ratios (None for an undefined one), or ``trial_sharpe_variance``, the variance of
    the annualised Sharpe ratios; ``n_trials`` defaults to ``len(trial_sharpes)`` and may be
    given larger (trials whose Sharpe was not kept). ``periods`` returns make a year (252
    sessions). Without trials (``n_trials`` None) the DSR is None: how many variants were
    tried is not known here, and guessing one would overstate it.

    Returns ``observations``, ``sharpe`` (per period) and ``sharpe_annual``, ``skewness``,
    ``kurtosis``, ``psr`` (PSR(0)), ``n_trials``, ``trial_sharpe_variance`` (per period
    squared), ``expected_max_sharpe`` (SR0 per period) and ``expected_max_sharpe_annual``, and
    ``dsr``."""
    m = return_moments(returns)
    root = math.sqrt(periods)
    if trial_sharpes is not None and n_trials is None:
        n_trials = len(trial_sharpes)
    variance = None
    if trial_sharpe_variance is not None:
        variance = float(trial_sharpe_variance) / periods
    elif trial_sharpes is not None:
        annual = trial_variance(trial_sharpes)
        variance = annual / periods if annual is not None else None
    if n_trials == 1 and variance is None:
        variance = 0.0  # one trial: no selection, SR0 = 0 whatever the variance
    out = {
        "observations": m["observations"],
        "periods_per_year": periods,
        "sharpe": m["sharpe"],
        "sharpe_annual": m["sharpe"] * root if m["sharpe"] is not None else None,
        "skewness": m["skewness"],
        "kurtosis": m["kurtosis"],
        "psr": None,
        "n_trials": n_trials,
        "trial_sharpe_variance": variance,
        "expected_max_sharpe": None,
        "expected_max_sharpe_annual": None,
        "dsr": None,
    }
    if m["sharpe"] is None:
        return out
    moments = {"skewness": m["skewness"], "kurtosis": m["kurtosis"]}
    out["psr"] = probabilistic_sharpe_ratio(m["sharpe"], m["observations"], **moments)
    if n_trials is None or variance is None:
        return out
    sr0 = expected_max_sharpe(n_trials, variance)
    out["expected_max_sharpe"] = sr0
    out["expected_max_sharpe_annual"] = sr0 * root
    out["dsr"] = probabilistic_sharpe_ratio(m["sharpe"], m["observations"], benchmark=sr0,
                                            **moments)
    return out
