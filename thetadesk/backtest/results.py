"""``results.json``: every figure of a backtest, its baselines and its robustness checks.

Top-level keys (units in ``thetadesk.analytics.metrics``): the metrics of the desk's equity
curve and trades (``win_rate``, ``sharpe``, ``sortino``, ``calmar``, ``max_drawdown`` as a
positive fraction, ``max_drawdown_days``, ``annual_return``, ``total_return``, ``volatility``,
``trades``, ``profit_factor``, ``avg_win``, ``avg_loss``, ``expectancy``, ``exposure``,
``turnover``, ...), then

- ``baselines``: ``{"buy_and_hold": {...}, "put_write": {...}}``, each with the same metric keys
  over the same sessions and capital;
- ``attribution``: tables by ``strategy``, ``regime``, ``weekday``, ``time_of_day``, ``dte``,
  and ``book`` (realised P&L of the strategies vs the hedges, plus the hedges' trades);
- ``monte_carlo``: ``{"trades": ..., "daily_returns": ...}`` (``thetadesk.analytics.
  montecarlo``) when asked for, else null;
- ``walk_forward``: null unless a walk-forward run filled it;
- ``equity``: ``[{"session", "equity", "drawdown", "buy_and_hold", "put_write"}]``;
- ``trade_list``: every closed position; ``run``: what was run (data, window, fill model,
  notes).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from thetadesk.analytics.attribution import attribution_tables
from thetadesk.analytics.metrics import Trade, daily_returns, drawdowns, metrics
from thetadesk.analytics.montecarlo import block_bootstrap_returns, bootstrap_trades
from thetadesk.backtest.baselines import buy_and_hold, put_write
from thetadesk.backtest.engine import BacktestResult
from thetadesk.ports import MarketData

__all__ = ["add_walk_forward", "build_results", "monthly_returns"]


def baseline_symbol(result: BacktestResult) -> str:
    symbols = list(result.config.market.symbols)
    return "SPY" if "SPY" in symbols else symbols[0]


def _put_trades(written, symbol: str) -> list[Trade]:
    return [Trade(f"put-{t.sold}", "baseline", symbol, "put_write", t.sold.isoformat(),
                  t.expiry.isoformat(), t.contracts, t.premium, "expiry", t.pnl,
                  (t.expiry - t.sold).days) for t in written]


def monthly_returns(sessions, equity, capital: float) -> dict[str, float]:
    """``{"YYYY-MM": return of the month}`` from closing equity."""
    out: dict[str, float] = {}
    prev = capital
    month_start = capital
    current = None
    for d, e in zip(sessions, equity, strict=True):
        key = f"{d.year:04d}-{d.month:02d}"
        if key != current:
            if current is not None:
                out[current] = prev / month_start - 1.0
            current, month_start = key, prev
        prev = e
    if current is not None:
        out[current] = prev / month_start - 1.0
    return out


def build_results(result: BacktestResult, market: MarketData, *, monte_carlo: int = 0,
                  seed: int = 0) -> dict[str, Any]:
    sessions = [row.session for row in result.sessions]
    equity = result.equity
    capital = result.capital
    out: dict[str, Any] = metrics(
        equity, capital, result.trades,
        open_sessions=sum(1 for row in result.sessions if row.open_positions > 0),
        premium_traded=result.premium_traded)
    symbol = baseline_symbol(result)
    commission = result.config.accounts[0].commission_per_contract
    hold = buy_and_hold(market, symbol, sessions, capital)
    write, written = put_write(market, symbol, sessions, capital, commission=commission)
    out["baselines"] = {
        "buy_and_hold": {"symbol": symbol, **metrics(hold, capital, [])},
        "put_write": {"symbol": symbol,
                      **metrics(write, capital, _put_trades(written, symbol))},
    }
    tables = attribution_tables(result.trades)
    tables["book"] = {
        "strategy": {"realized_pnl": result.attribution_books["strategy"],
                     "trades": len(result.trades)},
        "hedge": {"realized_pnl": result.attribution_books["hedge"],
                  "trades": len(result.hedge_trades)},
    }
    out["attribution"] = tables
    if monte_carlo > 0:
        returns = daily_returns(equity, capital)
        out["monte_carlo"] = {
            "trades": bootstrap_trades([t.pnl for t in result.trades], capital,
                                       paths=monte_carlo, seed=seed),
            "daily_returns": block_bootstrap_returns(returns, capital, paths=monte_carlo,
                                                     seed=seed),
        }
    else:
        out["monte_carlo"] = None
    out["walk_forward"] = None
    dd = drawdowns(equity, capital)
    out["equity"] = [
        {"session": d.isoformat(), "equity": e, "drawdown": float(x), "buy_and_hold": h,
         "put_write": w}
        for d, e, x, h, w in zip(sessions, equity, dd, hold, write, strict=True)]
    out["monthly_returns"] = monthly_returns(sessions, equity, capital)
    out["trade_list"] = [asdict(t) for t in result.trades + result.hedge_trades]
    out["run"] = {
        "data": result.data, "start": sessions[0].isoformat(), "end": sessions[-1].isoformat(),
        "fill_model": result.fill_model, "symbols": list(result.config.market.symbols),
        "accounts": [a.name for a in result.config.accounts], "capital": capital,
        "seed": result.config.seed, "tick_seconds": result.config.market.tick_seconds,
        "fills": result.fills, "intents": result.intents,
        "decisions": len(result.decisions), "notes": result.notes,
        "risk_free_rate": 0.0,
    }
    return _plain(out)


def _plain(x: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def add_walk_forward(results: dict[str, Any], wf: dict[str, Any], market: MarketData,
                     symbol: str, commission: float) -> dict[str, Any]:
    """Put the walk-forward result into ``results`` with the baselines over its
    out-of-sample sessions (the same capital)."""
    from datetime import date

    sessions = [date.fromisoformat(e["session"]) for e in wf["equity"]]
    capital = results["capital"]
    hold = buy_and_hold(market, symbol, sessions, capital)
    write, written = put_write(market, symbol, sessions, capital, commission=commission)
    wf = dict(wf)
    wf["baselines"] = {"buy_and_hold": {"symbol": symbol, **metrics(hold, capital, [])},
                       "put_write": {"symbol": symbol,
                                     **metrics(write, capital, _put_trades(written, symbol))}}
    results["walk_forward"] = _plain(wf)
    return results
