"""``results.json``: every figure of a backtest, its baselines and its robustness checks.

Top-level keys (units in ``thetadesk.analytics.metrics``): the metrics of the desk's equity
curve and trades (``win_rate``, ``sharpe`` (0% risk-free), ``sharpe_rf`` (excess over the
3-month T-bill), ``sortino``, ``sortino_rf``, ``sharpe_monthly``, ``sharpe_monthly_rf``,
``calmar``, ``max_drawdown`` as a positive fraction, ``max_drawdown_days``,
``max_drawdown_peak``/``_trough``/``_recovery``, ``annual_return``, ``total_return``,
``volatility``, ``trades``, ``profit_factor``, ``avg_win``, ``avg_loss``, ``expectancy``,
``exposure``, ``turnover``, ...), then

- ``costs``: ``{"commissions", "spread", "total", "per_trade", "fills",
  "spread_unknown_fills"}`` in dollars (``thetadesk.backtest.engine``);
- ``deflated_sharpe``: the probabilistic and deflated Sharpe ratio of the daily returns
  (``thetadesk.analytics.deflated``; 0% risk-free, per-period inside), ``psr_rf`` the PSR of
  the excess returns; ``dsr`` is null unless the caller says which trials were run;
- ``baselines``: ``{"buy_and_hold": {...}, "put_write": {...}}``, each with the same metric keys
  (``costs`` and ``deflated_sharpe`` included) over the same sessions, capital and risk-free
  rates;
- ``attribution``: tables by ``strategy``, ``regime``, ``weekday``, ``time_of_day``, ``dte``,
  and ``book`` (realised P&L of the strategies vs the hedges, plus the hedges' trades);
- ``monte_carlo``: ``{"trades": ..., "daily_returns": ...}`` (``thetadesk.analytics.
  montecarlo``) when asked for, else null;
- ``walk_forward``: null unless a walk-forward run filled it (``thetadesk.backtest.
  walkforward``: folds with their embargo and purge, ``embargo_sessions``, the stitched
  out-of-sample metrics and its baselines);
- ``equity``: ``[{"session", "equity", "drawdown", "buy_and_hold", "put_write"}]``;
- ``trade_list``: every closed position; ``run``: what was run (data, window, fill model,
  notes, ``risk_free_rate``: the rate table's name and the annual rate of each year used).

The risk-free rate of a session is ``thetadesk.rates.tbill_3m`` of its year (annual decimal);
before the table's first year no rate is known and every ``*_rf`` figure is null (said so in
``run.notes``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import date
from typing import Any

import numpy as np

from thetadesk.analytics.attribution import attribution_tables
from thetadesk.analytics.deflated import deflated_sharpe
from thetadesk.analytics.metrics import (
    PERIODS,
    Trade,
    daily_returns,
    drawdowns,
    metrics,
    monthly_returns,
)
from thetadesk.analytics.montecarlo import block_bootstrap_returns, bootstrap_trades
from thetadesk.backtest.baselines import PutWriteRun, buy_and_hold, put_write_run
from thetadesk.backtest.engine import BacktestResult
from thetadesk.config import Config
from thetadesk.ports import MarketData
from thetadesk.rates import TBILL_3M, TBILL_3M_LAST, tbill_3m
from thetadesk.wiring import cash_interest_of

__all__ = ["RATE_TABLE", "add_walk_forward", "build_results", "deflated", "monthly_returns",
           "risk_free_rates"]

RATE_TABLE = ("3-month Treasury bill, H.15 TB3MS annual means (thetadesk.rates.tbill_3m); "
              "a session earns rate / 252")


def baseline_symbol(result: BacktestResult | Config) -> str:
    """What the baselines trade: SPY when the run has it, else its first symbol."""
    config = result.config if isinstance(result, BacktestResult) else result
    symbols = list(config.market.symbols)
    return "SPY" if "SPY" in symbols else symbols[0]


def _put_trades(written, symbol: str) -> list[Trade]:
    return [Trade(f"put-{t.sold}", "baseline", symbol, "put_write", t.sold.isoformat(),
                  t.expiry.isoformat(), t.contracts, t.premium, "expiry", t.pnl,
                  (t.expiry - t.sold).days) for t in written]


def risk_free_rates(sessions: Sequence[date]) -> tuple[list[float] | None, dict[str, Any]]:
    """The annual 3-month T-bill rate of each session (None if a session's year has none) and
    ``run.risk_free_rate``: the table's name and the rate of each year used."""
    years = sorted({d.year for d in sessions})
    try:
        by_year = {str(y): tbill_3m(date(y, 1, 1)) for y in years}
    except ValueError as exc:
        return None, {"name": RATE_TABLE, "by_year": None, "unknown": str(exc)}
    carried = [y for y in years if y > TBILL_3M_LAST]
    info: dict[str, Any] = {"name": RATE_TABLE, "by_year": by_year}
    if carried:
        info["carried_forward"] = (f"{', '.join(map(str, carried))}: no published rate, "
                                   f"{TBILL_3M_LAST}'s ({TBILL_3M[TBILL_3M_LAST]:.4f}) used")
    return [by_year[str(d.year)] for d in sessions], info


def deflated(equity: Sequence[float], capital: float, rates: Sequence[float] | None, *,
             n_trials: int | None = None, trial_sharpes: Sequence[float | None] | None = None,
             trial_sharpe_variance: float | None = None) -> dict[str, Any]:
    """``results.json``'s ``deflated_sharpe`` of one equity curve: PSR and DSR of the daily
    returns (0% risk-free; the trials' Sharpe ratios must be the same kind, annualised, as
    ``sharpe`` reports them), and ``psr_rf``, the PSR of the returns in excess of ``rates``."""
    r = daily_returns(equity, capital)
    out = deflated_sharpe(r, n_trials=n_trials, trial_sharpes=trial_sharpes,
                          trial_sharpe_variance=trial_sharpe_variance, periods=PERIODS)
    out["returns"] = "daily, 0% risk-free"
    out["psr_rf"] = (deflated_sharpe(r - np.asarray(rates) / PERIODS)["psr"]
                     if rates is not None and len(r) else None)
    return out


def _costs_of_puts(run: PutWriteRun) -> dict[str, Any]:
    """The put-write's costs: every sale's (a put still held at the end included); per trade
    over the puts settled."""
    settled = [t.commission + t.spread for t in run.trades]
    return {"commissions": run.commissions, "spread": run.spread,
            "total": run.commissions + run.spread,
            "per_trade": sum(settled) / len(settled) if settled else None,
            "fills": run.sales,
            "spread_unknown_fills": 0}


_NO_COSTS = {"commissions": 0.0, "spread": 0.0, "total": 0.0, "per_trade": None, "fills": 0,
             "spread_unknown_fills": 0}


def _baselines(market: MarketData, symbol: str, sessions: list[date], capital: float,
               commission: float, rates: list[float] | None,
               daily_rate: Callable[[date], float] | None = None,
               ) -> tuple[dict[str, Any], list[float], list[float]]:
    """Buy-and-hold (invested at every close once it holds shares: exposure 1; no fees or
    spread modelled, it buys at the spot) and the put-write (exposure: closes with a put
    held), with the desk's metrics over the same sessions and rates; their idle cash earns
    ``daily_rate`` (what a dollar earns a day: the desk's paper broker's, None: nothing), as
    the desk's does."""
    hold = buy_and_hold(market, symbol, sessions, capital, daily_rate=daily_rate)
    write = put_write_run(market, symbol, sessions, capital, commission=commission,
                          daily_rate=daily_rate)
    invested = len(sessions) if any(h != capital for h in hold) else 0
    out = {
        "buy_and_hold": {"symbol": symbol,
                         **metrics(hold, capital, [], open_sessions=invested, rf=rates,
                                   sessions=sessions),
                         "costs": dict(_NO_COSTS),
                         "deflated_sharpe": deflated(hold, capital, rates)},
        "put_write": {"symbol": symbol,
                      **metrics(write.equity, capital, _put_trades(write.trades, symbol),
                                open_sessions=write.held_sessions, rf=rates,
                                sessions=sessions),
                      "costs": _costs_of_puts(write),
                      "deflated_sharpe": deflated(write.equity, capital, rates)},
    }
    return out, hold, write.equity


def build_results(result: BacktestResult, market: MarketData, *, monte_carlo: int = 0,
                  seed: int = 0, n_trials: int | None = None,
                  trial_sharpes: Sequence[float | None] | None = None,
                  trial_sharpe_variance: float | None = None) -> dict[str, Any]:
    """``results.json`` of a backtest (module docs). The trials of the deflated Sharpe ratio
    (``thetadesk.analytics.deflated.deflated_sharpe``): every variant tried, this run
    included, as ``trial_sharpes`` (their annualised 0% ``sharpe``) or ``n_trials`` and
    ``trial_sharpe_variance``; without them ``deflated_sharpe.dsr`` is null."""
    sessions = [row.session for row in result.sessions]
    equity = result.equity
    capital = result.capital
    rates, rate_info = risk_free_rates(sessions)
    out: dict[str, Any] = metrics(
        equity, capital, result.trades,
        open_sessions=sum(1 for row in result.sessions if row.open_positions > 0),
        premium_traded=result.premium_traded, rf=rates, sessions=sessions)
    out["costs"] = dict(result.costs)
    out["deflated_sharpe"] = deflated(equity, capital, rates, n_trials=n_trials,
                                      trial_sharpes=trial_sharpes,
                                      trial_sharpe_variance=trial_sharpe_variance)
    symbol = baseline_symbol(result)
    commission = result.config.accounts[0].commission_per_contract
    interest = cash_interest_of(result.config.accounts[0])
    out["baselines"], hold, write = _baselines(market, symbol, sessions, capital, commission,
                                               rates, None if interest is None
                                               else interest.daily)
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
    notes = list(result.notes)
    if rates is None:
        notes.append(f"no risk-free rate: {rate_info['unknown']}; the *_rf figures are null")
    elif "carried_forward" in rate_info:
        notes.append(f"risk-free rate carried forward for {rate_info['carried_forward']}")
    out["run"] = {
        "data": result.data, "start": sessions[0].isoformat(), "end": sessions[-1].isoformat(),
        "fill_model": result.fill_model, "symbols": list(result.config.market.symbols),
        "accounts": [a.name for a in result.config.accounts], "capital": capital,
        "seed": result.config.seed, "tick_seconds": result.config.market.tick_seconds,
        "fills": result.fills, "intents": result.intents,
        "decisions": len(result.decisions), "notes": notes,
        "risk_free_rate": rate_info,
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
                     symbol: str, commission: float,
                     daily_rate: Callable[[date], float] | None = None) -> dict[str, Any]:
    """Put the walk-forward result into ``results`` with the baselines over its
    out-of-sample sessions (the same capital and risk-free rates)."""
    sessions = [date.fromisoformat(e["session"]) for e in wf["equity"]]
    capital = results["capital"]
    rates, _ = risk_free_rates(sessions)
    wf = dict(wf)
    wf["baselines"], _, _ = _baselines(market, symbol, sessions, capital, commission, rates,
                                       daily_rate)
    results["walk_forward"] = _plain(wf)
    return results
