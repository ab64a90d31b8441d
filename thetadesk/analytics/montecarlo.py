"""Monte Carlo robustness of a backtest: resample what happened, see how lucky the order was.

- ``bootstrap_trades``: the realised trade P&Ls drawn with replacement, as many as there were,
  in random order, added to the starting capital: final equity, max drawdown (positive fraction
  of the running peak of that path) and the chance of ending below the capital or losing at
  least ``loss_fraction`` of it.
- ``block_bootstrap_returns``: the daily returns resampled in blocks (the stationary bootstrap of
  Politis and Romano, mean block length ``block``, ``arch.bootstrap.StationaryBootstrap``) so
  volatility clustering survives; the same figures from the compounded paths.

Both are seeded and return ``{"paths", "final_equity": {pct: value}, "max_drawdown": {pct:
value}, "prob_loss", "prob_loss_at_least", "loss_fraction"}`` with percentiles 5, 25, 50, 75
and 95 (keys as strings, e.g. ``"p5"``). With no trades (or no returns) there is nothing to
resample and the result is ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["PERCENTILES", "block_bootstrap_returns", "bootstrap_trades"]

PERCENTILES = (5, 25, 50, 75, 95)


def _max_drawdowns(paths: np.ndarray, capital: float) -> np.ndarray:
    """Per row of equity ``paths`` (capital before the first column), the max drawdown."""
    full = np.concatenate([np.full((paths.shape[0], 1), capital), paths], axis=1)
    peak = np.maximum.accumulate(full, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, 1.0 - full / peak, 1.0)
    return np.clip(dd.max(axis=1), 0.0, None)


def _summary(final: np.ndarray, mdd: np.ndarray, capital: float, loss_fraction: float) -> dict:
    return {
        "paths": int(final.size),
        "final_equity": {f"p{p}": float(v) for p, v in
                         zip(PERCENTILES, np.percentile(final, PERCENTILES), strict=True)},
        "max_drawdown": {f"p{p}": float(v) for p, v in
                         zip(PERCENTILES, np.percentile(mdd, PERCENTILES), strict=True)},
        "prob_loss": float((final < capital).mean()),
        "prob_loss_at_least": float((final <= capital * (1 - loss_fraction)).mean()),
        "loss_fraction": loss_fraction,
    }


def bootstrap_trades(pnls: Sequence[float], capital: float, *, paths: int = 1000,
                     seed: int = 0, loss_fraction: float = 0.10) -> dict | None:
    p = np.asarray(pnls, dtype=float)
    if p.size == 0 or paths <= 0:
        return None
    rng = np.random.default_rng(seed)
    draws = p[rng.integers(0, p.size, size=(paths, p.size))]
    equity = capital + np.cumsum(draws, axis=1)
    return _summary(equity[:, -1], _max_drawdowns(equity, capital), capital, loss_fraction)


def block_bootstrap_returns(returns: Sequence[float], capital: float, *, paths: int = 1000,
                            block: int = 10, seed: int = 0,
                            loss_fraction: float = 0.10) -> dict | None:
    from arch.bootstrap import StationaryBootstrap

    r = np.asarray(returns, dtype=float)
    if r.size == 0 or paths <= 0:
        return None
    bs = StationaryBootstrap(block, r, seed=np.random.default_rng(seed))
    rows = np.empty((paths, r.size))
    for i, (args, _) in enumerate(bs.bootstrap(paths)):
        rows[i] = args[0]
    equity = capital * np.cumprod(1.0 + rows, axis=1)
    return _summary(equity[:, -1], _max_drawdowns(equity, capital), capital, loss_fraction)
