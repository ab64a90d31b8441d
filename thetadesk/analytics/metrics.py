"""Performance metrics of an equity curve and a list of trades: pure functions, no I/O.

Conventions (every function here, the backtest report and ``results.json``):

- ``equity`` is the account's (or the sum of the accounts') equity marked to market at each
  session's close, in dollars, in session order; ``capital`` is the equity before the first
  session. Daily returns are ``r_t = equity_t / equity_{t-1} - 1`` with ``equity_{-1} =
  capital``.
- Annualisation uses ``PERIODS = 252`` sessions a year. ``annual_return`` is the compound
  growth rate, ``(equity_end / capital) ** (252 / n) - 1``; ``volatility`` the sample standard
  deviation of daily returns times sqrt(252).
- ``sharpe`` = mean(r) / std(r) x sqrt(252): the 0% Sharpe, whatever the risk-free rate.
  ``sortino`` = mean(r) / sqrt(mean(min(r, 0)^2)) x sqrt(252), the downside deviation taken
  over every day (a 0% target).
- The risk-free rate ``rf`` is ANNUAL (0.0193 = 1.93%), either one number for every session or
  one per session (``thetadesk.rates.tbill_3m`` of each session's year); a session earns
  ``rf_t / 252`` (simple, not compounded within the day), so the daily excess return is
  ``x_t = r_t - rf_t / 252``. ``sharpe_rf`` = mean(x) / std(x) x sqrt(252) (the excess-return
  Sharpe of Sharpe 1994: the standard deviation of the differential return, which equals
  std(r) for a constant rate); ``sortino_rf`` = mean(x) / sqrt(mean(min(x, 0)^2)) x sqrt(252).
  ``rf=None`` (no rate known for the sessions) makes every ``*_rf`` figure None. A curve that
  never moves (std(r) = 0) has every ratio undefined, its ``*_rf`` ones included: a cash-only
  book earns exactly 0 in the paper broker and its ratios are None, not minus infinity.
- Monthly figures (``sessions`` given): the equity at each calendar month's last session, the
  month's return against the previous month-end (the capital for the first month, which may be
  partial, as may the last). ``sharpe_monthly`` = mean / std (sample) of the monthly returns x
  sqrt(12); ``sharpe_monthly_rf`` the same of the monthly excess returns, the month's risk-free
  return being prod(1 + rf_t / 252) - 1 over its sessions (the daily rate compounded). Fewer
  than two months: None.
- ``max_drawdown`` is a POSITIVE fraction, the largest fall from a running peak (capital counts
  as the first peak): 0.12 means 12% below the peak. ``max_drawdown_days`` the longest stretch,
  in sessions, spent below a previous peak (to recovery, or to the end if it never recovered).
  With ``sessions``, the deepest drawdown's dates (ISO): ``max_drawdown_peak`` the last close
  at the peak before it (None when the peak is the starting capital, before the first
  session), ``max_drawdown_trough`` the lowest close, ``max_drawdown_recovery`` the first close
  back at or above the peak (None if it never recovered).
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
from datetime import date

import numpy as np

__all__ = [
    "MONTHS",
    "PERIODS",
    "Trade",
    "daily_returns",
    "drawdown_dates",
    "drawdowns",
    "equity_metrics",
    "max_drawdown",
    "metrics",
    "month_ends",
    "monthly_returns",
    "session_rates",
    "trade_metrics",
]

PERIODS = 252
MONTHS = 12
_EPS = 1e-12

RiskFree = float | Sequence[float] | None


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


def session_rates(rf: RiskFree, n: int) -> np.ndarray | None:
    """The annual risk-free rate of each of ``n`` sessions (decimals) from one rate or one per
    session; None stays None (no rate known)."""
    if rf is None:
        return None
    if isinstance(rf, int | float):
        out = np.full(n, float(rf))
    else:
        out = np.asarray(list(rf), dtype=float)
        if out.shape != (n,):
            raise ValueError(f"risk-free rates: {out.size} given for {n} sessions")
    if not np.all(np.isfinite(out)):
        raise ValueError("risk-free rates must be finite annual decimals")
    return out


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


def drawdown_dates(equity: Sequence[float], capital: float, sessions: Sequence[date],
                   ) -> tuple[date | None, date | None, date | None]:
    """(peak, trough, recovery) sessions of the deepest drawdown (the first one if several are
    as deep): the last close at the running peak before the trough (None: the capital, before
    the first session), the trough, the first close back at or above that peak (None: never).
    All None when the curve never falls below a peak."""
    e = np.asarray(equity, dtype=float)
    dd = drawdowns(e, capital)
    if dd.size == 0 or dd.max() <= _EPS:
        return None, None, None
    trough = int(np.argmax(dd))
    level = np.concatenate(([capital], e))
    before = level[:trough + 2]  # index into level: 0 is the capital
    peak_value = before.max()
    peak_at = int(np.flatnonzero(before >= peak_value * (1 - _EPS))[-1])
    peak = sessions[peak_at - 1] if peak_at > 0 else None
    recovery = None
    for i in range(trough + 1, e.size):
        if e[i] >= peak_value * (1 - _EPS):
            recovery = sessions[i]
            break
    return peak, sessions[trough], recovery


def month_ends(sessions: Sequence[date]) -> list[int]:
    """Indices of the last session of each calendar month in ``sessions`` (in order)."""
    out = []
    for i, d in enumerate(sessions):
        if i + 1 == len(sessions) or (sessions[i + 1].year, sessions[i + 1].month) != (
                d.year, d.month):
            out.append(i)
    return out


def monthly_returns(sessions: Sequence[date], equity: Sequence[float],
                    capital: float) -> dict[str, float]:
    """``{"YYYY-MM": return of the month}`` from the month-end closes (the capital before the
    first month)."""
    if len(sessions) != len(equity):
        raise ValueError(f"{len(sessions)} sessions for {len(equity)} closes")
    out: dict[str, float] = {}
    prev = float(capital)
    for i in month_ends(sessions):
        d = sessions[i]
        out[f"{d.year:04d}-{d.month:02d}"] = float(equity[i]) / prev - 1.0
        prev = float(equity[i])
    return out


def _ratio(mean: float, scale: float, periods: int) -> float | None:
    return _finite(mean / scale * math.sqrt(periods)) if scale > _EPS else None


def _monthly(e: np.ndarray, capital: float, sessions: Sequence[date],
             rates: np.ndarray | None, moves: bool) -> dict:
    ends = month_ends(sessions)
    levels = np.concatenate(([capital], e[ends]))
    r = levels[1:] / levels[:-1] - 1.0
    out: dict = {"months": len(ends), "sharpe_monthly": None, "sharpe_monthly_rf": None}
    if len(ends) < 2 or not moves:
        return out
    out["sharpe_monthly"] = _ratio(float(np.mean(r)), float(np.std(r, ddof=1)), MONTHS)
    if rates is not None:
        growth = np.cumprod(1.0 + rates / PERIODS)
        at_end = np.concatenate(([1.0], growth[ends]))
        x = r - (at_end[1:] / at_end[:-1] - 1.0)
        out["sharpe_monthly_rf"] = _ratio(float(np.mean(x)), float(np.std(x, ddof=1)),
                                          MONTHS)
    return out


def equity_metrics(equity: Sequence[float], capital: float, *, rf: RiskFree = 0.0,
                   sessions: Sequence[date] | None = None) -> dict:
    """Return, risk and drawdown figures of an equity curve (see the module docs). ``rf``:
    the annual risk-free rate, one number or one per session, or None if unknown;
    ``sessions``: the dates of the closes (monthly figures and drawdown dates)."""
    e = np.asarray(equity, dtype=float)
    n = int(e.size)
    if sessions is not None and len(sessions) != n:
        raise ValueError(f"{len(sessions)} sessions for {n} closes")
    rates = session_rates(rf, n)
    out: dict = {"sessions": n, "capital": float(capital)}
    if n == 0:
        out.update(final_equity=float(capital), total_return=0.0, annual_return=0.0,
                   volatility=0.0, sharpe=None, sharpe_rf=None, sortino=None, sortino_rf=None,
                   sharpe_monthly=None, sharpe_monthly_rf=None, months=0,
                   risk_free_mean=None, max_drawdown=0.0, max_drawdown_days=0,
                   max_drawdown_peak=None, max_drawdown_trough=None,
                   max_drawdown_recovery=None, calmar=None)
        return out
    r = daily_returns(e, capital)
    total = float(e[-1] / capital - 1.0)
    annual = float((e[-1] / capital) ** (PERIODS / n) - 1.0)
    sd = float(np.std(r, ddof=1)) if n > 1 else 0.0
    moves = sd > _EPS
    mdd, mdd_days = max_drawdown(e, capital)
    out.update(
        final_equity=float(e[-1]),
        total_return=total,
        annual_return=annual,
        volatility=sd * math.sqrt(PERIODS),
        sharpe=_ratio(float(np.mean(r)), sd, PERIODS) if moves else None,
        sharpe_rf=None,
        sortino=(_ratio(float(np.mean(r)), float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))),
                        PERIODS) if moves else None),
        sortino_rf=None,
        risk_free_mean=float(np.mean(rates)) if rates is not None else None,
    )
    if rates is not None and moves:
        x = r - rates / PERIODS
        sdx = float(np.std(x, ddof=1))
        out["sharpe_rf"] = _ratio(float(np.mean(x)), sdx, PERIODS)
        out["sortino_rf"] = _ratio(float(np.mean(x)),
                                   float(np.sqrt(np.mean(np.minimum(x, 0.0) ** 2))), PERIODS)
    if sessions is not None:
        out.update(_monthly(e, capital, sessions, rates, moves))
        peak, trough, recovery = drawdown_dates(e, capital, sessions)
    else:
        out.update(months=None, sharpe_monthly=None, sharpe_monthly_rf=None)
        peak = trough = recovery = None
    out.update(
        max_drawdown=mdd,
        max_drawdown_days=mdd_days,
        max_drawdown_peak=peak.isoformat() if peak else None,
        max_drawdown_trough=trough.isoformat() if trough else None,
        max_drawdown_recovery=recovery.isoformat() if recovery else None,
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
            rf: RiskFree = 0.0, sessions: Sequence[date] | None = None) -> dict:
    """Every metric of the module docs in one flat dict (the backtest's ``results.json``).

    ``open_sessions``: sessions that ended with an open strategy position (exposure);
    ``premium_traded``: dollars of option premium traded over the run (turnover); ``rf`` and
    ``sessions`` as ``equity_metrics``."""
    out = equity_metrics(equity, capital, rf=rf, sessions=sessions)
    out.update(trade_metrics([t.pnl for t in trades]))
    n = out["sessions"]
    out["exposure"] = (open_sessions / n) if (open_sessions is not None and n) else None
    mean_equity = float(np.mean(equity)) if n else capital
    if premium_traded is None or not n:
        out["turnover"] = None
    else:
        out["turnover"] = premium_traded / mean_equity * PERIODS / n
    return out
