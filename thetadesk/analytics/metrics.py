"""Performance metrics of an equity curve and a list of trades: pure functions, no I/O.

Conventions (every function here, the backtest report and ``results.json``):

- ``equity`` is the account's (or the sum of the accounts') equity marked to market at each
  session's close, in dollars, in session order; ``capital`` is the equity before the first
  session. Daily returns are ``r_t = equity_t / equity_{t-1} - 1`` with ``equity_{-1} =
  capital``.
- Annualisation uses ``PERIODS = 252`` sessions a year. ``annual_return`` is the compound
  growth rate, ``(equity_end / capital) ** (252 / n) - 1``; ``volatility`` the sample standard
  deviation of daily returns times sqrt(252).
- ``sharpe`` = mean(r - rf/252) / std(r) x sqrt(252); ``sortino`` the same over the downside
  deviation sqrt(mean(min(r - rf/252, 0)^2)) taken over every day. ``rf`` is the annual
  risk-free rate the caller passes (the backtester passes 0: the paper broker pays no interest on
  cash, so a cash-only book earns exactly 0 and its Sharpe is undefined, not negative).
- ``max_drawdown`` is a POSITIVE fraction, the largest fall from a running peak (capital counts
  as the first peak): 0.12 means 12% below the peak. ``max_drawdown_days`` the longest stretch,
  in sessions, spent below a previous peak (to recovery, or to the end if it never recovered).
- ``calmar`` = annual_return / max_drawdown.
- A trade is one position from its opening fill to its last close: ``pnl`` its realised P&L in
  dollars after commissions. ``win_rate`` is the share of trades with pnl > 0; ``profit_factor``
  gross wins / gross losses; ``avg_win`` and ``avg_loss`` (a negative number) the means of each
  side; ``expectancy`` the mean P&L per trade.
- ``exposure`` is the share of sessions that ended with at least one open strategy position;
  ``turnover`` the option premium traded (|net fill price| x multiplier x contracts, opening and
  closing) per year, as a multiple of the mean equity.

A figure that is undefined on the data (a Sharpe of a curve that never moves, a win rate with no
trades, a profit factor without a losing trade) is ``None``, never a made-up number; JSON shows
it as null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PERIODS",
    "Trade",
    "daily_returns",
    "drawdowns",
    "equity_metrics",
    "max_drawdown",
    "metrics",
    "trade_metrics",
]

PERIODS = 252
_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class Trade:
    """One closed position: what the trade tables and attribution read.

    ``opened_at``/``closed_at`` are ISO UTC timestamps; ``entry_dte`` the calendar days from the
    opening day (New York) to the expiry; ``premium`` the option premium traded in dollars
    (opening and closing fills); ``regime`` a label for the market at entry (see
    ``thetadesk.analytics.attribution``)."""

    position_id: str
    account: str
    symbol: str
    strategy: str
    opened_at: str
    closed_at: str
    quantity: int
    entry_price: float
    exit_reason: str
    pnl: float
    entry_dte: int
    premium: float = 0.0
    regime: str = "unknown"
    book: str = "strategy"


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def daily_returns(equity: Sequence[float], capital: float) -> np.ndarray:
    """Simple daily returns of ``equity`` against the previous close (``capital`` first)."""
    e = np.asarray(equity, dtype=float)
    if capital <= 0 or not math.isfinite(capital):
        raise ValueError(f"capital must be a positive number of dollars, got {capital!r}")
    if e.size and (not np.all(np.isfinite(e)) or np.any(e <= 0)):
        raise ValueError("equity must be positive and finite at every close")
    prev = np.concatenate(([capital], e[:-1]))
    return e / prev - 1.0


def drawdowns(equity: Sequence[float], capital: float) -> np.ndarray:
    """The drawdown at each close as a positive fraction below the running peak."""
    e = np.asarray(equity, dtype=float)
    peak = np.maximum.accumulate(np.concatenate(([capital], e)))[1:]
    return 1.0 - e / peak


def max_drawdown(equity: Sequence[float], capital: float) -> tuple[float, int]:
    """(largest drawdown as a positive fraction, longest stretch under water in sessions)."""
    dd = drawdowns(equity, capital)
    if dd.size == 0:
        return 0.0, 0
    longest = run = 0
    for under in dd > _EPS:
        run = run + 1 if under else 0
        longest = max(longest, run)
    return float(max(dd.max(), 0.0)), int(longest)


def equity_metrics(equity: Sequence[float], capital: float, *, rf: float = 0.0) -> dict:
    """Return, risk and drawdown figures of an equity curve (see the module docs)."""
    e = np.asarray(equity, dtype=float)
    n = int(e.size)
    out: dict = {"sessions": n, "capital": float(capital)}
    if n == 0:
        out.update(final_equity=float(capital), total_return=0.0, annual_return=0.0,
                   volatility=0.0, sharpe=None, sortino=None, max_drawdown=0.0,
                   max_drawdown_days=0, calmar=None)
        return out
    r = daily_returns(e, capital)
    total = float(e[-1] / capital - 1.0)
    annual = float((e[-1] / capital) ** (PERIODS / n) - 1.0)
    excess = r - rf / PERIODS
    sd = float(np.std(r, ddof=1)) if n > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2)))
    mean = float(np.mean(excess))
    mdd, mdd_days = max_drawdown(e, capital)
    out.update(
        final_equity=float(e[-1]),
        total_return=total,
        annual_return=annual,
        volatility=sd * math.sqrt(PERIODS),
        sharpe=_finite(mean / sd * math.sqrt(PERIODS)) if sd > _EPS else None,
        sortino=_finite(mean / downside * math.sqrt(PERIODS)) if downside > _EPS else None,
        max_drawdown=mdd,
        max_drawdown_days=mdd_days,
        calmar=_finite(annual / mdd) if mdd > _EPS else None,
    )
    return out


def trade_metrics(pnls: Sequence[float]) -> dict:
    """Win rate, profit factor, average win and loss, expectancy of realised trade P&Ls."""
    p = np.asarray(pnls, dtype=float)
    n = int(p.size)
    wins, losses = p[p > 0], p[p < 0]
    gross_win, gross_loss = float(wins.sum()), float(-losses.sum())
    return {
        "trades": n,
        "wins": int(wins.size),
        "losses": int(losses.size),
        "win_rate": wins.size / n if n else None,
        "profit_factor": gross_win / gross_loss if gross_loss > _EPS else None,
        "avg_win": float(wins.mean()) if wins.size else None,
        "avg_loss": float(losses.mean()) if losses.size else None,
        "expectancy": float(p.mean()) if n else None,
        "gross_profit": gross_win,
        "gross_loss": gross_loss,
        "realized_pnl": float(p.sum()),
    }


def metrics(equity: Sequence[float], capital: float, trades: Sequence[Trade], *,
            open_sessions: int | None = None, premium_traded: float | None = None,
            rf: float = 0.0) -> dict:
    """Every metric of the module docs in one flat dict (the backtest's ``results.json``).

    ``open_sessions``: sessions that ended with an open strategy position (exposure);
    ``premium_traded``: dollars of option premium traded over the run (turnover)."""
    out = equity_metrics(equity, capital, rf=rf)
    out.update(trade_metrics([t.pnl for t in trades]))
    n = out["sessions"]
    out["exposure"] = (open_sessions / n) if (open_sessions is not None and n) else None
    mean_equity = float(np.mean(equity)) if n else capital
    if premium_traded is None or not n:
        out["turnover"] = None
    else:
        out["turnover"] = premium_traded / mean_equity * PERIODS / n
    return out
