"""Walk-forward optimisation: choose parameters on the past, trade them on what follows.

The sessions of the run are cut into rolling folds: ``in_sample`` sessions, then an EMBARGO of
``embargo`` sessions that nobody trades or scores, then ``out_of_sample`` sessions; the next
fold starts ``out_of_sample`` sessions later, so the out-of-sample stretches follow each other
without gap or overlap, and within a fold no session is used both in and out of sample. For
each fold every point of the parameter grid is backtested in sample; the point with the best
``objective`` (``sharpe`` by default; an undefined figure ranks last, ties go to the earlier
grid point) is then backtested out of sample, fresh (no position carried over). No
out-of-sample session is ever seen by the choice of its parameters.

Embargo: a position opened on the last in-sample session can live until its expiry, so the
default embargo is the longest holding period the config (and every grid point) allows, in
sessions: ceil(days x 252 / 365) of the largest target DTE among the strategy, its named
profiles, the decision layer's regime overrides, rolls (when enabled) and the hedges' options
(when hedging buys them). By then every in-sample trade has expired, so nothing the in-sample
trades are still exposed to overlaps the out-of-sample window (Lopez de Prado, "Advances in
Financial Machine Learning", ch. 7: purging and embargo).

Purge: each backtest job starts fresh and ends by marking the positions still open at its
last close at their mid (they are in its equity, not in its trades). In sample (``purge=True``,
the default) the score must not rest on those unresolved trades, so the in-sample metrics are
computed on the sessions BEFORE the session on which the earliest position still open at the
in-sample end was opened: every daily return left in the score comes from a book whose
positions all closed in sample. A fold whose whole in-sample span is purged has undefined
ratios and ranks last. Out of sample nothing is purged: the out-of-sample window is the result
and keeps the usual backtest convention, its positions open at its end valued at their mid (and
no closing cost paid) when the next fold starts fresh.

The stitched out-of-sample equity curve chains the folds' daily returns from the starting
capital; its metrics (``thetadesk.analytics.metrics``, with the 3-month T-bill as risk-free
rate) are the walk-forward result, next to the baselines over the same sessions, with the
out-of-sample windows' costs added up and the stitched curve's probabilistic Sharpe ratio.
Each fold reports the probabilistic and deflated Sharpe ratio of its chosen in-sample point
(``in_sample_psr``, ``in_sample_dsr``), the grid's points being the trials
(``thetadesk.analytics.deflated``), and ``in_sample_expected_max_sharpe``, the Sharpe ratio the
best of those trials would show by luck (annualised, like ``in_sample_sharpe``). The result
records ``embargo_sessions``, ``holding_sessions`` and ``purge``.

A grid maps dotted config paths to lists of values (``{"strategy.short_delta": [0.2, 0.3]}``,
``accounts.0.max_risk_per_trade`` for a list item); every combination is one point. Each
backtest is a ``Job`` (plain, picklable data) run by ``run_job`` in a scratch directory, so the
jobs of a phase can run anywhere: ``actors/backtest.py`` fans them out as Ray tasks; ``run_local``
runs them here, one after the other.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from thetadesk.analytics.deflated import deflated_sharpe
from thetadesk.analytics.metrics import PERIODS, Trade, daily_returns, metrics
from thetadesk.config import Config, parse_config
from thetadesk.errors import ConfigError

__all__ = [
    "DEFAULT_GRID",
    "OBJECTIVES",
    "Job",
    "Window",
    "apply_params",
    "choose",
    "default_embargo",
    "grid_points",
    "holding_days",
    "holding_sessions",
    "make_windows",
    "run_job",
    "run_local",
    "walk_forward",
]

DEFAULT_GRID: dict[str, list[Any]] = {
    "strategy.short_delta": [0.15, 0.20, 0.25, 0.30],
    "exits.take_profit": [0.60, 0.75],  # above the default ladder's last rung (0.50)
}
OBJECTIVES = ("sharpe", "sharpe_rf", "sortino", "sortino_rf", "sharpe_monthly", "calmar",
              "annual_return", "total_return")
CALENDAR_DAYS = 365
_NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True, slots=True)
class Window:
    """One fold: first and last session in sample and out of sample, and the ``embargo``
    sessions between them (None for no embargo)."""

    index: int
    in_sample: tuple[date, date]
    out_of_sample: tuple[date, date]
    embargo: tuple[date, date] | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One backtest: the raw config ``data`` with ``params`` applied, over ``start``..``end``
    of ``source`` (replay, sim or a path), with the named fill model (None: the config's)."""

    data: dict
    source: str
    start: date
    end: date
    params: tuple[tuple[str, Any], ...]
    fill_model: str | None = None
    label: str = ""
    purge: bool = False


def holding_days(config: Config) -> int:
    """The longest a position of ``config`` may be held, in calendar days: the largest target
    DTE of the strategy, its named profiles, the decision layer's regime overrides, rolls (if
    enabled) and hedge options (if hedging buys them)."""
    days = [config.strategy.target_dte]
    days += [p.target_dte for p in config.strategies.values()]
    days += [r.target_dte for r in config.decision.regimes.values() if r.target_dte is not None]
    if config.exits.roll.enabled:
        days.append(config.exits.roll.target_dte)
    hedging = config.hedging
    if hedging.enabled:
        if hedging.tail.premium_fraction > 0:
            days.append(hedging.tail.dte)
        if hedging.delta.instrument == "options":
            days.append(hedging.delta.option_dte)
    return max(days)


def holding_sessions(config: Config) -> int:
    """``holding_days`` in sessions: ceil(days x 252 / 365)."""
    return math.ceil(holding_days(config) * PERIODS / CALENDAR_DAYS)


def default_embargo(data: Mapping[str, Any], grid: Mapping[str, Sequence[Any]] | None = None,
                    ) -> int:
    """The embargo, in sessions, that covers the holding period of the raw config ``data``
    under every point of ``grid`` (``DEFAULT_GRID`` if None)."""
    plain = json.loads(json.dumps(dict(data), default=str))
    return max(holding_sessions(parse_config(apply_params(plain, params)))
               for params in grid_points(dict(grid or DEFAULT_GRID)))


def make_windows(sessions: Sequence[date], in_sample: int, out_of_sample: int,
                 embargo: int = 0) -> list[Window]:
    """Rolling folds over ``sessions`` (module docs): ``in_sample`` sessions, ``embargo``
    sessions left out, ``out_of_sample`` sessions, the next fold ``out_of_sample`` later."""
    if in_sample < 1 or out_of_sample < 1:
        raise ConfigError(f"walk-forward windows need at least one session in and out of sample"
                          f" (got {in_sample} and {out_of_sample})")
    if embargo < 0:
        raise ConfigError(f"the walk-forward embargo must be >= 0 sessions, got {embargo}")
    out = []
    i = 0
    span = in_sample + embargo + out_of_sample
    while i + span <= len(sessions):
        ins = sessions[i:i + in_sample]
        gap = sessions[i + in_sample:i + in_sample + embargo]
        oos = sessions[i + in_sample + embargo:i + span]
        out.append(Window(len(out), (ins[0], ins[-1]), (oos[0], oos[-1]),
                          (gap[0], gap[-1]) if gap else None))
        i += out_of_sample
    if not out:
        raise ConfigError(f"{len(sessions)} sessions cannot hold one walk-forward window of "
                          f"{in_sample} in-sample, {embargo} embargoed and {out_of_sample} "
                          "out-of-sample sessions")
    return out


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[tuple[tuple[str, Any], ...]]:
    if not grid:
        raise ConfigError("the walk-forward grid is empty: give at least one path and values")
    for path, values in grid.items():
        if not isinstance(values, list | tuple) or not values:
            raise ConfigError(f"walk-forward grid {path}: needs a non-empty list of values")
    keys = list(grid)
    return [tuple(zip(keys, combo, strict=True))
            for combo in itertools.product(*(grid[k] for k in keys))]


def apply_params(data: Mapping[str, Any], params: Sequence[tuple[str, Any]]) -> dict:
    """A copy of the raw config with each dotted ``path = value`` set; ConfigError for a path
    the config does not have."""
    out = copy.deepcopy(dict(data))
    for path, value in params:
        node: Any = out
        keys = path.split(".")
        for key in keys[:-1]:
            try:
                node = node[int(key)] if isinstance(node, list) else node[key]
            except (KeyError, IndexError, ValueError, TypeError):
                raise ConfigError(f"walk-forward grid {path}: the config has no "
                                  f"{key!r} there") from None
        last = keys[-1]
        if isinstance(node, list):
            try:
                node[int(last)] = value
            except (IndexError, ValueError):
                raise ConfigError(f"walk-forward grid {path}: no item {last!r}") from None
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"walk-forward grid {path}: {'.'.join(keys[:-1])} is not a "
                              "section")
    return out


def _purged_length(sessions: Sequence[date], open_at_end: Sequence[str]) -> int:
    """How many leading sessions are kept: those before the session on which the earliest
    position still open at the end was opened (all of them if none is open)."""
    if not open_at_end:
        return len(sessions)
    first = min(datetime.fromisoformat(t).astimezone(_NEW_YORK).date() for t in open_at_end)
    return sum(1 for d in sessions if d < first)


def run_job(job: Job, workdir: Path | None = None) -> dict[str, Any]:
    """Run one backtest in a scratch directory (removed afterwards): its sessions, equity,
    trades, costs and metrics (on the purged sessions when ``job.purge``, module docs)."""
    from thetadesk.backtest.engine import Backtest, backtest_config
    from thetadesk.backtest.results import risk_free_rates

    source: str | Path = job.source if job.source in ("replay", "sim") else Path(job.source)
    config, market, end, _ = backtest_config(apply_params(job.data, job.params), source=source,
                                             start=job.start, end=job.end,
                                             fill_model=job.fill_model)
    scratch = Path(tempfile.mkdtemp(prefix="wf-", dir=workdir))
    try:
        result = Backtest(config, scratch / "state", end=end, market=market,
                          data=job.source).run()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sessions = [r.session for r in result.sessions]
    kept = _purged_length(sessions, result.open_at_end) if job.purge else len(sessions)
    rows = result.sessions[:kept]
    rates, _ = risk_free_rates(sessions[:kept])
    m = metrics([r.equity for r in rows], result.capital, result.trades,
                open_sessions=sum(1 for r in rows if r.open_positions > 0),
                premium_traded=result.premium_traded, rf=rates, sessions=sessions[:kept])
    return {"label": job.label, "params": list(job.params), "capital": result.capital,
            "sessions": [d.isoformat() for d in sessions],
            "equity": result.equity, "trades": [_trade_dict(t) for t in result.trades],
            "open_sessions": sum(1 for r in result.sessions if r.open_positions > 0),
            "premium_traded": result.premium_traded, "costs": result.costs,
            "scored_sessions": kept, "purged_sessions": len(sessions) - kept, "metrics": m}


def _trade_dict(t: Trade) -> dict:
    return {f: getattr(t, f) for f in Trade.__slots__}


def run_local(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    return [run_job(job) for job in jobs]


def _score(m: Mapping[str, Any], objective: str) -> float:
    v = m.get(objective)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else -math.inf


def choose(results: Sequence[Mapping[str, Any]], objective: str = "sharpe") -> int:
    """Index of the best result by ``objective`` (undefined ranks last, ties: the first)."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"walk-forward objective {objective!r} is not one of "
                          f"{', '.join(OBJECTIVES)}")
    best, best_score = 0, -math.inf
    for i, r in enumerate(results):
        s = _score(r["metrics"], objective)
        if s > best_score:
            best, best_score = i, s
    return best


def _in_sample_deflated(best: Mapping[str, Any], batch: Sequence[Mapping[str, Any]],
                        ) -> dict[str, Any]:
    """PSR and DSR of the chosen in-sample point, every grid point being a trial (its
    annualised 0% Sharpe on the scored sessions)."""
    equity = best["equity"][:best.get("scored_sessions", len(best["equity"]))]
    returns = daily_returns(equity, best["capital"]) if equity else []
    return deflated_sharpe(returns, trial_sharpes=[r["metrics"]["sharpe"] for r in batch])


def _sum_costs(costs: Sequence[Mapping[str, Any]], trades: Sequence[int]) -> dict[str, Any]:
    """The out-of-sample windows' costs added up (dollars of each window's own run); the cost
    per trade weighted by each window's closed trades."""
    keys = ("commissions", "spread", "total", "fills", "spread_unknown_fills")
    out: dict[str, Any] = {k: sum(c.get(k, 0) for c in costs) for k in keys}
    parts = [(c.get("per_trade"), n) for c, n in zip(costs, trades, strict=True) if n]
    out["per_trade"] = None
    if parts and all(p is not None for p, _ in parts):
        out["per_trade"] = sum(p * n for p, n in parts) / sum(n for _, n in parts)
    return out


def walk_forward(data: Mapping[str, Any], source: str, sessions: Sequence[date], *,
                 grid: Mapping[str, Sequence[Any]] | None = None, in_sample: int = 252,
                 out_of_sample: int = 126, objective: str = "sharpe",
                 embargo: int | None = None, purge: bool = True,
                 fill_model: str | None = None,
                 run_many: Callable[[Sequence[Job]], list[dict[str, Any]]] = run_local,
                 ) -> dict[str, Any]:
    """The walk-forward result (``results.json``'s ``walk_forward``, without baselines).
    ``embargo``: sessions between each in-sample and out-of-sample window (None: the holding
    period, ``default_embargo``); ``purge``: score the in-sample windows without the trades
    still open at their end (module docs)."""
    from thetadesk.backtest.results import risk_free_rates

    if objective not in OBJECTIVES:
        raise ConfigError(f"walk-forward objective {objective!r} is not one of "
                          f"{', '.join(OBJECTIVES)}")
    grid = dict(grid or DEFAULT_GRID)
    points = grid_points(grid)
    for params in points:  # every path must exist before anything runs
        apply_params(data, params)
    holding = default_embargo(data, grid)
    embargo = holding if embargo is None else embargo
    windows = make_windows(list(sessions), in_sample, out_of_sample, embargo)
    plain = copy.deepcopy(dict(data))
    in_jobs = [Job(plain, source, w.in_sample[0], w.in_sample[1], params, fill_model,
                   f"w{w.index} in-sample {i}", purge)
               for w in windows for i, params in enumerate(points)]
    in_results = run_many(in_jobs)
    chosen = []
    for w in windows:
        batch = in_results[w.index * len(points):(w.index + 1) * len(points)]
        chosen.append((batch[choose(batch, objective)], batch))
    out_jobs = [Job(plain, source, w.out_of_sample[0], w.out_of_sample[1],
                    tuple(tuple(p) for p in best["params"]), fill_model,
                    f"w{w.index} out-of-sample")
                for w, (best, _) in zip(windows, chosen, strict=True)]
    out_results = run_many(out_jobs)
    capital = out_results[0]["capital"]
    stitched_sessions: list[str] = []
    stitched: list[float] = []
    level = capital
    trades: list[Trade] = []
    rows = []
    for w, (best, batch), oos in zip(windows, chosen, out_results, strict=True):
        start_level = level
        for s, e in zip(oos["sessions"], oos["equity"], strict=True):
            stitched_sessions.append(s)
            stitched.append(start_level * e / oos["capital"])
        level = stitched[-1]
        trades += [Trade(**t) for t in oos["trades"]]
        dsr = _in_sample_deflated(best, batch)
        rows.append({
            "window": w.index,
            "in_sample": f"{w.in_sample[0]} to {w.in_sample[1]}",
            "embargo": f"{w.embargo[0]} to {w.embargo[1]}" if w.embargo else None,
            "out_of_sample": f"{w.out_of_sample[0]} to {w.out_of_sample[1]}",
            "params": {k: v for k, v in best["params"]},
            "in_sample_sharpe": best["metrics"]["sharpe"],
            "in_sample_sharpe_rf": best["metrics"].get("sharpe_rf"),
            "in_sample_objective": best["metrics"].get(objective),
            "in_sample_scored_sessions": best.get("scored_sessions"),
            "in_sample_purged_sessions": best.get("purged_sessions"),
            "in_sample_psr": dsr["psr"],
            "in_sample_dsr": dsr["dsr"],
            "in_sample_expected_max_sharpe": dsr["expected_max_sharpe_annual"],
            "in_sample_grid": [{"params": {k: v for k, v in r["params"]},
                                objective: r["metrics"].get(objective),
                                "trades": r["metrics"]["trades"],
                                "purged_sessions": r.get("purged_sessions")} for r in batch],
            "out_of_sample_return": oos["metrics"]["total_return"],
            "out_of_sample_sharpe": oos["metrics"]["sharpe"],
            "out_of_sample_sharpe_rf": oos["metrics"].get("sharpe_rf"),
            "out_of_sample_trades": oos["metrics"]["trades"],
        })
    days = [date.fromisoformat(s) for s in stitched_sessions]
    rates, _ = risk_free_rates(days)
    result = metrics(stitched, capital, trades,
                     open_sessions=sum(o.get("open_sessions", 0) for o in out_results),
                     premium_traded=sum(o.get("premium_traded", 0.0) for o in out_results),
                     rf=rates, sessions=days)
    result["costs"] = _sum_costs([o.get("costs") or {} for o in out_results],
                                 [o["metrics"]["trades"] for o in out_results])
    result["deflated_sharpe"] = deflated_sharpe(daily_returns(stitched, capital))
    return {
        "objective": objective,
        "in_sample_sessions": in_sample,
        "out_of_sample_sessions": out_of_sample,
        "embargo_sessions": embargo,
        "holding_sessions": holding,
        "purge": purge,
        "grid": grid,
        "windows": rows,
        "out_of_sample": result,
        "equity": [{"session": s, "equity": e}
                   for s, e in zip(stitched_sessions, stitched, strict=True)],
        "trades": [_trade_dict(t) for t in trades],
    }
